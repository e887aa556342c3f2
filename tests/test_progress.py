"""Epoch progress: long runs show their epoch, rate and time left; short runs
and ``-q`` stay quiet; a group is one stream."""

from __future__ import annotations

import pytest

from harness import progress


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress.time, "monotonic", c)
    monkeypatch.delenv(progress.MODE_ENV, raising=False)
    return c


def test_lines_after_the_quiet_start_with_rate_and_time_left(clock, capsys):
    rep = progress.EpochProgress()
    rep.begin("wine/ce/0")
    rep.expect("wine/ce/0", "train", 50)
    for epoch in range(20):  # one epoch every 0.5 s
        rep.epoch("wine/ce/0", "train", epoch)
        clock.t += 0.5
    lines = capsys.readouterr().err.splitlines()
    # silent for the first 5 s, then at most one line per 2 s
    assert lines[0] == "wine/ce/0 train epoch 11/50 (2 epochs/s, ~0:20 left)"
    assert len(lines) == 3 and lines[-1].startswith("wine/ce/0 train epoch 19/50 ")


def test_quiet_short_runs_and_other_runs_say_nothing(clock, capsys, monkeypatch):
    rep = progress.EpochProgress()
    rep.begin("a/b/0")
    for epoch in range(4):  # a 2-second run
        rep.epoch("a/b/0", "train", epoch)
        clock.t += 0.5
    clock.t += 10
    rep.epoch("x/y/1", "train", 5)  # not the run this process trains
    monkeypatch.setenv(progress.MODE_ENV, "off")
    rep.epoch("a/b/0", "train", 5)
    assert capsys.readouterr().err == ""


def test_live_display_groups_and_phases(clock, capsys):
    seen = []
    rep = progress.EpochProgress()
    rep.live = seen.append
    rep.begin("d/m/0", group=8)
    rep.epoch("d/m/0", "search", 0)
    clock.t += 10
    rep.epoch("d/m/0", "search", 4)
    rep.epoch("d/m/0", "finetune", 0)  # a new phase restarts the rate
    clock.t += 1
    rep.epoch("d/m/0", "finetune", 1)
    rep.end()
    assert seen == ["d/m/0 (+7 in its group) search epoch 5 (0.4 epochs/s)",
                    "d/m/0 (+7 in its group) finetune epoch 2 (1 epochs/s)", ""]
    assert capsys.readouterr().err == ""


def test_a_run_feeds_the_reporter(tmp_path, monkeypatch, fresh_registry, capsys):
    """RunContext.epoch_end reaches the process's reporter, in a real run."""
    from harness.cli import main

    monkeypatch.setenv("HARNESS_PLUGINS", "harness_lifecycletask")
    fresh_registry()
    monkeypatch.setattr(progress, "QUIET_S", 0.0)
    monkeypatch.setattr(progress, "MIN_GAP_S", 0.0)
    suite = tmp_path / "s.yaml"
    suite.write_text("name: p\ntask: lifecycle\nseeds: 1\ndatasets:\n  - constant: 1.0\n"
                     "    label: c\nmethods:\n  ok: {ending: finish}\nmetrics: [score]\n")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["run", str(suite), "--tracking-uri", uri]) == 0
    assert "c/ok/0 train epoch 2 (" in capsys.readouterr().err
    assert main(["run", str(suite), "--tracking-uri", uri, "--force", "-q"]) == 0
    assert "epoch" not in capsys.readouterr().err

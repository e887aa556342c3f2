"""One run lifecycle: a run trained alone and the same run trained in a group
end the same way, are recorded the same way, and are planned again the same
way by the next ``harness run`` (tests/plugins/harness_lifecycletask.py)."""

from __future__ import annotations

import pytest

from harness import runstate

SUITE = """\
name: lifecycle
task: lifecycle
seeds: 2
datasets:
  - constant: 1.0
    label: constant
  - unreachable: net
    label: unreachable
methods:
  ok: {ending: finish}
  broken: {ending: fail}
  misfit: {ending: input}
  nan: {ending: diverge}
  dies: {ending: die}
metrics: [score]
"""


@pytest.fixture
def lifecycle(monkeypatch, fresh_registry, tmp_path):
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_lifecycletask")
    fresh_registry()
    path = tmp_path / "lifecycle.yaml"
    path.write_text(SUITE)
    return path


def _recorded(uri: str) -> dict:
    """run name -> [(status, failure kind, error, test/score)], oldest first."""
    from mlflow.tracking import MlflowClient

    cl = MlflowClient(uri)
    exp = cl.get_experiment_by_name("lifecycle")
    out: dict[str, list] = {}
    for run in cl.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]):
        t = run.data.tags
        if "harness.run_key" not in t:
            continue
        out.setdefault(run.info.run_name, []).append(
            (t["harness.status"], t.get(runstate.FAILURE_KIND_TAG, ""),
             t.get("harness.error", ""), run.data.metrics.get("test/score")))
    return out


def _errors_without_pid(runs: dict) -> dict:
    # a dead worker's error names its exit status, which is the same; nothing else varies
    return {name: sorted(entries, key=str) for name, entries in runs.items()}


@pytest.mark.slow
def test_single_and_batched_runs_end_and_resume_alike(lifecycle, tmp_path, capsys):
    """finished, failed, input-failed, unavailable, diverged and interrupted
    (a process that died) runs: the same statuses, failure kinds, errors and
    metrics alone and in groups, under --timeout in both; a second run redoes
    the same runs (input failures and dead runs), adding nothing for the
    unavailable dataset."""
    from harness.cli import main

    stores = {}
    for mode, flags in (("alone", ["--no-batch"]), ("batched", ["--batch"])):
        uri = f"sqlite:///{tmp_path / mode}.db"
        assert main(["run", str(lifecycle), "--tracking-uri", uri, "--timeout", "120s",
                     *flags]) == 1
        first = _recorded(uri)
        assert main(["run", str(lifecycle), "--tracking-uri", uri, "--timeout", "120s",
                     *flags]) == 1
        stores[mode] = (first, _recorded(uri))
        capsys.readouterr()
    (alone, alone2), (batched, batched2) = stores["alone"], stores["batched"]
    assert _errors_without_pid(alone) == _errors_without_pid(batched)
    assert alone2 == batched2

    def last(name):
        return alone[name][-1][:2]

    assert last("constant/ok/0") == (runstate.FINISHED, "")
    assert alone["constant/ok/1"][-1][3] == 3.0
    assert last("constant/broken/0") == (runstate.FAILED_, runstate.METHOD_FAILURE)
    assert last("constant/misfit/0") == (runstate.FAILED_, runstate.INPUT_FAILURE)
    assert last("constant/nan/0") == (runstate.DIVERGED, "")
    assert last("constant/dies/0") == (runstate.INTERRUPTED, runstate.INFRASTRUCTURE_FAILURE)
    assert last("unreachable/ok/0") == (runstate.FAILED_, runstate.UNAVAILABLE_FAILURE)
    # the second `harness run` redid the input failures and the dead runs only
    redone = {name for name in alone2 if len(alone2[name]) > 1}
    assert redone == {f"constant/{m}/{s}" for m in ("misfit", "dies") for s in (0, 1)}


@pytest.mark.slow
def test_a_group_past_its_timeout_records_its_unfinished_runs(lifecycle, tmp_path, capsys):
    """--batch --timeout: the group shares one deadline; its runs are timeout."""
    from harness.cli import main

    lifecycle.write_text(SUITE.replace("  broken: {ending: fail}\n", "  slow: {ending: sleep, "
                                       "value: 600}\n"))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["run", str(lifecycle), "--tracking-uri", uri, "--batch", "--timeout", "10s",
                 "--only", "constant/slow/*"]) == 1
    assert "2 timeout" in capsys.readouterr().out
    runs = _recorded(uri)
    assert [runs[f"constant/slow/{s}"] for s in (0, 1)] == [
        [(runstate.TIMEOUT, runstate.LIMIT_FAILURE, "timed out after 10s (--timeout)", None)]] * 2


def test_judge_is_the_one_verdict():
    """Each ending maps to one status, failure kind and retry rule."""
    from harness import errors

    cases = {
        None: (runstate.FINISHED, "", False),
        errors.Diverged("nan"): (runstate.DIVERGED, "", False),
        KeyboardInterrupt(): (runstate.INTERRUPTED, "", False),
        errors.WorkerLost("died"): (runstate.INTERRUPTED, runstate.INFRASTRUCTURE_FAILURE,
                                    True),
        errors.TimedOut("late"): (runstate.TIMEOUT, runstate.LIMIT_FAILURE, False),
        errors.MemoryLimitExceeded("big"): (runstate.OOM, runstate.LIMIT_FAILURE, False),
        MemoryError(): (runstate.OOM, runstate.METHOD_FAILURE, False),
        errors.UserError("bad file"): (runstate.FAILED_, runstate.INPUT_FAILURE, False),
        errors.DatasetUnavailable("offline"): (runstate.FAILED_, runstate.UNAVAILABLE_FAILURE,
                                               False),
        RuntimeError("CUDA error: launch failure"): (runstate.FAILED_,
                                                     runstate.INFRASTRUCTURE_FAILURE, True),
        errors.NotRecorded("writer gone"): (runstate.FAILED_, runstate.INFRASTRUCTURE_FAILURE,
                                            True),
        ValueError("kaput"): (runstate.FAILED_, runstate.METHOD_FAILURE, False),
    }
    for exc, expected in cases.items():
        verdict = runstate.judge(exc)
        assert (verdict.status, verdict.failure_kind, verdict.retryable) == expected, exc
    assert runstate.judge(ValueError("a\nb")).error == "ValueError: a b"
    # what the next `harness run` does with each recorded failure
    info = {"status": runstate.FAILED_, "failure_kind": runstate.INPUT_FAILURE}
    assert runstate.plan_state(info) == "todo"
    assert runstate.plan_state({**info, "failure_kind": runstate.UNAVAILABLE_FAILURE}) == "failed"


def test_only_matching_nothing_names_runs_it_could_match(lifecycle, tmp_path, capsys):
    from harness.cli import main

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["run", str(lifecycle), "--tracking-uri", uri, "--only", "constnt/ok/*"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "matches none of the 20 runs" in err
    assert "constant/ok/0" in err
    assert main(["plan", str(lifecycle), "--tracking-uri", uri, "--only", "nothing"]) == 2

"""``harness run`` keeps training when the reader of its output goes away
(``harness run suite.yaml | head``): output is a view of the runs, so a
broken pipe must neither fail the run that was printing nor stop the rest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SUITE = """\
name: reader
task: classification
seeds: 2
datasets: [{sklearn: iris}, {sklearn: wine}]
model: {name: mlp, hidden: [8]}
training: {epochs: 2}
methods: {ce: {}}
metrics: [accuracy]
"""


def test_a_broken_pipe_silences_the_stream_and_writing_goes_on():
    from harness.progress import _ReaderSafe

    read, write = os.pipe()
    stream = _ReaderSafe(os.fdopen(write, "w"))
    stream.write("seen\n")
    stream.flush()
    assert os.read(read, 100) == b"seen\n"
    os.close(read)  # the reader goes away
    stream.write("lost\n")
    stream.flush()  # EPIPE: no exception, the descriptor now points at /dev/null
    stream.write("also lost\n")
    stream.flush()
    stream.close()


@pytest.mark.slow
def test_runs_finish_when_the_reader_goes_away(tmp_path):
    from harness.tracking import existing_runs

    suite = tmp_path / "reader.yaml"
    suite.write_text(SUITE)
    uri = f"sqlite:///{tmp_path / 'r.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite),
                             "--tracking-uri", uri, "--no-batch"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout.readline().startswith(b"suite reader: 4 runs")
    proc.stdout.close()  # `| head -1`: every later line meets a broken pipe
    assert proc.wait(timeout=300) == 0
    runs = existing_runs(uri, "reader")
    assert sorted(i["status"] for i in runs.values()) == ["finished"] * 4

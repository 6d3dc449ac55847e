"""A run directory belongs to one run: the lock of ``minis2s train`` (minis2s/runlock.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from minis2s import checkpoint, cli, runlock
from tests.conftest import ROOT

ARGS = ["--data", "demo", "--num-samples", "40", "--batch-size", "8", "--latent-dim", "8", "--show", "0"]


def _dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


def test_second_holder_is_refused_and_a_leftover_is_taken_over(tmp_path):
    run = tmp_path / "run"
    with runlock.hold(run) as path:
        assert path == run / runlock.LOCK_FILE
        assert runlock.read_holder(run)["pid"] == os.getpid()
        with pytest.raises(runlock.RunLocked, match=rf"{run} is in use by another training run \(process {os.getpid()} on "):
            with runlock.hold(run):  # another open file description: flock refuses it too
                pass
    assert not (run / runlock.LOCK_FILE).exists()  # released and removed
    # a leftover lock file of a dead process (a crash) does not block the next run
    (run / runlock.LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": "x", "started": 0}))
    with runlock.hold(run):
        assert runlock.read_holder(run)["pid"] == os.getpid()


@pytest.mark.slow
def test_two_trainings_on_one_directory(tmp_path, capsys):
    """A second ``train`` or ``--resume`` on a directory a running ``train`` holds is refused
    with one line naming the holder; readers still read; after the holder is killed (SIGKILL
    leaves its lock file behind) the run resumes."""
    run = tmp_path / "run"
    marker = tmp_path / "saving"
    env = {**os.environ, "PYTHONPATH": str(ROOT), checkpoint.SAVE_PAUSE_ENV: f"{marker}:0.3"}
    first = subprocess.Popen([sys.executable, "-m", "minis2s.cli", "train", *ARGS, "--epochs", "40", "--out", str(run)],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not checkpoint.list_checkpoints(run):
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() - t0 < 120
            time.sleep(0.05)
        for argv in (["train", *ARGS, "--epochs", "2", "--out", str(run)], ["train", "--resume", str(run), "--show", "0"]):
            assert cli.main(argv) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith(f"minis2s train: error: {run} is in use by another training "
                                                       f"run (process {first.pid} on "), err
        assert checkpoint.load_trained(run).epoch >= 1  # reading needs no lock
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
        first.communicate()
    assert runlock.read_holder(run)["pid"] == first.pid  # the dead holder's file is still there
    done = checkpoint.list_checkpoints(run)[-1][0]
    assert cli.main(["train", "--resume", str(run), "--epochs", str(done + 1), "--show", "0"]) == 0
    assert checkpoint.list_checkpoints(run)[-1][0] == done + 1
    assert not (run / runlock.LOCK_FILE).exists()

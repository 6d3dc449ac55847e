"""A run directory belongs to one run: the lock of ``minis2s train`` (minis2s/runlock.py)."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time

import pytest

from minis2s import checkpoint, cli, runlock
from minis2s.run import list_checkpoints
from minis2s.trained import load_trained
from tests.conftest import ROOT

ARGS = ["--data", "demo", "--num-samples", "40", "--batch-size", "8", "--latent-dim", "8", "--show", "0"]


# Above every pid_max Linux allows (2**22) and macOS's 99998: never a live process.
NEVER_A_PID = 2**22 + 1


@pytest.fixture
def no_os_locking(monkeypatch):
    """A file system without locking: every lock attempt answers ENOLCK (as some network file
    systems do), so :func:`runlock.hold` has only the PID in the file to go by."""

    def enolck(fd: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(runlock, "_os_lock", enolck)


def _leave_lock(run, pid: int) -> None:
    run.mkdir(parents=True, exist_ok=True)
    info = {"pid": pid, "host": socket.gethostname(), "started": time.time()}
    (run / runlock.LOCK_FILE).write_text(json.dumps(info))


def test_second_holder_is_refused_and_a_leftover_is_taken_over(tmp_path):
    run = tmp_path / "run"
    with runlock.hold(run) as path:
        assert path == run / runlock.LOCK_FILE
        assert runlock.read_holder(run)["pid"] == os.getpid()
        with pytest.raises(runlock.RunLocked, match=rf"{run} is in use by another training run \(process {os.getpid()} on "):
            with runlock.hold(run):  # another open file description: flock refuses it too
                pass
    assert not (run / runlock.LOCK_FILE).exists()  # released and removed
    # a leftover lock file (a crash) does not block the next run: with the OS's lock, the
    # PID in the file is never consulted, even one of a live process on this host
    _leave_lock(run, os.getppid())
    with runlock.hold(run):
        assert runlock.read_holder(run)["pid"] == os.getpid()


def test_without_os_locking_a_dead_pid_is_taken_over(tmp_path, no_os_locking):
    run = tmp_path / "run"
    with pytest.raises(ProcessLookupError):  # the oracle: the OS knows no such process
        os.kill(NEVER_A_PID, 0)
    _leave_lock(run, NEVER_A_PID)
    with runlock.hold(run) as path:
        assert runlock.read_holder(run)["pid"] == os.getpid()
    assert not path.exists()


def test_without_os_locking_a_live_pid_is_refused(tmp_path, no_os_locking):
    run = tmp_path / "run"
    live = os.getppid()  # the process that started the tests: alive while they run
    os.kill(live, 0)  # the oracle: the OS knows it
    _leave_lock(run, live)
    with pytest.raises(runlock.RunLocked) as e:
        with runlock.hold(run, "wait for it to end, or choose another --out"):
            pass
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{run} is in use by another training run (process {live} on {socket.gethostname()}, started ")
    assert message.endswith("; wait for it to end, or choose another --out")
    assert runlock.read_holder(run)["pid"] == live  # the holder's file is left as it was
    # the same file on this host but of this very process (a re-run after a crash with a
    # recycled PID) is not a reason to refuse
    _leave_lock(run, os.getpid())
    with runlock.hold(run):
        pass


@pytest.mark.slow
def test_two_trainings_on_one_directory(tmp_path, capsys, children):
    """A second ``train`` or ``--resume`` on a directory a running ``train`` holds is refused
    with one line naming the holder; readers still read; after the holder is killed (SIGKILL
    leaves its lock file behind) the run resumes."""
    run = tmp_path / "run"
    marker = tmp_path / "saving"
    env = {**os.environ, "PYTHONPATH": str(ROOT), checkpoint.SAVE_PAUSE_ENV: f"{marker}:0.3"}
    # a child of the children fixture: its output is read by a thread, every wait has a
    # timeout, and its process group is killed when the test ends, however it ends
    first = children([sys.executable, "-m", "minis2s.cli", "train", *ARGS, "--epochs", "40", "--out", str(run)],
                     env=env, cwd=ROOT)
    first.wait_until(lambda: bool(list_checkpoints(run)), timeout=120)
    for argv in (["train", *ARGS, "--epochs", "2", "--out", str(run)], ["train", "--resume", str(run), "--show", "0"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"minis2s train: error: {run} is in use by another training "
                                                   f"run (process {first.proc.pid} on "), err
    assert load_trained(run).epoch >= 1  # reading needs no lock
    first.kill()  # SIGKILL: the lock file stays behind
    assert runlock.read_holder(run)["pid"] == first.proc.pid  # the dead holder's file is still there
    done = list_checkpoints(run)[-1][0]
    assert cli.main(["train", "--resume", str(run), "--epochs", str(done + 1), "--show", "0"]) == 0
    assert list_checkpoints(run)[-1][0] == done + 1
    assert not (run / runlock.LOCK_FILE).exists()

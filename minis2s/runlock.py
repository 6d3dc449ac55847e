"""One run per run directory: ``minis2s train`` holds an exclusive lock on ``RUN/.lock``.

Two trainings writing into one directory destroy each other's work (each one's pruning
deletes the other's checkpoints and half-written saves). So ``train`` and ``train --resume``
take the lock for the whole run and a second one is refused with a message naming the
process that holds it. Readers (``translate``, ``evaluate``, ``plot``) never take it.

How: ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``RUN/.lock`` (``msvcrt.locking`` on Windows).
The operating system drops the lock when the holder exits or dies, even by SIGKILL, so a
crashed run never leaves a stale lock: its leftover ``.lock`` file is simply taken over.
The file holds the holder's PID, host and start time, for the message only. On release the
file is removed while still locked; a process that opened the old file meanwhile finds, once
it gets the lock, that the path no longer names its file, and tries again.

Where the file system offers no locking at all (some network file systems answer ``ENOLCK``),
the PID in the file decides: a live process on this host holds the run, anything else is a
leftover.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

LOCK_FILE = ".lock"
_BUSY = (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK)
_WINDOWS_OFFSET = 1 << 30  # msvcrt locks bytes from the file position: lock one far from the text


class RunLocked(ValueError):
    """The run directory is held by another training process."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def read_holder(run_dir: str | os.PathLike) -> dict:
    """What the lock file says about its holder (``pid``, ``host``, ``started``), or ``{}``."""
    try:
        info = json.loads((Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8"))
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(info: dict) -> str:
    if not info.get("pid"):
        return "another process"
    started = info.get("started")
    when = time.strftime(", started %Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else ""
    return f"process {info['pid']} on {info.get('host', '?')}{when}"


def _os_lock(fd: int) -> None:
    """The operating system's non-blocking exclusive lock on ``fd``; ``OSError`` when refused.

    Its own function so that a test can stand in for a file system without locking (one
    that answers ``ENOLCK``) and reach the PID fallback of :func:`hold` on any machine.
    """
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _try_lock(fd: int) -> bool | None:
    """Lock ``fd`` without waiting: True (locked), False (held elsewhere), None (no locking here)."""
    try:
        _os_lock(fd)
        return True
    except OSError as e:
        if e.errno in _BUSY:
            return False
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _refuse(run_dir: Path, info: dict, what: str) -> RunLocked:
    return RunLocked(f"{run_dir} is in use by another training run ({_describe(info)}); {what}")


@contextlib.contextmanager
def hold(run_dir: str | os.PathLike, what: str = "wait for it to end, or choose another --out") -> Iterator[Path]:
    """Hold the lock of ``run_dir`` (created if needed) for the ``with`` block.

    Raises :class:`RunLocked` (its message names the holder and ends with ``what``) when
    another process holds it. Yields the lock file's path.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(100):  # a retry only when the file was replaced under us
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        got = _try_lock(fd)
        if got is False:
            os.close(fd)
            raise _refuse(run_dir, read_holder(run_dir), what)
        if got is None:  # no locking on this file system: trust a live PID on this host
            info = read_holder(run_dir)
            pid = info.get("pid")
            if (isinstance(pid, int) and pid != os.getpid() and info.get("host") == me["host"]
                    and _pid_alive(pid)):
                os.close(fd)
                raise _refuse(run_dir, info, what)
        if got is None or _same_file(fd, path):
            break
        os.close(fd)  # the previous holder removed the file after we opened it: start over
    else:  # pragma: no cover - needs a file replaced 100 times in a row
        raise RunLocked(f"{path}: could not take the run lock")
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode())
        yield path
    finally:
        if sys.platform != "win32":  # remove while locked; Windows cannot remove an open file
            with contextlib.suppress(OSError):
                if _same_file(fd, path):
                    os.unlink(path)
        with contextlib.suppress(OSError):
            if got:
                _unlock(fd)
        os.close(fd)


__all__ = ["LOCK_FILE", "RunLocked", "hold", "read_holder"]

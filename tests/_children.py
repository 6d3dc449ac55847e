"""Child processes a test can neither hang on nor leave behind.

Each child runs in its own session (its own process group), so killing the group kills
whatever it started too. A thread reads its merged stdout/stderr line by line, so every wait
on its output has a timeout. :func:`tests.conftest.children` kills every group a test started
when the test ends, passed, failed or timed out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Sequence


class Child:
    """``subprocess.Popen(argv)`` with stdout and stderr merged and read by a thread."""

    def __init__(self, argv: Sequence[str], *, env: dict, cwd: str | os.PathLike) -> None:
        self.proc = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # setsid in the child (no preexec_fn, safe after JAX started)
        )
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._lines.append("")  # end of output
            self._changed.notify_all()

    @property
    def output(self) -> str:
        """What the child has printed so far."""
        with self._changed:
            return "".join(self._lines)

    def wait_for_output(self, needle: str, timeout: float = 120) -> str:
        """Wait until ``needle`` appears in the output; the output so far. Fails on timeout or
        when the child ends without printing it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while needle not in "".join(self._lines):
                assert not (self._lines and self._lines[-1] == ""), f"ended without {needle!r}:\n{self._text()}"
                left = deadline - time.monotonic()
                assert left > 0, f"no {needle!r} after {timeout} s:\n{self._text()}"
                self._changed.wait(left)
            return "".join(self._lines)

    def _text(self) -> str:
        return "".join(self._lines)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 120) -> None:
        """Poll ``condition`` while the child runs; fail if it ends first or on timeout."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, f"the child ended (code {self.proc.returncode}):\n{self.finish(10)}"
            assert time.monotonic() < deadline, f"condition not met after {timeout} s:\n{self.output}"
            time.sleep(0.01)

    def wait_for_file(self, path: Path, timeout: float = 120) -> None:
        self.wait_until(path.exists, timeout)

    def finish(self, timeout: float = 300) -> str:
        """Wait for the child to end (kill its group on timeout and fail); all its output."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running after {timeout} s; killed:\n{self.output}") from None
        self._reader.join(timeout)
        return self.output

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> str:
        """SIGKILL the child's whole process group; its output."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        self._reader.join(30)
        return self.output

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()


class Children:
    """Starts :class:`Child` processes and kills the groups of those still running at the end."""

    def __init__(self) -> None:
        self.started: list[Child] = []

    def __call__(self, argv: Sequence[str], *, env: dict, cwd: str | os.PathLike) -> Child:
        child = Child(argv, env=env, cwd=cwd)
        self.started.append(child)
        return child

    def kill_all(self) -> None:
        for child in self.started:
            if child.proc.poll() is None:
                child.kill()
            else:  # the child is gone; anything it started in its group goes too
                try:
                    os.killpg(child.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if child.proc.stdout:
                child._reader.join(5)
                child.proc.stdout.close()

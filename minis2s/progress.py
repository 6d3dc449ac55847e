"""A Keras-like progress bar for the steps of an epoch.

On a terminal, ``minis2s train`` redraws one line while an epoch runs::

    312/2090 [====>.........................] - ETA: 7:41 - loss: 0.8123

and replaces it with the epoch line when the epoch ends. The formatting is pure
(:func:`format_bar`, :func:`format_eta`); :class:`ProgressBar` adds the clock (injected, so
rate limiting is testable) and the stream. :func:`minis2s.train.fit` calls
``progress(done, steps, totals)`` (see :data:`Progress`); a bar reads the device values in
``totals`` only when it draws, at most once per ``interval`` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Mapping, TextIO

#: ``progress(done, steps, totals)``: ``done`` of ``steps`` training steps of the current
#: epoch have run; ``done == 0`` (``totals`` ``None``) when the epoch starts, then the running
#: metric sums ``loss_sum, correct_sum, count`` (device arrays; reading one waits for them).
Progress = Callable[[int, int, "Mapping | None"], None]


def format_eta(seconds: float) -> str:
    """Keras' ETA format: ``42s``, ``7:41``, ``1:02:03`` (rounded down to whole seconds)."""
    s = max(0, int(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    if s >= 60:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s}s"


def format_bar(done: int, total: int, eta_seconds: float | None, logs: Mapping[str, float], width: int = 30) -> str:
    """``312/2090 [====>.....] - ETA: 7:41 - loss: 0.8123``, as Keras' ``Progbar`` draws it.

    ``done`` is right-aligned to the digits of ``total``; the bar holds ``width`` characters:
    ``floor(width * done / total)`` filled (the last of them ``>`` until the end; at least the
    ``>`` once a step is done), the rest ``.``.
    ``eta_seconds`` ``None`` leaves the ETA out (nothing measured yet).
    """
    if total <= 0 or not 0 <= done <= total:
        raise ValueError(f"progress {done}/{total}: need 0 <= done <= total and total > 0")
    filled = width * done // total
    if 0 < done < total:  # the head ">" is the last filled place (the first, before one is full)
        head = max(filled, 1)
        bar = "=" * (head - 1) + ">" + "." * (width - head)
    else:
        bar = "=" * filled + "." * (width - filled)
    parts = [f"{done:>{len(str(total))}d}/{total} [{bar}]"]
    if eta_seconds is not None:
        parts.append(f"ETA: {format_eta(eta_seconds)}")
    parts += [f"{k}: {v:.4f}" for k, v in logs.items()]
    return " - ".join(parts)


class ProgressBar:
    """Redraws :func:`format_bar` in place on ``stream`` (``\\r``, no newline), at most once
    per ``interval`` seconds; :meth:`log` clears it and prints a line (the epoch line).

    Use ``fit(..., log=bar.log, progress=bar)``. ``clock`` returns seconds (default
    ``time.monotonic``); the ETA is Keras': elapsed time per step times the steps left.
    """

    def __init__(
        self, stream: TextIO | None = None, interval: float = 0.25, clock: Callable[[], float] = time.monotonic,
        width: int = 30,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.interval, self.clock, self.width = interval, clock, width
        self._start = 0.0
        self._last_draw: float | None = None
        self._shown = 0  # characters of the bar on screen (0: none)

    def __call__(self, done: int, steps: int, totals: Mapping | None) -> None:
        if done == 0:  # a new epoch: the ETA counts from here
            self._start, self._last_draw = self.clock(), None
            return
        if self._last_draw is not None and done < steps and self.clock() - self._last_draw < self.interval:
            return  # too soon: nothing is read from the device
        loss = float(totals["loss_sum"]) / float(totals["count"])  # waits for those steps
        now = self.clock()
        eta = (now - self._start) / done * (steps - done)
        self._draw(format_bar(done, steps, eta, {"loss": loss}, self.width))
        self._last_draw = now

    def _draw(self, text: str) -> None:
        pad = " " * max(self._shown - len(text), 0)  # cover a longer previous line
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._shown = len(text)

    def clear(self) -> None:
        """Erase the bar, if one is on screen."""
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0

    def close(self) -> None:
        """End the bar's line, if one is on screen, so what is printed next starts below it."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = 0

    def log(self, line: str) -> None:
        """Print ``line`` where the bar was (the bar of the next epoch starts below it)."""
        self.clear()
        self.stream.write(line + "\n")
        self.stream.flush()


__all__ = ["Progress", "ProgressBar", "format_bar", "format_eta"]

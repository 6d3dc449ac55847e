"""What Keras' callbacks do for ``fit``, as plain functions: the best-checkpoint and
early-stopping bookkeeping of each epoch (``ModelCheckpoint(save_best_only=True)``,
``EarlyStopping``), writing the run's checkpoints, and stopping on a non-finite loss with a
message that says where it happened and what is kept (Keras: ``TerminateOnNaN``).
"""

from __future__ import annotations

import jax
import numpy as np

from .config import Config
from .data import Dataset
from .run import TrainState, list_checkpoints, save_state


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch, the step and the last
    good checkpoint."""


def non_finite_message(what: str, value: float, epoch: int, step: int, steps: int, last_saved: str | None) -> str:
    where = f"{what} became {value} in epoch {epoch}, step {step} of {steps}; training stopped."
    if last_saved:
        kept = f" The last good checkpoint is kept: {last_saved}."
    else:
        kept = " No checkpoint was written (no epoch finished with a finite loss)."
    return where + kept + " Lower --learning-rate (or check the data) and train again."


def advance(state: TrainState, params, opt_state, logs: dict[str, float], seconds: float) -> TrainState:
    """The state after one more epoch, with Keras' best-checkpoint and early-stopping
    bookkeeping (``ModelCheckpoint(save_best_only=True)`` and ``EarlyStopping`` both use
    ``np.less`` on ``val_loss``)."""
    improved = logs["val_loss"] < state.best_val_loss
    return TrainState(
        params=params,
        opt_state=opt_state,
        epoch=state.epoch + 1,
        history={k: [*state.history[k], v] for k, v in {**logs, "seconds": seconds}.items()},
        shuffle_key=state.shuffle_key,
        best_val_loss=logs["val_loss"] if improved else state.best_val_loss,
        best_epoch=state.epoch + 1 if improved else state.best_epoch,
        wait=0 if improved else state.wait + 1,
    )


class Saver:
    """Writes the run's checkpoints (or nothing, without a run directory) and remembers the
    last one written, for the message when training has to stop. ``save``: how a state is
    written (:func:`minis2s.run.save_state`; ``fit`` passes the one its module holds);
    ``start``: the epoch the run continues from."""

    def __init__(self, out, config: Config, data: Dataset, extra: dict | None, save=save_state, start: int = 0):
        self.out, self.config, self.data, self.extra, self._save = out, config, data, extra, save
        self.last: str | None = None
        if out is not None:  # the checkpoint this run starts from (epoch ``start``), not a newer damaged one it passed over
            found = [(e, p) for e, p in list_checkpoints(out) if e <= start]
            self.last = str(found[-1][1]) if found else None

    def save(self, state: TrainState) -> None:
        self.last = self._save(self.out, state, self.config, self.data, self.extra)

    def keep_last_good(self, good: TrainState) -> str | None:
        """On a fault, make sure the last finished epoch is on disk (with --checkpoint-every
        > 1 it may not be); return the last good checkpoint."""
        if self.out is not None and good.epoch > 0 and not (self.last and self.last.endswith(f"epoch-{good.epoch:04d}")):
            self.save(good)
        return self.last


def first_bad_step(step_losses) -> tuple[int, float]:
    """``(step, value)`` of the first non-finite loss of an epoch (0-based step)."""
    bad = np.asarray(jax.device_get(step_losses))
    step = int(np.argmax(~np.isfinite(bad)))
    return step, float(bad[step])


__all__ = ["NonFiniteLoss", "Saver", "advance", "first_bad_step", "non_finite_message"]

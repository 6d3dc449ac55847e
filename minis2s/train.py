"""Training: the seed's ``model.fit`` as a jitted step and a plain epoch loop.

What Keras does, and what this module does the same way (the split and the batches are
:mod:`minis2s.batching`'s):

- The training samples are reshuffled every epoch (here from an explicit PRNG key,
  ``fold_in(shuffle_key, epoch)``).
- RMSprop, ``lr=1e-3, rho=0.9, epsilon=1e-7``: ``optax.rmsprop(1e-3, decay=0.9, eps=1e-7)``.
- The reported epoch loss and accuracy are means over all samples (Keras weights each
  batch's mean by its size); the weight-0 rows that fill the last batch change no sum.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import callbacks
from . import dropout
from . import losses
from . import models
from . import parallel
from . import scheduled
from . import splits
from . import warmstart
from .batching import batch_plan, batches, device_data, split_train_val
from .bucketing import Batcher
from .config import HISTORY_KEYS, Config, make_optimizer, model_config
from .data import Dataset
from .model import make_apply
from .models import ModelConfig, Params
from .progress import Progress
from .callbacks import NonFiniteLoss
from .run import TrainState, data_fingerprint, initial_state, load_state, save_state

Batch = dict[str, jax.Array]


# --------------------------------------------------------------------------- loss and step


def loss_fn(params: Params, batch: Batch, apply_fn: Callable | None = None) -> tuple[jax.Array, dict]:
    """Weighted mean of the per-sample Keras loss (the objective), and the sums an epoch needs.

    With ``loss_scale (B,)`` in the batch (bucketed batches), the objective is instead
    ``sum_b loss_scale_b * loss_b`` with a constant denominator inside ``loss_scale``
    (:class:`minis2s.bucketing.Batcher`); the returned sums, and so the reported loss, are the same.

    ``batch``: ``encoder_tokens (B, T_enc)``, ``encoder_lengths (B,)``, ``decoder_tokens`` and
    ``target_tokens (B, T_dec)``, ``weight (B,)`` (0 for padding rows). ``apply_fn(params, batch)``:
    the model's teacher-forced pass (a :class:`minis2s.models.Model`'s ``apply``; default the
    seed's, :func:`minis2s.model.make_apply`). A sample's loss is the mean over its ``T_dec``
    positions, so for a full batch the value is Keras' mean over batch and time.
    """
    probs = (apply_fn or make_apply())(params, batch)  # (B, T, V)
    ce = losses.per_position_crossentropy(probs, batch["target_tokens"])  # (B, T)
    correct = losses.per_position_correct(probs, batch["target_tokens"])  # (B, T)
    w = batch["weight"]  # (B,)
    if "mask" in batch:  # --mask-padding: means over real target characters (bucketing.py)
        m = w[:, None] * batch["mask"]  # (B, T)
        metrics = {"loss_sum": jnp.sum(m * ce), "correct_sum": jnp.sum(m * correct), "count": jnp.sum(m)}
    else:  # the seed: every position counts, each sample weighs the same
        metrics = {
            "loss_sum": jnp.sum(w * jnp.mean(ce, axis=1)),
            "correct_sum": jnp.sum(w * jnp.mean(correct, axis=1)),
            "count": jnp.sum(w),
        }
    objective = metrics["loss_sum"] / metrics["count"]
    if "loss_scale" in batch:  # --bucket: one constant denominator for every batch (bucketing.py)
        per_row = jnp.sum(batch["mask"] * ce, axis=1) if "mask" in batch else jnp.mean(ce, axis=1)  # (B,)
        objective = jnp.sum(batch["loss_scale"] * per_row)
    return objective, metrics


def _step(optimizer: optax.GradientTransformation, apply_fn: Callable):
    """The un-jitted update ``(params, opt_state, batch) -> (params, opt_state, metrics)``."""

    def train_step(params, opt_state, batch):
        grads, metrics = jax.grad(loss_fn, has_aux=True)(params, batch, apply_fn)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, metrics

    return train_step


def make_train_step(
    optimizer: optax.GradientTransformation, apply_fn: Callable | None = None, grad: str = "bptt"
):
    """``train_step(params, opt_state, batch) -> (params, opt_state, metrics)``, jitted.

    ``apply_fn(params, batch)`` is the model's forward pass; when ``None`` it is the seed's
    (:func:`minis2s.model.make_apply`) with the LSTM gradient named by ``grad``.
    """
    return jax.jit(_step(optimizer, make_apply(grad) if apply_fn is None else apply_fn))


def make_train_epoch(
    optimizer: optax.GradientTransformation, apply_fn: Callable | None = None, grad: str = "bptt"
):
    """Many training steps in one call, as Keras' ``steps_per_execution`` does: a jitted step
    called from Python pays dispatch and a host-to-device copy per batch; here the data stay
    on the device and Python is entered once.

    ``train_epoch(params, opt_state, data, index, weight, step_extras=None, totals=None)
    -> (params, opt_state, totals, step_losses)``: ``data`` the device arrays of
    :func:`minis2s.batching.device_data`, ``index, weight (S, B)`` each batch's rows and
    weights (:func:`minis2s.batching.batch_plan`); ``step_extras`` ``{name: (S, ...)}``, row
    ``s`` added to batch ``s`` (scheduled sampling's key and ratio). A ``lax.scan`` runs the
    :func:`make_train_step` update per batch, in order, adding the metric sums to ``totals``
    (zeros by default) in the per-step loop's order: consecutive slices of one epoch, each
    passed the ``totals`` of the one before, give one call's numbers bit for bit.
    ``step_losses (S,)``: each batch's loss sum, to trace a non-finite loss to its step.
    """
    step = _step(optimizer, make_apply(grad) if apply_fn is None else apply_fn)

    def train_epoch(params, opt_state, data, index, weight, step_extras=None, totals=None):
        def body(carry, xs):
            params, opt_state, totals = carry
            idx, w, extra = xs  # (B,), (B,), {name: (...)}
            batch = {k: v[idx] for k, v in data.items()}
            batch["weight"] = w
            batch.update(extra)
            params, opt_state, metrics = step(params, opt_state, batch)
            totals = jax.tree.map(jnp.add, totals, metrics)
            return (params, opt_state, totals), metrics["loss_sum"]

        if totals is None:
            zero = jnp.zeros((), weight.dtype)
            totals = {"loss_sum": zero, "correct_sum": zero, "count": zero}
        xs = (index, weight, step_extras or {})
        (params, opt_state, totals), step_losses = jax.lax.scan(body, (params, opt_state, totals), xs)
        return params, opt_state, totals, step_losses

    return jax.jit(train_epoch)


def make_eval_step(apply_fn: Callable | None = None):
    """``eval_step(params, batch) -> metrics`` (sums, as in :func:`loss_fn`), jitted."""
    return jax.jit(lambda params, batch: loss_fn(params, batch, apply_fn)[1])


def _accumulate(totals: dict | None, metrics: dict) -> dict:
    return metrics if totals is None else jax.tree.map(jnp.add, totals, metrics)


def _summarise(totals: dict, prefix: str = "") -> dict[str, float]:
    count = float(totals["count"])
    return {
        prefix + "loss": float(totals["loss_sum"]) / count,
        prefix + "accuracy": float(totals["correct_sum"]) / count,
    }


def evaluate(
    params: Params, data: Dataset, indices: np.ndarray, batch_size: int, eval_step=None, batch_fn=None
) -> dict[str, float]:
    """Mean loss and accuracy over ``indices`` (exact: sums over samples, then one division).

    ``batch_fn(indices)``, when given, makes the batches instead of :func:`batches`.
    """
    eval_step = eval_step or make_eval_step()
    totals = None
    for batch in (batch_fn or (lambda idx: batches(data, idx, batch_size)))(indices):  # batch_fn
        totals = _accumulate(totals, eval_step(params, batch))
    return _summarise(totals)


def format_epoch(epoch: int, epochs: int, seconds: float, logs: dict[str, float]) -> str:
    """A Keras-like epoch line: ``Epoch 3/100 - 4.1s - loss: 0.1234 - accuracy: ...``."""
    parts = [f"Epoch {epoch}/{epochs}", f"{seconds:.1f}s"]
    parts += [f"{k}: {v:.4f}" for k, v in logs.items()]
    return " - ".join(parts)


# --------------------------------------------------------------------------- fit


# Settings that do not change the compiled program: the run's length, data, seed, batch
# sizes (jit compiles per shape by itself), and the model's sizes (in the ModelConfig).
# Every other field of Config is part of the cache key (a new one is, until listed here).
_NOT_COMPILED = ("num_samples", "batch_size", "epochs", "validation_split", "seed", "bucket", "mask_padding",
                 "latent_dim", "model", "cell", "attention_scale", "teacher_forcing", "teacher_forcing_end",
                 "split", "test_split", "split_seed", "input_feeding")


def step_settings(config: Config) -> Config:
    """``config`` with every setting in ``_NOT_COMPILED`` at its default: what
    :func:`_compiled_steps` is cached on (with the ``ModelConfig``). Scheduled sampling
    changes the program, its ratios do not (they are data): only whether it is on is kept."""
    defaults = Config()
    kept = dataclasses.replace(config, **{name: getattr(defaults, name) for name in _NOT_COMPILED})
    if scheduled.uses_scheduled_sampling(config.teacher_forcing, config.teacher_forcing_end):
        kept = dataclasses.replace(kept, teacher_forcing=0.0)
    return kept


def _compiled_steps(config: Config, model_cfg: ModelConfig):
    """``(optimizer, train_step, train_epoch, eval_step)`` for a config, cached on what changes
    the compiled program (:func:`step_settings`, ``model_cfg``) and shared by every
    :func:`fit` call in the process: a resumed, repeated or longer fit reuses the compilation."""
    return _steps_for(step_settings(config), model_cfg)


@functools.lru_cache(maxsize=8)
def _steps_for(config: Config, model_cfg: ModelConfig):
    optimizer = make_optimizer(config)
    model = models.build(model_cfg, config.grad)
    apply_fn = model.apply
    train_apply = apply_fn
    if scheduled.uses_scheduled_sampling(config.teacher_forcing, config.teacher_forcing_end):
        # the batch carries this step's key and ratio (scheduled.step_extras); validation stays teacher-forced
        def train_apply(params, batch):
            return scheduled.apply(model, params, batch, batch["coin_key"], batch["teacher_forcing"])
    return (
        optimizer,
        make_train_step(optimizer, train_apply),
        make_train_epoch(optimizer, train_apply),
        make_eval_step(apply_fn),
    )


def _check_fit(config: Config, data: Dataset, patience: int | None, checkpoint_every: int) -> splits.Sides:
    """Validate the settings; return the rows of each side (:func:`minis2s.splits.split_rows`)."""
    config.validate()
    if patience is not None and patience <= 0:
        raise ValueError(f"patience must be positive, got {patience}")
    if checkpoint_every <= 0:
        raise ValueError(f"checkpoint_every must be positive, got {checkpoint_every}")
    sides = splits.split_rows(config, data.input_texts)
    if len(sides.train) == 0 or len(sides.val) == 0:
        raise ValueError(
            f"validation_split={config.validation_split} of {len(data)} samples leaves "
            f"{len(sides.train)} for training and {len(sides.val)} for validation; both must be non-empty"
        )
    return sides


#: With a progress callback, the one-call epoch runs as at most this many calls (chunks of
#: consecutive steps, same numbers bit for bit): the bar moves at least every 1% of an epoch.
PROGRESS_CHUNKS = 100


def _chunks(steps: int, most: int | None = None) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: ``steps`` cut into at most ``most`` (default
    :data:`PROGRESS_CHUNKS`) slices of equal length (the last may be shorter), so an epoch
    compiles at most two chunk shapes."""
    size = -(-steps // (most or PROGRESS_CHUNKS))
    return [(start, min(start + size, steps)) for start in range(0, steps, size)]


def _epoch_runner(config: Config, data: Dataset, mesh, train_step, train_epoch):
    """``(run_epoch, batches)``: ``run_epoch(params, opt_state, perm, extras, progress) -> (params,
    opt_state, totals, step_losses)`` trains one pass over the rows ``perm``; ``batches(indices)``
    makes the (sharded) batches of any rows, as training sees them.

    The seed's fixed-shape batches on one device run as one jitted call per epoch (data on
    the device); length buckets and several devices go batch by batch through the same step.
    ``progress`` (:data:`minis2s.progress.Progress` or ``None``) is told ``(0, steps, None)``,
    then ``(done, steps, totals)``: per batch, or per chunk of the one-call epoch (at most
    :data:`PROGRESS_CHUNKS`); the next call is queued before the last is waited for.
    """
    rows = parallel.padded_batch_size(config.batch_size, mesh)
    batcher = Batcher(data, config.batch_size, rows, bucket=config.bucket, mask_padding=config.mask_padding)

    def sharded_batches(indices):
        return (parallel.shard_batch(b, mesh) for b in batcher(indices))

    if not (config.bucket or config.mask_padding) and mesh.size == 1:
        on_device = device_data(data)

        def run_whole_epoch(params, opt_state, perm, extras=None, progress=None):
            index, weight = batch_plan(perm, config.batch_size)
            per_step = extras(len(index)) if extras is not None else None
            if progress is None:
                # step_losses (S,): each step's loss sum, checked once per epoch (no sync per step)
                if per_step is None:
                    return train_epoch(params, opt_state, on_device, index, weight)
                return train_epoch(params, opt_state, on_device, index, weight, per_step)
            totals, step_losses, report = None, [], _Reporter(progress, len(index))
            for start, stop in _chunks(len(index)):
                chunk_extras = None if per_step is None else {k: v[start:stop] for k, v in per_step.items()}
                params, opt_state, totals, losses = train_epoch(
                    params, opt_state, on_device, index[start:stop], weight[start:stop], chunk_extras, totals
                )
                step_losses.append(losses)
                report(stop, totals)
            return params, opt_state, report.done(), jnp.concatenate(step_losses)

        return run_whole_epoch, sharded_batches

    def run_batch_by_batch(params, opt_state, perm, extras=None, progress=None):
        totals, step_losses = None, []
        batches = list(sharded_batches(perm))
        per_step = extras(len(batches)) if extras is not None else None
        report = _Reporter(progress, len(batches)) if progress is not None else None
        for s, batch in enumerate(batches):
            if per_step is not None:
                batch = {**batch, **{k: v[s] for k, v in per_step.items()}}
            params, opt_state, metrics = train_step(params, opt_state, batch)
            totals = _accumulate(totals, metrics)
            step_losses.append(metrics["loss_sum"])
            if report is not None:
                report(len(step_losses), totals)
        if report is not None:
            report.done()
        return params, opt_state, totals, step_losses

    return run_batch_by_batch, sharded_batches


class _Reporter:
    """Passes ``(done, steps, totals)`` on to ``progress`` one call late: the totals of a call
    are reported (and waited for) only after the next call is queued."""

    def __init__(self, progress, steps: int) -> None:
        self.progress, self.steps, self.pending = progress, steps, None
        progress(0, steps, None)

    def __call__(self, done: int, totals: dict) -> None:
        if self.pending is not None:
            jax.block_until_ready(self.pending[1])  # keeps the bar in step with the device
            self.progress(self.pending[0], self.steps, self.pending[1])
        self.pending = (done, totals)

    def done(self) -> dict:
        """Report the last call; return its totals."""
        done, totals = self.pending
        self.progress(done, self.steps, totals)
        return totals


def _epoch_order(state: TrainState, epoch: int, train_idx: np.ndarray) -> np.ndarray:
    """The training rows in epoch ``epoch``'s shuffled order (0-based epoch)."""
    key = jax.random.fold_in(state.shuffle_key, epoch)
    return train_idx[np.asarray(jax.random.permutation(key, len(train_idx)))]


def _warm_optimizer(state, optimizer, config, data, batches_of, train_idx, log) -> TrainState:
    """``state`` with the optimizer state :func:`minis2s.warmstart.rebuild` makes."""
    apply_fn = models.build(model_config(config, data), config.grad).apply
    batches = batches_of(_epoch_order(state, state.epoch, train_idx))
    opt_state, used = warmstart.rebuild(optimizer, state.params, batches, functools.partial(loss_fn, apply_fn=apply_fn))
    if log is not None:
        log(f"Warm start: optimizer state rebuilt from the gradients of {used} batches (parameters unchanged)")
    return dataclasses.replace(state, opt_state=opt_state)


def fit(
    config: Config,
    data: Dataset,
    params: Params | None = None,
    log: Callable[[str], None] | None = print,
    *,
    out: str | os.PathLike | None = None,
    state: TrainState | None = None,
    patience: int | None = None,
    checkpoint_every: int = 1,
    checkpoint_extra: dict | None = None,
    mesh: jax.sharding.Mesh | None = None,
    progress: Progress | None = None,
) -> tuple[Params, dict[str, list[float]]]:
    """Train as the seed's ``model.fit`` does; return final parameters and the history.

    ``mesh``: the devices to train on (:func:`minis2s.parallel.make_mesh`; default one device).
    Batches are split over them, parameters replicated; the results do not depend on it.

    ``history`` maps ``loss, accuracy, val_loss, val_accuracy, seconds`` to per-epoch lists.

    Args:
        out: a run directory; when given, a checkpoint ``out/epoch-NNNN`` (parameters,
            optimizer state, history, RNG key, early-stopping counters) is written every
            ``checkpoint_every`` epochs, in every epoch that lowers ``val_loss`` (the best
            checkpoint is always kept, as Keras' ``ModelCheckpoint(save_best_only=True)``)
            and at the last epoch. Older checkpoints are then deleted.
        state: continue from this state (see :func:`load_state`) instead of epoch 0; the
            result is identical to a run that was never interrupted.
        patience: stop when ``val_loss`` has not decreased for this many epochs in a row
            (Keras ``EarlyStopping(monitor="val_loss", patience=...)``).
        progress: told how far each epoch's training has got (:data:`minis2s.progress.Progress`;
            a :class:`minis2s.progress.ProgressBar` draws it); the numbers do not depend on it.
    Raises:
        NonFiniteLoss: the training or validation loss became NaN or infinite; nothing of
            that epoch is saved.
    """
    sides = _check_fit(config, data, patience, checkpoint_every)
    optimizer, train_step, train_epoch, eval_step = _compiled_steps(config, model_config(config, data))
    state = state or initial_state(config, data, optimizer, params)
    mesh = mesh if mesh is not None else parallel.make_mesh(1)
    run_epoch, batches_of = _epoch_runner(config, data, mesh, train_step, train_epoch)
    train_idx, val_idx = sides.train, sides.val  # the seed's: 0 .. split_at-1 and the rest
    if state.opt_state is None:  # --warm-start: rebuild RMSprop's averages on the next epoch's batches
        state = _warm_optimizer(state, optimizer, config, data, batches_of, train_idx, log)
    params, opt_state = parallel.replicate((state.params, state.opt_state), mesh)
    val_batches = list(batches_of(val_idx))  # the same every epoch: built and placed once
    saver = callbacks.Saver(out, config, data, checkpoint_extra, save_state, state.epoch)

    for epoch in range(state.epoch, config.epochs):
        t0 = time.perf_counter()
        perm = _epoch_order(state, epoch, train_idx)
        extras = dropout.combine(  # None: teacher forcing and no dropout, the seed
            scheduled.step_extras(config.teacher_forcing, config.teacher_forcing_end, config.epochs,
                                  state.shuffle_key, epoch),
            dropout.step_extras(config.dropout, state.shuffle_key, epoch),
        )
        params, opt_state, totals, step_losses = run_epoch(params, opt_state, perm, extras, progress)
        logs = _summarise(totals)
        steps = len(step_losses)
        if not math.isfinite(logs["loss"]):
            step, value = callbacks.first_bad_step(step_losses)
            last = saver.keep_last_good(state)
            raise NonFiniteLoss(callbacks.non_finite_message("loss", value, epoch + 1, step + 1, steps, last))
        val = evaluate(params, data, val_idx, config.batch_size, eval_step, lambda _: val_batches)
        logs.update({"val_" + k: v for k, v in val.items()})
        if not math.isfinite(logs["val_loss"]):  # the epoch's last update broke the parameters
            last = saver.keep_last_good(state)
            raise NonFiniteLoss(callbacks.non_finite_message("val_loss", logs["val_loss"], epoch + 1, steps, steps, last))
        seconds = time.perf_counter() - t0
        if log is not None:
            log(format_epoch(epoch + 1, config.epochs, seconds, logs))
        improved = logs["val_loss"] < state.best_val_loss
        state = callbacks.advance(state, params, opt_state, logs, seconds)
        stop = patience is not None and state.wait >= patience
        if out is not None and (improved or stop or state.epoch % checkpoint_every == 0 or state.epoch == config.epochs):
            saver.save(state)
        if stop:
            if log is not None:
                log(
                    f"Epoch {state.epoch}: early stopping, val_loss has not improved for {patience} epochs "
                    f"(best {state.best_val_loss:.4f} at epoch {state.best_epoch})"
                )
            break
    return params, state.history


# batch_plan, batches, device_data, split_train_val live in minis2s.batching; the names stay
# importable from here for existing callers.
__all__ = [
    "HISTORY_KEYS", "Config", "NonFiniteLoss", "TrainState", "batch_plan", "batches", "data_fingerprint",
    "device_data", "evaluate", "fit", "format_epoch", "initial_state", "load_state", "loss_fn", "make_eval_step",
    "make_optimizer", "make_train_epoch", "make_train_step", "model_config", "save_state", "split_train_val",
    "step_settings",
]

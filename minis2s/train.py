"""Training: the seed's ``model.fit`` as a jitted step and a plain epoch loop.

What Keras does, and what this module does the same way:

- ``validation_split=0.2`` takes the **last** 20% of the samples (before any shuffle) as
  validation data: ``split_at = floor(N * (1 - 0.2))``.
- The training samples are reshuffled every epoch (here from an explicit PRNG key,
  ``fold_in(shuffle_key, epoch)``).
- RMSprop, ``lr=1e-3, rho=0.9, epsilon=1e-7``: ``optax.rmsprop(1e-3, decay=0.9, eps=1e-7)``.
- The reported epoch loss and accuracy are means over all samples (Keras weights each
  batch's mean by its size). The last, smaller batch is padded to the full batch size
  with rows of weight 0, so it reuses the compiled step and its metrics stay exact.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import losses
from . import models
from . import parallel
from .bucketing import Batcher, fill_rows
from .data import Dataset
from .model import make_apply
from .models import ModelConfig, Params

Batch = dict[str, jax.Array]


@dataclass(frozen=True)
class Config:
    """Training settings; the defaults are the Keras seed example's."""

    num_samples: int | None = 10000  # None: every line of the file
    batch_size: int = 64
    epochs: int = 100
    latent_dim: int = 256
    validation_split: float = 0.2
    seed: int = 0
    learning_rate: float = 1e-3
    rho: float = 0.9
    epsilon: float = 1e-7
    # How the LSTM gradient is computed: "bptt" (hand-derived backward pass, faster; see
    # scripts/bench.py and docs/performance.md) or "autodiff" (JAX differentiates the scan;
    # the reference). Both give the same numbers within float tolerance.
    grad: str = "bptt"
    model: str = "seed"  # an entry of minis2s.models.MODELS; "seed" is the Keras example
    cell: str = "lstm"  # an entry of minis2s.cells.CELLS
    bucket: bool = False  # length buckets (minis2s/bucketing.py); departs from the seed
    mask_padding: bool = False  # loss over real target characters only; departs from the seed

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        if self.num_samples is not None and self.num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {self.num_samples}")
        for name in ("batch_size", "epochs", "latent_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 < self.validation_split < 1.0:
            raise ValueError(f"validation_split must be in (0, 1), got {self.validation_split}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be positive and finite, got {self.learning_rate}")
        models.check_names(self.model, self.cell, self.grad)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """Keras ``RMSprop()``: ``v = rho v + (1 - rho) g^2``, ``w -= lr g / sqrt(v + eps)``."""
    return optax.rmsprop(config.learning_rate, decay=config.rho, eps=config.epsilon)


def model_config(config: Config, data: Dataset) -> ModelConfig:
    return ModelConfig(len(data.input_vocab), len(data.target_vocab), config.latent_dim, config.model, config.cell)


# --------------------------------------------------------------------------- loss and step


def loss_fn(params: Params, batch: Batch, apply_fn: Callable | None = None) -> tuple[jax.Array, dict]:
    """Weighted mean of the per-sample Keras loss, and the sums an epoch needs.

    ``batch`` holds ``encoder_tokens (B, T_enc)``, ``encoder_lengths (B,)`` (models with
    attention need them), ``decoder_tokens (B, T_dec)``, ``target_tokens (B, T_dec)`` and
    ``weight (B,)`` (1 for real rows, 0 for padding rows). ``apply_fn(params, batch)`` is
    the model's teacher-forced forward pass (a :class:`minis2s.models.Model`'s ``apply``;
    default: the seed with the hand-derived LSTM gradient, :func:`minis2s.model.make_apply`).
    The loss of a sample is the mean over its ``T_dec`` positions, so for a full batch the
    value equals Keras' mean over batch and time.
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
    return metrics["loss_sum"] / metrics["count"], metrics


def _step(optimizer: optax.GradientTransformation, apply_fn: Callable):
    """The un-jitted update ``(params, opt_state, batch) -> (params, opt_state, metrics)``."""

    def train_step(params, opt_state, batch):
        grads, metrics = jax.grad(loss_fn, has_aux=True)(params, batch, apply_fn)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, metrics

    return train_step


def _resolve_apply(apply_fn: Callable | None, grad: str) -> Callable:
    return make_apply(grad) if apply_fn is None else apply_fn


def make_train_step(
    optimizer: optax.GradientTransformation, apply_fn: Callable | None = None, grad: str = "bptt"
):
    """``train_step(params, opt_state, batch) -> (params, opt_state, metrics)``, jitted.

    ``apply_fn(params, batch)`` is the model's forward pass; when ``None`` it is the seed's
    (:func:`minis2s.model.make_apply`) with the LSTM gradient named by ``grad``.
    """
    return jax.jit(_step(optimizer, _resolve_apply(apply_fn, grad)))


def make_train_epoch(
    optimizer: optax.GradientTransformation, apply_fn: Callable | None = None, grad: str = "bptt"
):
    """Many training steps in one call, as Keras' ``steps_per_execution`` does.

    ``train_epoch(params, opt_state, data, index, weight) -> (params, opt_state, totals, step_losses)``:
    ``data`` holds the device-resident ``encoder_tokens, decoder_tokens, target_tokens``
    ``(N, T)`` and ``encoder_lengths (N,)`` arrays (:func:`device_data`), ``index`` ``(S, B)`` the rows of each of the ``S`` batches and
    ``weight`` ``(S, B)`` their weights (0 for padding rows). A ``lax.scan`` runs the same
    update as :func:`make_train_step` once per batch, in order; ``totals`` are the metric
    sums, added batch after batch in the same order as the per-step loop would;
    ``step_losses`` ``(S,)`` each batch's loss sum, so a non-finite loss can be traced to its step.

    Why: a jitted step called from Python pays dispatch and a host-to-device copy of the
    batch every time; here the epoch's data stay on the device and Python is entered once.
    """
    step = _step(optimizer, _resolve_apply(apply_fn, grad))

    def train_epoch(params, opt_state, data, index, weight):
        def body(carry, xs):
            params, opt_state, totals = carry
            idx, w = xs  # (B,), (B,)
            batch = {k: v[idx] for k, v in data.items()}
            batch["weight"] = w
            params, opt_state, metrics = step(params, opt_state, batch)
            totals = jax.tree.map(jnp.add, totals, metrics)
            return (params, opt_state, totals), metrics["loss_sum"]

        zero = jnp.zeros((), weight.dtype)
        totals = {"loss_sum": zero, "correct_sum": zero, "count": zero}
        (params, opt_state, totals), step_losses = jax.lax.scan(body, (params, opt_state, totals), (index, weight))
        return params, opt_state, totals, step_losses

    return jax.jit(train_epoch)


def make_eval_step(apply_fn: Callable | None = None):
    """``eval_step(params, batch) -> metrics`` (sums, as in :func:`loss_fn`), jitted."""
    return jax.jit(lambda params, batch: loss_fn(params, batch, apply_fn)[1])


def batch_plan(indices: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(index, weight)``, each ``(S, B)``: the rows and weights :func:`batches` yields.

    Same padding rule: the last batch is filled with copies of its first row at weight 0.
    """
    filled = [fill_rows(indices[s : s + batch_size], batch_size) for s in range(0, len(indices), batch_size)]
    index, weight = zip(*filled)
    return np.stack(index).astype(np.int32), np.stack(weight)


def device_data(data: Dataset) -> dict[str, jax.Array]:
    """The token arrays of ``data`` on the default device (about 0.5 KB per sample)."""
    return {
        "encoder_tokens": jnp.asarray(data.encoder_tokens),
        "decoder_tokens": jnp.asarray(data.decoder_tokens),
        "target_tokens": jnp.asarray(data.target_tokens),
        "encoder_lengths": jnp.asarray(data.encoder_lengths),
    }


# --------------------------------------------------------------------------- batching


def split_train_val(n: int, validation_split: float) -> int:
    """Index where validation starts, as Keras' ``validation_split`` computes it."""
    return int(math.floor(n * (1.0 - validation_split)))


def batches(data: Dataset, indices: np.ndarray, batch_size: int) -> Iterator[Batch]:
    """Batches of ``batch_size`` rows in the order of ``indices``.

    The last batch is filled up with copies of its first row at weight 0, so every batch
    has one shape (one compilation) and padding rows change no sum.
    """
    for start in range(0, len(indices), batch_size):
        idx, weight = fill_rows(indices[start : start + batch_size], batch_size)
        yield {
            "encoder_tokens": data.encoder_tokens[idx],
            "decoder_tokens": data.decoder_tokens[idx],
            "target_tokens": data.target_tokens[idx],
            "encoder_lengths": data.encoder_lengths[idx],
            "weight": weight,
        }


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


HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch, the step and the last
    good checkpoint."""


@dataclass(frozen=True)
class TrainState:
    """Everything a resumed run needs besides the config and the data.

    ``epoch`` counts finished epochs; the shuffle order of epoch ``e`` (0-based) is
    ``permutation(fold_in(shuffle_key, e))``, so the key and the epoch fix every future
    shuffle. ``best_val_loss``, ``best_epoch`` and ``wait`` are Keras'
    ``ModelCheckpoint(save_best_only=True)`` / ``EarlyStopping`` bookkeeping.
    """

    params: Params
    opt_state: optax.OptState
    epoch: int
    history: dict[str, list[float]]
    shuffle_key: np.ndarray  # (2,) uint32, a raw PRNG key
    best_val_loss: float = math.inf
    best_epoch: int = 0
    wait: int = 0

    def training_meta(self) -> dict:
        """The JSON part of the state, as stored in a checkpoint manifest."""
        return {
            "epoch": self.epoch,
            "history": self.history,
            "shuffle_key": [int(x) for x in np.asarray(self.shuffle_key).ravel()],
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
        }


def initial_state(config: Config, data: Dataset, optimizer: optax.GradientTransformation, params: Params | None = None) -> TrainState:
    """Epoch 0: parameters from ``split(PRNGKey(seed))[0]`` (unless given), shuffles from ``[1]``."""
    init_key, shuffle_key = jax.random.split(jax.random.PRNGKey(config.seed))
    if params is None:
        params = models.build(model_config(config, data)).init(init_key)
    return TrainState(params, optimizer.init(params), 0, {k: [] for k in HISTORY_KEYS}, np.asarray(shuffle_key))


def data_fingerprint(data: Dataset) -> str:
    """SHA-256 of the training texts, so a resumed run can tell it got the same data."""
    h = hashlib.sha256()
    for t in (*data.input_texts, *data.target_texts):
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def save_state(out: str | os.PathLike, state: TrainState, config: Config, data: Dataset, extra: dict | None = None) -> str:
    """Write ``out/epoch-NNNN`` (params, optimizer state, manifest), then keep only it and
    the best checkpoint, and update ``out/history.json``. Returns the checkpoint path."""
    from . import checkpoint

    meta = {
        **checkpoint.model_meta(config, data),
        "training": state.training_meta(),
        "data_sha256": data_fingerprint(data),
        **(extra or {}),
    }
    path = checkpoint.save(checkpoint.epoch_dir(out, state.epoch), state.params, meta, state.opt_state)
    checkpoint.prune(out, keep={state.epoch, state.best_epoch})
    checkpoint.write_history(os.path.join(out, checkpoint.HISTORY_FILE), state.history)
    return str(path)


def load_state(directory: str | os.PathLike, data: Dataset | None = None) -> tuple[Config, TrainState, dict]:
    """``(config, state, manifest)`` of a training checkpoint, verified (see
    :mod:`minis2s.checkpoint`); with ``data``, also check it is the data the run used."""
    from . import checkpoint

    # A run directory resumes from its newest checkpoint (checkpoint.load alone would pick
    # the best one, which is for translating, not for continuing).
    if not checkpoint.is_checkpoint(directory) and checkpoint.list_checkpoints(directory):
        directory = checkpoint.latest_checkpoint(directory)
    params, manifest = checkpoint.load(directory)
    try:
        config = Config.from_dict(manifest["config"])
        t = manifest["training"]
        if data is not None:
            if manifest.get("data_sha256") != data_fingerprint(data):
                raise checkpoint.CheckpointError(
                    f"{directory}: the data differs from the data this run was trained on "
                    f"({manifest.get('data', {}).get('path', 'path unknown')}, num_samples={config.num_samples}); "
                    "pass the same --data"
                )
        template = make_optimizer(config).init(params)
        opt_state = checkpoint.load_optimizer_state(directory, manifest, template)
        history = {k: [float(x) for x in t["history"][k]] for k in HISTORY_KEYS}
        state = TrainState(
            params=params,
            opt_state=opt_state,
            epoch=int(t["epoch"]),
            history=history,
            shuffle_key=np.asarray(t["shuffle_key"], dtype=np.uint32),
            best_val_loss=float(t["best_val_loss"]),
            best_epoch=int(t["best_epoch"]),
            wait=int(t["wait"]),
        )
    except (KeyError, TypeError) as e:
        raise checkpoint.CheckpointError(f"{directory}: not a training checkpoint (manifest lacks {e})") from None
    if any(len(v) != state.epoch for v in history.values()):
        raise checkpoint.CheckpointError(f"{directory}: history length does not match epoch {state.epoch}")
    return config, state, manifest


def _non_finite_message(what: str, value: float, epoch: int, step: int, steps: int, last_saved: str | None) -> str:
    where = f"{what} became {value} in epoch {epoch}, step {step} of {steps}; training stopped."
    if last_saved:
        kept = f" The last good checkpoint is kept: {last_saved}."
    else:
        kept = " No checkpoint was written (no epoch finished with a finite loss)."
    return where + kept + " Lower --learning-rate (or check the data) and train again."


@functools.lru_cache(maxsize=8)
def _compiled_steps(config: Config, model_cfg: ModelConfig):
    """``(optimizer, train_step, train_epoch, eval_step)`` for a config, cached and shared by
    every :func:`fit` call in the process, so a resumed or repeated fit reuses the compilation."""
    optimizer = make_optimizer(config)
    apply_fn = models.build(model_cfg, config.grad).apply
    return (
        optimizer,
        make_train_step(optimizer, apply_fn),
        make_train_epoch(optimizer, apply_fn),
        make_eval_step(apply_fn),
    )


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
    Raises:
        NonFiniteLoss: the training or validation loss became NaN or infinite; nothing of
            that epoch is saved.
    """
    config.validate()
    if patience is not None and patience <= 0:
        raise ValueError(f"patience must be positive, got {patience}")
    if checkpoint_every <= 0:
        raise ValueError(f"checkpoint_every must be positive, got {checkpoint_every}")
    n = len(data)
    split_at = split_train_val(n, config.validation_split)
    if split_at == 0 or split_at == n:
        raise ValueError(
            f"validation_split={config.validation_split} of {n} samples leaves "
            f"{split_at} for training and {n - split_at} for validation; both must be non-empty"
        )
    optimizer, train_step, train_epoch, eval_step = _compiled_steps(
        dataclasses.replace(config, epochs=1, num_samples=None), model_config(config, data)
    )
    if state is None:
        state = initial_state(config, data, optimizer, params)
    params, opt_state = state.params, state.opt_state
    val_idx = np.arange(split_at, n)
    # devices, buckets, mask (minis2s/parallel.py, minis2s/bucketing.py); same jitted step.
    mesh = mesh if mesh is not None else parallel.make_mesh(1)
    rows = parallel.padded_batch_size(config.batch_size, mesh)
    batcher = Batcher(data, config.batch_size, rows, bucket=config.bucket, mask_padding=config.mask_padding)
    params, opt_state = parallel.replicate((params, opt_state), mesh)
    sharded_batches = lambda idx: (parallel.shard_batch(b, mesh) for b in batcher(idx))  # noqa: E731
    # The seed's fixed-shape batches on one device run as one jitted call per epoch (data on
    # the device); length buckets (shapes vary) and several devices go batch by batch
    # through the same update step.
    whole_epoch = not (config.bucket or config.mask_padding) and mesh.size == 1
    on_device = device_data(data) if whole_epoch else None
    val_batches = list(sharded_batches(val_idx))  # the same every epoch: built and placed once
    last_saved: str | None = None
    if out is not None:
        from . import checkpoint

        found = checkpoint.list_checkpoints(out)
        last_saved = str(found[-1][1]) if found else None

    def keep_last_good(good: TrainState, last_saved: str | None) -> str | None:
        """On a fault, make sure the last finished epoch is on disk (with --checkpoint-every > 1
        it may not be)."""
        if out is None or good.epoch == 0 or (last_saved and last_saved.endswith(f"epoch-{good.epoch:04d}")):
            return last_saved
        return save_state(out, good, config, data, checkpoint_extra)

    for epoch in range(state.epoch, config.epochs):
        t0 = time.perf_counter()
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(state.shuffle_key, epoch), split_at))
        if whole_epoch:
            index, weight = batch_plan(perm, config.batch_size)
            # step_losses (S,): each step's loss sum, checked once per epoch (no sync per step)
            params, opt_state, totals, step_losses = train_epoch(params, opt_state, on_device, index, weight)
        else:
            totals, step_losses = None, []
            for batch in sharded_batches(perm):
                params, opt_state, metrics = train_step(params, opt_state, batch)
                totals = _accumulate(totals, metrics)
                step_losses.append(metrics["loss_sum"])
        logs = _summarise(totals)
        steps = len(step_losses)
        if not math.isfinite(logs["loss"]):
            bad = np.asarray(jax.device_get(step_losses))
            step = int(np.argmax(~np.isfinite(bad)))
            last_saved = keep_last_good(state, last_saved)
            raise NonFiniteLoss(_non_finite_message("loss", float(bad[step]), epoch + 1, step + 1, steps, last_saved))
        val = evaluate(params, data, val_idx, config.batch_size, eval_step, lambda _: val_batches)
        logs.update({"val_" + k: v for k, v in val.items()})
        if not math.isfinite(logs["val_loss"]):  # the epoch's last update broke the parameters
            last_saved = keep_last_good(state, last_saved)
            raise NonFiniteLoss(_non_finite_message("val_loss", logs["val_loss"], epoch + 1, steps, steps, last_saved))
        seconds = time.perf_counter() - t0
        history = {k: [*state.history[k], v] for k, v in {**logs, "seconds": seconds}.items()}
        if log is not None:
            log(format_epoch(epoch + 1, config.epochs, seconds, logs))

        # Keras: ModelCheckpoint(save_best_only=True) and EarlyStopping both use np.less.
        improved = logs["val_loss"] < state.best_val_loss
        state = TrainState(
            params=params,
            opt_state=opt_state,
            epoch=epoch + 1,
            history=history,
            shuffle_key=state.shuffle_key,
            best_val_loss=logs["val_loss"] if improved else state.best_val_loss,
            best_epoch=epoch + 1 if improved else state.best_epoch,
            wait=0 if improved else state.wait + 1,
        )
        stop = patience is not None and state.wait >= patience
        if out is not None and (improved or stop or state.epoch % checkpoint_every == 0 or state.epoch == config.epochs):
            last_saved = save_state(out, state, config, data, checkpoint_extra)
        if stop:
            if log is not None:
                log(
                    f"Epoch {state.epoch}: early stopping, val_loss has not improved for {patience} epochs "
                    f"(best {state.best_val_loss:.4f} at epoch {state.best_epoch})"
                )
            break
    return params, state.history


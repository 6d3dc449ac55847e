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
import json
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
from . import parallel  # [issue 8]
from .bucketing import Batcher  # [issue 8]
from .data import Dataset
from .model import ModelConfig, Params, apply, init_params

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
    bucket: bool = False  # [issue 8] length buckets (minis2s/bucketing.py); departs from the seed
    mask_padding: bool = False  # [issue 8] loss over real target characters only; departs from the seed

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
    return ModelConfig(len(data.input_vocab), len(data.target_vocab), config.latent_dim)


# --------------------------------------------------------------------------- loss and step


def loss_fn(params: Params, batch: Batch, apply_fn: Callable = apply) -> tuple[jax.Array, dict]:
    """Weighted mean of the per-sample Keras loss, and the sums an epoch needs.

    ``batch`` holds ``encoder_tokens (B, T_enc)``, ``decoder_tokens (B, T_dec)``,
    ``target_tokens (B, T_dec)`` and ``weight (B,)`` (1 for real rows, 0 for padding rows).
    The loss of a sample is the mean over its ``T_dec`` positions, so for a full batch the
    value equals Keras' mean over batch and time.
    """
    probs = apply_fn(params, batch["encoder_tokens"], batch["decoder_tokens"])  # (B, T, V)
    ce = losses.per_position_crossentropy(probs, batch["target_tokens"])  # (B, T)
    correct = losses.per_position_correct(probs, batch["target_tokens"])  # (B, T)
    w = batch["weight"]  # (B,)
    count = jnp.sum(w)
    loss_sum = jnp.sum(w * jnp.mean(ce, axis=1))
    metrics = {
        "loss_sum": loss_sum,
        "correct_sum": jnp.sum(w * jnp.mean(correct, axis=1)),
        "count": count,
    }
    if "mask" in batch:  # [issue 8] --mask-padding: means over real target characters (bucketing.py)
        m = w[:, None] * batch["mask"]  # (B, T)
        count = jnp.sum(m)
        loss_sum = jnp.sum(m * ce)
        metrics = {"loss_sum": loss_sum, "correct_sum": jnp.sum(m * correct), "count": count}
    return loss_sum / count, metrics


def make_train_step(optimizer: optax.GradientTransformation, apply_fn: Callable = apply):
    """``train_step(params, opt_state, batch) -> (params, opt_state, metrics)``, jitted."""

    def train_step(params, opt_state, batch):
        grads, metrics = jax.grad(loss_fn, has_aux=True)(params, batch, apply_fn)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, metrics

    return jax.jit(train_step)


def make_eval_step(apply_fn: Callable = apply):
    """``eval_step(params, batch) -> metrics`` (sums, as in :func:`loss_fn`), jitted."""
    return jax.jit(lambda params, batch: loss_fn(params, batch, apply_fn)[1])


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
        idx = indices[start : start + batch_size]
        weight = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            weight[len(idx) :] = 0.0
            idx = np.concatenate([idx, np.full(batch_size - len(idx), idx[0])])
        yield {
            "encoder_tokens": data.encoder_tokens[idx],
            "decoder_tokens": data.decoder_tokens[idx],
            "target_tokens": data.target_tokens[idx],
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
    for batch in (batch_fn or (lambda idx: batches(data, idx, batch_size)))(indices):  # [issue 8] batch_fn
        totals = _accumulate(totals, eval_step(params, batch))
    return _summarise(totals)


def format_epoch(epoch: int, epochs: int, seconds: float, logs: dict[str, float]) -> str:
    """A Keras-like epoch line: ``Epoch 3/100 - 4.1s - loss: 0.1234 - accuracy: ...``."""
    parts = [f"Epoch {epoch}/{epochs}", f"{seconds:.1f}s"]
    parts += [f"{k}: {v:.4f}" for k, v in logs.items()]
    return " - ".join(parts)


# --------------------------------------------------------------------------- fit


def fit(
    config: Config,
    data: Dataset,
    params: Params | None = None,
    log: Callable[[str], None] | None = print,
    mesh: jax.sharding.Mesh | None = None,
) -> tuple[Params, dict[str, list[float]]]:
    """Train as the seed's ``model.fit`` does; return final parameters and the history.

    ``mesh``: the devices to train on (:func:`minis2s.parallel.make_mesh`; default one device).
    Batches are split over them, parameters replicated; the results do not depend on it.

    ``history`` maps ``loss, accuracy, val_loss, val_accuracy, seconds`` to per-epoch lists.
    """
    config.validate()
    n = len(data)
    split_at = split_train_val(n, config.validation_split)
    if split_at == 0 or split_at == n:
        raise ValueError(
            f"validation_split={config.validation_split} of {n} samples leaves "
            f"{split_at} for training and {n - split_at} for validation; both must be non-empty"
        )
    key = jax.random.PRNGKey(config.seed)
    init_key, shuffle_key = jax.random.split(key)
    if params is None:
        params = init_params(init_key, model_config(config, data))
    optimizer = make_optimizer(config)
    opt_state = optimizer.init(params)
    train_step = make_train_step(optimizer)
    eval_step = make_eval_step()
    val_idx = np.arange(split_at, n)
    # [issue 8] devices, buckets, mask (minis2s/parallel.py, minis2s/bucketing.py); same jitted step.
    mesh = mesh if mesh is not None else parallel.make_mesh(1)
    rows = parallel.padded_batch_size(config.batch_size, mesh)
    batcher = Batcher(data, config.batch_size, rows, bucket=config.bucket, mask_padding=config.mask_padding)
    params, opt_state = parallel.replicate((params, opt_state), mesh)
    sharded_batches = lambda idx: (parallel.shard_batch(b, mesh) for b in batcher(idx))  # noqa: E731

    history: dict[str, list[float]] = {k: [] for k in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")}
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), split_at))
        totals = None
        for batch in sharded_batches(perm):  # [issue 8]
            params, opt_state, metrics = train_step(params, opt_state, batch)
            totals = _accumulate(totals, metrics)
        logs = _summarise(totals)
        logs.update({"val_" + k: v for k, v in evaluate(params, data, val_idx, config.batch_size, eval_step, sharded_batches).items()})
        seconds = time.perf_counter() - t0
        for k, v in logs.items():
            history[k].append(v)
        history["seconds"].append(seconds)
        if log is not None:
            log(format_epoch(epoch + 1, config.epochs, seconds, logs))
        if not math.isfinite(logs["loss"]):
            raise FloatingPointError(f"loss became {logs['loss']} in epoch {epoch + 1}")
    return params, history


def write_history(path: str | os.PathLike, history: dict) -> None:
    with open(path, "w") as f:
        json.dump(history, f, indent=1)
        f.write("\n")

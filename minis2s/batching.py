"""The seed's batches: the train/validation split, fixed-shape batches of rows, and the
plan of an epoch's batches as index arrays for the one-call epoch on the device.

What Keras does, and what this module does the same way:

- ``validation_split=0.2`` takes the **last** 20% of the samples (before any shuffle) as
  validation data: ``split_at = floor(N * (1 - 0.2))``.
- Batches of ``batch_size`` rows in the order of the (shuffled) indices; the last, smaller
  batch is padded to the full batch size with rows of weight 0 (:func:`minis2s.bucketing.fill_rows`),
  so it reuses the compiled step and the epoch's metrics stay exact.

Length buckets and the padding mask (both opt-in) are :mod:`minis2s.bucketing`'s; its
:class:`~minis2s.bucketing.Batcher` without them yields exactly :func:`batches`.
"""

from __future__ import annotations

import math
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from .bucketing import fill_rows
from .data import Dataset

Batch = dict[str, np.ndarray]


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


def batch_plan(indices: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(index, weight)``, each ``(S, B)``: the rows and weights :func:`batches` yields.

    Same padding rule: the last batch is filled with copies of its first row at weight 0.
    """
    filled = [fill_rows(indices[s : s + batch_size], batch_size) for s in range(0, len(indices), batch_size)]
    index, weight = zip(*filled)
    return np.stack(index).astype(np.int32), np.stack(weight)


def device_data(data: Dataset) -> dict[str, jax.Array]:
    """The token arrays of ``data`` on the default device (about 0.5 KB per sample), which
    :func:`batch_plan`'s index arrays select from."""
    return {
        "encoder_tokens": jnp.asarray(data.encoder_tokens),
        "decoder_tokens": jnp.asarray(data.decoder_tokens),
        "target_tokens": jnp.asarray(data.target_tokens),
        "encoder_lengths": jnp.asarray(data.encoder_lengths),
    }


__all__ = ["Batch", "batch_plan", "batches", "device_data", "split_train_val"]

"""Dropout (Srivastava et al. 2014), as the transformer uses it in training (``--dropout p``).

Inverted dropout: each value is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``,
so its expectation is unchanged and evaluation and decoding use the network as it is::

    m_i ~ Bernoulli(1 - p)            drop(x)_i = m_i x_i / (1 - p)
    d drop(x)_i / d x_i = m_i / (1 - p)

The masks are drawn from explicit keys: training gives each step one key
(:func:`step_extras`, carried in the batch as ``dropout_key``), and the model splits it
over the places it drops. A batch without ``dropout_key`` (validation, the searches, any
``apply`` call of a user) is not dropped at all.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

# fold_in(shuffle_key, e) shuffles epoch e (minis2s/train.py), fold_in(shuffle_key, 2**30 + e) roots
# scheduled sampling's keys (minis2s/scheduled.py); 2**31 + e roots epoch e's dropout keys, so
# no key serves two purposes (epochs < 2**30).
_DROPOUT_STREAM = 1 << 31


def drop(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """``m * x / (1 - rate)`` with ``m ~ Bernoulli(1 - rate)`` of ``x``'s shape."""
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


def dropper(rate: float, key: jax.Array | None, sites: int) -> Callable[[jax.Array], jax.Array]:
    """A function that drops each value it is given at ``rate``, with the next of ``sites``
    keys split from ``key`` (one per place the model drops, never reused); the identity when
    ``key`` is ``None`` or ``rate`` is 0 (evaluation, decoding). Call it at most ``sites`` times."""
    if key is None or rate == 0.0:
        return lambda x: x
    keys = iter(jax.random.split(key, sites))
    return lambda x: drop(x, rate, next(keys))


def step_extras(rate: float, shuffle_key: jax.Array, epoch: int):
    """``extras(steps) -> {"dropout_key": (S, 2)}`` for epoch ``epoch`` (step ``s``'s key is
    ``fold_in(epoch's root, s)``), what the training batches carry; ``None`` without dropout."""
    if rate == 0.0:
        return None
    root = jax.random.fold_in(jnp.asarray(shuffle_key), _DROPOUT_STREAM + epoch)

    def extras(steps: int) -> dict:
        return {"dropout_key": jax.vmap(lambda s: jax.random.fold_in(root, s))(jnp.arange(steps, dtype=jnp.uint32))}

    return extras


def combine(*extras):
    """One ``extras(steps)`` of several (each ``None`` or such a function): their dicts merged;
    ``None`` when all are ``None``."""
    given = [e for e in extras if e is not None]
    if not given:
        return None
    return lambda steps: {k: v for e in given for k, v in e(steps).items()}

"""Scheduled sampling: train the decoder partly on its own predictions (``--teacher-forcing R``).

Teacher forcing (the seed) feeds the decoder the true previous character ``y_{t-1}`` at
every step; at inference it is fed its own prediction, a distribution it never saw in
training (exposure bias). Scheduled sampling (Bengio et al., 2015) mixes the two: at each
step ``t >= 1`` and for each row, with probability ``R`` (the teacher-forcing ratio) the
input is the true ``y_{t-1}``, otherwise the model's own previous prediction

.. math::  \\hat y_{t-1} = \\arg\\max_v p(v \\mid \\text{inputs}_{<t}, x)

Argmax, not a sample: it is the choice greedy decoding makes, and being an integer it
carries no gradient (the gradient flows through the probabilities, never through the
choice of input). Step 0 always reads the start token. The target stays the true
``y_t``: the loss is still the crossentropy of the true next character.

Because step ``t``'s input depends on step ``t-1``'s output, the decoder runs one
``model.decode_step`` per step inside one ``lax.scan`` (not the whole-sequence layer), so
this works for every model of :mod:`minis2s.models`; its gradient is JAX's through that
scan. ``R = 1`` is the teacher-forced model to float rounding (tested); training keeps the
seed's layer path, bit for bit, whenever the ratio is 1 (:func:`uses_scheduled_sampling`).

Randomness: one key per training step (``fold_in`` of the run's key, :func:`step_extras`),
split here into one key per decoder step; each key draws the
``(B,)`` coins of one step and is never used again.

The ratio may decay linearly over training (:func:`ratio_at`): ``R_e`` goes from
``teacher_forcing`` at the first epoch to ``teacher_forcing_end`` at the last.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .models import Batch, Model, Params


def apply(model: Model, params: Params, batch: Batch, key: jax.Array, ratio: float | jax.Array) -> jax.Array:
    """Probabilities ``(B, T, V)`` with the decoder fed the truth with probability ``ratio``.

    Args:
        model: the model's functions (its ``encode`` and ``decode_step`` are used).
        batch: ``encoder_tokens (B, T_e)``, ``encoder_lengths (B,)``, ``decoder_tokens (B, T)``.
        key: PRNG key for the coins of this batch.
        ratio: probability of feeding the true previous token, in ``[0, 1]``.
    """
    memory, state = model.encode(params, batch["encoder_tokens"], batch["encoder_lengths"])
    truth = jnp.asarray(batch["decoder_tokens"]).T  # (T, B): truth[t] is the true input of step t
    steps = truth.shape[0]
    keys = jax.random.split(key, steps)  # one key per step

    def step(carry, xs):
        state, predicted = carry
        t, true_t, key_t = xs
        feed_truth = (t == 0) | jax.random.bernoulli(key_t, ratio, true_t.shape)  # (B,)
        token = jnp.where(feed_truth, true_t, predicted)
        probs, state, _ = model.decode_step(params, memory, token, state)  # (B, V)
        return (state, jnp.argmax(probs, axis=-1).astype(true_t.dtype)), probs

    init = (state, truth[0])
    _, probs = jax.lax.scan(step, init, (jnp.arange(steps), truth, keys))  # (T, B, V)
    return jnp.swapaxes(probs, 0, 1)


def ratio_at(epoch: int, epochs: int, start: float, end: float | None) -> float:
    """The teacher-forcing ratio of ``epoch`` (0-based) of ``epochs``: ``start`` throughout,
    or linearly from ``start`` (first epoch) to ``end`` (last epoch)."""
    if end is None or epochs <= 1:
        return float(start)
    return float(start + (end - start) * epoch / (epochs - 1))


def uses_scheduled_sampling(start: float, end: float | None) -> bool:
    """Whether any epoch feeds predictions (else training keeps the teacher-forced path)."""
    return start < 1.0 or (end is not None and end < 1.0)


# fold_in(shuffle_key, e) shuffles epoch e (minis2s/train.py); fold_in(shuffle_key, _COIN_STREAM + e)
# is the root of epoch e's scheduled-sampling keys, so no key serves twice (epochs < 2**30).
_COIN_STREAM = 1 << 30


def step_extras(start: float, end: float | None, epochs: int, shuffle_key: jax.Array, epoch: int):
    """``extras(steps) -> {"coin_key": (S, 2), "teacher_forcing": (S,)}`` for epoch ``epoch``
    (step ``s`` draws with ``fold_in(epoch key, s)``, at the ratio :func:`ratio_at`), what the
    training batches carry; ``None`` on the teacher-forced path (:func:`uses_scheduled_sampling`)."""
    if not uses_scheduled_sampling(start, end):
        return None
    ratio = ratio_at(epoch, epochs, start, end)
    root = jax.random.fold_in(jnp.asarray(shuffle_key), _COIN_STREAM + epoch)

    def extras(steps: int) -> dict:
        keys = jax.vmap(lambda s: jax.random.fold_in(root, s))(jnp.arange(steps, dtype=jnp.uint32))
        return {"coin_key": keys, "teacher_forcing": jnp.full((steps,), ratio, jnp.float32)}

    return extras

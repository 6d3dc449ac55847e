"""``train --warm-start``: the optimizer state of a checkpoint that kept only its parameters.

A shipped model (:mod:`minis2s.pretrained`) holds the parameters and the training record
(epochs, history, shuffle key) but not RMSprop's running mean of squared gradients

    v_t = rho v_{t-1} + (1 - rho) g_t^2,        w_t = w_{t-1} - lr g_t / sqrt(v_t + eps),

because it would triple the file. Training on from ``v = 0`` would make the first steps
``lr g / sqrt((1 - rho) g^2) = lr / sqrt(1 - rho) ~ 3.2 lr`` in every coordinate, whatever
its gradient's usual size: a jolt to a trained model. :func:`rebuild` instead runs the
``v`` recursion alone over the gradients of the next epoch's first :data:`BATCHES`
batches, parameters unchanged. After ``K`` batches ``v`` carries a weight of
``1 - rho^K`` (0.97 for ``K = 32``, ``rho = 0.9``) of a steady average of the current
gradients' squares, so the first real step is about the size the run's own steps had.

It is not the optimizer state the run would have had (that averaged the last ~10 steps'
gradients at the parameters of those steps); a warm-started run does not reproduce an
uninterrupted one bit for bit, as ``--resume`` does.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterable

import jax
import optax

#: Gradient batches the running averages are rebuilt from.
BATCHES = 32


def rebuild(
    optimizer: optax.GradientTransformation,
    params,
    batches: Iterable[dict],
    loss: Callable,
    count: int = BATCHES,
) -> tuple[optax.OptState, int]:
    """``(opt_state, batches used)``: ``optimizer.init(params)`` updated with the gradients of
    ``loss(params, batch) -> (objective, aux)`` on the first ``count`` of ``batches``; the
    updates themselves are dropped, so ``params`` do not move."""

    @jax.jit
    def accumulate(params, opt_state, batch):
        grads, _ = jax.grad(loss, has_aux=True)(params, batch)
        _, opt_state = optimizer.update(grads, opt_state, params)
        return opt_state

    opt_state, used = optimizer.init(params), 0
    for batch in itertools.islice(batches, count):
        opt_state = accumulate(params, opt_state, batch)
        used += 1
    return opt_state, used


__all__ = ["BATCHES", "rebuild"]

"""Keras' ``categorical_crossentropy`` on probabilities and ``categorical_accuracy``.

Keras computes the loss from probabilities (the model ends in a softmax), not logits::

    p      = probs / sum(probs)                    renormalise along V
    p      = clip(p, eps, 1 - eps)                 eps = 1e-7
    loss   = -sum_v y_v log p_v = -log p[target]   one-hot y
    report = mean over batch and time              padding positions included

The clip makes the gradient zero wherever ``p[target]`` is below ``1e-7`` or above
``1 - 1e-7``: those positions no longer train.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPSILON = 1e-7


def per_position_crossentropy(probs: jax.Array, targets: jax.Array) -> jax.Array:
    """``-log clip(p[target])`` for each position.

    Args:
        probs: ``(..., V)`` probabilities.
        targets: ``(...)`` int tokens, or ``(..., V)`` one-hot floats.
    Returns:
        ``(...)`` losses.
    """
    p = probs / jnp.sum(probs, axis=-1, keepdims=True)
    p = jnp.clip(p, EPSILON, 1.0 - EPSILON)
    if jnp.issubdtype(targets.dtype, jnp.integer):
        return -jnp.log(jnp.take_along_axis(p, targets[..., None], axis=-1)[..., 0])
    return -jnp.sum(targets * jnp.log(p), axis=-1)


def categorical_crossentropy(probs: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean of :func:`per_position_crossentropy` over every position (batch and time)."""
    return jnp.mean(per_position_crossentropy(probs, targets))


def per_position_correct(probs: jax.Array, targets: jax.Array) -> jax.Array:
    """1.0 where ``argmax(probs) == target`` (Keras ``categorical_accuracy``), else 0.0."""
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        targets = jnp.argmax(targets, axis=-1)
    return (jnp.argmax(probs, axis=-1) == targets).astype(probs.dtype)


def categorical_accuracy(probs: jax.Array, targets: jax.Array) -> jax.Array:
    """Fraction of positions, padding included, whose argmax is the target."""
    return jnp.mean(per_position_correct(probs, targets))

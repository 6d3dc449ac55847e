"""Keras categorical cross-entropy on probabilities and categorical accuracy, by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import losses


def test_crossentropy_hand_values():
    probs = jnp.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]])  # (1, 2, 3)
    targets = jnp.array([[0, 1]])
    want = (-np.log(0.7) - np.log(0.1)) / 2
    assert float(losses.categorical_crossentropy(probs, targets)) == pytest.approx(want, rel=1e-6)


def test_crossentropy_renormalises_like_keras():
    # Keras divides by the sum before the log: unnormalised inputs still give -log p_norm.
    probs = jnp.array([[2.0, 1.0, 1.0]])
    assert float(losses.categorical_crossentropy(probs, jnp.array([0]))) == pytest.approx(-np.log(0.5), rel=1e-6)


def test_crossentropy_clips_at_epsilon():
    probs = jnp.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    # target 1 has p = 0 -> clipped to 1e-7; target 0 has p = 1 -> clipped to 1 - 1e-7
    got = losses.per_position_crossentropy(probs, jnp.array([1, 0]))
    assert float(got[0]) == pytest.approx(-np.log(1e-7), rel=1e-5)  # 16.118
    # 1 - 1e-7 rounds to 1 - 1.19e-7 in float32, as it does in Keras: loss ~1.2e-7, not 0.
    assert 0.9e-7 < float(got[1]) < 1.3e-7


def test_integer_and_one_hot_targets_agree():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 6, 5))
    probs = jnp.asarray(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), jnp.float32)
    t = rng.integers(0, 5, size=(4, 6))
    one_hot = jnp.asarray(np.eye(5)[t], jnp.float32)
    a = losses.categorical_crossentropy(probs, jnp.asarray(t))
    b = losses.categorical_crossentropy(probs, one_hot)
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    assert float(losses.categorical_accuracy(probs, jnp.asarray(t))) == float(
        losses.categorical_accuracy(probs, one_hot)
    )


def test_accuracy_counts_padding_positions():
    # Two sentences of 4 steps; token 0 is the pad " ". Padding positions count, as in Keras.
    targets = jnp.array([[1, 2, 0, 0], [3, 0, 0, 0]])
    pred = jnp.array([[1, 3, 0, 0], [3, 0, 1, 0]])  # one wrong real char, one wrong pad
    probs = jnp.eye(4)[pred]
    assert float(losses.categorical_accuracy(probs, targets)) == pytest.approx(6 / 8)
    # Over real characters only it would be 2/3: the seed's figure is inflated by padding.
    np.testing.assert_array_equal(losses.per_position_correct(probs, targets), [[1, 0, 1, 1], [1, 1, 0, 1]])

"""minis2s.layernorm and minis2s.mha against Keras 3 (JAX backend) ``LayerNormalization`` and
``MultiHeadAttention``, float32: the same weights, ragged padding masks and a causal mask;
outputs, attention weights and every gradient agree to ~1e-6 relative.

The Keras layers are differentiated by JAX through ``stateless_call``, so the gradients come
from Keras' own forward; ours from the hand-derived backward passes.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is first imported
from tests.conftest import missing, require_module  # noqa: E402

keras = require_module("keras")
if keras.backend.backend() != "jax":
    missing(f"Keras was already imported with the {keras.backend.backend()} backend")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from minis2s import layernorm, mha  # noqa: E402

RTOL = 2e-6


def relative(ours, theirs) -> float:
    """``max |ours - keras| / max |keras|`` (the Keras value must not be all zero)."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = float(np.max(np.abs(theirs)))
    assert scale > 0, "comparing zeros proves nothing"
    return float(np.max(np.abs(ours - theirs))) / scale


def _keras_by_name(layer) -> dict[str, object]:
    """``{"query/kernel": variable, ...}``: the layer's variables named below the layer."""
    return {"/".join(v.path.split("/")[1:]): v for v in layer.trainable_variables}


def test_layer_norm_matches_keras_and_defaults():
    B, T, d = 3, 4, 6
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
    x = 2.0 * jax.random.normal(k1, (B, T, d)) + 0.5
    params = {"gamma": 1.0 + 0.3 * jax.random.normal(k2, (d,)), "beta": 0.2 * jax.random.normal(k3, (d,))}
    w = jax.random.normal(k4, (B, T, d))

    layer = keras.layers.LayerNormalization()
    layer.build((B, T, d))
    assert layer.epsilon == layernorm.EPSILON  # Keras' default, which ours follows
    fresh = layernorm.init_layer_norm(d)
    np.testing.assert_array_equal(fresh["gamma"], np.asarray(layer.gamma))
    np.testing.assert_array_equal(fresh["beta"], np.asarray(layer.beta))
    order = [v.path.split("/")[-1] for v in layer.trainable_variables]

    def keras_loss(p, x):
        y, _ = layer.stateless_call([p[n] for n in order], [], x)
        return jnp.sum(w * jnp.tanh(y)), y

    def our_loss(p, x):
        y = layernorm.layer_norm(p, x)
        return jnp.sum(w * jnp.tanh(y)), y

    (lk, yk), gk = jax.jit(jax.value_and_grad(keras_loss, argnums=(0, 1), has_aux=True))(params, x)
    (lo, yo), go = jax.jit(jax.value_and_grad(our_loss, argnums=(0, 1), has_aux=True))(params, x)
    assert relative(yo, yk) < RTOL
    assert relative(lo, lk) < RTOL
    for name in ("gamma", "beta"):
        assert relative(go[0][name], gk[0][name]) < RTOL, name
    assert relative(go[1], gk[1]) < RTOL


def test_init_mha_layout_and_limits_match_keras():
    d, h, dk, dv = 8, 2, 3, 5
    layer = keras.layers.MultiHeadAttention(num_heads=h, key_dim=dk, value_dim=dv)
    layer.build((1, 2, d), (1, 3, d))
    ours = mha.init_mha(jax.random.PRNGKey(1), d, h, dk, dv)
    theirs = _keras_by_name(layer)
    flat = {f"{a}/{b}": v for a, sub in ours.items() for b, v in sub.items()}
    assert sorted(flat) == sorted(theirs)
    for name, v in flat.items():
        assert v.shape == tuple(theirs[name].shape), name
        if name.endswith("bias"):
            assert not np.any(np.asarray(v)) and not np.any(np.asarray(theirs[name])), name
    # Glorot-uniform with EinsumDense's fans: the input axes against the output axes.
    for name, fan_in, fan_out in [("query", d, h * dk), ("key", d, h * dk), ("value", d, h * dv),
                                  ("attention_output", h * dv, d)]:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        ours_k, keras_k = np.asarray(flat[f"{name}/kernel"]), np.asarray(theirs[f"{name}/kernel"])
        assert np.max(np.abs(ours_k)) <= limit and np.max(np.abs(keras_k)) <= limit, name
        # both fill most of the interval (the max of n uniforms is near the limit)
        assert np.max(np.abs(ours_k)) > 0.7 * limit and np.max(np.abs(keras_k)) > 0.7 * limit, name


def _mha_problem(B, Tq, Tk, d, key):
    ks = jax.random.split(key, 5)
    params = mha.init_mha(ks[0], d, 2, 3, 4)
    # non-zero biases so that their gradients and the bias terms are exercised
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(ks[1], a.shape), params)
    query = jax.random.normal(ks[2], (B, Tq, d))
    value = jax.random.normal(ks[3], (B, Tk, d))
    w = jax.random.normal(ks[4], (B, Tq, d))
    return params, query, value, w


@pytest.mark.parametrize("kind", ["cross", "causal"])
def test_multi_head_attention_matches_keras(kind):
    """Cross-attention over ragged padded keys (one row with one real key), and decoder
    self-attention with the causal mask and the padding mask of ragged queries."""
    B, d = 3, 8
    Tq, Tk = (4, 5) if kind == "cross" else (5, 5)
    params, query, value, w = _mha_problem(B, Tq, Tk, d, jax.random.PRNGKey(3 if kind == "cross" else 4))
    if kind == "cross":
        mask = mha.attention_mask(mha.padding_mask(jnp.array([5, 2, 1]), Tk))
        mask = jnp.broadcast_to(mask, (B, Tq, Tk))
        value_in = value
    else:
        valid = mha.padding_mask(jnp.array([5, 3, 1]), Tq)
        mask = mha.attention_mask(valid, valid, causal=True)
        value_in = query
    # Rows that are fully masked (padded queries) give Keras' uniform weights: exercise them too.
    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=4)
    layer.build((B, Tq, d), (B, value_in.shape[1], d))
    order = ["/".join(v.path.split("/")[1:]) for v in layer.trainable_variables]

    def keras_loss(p, query, value):
        trainable = [p[n.split("/")[0]][n.split("/")[1]] for n in order]
        (y, a), _ = layer.stateless_call(trainable, [], query, value, attention_mask=mask,
                                         return_attention_scores=True)
        return jnp.sum(w * jnp.tanh(y)) + jnp.sum(jnp.sin(3.0 * a)), (y, a)

    def our_loss(p, query, value):
        y, a = mha.multi_head_attention(p, query, value, mask=mask)
        return jnp.sum(w * jnp.tanh(y)) + jnp.sum(jnp.sin(3.0 * a)), (y, a)

    grad = lambda f: jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))  # noqa: E731
    (lk, (yk, ak)), gk = grad(keras_loss)(params, query, value_in)
    (lo, (yo, ao)), go = grad(our_loss)(params, query, value_in)
    assert ao.shape == (B, 2, Tq, Tk)
    assert relative(yo, yk) < RTOL
    assert relative(ao, ak) < RTOL
    assert relative(lo, lk) < RTOL
    # padding gets weight exactly 0 wherever the row has a real key
    real_row = np.asarray(mask).any(-1)[:, None, :, None]
    assert np.all(np.where(real_row & ~np.asarray(mask)[:, None], np.asarray(ao), 0.0) == 0.0)
    for (path, g_ours), g_keras in zip(jax.tree_util.tree_leaves_with_path(go[0]), jax.tree.leaves(gk[0])):
        name = jax.tree_util.keystr(path)
        if name == "['key']['bias']":
            # Exactly 0 in exact arithmetic: q . b^K is the same for every key of a row and the
            # softmax ignores a constant shift. Both sides hold float32 rounding noise only.
            scale = float(np.max(np.abs(np.asarray(gk[0]["key"]["kernel"]))))
            assert max(np.max(np.abs(g_ours)), np.max(np.abs(g_keras))) < 1e-5 * scale
            continue
        assert relative(g_ours, g_keras) < RTOL, name
    assert relative(go[1], gk[1]) < RTOL
    assert relative(go[2], gk[2]) < RTOL

"""The Transformer against its Keras 3 (JAX backend) oracle,
:func:`minis2s.convert_transformer.keras_transformer_model`.

Same weights (written into Keras by path, and read back), a ragged batch (encoder lengths
5, 3 and 1 of width 5): probabilities, the loss and every weight's gradient agree to 1e-6
relative (each leaf against its own largest Keras value), with Keras' ``floatx`` and JAX's
x64 switched on for this module only. (In float32 the largest gradient deviation was 1.02e-6.
In float64 it is 5.9e-7 and the probabilities' 2.2e-7: Keras' float64 LayerNormalization
alone sits 1.8e-7 from a NumPy float64 reference on unit-normal rows, cause not found, so
this oracle cannot be held much tighter than 1e-6.) The loss
is the masked one (``--mask-padding``), with a decoder row shorter than the width, so the
gradient also shows that the decoder's padding positions reach no real position.

Tiny sizes (2 layers, 2 heads, d 8): two compiled gradient programs in the fast tier.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is first imported
from tests.conftest import missing, require_module  # noqa: E402

keras = require_module("keras")  # skips the module locally without Keras, fails in CI
if keras.backend.backend() != "jax":
    missing(f"Keras was already imported with the {keras.backend.backend()} backend")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from minis2s import models, train  # noqa: E402
from minis2s.convert import (  # noqa: E402
    ConversionError, from_keras_transformer, keras_transformer_model, to_keras_transformer,
)

RTOL = 1e-6
CONFIG = models.ModelConfig(7, 9, 1, "transformer", layers=2, heads=2, embed_dim=8, ff_dim=12, max_positions=8)
LENGTHS = np.array([5, 3, 1], np.int32)  # the encoder rows: full, padded, one character
TARGET_LENGTHS = np.array([6, 4, 2], np.int32)  # the decoder rows (--mask-padding counts these)


def relative(ours, keras_value) -> float:
    """``max |ours - keras| / max |keras|``."""
    ours, keras_value = np.asarray(ours, np.float64), np.asarray(keras_value, np.float64)
    scale = float(np.max(np.abs(keras_value)))
    assert scale > 0  # comparing zeros proves nothing
    return float(np.max(np.abs(ours - keras_value))) / scale


@pytest.fixture(scope="module", autouse=True)
def float64():
    """Keras and JAX in float64 for this module; both settings restored after it."""
    x64, floatx, policy = jax.config.jax_enable_x64, keras.config.floatx(), keras.config.dtype_policy()
    jax.config.update("jax_enable_x64", True)
    keras.config.set_floatx("float64")
    # The global dtype policy is made from floatx once and kept: after another module built
    # Keras layers it would stay float32, and so would the layers built here.
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_dtype_policy(policy)
    keras.config.set_floatx(floatx)
    jax.config.update("jax_enable_x64", x64)


@pytest.fixture(scope="module")
def params0(float64):
    """Random float64 weights in the tree ``init`` makes (its shapes only, traced, not run:
    compiling the initialisers' random draws would cost seconds), at the scales Keras'
    initialisers give, plus noise, so every zero bias and unit LayerNorm scale is random
    too and each of their paths is really compared."""
    shapes = jax.eval_shape(models.build(CONFIG).init, jax.random.PRNGKey(3))
    rng = np.random.default_rng(3)

    def draw(path, leaf):
        name = path[-1].key
        if name == "gamma":
            base = np.ones(leaf.shape)
        elif name in ("kernel", "embeddings"):
            fan_in, fan_out = leaf.shape[0], int(np.prod(leaf.shape[1:]))
            limit = 0.05 if name == "embeddings" else np.sqrt(6.0 / (fan_in + fan_out))  # glorot uniform
            base = rng.uniform(-limit, limit, leaf.shape)
        else:  # biases and beta: zeros in Keras
            base = np.zeros(leaf.shape)
        return jnp.asarray(base + 0.1 * rng.standard_normal(leaf.shape), jnp.float64)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture(scope="module")
def keras_model(params0):
    np_state, py_state = np.random.get_state(), random.getstate()
    keras.utils.set_random_seed(7)  # also seeds numpy and random: restore them after
    m = keras_transformer_model(CONFIG)
    np.random.set_state(np_state)
    random.setstate(py_state)
    return to_keras_transformer(params0, m)


@pytest.fixture(scope="module")
def batch(float64):
    rng = np.random.default_rng(0)
    t_enc, t_dec, pad = 5, 6, CONFIG.num_decoder_tokens - 1
    real = np.arange(t_dec)[None, :] < TARGET_LENGTHS[:, None]
    return {
        "encoder_tokens": rng.integers(0, CONFIG.num_encoder_tokens, (3, t_enc)).astype(np.int32),
        "encoder_lengths": LENGTHS,
        # the decoder's padding is a token no real position reads (the seed pads with spaces)
        "decoder_tokens": np.where(real, rng.integers(0, pad, (3, t_dec)), pad).astype(np.int32),
        "target_tokens": rng.integers(0, CONFIG.num_decoder_tokens, (3, t_dec)).astype(np.int32),
        "weight": np.ones(3, np.float64),
        "mask": real.astype(np.float64),
    }


def keras_inputs(b) -> list:
    mask = np.arange(b["encoder_tokens"].shape[1])[None, :] < b["encoder_lengths"][:, None]
    return [b["encoder_tokens"], mask, b["decoder_tokens"]]


def keras_loss_and_gradients(m, b) -> tuple[float, dict]:
    """Keras' masked crossentropy (mean over the real target characters) and its gradient
    with respect to every Keras variable, keyed by the minis2s path."""
    trainable = [v.value for v in m.trainable_variables]
    non_trainable = [v.value for v in m.non_trainable_variables]
    x, y, w = keras_inputs(b), b["target_tokens"], b["mask"]

    def loss(values):
        probs, _ = m.stateless_call(values, non_trainable, x, training=True)
        ce = keras.losses.sparse_categorical_crossentropy(y, probs)  # (B, Td)
        return keras.ops.sum(ce * w) / keras.ops.sum(w)

    value, grads = jax.jit(jax.value_and_grad(loss))(trainable)
    return float(value), {v.path.replace(".", "/"): np.asarray(g) for v, g in zip(m.trainable_variables, grads)}


def test_weights_round_trip_through_keras(keras_model, params0):
    back = from_keras_transformer(keras_model)
    flat = lambda t: {"/".join(str(k.key) for k in p): np.asarray(a) for p, a in jax.tree_util.tree_flatten_with_path(t)[0]}  # noqa: E731
    ours, theirs = flat(params0), flat(back)
    assert ours.keys() == theirs.keys()
    differ = [(k, ours[k].dtype, theirs[k].dtype) for k in ours if not np.array_equal(ours[k], theirs[k])]
    assert not differ, differ[:5]
    wrong = jax.tree.map(lambda a: a, params0)
    wrong["dense"]["bias"] = wrong["dense"]["bias"][:-1]
    with pytest.raises(ConversionError, match="dense/bias has shape"):
        to_keras_transformer(wrong, keras_transformer_model(CONFIG))


def test_probabilities_match_keras(keras_model, params0, batch):
    p_keras = np.asarray(keras_model.predict_on_batch(keras_inputs(batch)))
    p_ours = np.asarray(models.build(CONFIG).apply(params0, batch))
    assert p_ours.shape == p_keras.shape == (3, 6, CONFIG.num_decoder_tokens)
    assert relative(p_ours, p_keras) < RTOL
    # the padding of the English is invisible: wider padding changes nothing
    wider = dict(batch, encoder_tokens=np.pad(batch["encoder_tokens"], ((0, 0), (0, 2)), constant_values=1))
    assert relative(models.build(CONFIG).apply(params0, wider), p_keras) < RTOL


def test_loss_and_every_gradient_match_keras(keras_model, params0, batch):
    model = models.build(CONFIG)
    k_loss, k_grads = keras_loss_and_gradients(keras_model, batch)
    loss, grads = jax.jit(jax.value_and_grad(lambda p: train.loss_fn(p, batch, model.apply)[0]))(params0)
    assert relative(loss, k_loss) < RTOL
    flat = {"/".join(str(k.key) for k in p): g for p, g in jax.tree_util.tree_flatten_with_path(grads)[0]}
    assert flat.keys() == k_grads.keys()
    # a key's bias adds the same number to all of a query's scores, which the softmax
    # ignores: its gradient is zero in exact arithmetic, float64 rounding on both sides
    zero = [path for path in flat if path.endswith("key/bias")]
    tiny = {p: (float(np.max(np.abs(flat[p]))), float(np.max(np.abs(k_grads[p])))) for p in zero}
    assert len(zero) == 6 and max(max(v) for v in tiny.values()) < 1e-6, tiny
    worst = {path: relative(flat[path], k_grads[path]) for path in flat if path not in zero}
    assert max(worst.values()) < RTOL, sorted(worst.items(), key=lambda kv: -kv[1])[:3]
    # the decoder's padding positions (out of the loss) reach no real position: the padding
    # token's embedding row, read only there, gets no gradient (nor in Keras)
    pad = CONFIG.num_decoder_tokens - 1
    assert np.all(np.asarray(flat["decoder_embedding/token/embeddings"])[pad] == 0.0)
    assert np.all(k_grads["decoder_embedding/token/embeddings"][pad] == 0.0)

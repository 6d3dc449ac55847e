"""The Luong model against its Keras 3 (JAX backend) oracle, :func:`minis2s.convert.keras_luong_model`.

Same weights (copied by name, or read out of Keras with ``convert.from_keras``), a batch
of sentences of different lengths padded to the longest English sentence of the corpus:
probabilities, loss, accuracy, the attention weights and every weight's gradient agree
to 1e-6 relative (each leaf against its own largest Keras value), and so do the weights
after a few RMSprop steps. Padding gets attention weight exactly 0 in both.

Largest deviations are printed at the end (``pytest -s tests/test_attention_parity.py``).
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

from minis2s import attention, losses, models, train  # noqa: E402
from minis2s.convert import (  # noqa: E402
    LUONG_LAYERS, ConversionError, find_keras_layers, from_keras, keras_luong_model,
)
from minis2s.data import DEMO_PATH, load_dataset, one_hot  # noqa: E402

LATENT = 16
ROWS = [0, 5, 11, 17, 23, 31, 40]  # 7 sentences of 3 to 14 characters (14: no padding)
RTOL = 1e-6

DEVIATIONS: dict[str, float] = {}


def relative(ours, keras_value, name: str) -> float:
    """``max |ours - keras| / max |keras|``, recorded under ``name``."""
    ours, keras_value = np.asarray(ours, np.float64), np.asarray(keras_value, np.float64)
    scale = float(np.max(np.abs(keras_value)))
    assert scale > 0, name  # comparing zeros proves nothing
    value = float(np.max(np.abs(ours - keras_value))) / scale
    DEVIATIONS[name] = max(DEVIATIONS.get(name, 0.0), value)
    return value


@pytest.fixture(scope="module", autouse=True)
def report_deviations():
    yield
    print("\nLuong vs Keras, largest |minis2s - Keras| / max |Keras| per quantity (float32):")
    for k, v in DEVIATIONS.items():
        print(f"  {k:<44s} {v:.2e}")


@pytest.fixture(scope="module")
def ds():
    return load_dataset(DEMO_PATH, 44)


@pytest.fixture(scope="module")
def config(ds):
    return models.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), LATENT, "luong")


@pytest.fixture(scope="module")
def params0(config):
    """minis2s' own initialisation, with non-zero Dense biases so that their gradients and
    the bias paths are really compared."""
    params = models.build(config).init(jax.random.PRNGKey(42))
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    params["combine"]["bias"] = 0.1 * jax.random.normal(keys[0], params["combine"]["bias"].shape)
    params["dense"]["bias"] = 0.1 * jax.random.normal(keys[1], params["dense"]["bias"].shape)
    return params


@pytest.fixture(scope="module")
def keras_model(ds):
    np_state, py_state = np.random.get_state(), random.getstate()
    keras.utils.set_random_seed(7)  # also seeds numpy and random: restore them after
    m = keras_luong_model(len(ds.input_vocab), len(ds.target_vocab), LATENT)
    np.random.set_state(np_state)
    random.setstate(py_state)
    return m


@pytest.fixture(scope="module")
def batch(ds):
    idx = np.array(ROWS)
    lengths = ds.encoder_lengths[idx]
    assert len(set(lengths.tolist())) > 3 and lengths.min() < ds.max_encoder_seq_length  # padded and full rows
    mask = np.arange(ds.max_encoder_seq_length)[None, :] < lengths[:, None]
    return {
        "x_enc": one_hot(ds.encoder_tokens[idx], len(ds.input_vocab)),
        "mask": mask,
        "x_dec": one_hot(ds.decoder_tokens[idx], len(ds.target_vocab)),
        "y": one_hot(ds.target_tokens[idx], len(ds.target_vocab)),
        "lengths": lengths.astype(np.int32),
        "tokens": (ds.encoder_tokens[idx], ds.decoder_tokens[idx], ds.target_tokens[idx]),
    }


def ours(b, onehot: bool = True) -> dict:
    enc, dec, tgt = b["tokens"]
    return {
        "encoder_tokens": b["x_enc"] if onehot else enc,
        "encoder_lengths": b["lengths"],
        "decoder_tokens": b["x_dec"] if onehot else dec,
        "target_tokens": tgt,
        "weight": np.ones(len(tgt), np.float32),
    }


def keras_inputs(b) -> list:
    return [b["x_enc"], b["mask"], b["x_dec"]]


from tests._keras_oracle import keras_gradients, load_into_keras  # noqa: E402 (after Keras)


def keras_attention_weights(m, b) -> np.ndarray:
    """The Keras Attention layer's weights ``(B, Td, Te)``, on the Keras model's own encoder
    and decoder outputs (read out with a probe model)."""
    layers = find_keras_layers(m)
    attn = next(layer for layer in m.layers if isinstance(layer, keras.layers.Attention))
    probe = keras.Model(m.inputs, [layers["decoder"].output, layers["encoder"].output[0]])
    query, values = probe.predict_on_batch(keras_inputs(b))
    _, weights = attn([query, values], mask=[None, b["mask"]], return_attention_scores=True)
    return np.asarray(weights)


# --------------------------------------------------------------------------- forward, loss, gradients


def test_probabilities_loss_accuracy_and_attention_match(keras_model, config, params0, batch):
    model = models.build(config)
    load_into_keras(keras_model, params0)
    p_keras = np.asarray(keras_model.predict_on_batch(keras_inputs(batch)))
    p_ours = np.asarray(model.apply(params0, ours(batch)))
    p_tokens = np.asarray(model.apply(params0, ours(batch, onehot=False)))  # the gather path
    assert p_ours.shape == p_keras.shape == batch["y"].shape
    assert relative(p_ours, p_keras, "probabilities") < RTOL
    assert relative(p_tokens, p_keras, "probabilities, token inputs") < RTOL

    k_loss, k_acc = keras_model.test_on_batch(keras_inputs(batch), batch["y"])
    loss = float(losses.categorical_crossentropy(jnp.asarray(p_ours), batch["y"]))
    assert relative(loss, k_loss, "loss") < RTOL
    assert abs(float(losses.categorical_accuracy(jnp.asarray(p_ours), batch["y"])) - k_acc) < 1e-6

    # the attention weights of every decoder position, as the decoder steps compute them
    memory, state = model.encode(params0, jnp.asarray(batch["tokens"][0]), jnp.asarray(batch["lengths"]))
    steps = []
    for t in range(batch["x_dec"].shape[1]):
        _, state, extra = model.decode_step(params0, memory, jnp.asarray(batch["tokens"][1][:, t]), state)
        steps.append(np.asarray(extra["attention"]))
    w_ours, w_keras = np.stack(steps, axis=1), keras_attention_weights(keras_model, batch)  # (B, Td, Te)
    assert relative(w_ours, w_keras, "attention weights") < RTOL
    padding = ~batch["mask"][:, None, :].repeat(w_ours.shape[1], axis=1)
    assert np.all(w_ours[padding] == 0.0) and np.all(w_keras[padding] == 0.0)
    assert np.all(w_ours[~padding] > 0.0)


def test_gradients_of_every_weight_match(keras_model, config, params0, batch):
    model = models.build(config)
    load_into_keras(keras_model, params0)
    k_loss, k_grads = keras_gradients(keras_model, keras_inputs(batch), batch["y"])
    b = ours(batch)
    loss, grads = jax.jit(jax.value_and_grad(lambda p: train.loss_fn(p, b, model.apply)[0]))(params0)
    assert relative(loss, k_loss, "loss (gradient step)") < RTOL
    paths = {f"{r}/{n}" for r in grads for n in grads[r]}
    assert paths == {f"{r}/{n}" for r in LUONG_LAYERS for n in params0[r]} == {f"{r}/{n}" for r in k_grads for n in k_grads[r]}
    for role in grads:
        for name in grads[role]:
            assert relative(grads[role][name], k_grads[role][name], f"gradient {role}/{name}") < RTOL, (role, name)


@pytest.mark.slow  # a training: the slow tier
def test_rmsprop_steps_match(keras_model, config, params0, batch):
    load_into_keras(keras_model, params0)
    model = models.build(config)
    opt = train.make_optimizer(train.Config())
    step = train.make_train_step(opt, model.apply)
    params, opt_state = params0, opt.init(params0)
    b = ours(batch)
    for _ in range(3):
        k_loss, _ = keras_model.train_on_batch(keras_inputs(batch), batch["y"])
        params, opt_state, metrics = step(params, opt_state, b)
        assert relative(metrics["loss_sum"] / metrics["count"], k_loss, "train_on_batch loss") < RTOL
    after = from_keras(keras_model)
    moved = max(float(jnp.max(jnp.abs(params[r][n] - params0[r][n]))) for r in params for n in params[r])
    assert moved > 1e-3
    for role in params:
        for name in params[role]:
            # RMSprop moves each weight by about lr * sign(g): compare the steps taken
            taken_ours = np.asarray(params[role][name]) - np.asarray(params0[role][name])
            taken_keras = np.asarray(after[role][name]) - np.asarray(params0[role][name])
            assert relative(taken_ours, taken_keras, "RMSprop update (3 steps)") < 1e-4, (role, name)


# --------------------------------------------------------------------------- padding


def test_more_padding_changes_nothing_in_either(keras_model, config, params0, batch, ds):
    load_into_keras(keras_model, params0)
    pad = ds.input_vocab.index[" "]
    extra = 5
    longer = dict(batch)
    longer["x_enc"] = np.concatenate(
        [batch["x_enc"], np.repeat(one_hot(np.full((len(ROWS), 1), pad), len(ds.input_vocab)), extra, axis=1)], axis=1
    )
    longer["mask"] = np.pad(batch["mask"], ((0, 0), (0, extra)))
    longer["tokens"] = (np.pad(batch["tokens"][0], ((0, 0), (0, extra)), constant_values=pad), *batch["tokens"][1:])
    model = models.build(config)
    p_keras = np.asarray(keras_model.predict_on_batch(keras_inputs(batch)))
    p_keras_longer = np.asarray(keras_model.predict_on_batch(keras_inputs(longer)))
    p_ours = np.asarray(model.apply(params0, ours(batch)))
    p_ours_longer = np.asarray(model.apply(params0, ours(longer, onehot=False)))
    assert np.max(np.abs(p_keras_longer - p_keras)) < 1e-6  # the oracle agrees with the rule
    assert np.max(np.abs(p_ours_longer - p_ours)) < 1e-6
    assert relative(p_ours_longer, p_keras_longer, "probabilities, 5 more padding") < RTOL


# --------------------------------------------------------------------------- Keras -> minis2s


def test_keras_initialised_and_saved_models_convert(keras_model, config, batch, tmp_path):
    m = keras_luong_model(config.num_encoder_tokens, config.num_decoder_tokens, LATENT, compile=False)
    p_keras = np.asarray(m.predict_on_batch(keras_inputs(batch)))
    converted = from_keras(m)
    assert set(converted) == set(LUONG_LAYERS)
    model = models.build(config)
    assert relative(model.apply(converted, ours(batch)), p_keras, "Keras init -> minis2s probabilities") < RTOL
    m.save_weights(tmp_path / "luong.weights.h5")
    m.save(tmp_path / "luong.keras")
    m.save(tmp_path / "luong.h5")
    for name in ("luong.weights.h5", "luong.keras", "luong.h5"):
        loaded = from_keras(tmp_path / name)
        for role in LUONG_LAYERS:
            for n in loaded[role]:
                np.testing.assert_array_equal(loaded[role][n], converted[role][n], err_msg=f"{name} {role}/{n}")


@pytest.mark.slow  # the scaled variant; the unscaled parity stays fast
def test_use_scale_matches_and_converts(ds, batch, tmp_path):
    """``--attention-scale``: Keras ``Attention(use_scale=True)``'s learnt ``g``, set to 1.7."""
    config = models.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), LATENT, "luong", attention_scale=True)
    model = models.build(config)
    params = model.init(jax.random.PRNGKey(3))
    assert float(params["attention"]["scale"]) == 1.0  # Keras initialises it to ones
    params["attention"]["scale"] = jnp.float32(1.7)
    m = keras_luong_model(config.num_encoder_tokens, config.num_decoder_tokens, LATENT, use_scale=True)
    assert set(find_keras_layers(m)) == {*LUONG_LAYERS, "attention"}
    load_into_keras(m, params)
    p_keras = np.asarray(m.predict_on_batch(keras_inputs(batch)))
    assert relative(model.apply(params, ours(batch)), p_keras, "use_scale: probabilities") < RTOL
    _, k_grads = keras_gradients(m, keras_inputs(batch), batch["y"])
    b = ours(batch)
    grads = jax.grad(lambda p: train.loss_fn(p, b, model.apply)[0])(params)
    assert set(grads) == set(k_grads) == {*LUONG_LAYERS, "attention"}
    for role in grads:
        for name in grads[role]:
            assert relative(grads[role][name], k_grads[role][name], f"use_scale: gradient {role}/{name}") < RTOL
    m.save_weights(tmp_path / "s.weights.h5")
    m.save(tmp_path / "s.keras")
    m.save(tmp_path / "s.h5")
    for source in (m, tmp_path / "s.weights.h5", tmp_path / "s.keras", tmp_path / "s.h5"):
        loaded = from_keras(source)
        assert float(loaded["attention"]["scale"]) == pytest.approx(1.7), source


def test_converter_refuses_other_attention(config):
    enc_in, dec_in = keras.Input(shape=(None, 5)), keras.Input(shape=(None, 6))
    enc_out, h, c = keras.layers.LSTM(4, return_sequences=True, return_state=True)(enc_in)
    dec_out = keras.layers.LSTM(4, return_sequences=True)(dec_in, initial_state=[h, c])
    ctx = keras.layers.Attention(score_mode="concat")([dec_out, enc_out])
    out = keras.layers.Dense(4, activation="tanh")(keras.layers.Concatenate()([ctx, dec_out]))
    concat = keras.Model([enc_in, dec_in], keras.layers.Dense(6, activation="softmax")(out))
    with pytest.raises(ConversionError, match="score_mode='concat'"):
        from_keras(concat)
    relu = keras.Model([enc_in, dec_in], keras.layers.Dense(6, activation="softmax")(
        keras.layers.Dense(4, activation="relu")(keras.layers.Concatenate()([keras.layers.Attention()([dec_out, enc_out]), dec_out]))
    ))
    with pytest.raises(ConversionError, match="tanh Dense"):
        from_keras(relu)


def test_attention_functions_are_what_keras_attention_computes(config):
    """Keras ``Attention`` alone against :func:`minis2s.attention.masked_softmax` and
    :func:`minis2s.attention.context`, with a mask that leaves one row a single position."""
    rng = np.random.default_rng(0)
    q, v = rng.normal(size=(3, 4, 5)).astype(np.float32), rng.normal(size=(3, 6, 5)).astype(np.float32)
    mask = attention.length_mask(jnp.array([6, 2, 1]), 6)
    k_ctx, k_w = keras.layers.Attention()([q, v], mask=[None, np.asarray(mask)], return_attention_scores=True)
    w = attention.masked_softmax(attention.dot_scores(jnp.asarray(q), jnp.asarray(v)), mask)
    assert relative(w, k_w, "Attention layer weights") < RTOL
    assert relative(attention.context(w, jnp.asarray(v)), k_ctx, "Attention layer context") < RTOL
    np.testing.assert_array_equal(np.asarray(w)[1, :, 2:], 0.0)

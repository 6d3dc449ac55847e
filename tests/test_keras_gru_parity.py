"""The seed model with a GRU in place of both LSTMs, against Keras 3 (JAX backend) as oracle.

``keras_seed_model(..., cell="gru")`` builds the Keras example's model with
``keras.layers.GRU`` (``reset_after=True``, Keras 3's default): the encoder returns its one
state ``h``, the decoder starts from it. minis2s parameters are copied in by name and
compared in float32, every quantity relative to its own scale (max |leaf|): probabilities,
loss, accuracy, every weight's gradient, the weights after RMSprop steps; then Keras' own
initial weights are read back through :func:`minis2s.convert.from_keras` (model object and
the three file formats).
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

from minis2s import losses, models, train  # noqa: E402
from minis2s.convert import ConversionError, cell_of, find_keras_layers, from_keras, keras_seed_model  # noqa: E402
from minis2s.data import DEMO_PATH, load_dataset, one_hot  # noqa: E402
from tests import reference as ref  # noqa: E402

LATENT = 16
ROWS = [0, 5, 11, 17, 23, 31, 40]  # 7 samples of different lengths: padding included
REL = 1e-6  # |minis2s - Keras| / max |Keras leaf|


def rel_diff(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = float(np.max(np.abs(theirs)))
    assert scale > 0  # a leaf of zeros would compare trivially
    return float(np.max(np.abs(ours - theirs))) / scale


@pytest.fixture(scope="module")
def ds():
    return load_dataset(DEMO_PATH, 44)


@pytest.fixture(scope="module")
def config(ds):
    return models.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), LATENT, cell="gru")


@pytest.fixture(scope="module")
def params0(config):
    p = models.build(config).init(jax.random.PRNGKey(42))
    # Keras initialises GRU biases to zero; make them non-zero so that both bias rows matter.
    for role, k in (("encoder", 1), ("decoder", 2)):
        p[role]["bias"] = 0.2 * jax.random.normal(jax.random.PRNGKey(k), p[role]["bias"].shape)
    return p


@pytest.fixture(scope="module")
def keras_model(ds):
    np_state, py_state = np.random.get_state(), random.getstate()
    keras.utils.set_random_seed(7)  # also seeds numpy and random: restore them after
    m = keras_seed_model(len(ds.input_vocab), len(ds.target_vocab), LATENT, cell="gru")
    np.random.set_state(np_state)
    random.setstate(py_state)
    return m, from_keras(m)


@pytest.fixture(scope="module")
def batch(ds):
    idx = np.array(ROWS)
    enc, dec, tgt = ds.encoder_tokens[idx], ds.decoder_tokens[idx], ds.target_tokens[idx]
    return {
        "x_enc": one_hot(enc, len(ds.input_vocab)),
        "x_dec": one_hot(dec, len(ds.target_vocab)),
        "y": one_hot(tgt, len(ds.target_vocab)),
        "ours": {
            "encoder_tokens": enc, "encoder_lengths": np.full(len(idx), enc.shape[1], np.int32),
            "decoder_tokens": dec, "target_tokens": tgt, "weight": np.ones(len(idx), np.float32),
        },
    }


from tests._keras_oracle import keras_gradients, load_into_keras  # noqa: E402 (after Keras)


def test_keras_model_is_the_gru_seed(keras_model):
    m, _ = keras_model
    layers = find_keras_layers(m)
    assert [type(layers[r]).__name__ for r in ("encoder", "decoder", "dense")] == ["GRU", "GRU", "Dense"]
    assert layers["encoder"].get_config()["reset_after"] is True


def test_probabilities_loss_and_accuracy_match(keras_model, params0, batch, config):
    m, _ = keras_model
    load_into_keras(m, params0)
    p_keras = np.asarray(m.predict_on_batch([batch["x_enc"], batch["x_dec"]]))
    probs = models.build(config).apply(params0, batch["ours"])
    assert p_keras.shape == probs.shape
    assert rel_diff(probs, p_keras) < REL
    # The float64 NumPy reference agrees with both (float32 rounding only).
    assert rel_diff(ref.seed_model(params0, batch["x_enc"], batch["x_dec"], cell="gru"), p_keras) < REL
    k_loss, k_acc = m.test_on_batch([batch["x_enc"], batch["x_dec"]], batch["y"])
    _, metrics = train.loss_fn(params0, batch["ours"], models.build(config).apply)
    assert abs(float(metrics["loss_sum"] / metrics["count"]) - k_loss) / k_loss < REL
    assert float(metrics["correct_sum"] / metrics["count"]) == pytest.approx(k_acc, abs=1e-6)


@pytest.mark.parametrize("grad", ["bptt", "autodiff"])
def test_gradients_of_every_weight_match(keras_model, params0, batch, config, grad):
    m, _ = keras_model
    load_into_keras(m, params0)
    k_loss, k_grads = keras_gradients(m, [batch["x_enc"], batch["x_dec"]], batch["y"])

    def loss(params):
        probs = models.build(config, grad).apply(params, batch["ours"])
        return losses.categorical_crossentropy(probs, batch["ours"]["target_tokens"])

    value, grads = jax.jit(jax.value_and_grad(loss))(params0)
    assert abs(float(value) - k_loss) / k_loss < REL
    paths = {f"{r}/{n}" for r in grads for n in grads[r]}
    assert paths == {f"{r}/{n}" for r in k_grads for n in k_grads[r]} and len(paths) == 8
    for role in grads:
        for name in grads[role]:
            assert rel_diff(grads[role][name], k_grads[role][name]) < REL, (role, name)


@pytest.mark.parametrize("steps", [1, 5])
def test_weights_after_rmsprop_steps_match(keras_model, params0, batch, config, steps):
    m, _ = keras_model
    load_into_keras(m, params0)
    optimizer = train.make_optimizer(train.Config())
    step = train.make_train_step(optimizer, models.build(config).apply)
    params, opt_state = params0, optimizer.init(params0)
    for _ in range(steps):
        k_loss, _ = m.train_on_batch([batch["x_enc"], batch["x_dec"]], batch["y"])
        params, opt_state, metrics = step(params, opt_state, batch["ours"])
        assert abs(float(metrics["loss_sum"] / metrics["count"]) - k_loss) / k_loss < REL
    theirs = from_keras(m)
    for role in params:
        for name in params[role]:
            moved = float(np.max(np.abs(np.asarray(params[role][name]) - np.asarray(params0[role][name]))))
            assert moved > 1e-3, (role, name)  # every leaf really moved (~lr per step)
            assert rel_diff(params[role][name], theirs[role][name]) < REL, (role, name)


def test_from_keras_reads_the_gru_model_and_its_files(keras_model, batch, config, tmp_path):
    m, keras_init = keras_model
    load_into_keras(m, keras_init)
    assert cell_of(keras_init) == "gru"
    assert keras_init["encoder"]["bias"].shape == (2, 3 * LATENT)
    np.testing.assert_array_equal(keras_init["decoder"]["bias"], 0.0)  # Keras' zero GRU bias
    p_keras = np.asarray(m.predict_on_batch([batch["x_enc"], batch["x_dec"]]))
    assert rel_diff(models.build(config).apply(keras_init, batch["ours"]), p_keras) < REL
    m.save_weights(tmp_path / "s2s.weights.h5")
    m.save(tmp_path / "s2s.keras")
    m.save(tmp_path / "s2s.h5")
    for name in ("s2s.weights.h5", "s2s.keras", "s2s.h5"):
        loaded = from_keras(tmp_path / name)
        for role in keras_init:
            for leaf in keras_init[role]:
                np.testing.assert_array_equal(loaded[role][leaf], keras_init[role][leaf], err_msg=f"{name} {role}/{leaf}")


def test_converter_refuses_a_gru_it_cannot_compute():
    enc_in, dec_in = keras.Input(shape=(None, 5)), keras.Input(shape=(None, 6))
    _, h = keras.layers.GRU(4, return_state=True, reset_after=False)(enc_in)
    dec_out, _ = keras.layers.GRU(4, return_sequences=True, return_state=True, reset_after=False)(dec_in, initial_state=[h])
    old_style = keras.Model([enc_in, dec_in], keras.layers.Dense(6, activation="softmax")(dec_out))
    with pytest.raises(ConversionError, match="reset_after=False; minis2s needs reset_after=True"):
        from_keras(old_style)
    # An LSTM encoder with a GRU decoder is neither seed.
    _, h, _ = keras.layers.LSTM(4, return_state=True)(enc_in)
    mixed_out, _ = keras.layers.GRU(4, return_sequences=True, return_state=True)(dec_in, initial_state=[h])
    mixed = keras.Model([enc_in, dec_in], keras.layers.Dense(6, activation="softmax")(mixed_out))
    with pytest.raises(ConversionError, match=r"found 1 LSTM, 1 GRU and 1 Dense"):
        from_keras(mixed)

"""minis2s against Keras 3 (JAX backend) as an external oracle.

The seed's Keras model is built once per module; each test copies minis2s parameters into
it by name (or reads Keras' own weights out with :mod:`minis2s.convert`) and compares, in
float32: probabilities, loss, accuracy, every weight's gradient, the weights after 1 and
10 RMSprop steps, a 3-epoch ``fit``, and the initialisers' statistics. Padding positions
are part of every comparison (the seed trains on them too), and no batch has 64 rows.

Deviations are measured relative to each quantity's scale: ``max |minis2s - Keras|`` over a
leaf divided by ``max |Keras|`` over that leaf (:func:`rel_dev`), and the bounds sit a few
times above what is measured, so that a regression of 100x fails. The largest relative
deviation seen for each quantity is collected in ``DEVIATIONS`` and printed at the end of the
module (``pytest -s tests/test_keras_parity.py``); the README quotes the bounds.
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

from minis2s import batching, losses, lstm, model, train  # noqa: E402
from minis2s.convert import (  # noqa: E402
    LAYERS, ConversionError, find_keras_layers, from_keras, keras_seed_model,
)
from minis2s.data import DEMO_PATH, load_dataset, one_hot  # noqa: E402

LATENT = 16
N_SAMPLES = 44  # 3 batches of 16, 16 and 12 in the multi-epoch test
BATCH_ROWS = [0, 5, 11, 17, 23, 31, 40]  # 7 samples of different lengths: a batch that is not 64

DEVIATIONS: dict[str, float] = {}


def record(name: str, value: float) -> float:
    DEVIATIONS[name] = max(DEVIATIONS.get(name, 0.0), float(value))
    return float(value)


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def tree_max_abs(a: dict, b: dict) -> dict[str, float]:
    return {f"{r}/{n}": max_abs(a[r][n], b[r][n]) for r in a for n in a[r]}


def rel_dev(ours, keras) -> float:
    """``max |ours - keras| / max |keras|``: the deviation relative to the quantity's scale."""
    scale = float(np.max(np.abs(np.asarray(keras, np.float64))))
    assert scale > 0  # a quantity of zeros would compare trivially
    return max_abs(ours, keras) / scale


def tree_rel_dev(ours: dict, keras: dict) -> dict[str, float]:
    """:func:`rel_dev` per leaf, after checking both trees have the same leaves."""
    assert {(r, n) for r in ours for n in ours[r]} == {(r, n) for r in keras for n in keras[r]}
    return {f"{r}/{n}": rel_dev(ours[r][n], keras[r][n]) for r in keras for n in keras[r]}


# The relative bound for every quantity (see the module docstring; the README quotes it).
# Measured on the project's CPU: at most 3.7e-7 (weights after one RMSprop step).
TOL = 1e-6


@pytest.fixture(scope="module", autouse=True)
def report_deviations():
    yield
    print("\nKeras parity, largest |minis2s - Keras| / max |Keras| per quantity (float32):")
    for k, v in DEVIATIONS.items():
        print(f"  {k:<40s} {v:.2e}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ds():
    return load_dataset(DEMO_PATH, N_SAMPLES)


@pytest.fixture(scope="module")
def params0(ds):
    config = model.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), LATENT)
    return model.init_params(jax.random.PRNGKey(42), config)


@pytest.fixture(scope="module")
def keras_model(ds):
    """The seed's compiled Keras model and the weights Keras initialised it with."""
    np_state, py_state = np.random.get_state(), random.getstate()
    keras.utils.set_random_seed(7)  # also seeds numpy and random: restore them after
    m = keras_seed_model(len(ds.input_vocab), len(ds.target_vocab), LATENT)
    np.random.set_state(np_state)
    random.setstate(py_state)
    return m, from_keras(m)


@pytest.fixture(scope="module")
def batch(ds):
    """One-hot inputs and targets of 7 samples, as the seed feeds them, and token versions."""
    idx = np.array(BATCH_ROWS)
    enc, dec, tgt = ds.encoder_tokens[idx], ds.decoder_tokens[idx], ds.target_tokens[idx]
    pad = ds.target_vocab.index[" "]
    is_pad = np.zeros(dec.shape, bool)
    for r, i in enumerate(idx):
        is_pad[r, len(ds.target_texts[i]) :] = True
    assert is_pad.any() and (~is_pad).any() and (dec[is_pad] == pad).all()
    return {
        "x_enc": one_hot(enc, len(ds.input_vocab)),
        "x_dec": one_hot(dec, len(ds.target_vocab)),
        "y": one_hot(tgt, len(ds.target_vocab)),
        "tokens": (enc, dec, tgt),
        "is_pad": is_pad,
    }


from tests._keras_oracle import keras_gradients, load_into_keras  # noqa: E402 (after Keras)


def onehot_loss(params, b):
    """Keras' loss on one-hot inputs, differentiated by JAX through the plain LSTM scan."""
    probs = model.apply(params, b["x_enc"], b["x_dec"], model.LAYERS["autodiff"])
    return losses.categorical_crossentropy(probs, b["y"])


# --------------------------------------------------------------------------- forward, loss, gradients


def test_outputs_loss_and_accuracy_match(keras_model, params0, batch):
    m, _ = keras_model
    load_into_keras(m, params0)
    p_keras = np.asarray(m.predict_on_batch([batch["x_enc"], batch["x_dec"]]))
    p_ours = np.asarray(model.apply(params0, batch["x_enc"], batch["x_dec"]))
    p_tokens = np.asarray(model.apply(params0, *batch["tokens"][:2]))  # the gather path
    assert p_keras.shape == p_ours.shape == (len(BATCH_ROWS), batch["x_dec"].shape[1], batch["y"].shape[2])
    assert record("probabilities", rel_dev(p_ours, p_keras)) < TOL
    assert record("probabilities at padding positions", rel_dev(p_ours[batch["is_pad"]], p_keras[batch["is_pad"]])) < TOL
    assert record("probabilities, token inputs", rel_dev(p_tokens, p_keras)) < TOL

    k_loss, k_acc = m.test_on_batch([batch["x_enc"], batch["x_dec"]], batch["y"])
    probs = model.apply(params0, batch["x_enc"], batch["x_dec"])
    assert record("loss", rel_dev(losses.categorical_crossentropy(probs, batch["y"]), k_loss)) < TOL
    assert record("accuracy", rel_dev(losses.categorical_accuracy(probs, batch["y"]), k_acc)) < TOL


def _norm(g) -> float:
    return float(np.linalg.norm(np.asarray(g, np.float64)))


@pytest.mark.parametrize("grad", ["autodiff", "bptt"])
def test_gradients_of_every_weight_match(keras_model, params0, batch, grad):
    """Every weight's gradient, on one-hot inputs through JAX autodiff and on token inputs
    through the hand-derived BPTT that training uses, against Keras' gradient: element by
    element relative to the leaf's scale, and the leaf's norm (RMSprop divides a uniform
    gradient-scale error away, so the steps below would barely show one)."""
    m, _ = keras_model
    load_into_keras(m, params0)
    k_loss, k_grads = keras_gradients(m, [batch["x_enc"], batch["x_dec"]], batch["y"])
    if grad == "autodiff":
        loss, grads = jax.jit(jax.value_and_grad(onehot_loss))(params0, {k: batch[k] for k in ("x_enc", "x_dec", "y")})
    else:
        enc, dec, tgt = batch["tokens"]
        tokens = {"encoder_tokens": enc, "decoder_tokens": dec, "target_tokens": tgt,
                  "weight": np.ones(len(BATCH_ROWS), np.float32)}
        apply_bptt = model.make_apply("bptt")
        loss, grads = jax.jit(jax.value_and_grad(lambda p: train.loss_fn(p, tokens, apply_bptt)[0]))(params0)
    assert record("loss (gradient tests)", rel_dev(loss, k_loss)) < TOL
    diffs = tree_rel_dev(grads, k_grads)
    assert set(diffs) == {f"{r}/{n}" for r in LAYERS for n in params0[r]}
    for path, d in diffs.items():
        role, name = path.split("/")
        assert record(f"gradient {path} ({grad})", d) < TOL, (path, d)
        ratio = _norm(grads[role][name]) / _norm(k_grads[role][name])
        assert record(f"|gradient| / |Keras gradient| - 1 ({grad})", abs(ratio - 1)) < TOL, (path, ratio)


@pytest.mark.parametrize("steps", [1, 10])
def test_weights_after_rmsprop_steps_match(keras_model, params0, batch, steps):
    m, _ = keras_model
    load_into_keras(m, params0)
    step = train.make_train_step(train.make_optimizer(train.Config()))
    opt = train.make_optimizer(train.Config())
    params, opt_state = params0, opt.init(params0)
    ours_batch = {
        "encoder_tokens": batch["x_enc"], "decoder_tokens": batch["x_dec"],
        "target_tokens": batch["y"], "weight": np.ones(len(BATCH_ROWS), np.float32),
    }
    for _ in range(steps):
        k_loss, k_acc = m.train_on_batch([batch["x_enc"], batch["x_dec"]], batch["y"])
        params, opt_state, metrics = step(params, opt_state, ours_batch)
        # Both report the loss and accuracy of the weights before the update.
        assert record("train_on_batch loss (per step)", rel_dev(metrics["loss_sum"] / metrics["count"], k_loss)) < TOL
        assert record("train_on_batch accuracy (per step)", rel_dev(metrics["correct_sum"] / metrics["count"], k_acc)) < TOL
    diffs = tree_rel_dev(params, from_keras(m))
    moved = max(tree_max_abs(params, params0).values())
    assert moved > 1e-3  # the weights really moved (RMSprop steps of ~lr each)
    for path, d in diffs.items():
        assert record(f"weights after {steps} RMSprop step(s)", d) < TOL, (path, d)


# --------------------------------------------------------------------------- Keras -> minis2s


def test_keras_initialised_weights_give_the_same_outputs(keras_model, batch, tmp_path):
    m, keras_init = keras_model
    load_into_keras(m, keras_init)
    p_keras = np.asarray(m.predict_on_batch([batch["x_enc"], batch["x_dec"]]))
    converted = from_keras(m)
    assert record("Keras init -> minis2s probabilities", rel_dev(model.apply(converted, batch["x_enc"], batch["x_dec"]), p_keras)) < TOL

    m.save_weights(tmp_path / "s2s.weights.h5")
    m.save(tmp_path / "s2s.keras")
    m.save(tmp_path / "s2s.h5")  # legacy HDF5 layout, as the original Keras 2 example saved
    for name in ("s2s.weights.h5", "s2s.keras", "s2s.h5"):
        from_file = from_keras(tmp_path / name)
        for path, d in tree_max_abs(from_file, converted).items():
            assert d == 0.0, (name, path)
        probs = model.apply(from_file, batch["x_enc"], batch["x_dec"])
        assert record(f"probabilities from {name}", rel_dev(probs, p_keras)) < TOL


def test_converter_refuses_what_it_cannot_convert(tmp_path):
    with pytest.raises(ConversionError, match="no such file"):
        from_keras(tmp_path / "missing.keras")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConversionError, match="expected a .keras"):
        from_keras(tmp_path / "notes.txt")
    (tmp_path / "broken.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(ConversionError, match="not a readable HDF5"):
        from_keras(tmp_path / "broken.weights.h5")
    # A model that is not the seed's: one LSTM, or a relu Dense.
    x = keras.Input(shape=(None, 5))
    one_lstm = keras.Model(x, keras.layers.Dense(5, activation="softmax")(keras.layers.LSTM(4)(x)))
    with pytest.raises(ConversionError, match="found 1 LSTM and 1 Dense"):
        from_keras(one_lstm)
    enc_in, dec_in = keras.Input(shape=(None, 5)), keras.Input(shape=(None, 6))
    _, h, c = keras.layers.LSTM(4, return_state=True)(enc_in)
    dec_out, _, _ = keras.layers.LSTM(4, return_sequences=True, return_state=True)(dec_in, initial_state=[h, c])
    relu = keras.Model([enc_in, dec_in], keras.layers.Dense(6, activation="relu")(dec_out))
    with pytest.raises(ConversionError, match="activation='relu'"):
        from_keras(relu)
    # Shapes that do not fit together: encoder and decoder swapped by name.
    seed = keras_seed_model(5, 6, 4, compile=False)
    names = {role: layer.name for role, layer in find_keras_layers(seed).items()}
    swapped = {"encoder": names["decoder"], "decoder": names["encoder"], "dense": names["dense"]}
    with pytest.raises(ConversionError, match="decoder/kernel has shape"):
        from_keras(seed, layer_names=swapped)


# --------------------------------------------------------------------------- initialisation


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: largest gap between the empirical CDFs."""
    a, b = np.sort(a.ravel()), np.sort(b.ravel())
    grid = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, grid, "right") / a.size - np.searchsorted(b, grid, "right") / b.size)))


def test_initialisation_statistics_match_keras(keras_model, params0):
    _, keras_init = keras_model
    # Same shapes, same forget-gate bias, same zero Dense bias as Keras' own initialisation.
    for role in LAYERS:
        for name, w in keras_init[role].items():
            assert params0[role][name].shape == w.shape, (role, name)
    for role in ("encoder", "decoder"):
        np.testing.assert_array_equal(params0[role]["bias"], keras_init[role]["bias"])
        assert np.all(keras_init[role]["bias"][LATENT : 2 * LATENT] == 1.0)
    np.testing.assert_array_equal(params0["dense"]["bias"], 0.0)
    np.testing.assert_array_equal(keras_init["dense"]["bias"], 0.0)

    # Larger shapes for the statistics: the seed's latent_dim 256 with 71 input tokens.
    h, v = 64, 71
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    ours = np.asarray(lstm.glorot_uniform(keys[0], (v, 4 * h)))
    theirs = np.asarray(keras.initializers.GlorotUniform(seed=3)((v, 4 * h)))
    limit = np.sqrt(6.0 / (v + 4 * h))
    for w in (ours, theirs):
        assert np.max(np.abs(w)) <= limit * (1 + 1e-6) and np.max(np.abs(w)) > 0.99 * limit
        assert abs(np.std(w) / (limit / np.sqrt(3)) - 1) < 0.03 and abs(np.mean(w)) < 0.01 * limit
    assert record("glorot-uniform KS distance (vs Keras)", ks_distance(ours, theirs)) < 0.04

    ours = np.asarray(lstm.orthogonal(keys[1], (h, 4 * h)))
    theirs = np.asarray(keras.initializers.Orthogonal(seed=3)((h, 4 * h)))
    for w in (ours, theirs, np.asarray(params0["decoder"]["recurrent_kernel"]), np.asarray(keras_init["decoder"]["recurrent_kernel"])):
        rows = w.shape[0]
        assert record("orthogonal |W W^T - I|", max_abs(w @ w.T, np.eye(rows))) < 1e-5
        assert abs(np.std(w) * np.sqrt(w.shape[1]) - 1) < 0.05  # orthonormal rows of length 4H
    assert record("orthogonal KS distance (vs Keras)", ks_distance(ours, theirs)) < 0.04


# --------------------------------------------------------------------------- three epochs


@pytest.mark.slow  # a training: the slow tier
def test_three_epochs_match_keras_fit(keras_model, params0, ds):
    m, _ = keras_model
    load_into_keras(m, params0)
    batch_size, epochs = 16, 3
    x_enc, x_dec, y = ds.one_hot()
    history = m.fit([x_enc, x_dec], y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0).history

    optimizer = train.make_optimizer(train.Config())
    step = train.make_train_step(optimizer)
    params, opt_state = params0, optimizer.init(params0)
    order = np.arange(len(ds))  # the same batch order as shuffle=False
    for epoch in range(epochs):
        totals = None
        for b in batching.batches(ds, order, batch_size):  # 16, 16, 12 (padded to 16, weight 0)
            params, opt_state, metrics = step(params, opt_state, b)
            totals = train._accumulate(totals, metrics)
        logs = train._summarise(totals)
        assert record("per-epoch loss (3 epochs)", rel_dev(logs["loss"], history["loss"][epoch])) < TOL
        assert record("per-epoch accuracy (3 epochs)", rel_dev(logs["accuracy"], history["accuracy"][epoch])) < TOL
    assert history["loss"][-1] < history["loss"][0]  # it trained
    assert record("weights after 3 epochs", max(tree_rel_dev(params, from_keras(m)).values())) < TOL


def test_weights_file_orders_layers_by_creation(tmp_path, params0):
    """``lstm_9`` was created before ``lstm_10`` (alphabetically it sorts after): the
    encoder must come from ``lstm_9``; ``layer_names`` overrides the guess."""
    h5py = require_module("h5py")
    path = tmp_path / "renamed.weights.h5"
    with h5py.File(path, "w") as f:
        for layer, role in (("lstm_9", "encoder"), ("lstm_10", "decoder")):
            for i, name in enumerate(("kernel", "recurrent_kernel", "bias")):
                f.create_dataset(f"layers/{layer}/cell/vars/{i}", data=np.asarray(params0[role][name]))
        for i, name in enumerate(("kernel", "bias")):
            f.create_dataset(f"layers/dense_3/vars/{i}", data=np.asarray(params0["dense"][name]))
        f.create_group("layers/input_layer/vars")
    loaded = from_keras(path)
    assert max(tree_max_abs(loaded, params0).values()) == 0.0
    with pytest.raises(ConversionError, match="no layer"):
        from_keras(path, layer_names={"encoder": "lstm", "decoder": "lstm_10", "dense": "dense_3"})

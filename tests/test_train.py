"""Training: memorising 8 pairs, exact epoch metrics with a padded last batch, the CLI end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import checkpoint, data, model, train
from minis2s.trained import load_trained
from tests.conftest import TINY_PAIRS, assert_trees_equal, run_cli


def tiny_dataset():
    return data.build_dataset([e for e, _ in TINY_PAIRS], ["\t" + f + "\n" for _, f in TINY_PAIRS])


@pytest.mark.slow  # 400 training steps at most
def test_tiny_model_memorises_eight_pairs():
    ds = tiny_dataset()
    cfg = train.Config(latent_dim=32, learning_rate=1e-2)
    params = model.init_params(jax.random.PRNGKey(0), train.model_config(cfg, ds))
    opt = train.make_optimizer(cfg)
    opt_state = opt.init(params)
    step = train.make_train_step(opt)
    batch = next(train.batches(ds, np.arange(8), 8))
    real = ds.target_tokens != ds.target_vocab.index[" "]
    real |= np.arange(ds.target_tokens.shape[1]) < np.array([len(t) - 1 for t in ds.target_texts])[:, None]

    apply = jax.jit(model.apply)

    def real_char_accuracy(p):
        pred = np.asarray(jnp.argmax(apply(p, ds.encoder_tokens, ds.decoder_tokens), -1))
        return (pred == ds.target_tokens)[real].mean()

    for n in range(1, 401):
        params, opt_state, _ = step(params, opt_state, batch)
        if n % 50 == 0 and real_char_accuracy(params) == 1.0:
            break
    assert real_char_accuracy(params) == 1.0, f"not memorised after {n} steps"


def test_epoch_metrics_are_exact_means_with_a_padded_last_batch():
    """Batch 3 over 8 samples: batches of 3, 3, 2(+1 padding row). Sums must equal one big batch."""
    ds = tiny_dataset()
    params = model.init_params(jax.random.PRNGKey(1), model.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), 8))
    idx = np.arange(8)
    small = train.evaluate(params, ds, idx, batch_size=3)
    whole = train.evaluate(params, ds, idx, batch_size=8)
    assert small["loss"] == pytest.approx(whole["loss"], rel=1e-6)
    assert small["accuracy"] == pytest.approx(whole["accuracy"], rel=1e-6)
    probs = jax.jit(model.apply)(params, ds.encoder_tokens, ds.decoder_tokens)
    from minis2s import losses

    assert whole["loss"] == pytest.approx(float(losses.categorical_crossentropy(probs, ds.target_tokens)), rel=1e-6)


def test_partial_batch_gradient_equals_unpadded_batch_gradient():
    ds = tiny_dataset()
    params = model.init_params(jax.random.PRNGKey(2), model.ModelConfig(len(ds.input_vocab), len(ds.target_vocab), 8))
    padded = next(train.batches(ds, np.arange(5), 8))  # 5 real rows + 3 zero-weight rows
    plain = next(train.batches(ds, np.arange(5), 5))
    grad = jax.jit(jax.grad(lambda p, batch: train.loss_fn(p, batch)[0]))  # one program per shape
    g_pad, g_plain = grad(params, padded), grad(params, plain)
    assert_trees_equal(g_pad, g_plain, atol=1e-7)


def test_validation_split_is_the_tail_like_keras():
    """``fit``'s val_loss is the loss of the last 20% of the samples (Keras' ``validation_split``
    takes the tail before shuffling), computed here by the float64 NumPy oracle."""
    from tests.reference import keras_crossentropy, seed_model

    assert train.split_train_val(10_000, 0.2) == 8000
    assert train.split_train_val(8, 0.2) == 6  # floor(6.4)
    ds = data.load_dataset(data.DEMO_PATH, 42)  # 33 for training, the last 9 for validation
    cfg = train.Config(epochs=1, batch_size=8, latent_dim=8, seed=5)
    params, history = train.fit(cfg, ds, log=None)
    enc, dec, tgt = ds.one_hot()

    def loss_of(rows):
        return keras_crossentropy(seed_model(params, enc[rows], dec[rows]), tgt[rows])

    tail, head = loss_of(slice(33, 42)), loss_of(slice(0, 9))
    assert history["val_loss"][0] == pytest.approx(tail, rel=1e-5)
    assert abs(tail - head) > 1e-3 * tail  # the check tells the tail from other rows


@pytest.mark.slow  # trains twice
def test_fit_reproducible_and_history(tmp_path):
    ds = tiny_dataset()
    cfg = train.Config(epochs=2, batch_size=4, latent_dim=8, seed=3)
    p1, h1 = train.fit(cfg, ds, log=None)
    p2, h2 = train.fit(cfg, ds, log=None)
    assert h1["loss"] == h2["loss"] and len(h1["val_loss"]) == 2
    assert_trees_equal(p1, p2)


@pytest.mark.slow
def test_cli_one_epoch_writes_history_and_a_checkpoint_that_loads_back(tmp_path, demo_path):
    out = tmp_path / "run"
    r = run_cli("train", "--data", str(demo_path), "--epochs", "1", "--latent-dim", "16",
                "--batch-size", "32", "--out", str(out), "--show", "2")
    assert r.returncode == 0, r.stderr
    assert "Epoch 1/1 - " in r.stdout and "val_accuracy: " in r.stdout
    assert "\r" not in r.stdout and "ETA" not in r.stdout  # not a terminal: epoch lines, no bar
    assert "Input sentence: Go." in r.stdout
    history = json.loads((out / "history.json").read_text())
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy"} and len(history["loss"]) == 1
    trained = load_trained(out)
    assert trained.config.latent_dim == 16 and trained.config.epochs == 1
    assert trained.input_vocab.chars[0] == " "
    # Saving what was loaded and loading again gives identical arrays.
    checkpoint.save(tmp_path / "again", trained.params, {"note": "copy"})
    again, _ = checkpoint.load(tmp_path / "again")
    assert_trees_equal(trained.params, again)
    assert {a.dtype for a in jax.tree.leaves(again)} == {np.dtype(np.float32)}


def test_checkpoint_round_trip_is_exact(tmp_path):
    params = jax.jit(model.init_params, static_argnums=1)(jax.random.PRNGKey(4), model.ModelConfig(5, 6, 7))
    checkpoint.save(tmp_path, params, {"k": 1})
    loaded, meta = checkpoint.load(tmp_path)
    assert meta["k"] == 1
    assert_trees_equal(params, loaded)


@pytest.mark.slow
def test_cli_one_epoch_on_1000_shared_samples(tmp_path, shared_fra):
    out = tmp_path / "shared"
    r = run_cli("train", "--data", str(shared_fra), "--num-samples", "1000", "--epochs", "1",
                "--out", str(out), "--show", "1")
    assert r.returncode == 0, r.stderr
    assert "Number of samples: 1000" in r.stdout and "Epoch 1/1" in r.stdout
    h = json.loads((out / "history.json").read_text())
    # The reported validation numbers are those of the saved parameters on the last 200 pairs,
    # recomputed by the float64 NumPy oracle (tests/reference.py), and training moved the model
    # below a uniform guess over the 93 French characters.
    from tests.reference import keras_crossentropy, seed_model

    trained = load_trained(out)
    ds = data.load_dataset(shared_fra, 1000)
    enc, dec, tgt = ds.one_hot()
    val = slice(train.split_train_val(1000, 0.2), 1000)
    probs = seed_model(trained.params, enc[val], dec[val])
    assert h["val_loss"][0] == pytest.approx(keras_crossentropy(probs, tgt[val]), rel=1e-4)
    accuracy = float(np.mean(probs.argmax(-1) == tgt[val].argmax(-1)))
    assert h["val_accuracy"][0] == pytest.approx(accuracy, abs=2 / tgt[val, :, 0].size)  # a tie or two may flip
    assert h["val_loss"][0] < np.log(len(ds.target_vocab)) and np.isfinite(h["loss"][0])

"""Dropout (minis2s/dropout.py, ``--dropout``): inverted dropout against NumPy, drawn from
explicit keys, only in training batches (a batch without ``dropout_key`` is the network as
it is), the key stream of training, the transformer's gradient through it against finite
differences, and the settings that refuse it."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import dropout, models, resume, scheduled, train
from minis2s.config import Config
from minis2s.gradcheck import check_grads

CONFIG = models.ModelConfig(7, 9, 1, "transformer", layers=2, heads=2, embed_dim=8, ff_dim=12, max_positions=8,
                            dropout=0.3)


def _batch(**extra):
    rng = np.random.default_rng(1)
    return {"encoder_tokens": jnp.asarray(rng.integers(0, 7, (3, 5)), jnp.int32),
            "encoder_lengths": jnp.array([5, 2, 1], jnp.int32),
            "decoder_tokens": jnp.asarray(rng.integers(0, 9, (3, 6)), jnp.int32), **extra}


def test_drop_keeps_each_value_with_probability_one_minus_p_and_scales_it():
    """NumPy float64 oracle: ``x * m / (1 - p)`` with the kept positions read off the result."""
    x = np.random.default_rng(0).normal(size=(400, 250)).astype(np.float32) + 3.0  # no zeros
    got = np.asarray(dropout.drop(jnp.asarray(x), 0.3, jax.random.PRNGKey(5)))
    kept = got != 0
    assert abs(kept.mean() - 0.7) < 0.01  # 100,000 draws: the standard deviation is 0.0015
    np.testing.assert_allclose(got, np.where(kept, x.astype(np.float64) / 0.7, 0.0), rtol=1e-6)
    again = np.asarray(dropout.drop(jnp.asarray(x), 0.3, jax.random.PRNGKey(5)))
    other = np.asarray(dropout.drop(jnp.asarray(x), 0.3, jax.random.PRNGKey(6)))
    assert np.array_equal(got, again) and not np.array_equal(got != 0, other != 0)


def test_only_a_batch_with_a_key_is_dropped():
    model = models.build(CONFIG)
    params = model.init(jax.random.PRNGKey(0))
    plain = np.asarray(models.build(dataclasses.replace(CONFIG, dropout=0.0)).apply(params, _batch()))
    # evaluation and decoding: no key, the network as it is
    assert np.array_equal(np.asarray(model.apply(params, _batch())), plain)
    # rate 0 with a key: the same network
    keyed = _batch(dropout_key=jax.random.PRNGKey(1))
    assert np.array_equal(np.asarray(models.build(dataclasses.replace(CONFIG, dropout=0.0)).apply(params, keyed)), plain)
    dropped = np.asarray(model.apply(params, keyed))
    assert np.max(np.abs(dropped - plain)) > 1e-2
    assert np.array_equal(np.asarray(model.apply(params, keyed)), dropped)  # same key, same masks
    assert not np.array_equal(np.asarray(model.apply(params, _batch(dropout_key=jax.random.PRNGKey(2)))), dropped)
    np.testing.assert_allclose(dropped.sum(-1), 1.0, rtol=1e-5)


def test_gradient_with_fixed_masks_matches_float64_finite_differences():
    """With the key held, dropout is a fixed linear map of each value, so the loss stays
    differentiable and its gradient is checked like the rest of the model's."""
    model = models.build(dataclasses.replace(CONFIG, layers=1))  # one block a side: every kind of site, less to compile
    rng = np.random.default_rng(2)
    batch = {**{k: np.asarray(v) for k, v in _batch().items()}, "dropout_key": np.asarray(jax.random.PRNGKey(3)),
             "target_tokens": rng.integers(0, 9, (3, 6)).astype(np.int32), "weight": np.ones((3,), np.float32)}
    params = model.init(jax.random.PRNGKey(0))
    loss = lambda p: train.loss_fn(p, batch, model.apply)[0]  # noqa: E731
    with jax.enable_x64(True):
        with_masks = float(loss(jax.tree.map(lambda a: a.astype(jnp.float64), params)))
        batch_plain = {k: v for k, v in batch.items() if k != "dropout_key"}
        plain = float(train.loss_fn(jax.tree.map(lambda a: a.astype(jnp.float64), params), batch_plain, model.apply)[0])
    assert abs(with_masks - plain) > 1e-3  # the masks are in the checked function
    report = check_grads(loss, params, entries=2, directions=1, rtol=1e-6, atol=1e-10, seed=0, eps=model.fd_step)
    assert report.ok, report.table()
    assert len(report.leaves) == len(jax.tree.leaves(params))


def test_training_keys_differ_by_step_and_epoch_and_from_scheduled_samplings():
    key = jax.random.PRNGKey(0)
    assert dropout.step_extras(0.0, key, 0) is None
    first, second = (np.asarray(dropout.step_extras(0.1, key, e)(4)["dropout_key"]) for e in (0, 1))
    coins = np.asarray(scheduled.step_extras(0.5, None, 3, key, 0)(4)["coin_key"])
    shuffles = np.stack([np.asarray(jax.random.fold_in(key, e)) for e in range(4)])
    rows = {tuple(r) for r in np.concatenate([first, second, coins, shuffles])}
    assert len(rows) == 16  # no key serves twice
    assert np.array_equal(np.asarray(dropout.step_extras(0.1, key, 0)(4)["dropout_key"]), first)
    both = dropout.combine(None, scheduled.step_extras(0.5, None, 3, key, 0), dropout.step_extras(0.1, key, 0))(4)
    assert sorted(both) == ["coin_key", "dropout_key", "teacher_forcing"] and dropout.combine(None, None) is None


def test_settings_that_cannot_drop_are_refused():
    assert [name for name in models.MODELS if models.build(models.config_for(
        Config(model=name, latent_dim=1), "ab", "ab")).dropout] == ["transformer"]
    with pytest.raises(ValueError, match="dropout needs a model that drops"):
        Config(dropout=0.1).validate()
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        Config(model="transformer", dropout=1.0).validate()
    with pytest.raises(ValueError, match="dropout and scheduled sampling"):
        Config(model="transformer", dropout=0.1, teacher_forcing=0.9).validate()
    Config(model="transformer", dropout=0.1).validate()
    assert "dropout" in resume.FIXED_ON_RESUME
    old_manifest = {k: v for k, v in Config(model="transformer").to_dict().items() if k != "dropout"}
    assert models.config_for(old_manifest, "ab", "ab").dropout == 0.0  # checkpoints from before --dropout


@pytest.mark.slow  # trains through the CLI
def test_cli_trains_with_dropout_and_a_resumed_run_draws_the_same_masks(tmp_path, capsys):
    from minis2s import checkpoint, cli, data
    from minis2s.run import latest_checkpoint
    from minis2s.trained import load_trained
    from tests.conftest import assert_trees_equal

    args = ["--model", "transformer", "--layers", "1", "--heads", "2", "--embed-dim", "8", "--ff-dim", "16",
            "--data", str(data.DEMO_PATH), "--num-samples", "40", "--batch-size", "8", "--show", "0"]
    runs = {}
    for name, dropout_rate in (("straight", "0.2"), ("resumed", "0.2"), ("none", "0")):
        runs[name] = tmp_path / name
        epochs = "1" if name == "resumed" else "2"
        assert cli.main(["train", *args, "--dropout", dropout_rate, "--epochs", epochs, "--out", str(runs[name])]) == 0
    assert cli.main(["train", "--resume", str(runs["resumed"]), "--epochs", "2", "--show", "0"]) == 0
    capsys.readouterr()
    trained = {name: load_trained(latest_checkpoint(out)) for name, out in runs.items()}
    assert checkpoint.read_manifest(latest_checkpoint(runs["straight"]))["config"]["dropout"] == 0.2
    assert_trees_equal(trained["resumed"].params, trained["straight"].params)  # the same keys after a restart
    differ = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                          trained["straight"].params, trained["none"].params)
    assert max(jax.tree.leaves(differ)) > 1e-4  # the masks changed the updates
    assert cli.main(["train", "--resume", str(runs["straight"]), "--epochs", "3", "--dropout", "0.3"]) == 2
    err = capsys.readouterr().err
    assert "--dropout" in err and err.strip().count("\n") == 0

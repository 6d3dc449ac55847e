"""Scheduled sampling (minis2s.scheduled): ratio 1 is teacher forcing, ratio 0 feeds the
greedy decoder's own argmax, the coins follow the ratio, and the gradient is right."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import batching, losses, models, scheduled, search
from minis2s.gradcheck import assert_grads
from minis2s.models import Model, ModelConfig


def _problem(cell: str, b=4, t_enc=3, t_dec=6, v_in=6, v_out=7, h=5, seed=0):
    model = models.build(ModelConfig(v_in, v_out, h, cell=cell))
    params = model.init(jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    dec = rng.integers(0, v_out, (b, t_dec)).astype(np.int32)
    batch = {
        "encoder_tokens": rng.integers(0, v_in, (b, t_enc)).astype(np.int32),
        "encoder_lengths": np.full((b,), t_enc, np.int32),
        "decoder_tokens": dec,
        "target_tokens": np.concatenate([dec[:, 1:], np.zeros((b, 1), np.int32)], 1),
    }
    return model, params, batch


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_ratio_one_is_teacher_forcing(cell):
    model, params, batch = _problem(cell)
    got = jax.jit(scheduled.apply, static_argnums=0)(model, params, batch, jax.random.PRNGKey(1), 1.0)
    np.testing.assert_allclose(got, model.apply(params, batch), atol=1e-6)


def test_ratio_zero_feeds_the_greedy_prediction():
    """With ratio 0 the decoder reads its own argmax from step 1 on: the argmax of each
    step's output is the character greedy decoding (search.greedy_batch) emits there."""
    model, params, batch = _problem("lstm", b=5, t_dec=8, seed=3)
    start = batch["decoder_tokens"][:, 0]
    batch["decoder_tokens"][:, 0] = start[0]  # greedy starts every row from one start token
    probs = scheduled.apply(model, params, batch, jax.random.PRNGKey(2), 0.0)
    tokens, _, _ = search.greedy_batch(
        params, batch["encoder_tokens"], start_token=int(start[0]), end_token=-1, max_steps=8, model=model
    )
    np.testing.assert_array_equal(np.argmax(probs, axis=-1), tokens)
    # ...and differs from teacher forcing once the prediction differs from the truth.
    assert np.max(np.abs(np.asarray(probs) - np.asarray(model.apply(params, batch)))) > 1e-3


def _echo_model(v: int) -> Model:
    """A fake model whose prediction is the token it was fed (probabilities one-hot on it),
    so each output shows which input the step read."""
    return Model(
        config=ModelConfig(1, v, 1),
        init=lambda key: {},
        apply=lambda params, batch: None,
        encode=lambda params, tokens, lengths: ({}, (jnp.zeros((tokens.shape[0], 1)),)),
        decode_step=lambda params, memory, token, state: (jax.nn.one_hot(token, v), state, {}),
    )


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.8])
def test_coins_feed_the_truth_with_probability_ratio(ratio):
    b, t, v = 4000, 6, 10
    truth = np.tile(np.arange(1, t + 1, dtype=np.int32), (b, 1))  # all different: the source shows
    batch = {"encoder_tokens": np.zeros((b, 1), np.int32), "encoder_lengths": np.ones(b, np.int32), "decoder_tokens": truth}
    fed = np.argmax(scheduled.apply(_echo_model(v), {}, batch, jax.random.PRNGKey(0), ratio), axis=-1)  # (B, T)
    assert np.all(fed[:, 0] == 1)  # step 0 always reads the start token
    from_truth = fed[:, 1:] == truth[:, 1:]
    from_self = fed[:, 1:] == fed[:, :-1]  # otherwise: the previous step's prediction
    assert np.all(from_truth ^ from_self)
    n = from_truth.size
    assert abs(from_truth.mean() - ratio) <= 5 * np.sqrt(ratio * (1 - ratio) / n) + 1e-12
    # Another key, other coins (keys are not reused across calls).
    fed2 = np.argmax(scheduled.apply(_echo_model(v), {}, batch, jax.random.PRNGKey(1), ratio), axis=-1)
    assert (ratio in (0.0, 1.0)) or np.any(fed2 != fed)


def test_gradient_of_the_scheduled_loss_passes_gradcheck():
    model, params, batch = _problem("gru", b=3, t_dec=5, h=4, seed=5)
    key = jax.random.PRNGKey(4)

    def loss(p):
        probs = scheduled.apply(model, p, batch, key, 0.5)
        return losses.categorical_crossentropy(probs, batch["target_tokens"])

    report = assert_grads(loss, params, entries=6, directions=2)
    assert {leaf.path for leaf in report.leaves} == {
        f"{r}/{n}" for r in ("encoder", "decoder") for n in ("kernel", "recurrent_kernel", "bias")
    } | {"dense/kernel", "dense/bias"}


def test_ratio_schedule():
    assert scheduled.ratio_at(0, 10, 0.5, None) == scheduled.ratio_at(9, 10, 0.5, None) == 0.5
    assert [scheduled.ratio_at(e, 5, 1.0, 0.0) for e in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert scheduled.ratio_at(0, 1, 0.9, 0.1) == 0.9
    assert not scheduled.uses_scheduled_sampling(1.0, None) and not scheduled.uses_scheduled_sampling(1.0, 1.0)
    assert scheduled.uses_scheduled_sampling(0.5, None) and scheduled.uses_scheduled_sampling(1.0, 0.5)


# --------------------------------------------------------------------------- training with it


def _tiny_fit_setup():
    from minis2s import data
    from tests.conftest import TINY_PAIRS

    ds = data.build_dataset([e for e, _ in TINY_PAIRS], ["\t" + f + "\n" for _, f in TINY_PAIRS])
    return ds


def _fit(ds, **overrides):
    from minis2s import train

    config = train.Config(num_samples=None, batch_size=2, epochs=2, latent_dim=8, validation_split=0.25, **overrides)
    return train.fit(config, ds, log=None)


@pytest.mark.slow  # trains
def test_default_training_is_the_teacher_forced_path_bit_for_bit():
    """fit() with the default teacher_forcing=1.0 is exactly the seed's epoch runner over
    model.apply: same shuffles, same compiled update, identical bits."""
    from minis2s import train

    ds = _tiny_fit_setup()
    params, history = _fit(ds)
    config = train.Config(num_samples=None, batch_size=2, epochs=2, latent_dim=8, validation_split=0.25)
    optimizer = train.make_optimizer(config)
    state = train.initial_state(config, ds, optimizer)
    epoch = train.make_train_epoch(optimizer, models.build(train.model_config(config, ds)).apply)
    p, o = state.params, state.opt_state
    for e in range(2):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(state.shuffle_key, e), 6))
        index, weight = batching.batch_plan(perm, 2)
        p, o, totals, _ = epoch(p, o, batching.device_data(ds), index, weight)
        assert train._summarise(totals)["loss"] == history["loss"][e]
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(p)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A constant ratio of 1 (with or without an end of 1) is the same path.
    params_one, _ = _fit(ds, teacher_forcing=1.0, teacher_forcing_end=1.0)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params_one)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow  # trains
def test_training_with_scheduled_sampling_is_reproducible_and_different():
    ds = _tiny_fit_setup()
    base, _ = _fit(ds)
    half, history = _fit(ds, teacher_forcing=0.5, cell="gru")
    again, history_again = _fit(ds, teacher_forcing=0.5, cell="gru")
    assert history["loss"] == history_again["loss"] and history["val_loss"] == history_again["val_loss"]
    for a, b in zip(jax.tree.leaves(half), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert all(np.isfinite(history["loss"])) and all(np.isfinite(history["val_loss"]))
    decayed, decayed_history = _fit(ds, teacher_forcing=1.0, teacher_forcing_end=0.0)  # LSTM, 1.0 then 0.0
    # The oracle: the schedule by hand (ratio 1 in the first epoch, 0 in the last; at these two
    # ratios the coins do not depend on the key), each epoch its own training function.
    from minis2s import train

    config = train.Config(num_samples=None, batch_size=2, epochs=2, latent_dim=8, validation_split=0.25)
    optimizer = train.make_optimizer(config)
    state = train.initial_state(config, ds, optimizer)
    model = models.build(train.model_config(config, ds))
    p, o = state.params, state.opt_state
    for e, ratio in enumerate([1.0, 0.0]):
        epoch = train.make_train_epoch(
            optimizer, lambda q, b, r=ratio: scheduled.apply(model, q, b, jax.random.PRNGKey(99), r)
        )
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(state.shuffle_key, e), 6))
        index, weight = batching.batch_plan(perm, 2)
        p, o, totals, _ = epoch(p, o, batching.device_data(ds), index, weight)
        np.testing.assert_allclose(decayed_history["loss"][e], train._summarise(totals)["loss"], rtol=1e-5)
    for a, b, c in zip(jax.tree.leaves(decayed), jax.tree.leaves(p), jax.tree.leaves(base)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(decayed), jax.tree.leaves(base)))
    assert diff > 1e-3  # and the second epoch, fed predictions, moved away from teacher forcing


def test_teacher_forcing_options_are_validated():
    from minis2s import train
    from minis2s.cli import build_parser

    with pytest.raises(ValueError, match=r"teacher_forcing must be in \[0, 1\], got 1.5"):
        train.Config(teacher_forcing=1.5).validate()
    args = build_parser().parse_args(["train", "--teacher-forcing", "0.5", "--teacher-forcing-end", "0"])
    assert (args.teacher_forcing, args.teacher_forcing_end) == (0.5, 0.0)
    assert build_parser().parse_args(["train"]).teacher_forcing is None  # filled from Config() later
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--teacher-forcing", "2"])

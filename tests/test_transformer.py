"""The Transformer's own checks (fast tier): the key/value-cache ``decode_step`` equals
``apply`` at every position, the limits it refuses in one line, its configuration and its
float64 gradient against finite differences (``minis2s gradcheck --model transformer``)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minis2s import models, search
from minis2s.config import Config
from minis2s.gradcheck import check_grads, model_loss_problem, problem_step

CONFIG = models.ModelConfig(7, 9, 1, "transformer", layers=2, heads=2, embed_dim=8, ff_dim=12, max_positions=8)


@pytest.fixture(scope="module")
def params():
    return models.build(CONFIG).init(jax.random.PRNGKey(0))


def test_cached_decode_steps_equal_apply_at_every_position(params):
    model = models.build(CONFIG)
    rng = np.random.default_rng(1)
    enc = jnp.asarray(rng.integers(0, 7, (3, 5)), jnp.int32)
    lengths = jnp.array([5, 2, 1], jnp.int32)
    dec = jnp.asarray(rng.integers(0, 9, (3, 7)), jnp.int32)  # the most apply takes: P - 1 (decoding takes one more)
    want = np.asarray(model.apply(params, {"encoder_tokens": enc, "encoder_lengths": lengths, "decoder_tokens": dec}))

    @jax.jit
    def run(params):
        memory, state = model.encode(params, enc, lengths)

        def step(state, token):
            probs, state, extra = model.decode_step(params, memory, token, state)
            return state, (probs, extra["attention"])

        return jax.lax.scan(step, state, dec.T)[1]

    probs, attention = run(params)
    got = np.swapaxes(np.asarray(probs), 0, 1)  # (B, Td, V)
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) < 1e-6
    # the attention shown: a distribution over the real characters of each sentence
    attention = np.swapaxes(np.asarray(attention), 0, 1)  # (B, Td, Te)
    np.testing.assert_allclose(attention.sum(-1), 1.0, rtol=1e-6)
    assert np.all(attention[1, :, 2:] == 0.0) and np.all(attention[2, :, 1:] == 0.0)


@pytest.mark.slow  # ~4 s: a whole decode step compiled for one NaN check
def test_a_step_past_the_learned_positions_is_nan_not_the_last_row(params):
    model = models.build(CONFIG)
    memory, state = model.encode(params, jnp.zeros((1, 4), jnp.int32), jnp.array([4]))
    state = (jnp.array([CONFIG.max_positions], jnp.int32), *state[1:])
    probs, _, _ = model.decode_step(params, memory, jnp.zeros((1,), jnp.int32), state)
    assert np.all(np.isnan(np.asarray(probs)))


def test_state_is_batch_first_for_beam_search(params):
    memory, state = models.build(CONFIG).encode(params, jnp.zeros((3, 4), jnp.int32), jnp.array([4, 2, 1]))
    assert all(a.shape[0] == 3 for a in jax.tree.leaves((memory, state)))
    assert state[1].shape == (3, CONFIG.max_positions, CONFIG.heads, CONFIG.embed_dim // CONFIG.heads)


def test_limits_and_sizes_are_refused_in_one_line(params):
    model = models.build(CONFIG)
    too_long = {"encoder_tokens": jnp.zeros((1, 9), jnp.int32), "encoder_lengths": jnp.array([9]),
                "decoder_tokens": jnp.zeros((1, 3), jnp.int32)}
    with pytest.raises(ValueError, match="--max-positions 8 is shorter than the encoder input .9 characters"):
        jax.eval_shape(model.apply, params, too_long)
    with pytest.raises(ValueError, match=r"--max-positions 8 is shorter than the longest decoded output .* \(9 characters\)"):
        jax.eval_shape(model.apply, params, dict(too_long, encoder_tokens=jnp.zeros((1, 3), jnp.int32),
                                                 decoder_tokens=jnp.zeros((1, 8), jnp.int32)))
    with pytest.raises(ValueError, match="decoding up to 9 characters needs more than the 8 positions"):
        search.check_steps(model, 9)
    search.check_steps(model, 8)
    with pytest.raises(ValueError, match="no recurrent cell; leave out --cell"):
        models.build(dataclasses.replace(CONFIG, cell="gru"))
    with pytest.raises(ValueError, match="--embed-dim 8 must be a multiple of --heads 3"):
        models.build(dataclasses.replace(CONFIG, heads=3))
    with pytest.raises(ValueError, match="attention_scale needs a model with attention"):
        Config(model="transformer", attention_scale=True).validate()
    with pytest.raises(ValueError, match="heads must be positive"):
        Config(heads=0).validate()


def test_config_for_reads_the_sizes_and_old_manifests_get_defaults():
    fields = dataclasses.asdict(Config(model="transformer", layers=3, heads=2, embed_dim=16, ff_dim=20, max_positions=40))
    got = models.config_for(fields, "abc", "abcd")
    assert (got.layers, got.heads, got.embed_dim, got.ff_dim, got.max_positions) == (3, 2, 16, 20, 40)
    old = {"latent_dim": 32, "model": "seed"}  # a manifest written before the transformer
    assert models.config_for(old, "ab", "ab") == models.ModelConfig(2, 2, 32)
    assert Config.from_dict(old).layers == models.ModelConfig(0, 0).layers


def test_gradient_against_float64_finite_differences():
    loss, params, _ = model_loss_problem(1, 0, "transformer")
    assert problem_step("transformer") == 1e-5 and problem_step("seed") == 1e-3
    report = check_grads(loss, params, entries=4, directions=2, rtol=1e-6, atol=1e-10, seed=0, eps=1e-5)
    assert report.ok, report.table()
    assert len(report.leaves) == len(jax.tree.leaves(params))


def test_a_plot_title_names_the_transformer_by_its_sizes_not_a_latent():
    # minis2s plot titles a run with Model.describe(); the RNNs say "LSTM, latent 256"
    assert models.build(CONFIG).describe() == (f"{CONFIG.layers} layers, {CONFIG.heads} heads, width "
                                               f"{CONFIG.embed_dim}, feed-forward {CONFIG.ff_dim}")
    assert models.build(dataclasses.replace(CONFIG, model="seed")).describe() == f"LSTM, latent {CONFIG.latent_dim}"

"""Beam search and sampling of the attention models (Luong and Bahdanau) against the plain
Python searches of tests/_decode_reference.py: tiny random models, a padded batch of
sentences of different lengths (so the attention masks matter), a few steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests._decode_reference import beam_search_tokens, rank, sample_tokens_reference
from minis2s import models, search

V_IN, V_OUT, H = 5, 6, 4
START, END, STEPS = 0, 5, 5
LENGTHS = (4, 2, 3)


def tiny_attention_model(name: str, seed: int = 0):
    """A random ``name`` model whose output distributions are far from uniform, the end token
    likely enough that some outputs finish before the step limit."""
    model = models.build(models.ModelConfig(V_IN, V_OUT, H, name))
    params = model.init(jax.random.PRNGKey(seed))
    params["dense"]["kernel"] = 3.0 * params["dense"]["kernel"]
    params["dense"]["bias"] = jnp.linspace(-1.0, 1.0, V_OUT)  # END (the last) the most likely a priori
    rng = np.random.default_rng(seed)
    x = rng.integers(1, V_IN, (len(LENGTHS), max(LENGTHS))).astype(np.int32)
    for b, n in enumerate(LENGTHS):
        x[b, n:] = 0  # padding, masked by the lengths
    return model, params, jnp.asarray(x), jnp.asarray(LENGTHS, jnp.int32)


def _row(tokens, length) -> list[int]:
    return np.asarray(tokens[: int(length)]).tolist()


@pytest.mark.parametrize("name", ["luong", "bahdanau"])
@pytest.mark.parametrize("width,alpha", [(2, 0.0), (3, 1.0)])
def test_beam_search_equals_the_plain_search(name, width, alpha):
    model, params, x, lengths = tiny_attention_model(name)
    statics = dict(model=model, start_token=START, end_token=END, max_steps=STEPS)
    tokens, n_out, logp = search.beam_batch(params, x, alpha, lengths, beam_width=width, keep_greedy=False, **statics)
    for b, n in enumerate(LENGTHS):
        beams = beam_search_tokens(model, params, x[b, :n], START, END, STEPS, width)  # unpadded
        score, want = max(beams, key=lambda c: rank(c[0], c[1], alpha))
        assert _row(tokens[b], n_out[b]) == want, (name, b)
        assert float(logp[b]) == pytest.approx(float(score), abs=1e-5)


@pytest.mark.parametrize("name", ["luong", "bahdanau"])
def test_all_final_beams_and_their_scores_equal_the_plain_search(name):
    model, params, x, lengths = tiny_attention_model(name, seed=1)
    memory, state = model.encode(params, x, lengths)
    finished = unfinished = 0
    for end in (END, 1):  # the likeliest token, then a rare one: beams end both ways (end token, step limit)
        tokens, n_out, scores = search._beam_loop(
            model, params, memory, state, beam_width=3, start_token=START, end_token=end, max_steps=STEPS)
        for b, n in enumerate(LENGTHS):
            want = beam_search_tokens(model, params, x[b, :n], START, end, STEPS, 3)
            assert [_row(tokens[b, k], n_out[b, k]) for k in range(3)] == [t for _, t in want], (end, b)
            np.testing.assert_allclose(np.asarray(scores[b]), [s for s, _ in want], rtol=0, atol=1e-5)
            finished += sum(t[-1] == end for _, t in want)
            unfinished += sum(t[-1] != end for _, t in want)
    assert finished and unfinished, (finished, unfinished)


@pytest.mark.parametrize("name", ["luong", "bahdanau"])
@pytest.mark.parametrize("temperature", [0.0, 0.8, 1.5])
def test_samples_are_the_plain_samplers_draws_with_the_same_keys(name, temperature):
    model, params, x, lengths = tiny_attention_model(name, seed=2)
    keys = search.sentence_keys(3, np.arange(len(LENGTHS)))
    s = 4
    tokens, n_out, logp = search.sample_batch(
        params, x, keys, temperature, lengths, model=model, num_samples=s, start_token=START, end_token=END,
        max_steps=STEPS)
    drawn = set()
    for b, n in enumerate(LENGTHS):
        want = sample_tokens_reference(model, params, x[b, :n], keys[b], START, END, STEPS, s, temperature)
        assert [_row(tokens[b, j], n_out[b, j]) for j in range(s)] == [t for t, _ in want], (name, b)
        np.testing.assert_allclose(np.asarray(logp[b]), [lp for _, lp in want], rtol=0, atol=1e-5)
        drawn.update(tuple(t) for t, _ in want)
    if temperature > 0:
        assert len(drawn) > len(LENGTHS)  # the samples of a sentence differ: the keys matter

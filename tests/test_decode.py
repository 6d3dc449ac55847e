"""Batched greedy and beam search against per-sentence reference loops on a trained tiny model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests._tiny_model import tiny_model
from minis2s import decode
from minis2s.data import END, START
from minis2s.model import ModelConfig, apply, decode_step, encode, init_params


@pytest.fixture(scope="module")
def tiny():
    params, ds, config, _ = tiny_model()
    return params, ds


# Training rows and validation rows (the last 20%) both.
ROWS = list(range(0, 140, 4))


def reference_strings(params, ds, rows):
    return [
        decode.greedy_reference(params, ds.encoder_tokens[i], ds.target_vocab, ds.max_decoder_seq_length)
        for i in rows
    ]


_apply = jax.jit(apply)
_decode_step = jax.jit(decode_step)
_encode = jax.jit(encode)


def teacher_forced_logprob(params, enc_tokens, chars, vocab, width=64):
    """``sum_t log p(y_t | y_<t, x)`` of ``chars`` by the training-time forward pass.

    The decoder input is padded to ``width`` steps (one compiled shape); the LSTM is
    causal, so the padding does not change the first ``len(chars)`` positions.
    """
    y = [vocab.index[c] for c in chars]
    dec_in = np.full((1, width), vocab.index[" "], np.int32)
    dec_in[0, : len(y)] = [vocab.index[START]] + y[:-1]
    probs = np.asarray(_apply(params, jnp.asarray(enc_tokens)[None], jnp.asarray(dec_in))[0])  # (width, V)
    return float(np.sum(np.log(probs[np.arange(len(y)), y])))


def test_batched_greedy_equals_seed_loop(tiny):
    params, ds = tiny
    ref = reference_strings(params, ds, ROWS)
    hyps = decode.decode_tokens(params, ds.encoder_tokens[ROWS], ds.target_vocab, ds.max_decoder_seq_length)
    assert [h.chars for h in hyps] == ref
    # the model is trained enough to stop by itself, with outputs that differ per input
    assert all(h.finished for h in hyps)
    assert len({h.chars for h in hyps}) >= 3


def test_batched_greedy_equals_seed_loop_at_length_limit(tiny):
    """An untrained model rarely emits "\\n": both decoders must stop after T_dec + 1 chars."""
    _, ds = tiny
    params = init_params(jax.random.PRNGKey(7), ModelConfig(len(ds.input_vocab), len(ds.target_vocab), 16))
    rows = [0, 50, 100, 139]
    ref = reference_strings(params, ds, rows)
    hyps = decode.decode_tokens(params, ds.encoder_tokens[rows], ds.target_vocab, ds.max_decoder_seq_length)
    assert [h.chars for h in hyps] == ref
    unfinished = [h for h in hyps if not h.finished]
    assert unfinished, "expected at least one output cut by the length limit"
    assert all(len(h.chars) == ds.max_decoder_seq_length + 1 for h in unfinished)


def test_chunking_padding_and_length_sorting_change_nothing(tiny):
    params, ds = tiny
    x = ds.encoder_tokens
    whole = decode.decode_tokens(params, x, ds.target_vocab, ds.max_decoder_seq_length, batch_size=256)
    lengths = [len(t) for t in ds.input_texts]
    chunked = decode.decode_tokens(
        params, x, ds.target_vocab, ds.max_decoder_seq_length, batch_size=24, input_lengths=lengths
    )
    assert [h.chars for h in chunked] == [h.chars for h in whole]
    np.testing.assert_allclose([h.logprob for h in chunked], [h.logprob for h in whole], atol=1e-4)


def test_greedy_logprob_is_the_models_probability_of_the_output(tiny):
    params, ds = tiny
    rows = ROWS[:6]
    hyps = decode.decode_tokens(params, ds.encoder_tokens[rows], ds.target_vocab, ds.max_decoder_seq_length)
    for i, h in zip(rows, hyps):
        expected = teacher_forced_logprob(params, ds.encoder_tokens[i], h.chars, ds.target_vocab)
        assert h.logprob == pytest.approx(expected, abs=1e-4)
        assert h.logprob < 0


def test_beam_width_1_is_greedy(tiny):
    params, ds = tiny
    x = ds.encoder_tokens[ROWS]
    greedy = decode.decode_tokens(params, x, ds.target_vocab, ds.max_decoder_seq_length, beam=1)
    beam1 = decode.decode_tokens(params, x, ds.target_vocab, ds.max_decoder_seq_length, beam=2 - 1)
    statics = dict(start_token=ds.target_vocab.index[START], end_token=ds.target_vocab.index[END],
                   max_steps=ds.max_decoder_seq_length + 1)
    tok_g, len_g, lp_g = decode.greedy_batch(params, jnp.asarray(x), **statics)
    tok_b, len_b, lp_b = decode.beam_batch(params, jnp.asarray(x), 0.0, beam_width=1, **statics)
    np.testing.assert_array_equal(tok_b, tok_g)
    np.testing.assert_array_equal(len_b, len_g)
    np.testing.assert_allclose(lp_b, lp_g, atol=1e-4)
    assert [h.chars for h in beam1] == [h.chars for h in greedy]


@pytest.mark.parametrize("width", [2, 4])
def test_beam_never_scores_below_greedy(tiny, width):
    params, ds = tiny
    x = ds.encoder_tokens  # all 140 sentences
    args = (params, x, ds.target_vocab, ds.max_decoder_seq_length)
    g = np.array([h.logprob for h in decode.decode_tokens(*args)])
    beam = decode.decode_tokens(*args, beam=width)
    b = np.array([h.logprob for h in beam])
    # 1e-4: the same string scored in a differently shaped batch differs in the last bits
    assert np.all(b >= g - 1e-4), np.flatnonzero(b < g - 1e-4)
    # not by returning greedy's output: beam search finds more probable ones
    assert np.sum(b > g + 1e-3) >= 10
    # the winner is the better of plain beam search and greedy
    plain = np.array([h.logprob for h in decode.decode_tokens(*args, beam=width, keep_greedy=False)])
    np.testing.assert_allclose(b, np.maximum(plain, g), atol=1e-4)
    # and the reported scores are the model's probabilities of the beam outputs
    for i in (0, 70, 139):
        assert b[i] == pytest.approx(teacher_forced_logprob(params, x[i], beam[i].chars, ds.target_vocab), abs=1e-4)


def beam_reference(params, enc_tokens, vocab, max_dec, width, alpha=0.0):
    """Beam search written plainly: one sentence, one decode call per live beam per step.

    Candidates are ordered (beam, character) before a stable sort by score, the order
    ``lax.top_k`` breaks ties in.
    """
    start, end = vocab.index[START], vocab.index[END]
    state = _encode(params, jnp.asarray(enc_tokens)[None])
    beams = [(0.0, [], False, state)]  # (log p, tokens, finished, state)
    for _ in range(max_dec + 1):
        if all(b[2] for b in beams):
            break
        candidates = []
        for score, toks, done, st in beams:
            if done:
                candidates.append((score, toks, True, st))
                continue
            prev = jnp.array([toks[-1] if toks else start], jnp.int32)
            probs, st2 = _decode_step(params, prev, st)
            logp = np.log(np.asarray(probs[0], np.float32))
            candidates += [(np.float32(score + logp[v]), toks + [v], v == end, st2) for v in range(len(vocab))]
        candidates.sort(key=lambda c: -c[0])
        beams = candidates[:width]
    best = max(beams, key=lambda b: b[0] / max(len(b[1]), 1) ** alpha)
    return vocab.decode(best[1]), float(best[0])


@pytest.mark.parametrize("width,alpha", [(3, 0.0), (3, 1.0)])
def test_beam_search_equals_plain_reference(tiny, width, alpha):
    params, ds = tiny
    rows = [0, 60, 125]  # 60: plain beam search loses greedy's output there
    hyps = decode.decode_tokens(
        params, ds.encoder_tokens[rows], ds.target_vocab, ds.max_decoder_seq_length, beam=width,
        length_alpha=alpha, keep_greedy=False,
    )
    for i, h in zip(rows, hyps):
        chars, logprob = beam_reference(params, ds.encoder_tokens[i], ds.target_vocab, ds.max_decoder_seq_length,
                                        width, alpha)
        assert h.chars == chars
        assert h.logprob == pytest.approx(logprob, abs=1e-4)


def test_decode_tokens_rejects_bad_settings_and_handles_nothing(tiny):
    params, ds = tiny
    with pytest.raises(ValueError, match="beam width"):
        decode.decode_tokens(params, ds.encoder_tokens[:2], ds.target_vocab, 5, beam=0)
    assert decode.decode_tokens(params, ds.encoder_tokens[:0], ds.target_vocab, 5) == []

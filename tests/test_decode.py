"""Batched greedy and beam search against per-sentence reference loops on a trained tiny model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests._decode_reference import beam_reference, beam_search_tokens, beam_with_greedy_reference
from tests._tiny_model import tiny_model
from minis2s import decode, models, search, train
from minis2s.data import END, START
from minis2s.model import ModelConfig, apply, init_params
from minis2s.models import Model


@pytest.fixture(scope="module")
def tiny():
    params, ds, config, _ = tiny_model()
    return params, ds, models.build(train.model_config(config, ds))


# Training rows and validation rows (the last 20%) both.
ROWS = list(range(0, 140, 4))


def reference_strings(model, params, ds, rows):
    return [
        search.greedy_reference(params, ds.encoder_tokens[i], ds.target_vocab, ds.max_decoder_seq_length, model)
        for i in rows
    ]


_apply = jax.jit(apply)


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
    params, ds, model = tiny
    ref = reference_strings(model, params, ds, ROWS)
    hyps = decode.decode_tokens(params, ds.encoder_tokens[ROWS], ds.target_vocab, ds.max_decoder_seq_length,
                                model=model)
    assert [h.chars for h in hyps] == ref
    # the model is trained enough to stop by itself, with outputs that differ per input
    assert all(h.finished for h in hyps)
    assert len({h.chars for h in hyps}) >= 3


def test_batched_greedy_equals_seed_loop_at_length_limit(tiny):
    """An untrained model rarely emits "\\n": both decoders must stop after T_dec + 1 chars."""
    _, ds, _ = tiny
    config = ModelConfig(len(ds.input_vocab), len(ds.target_vocab), 16)
    params, model = init_params(jax.random.PRNGKey(7), config), models.build(config)
    rows = [0, 50, 100, 139]
    ref = reference_strings(model, params, ds, rows)
    hyps = decode.decode_tokens(params, ds.encoder_tokens[rows], ds.target_vocab, ds.max_decoder_seq_length,
                                model=model)
    assert [h.chars for h in hyps] == ref
    unfinished = [h for h in hyps if not h.finished]
    assert unfinished, "expected at least one output cut by the length limit"
    assert all(len(h.chars) == ds.max_decoder_seq_length + 1 for h in unfinished)


def test_chunking_padding_and_length_sorting_change_nothing(tiny):
    params, ds, model = tiny
    x = ds.encoder_tokens
    args = (params, x, ds.target_vocab, ds.max_decoder_seq_length)
    whole = decode.decode_tokens(*args, batch_size=256, model=model)
    lengths = [len(t) for t in ds.input_texts]
    chunked = decode.decode_tokens(*args, batch_size=24, input_lengths=lengths, model=model)
    assert [h.chars for h in chunked] == [h.chars for h in whole]
    np.testing.assert_allclose([h.logprob for h in chunked], [h.logprob for h in whole], atol=1e-4)


def test_greedy_logprob_is_the_models_probability_of_the_output(tiny):
    params, ds, model = tiny
    rows = ROWS[:6]
    hyps = decode.decode_tokens(params, ds.encoder_tokens[rows], ds.target_vocab, ds.max_decoder_seq_length,
                                model=model)
    for i, h in zip(rows, hyps):
        expected = teacher_forced_logprob(params, ds.encoder_tokens[i], h.chars, ds.target_vocab)
        assert h.logprob == pytest.approx(expected, abs=1e-4)
        assert h.logprob < 0


def test_beam_width_1_is_greedy(tiny):
    params, ds, model = tiny
    x = ds.encoder_tokens[ROWS]
    statics = dict(start_token=ds.target_vocab.index[START], end_token=ds.target_vocab.index[END],
                   max_steps=ds.max_decoder_seq_length + 1, model=model)
    tok_g, len_g, lp_g = search.greedy_batch(params, jnp.asarray(x), **statics)
    tok_b, len_b, lp_b = search.beam_batch(params, jnp.asarray(x), 0.0, beam_width=1, **statics)
    np.testing.assert_array_equal(tok_b, tok_g)
    np.testing.assert_array_equal(len_b, len_g)
    np.testing.assert_allclose(lp_b, lp_g, atol=1e-4)
    # the strings beam search of width 1 emits are the seed loop's
    beam_strings = [ds.target_vocab.decode(np.asarray(t[:n])) for t, n in zip(tok_b, len_b)]
    assert beam_strings == reference_strings(model, params, ds, ROWS)


def _ranks(hyps, alpha):
    return np.array([h.logprob / max(len(h.chars), 1) ** alpha for h in hyps])


@pytest.mark.parametrize("width,alpha", [(2, 0.0), (4, 0.0), (2, 1.0), (4, 0.6)])
def test_beam_never_ranks_below_greedy(tiny, width, alpha):
    """The README's claim: with the default keep_greedy, the output never ranks below
    greedy's, length_alpha > 0 included; and beam search does find better-ranked outputs.

    Which rows beam search improves, and on which plain beam search (keep_greedy=False)
    prunes greedy's output and ends below it, depends on the last bits of the trained
    model, so those rows are found here at run time and checked against the plain Python
    search."""
    params, ds, model = tiny
    x = ds.encoder_tokens  # all 140 sentences
    args = (params, x, ds.target_vocab, ds.max_decoder_seq_length)
    greedy = decode.decode_tokens(*args, model=model)
    beam = decode.decode_tokens(*args, beam=width, length_alpha=alpha, model=model)  # the defaults: keep_greedy
    plain = decode.decode_tokens(*args, beam=width, length_alpha=alpha, keep_greedy=False, model=model)
    g, b, p = _ranks(greedy, alpha), _ranks(beam, alpha), _ranks(plain, alpha)
    # 1e-4: the same string scored in a differently shaped batch differs in the last bits
    assert np.all(b >= g - 1e-4), np.flatnonzero(b < g - 1e-4)
    better = np.flatnonzero(b > g + 1e-3)  # beam search found a better-ranked output
    assert len(better) > 0
    np.testing.assert_array_equal(b[better], p[better])  # ... and it is plain beam search's
    pruned = np.flatnonzero(p < g - 1e-4)  # plain beam search lost greedy's output
    assert [beam[i].chars for i in pruned] == [greedy[i].chars for i in pruned]  # keep_greedy returns it
    # the plain Python search agrees on every kind of row found (at most two of each: it is slow)
    for i, kind in [(i, "beam") for i in better[:2]] + [(i, "greedy") for i in pruned[:2]]:
        chars, logprob, g_chars, _, p_chars, p_logprob = beam_with_greedy_reference(
            model, params, x[i], ds.target_vocab, ds.max_decoder_seq_length, width, alpha)
        assert (beam[i].chars, greedy[i].chars, plain[i].chars) == (chars, g_chars, p_chars), i
        assert beam[i].logprob == pytest.approx(logprob, abs=1e-4)
        assert plain[i].logprob == pytest.approx(p_logprob, abs=1e-4)
        assert ("beam" if chars == p_chars else "greedy") == kind
    # and the reported scores are the model's probabilities of the beam outputs
    for i in (0, 70, 139, *better[:1]):
        expected = teacher_forced_logprob(params, x[i], beam[i].chars, ds.target_vocab)
        assert beam[i].logprob == pytest.approx(expected, abs=1e-4)


def _table_model(table: np.ndarray) -> Model:
    """A fake model whose next-character distribution is ``table[previous character]``:
    no parameters, a state that never changes. Exact probabilities for the searches."""
    probs = jnp.asarray(table, jnp.float32)
    return Model(
        config=models.ModelConfig(1, table.shape[1], 1),
        init=lambda key: {},
        apply=lambda params, batch: None,
        encode=lambda params, x, lengths: ({}, (jnp.zeros((x.shape[0], 1)),)),
        decode_step=lambda params, memory, token, state: (probs[token], state, {}),
    )


def test_keep_greedy_brings_back_a_pruned_greedy_output():
    """Width 2, three steps. Greedy: a (0.4), then the end (0.4): p = 0.16. Beam search keeps
    a and b (0.35); at step 2 b's children c and d (0.35 * 0.5 = 0.175 each) push every child
    of a (at most 0.4 * 0.4 = 0.16) out, and end at 0.175 * 0.5 = 0.0875 < 0.16. Plain beam
    search returns b c a; keep_greedy returns greedy's a."""
    start, end, a, b, c, d = range(6)
    table = np.full((6, 6), 1e-6)
    table[start, [a, b, c]] = [0.4, 0.35, 0.25]
    table[a, [end, a, b, c, d]] = [0.4, 0.15, 0.15, 0.15, 0.15]
    table[b, [c, d]] = 0.5
    table[c, [end, a, b]] = table[d, [end, a, b]] = [0.05, 0.5, 0.45]
    table /= table.sum(1, keepdims=True)
    model = _table_model(table)
    statics = dict(start_token=start, end_token=end, max_steps=3, model=model)
    x = jnp.zeros((1, 1), jnp.int32)
    g_tok, g_len, g_lp = search.greedy_batch({}, x, **statics)
    p_tok, p_len, p_lp = search.beam_batch({}, x, 0.0, beam_width=2, keep_greedy=False, **statics)
    k_tok, k_len, k_lp = search.beam_batch({}, x, 0.0, beam_width=2, **statics)
    assert float(p_lp[0]) < float(g_lp[0]) - 0.1  # plain beam search ended below greedy
    assert np.asarray(k_tok[0, : int(k_len[0])]).tolist() == np.asarray(g_tok[0, : int(g_len[0])]).tolist()
    assert float(k_lp[0]) == pytest.approx(float(g_lp[0]))
    # the plain Python search agrees on both
    beams = beam_search_tokens(model, {}, [0], start, end, 3, 2)
    assert np.asarray(p_tok[0, : int(p_len[0])]).tolist() == beams[0][1]
    assert float(p_lp[0]) == pytest.approx(float(beams[0][0]), abs=1e-5)
    (g_score, g_toks), = beam_search_tokens(model, {}, [0], start, end, 3, 1)
    assert np.asarray(g_tok[0, : int(g_len[0])]).tolist() == g_toks


@pytest.mark.parametrize("width,alpha", [(3, 0.0), (3, 1.0)])
def test_beam_search_equals_plain_reference(tiny, width, alpha):
    params, ds, model = tiny
    rows = [0, 60, 101]
    hyps = decode.decode_tokens(
        params, ds.encoder_tokens[rows], ds.target_vocab, ds.max_decoder_seq_length, beam=width,
        length_alpha=alpha, keep_greedy=False, model=model,
    )
    for i, h in zip(rows, hyps):
        chars, logprob = beam_reference(model, params, ds.encoder_tokens[i], ds.target_vocab,
                                        ds.max_decoder_seq_length, width, alpha)
        assert h.chars == chars
        assert h.logprob == pytest.approx(logprob, abs=1e-4)


def test_decode_tokens_rejects_bad_settings_and_handles_nothing(tiny):
    params, ds, model = tiny
    with pytest.raises(ValueError, match="beam width"):
        decode.decode_tokens(params, ds.encoder_tokens[:2], ds.target_vocab, 5, beam=0, model=model)
    assert decode.decode_tokens(params, ds.encoder_tokens[:0], ds.target_vocab, 5, model=model) == []


# --------------------------------------------------------------------------- no silent fallback


def test_every_decoder_needs_the_model(tiny):
    params, ds, model = tiny
    x = jnp.asarray(ds.encoder_tokens[:2])
    tv, t_dec = ds.target_vocab, ds.max_decoder_seq_length
    statics = dict(start_token=tv.index[START], end_token=tv.index[END], max_steps=t_dec + 1)
    calls = [
        lambda: search.greedy_batch(params, x, **statics),
        lambda: search.beam_batch(params, x, 0.0, beam_width=2, **statics),
        lambda: search.sample_batch(params, x, search.sentence_keys(0, np.arange(2)), num_samples=2, **statics),
        lambda: search.greedy_reference(params, x[0], tv, t_dec),
        lambda: decode.decode_tokens(params, x, tv, t_dec),
        lambda: decode.sample_tokens(params, x, tv, t_dec, samples=2, temperature=1.0, seed=0),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="model"):
            call()
    with pytest.raises(TypeError, match="minis2s.models.Model"):
        decode.decode_tokens(params, x, tv, t_dec, model=None)
    assert not hasattr(decode, "model_for")  # nothing guesses the model from parameter names


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_luong_parameters_need_the_luong_model(tiny, cell):
    """Luong's parameters hold every array the seed reads (same shapes) plus ``combine``:
    decoding them as the seed would run and be silently wrong. It is refused, and so are
    seed parameters given to the Luong model; the Luong model decodes them."""
    _, ds, _ = tiny
    v_in, v_out = len(ds.input_vocab), len(ds.target_vocab)
    luong = models.build(ModelConfig(v_in, v_out, 8, "luong", cell))
    seed = models.build(ModelConfig(v_in, v_out, 8, "seed", cell))
    params = luong.init(jax.random.PRNGKey(0))
    x, tv, t_dec = ds.encoder_tokens[:3], ds.target_vocab, 6
    with pytest.raises(ValueError, match=r"do not fit the seed/.* model: it does not use combine/bias, combine/kernel"):
        decode.decode_tokens(params, x, tv, t_dec, model=seed)
    with pytest.raises(ValueError, match="do not fit the seed"):
        decode.sample_tokens(params, x, tv, t_dec, model=seed, samples=2, temperature=1.0, seed=0)
    with pytest.raises(ValueError, match="do not fit the seed"):
        search.greedy_reference(params, x[0], tv, t_dec, seed)
    with pytest.raises(ValueError, match=r"do not fit the luong/.* model: missing combine/bias, combine/kernel"):
        decode.decode_tokens(seed.init(jax.random.PRNGKey(0)), x, tv, t_dec, model=luong, beam=2)
    other_cell = models.build(ModelConfig(v_in, v_out, 8, "luong", "gru" if cell == "lstm" else "lstm"))
    with pytest.raises(ValueError, match="has shape"):
        decode.decode_tokens(params, x, tv, t_dec, model=other_cell)
    hyps = decode.decode_tokens(params, x, tv, t_dec, model=luong)
    assert [h.chars for h in hyps] == [search.greedy_reference(params, x[i], tv, t_dec, luong) for i in range(3)]

"""Search written plainly, the oracle for :mod:`minis2s.search` and for the ``--beam`` and
``--sample`` options of ``translate``: one sentence, one decoder call per live beam (or
sample) per step, Python lists and sorts, no batching, no ``lax.top_k``, no
``while_loop``. Greedy decoding is beam search with one beam.

The model's own ``encode`` and ``decode_step`` (one sentence, unpadded length given) are
the building blocks; what is checked is the search around them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from minis2s.data import END, START


@functools.lru_cache(maxsize=None)
def _jitted(model):
    return jax.jit(model.encode), jax.jit(model.decode_step)


def _encode_one(model, params, enc_tokens, enc_length):
    encode, _ = _jitted(model)
    x = jnp.asarray(enc_tokens, jnp.int32).reshape(1, -1)
    n = x.shape[1] if enc_length is None else enc_length
    return encode(params, x, jnp.asarray([n], jnp.int32))


def _step(model, params, memory, token: int, state):
    _, decode_step = _jitted(model)
    probs, state, _ = decode_step(params, memory, jnp.asarray([token], jnp.int32), state)
    return np.asarray(probs[0], np.float32), state


def beam_search_tokens(model, params, enc_tokens, start: int, end: int, max_steps: int, width: int,
                       enc_length: int | None = None) -> list[tuple[np.float32, list[int]]]:
    """The ``width`` final beams ``(log p, tokens)`` of one sentence, best first.

    Candidates are ordered (beam, character) before a stable sort by score, the order
    ``lax.top_k`` breaks ties in. A finished beam proposes only itself.
    """
    memory, state = _encode_one(model, params, enc_tokens, enc_length)
    beams = [(np.float32(0.0), [], False, state)]  # (log p, tokens, finished, state)
    for _ in range(max_steps):
        if all(b[2] for b in beams):
            break
        candidates = []
        for score, toks, done, st in beams:
            if done:
                candidates.append((score, toks, True, st))
                continue
            probs, st2 = _step(model, params, memory, toks[-1] if toks else start, st)
            logp = np.log(probs)
            candidates += [(np.float32(score + logp[v]), toks + [v], v == end, st2) for v in range(len(probs))]
        candidates.sort(key=lambda c: -c[0])
        beams = candidates[:width]
    return [(b[0], b[1]) for b in beams]


def sample_tokens_reference(model, params, enc_tokens, key, start: int, end: int, max_steps: int, samples: int,
                            temperature: float, enc_length: int | None = None) -> list[tuple[list[int], float]]:
    """``samples`` draws ``(tokens, log p)`` for one sentence whose key is ``key``.

    Sample ``j`` uses ``split(key, samples)[j]``; its step ``t`` draws
    ``categorical(fold_in(sample key, t), log p / T)`` (``p^(1/T)`` renormalised), or the
    argmax at ``T = 0``. The score is the untempered ``sum_t log p(y_t)``.
    """
    memory, state0 = _encode_one(model, params, enc_tokens, enc_length)
    out = []
    for sample_key in jax.random.split(key, samples):
        toks, logp, state, prev = [], 0.0, state0, start
        for t in range(max_steps):
            probs, state = _step(model, params, memory, prev, state)
            if temperature == 0:
                v = int(np.argmax(probs))
            else:
                logits = jnp.log(jnp.asarray(probs)) / temperature  # p^(1/T), unnormalised, as logits
                v = int(jax.random.categorical(jax.random.fold_in(sample_key, t), logits))
            toks.append(v)
            logp += float(np.log(probs[v]))
            prev = v
            if v == end:
                break
        out.append((toks, logp))
    return out


def rank(score: float, tokens: list[int], alpha: float) -> float:
    """``log p / |y|**alpha``, the final ranking of beam search."""
    return float(score) / max(len(tokens), 1) ** alpha


def _best(candidates, alpha: float) -> tuple[list[int], float]:
    score, toks = max(candidates, key=lambda c: rank(c[0], c[1], alpha))  # first of equals wins
    return toks, float(score)


def beam_search(model, params, enc_tokens, vocab, max_dec: int, width: int):
    """:func:`beam_search_tokens` of one full-width sentence, with ``vocab``'s start and end."""
    return beam_search_tokens(model, params, enc_tokens, vocab.index[START], vocab.index[END], max_dec + 1, width)


def beam_reference(model, params, enc_tokens, vocab, max_dec: int, width: int, alpha: float = 0.0) -> tuple[str, float]:
    """Plain beam search (``keep_greedy=False``): the best final beam's characters and log p."""
    toks, score = _best(beam_search(model, params, enc_tokens, vocab, max_dec, width), alpha)
    return vocab.decode(toks), score


def beam_with_greedy_reference(model, params, enc_tokens, vocab, max_dec: int, width: int, alpha: float = 0.0):
    """Beam search as ``decode_tokens`` runs it by default (``keep_greedy=True``): greedy's
    output competes with the final beams; a tie goes to the beams.

    Returns ``(chars, log p, greedy_chars, greedy_log_p, plain_chars, plain_log_p)``.
    """
    beams = beam_search(model, params, enc_tokens, vocab, max_dec, width)
    (g_score, g_toks), = beam_search(model, params, enc_tokens, vocab, max_dec, 1)
    toks, score = _best(beams + [(g_score, g_toks)], alpha)
    p_toks, p_score = _best(beams, alpha)
    return vocab.decode(toks), score, vocab.decode(g_toks), float(g_score), vocab.decode(p_toks), p_score

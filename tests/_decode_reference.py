"""Beam search written plainly, the oracle for :func:`minis2s.decode.beam_batch` and for the
``--beam`` option of ``translate``: one sentence, one decoder call per live beam per step,
Python lists and sorts, no batching, no ``lax.top_k``. Greedy decoding is the same search
with one beam.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from minis2s.data import END, START
from minis2s.model import decode_step, encode

_encode = jax.jit(encode)
_decode_step = jax.jit(decode_step)


def beam_search(params, enc_tokens, vocab, max_dec: int, width: int) -> list[tuple[np.float32, list[int]]]:
    """The ``width`` final beams ``(log p, tokens)`` of one sentence, best first.

    Candidates are ordered (beam, character) before a stable sort by score, the order
    ``lax.top_k`` breaks ties in. A finished beam proposes only itself.
    """
    start, end = vocab.index[START], vocab.index[END]
    state = _encode(params, jnp.asarray(enc_tokens)[None])
    beams = [(np.float32(0.0), [], False, state)]  # (log p, tokens, finished, state)
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
    return [(b[0], b[1]) for b in beams]


def rank(score: float, tokens: list[int], alpha: float) -> float:
    """``log p / |y|**alpha``, the final ranking of beam search."""
    return float(score) / max(len(tokens), 1) ** alpha


def _best(candidates, alpha: float) -> tuple[list[int], float]:
    score, toks = max(candidates, key=lambda c: rank(c[0], c[1], alpha))  # first of equals wins
    return toks, float(score)


def beam_reference(params, enc_tokens, vocab, max_dec: int, width: int, alpha: float = 0.0) -> tuple[str, float]:
    """Plain beam search (``keep_greedy=False``): the best final beam's characters and log p."""
    toks, score = _best(beam_search(params, enc_tokens, vocab, max_dec, width), alpha)
    return vocab.decode(toks), score


def beam_with_greedy_reference(params, enc_tokens, vocab, max_dec: int, width: int, alpha: float = 0.0):
    """Beam search as ``decode_tokens`` runs it by default (``keep_greedy=True``): greedy's
    output competes with the final beams; a tie goes to the beams.

    Returns ``(chars, log p, greedy_chars, greedy_log_p, plain_chars, plain_log_p)``.
    """
    beams = beam_search(params, enc_tokens, vocab, max_dec, width)
    (g_score, g_toks), = beam_search(params, enc_tokens, vocab, max_dec, 1)
    toks, score = _best(beams + [(g_score, g_toks)], alpha)
    p_toks, p_score = _best(beams, alpha)
    return vocab.decode(toks), score, vocab.decode(g_toks), float(g_score), vocab.decode(p_toks), p_score

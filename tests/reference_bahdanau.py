"""An independent float64 NumPy Bahdanau model (LSTM or GRU cell): the oracle
``minis2s/models/bahdanau.py`` is tested against.

Written from the equations, one sentence at a time: the encoder reads only the sentence's
real characters (no padding, no mask), the attention softmax runs over those positions
only, inputs are one-hot rows times full matrices (no gathers, no scan).
"""

from __future__ import annotations

import numpy as np

from tests.reference import gru_cell, lstm_cell


def _lstm(x, state, w):
    return lstm_cell(x, *state, w["kernel"], w["recurrent_kernel"], w["bias"])


def _gru(x, state, w):
    return (gru_cell(x, state[0], w["kernel"], w["recurrent_kernel"], w["bias"]),)


# cell name -> (step(x (1, D), state, weights) -> state, number of (1, H) arrays in the state)
CELLS = {"lstm": (_lstm, 2), "gru": (_gru, 1)}


def _f64(params):
    return {k: {n: np.asarray(a, np.float64) for n, a in v.items()} for k, v in params.items()}


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def bahdanau_sentence(p, enc_ids, dec_ids, v_in, v_out, cell="lstm"):
    """One sentence: ``enc_ids`` its real English token ids (no padding), ``dec_ids`` the
    decoder inputs. Returns ``probs (T_dec, V_out)`` and the attention ``(T_dec, len)``."""
    e, d = p["encoder"], p["decoder"]
    step, n_state = CELLS[cell]
    H = e["recurrent_kernel"].shape[0]
    state = tuple(np.zeros((1, H)) for _ in range(n_state))
    outputs = []
    for k in enc_ids:
        state = step(np.eye(v_in)[[k]], state, e)
        outputs.append(state[0][0])
    hs = np.stack(outputs)  # (len, H)
    Wq, Wk, v = p["query"]["kernel"], p["key"]["kernel"], p["attention"]["scale"]
    probs, weights = [], []
    for y in dec_ids:
        scores = np.array([v @ np.tanh(state[0][0] @ Wq + hs[j] @ Wk) for j in range(len(hs))])  # (len,)
        a = softmax(scores)
        ctx = a @ hs  # (H,)
        x = np.concatenate([np.eye(v_out)[y], ctx])[None]  # (1, V_out + H)
        state = step(x, state, d)
        probs.append(softmax(state[0][0] @ p["dense"]["kernel"] + p["dense"]["bias"]))
        weights.append(a)
    return np.stack(probs), np.stack(weights)


def bahdanau_model(params, encoder_tokens, encoder_lengths, decoder_tokens, cell="lstm"):
    """A padded batch: ``probs (B, T_dec, V_out)`` and attention ``(B, T_dec, T_enc)`` (zeros
    over the padding), each row computed by :func:`bahdanau_sentence` from its real tokens."""
    p = _f64(params)
    v_in = p["encoder"]["kernel"].shape[0]
    v_out = p["dense"]["kernel"].shape[1]
    B, T_enc = np.shape(encoder_tokens)
    probs, att = [], np.zeros((B, np.shape(decoder_tokens)[1], T_enc))
    for b in range(B):
        n = int(encoder_lengths[b])
        pr, a = bahdanau_sentence(p, list(encoder_tokens[b][:n]), list(decoder_tokens[b]), v_in, v_out, cell)
        probs.append(pr)
        att[b, :, :n] = a
    return np.stack(probs), att

"""An independent float64 NumPy Luong model with input feeding (LSTM or GRU cell): the
oracle ``minis2s/models/luong.py`` (``input_feeding=True``) is tested against.

Written from the equations of Luong et al. (2015), sections 3.1 and 3.3, one sentence at a
time: the encoder reads only the sentence's real characters (no padding, no mask), the
attention softmax runs over those positions only, and the decoder's input at step t is the
one-hot character next to the previous attentional vector, ``[onehot(y_t) ; h~_{t-1}]``
with ``h~_0 = 0``, times the full kernel (no gathers, no split kernels, no scan).
"""

from __future__ import annotations

import numpy as np

from tests.reference_bahdanau import CELLS, _f64, softmax


def feed_sentence(p, enc_ids, dec_ids, v_in, v_out, cell="lstm"):
    """One sentence: ``enc_ids`` its real English token ids, ``dec_ids`` the decoder inputs.
    Returns ``probs (T_dec, V_out)`` and the attention weights ``(T_dec, len)``."""
    step, n_state = CELLS[cell]
    H = p["encoder"]["recurrent_kernel"].shape[0]
    scale = float(p["attention"]["scale"]) if "attention" in p else 1.0
    state = tuple(np.zeros((1, H)) for _ in range(n_state))
    outputs = []
    for k in enc_ids:
        state = step(np.eye(v_in)[[k]], state, p["encoder"])
        outputs.append(state[0][0])
    values = np.stack(outputs)  # (len, H)
    fed = np.zeros(H)  # h~_0
    probs, weights = [], []
    for y in dec_ids:
        x = np.concatenate([np.eye(v_out)[y], fed])[None]  # (1, V_out + H)
        state = step(x, state, p["decoder"])
        h = state[0][0]  # (H,)
        a = softmax(scale * (values @ h))  # (len,)
        ctx = a @ values  # (H,)
        fed = np.tanh(np.concatenate([ctx, h]) @ p["combine"]["kernel"] + p["combine"]["bias"])  # h~_t
        probs.append(softmax(fed @ p["dense"]["kernel"] + p["dense"]["bias"]))
        weights.append(a)
    return np.stack(probs), np.stack(weights)


def feed_model(params, encoder_tokens, encoder_lengths, decoder_tokens, cell="lstm"):
    """A padded batch: ``probs (B, T_dec, V_out)`` and attention ``(B, T_dec, T_enc)`` (zeros
    over the padding), each row from :func:`feed_sentence` on its real tokens."""
    p = _f64(params)
    v_in = p["encoder"]["kernel"].shape[0]
    v_out = p["dense"]["kernel"].shape[1]
    B, T_enc = np.shape(encoder_tokens)
    probs, att = [], np.zeros((B, np.shape(decoder_tokens)[1], T_enc))
    for b in range(B):
        n = int(encoder_lengths[b])
        pr, a = feed_sentence(p, list(encoder_tokens[b][:n]), list(decoder_tokens[b]), v_in, v_out, cell)
        probs.append(pr)
        att[b, :, :n] = a
    return np.stack(probs), att

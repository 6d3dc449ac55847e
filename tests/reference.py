"""An independent float64 NumPy LSTM, GRU and seed model: the oracle the JAX code is tested against.

Written from the equations, with one-hot inputs as full matmuls (no gathers, no scan).
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_cell(x, h, c, W, U, b):
    """x (B, D), h/c (B, H), W (D, 4H), U (H, 4H), b (4H,) -> (h, c)."""
    z = x @ W + h @ U + b
    H = h.shape[1]
    i = sigmoid(z[:, :H])
    f = sigmoid(z[:, H : 2 * H])
    g = np.tanh(z[:, 2 * H : 3 * H])
    o = sigmoid(z[:, 3 * H :])
    c = f * c + i * g
    h = o * np.tanh(c)
    return h, c


def lstm_layer(xs, W, U, b, h0=None, c0=None):
    """xs (B, T, D) -> hs (B, T, H), (h_T, c_T)."""
    B, T, _ = xs.shape
    H = U.shape[0]
    h = np.zeros((B, H)) if h0 is None else h0
    c = np.zeros((B, H)) if c0 is None else c0
    hs = []
    for t in range(T):
        h, c = lstm_cell(xs[:, t], h, c, W, U, b)
        hs.append(h)
    return np.stack(hs, axis=1), (h, c)


def gru_cell(x, h, W, U, b):
    """Keras GRU, reset_after=True: x (B, D), h (B, H), W (D, 3H), U (H, 3H), b (2, 3H) -> h.

    Gates in the order z, r, h; b[0] is added to x W, b[1] to h U, and the reset gate
    scales the recurrent part of the candidate after the matmul.
    """
    H = h.shape[1]
    wz, wr, wh = W[:, :H], W[:, H : 2 * H], W[:, 2 * H :]
    uz, ur, uh = U[:, :H], U[:, H : 2 * H], U[:, 2 * H :]
    bx, bh = b[0], b[1]
    z = sigmoid(x @ wz + bx[:H] + h @ uz + bh[:H])
    r = sigmoid(x @ wr + bx[H : 2 * H] + h @ ur + bh[H : 2 * H])
    n = np.tanh(x @ wh + bx[2 * H :] + r * (h @ uh + bh[2 * H :]))
    return z * h + (1.0 - z) * n


def gru_layer(xs, W, U, b, h0=None):
    """xs (B, T, D) -> hs (B, T, H), (h_T,)."""
    B, T, _ = xs.shape
    h = np.zeros((B, U.shape[0])) if h0 is None else h0
    hs = []
    for t in range(T):
        h = gru_cell(xs[:, t], h, W, U, b)
        hs.append(h)
    return np.stack(hs, axis=1), (h,)


def seed_model(params, enc_onehot, dec_onehot, cell="lstm"):
    """The seed's training model on one-hot inputs: softmax probabilities (B, T, V)."""
    p = {k: {n: np.asarray(a, np.float64) for n, a in v.items()} for k, v in params.items()}
    e, d, dense = p["encoder"], p["decoder"], p["dense"]
    layer = {"lstm": lstm_layer, "gru": gru_layer}[cell]
    _, state = layer(enc_onehot, e["kernel"], e["recurrent_kernel"], e["bias"])
    hs, _ = layer(dec_onehot, d["kernel"], d["recurrent_kernel"], d["bias"], *state)
    logits = hs @ dense["kernel"] + dense["bias"]
    logits = logits - logits.max(-1, keepdims=True)
    ex = np.exp(logits)
    return ex / ex.sum(-1, keepdims=True)


def keras_crossentropy(probs, target_onehot, eps=1e-7):
    p = probs / probs.sum(-1, keepdims=True)
    p = np.clip(p, eps, 1 - eps)
    return float(np.mean(-np.sum(target_onehot * np.log(p), axis=-1)))

"""An independent float64 NumPy LSTM and seed model: the oracle the JAX code is tested against.

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


def seed_model(params, enc_onehot, dec_onehot):
    """The seed's training model on one-hot inputs: softmax probabilities (B, T, V)."""
    p = {k: {n: np.asarray(a, np.float64) for n, a in v.items()} for k, v in params.items()}
    e, d, dense = p["encoder"], p["decoder"], p["dense"]
    _, (h, c) = lstm_layer(enc_onehot, e["kernel"], e["recurrent_kernel"], e["bias"])
    hs, _ = lstm_layer(dec_onehot, d["kernel"], d["recurrent_kernel"], d["bias"], h, c)
    logits = hs @ dense["kernel"] + dense["bias"]
    logits = logits - logits.max(-1, keepdims=True)
    ex = np.exp(logits)
    return ex / ex.sum(-1, keepdims=True)


def keras_crossentropy(probs, target_onehot, eps=1e-7):
    p = probs / probs.sum(-1, keepdims=True)
    p = np.clip(p, eps, 1 - eps)
    return float(np.mean(-np.sum(target_onehot * np.log(p), axis=-1)))

"""Checking the LSTM gradient by hand, in five steps.

1. A tiny LSTM layer and a scalar loss of its outputs, in float64.
2. The backward pass through time written out in NumPy, line by line as docs/math.md
   section 6.3 derives it, with its names (dh_next, dc_next, c_prev, dz, then dU = H_prev^T dZ).
3. That hand gradient against ``jax.grad`` and against a central finite difference.
4. The same hand gradient against ``minis2s.bptt._lstm_bwd``, the backward pass training uses.
5. The same check on the whole seed model with the public toolkit, minis2s.gradcheck.

Run: ``python scripts/lessons/gradcheck_demo.py [--hidden 4] [--steps 5] [--seed 0]``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from minis2s import bptt, lstm, model, train
from minis2s.gradcheck import check_grads

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--hidden", type=int, default=4)
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

B, T, D, H = 2, args.steps, 3, args.hidden
rng = np.random.default_rng(args.seed)

# ---------------------------------------------------------------- 1. layer and loss
W = rng.normal(0, 0.5, (D, 4 * H))  # kernel
U = rng.normal(0, 0.5, (H, 4 * H))  # recurrent_kernel
b = rng.normal(0, 0.5, 4 * H)  # bias
X = rng.normal(size=(B, T, D))
R = rng.normal(size=(B, T, H))  # loss = sum(R * hs): dL/dh_t = R[:, t]


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def forward(W, U, b):
    """Forward pass that keeps what the backward pass needs."""
    h, c = np.zeros((B, H)), np.zeros((B, H))
    cache = []
    for t in range(T):
        z = X[:, t] @ W + h @ U + b
        i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
        c_prev, h_prev = c, h
        c = f * c_prev + i * g
        h = o * np.tanh(c)
        cache.append((h_prev, c_prev, i, f, g, o, c))
    return cache


cache = forward(W, U, b)
hs = np.stack([o * np.tanh(c) for (_, _, _, _, _, o, c) in cache], axis=1)
L = float(np.sum(R * hs))
print(f"1. LSTM layer: B={B} T={T} D={D} H={H}; loss = sum(R * h) = {L:.6f}")

# ---------------------------------------------------------------- 2. hand backward
# Start values: past the last step nothing comes back, dh_T = dc_T = 0 (the loss does not
# use the final state).
dh_next = np.zeros((B, H))  # gradient arriving from step t+1 through U
dc_next = np.zeros((B, H))  # gradient arriving from step t+1 through the cell
dZ = np.zeros((T, B, 4 * H))  # dZ[t] = dz_t
for t in reversed(range(T)):
    h_prev, c_prev, i, f, g, o, c = cache[t]
    dh_out = R[:, t]  # the loss's gradient on h_t
    dh = dh_out + dh_next  # output gradient + recurrent gradient
    tanh_c = np.tanh(c)
    do = dh * tanh_c
    dc = dc_next + dh * o * (1 - tanh_c**2)
    di, df, dg = dc * g, dc * c_prev, dc * i
    dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)], axis=1)
    dZ[t] = dz
    dc_next = dc * f
    dh_next = dz @ U.T
# After step 1, (dh_next, dc_next) are the gradients of the initial state (h_0, c_0).
# Weight gradients: one matmul each over all T*B rows, outside the time loop.
H_prev = np.stack([step[0] for step in cache]).reshape(T * B, H)
Xs = np.swapaxes(X, 0, 1).reshape(T * B, D)
dZ2 = dZ.reshape(T * B, 4 * H)
hand = {"kernel": Xs.T @ dZ2, "recurrent_kernel": H_prev.T @ dZ2, "bias": dZ2.sum(0)}
print("2. hand-written BPTT done: dW = X^T dZ, dU = H_prev^T dZ, db = sum dZ")

# ---------------------------------------------------------------- 3. compare
with jax.enable_x64(True):
    p64 = {"kernel": jnp.asarray(W), "recurrent_kernel": jnp.asarray(U), "bias": jnp.asarray(b)}
    f = lambda p: jnp.sum(jnp.asarray(R) * lstm.layer(p, jnp.asarray(X))[0])  # noqa: E731
    auto = jax.grad(f)(p64)
    print(f"   jax loss {float(f(p64)):.6f} (NumPy {L:.6f})")
    for name in ("kernel", "recurrent_kernel", "bias"):
        err = np.abs(np.asarray(auto[name]) - hand[name]).max()
        print(f"3. {name:17s} max |hand - jax.grad| = {err:.2e}")
        assert err < 1e-10, name
    # One entry by central differences: (L(u + eps) - L(u - eps)) / (2 eps).
    eps = 1e-6
    e = jnp.zeros_like(p64["recurrent_kernel"]).at[0, H].set(eps)  # a forget-gate weight
    fd = (float(f({**p64, "recurrent_kernel": p64["recurrent_kernel"] + e}))
          - float(f({**p64, "recurrent_kernel": p64["recurrent_kernel"] - e}))) / (2 * eps)
    print(f"   recurrent_kernel[0, H]: hand {hand['recurrent_kernel'][0, H]:.10f}, finite difference {fd:.10f}")
    assert abs(fd - hand["recurrent_kernel"][0, H]) < 1e-8

# ---------------------------------------------------------------- 4. minis2s.bptt._lstm_bwd
# The training path's backward pass, called directly: forward residuals from _lstm_fwd, the
# cotangents (dh_out for every step time-major, dh_T = dc_T = 0), and out come the weight
# gradients and the initial-state gradients.
with jax.enable_x64(True):
    zeros = jnp.zeros((B, H))
    outputs, residuals = bptt._lstm_fwd(p64, jnp.asarray(X), zeros, zeros)
    cotangents = (jnp.asarray(np.swapaxes(R, 0, 1)), zeros, zeros)
    d_params, _, dh0, dc0 = bptt._lstm_bwd(residuals, cotangents)
    for name in ("kernel", "recurrent_kernel", "bias"):
        err = np.abs(np.asarray(d_params[name]) - hand[name]).max()
        print(f"4. {name:17s} max |hand - bptt._lstm_bwd| = {err:.2e}")
        assert err < 1e-10, name
    err = max(np.abs(np.asarray(dh0) - dh_next).max(), np.abs(np.asarray(dc0) - dc_next).max())
    print(f"4. initial state     max |hand - bptt._lstm_bwd| = {err:.2e}  (dh_0, dc_0)")
    assert err < 1e-10

# ---------------------------------------------------------------- 5. whole model, toolkit
cfg = model.ModelConfig(num_encoder_tokens=6, num_decoder_tokens=7, latent_dim=args.hidden)
params = model.init_params(jax.random.PRNGKey(args.seed), cfg)
batch = {
    "encoder_tokens": rng.integers(0, 6, (2, 4)).astype(np.int32),
    "decoder_tokens": rng.integers(0, 7, (2, 5)).astype(np.int32),
    "target_tokens": rng.integers(0, 7, (2, 5)).astype(np.int32),
    "weight": np.ones(2),
}
report = check_grads(lambda p: train.loss_fn(p, batch)[0], params, entries="all")
print("5. whole model, every entry of every leaf, minis2s.gradcheck.check_grads:")
print(report.table())
assert report.ok
print("all gradients agree")

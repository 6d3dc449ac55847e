"""The LSTM layer with a hand-derived backward pass through time (``jax.custom_vjp``).

:func:`minis2s.lstm.layer` lets JAX differentiate the ``lax.scan``. That works, but the
transposed scan accumulates ``dU`` with one small ``(H, B) @ (B, 4H)`` matmul per step and
saves/reloads more than it needs. Here the backward pass is written out by hand:

Forward (one ``lax.scan``), with the one-``tanh`` gate block of :func:`minis2s.lstm.fast_gates`
(``s`` = per-column scale, 1/2 for sigmoid gates and 1 for ``g``; ``m`` = offset)::

    z_t = zx_t + h_{t-1} U                    zx_t = x_t W + b, all steps before the scan
    t_t = tanh(s * z_t)                       (B, 4H)   saved
    [i, f, g, o] = a_t = s * t_t + m
    c_t = f * c_{t-1} + i * g                 (B, H)    saved
    h_t = o * tanh(c_t)                       (B, H)    the output, also saved

Backward (one reverse ``lax.scan``), carrying ``dh`` and ``dc`` from step ``t+1``::

    dh_t   = dhs_t + dh_{t}^{rec}             output cotangent plus the recurrent one
    k_t    = tanh(c_t)
    dc_t   = dc_t^{rec} + dh_t * o * (1 - k_t^2)
    da_t   = [dc_t * g,  dc_t * c_{t-1},  dc_t * i,  dh_t * k_t]     (d/di, d/df, d/dg, d/do)
    dZ_t   = da_t * s^2 * (1 - t_t^2)         (B, 4H), emitted per step
    dh_{t-1}^{rec} = dZ_t U^T                 the only matmul inside the backward loop
    dc_{t-1}^{rec} = dc_t * f

After the scan every weight gradient is ONE large operation over all ``T*B`` rows::

    dU = H_prev^T dZ        H_prev = [h_0, h_1, ..., h_{T-1}]   (T*B, H)^T @ (T*B, 4H)
    dW = X^T dZ             float inputs; for token inputs a scatter-add of dZ rows
    db = sum_{t,b} dZ

**Why no input-token gradient.** With integer tokens, ``x_t W`` is the row gather
``W[token]`` (a one-hot row selects one row of ``W``), so ``dW[k] = sum of dZ rows whose
token is k`` (the scatter-add above) and the tokens themselves are integers: there is no
gradient to take. The seed feeds one-hot *data*, which are constants of the problem, not
parameters, so nothing upstream consumes ``dX`` either. For float inputs this module still
returns the exact ``dX = dZ W^T``; under ``jit`` XLA removes it when no one uses it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .lstm import Params, fast_gates, gate_constants, input_projection

State = tuple[jax.Array, jax.Array]


def _forward_scan(recurrent_kernel, zx, h0, c0):
    """Run the recurrence; return ``hs, cs, ts`` (time-major) and the final ``(h, c)``."""
    units = h0.shape[-1]
    scale, offset = gate_constants(units, zx.dtype)

    def step(carry, zx_t):
        h_prev, c_prev = carry
        t, a = fast_gates(zx_t + h_prev @ recurrent_kernel, scale, offset)  # (B, 4H)
        i, f, g, o = jnp.split(a, 4, axis=-1)
        c = f * c_prev + i * g
        h = o * jnp.tanh(c)
        return (h, c), (h, c, t)

    (h_T, c_T), (hs, cs, ts) = jax.lax.scan(step, (h0, c0), zx)
    return hs, cs, ts, h_T, c_T


@jax.custom_vjp
def _lstm(params: Params, inputs: jax.Array, h0: jax.Array, c0: jax.Array):
    zx = input_projection(params, inputs)  # (T, B, 4H)
    hs, _, _, h_T, c_T = _forward_scan(params["recurrent_kernel"], zx, h0, c0)
    return hs, h_T, c_T


def _lstm_fwd(params, inputs, h0, c0):
    zx = input_projection(params, inputs)  # (T, B, 4H)
    hs, cs, ts, h_T, c_T = _forward_scan(params["recurrent_kernel"], zx, h0, c0)
    residuals = (params, inputs, h0, c0, hs, cs, ts)
    return (hs, h_T, c_T), residuals


def _lstm_bwd(residuals, cotangents):
    params, inputs, h0, c0, hs, cs, ts = residuals
    dhs, dh_T, dc_T = cotangents  # (T, B, H), (B, H), (B, H)
    units = h0.shape[-1]
    scale, offset = gate_constants(units, hs.dtype)
    scale_sq = scale * scale
    u_t = params["recurrent_kernel"].T  # (4H, H), transposed once, outside the loop
    c_prev = jnp.concatenate([c0[None], cs[:-1]], axis=0)  # (T, B, H)
    h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)  # (T, B, H)

    def step(carry, xs):
        dh_rec, dc_rec = carry
        dh_out, t, c, c_before = xs
        i, f, g, o = jnp.split(t * scale + offset, 4, axis=-1)
        dh = dh_out + dh_rec
        k = jnp.tanh(c)
        dc = dc_rec + dh * o * (1.0 - k * k)
        da = jnp.concatenate([dc * g, dc * c_before, dc * i, dh * k], axis=-1)  # (B, 4H)
        dz = da * scale_sq * (1.0 - t * t)  # (B, 4H)
        return (dz @ u_t, dc * f), dz

    # dh_T enters as the recurrent cotangent of the last step, dc_T likewise.
    (dh0, dc0), dZ = jax.lax.scan(step, (dh_T, dc_T), (dhs, ts, cs, c_prev), reverse=True)

    T, B, G = dZ.shape
    dZ_rows = dZ.reshape(T * B, G)  # (T*B, 4H)
    d_recurrent = h_prev.reshape(T * B, units).T @ dZ_rows  # (H, 4H): H_prev^T dZ
    d_bias = jnp.sum(dZ_rows, axis=0)  # (4H,)
    kernel = params["kernel"]
    if jnp.issubdtype(inputs.dtype, jnp.integer):
        tokens = inputs.T.reshape(T * B)  # time-major, matching dZ_rows
        d_kernel = jnp.zeros_like(kernel).at[tokens].add(dZ_rows)  # scatter-add == one-hot^T dZ
        d_inputs = None  # integers: no gradient (see module docstring)
    else:
        d_kernel = jnp.einsum("btd,tbg->dg", inputs, dZ)  # X^T dZ
        d_inputs = jnp.einsum("tbg,dg->btd", dZ, kernel)  # dZ W^T (dropped by jit if unused)
    d_params = {"kernel": d_kernel, "recurrent_kernel": d_recurrent, "bias": d_bias}
    return d_params, d_inputs, dh0, dc0


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


def layer_time_major(
    params: Params, inputs: jax.Array, initial_state: State | None = None
) -> tuple[jax.Array, State]:
    """Like :func:`layer` but returns ``hs`` time-major, ``(T, B, H)`` (no transpose)."""
    if set(params) != {"kernel", "recurrent_kernel", "bias"}:
        raise ValueError(f"LSTM params must be kernel, recurrent_kernel, bias; got {sorted(params)}")
    if initial_state is None:
        hidden = params["recurrent_kernel"].shape[0]
        zeros = jnp.zeros((inputs.shape[0], hidden), params["recurrent_kernel"].dtype)
        initial_state = (zeros, zeros)
    hs, h_T, c_T = _lstm(params, inputs, *initial_state)
    return hs, (h_T, c_T)


def layer(
    params: Params, inputs: jax.Array, initial_state: State | None = None
) -> tuple[jax.Array, State]:
    """Drop-in for :func:`minis2s.lstm.layer` (same arguments, same results within float
    tolerance) whose gradient is the hand-derived BPTT above.

    Returns ``hs`` ``(B, T, H)`` and the final ``(h_T, c_T)``.
    """
    hs, state = layer_time_major(params, inputs, initial_state)
    return jnp.swapaxes(hs, 0, 1), state

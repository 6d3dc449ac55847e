"""The LSTM layer with a hand-derived backward pass through time (``jax.custom_vjp``).

:func:`minis2s.lstm.layer` lets JAX differentiate the ``lax.scan``. That works, but the
transposed scan accumulates ``dU`` with one small ``(H, B) @ (B, 4H)`` matmul per step and
saves/reloads more than it needs. Here the backward pass is written out by hand:

Symbols as in docs/math.md sections 3 and 6.3-6.4. Forward (one ``lax.scan``), with the
one-``tanh`` gate block of :func:`minis2s.lstm.fast_gates` (``s`` = per-column scale, 1/2 for
the sigmoid gates and 1 for ``g``; ``m`` = offset)::

    z_t   = zx_t + h_{t-1} U                  zx_t = x_t W + b, all steps before the scan
    tau_t = tanh(s * z_t)                     (B, 4H)   saved
    [i_t, f_t, g_t, o_t] = s * tau_t + m      the four gates, recomputed from tau_t
    c_t   = f_t * c_{t-1} + i_t * g_t         (B, H)    saved
    h_t   = o_t * tanh(c_t)                   (B, H)    the output, also saved

Backward (one reverse ``lax.scan``). Its carry ``(dh_next, dc_next)`` is what step ``t+1``
sends back; it starts at the cotangents ``(dh_T, dc_T)`` of the final state (zero when the
final state is unused)::

    dh_t  = dh_out_t + dh_next                the output's cotangent plus the recurrent one
    dc_t  = dc_next + dh_t * o_t * (1 - tanh^2 c_t)
    d[i, f, g, o]_t = [dc_t * g_t,  dc_t * c_{t-1},  dc_t * i_t,  dh_t * tanh(c_t)]
    dz_t  = d[i, f, g, o]_t * s^2 * (1 - tau_t^2)      (B, 4H), emitted per step
    dh_next <- dz_t U^T                       the only matmul inside the backward loop
    dc_next <- dc_t * f_t

After the scan every weight gradient is ONE large operation over all ``T*B`` rows::

    dU = H_prev^T dZ        H_prev = [h_0, ..., h_{T-1}] (math.md: calligraphic H_prev)
                            (T*B, H)^T @ (T*B, 4H); dZ stacks the dz_t
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


def _forward_scan(U, zx, h0, c0):
    """Run the recurrence; return ``hs, cs, taus`` (time-major) and the final ``(h_T, c_T)``."""
    units = h0.shape[-1]
    s, m = gate_constants(units, zx.dtype)  # (4H,) scale and offset

    def step(carry, zx_t):
        h_prev, c_prev = carry
        tau, gates = fast_gates(zx_t + h_prev @ U, s, m)  # (B, 4H) each
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = f * c_prev + i * g
        h = o * jnp.tanh(c)
        return (h, c), (h, c, tau)

    (h_T, c_T), (hs, cs, taus) = jax.lax.scan(step, (h0, c0), zx)
    return hs, cs, taus, h_T, c_T


@jax.custom_vjp
def _lstm(params: Params, inputs: jax.Array, h0: jax.Array, c0: jax.Array):
    zx = input_projection(params, inputs)  # (T, B, 4H)
    hs, _, _, h_T, c_T = _forward_scan(params["recurrent_kernel"], zx, h0, c0)
    return hs, h_T, c_T


def _lstm_fwd(params, inputs, h0, c0):
    zx = input_projection(params, inputs)  # (T, B, 4H)
    hs, cs, taus, h_T, c_T = _forward_scan(params["recurrent_kernel"], zx, h0, c0)
    residuals = (params, inputs, h0, c0, hs, cs, taus)
    return (hs, h_T, c_T), residuals


def _lstm_bwd(residuals, cotangents):
    """The backward pass of docs/math.md section 6.3-6.4: a reverse scan carrying
    ``(dh_next, dc_next)`` from ``(dh_T, dc_T)``, then one matmul per weight gradient."""
    params, inputs, h0, c0, hs, cs, taus = residuals
    dh_out, dh_T, dc_T = cotangents  # (T, B, H), (B, H), (B, H)
    units = h0.shape[-1]
    s, m = gate_constants(units, hs.dtype)
    s_sq = s * s  # (4H,): d gates / d z = s^2 (1 - tau^2)
    U_T = params["recurrent_kernel"].T  # (4H, H), transposed once, outside the loop
    c_prevs = jnp.concatenate([c0[None], cs[:-1]], axis=0)  # (T, B, H): c_{t-1} for every t
    h_prevs = jnp.concatenate([h0[None], hs[:-1]], axis=0)  # (T, B, H): h_{t-1} for every t

    def step(carry, xs):
        dh_next, dc_next = carry  # what step t+1 sends back
        dh_out_t, tau, c, c_prev = xs
        i, f, g, o = jnp.split(tau * s + m, 4, axis=-1)
        dh = dh_out_t + dh_next
        tanh_c = jnp.tanh(c)
        dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)
        d_gates = jnp.concatenate([dc * g, dc * c_prev, dc * i, dh * tanh_c], axis=-1)  # d[i,f,g,o], (B, 4H)
        dz = d_gates * s_sq * (1.0 - tau * tau)  # (B, 4H)
        return (dz @ U_T, dc * f), dz  # (dh_next, dc_next) for step t-1

    (dh0, dc0), dZ = jax.lax.scan(step, (dh_T, dc_T), (dh_out, taus, cs, c_prevs), reverse=True)

    T, B, four_h = dZ.shape
    dZ_rows = dZ.reshape(T * B, four_h)  # (T*B, 4H)
    d_recurrent = h_prevs.reshape(T * B, units).T @ dZ_rows  # (H, 4H): H_prev^T dZ
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

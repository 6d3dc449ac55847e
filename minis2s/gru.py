"""The GRU layer with Keras 3 semantics (``reset_after=True``): parameters, cell, scan, BPTT.

Parameters of one layer (a plain dict, names as in Keras)::

    kernel            (D, 3H)   input -> gates
    recurrent_kernel  (H, 3H)   previous hidden state -> gates
    bias              (2, 3H)   row 0: input bias b_x, row 1: recurrent bias b_h

The ``3H`` columns hold the gates in Keras order **z, r, h**: update gate, reset gate,
candidate state. Initialisation as Keras: glorot-uniform ``kernel``, orthogonal
``recurrent_kernel``, zero ``bias`` (no forget-gate style offset). The state is ``h``
alone; a decoder started "from the encoder's state" receives one vector, not two.

Two layers with the same forward values:

- :func:`layer`: the reference. JAX differentiates the ``lax.scan``.
- :func:`bptt_layer`: the same forward pass whose gradient is written out by hand
  (``jax.custom_vjp``, :func:`_gru_bwd`): one reverse scan carrying ``dh`` and emitting the
  per-step pre-activation gradients, then every weight gradient as one matmul over all
  ``T*B`` rows (as :mod:`minis2s.bptt` does for the LSTM).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .lstm import glorot_uniform, orthogonal

Params = dict[str, jax.Array]
State = tuple[jax.Array]

WEIGHTS = ("kernel", "recurrent_kernel", "bias")


# --------------------------------------------------------------------------- init


def init_gru(key: jax.Array, input_dim: int, units: int, dtype=jnp.float32) -> Params:
    """Keras' GRU initialisation with explicit keys: glorot-uniform ``kernel (D, 3H)``,
    orthogonal ``recurrent_kernel (H, 3H)``, zero ``bias (2, 3H)``."""
    k_kernel, k_recurrent = jax.random.split(key)
    return {
        "kernel": glorot_uniform(k_kernel, (input_dim, 3 * units), dtype),
        "recurrent_kernel": orthogonal(k_recurrent, (units, 3 * units), dtype),
        "bias": jnp.zeros((2, 3 * units), dtype),
    }


# --------------------------------------------------------------------------- forward


def input_projection(params: Params, inputs: jax.Array) -> jax.Array:
    """``x_t W + b_x`` for every timestep, time-major ``(T, B, 3H)``; a row gather for int
    tokens ``(B, T)`` (``e_k W = W[k]``), a matmul for floats ``(B, T, D)``."""
    b_x = params["bias"][0]
    if jnp.issubdtype(inputs.dtype, jnp.integer):
        return params["kernel"][inputs.T] + b_x  # (T, B, 3H)
    return jnp.einsum("btd,dg->tbg", inputs, params["kernel"]) + b_x  # (T, B, 3H)


def input_row(params: Params, x: jax.Array) -> jax.Array:
    """``x W + b_x`` for one timestep ``(B, 3H)``; ``x`` is ``(B,)`` tokens or ``(B, D)``."""
    if jnp.issubdtype(x.dtype, jnp.integer):
        return params["kernel"][x] + params["bias"][0]
    return x @ params["kernel"] + params["bias"][0]


def cell(params: Params, zx_t: jax.Array, h_prev: jax.Array) -> jax.Array:
    """One GRU step (Keras ``reset_after=True``). ``zx_t = x_t W + b_x`` comes from the caller.

    .. math::

        m_t &= h_{t-1} U + b_h                                   \\quad (B, 3H) \\\\
        z_t &= \\sigma(zx_t^{z} + m_t^{z}),\\quad
        r_t  = \\sigma(zx_t^{r} + m_t^{r}) \\\\
        n_t &= \\tanh(zx_t^{h} + r_t \\odot m_t^{h}) \\\\
        h_t &= z_t \\odot h_{t-1} + (1 - z_t) \\odot n_t

    The reset gate multiplies the recurrent product *after* the matmul (``reset_after``),
    so ``h_{t-1} U`` is one ``(B, H) @ (H, 3H)`` matmul per step.

    Args:
        params: ``{"kernel", "recurrent_kernel", "bias"}``.
        zx_t: ``(B, 3H)`` the input part, input bias included.
        h_prev: ``(B, H)``.
    Returns:
        ``h_t`` ``(B, H)``.
    """
    m = h_prev @ params["recurrent_kernel"] + params["bias"][1]  # (B, 3H)
    x_z, x_r, x_h = jnp.split(zx_t, 3, axis=-1)
    m_z, m_r, m_h = jnp.split(m, 3, axis=-1)
    z = jax.nn.sigmoid(x_z + m_z)
    r = jax.nn.sigmoid(x_r + m_r)
    n = jnp.tanh(x_h + r * m_h)
    return z * h_prev + (1.0 - z) * n


def _zeros(params: Params, batch: int) -> jax.Array:
    u = params["recurrent_kernel"]  # (H, 3H)
    return jnp.zeros((batch, u.shape[0]), u.dtype)


def layer(params: Params, inputs: jax.Array, initial_state: State | None = None) -> tuple[jax.Array, State]:
    """The reference GRU over a sequence: ``lax.scan`` of :func:`cell`, autodiff gradient.

    Args:
        params: one layer's parameters.
        inputs: ``(B, T)`` int tokens or ``(B, T, D)`` floats.
        initial_state: ``(h0,)`` with ``h0`` ``(B, H)``; zeros if ``None`` (as in Keras).
    Returns:
        ``hs`` ``(B, T, H)`` and the final state ``(h_T,)``.
    """
    zx = input_projection(params, inputs)  # (T, B, 3H)
    h0 = _zeros(params, zx.shape[1]) if initial_state is None else initial_state[0]

    def step(h, zx_t):
        h = cell(params, zx_t, h)
        return h, h

    h_T, hs = jax.lax.scan(step, h0, zx)  # hs: (T, B, H)
    return jnp.swapaxes(hs, 0, 1), (h_T,)


# --------------------------------------------------------------------------- hand-derived backward
#
# Forward, per step (saved for the backward pass: g_t = [z_t, r_t, n_t] and m_t^h):
#
#     m_t = h_{t-1} U + b_h;   z, r = sigma(zx^{z,r} + m^{z,r});   n = tanh(zx^h + r * m^h)
#     h_t = z * h_{t-1} + (1 - z) * n
#
# Backward, carrying dh from step t+1 (dh_t = dhs_t + dh^rec):
#
#     dn   = dh (1 - z)                 da^h = dn (1 - n^2)           (pre-tanh)
#     dz   = dh (h_{t-1} - n)           da^z = dz z (1 - z)
#     dr   = da^h m^h                   da^r = dr r (1 - r)
#     dZX_t = [da^z, da^r, da^h]        gradient of x_t W + b_x        (B, 3H)
#     dM_t  = [da^z, da^r, da^h r]      gradient of h_{t-1} U + b_h    (B, 3H)
#     dh^rec_{t-1} = dh z + dM_t U^T    the only matmul in the loop
#
# After the scan: dU = H_prev^T dM, dW = X^T dZX (a scatter-add for tokens),
# db = [sum dZX, sum dM].


def _forward_scan(params: Params, zx: jax.Array, h0: jax.Array):
    """The recurrence; returns ``hs (T, B, H)``, ``gates (T, B, 3H)`` = [z, r, n] and
    ``m_h (T, B, H)``."""
    u, b_h = params["recurrent_kernel"], params["bias"][1]
    units = h0.shape[-1]

    def step(h_prev, zx_t):
        m = h_prev @ u + b_h  # (B, 3H)
        zr = jax.nn.sigmoid(zx_t[:, : 2 * units] + m[:, : 2 * units])  # (B, 2H)
        z, r = zr[:, :units], zr[:, units:]
        m_h = m[:, 2 * units :]
        n = jnp.tanh(zx_t[:, 2 * units :] + r * m_h)
        h = z * h_prev + (1.0 - z) * n
        return h, (h, jnp.concatenate([zr, n], axis=-1), m_h)

    _, (hs, gates, m_h) = jax.lax.scan(step, h0, zx)
    return hs, gates, m_h


@jax.custom_vjp
def _gru(params: Params, inputs: jax.Array, h0: jax.Array) -> jax.Array:
    hs, _, _ = _forward_scan(params, input_projection(params, inputs), h0)
    return hs


def _gru_fwd(params, inputs, h0):
    hs, gates, m_h = _forward_scan(params, input_projection(params, inputs), h0)
    return hs, (params, inputs, h0, hs, gates, m_h)


def _gru_bwd(residuals, dhs):
    """The backward pass written out above: ``dhs (T, B, H)`` -> (dparams, dinputs, dh0)."""
    params, inputs, h0, hs, gates, m_h = residuals
    units = h0.shape[-1]
    u_t = params["recurrent_kernel"].T  # (3H, H), transposed once, outside the loop
    h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)  # (T, B, H)

    def step(dh_rec, xs):
        dh_out, g, mh, hp = xs
        z, r, n = g[:, :units], g[:, units : 2 * units], g[:, 2 * units :]
        dh = dh_out + dh_rec
        da_h = dh * (1.0 - z) * (1.0 - n * n)
        da_z = dh * (hp - n) * z * (1.0 - z)
        da_r = da_h * mh * r * (1.0 - r)
        dzx = jnp.concatenate([da_z, da_r, da_h], axis=-1)  # (B, 3H)
        dm = jnp.concatenate([da_z, da_r, da_h * r], axis=-1)  # (B, 3H)
        return dh * z + dm @ u_t, (dzx, dm)

    dh0, (dZX, dM) = jax.lax.scan(step, jnp.zeros_like(h0), (dhs, gates, m_h, h_prev), reverse=True)

    T, B, G = dZX.shape
    dzx_rows, dm_rows = dZX.reshape(T * B, G), dM.reshape(T * B, G)
    d_recurrent = h_prev.reshape(T * B, units).T @ dm_rows  # (H, 3H): H_prev^T dM
    d_bias = jnp.stack([jnp.sum(dzx_rows, axis=0), jnp.sum(dm_rows, axis=0)])  # (2, 3H)
    kernel = params["kernel"]
    if jnp.issubdtype(inputs.dtype, jnp.integer):
        tokens = inputs.T.reshape(T * B)  # time-major, matching dzx_rows
        d_kernel = jnp.zeros_like(kernel).at[tokens].add(dzx_rows)  # one-hot^T dZX
        d_inputs = None  # integer tokens have no gradient
    else:
        d_kernel = jnp.einsum("btd,tbg->dg", inputs, dZX)  # X^T dZX
        d_inputs = jnp.einsum("tbg,dg->btd", dZX, kernel)  # dZX W^T (dropped by jit if unused)
    return {"kernel": d_kernel, "recurrent_kernel": d_recurrent, "bias": d_bias}, d_inputs, dh0


_gru.defvjp(_gru_fwd, _gru_bwd)


def bptt_layer(params: Params, inputs: jax.Array, initial_state: State | None = None) -> tuple[jax.Array, State]:
    """:func:`layer` (same arguments, same values) whose gradient is the hand-derived
    :func:`_gru_bwd`. Returns ``hs (B, T, H)`` and ``(h_T,)``.

    The final state is the last row of ``hs``, so its cotangent reaches the backward pass
    through ``dhs`` and no separate path is needed.
    """
    if set(params) != set(WEIGHTS):
        raise ValueError(f"GRU params must be kernel, recurrent_kernel, bias; got {sorted(params)}")
    h0 = _zeros(params, inputs.shape[0]) if initial_state is None else initial_state[0]
    hs = _gru(params, inputs, h0)  # (T, B, H)
    return jnp.swapaxes(hs, 0, 1), (hs[-1],)


# --------------------------------------------------------------------------- one step (inference)


def step(params: Params, x: jax.Array, state: State) -> State:
    """One timestep for :class:`minis2s.cells.Cell`: ``x`` ``(B,)`` tokens or ``(B, D)``."""
    return (cell(params, input_row(params, x), state[0]),)


def zero_state(params: Params, batch: int) -> State:
    """``(zeros (B, H),)``, Keras' initial state."""
    return (_zeros(params, batch),)

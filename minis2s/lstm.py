"""The LSTM layer: Keras parameter names, Keras initialisation, a cell and a ``lax.scan``.

Parameters of one layer (a plain dict, names as in Keras)::

    kernel            (D, 4H)   input -> gates
    recurrent_kernel  (H, 4H)   previous hidden state -> gates
    bias              (4H,)

The ``4H`` columns hold the four gates in Keras order **i, f, c, o**: input gate,
forget gate, candidate cell, output gate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]


# --------------------------------------------------------------------------- init


def glorot_uniform(key: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> jax.Array:
    """Keras ``GlorotUniform``: U(-limit, limit), ``limit = sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = shape
    limit = jnp.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, -limit, limit)


def orthogonal(key: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> jax.Array:
    """Keras ``Orthogonal`` (gain 1): the Q of a QR decomposition of a normal matrix.

    For ``(H, 4H)`` the rows are orthonormal, ``U U^T = I_H``. The sign of each column of
    Q is fixed by the sign of R's diagonal, so Q is uniformly (Haar) distributed.
    """
    rows, cols = shape
    a = jax.random.normal(key, (max(rows, cols), min(rows, cols)), jnp.float32)
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diag(r))
    if rows < cols:
        q = q.T
    return q.astype(dtype)


def init_lstm(key: jax.Array, input_dim: int, units: int, dtype=jnp.float32) -> Params:
    """Keras' LSTM initialisation with explicit keys.

    ``kernel``: glorot-uniform; ``recurrent_kernel``: orthogonal; ``bias``: zeros with
    ones on the forget-gate slice ``[H:2H]`` (``unit_forget_bias=True``).
    """
    k_kernel, k_recurrent = jax.random.split(key)
    bias = jnp.zeros((4 * units,), dtype).at[units : 2 * units].set(1.0)
    return {
        "kernel": glorot_uniform(k_kernel, (input_dim, 4 * units), dtype),
        "recurrent_kernel": orthogonal(k_recurrent, (units, 4 * units), dtype),
        "bias": bias,
    }


# --------------------------------------------------------------------------- forward


def cell(params: Params, zx_t: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """One LSTM step. ``zx_t = x_t @ kernel + bias`` is computed by the caller.

    .. math::

        z_t &= x_t W + h_{t-1} U + b                      \\quad (B, 4H) \\\\
        i_t &= \\sigma(z_t^{[0:H]}),\\;
        f_t  = \\sigma(z_t^{[H:2H]}),\\;
        g_t  = \\tanh(z_t^{[2H:3H]}),\\;
        o_t  = \\sigma(z_t^{[3H:4H]}) \\\\
        c_t &= f_t \\odot c_{t-1} + i_t \\odot g_t \\\\
        h_t &= o_t \\odot \\tanh(c_t)

    Args:
        params: ``{"kernel", "recurrent_kernel", "bias"}``.
        zx_t: ``(B, 4H)`` the input part of the pre-activation, bias included.
        state: ``(h_prev, c_prev)``, each ``(B, H)``.
    Returns:
        ``(h_t, c_t)``, each ``(B, H)``.
    """
    h_prev, c_prev = state
    z = zx_t + h_prev @ params["recurrent_kernel"]  # (B, 4H)
    z_i, z_f, z_g, z_o = jnp.split(z, 4, axis=-1)
    i = jax.nn.sigmoid(z_i)
    f = jax.nn.sigmoid(z_f)
    g = jnp.tanh(z_g)
    o = jax.nn.sigmoid(z_o)
    c = f * c_prev + i * g
    h = o * jnp.tanh(c)
    return h, c


# --------------------------------------------------------------------------- fast gates
#
# ``cell`` above is the reference: the equations as written. The fast path (minis2s/bptt.py) computes the same
# four activations with ONE ``tanh`` over the whole ``(B, 4H)`` block, using
#
#     sigmoid(x) = 0.5 * tanh(x / 2) + 0.5
#
# so every gate is ``A = s * tanh(s * z) + m`` with a per-column scale ``s`` (1/2 for the
# sigmoid gates i, f, o; 1 for the candidate g) and offset ``m`` (1/2 for sigmoid gates,
# 0 for g). The maths is identical; in float32 the results differ from ``cell`` by a few
# ulps (measured max 2.4e-7). It is faster on XLA:CPU because the loop body runs one large
# element-wise kernel instead of several small ones (see docs/performance.md).


def gate_constants(units: int, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """Per-column ``(scale, offset)``, each ``(4H,)``, for the gate order i, f, c, o."""
    half = jnp.full((units,), 0.5, dtype)
    one = jnp.ones((units,), dtype)
    zero = jnp.zeros((units,), dtype)
    scale = jnp.concatenate([half, half, one, half])
    offset = jnp.concatenate([half, half, zero, half])
    return scale, offset


def fast_gates(z: jax.Array, scale: jax.Array, offset: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(t, a)``: ``t = tanh(scale * z)`` and the activations ``a = scale * t + offset``.

    ``a`` holds ``[sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)]`` side by side,
    ``(B, 4H)``. ``t`` is what a backward pass needs: ``da/dz = scale^2 (1 - t^2)``.
    """
    t = jnp.tanh(z * scale)  # (B, 4H), the one transcendental op of the step
    return t, t * scale + offset


def fast_cell(params: Params, zx_t: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """:func:`cell` with the one-``tanh`` gate block of :func:`fast_gates` (the form
    ``minis2s/bptt.py`` runs): same maths, one element-wise kernel for the four gates.
    The LSTM's ``core`` in :mod:`minis2s.cells` (``zx_t = x_t W + b`` from the caller)."""
    h_prev, c_prev = state
    scale, offset = gate_constants(h_prev.shape[-1], zx_t.dtype)
    _, act = fast_gates(zx_t + h_prev @ params["recurrent_kernel"], scale, offset)  # (B, 4H)
    i, f, g, o = jnp.split(act, 4, axis=-1)
    c = f * c_prev + i * g
    return o * jnp.tanh(c), c


def input_projection(params: Params, inputs: jax.Array) -> jax.Array:
    """``x_t W + b`` for every timestep at once, time-major: ``(T, B, 4H)``.

    ``inputs`` is either integer tokens ``(B, T)`` or float features ``(B, T, D)``.

    For tokens, a one-hot row ``e_k`` times ``kernel`` is row ``k`` of ``kernel``
    (``e_k W = W[k]``), so a gather replaces the ``(B*T, V) @ (V, 4H)`` matmul with the
    same numbers and no multiply-adds by zero.
    """
    if jnp.issubdtype(inputs.dtype, jnp.integer):
        return params["kernel"][inputs.T] + params["bias"]  # (T, B, 4H), gather of rows
    return jnp.einsum("btd,dg->tbg", inputs, params["kernel"]) + params["bias"]  # (T, B, 4H)


def layer(
    params: Params,
    inputs: jax.Array,
    initial_state: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Run the LSTM over a whole sequence with ``lax.scan``.

    The input projection ``X W + b`` for all timesteps is one matmul (or gather) before
    the scan; only ``h_{t-1} U`` and the gate arithmetic are sequential.

    Args:
        params: one layer's parameters.
        inputs: ``(B, T)`` int tokens or ``(B, T, D)`` floats.
        initial_state: ``(h0, c0)`` each ``(B, H)``; zeros if ``None`` (as in Keras).
    Returns:
        ``hs`` ``(B, T, H)`` every hidden state, and the final ``(h_T, c_T)``.
    """
    zx = input_projection(params, inputs)  # (T, B, 4H)
    if initial_state is None:
        hidden = params["recurrent_kernel"].shape[0]
        zeros = jnp.zeros((zx.shape[1], hidden), zx.dtype)
        initial_state = (zeros, zeros)

    def step(state, zx_t):
        h, c = cell(params, zx_t, state)
        return (h, c), h

    final_state, hs = jax.lax.scan(step, initial_state, zx)  # hs: (T, B, H)
    return jnp.swapaxes(hs, 0, 1), final_state

"""Recurrent cells by name: what a model needs from an LSTM (or any other cell).

A model never calls :mod:`minis2s.lstm` directly; it asks for a :class:`Cell` by name and
gradient (``get("lstm", "bptt")``) and uses its four functions. Adding a cell means adding
one entry to :data:`CELLS`, not a branch in every model.

State convention: a tuple of ``(B, H)`` arrays whose first entry is the output ``h``
(LSTM: ``(h, c)``; GRU: ``(h,)``). A decoder started "from the encoder's state" takes the whole tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from . import bptt, gru, lstm

Params = dict[str, jax.Array]
State = tuple[jax.Array, ...]


@dataclass(frozen=True)
class Cell:
    """The functions of one recurrent cell.

    Attributes:
        name: the cell's name in :data:`CELLS`.
        init: ``init(key, input_dim, units, dtype) -> params`` (Keras initialisers).
        layer: ``layer(params, inputs, initial_state=None) -> (hs (B, T, H), final_state)``;
            ``inputs`` are ``(B, T)`` int tokens or ``(B, T, D)`` floats. This function's
            backward pass is the one training uses (autodiff or hand-derived).
        step: ``step(params, x, state) -> state``, one timestep; ``x`` is ``(B,)`` int
            tokens (a row gather of the kernel) or ``(B, D)`` floats.
        zero_state: ``zero_state(params, batch) -> state``, the all-zeros start (as Keras).
    """

    name: str
    init: Callable[..., Params]
    layer: Callable[..., tuple[jax.Array, State]]
    step: Callable[[Params, jax.Array, State], State]
    zero_state: Callable[[Params, int], State]


def _input_row(params: Params, x: jax.Array) -> jax.Array:
    """``x W + b`` for one timestep: a row gather for int tokens (== one-hot matmul)."""
    if jnp.issubdtype(x.dtype, jnp.integer):
        return params["kernel"][x] + params["bias"]
    return x @ params["kernel"] + params["bias"]


def _lstm_step(params: Params, x: jax.Array, state: State) -> State:
    return lstm.cell(params, _input_row(params, x), state)


def _lstm_zero_state(params: Params, batch: int) -> State:
    u = params["recurrent_kernel"]  # (H, 4H)
    zeros = jnp.zeros((batch, u.shape[0]), u.dtype)
    return (zeros, zeros)


def _lstm(layer) -> Cell:
    return Cell("lstm", lstm.init_lstm, layer, _lstm_step, _lstm_zero_state)


def _gru(layer) -> Cell:
    return Cell("gru", gru.init_gru, layer, gru.step, gru.zero_state)


# CELLS[name][grad]: the same forward values; ``grad`` picks how the layer's gradient is
# computed ("autodiff": JAX differentiates the lax.scan; "bptt": the hand-derived backward
# pass of minis2s.bptt for the LSTM, minis2s.gru.bptt_layer for the GRU).
CELLS: dict[str, dict[str, Cell]] = {
    "lstm": {"autodiff": _lstm(lstm.layer), "bptt": _lstm(bptt.layer)},
    "gru": {"autodiff": _gru(gru.layer), "bptt": _gru(gru.bptt_layer)},
}

DEFAULT_GRAD = "bptt"


def get(name: str = "lstm", grad: str = DEFAULT_GRAD) -> Cell:
    """The cell ``name`` whose layer computes its gradient by ``grad``; ``ValueError`` names
    the choices."""
    if name not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {name!r}")
    if grad not in CELLS[name]:
        raise ValueError(f"grad must be one of {', '.join(CELLS[name])}; got {grad!r}")
    return CELLS[name][grad]

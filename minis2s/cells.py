"""Recurrent cells by name: everything a model, a converter or a decoder needs from a cell.

No module outside this one names a cell. A model asks for a :class:`Cell` by name and
gradient (``get("lstm", "bptt")``) and uses its functions and properties: the Bahdanau
model's fast path follows the cell's ``core``, the Keras converter its ``gates``,
``keras_layer`` and ``keras_config``, and :func:`of_params` tells a cell by its shapes.
Adding a cell means adding one entry to :data:`CELLS`, not a branch in every model
(``tests/test_cells.py`` registers a plain tanh RNN and trains every model with it).

State convention: a tuple of ``(B, H)`` arrays whose first entry is the output ``h``
(LSTM: ``(h, c)``; GRU: ``(h,)``). A decoder started "from the encoder's state" takes the whole tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from . import bptt, gru, lstm

Params = dict[str, jax.Array]
State = tuple[jax.Array, ...]


@dataclass(frozen=True)
class Cell:
    """The functions and properties of one recurrent cell.

    Attributes:
        name: the cell's name in :data:`CELLS`.
        init: ``init(key, input_dim, units, dtype) -> params`` (Keras initialisers), a dict
            of ``kernel (D, gates * H)``, ``recurrent_kernel (H, gates * H)`` and ``bias``.
        layer: ``layer(params, inputs, initial_state=None) -> (hs (B, T, H), final_state)``;
            ``inputs`` are ``(B, T)`` int tokens or ``(B, T, D)`` floats. This function's
            backward pass is the one training uses (autodiff or hand-derived).
        step: ``step(params, x, state) -> state``, one timestep; ``x`` is ``(B,)`` int
            tokens (a row gather of the kernel) or ``(B, D)`` floats.
        zero_state: ``zero_state(params, batch) -> state``, the all-zeros start (as Keras).
        gates: gate blocks side by side in ``kernel`` (LSTM 4, GRU 3; a plain RNN 1).
        core: ``core(params, zx_t, state) -> state``, the step after its input projection,
            ``zx_t = x_t kernel + bias`` (``(B, gates * H)``, formed by the caller), or
            ``None``. With a core a model may form ``zx_t`` its own cheaper way (the
            Bahdanau decoder: gathered token rows plus ``a_t P``, see
            :mod:`minis2s.models.bahdanau`); without one it takes the generic path through
            ``step``, with the same numbers up to float rounding.
        keras_layer: the class name of the ``keras.layers`` layer holding the same weights
            under the same names (``"LSTM"``, ``"GRU"``), or ``None`` when there is none
            (then the cell cannot be converted to or from Keras).
        keras_config: ``((setting, value), ...)`` a Keras layer of that class must have to
            compute what this cell computes (checked on conversion).
    """

    name: str
    init: Callable[..., Params]
    layer: Callable[..., tuple[jax.Array, State]]
    step: Callable[[Params, jax.Array, State], State]
    zero_state: Callable[[Params, int], State]
    gates: int = 1
    core: Callable[[Params, jax.Array, State], State] | None = None
    keras_layer: str | None = None
    keras_config: tuple[tuple[str, Any], ...] = ()


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


# What minis2s computes: a Keras LSTM or GRU with these settings (their defaults) does the same.
_KERAS_RNN = (("activation", "tanh"), ("recurrent_activation", "sigmoid"), ("use_bias", True), ("go_backwards", False))


def _lstm(layer) -> Cell:
    return Cell("lstm", lstm.init_lstm, layer, _lstm_step, _lstm_zero_state, gates=4, core=lstm.fast_cell,
                keras_layer="LSTM", keras_config=_KERAS_RNN)


def _gru(layer) -> Cell:
    # No core: the GRU's input bias is bias[0] of a (2, 3H) bias, so "x kernel + bias" is not its zx_t.
    return Cell("gru", gru.init_gru, layer, gru.step, gru.zero_state, gates=3, core=None,
                keras_layer="GRU", keras_config=(*_KERAS_RNN, ("reset_after", True)))


# CELLS[name][grad]: the same forward values; ``grad`` picks how the layer's gradient is
# computed ("autodiff": JAX differentiates the lax.scan; "bptt": the hand-derived backward
# pass of minis2s.bptt for the LSTM, minis2s.gru.bptt_layer for the GRU).
CELLS: dict[str, dict[str, Cell]] = {
    "lstm": {"autodiff": _lstm(lstm.layer), "bptt": _lstm(bptt.layer)},
    "gru": {"autodiff": _gru(gru.layer), "bptt": _gru(gru.bptt_layer)},
}

DEFAULT_GRAD = "bptt"
DEFAULT = "lstm"  # the seed's cell


def get(name: str = DEFAULT, grad: str = DEFAULT_GRAD) -> Cell:
    """The cell ``name`` whose layer computes its gradient by ``grad``; ``ValueError`` names
    the choices."""
    if name not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {name!r}")
    if grad not in CELLS[name]:
        raise ValueError(f"grad must be one of {', '.join(CELLS[name])}; got {grad!r}")
    return CELLS[name][grad]


def _all() -> list[Cell]:
    """One :class:`Cell` per registered name (its properties do not depend on the gradient)."""
    return [next(iter(variants.values())) for variants in CELLS.values()]


def by_keras_layer(class_name: str) -> Cell | None:
    """The cell whose weights a ``keras.layers.<class_name>`` layer holds, or ``None``."""
    return next((cell for cell in _all() if cell.keras_layer == class_name), None)


def keras_layers() -> tuple[str, ...]:
    """Class names of the Keras recurrent layers some cell corresponds to (``("LSTM", "GRU")``)."""
    return tuple(cell.keras_layer for cell in _all() if cell.keras_layer)


def of_params(layer: Mapping[str, Any]) -> Cell | None:
    """The cell whose ``init`` makes a ``recurrent_kernel`` and ``bias`` of these shapes
    (LSTM ``(H, 4H)``, ``(4H,)``; GRU ``(H, 3H)``, ``(2, 3H)``), or ``None``.

    Reads shapes only (``jax.eval_shape``); the first registered match wins."""
    try:
        units = int(layer["recurrent_kernel"].shape[0])
        want = (tuple(layer["recurrent_kernel"].shape), tuple(layer["bias"].shape))
    except (KeyError, AttributeError, IndexError, TypeError):
        return None
    for cell in _all():
        shapes = jax.eval_shape(lambda k, c=cell: c.init(k, 1, units), jax.ShapeDtypeStruct((2,), jnp.uint32))
        if (tuple(shapes["recurrent_kernel"].shape), tuple(shapes["bias"].shape)) == want:
            return cell
    return None

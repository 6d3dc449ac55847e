"""Models by name. ``build(ModelConfig(..., model="seed"))`` returns a model's functions.

Each model is one module with ``build(config, cell) -> Model`` (see :mod:`.base` for the
interface); registering it here is the only place that names it. Train, decode,
checkpoint and cli look models up through :func:`build` and never branch on the name.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from .. import cells
from ..cells import Cell
from . import bahdanau, seed
from .base import Batch, Memory, Model, ModelConfig, Params, State, dense_softmax, init_dense

MODELS: dict[str, Callable[[ModelConfig, Cell], Model]] = {
    "seed": seed.build,
    "bahdanau": bahdanau.build,
}


def check_names(model: str, cell: str, grad: str = cells.DEFAULT_GRAD) -> None:
    """``ValueError`` naming the choices when ``model``, ``cell`` or ``grad`` is unknown."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
    cells.get(cell, grad)


@functools.lru_cache(maxsize=64)
def build(config: ModelConfig, grad: str = cells.DEFAULT_GRAD) -> Model:
    """The functions of ``config.model`` with ``config.cell``, its layers' gradient by ``grad``.

    Cached: the same config and grad give the same object (a stable ``jax.jit`` static).
    """
    check_names(config.model, config.cell, grad)
    return MODELS[config.model](config, cells.get(config.cell, grad))


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """``{"encoder/kernel": (V_in, 4H), ...}``: the shape of every leaf ``init`` makes for
    ``config``, named by its path (traced with ``jax.eval_shape``, nothing is computed)."""
    shapes = jax.eval_shape(build(config).init, jax.ShapeDtypeStruct((2,), jnp.uint32))
    flat, _ = jax.tree_util.tree_flatten_with_path(shapes)
    return {"/".join(str(k.key) for k in path): tuple(a.shape) for path, a in flat}


__all__ = [
    "Batch", "MODELS", "Memory", "Model", "ModelConfig", "Params", "State", "build", "check_names", "dense_softmax",
    "init_dense", "param_shapes",
]

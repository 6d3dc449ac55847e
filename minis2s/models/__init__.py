"""Models by name. ``build(ModelConfig(..., model="seed"))`` returns a model's functions.

Each model is one module with ``build(config, cell) -> Model`` (see :mod:`.base` for the
interface); registering it here is the only place that names it. Train, decode,
checkpoint and cli look models up through :func:`build` and never branch on the name.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sized

import jax
import jax.numpy as jnp

from .. import cells
from ..cells import Cell
from . import bahdanau, luong, seed, transformer
from .base import Batch, Memory, Model, ModelConfig, Params, State, dense_softmax, init_dense

MODELS: dict[str, Callable[[ModelConfig, Cell], Model]] = {
    "seed": seed.build,
    "luong": luong.build,
    "bahdanau": bahdanau.build,
    "transformer": transformer.build,
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

    ``apply``, ``encode`` and ``decode_step`` come jitted: called eagerly (a lesson, a test, a
    notebook) each runs as one compiled program instead of op by op, which compiles every
    primitive on its own (a tiny transformer's ``apply``, beside a training: 2.9 s eagerly,
    0.7 s jitted); inside a jitted caller (training, the searches) the inner jit is inlined
    into the caller's program. ``init`` stays as written (its random draws run eagerly, as they always have).
    """
    check_names(config.model, config.cell, grad)
    model = MODELS[config.model](config, cells.get(config.cell, grad))
    return dataclasses.replace(model, apply=jax.jit(model.apply), encode=jax.jit(model.encode),
                               decode_step=jax.jit(model.decode_step))


# ModelConfig fields the transformer reads, in their order (after attention_scale).
TRANSFORMER_FIELDS = ("layers", "heads", "embed_dim", "ff_dim", "max_positions")


def config_for(config: Any, input_vocab: Sized, target_vocab: Sized, latent_dim: int | None = None) -> ModelConfig:
    """The :class:`ModelConfig` of a training config and the two vocabularies: the one place
    a ``ModelConfig`` is made from a :class:`minis2s.config.Config`.

    ``config`` is read for ``latent_dim``, ``model``, ``cell``, ``attention_scale``,
    :data:`TRANSFORMER_FIELDS`, ``input_feeding`` and ``dropout`` (absent ones take the ModelConfig defaults) (a
    ``Config`` dataclass, or a checkpoint manifest's config dict); ``input_vocab`` and ``target_vocab``
    are anything with a length (vocabularies, character lists). ``latent_dim``, when given,
    overrides the config's (a check of parameters whose size is read off the arrays).
    """
    fields = config if isinstance(config, dict) else dataclasses.asdict(config)
    defaults = ModelConfig(0, 0)
    return ModelConfig(
        len(input_vocab),
        len(target_vocab),
        int(fields["latent_dim"] if latent_dim is None else latent_dim),  # required (KeyError: an incomplete manifest)
        fields.get("model", defaults.model),
        fields.get("cell", defaults.cell),
        bool(fields.get("attention_scale", defaults.attention_scale)),
        *(int(fields.get(name, getattr(defaults, name))) for name in TRANSFORMER_FIELDS),
        bool(fields.get("input_feeding", defaults.input_feeding)),  # absent from older manifests: off
        float(fields.get("dropout", defaults.dropout)),  # absent from older manifests: none
    )


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """``{"encoder/kernel": (V_in, 4H), ...}``: the shape of every leaf ``init`` makes for
    ``config``, named by its path (traced with ``jax.eval_shape``, nothing is computed)."""
    shapes = jax.eval_shape(build(config).init, jax.ShapeDtypeStruct((2,), jnp.uint32))
    flat, _ = jax.tree_util.tree_flatten_with_path(shapes)
    return {"/".join(str(k.key) for k in path): tuple(a.shape) for path, a in flat}


__all__ = [
    "Batch", "MODELS", "Memory", "Model", "ModelConfig", "Params", "State", "build", "check_names", "config_for",
    "dense_softmax",
    "init_dense", "param_shapes",
]

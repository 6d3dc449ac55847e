"""The seed model with the LSTM cell, as plain functions: the API the seed's tests, scripts
and docs use. The implementation lives in :mod:`minis2s.models.seed` (generic over the
cell); this module fixes the cell to the LSTM and names the layer by its gradient.

Parameters are a nested dict named as Keras names them::

    {"encoder": {"kernel" (V_in, 4H), "recurrent_kernel" (H, 4H), "bias" (4H,)},
     "decoder": {"kernel" (V_out, 4H), "recurrent_kernel" (H, 4H), "bias" (4H,)},
     "dense":   {"kernel" (H, V_out), "bias" (V_out,)}}

Training (teacher forcing)::

    (h, c)  = encoder LSTM over the English tokens, final state only
    hs      = decoder LSTM over the target tokens, starting from (h, c)    (B, T, H)
    probs   = softmax(hs @ W_dense + b_dense)                             (B, T, V_out)
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from . import bptt, cells, lstm
from .models import ModelConfig, dense_softmax, param_shapes
from .models import seed as _seed

Params = dict[str, dict[str, jax.Array]]
State = tuple[jax.Array, jax.Array]
Layer = Callable[..., tuple[jax.Array, State]]

# How the LSTM layers get their gradient. Both compute the same forward values (within
# float tolerance); they differ in the backward pass:
#   "bptt":     minis2s.bptt.layer, the hand-derived backward pass (jax.custom_vjp), the
#               default everywhere (training, the CLI, these functions);
#   "autodiff": minis2s.lstm.layer, the reference; JAX differentiates the lax.scan.
LAYERS: dict[str, Layer] = {"bptt": bptt.layer, "autodiff": lstm.layer}
DEFAULT_LAYER: Layer = LAYERS[cells.DEFAULT_GRAD]


def _cell(layer: Layer) -> cells.Cell:
    return dataclasses.replace(cells.get("lstm"), layer=layer)


def init_params(key: jax.Array, config: ModelConfig, dtype=jnp.float32) -> Params:
    """Keras-style initialisation of all three layers from one key (split, never reused).

    Dense: glorot-uniform kernel, zero bias. LSTMs: see :func:`minis2s.lstm.init_lstm`.
    """
    if (config.model, config.cell) != ("seed", "lstm"):
        raise ValueError(f"minis2s.model is the seed LSTM; use minis2s.models.build for {config.model}/{config.cell}")
    return _seed.init_params(key, config, cells.get("lstm"), dtype)


def encode(params: Params, encoder_tokens: jax.Array, layer: Layer = DEFAULT_LAYER) -> State:
    """Final ``(h, c)`` of the encoder, each ``(B, H)``; the encoder outputs are discarded."""
    return _seed.encode(params, encoder_tokens, _cell(layer))


def decode_step(params: Params, token: jax.Array, state: State) -> tuple[jax.Array, State]:
    """One inference step: previous token ``(B,)`` int and state -> probabilities ``(B, V_out)``.

    Equal to one timestep of :func:`apply`'s decoder, fed its own previous prediction.
    """
    return _seed.decode_step(params, token, state, cells.get("lstm"))


def apply(
    params: Params, encoder_tokens: jax.Array, decoder_tokens: jax.Array, layer: Layer = DEFAULT_LAYER
) -> jax.Array:
    """Teacher-forced forward pass.

    Args:
        encoder_tokens: ``(B, T_enc)`` int (or one-hot ``(B, T_enc, V_in)`` floats).
        decoder_tokens: ``(B, T_dec)`` int (or one-hot ``(B, T_dec, V_out)`` floats).
        layer: the LSTM layer implementation, one of :data:`LAYERS` (default: ``bptt``).
    Returns:
        softmax probabilities ``(B, T_dec, V_out)``.
    """
    return _seed.apply(params, encoder_tokens, decoder_tokens, _cell(layer))


def make_apply(grad: str = cells.DEFAULT_GRAD) -> Callable[[Params, dict], jax.Array]:
    """``apply_fn(params, batch) -> probs``: the seed's :func:`apply` on a batch dict, with the
    LSTM layer picked by name (``"bptt"`` or ``"autodiff"``)."""
    if grad not in LAYERS:
        raise ValueError(f"grad must be one of {', '.join(LAYERS)}; got {grad!r}")
    layer = LAYERS[grad]

    def apply_with(params: Params, batch: dict) -> jax.Array:
        return apply(params, batch["encoder_tokens"], batch["decoder_tokens"], layer)

    apply_with.__name__ = f"apply_{grad}"
    return apply_with


__all__ = [
    "LAYERS", "ModelConfig", "Params", "State", "apply", "decode_step", "dense_softmax", "encode", "init_params",
    "make_apply", "param_shapes",
]

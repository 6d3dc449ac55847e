"""The seed's encoder-decoder: two LSTMs and a softmax Dense head, as pure functions.

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

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from . import bptt, lstm

Params = dict[str, dict[str, jax.Array]]
State = tuple[jax.Array, jax.Array]
Layer = Callable[..., tuple[jax.Array, State]]

# How the LSTM layers get their gradient. Both compute the same forward values (within
# float tolerance); they differ in the backward pass:
#   "autodiff": minis2s.lstm.layer, the reference; JAX differentiates the lax.scan.
#   "bptt":     minis2s.bptt.layer, the hand-derived backward pass (jax.custom_vjp).
LAYERS: dict[str, Layer] = {"autodiff": lstm.layer, "bptt": bptt.layer}


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the model: vocabularies come from the data, ``latent_dim`` from the user."""

    num_encoder_tokens: int
    num_decoder_tokens: int
    latent_dim: int = 256


def init_params(key: jax.Array, config: ModelConfig, dtype=jnp.float32) -> Params:
    """Keras-style initialisation of all three layers from one key (split, never reused).

    Dense: glorot-uniform kernel, zero bias. LSTMs: see :func:`minis2s.lstm.init_lstm`.
    """
    k_enc, k_dec, k_dense = jax.random.split(key, 3)
    h, v_out = config.latent_dim, config.num_decoder_tokens
    return {
        "encoder": lstm.init_lstm(k_enc, config.num_encoder_tokens, h, dtype),
        "decoder": lstm.init_lstm(k_dec, config.num_decoder_tokens, h, dtype),
        "dense": {
            "kernel": lstm.glorot_uniform(k_dense, (h, v_out), dtype),
            "bias": jnp.zeros((v_out,), dtype),
        },
    }


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """``{"encoder/kernel": (V_in, 4H), ...}``: the shape of every leaf :func:`init_params`
    makes for ``config`` (traced with ``jax.eval_shape``, nothing is computed)."""
    shapes = jax.eval_shape(lambda key: init_params(key, config), jax.ShapeDtypeStruct((2,), jnp.uint32))
    return {f"{layer}/{name}": tuple(a.shape) for layer, leaves in shapes.items() for name, a in leaves.items()}


def dense_softmax(params: dict[str, jax.Array], hs: jax.Array) -> jax.Array:
    """``softmax(hs W + b)`` over the last axis: ``(..., H) -> (..., V_out)``."""
    return jax.nn.softmax(hs @ params["kernel"] + params["bias"], axis=-1)


def encode(params: Params, encoder_tokens: jax.Array, layer: Layer = lstm.layer) -> State:
    """Final ``(h, c)`` of the encoder, each ``(B, H)``; the encoder outputs are discarded."""
    _, state = layer(params["encoder"], encoder_tokens)
    return state


def decode_step(params: Params, token: jax.Array, state: State) -> tuple[jax.Array, State]:
    """One inference step: previous token ``(B,)`` int and state -> probabilities ``(B, V_out)``.

    Equal to one timestep of :func:`apply`'s decoder, fed its own previous prediction.
    """
    dec = params["decoder"]
    zx = dec["kernel"][token] + dec["bias"]  # (B, 4H): row gather == one-hot matmul
    h, c = lstm.cell(dec, zx, state)
    return dense_softmax(params["dense"], h), (h, c)


def apply(
    params: Params, encoder_tokens: jax.Array, decoder_tokens: jax.Array, layer: Layer = lstm.layer
) -> jax.Array:
    """Teacher-forced forward pass.

    Args:
        encoder_tokens: ``(B, T_enc)`` int (or one-hot ``(B, T_enc, V_in)`` floats).
        decoder_tokens: ``(B, T_dec)`` int (or one-hot ``(B, T_dec, V_out)`` floats).
        layer: the LSTM layer implementation, one of :data:`LAYERS` (default: the reference).
    Returns:
        softmax probabilities ``(B, T_dec, V_out)``.
    """
    state = encode(params, encoder_tokens, layer)
    hs, _ = layer(params["decoder"], decoder_tokens, state)  # (B, T_dec, H)
    return dense_softmax(params["dense"], hs)


def make_apply(grad: str = "autodiff") -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
    """:func:`apply` with the LSTM layer picked by name: ``"autodiff"`` or ``"bptt"``."""
    if grad not in LAYERS:
        raise ValueError(f"grad must be one of {', '.join(LAYERS)}; got {grad!r}")
    layer = LAYERS[grad]

    def apply_with(params: Params, encoder_tokens: jax.Array, decoder_tokens: jax.Array) -> jax.Array:
        return apply(params, encoder_tokens, decoder_tokens, layer)

    apply_with.__name__ = f"apply_{grad}"
    return apply_with

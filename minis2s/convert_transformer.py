"""Keras weights <-> minis2s parameters for the Transformer (``minis2s train --model transformer``).

:func:`keras_transformer_model` builds with Keras 3 the model :mod:`minis2s.models.transformer`
computes: keras-io's block structure (a token + learned position embedding, post-norm
encoder and decoder blocks of ``MultiHeadAttention``, ``LayerNormalization`` and a ReLU
feed-forward, a softmax ``Dense``) with that module's departures (``key_dim = d / h``,
``L`` blocks a side, masks from the lengths, no dropout: the oracle is compared with
``--dropout 0``). It is the test oracle.

Every Keras layer is named after the parameter it holds, with ``.`` for ``/``: the layer
``encoder_0.attention`` holds ``params["encoder_0"]["attention"]``; its variable
``encoder_0.attention/query/kernel`` is ``params["encoder_0"]["attention"]["query"]["kernel"]``.
Conversion is therefore a copy by path, no transposes: Keras ``MultiHeadAttention`` keeps
its projections as ``(d, h, d_k)`` kernels and ``(h, d_k)`` biases, as :mod:`minis2s.mha`
does. :func:`to_keras_transformer` writes parameters into such a model,
:func:`from_keras_transformer` reads them out. (Saving the Keras model as ``.keras`` needs
:func:`positional_embedding_layer`'s class registered; only model objects are converted here.)
:mod:`minis2s.convert` re-exports the three public functions.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import numpy as np

from .convert import ConversionError, _import_keras
from .models import ModelConfig

__all__ = ["from_keras_transformer", "keras_transformer_model", "param_path", "to_keras_transformer"]


def param_path(keras_path: str) -> str:
    """``encoder_0.attention/query/kernel`` -> ``encoder_0/attention/query/kernel``."""
    return keras_path.replace(".", "/")


@functools.lru_cache(maxsize=1)
def positional_embedding_layer():
    """The Keras layer class ``E_tok[y] + E_pos[0..T-1]`` (two ``Embedding``\\ s: ``token``, ``position``)."""
    keras = _import_keras()

    class PositionalEmbedding(keras.layers.Layer):
        def __init__(self, vocab: int, positions: int, dim: int, **kwargs):
            super().__init__(**kwargs)
            self.token = keras.layers.Embedding(vocab, dim, name="token")
            self.position = keras.layers.Embedding(positions, dim, name="position")

        def build(self, input_shape):
            self.token.build(input_shape)
            self.position.build((input_shape[-1],))

        def call(self, tokens):
            steps = keras.ops.arange(keras.ops.shape(tokens)[-1])
            return self.token(tokens) + self.position(steps)

    return PositionalEmbedding


def keras_transformer_model(config: ModelConfig) -> Any:
    """The Transformer of ``config`` in Keras 3, uncompiled.

    Inputs ``encoder_tokens (B, Te)`` int, ``encoder_mask (B, Te)`` bool (True on real
    characters) and ``decoder_tokens (B, Td)`` int; output the probabilities ``(B, Td, V_out)``.
    """
    keras = _import_keras()
    ops, layers = keras.ops, keras.layers
    d, h, f = config.embed_dim, config.heads, config.ff_dim
    embedding = positional_embedding_layer()

    def mha(name):
        return layers.MultiHeadAttention(num_heads=h, key_dim=d // h, name=name)

    def norm(name):
        return layers.LayerNormalization(name=name)  # epsilon 1e-3, Keras' default

    def ffn(prefix, x):
        hidden = layers.Dense(f, activation="relu", name=f"{prefix}.ffn_1")(x)
        return layers.Dense(d, name=f"{prefix}.ffn_2")(hidden)

    enc_tokens = keras.Input(shape=(None,), dtype="int32", name="encoder_tokens")
    enc_mask = keras.Input(shape=(None,), dtype="bool", name="encoder_mask")
    dec_tokens = keras.Input(shape=(None,), dtype="int32", name="decoder_tokens")
    key_mask = ops.expand_dims(enc_mask, 1)  # (B, 1, Te): every query may see the real characters

    x = embedding(config.num_encoder_tokens, config.max_positions, d, name="encoder_embedding")(enc_tokens)
    for l in range(config.layers):
        p = f"encoder_{l}"
        a = mha(f"{p}.attention")(x, x, attention_mask=key_mask)
        u = norm(f"{p}.norm_1")(x + a)
        x = norm(f"{p}.norm_2")(u + ffn(p, u))
    y = embedding(config.num_decoder_tokens, config.max_positions, d, name="decoder_embedding")(dec_tokens)
    for l in range(config.layers):
        p = f"decoder_{l}"
        a = mha(f"{p}.self_attention")(y, y, use_causal_mask=True)
        u = norm(f"{p}.norm_1")(y + a)
        c = mha(f"{p}.cross_attention")(u, x, attention_mask=key_mask)
        w = norm(f"{p}.norm_2")(u + c)
        y = norm(f"{p}.norm_3")(w + ffn(p, w))
    probs = layers.Dense(config.num_decoder_tokens, activation="softmax", name="dense")(y)
    return keras.Model([enc_tokens, enc_mask, dec_tokens], probs, name="transformer")


def _flat(params: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def to_keras_transformer(params: Mapping, model: Any) -> Any:
    """Copy minis2s transformer ``params`` into ``model`` (:func:`keras_transformer_model`), by path.

    Raises :class:`~minis2s.convert.ConversionError` naming a missing, extra or misshapen array."""
    flat = _flat(params)
    paths = {param_path(v.path): v for v in model.weights}
    if set(flat) != set(paths):
        missing, extra = sorted(set(paths) - set(flat)), sorted(set(flat) - set(paths))
        raise ConversionError(f"transformer params do not fit Keras model {model.name!r}: "
                              f"missing {missing[:3]}, not in Keras {extra[:3]}")
    for path, v in paths.items():
        value = np.asarray(flat[path], v.dtype)
        if tuple(value.shape) != tuple(v.shape):
            raise ConversionError(f"{path} has shape {value.shape}, Keras variable {v.path} has {tuple(v.shape)}")
        v.assign(value)
    return model


def from_keras_transformer(model: Any) -> dict:
    """The minis2s parameters held by a Keras transformer (:func:`keras_transformer_model`)."""
    params: dict = {}
    for v in model.weights:
        *parents, leaf = param_path(v.path).split("/")
        node = params
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.asarray(v.numpy())
    return params

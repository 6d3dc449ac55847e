"""The Transformer: an encoder-decoder of attention blocks (``minis2s train --model transformer``).

The block structure is the keras-io example's (English-to-Spanish translation with a
sequence-to-sequence Transformer), post-norm, ``L`` blocks on each side::

    x_0   = E_tok[x] + E_pos[0..Te-1]                                  (B, Te, d)
    encoder block, l = 1..L:
        a   = MHA(x, x, mask = key j < length)                         (B, Te, d)
        u   = LayerNorm(x + a)
        x'  = LayerNorm(u + FFN(u)),   FFN(u) = relu(u W_1 + b_1) W_2 + b_2
    y_0   = D_tok[y] + D_pos[0..Td-1]                                  (B, Td, d)
    decoder block, l = 1..L:
        a   = MHA(y, y, mask = key s <= query t)                       causal
        u   = LayerNorm(y + a)
        c   = MHA(u, x_L, mask = key j < length)                       cross-attention
        w   = LayerNorm(u + c)
        y'  = LayerNorm(w + FFN(w))
    probs = softmax(y_L W + b)                                         (B, Td, V_out)

``MHA`` is :func:`minis2s.mha.multi_head_attention` (Keras ``MultiHeadAttention``, ``h``
heads of ``d_k = d / h``), ``LayerNorm`` :func:`minis2s.layernorm.layer_norm` (Keras'
epsilon); both carry hand-derived backward passes.

Where this departs from keras-io (the tests build Keras the same way):

- ``key_dim = d / h`` (Vaswani et al.), not keras-io's ``key_dim = d`` per head;
- ``L`` blocks a side (``--layers``), keras-io has one;
- masks come from the lengths, not from token id 0: the seed pads with spaces, which are
  real characters. The encoder's padding keys are masked in the encoder's self-attention
  and in the cross-attention. The decoder's self-attention is causal only: padding comes
  after every real character, so no real position can see it; whether the padding
  positions count in the loss is ``--mask-padding``'s business, as for the other models;
- dropout (``--dropout p``, training only, default 0) where Vaswani et al. put it (their
  5.4), not keras-io's one ``Dropout(0.5)`` before the head: on the two embedding sums and
  on every sublayer's output before its add & norm, ``LayerNorm(x + drop(sublayer(x)))``.
  The Keras oracle is compared at ``p = 0``.

Parameters (Keras names)::

    {"encoder_embedding": {"token": {"embeddings" (V_in, d)}, "position": {"embeddings" (P, d)}},
     "decoder_embedding": {"token": {"embeddings" (V_out, d)}, "position": {"embeddings" (P, d)}},
     "encoder_<l>": {"attention": MHA, "norm_1": LN, "ffn_1": Dense (d, F), "ffn_2": Dense (F, d), "norm_2": LN},
     "decoder_<l>": {"self_attention": MHA, "norm_1": LN, "cross_attention": MHA, "norm_2": LN,
                     "ffn_1": Dense (d, F), "ffn_2": Dense (F, d), "norm_3": LN},
     "dense": {"kernel" (d, V_out), "bias" (V_out,)}}

``P = config.max_positions`` learned positions: sequences longer than ``P`` are refused
with a ``ValueError`` when traced, and decoding stops being possible after ``P`` steps
(:attr:`minis2s.models.base.Model.max_steps`).

Decoding keeps a key/value cache: :func:`encode` computes the encoder once and each
decoder layer's cross-attention keys and values once; the state holds each decoder
layer's self-attention keys and values ``(B, P, h, d_k)``, one position written per
step, so step ``t`` attends over the ``t + 1`` cached positions instead of re-running the
decoder over the prefix. Everything in ``memory`` and ``state`` has the batch first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import cells, dropout, layernorm, mha
from ..cells import Cell
from .base import Batch, Memory, Model, ModelConfig, Params, State, dense_softmax, init_dense

Block = dict[str, dict]


# --------------------------------------------------------------------------- initialisation


def init_embedding(key: jax.Array, rows: int, dim: int, dtype=jnp.float32) -> dict[str, jax.Array]:
    """Keras ``Embedding``: ``embeddings (rows, dim)`` uniform in ``[-0.05, 0.05]``."""
    return {"embeddings": jax.random.uniform(key, (rows, dim), dtype, -0.05, 0.05)}


def init_positional_embedding(key: jax.Array, vocab: int, positions: int, dim: int, dtype=jnp.float32) -> Block:
    """keras-io ``PositionalEmbedding``: a token and a position ``Embedding``."""
    k_tok, k_pos = jax.random.split(key)
    return {"token": init_embedding(k_tok, vocab, dim, dtype), "position": init_embedding(k_pos, positions, dim, dtype)}


def init_feed_forward(key: jax.Array, dim: int, ff_dim: int, dtype=jnp.float32) -> Block:
    """The position-wise feed-forward: ``Dense(F, relu)`` then ``Dense(d)``."""
    k1, k2 = jax.random.split(key)
    return {"ffn_1": init_dense(k1, dim, ff_dim, dtype), "ffn_2": init_dense(k2, ff_dim, dim, dtype)}


def init_encoder_block(key: jax.Array, config: ModelConfig, dtype=jnp.float32) -> Block:
    k_att, k_ffn = jax.random.split(key)
    d, h = config.embed_dim, config.heads
    return {
        "attention": mha.init_mha(k_att, d, h, d // h, dtype=dtype),
        "norm_1": layernorm.init_layer_norm(d, dtype),
        **init_feed_forward(k_ffn, d, config.ff_dim, dtype),
        "norm_2": layernorm.init_layer_norm(d, dtype),
    }


def init_decoder_block(key: jax.Array, config: ModelConfig, dtype=jnp.float32) -> Block:
    k_self, k_cross, k_ffn = jax.random.split(key, 3)
    d, h = config.embed_dim, config.heads
    return {
        "self_attention": mha.init_mha(k_self, d, h, d // h, dtype=dtype),
        "norm_1": layernorm.init_layer_norm(d, dtype),
        "cross_attention": mha.init_mha(k_cross, d, h, d // h, dtype=dtype),
        "norm_2": layernorm.init_layer_norm(d, dtype),
        **init_feed_forward(k_ffn, d, config.ff_dim, dtype),
        "norm_3": layernorm.init_layer_norm(d, dtype),
    }


def init_params(key: jax.Array, config: ModelConfig, dtype=jnp.float32) -> Params:
    """Keras-style initialisation of every layer from one key (split, never reused)."""
    k_enc_emb, k_dec_emb, k_dense, k_enc, k_dec = jax.random.split(key, 5)
    p, d = config.max_positions, config.embed_dim
    params: Params = {
        "encoder_embedding": init_positional_embedding(k_enc_emb, config.num_encoder_tokens, p, d, dtype),
        "decoder_embedding": init_positional_embedding(k_dec_emb, config.num_decoder_tokens, p, d, dtype),
    }
    for l, k in enumerate(jax.random.split(k_enc, config.layers)):
        params[f"encoder_{l}"] = init_encoder_block(k, config, dtype)
    for l, k in enumerate(jax.random.split(k_dec, config.layers)):
        params[f"decoder_{l}"] = init_decoder_block(k, config, dtype)
    params["dense"] = init_dense(k_dense, d, config.num_decoder_tokens, dtype)
    return params


# --------------------------------------------------------------------------- the blocks


def embed_tokens(table: jax.Array, tokens: jax.Array) -> jax.Array:
    """Rows of ``table (V, d)``: int ``(B, T)`` -> ``(B, T, d)``; one-hot floats ``(B, T, V)`` multiply."""
    return tokens @ table if tokens.ndim == 3 else table[tokens]


def positional_embedding(params: Block, tokens: jax.Array, start: int | jax.Array = 0) -> jax.Array:
    """``E_tok[y_t] + E_pos[start + t]``: ``(B, T) -> (B, T, d)``; ``start`` a scalar or ``(B,)``.

    A position past the learned ones reads NaN, not the last row (JAX's default clamp): a
    decoding or training loop that runs too far is poisoned, never silently wrong (the
    callers refuse such lengths up front where they know them, :func:`check_length`)."""
    t = tokens.shape[1]
    positions = jnp.asarray(start)[..., None] + jnp.arange(t)  # (T,) or (B, T)
    table = params["position"]["embeddings"]
    return embed_tokens(params["token"]["embeddings"], tokens) + jnp.take(table, positions, axis=0, mode="fill",
                                                                          fill_value=jnp.nan)


def feed_forward(block: Block, x: jax.Array) -> jax.Array:
    """``relu(x W_1 + b_1) W_2 + b_2``, the same two layers at every position: ``(B, T, d)``."""
    hidden = jax.nn.relu(x @ block["ffn_1"]["kernel"] + block["ffn_1"]["bias"])  # (B, T, F)
    return hidden @ block["ffn_2"]["kernel"] + block["ffn_2"]["bias"]


def add_and_norm(norm: dict[str, jax.Array], x: jax.Array, sublayer_out: jax.Array) -> jax.Array:
    """Post-norm residual: ``LayerNorm(x + sublayer(x))``."""
    return layernorm.layer_norm(norm, x + sublayer_out)


def _identity(x: jax.Array) -> jax.Array:
    return x


def encoder_block(block: Block, x: jax.Array, key_mask: jax.Array, drop=_identity) -> jax.Array:
    """Self-attention over the real characters, add & norm, FFN, add & norm: ``(B, Te, d)``.

    ``key_mask (B, 1, Te)`` bool: which positions may be attended to. ``drop``: dropout on
    each sublayer's output (:func:`minis2s.dropout.dropper`; the identity outside training)."""
    attended, _ = mha.multi_head_attention(block["attention"], x, x, mask=key_mask)
    u = add_and_norm(block["norm_1"], x, drop(attended))
    return add_and_norm(block["norm_2"], u, drop(feed_forward(block, u)))


def encode_sequence(params: Params, tokens: jax.Array, lengths: jax.Array, layers: int,
                    drop=_identity) -> tuple[jax.Array, jax.Array]:
    """``(x_L (B, Te, d), key mask (B, 1, Te))``: the encoder's outputs and which are real."""
    key_mask = mha.padding_mask(lengths, tokens.shape[1])[:, None, :]  # (B, 1, Te)
    x = drop(positional_embedding(params["encoder_embedding"], tokens))
    for l in range(layers):
        x = encoder_block(params[f"encoder_{l}"], x, key_mask, drop)
    return x, key_mask


def decoder_block(block: Block, y: jax.Array, memory: jax.Array, key_mask: jax.Array,
                  drop=_identity) -> tuple[jax.Array, jax.Array]:
    """Causal self-attention, add & norm, cross-attention, add & norm, FFN, add & norm.

    ``y (B, Td, d)``, ``memory (B, Te, d)`` the encoder's outputs, ``key_mask (B, 1, Te)``.
    Returns ``(y' (B, Td, d), cross-attention weights (B, h, Td, Te))``."""
    causal = mha.causal_mask(y.shape[1])[None]  # (1, Td, Td)
    attended, _ = mha.multi_head_attention(block["self_attention"], y, y, mask=causal)
    u = add_and_norm(block["norm_1"], y, drop(attended))
    crossed, weights = mha.multi_head_attention(block["cross_attention"], u, memory, mask=key_mask)
    w = add_and_norm(block["norm_2"], u, drop(crossed))
    return add_and_norm(block["norm_3"], w, drop(feed_forward(block, w))), weights


def dropout_sites(layers: int) -> int:
    """Where :func:`apply` drops: two embedding sums, two sublayers per encoder block, three per decoder block."""
    return 2 + 5 * layers


def check_length(config: ModelConfig, t: int, what: str) -> None:
    """``ValueError`` when ``t`` positions do not fit the ``config.max_positions`` learned ones."""
    if t > config.max_positions:
        raise ValueError(f"the transformer's --max-positions {config.max_positions} is shorter than the {what} "
                         f"({t} characters); train with --max-positions {t} or more")


def check_decoder_length(config: ModelConfig, t_dec: int) -> None:
    """Training on ``t_dec`` decoder inputs means decoding up to ``t_dec + 1`` characters (the
    seed's limit, :mod:`minis2s.search`): refuse it before training, not after."""
    check_length(config, t_dec + 1, "longest decoded output (the decoder input's characters and one more)")


def apply(params: Params, batch: Batch, config: ModelConfig) -> jax.Array:
    """Teacher-forced probabilities ``(B, Td, V_out)``; every position in parallel.

    A batch that carries ``dropout_key`` (a training step's, :mod:`minis2s.dropout`) is
    dropped at ``config.dropout``; one without is not."""
    tokens, targets_in = batch["encoder_tokens"], batch["decoder_tokens"]
    check_length(config, tokens.shape[1], "encoder input")
    check_decoder_length(config, targets_in.shape[1])
    drop = dropout.dropper(config.dropout, batch.get("dropout_key"), dropout_sites(config.layers))
    memory, key_mask = encode_sequence(params, tokens, batch["encoder_lengths"], config.layers, drop)
    y = drop(positional_embedding(params["decoder_embedding"], targets_in))
    for l in range(config.layers):
        y, _ = decoder_block(params[f"decoder_{l}"], y, memory, key_mask, drop)
    return dense_softmax(params["dense"], y)


# --------------------------------------------------------------------------- decoding with a cache


def encode(params: Params, tokens: jax.Array, lengths: jax.Array, config: ModelConfig) -> tuple[Memory, State]:
    """``(memory, state)`` for :func:`decode_step`.

    ``memory``: ``{"mask": (B, 1, Te) bool, "cross_key_<l>", "cross_value_<l>": (B, Te, h, d_k)}``,
    the cross-attention keys and values of every decoder layer, computed once per sentence.
    ``state``: ``(position (B,) int32, self_key_0, self_value_0, self_key_1, ...)``, each
    buffer ``(B, P, h, d_k)`` zeros, filled one position per step.
    """
    check_length(config, tokens.shape[1], "encoder input")
    x, key_mask = encode_sequence(params, tokens, lengths, config.layers)
    memory: Memory = {"mask": key_mask}
    for l in range(config.layers):
        cross = params[f"decoder_{l}"]["cross_attention"]
        memory[f"cross_key_{l}"] = mha.project(cross["key"], x)
        memory[f"cross_value_{l}"] = mha.project(cross["value"], x)
    b, h = tokens.shape[0], config.heads
    buffer = jnp.zeros((b, config.max_positions, h, config.embed_dim // h), x.dtype)
    state = (jnp.zeros((b,), jnp.int32),) + (buffer,) * (2 * config.layers)
    return memory, state


def _write(buffer: jax.Array, row: jax.Array, position: jax.Array) -> jax.Array:
    """``buffer (B, P, h, d_k)`` with ``row (B, 1, h, d_k)`` written at each row's ``position (B,)``.

    A select over the buffer (each row may sit at its own position), rather than a batched
    ``dynamic_update_slice``, which XLA lowers to a scatter."""
    here = (jnp.arange(buffer.shape[1])[None, :] == position[:, None])[:, :, None, None]  # (B, P, 1, 1)
    return jnp.where(here, row, buffer)


def cached_self_attention(att: Block, y: jax.Array, keys: jax.Array, values: jax.Array,
                          position: jax.Array, seen: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One position's causal self-attention over the cache: ``y (B, 1, d)`` ->
    ``(out (B, 1, d), keys, values)`` with this position's key and value written in;
    ``seen (B, 1, P)``: the positions up to this one (the causal mask's row)."""
    keys = _write(keys, mha.project(att["key"], y), position)
    values = _write(values, mha.project(att["value"], y), position)
    out, _ = mha.scaled_dot_product_attention(mha.project(att["query"], y), keys, values, seen)
    return mha.merge(att["attention_output"], out), keys, values


def decode_step(params: Params, memory: Memory, token: jax.Array, state: State, config: ModelConfig):
    """One character: ``(probs (B, V_out), state, {"attention": (B, Te)})``.

    Equal to :func:`apply` at position ``state[0]`` fed the same previous characters. The
    attention shown is the last decoder layer's cross-attention, the mean over its heads.
    """
    position, buffers = state[0], list(state[1:])
    y = positional_embedding(params["decoder_embedding"], token[:, None], position)  # (B, 1, d)
    seen = (jnp.arange(config.max_positions)[None, :] <= position[:, None])[:, None, :]  # (B, 1, P)
    for l in range(config.layers):
        block = params[f"decoder_{l}"]
        attended, buffers[2 * l], buffers[2 * l + 1] = cached_self_attention(
            block["self_attention"], y, buffers[2 * l], buffers[2 * l + 1], position, seen)
        u = add_and_norm(block["norm_1"], y, attended)
        cross = block["cross_attention"]
        o, weights = mha.scaled_dot_product_attention(
            mha.project(cross["query"], u), memory[f"cross_key_{l}"], memory[f"cross_value_{l}"], memory["mask"])
        w = add_and_norm(block["norm_2"], u, mha.merge(cross["attention_output"], o))
        y = add_and_norm(block["norm_3"], w, feed_forward(block, w))
    probs = dense_softmax(params["dense"], y[:, 0])
    return probs, (position + 1, *buffers), {"attention": jnp.mean(weights[:, :, 0, :], axis=1)}


def activation_values(config: ModelConfig, t_enc: int, t_dec: int) -> int:
    """Float32 values one batch row keeps for the backward pass, roughly (minis2s/resources.py).

    Per encoder block: the input, ``Q``, ``K``, ``V``, the merged heads and their projection,
    two layer norms (input and output each) and the feed-forward's output, ``10 d`` per
    position, the feed-forward's hidden layer before and after the ReLU, ``2 F``, and the
    attention weights, ``h T_enc^2``. A decoder block adds a cross-attention (``Q``, the
    merged heads, their projection, a layer norm: ``5 d`` more per position; ``K`` and ``V``
    of the memory, ``2 T_enc d``; weights ``h T_dec T_enc``). Then the embeddings and the
    head's probabilities and their gradient, ``2 V_out`` per decoder position. Compared with
    what XLA allocates for the whole step in ``tests/test_reliability.py``.
    """
    d, f, h, v = config.embed_dim, config.ff_dim, config.heads, config.num_decoder_tokens
    encoder = t_enc * (10 * d + 2 * f) + h * t_enc * t_enc
    decoder = t_dec * (15 * d + 2 * f) + 2 * t_enc * d + h * (t_dec * t_dec + t_dec * t_enc)
    return config.layers * (encoder + decoder) + (t_enc + t_dec) * d + 2 * t_dec * v


def build(config: ModelConfig, cell: Cell) -> Model:
    """The Transformer's :class:`~minis2s.models.base.Model`; it has no recurrent cell, so a
    ``cell`` other than the default is refused."""
    if config.cell != cells.DEFAULT:
        raise ValueError(f"the transformer has no recurrent cell; leave out --cell (got {config.cell})")
    for name in ("layers", "heads", "embed_dim", "ff_dim", "max_positions"):
        if getattr(config, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive for the transformer, got {getattr(config, name)}")
    if config.embed_dim % config.heads:
        raise ValueError(f"--embed-dim {config.embed_dim} must be a multiple of --heads {config.heads}")
    return Model(
        config=config,
        init=lambda key: init_params(key, config),
        apply=lambda params, batch: apply(params, batch, config),
        encode=lambda params, tokens, lengths: encode(params, tokens, lengths, config),
        decode_step=lambda params, memory, token, state: decode_step(params, memory, token, state, config),
        max_steps=config.max_positions,
        fd_step=1e-5,  # the feed-forward's ReLU has kinks (see Model.fd_step)
        sizes=f"{config.layers} layers, {config.heads} heads, width {config.embed_dim}, "
              f"feed-forward {config.ff_dim}",
        activations=lambda t_enc, t_dec: activation_values(config, t_enc, t_dec),
        size_flags="--embed-dim, --ff-dim or --layers",
        dropout=True,
    )

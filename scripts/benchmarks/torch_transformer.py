"""The transformer rows of ``scripts/benchmarks/bench.py``: minis2s' ``transformer`` written in
PyTorch with ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer``, and the matmul
FLOP count both rows share.

The PyTorch model has minis2s' block structure (minis2s/models/transformer.py, the keras-io
example's): token plus learned position embeddings on each side, ``L`` post-norm blocks a
side (``norm_first=False``), ReLU feed-forward of width ``F``, ``h`` heads of ``d / h``,
LayerNorm epsilon 1e-3 (Keras'), no dropout, no final stack norm (``nn.Transformer`` adds
one after each stack; keras-io and minis2s have none, so the layers are stacked here by
hand), the encoder's padding masked as a key in the encoder's self-attention and in the
cross-attention, a causal decoder self-attention, and a softmax ``Linear`` head.
:func:`check_against_minis2s` loads minis2s' weights into it and compares the
probabilities; the benchmark refuses to time it if they differ.
"""

from __future__ import annotations


def sizes(ds) -> dict[str, int]:
    """The transformer's sizes for data set ``ds``: minis2s' defaults (``ModelConfig``)."""
    from minis2s import train

    cfg = train.model_config(train.Config(model="transformer"), ds)
    return {name: getattr(cfg, name) for name in ("layers", "heads", "embed_dim", "ff_dim", "max_positions")}


def flop_counts(batch: int, t_enc: int, t_dec: int, v_out: int, layers: int, embed_dim: int, ff_dim: int,
                **_) -> dict[str, float]:
    """Matmul FLOPs of one training step and of one forward batch of the transformer.

    With ``h d_k = d`` (so the head count drops out), per block and sentence: the four
    projections of an attention ``2 T d^2`` each (the cross-attention's keys and values over
    ``T_e`` positions, its queries and output over ``T_d``), the scores ``Q K^T`` and the
    weighted sum ``A V`` ``2 T_q T_k d`` each, the feed-forward ``2 * 2 T d F``; the head
    ``2 T_d d V``. Embeddings are gathers (0 FLOPs). Backward is twice forward (the input's
    and the weight's gradient of every matmul). Softmax, layer norm and the optimizer are
    element-wise, left out.
    """
    d, f, te, td = embed_dim, ff_dim, t_enc, t_dec
    encoder = 4 * 2 * te * d * d + 2 * 2 * te * te * d + 2 * 2 * te * d * f
    decoder = (
        4 * 2 * td * d * d + 2 * 2 * td * td * d  # causal self-attention (all T_d^2 scores computed)
        + 2 * 2 * td * d * d + 2 * 2 * te * d * d + 2 * 2 * td * te * d  # cross-attention
        + 2 * 2 * td * d * f  # feed-forward
    )
    forward = batch * (layers * (encoder + decoder) + 2 * td * d * v_out)
    return {"train_step": 3.0 * forward, "eval_batch": float(forward)}


def build_model(nn, torch, v_in: int, v_out: int, layers: int, heads: int, embed_dim: int, ff_dim: int,
                max_positions: int):
    """The PyTorch transformer: ``forward(enc_tokens (B, Te), dec_tokens (B, Td), lengths (B,))``
    -> probabilities ``(B, Td, V_out)``."""
    d = embed_dim

    def block_kwargs():
        return dict(d_model=d, nhead=heads, dim_feedforward=ff_dim, dropout=0.0, activation="relu",
                    layer_norm_eps=1e-3, batch_first=True, norm_first=False)

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc_tok, self.enc_pos = nn.Embedding(v_in, d), nn.Embedding(max_positions, d)
            self.dec_tok, self.dec_pos = nn.Embedding(v_out, d), nn.Embedding(max_positions, d)
            self.encoder = nn.ModuleList([nn.TransformerEncoderLayer(**block_kwargs()) for _ in range(layers)])
            self.decoder = nn.ModuleList([nn.TransformerDecoderLayer(**block_kwargs()) for _ in range(layers)])
            self.dense = nn.Linear(d, v_out)

        def forward(self, enc, dec, lengths):
            te, td = enc.shape[1], dec.shape[1]
            pad = torch.arange(te)[None, :] >= lengths[:, None]  # (B, Te) True = padding, not attended
            causal = torch.triu(torch.full((td, td), float("-inf")), diagonal=1)  # (Td, Td)
            x = self.enc_tok(enc) + self.enc_pos.weight[:te]
            for layer in self.encoder:
                x = layer(x, src_key_padding_mask=pad)
            y = self.dec_tok(dec) + self.dec_pos.weight[:td]
            for layer in self.decoder:
                y = layer(y, x, tgt_mask=causal, memory_key_padding_mask=pad, tgt_is_causal=True)
            return torch.softmax(self.dense(y), dim=-1)

    return Transformer()


def load_minis2s_weights(net, params, torch) -> None:
    """Copy minis2s transformer ``params`` into ``net`` (PyTorch weights are ``(out, in)``;
    the attention's ``in_proj`` stacks the query, key and value projections)."""
    import numpy as np

    t = lambda a: torch.tensor(np.ascontiguousarray(np.asarray(a)), dtype=torch.float32)  # noqa: E731

    def attention(module, p):
        d = p["query"]["kernel"].shape[0]
        w = [np.asarray(p[n]["kernel"]).reshape(d, -1).T for n in ("query", "key", "value")]
        b = [np.asarray(p[n]["bias"]).reshape(-1) for n in ("query", "key", "value")]
        module.in_proj_weight.copy_(t(np.concatenate(w, 0)))
        module.in_proj_bias.copy_(t(np.concatenate(b)))
        out = np.asarray(p["attention_output"]["kernel"])
        module.out_proj.weight.copy_(t(out.reshape(-1, out.shape[-1]).T))
        module.out_proj.bias.copy_(t(p["attention_output"]["bias"]))

    def norm(module, p):
        module.weight.copy_(t(p["gamma"]))
        module.bias.copy_(t(p["beta"]))

    def feed_forward(layer, p):
        layer.linear1.weight.copy_(t(np.asarray(p["ffn_1"]["kernel"]).T))
        layer.linear1.bias.copy_(t(p["ffn_1"]["bias"]))
        layer.linear2.weight.copy_(t(np.asarray(p["ffn_2"]["kernel"]).T))
        layer.linear2.bias.copy_(t(p["ffn_2"]["bias"]))

    with torch.no_grad():
        for side, tok, pos in (("encoder", net.enc_tok, net.enc_pos), ("decoder", net.dec_tok, net.dec_pos)):
            tok.weight.copy_(t(params[f"{side}_embedding"]["token"]["embeddings"]))
            pos.weight.copy_(t(params[f"{side}_embedding"]["position"]["embeddings"]))
        for l, layer in enumerate(net.encoder):
            p = params[f"encoder_{l}"]
            attention(layer.self_attn, p["attention"])
            norm(layer.norm1, p["norm_1"])
            feed_forward(layer, p)
            norm(layer.norm2, p["norm_2"])
        for l, layer in enumerate(net.decoder):
            p = params[f"decoder_{l}"]
            attention(layer.self_attn, p["self_attention"])
            norm(layer.norm1, p["norm_1"])
            attention(layer.multihead_attn, p["cross_attention"])
            norm(layer.norm2, p["norm_2"])
            feed_forward(layer, p)
            norm(layer.norm3, p["norm_3"])
        net.dense.weight.copy_(t(np.asarray(params["dense"]["kernel"]).T))
        net.dense.bias.copy_(t(params["dense"]["bias"]))


def check_against_minis2s(nn, torch) -> float:
    """minis2s' transformer and this one on the same weights and a small ragged batch: the
    largest absolute difference of the probabilities (float32)."""
    import jax
    import numpy as np

    from minis2s import models

    v_in, v_out, batch, t_enc, t_dec = 7, 9, 3, 5, 4
    shape = dict(layers=2, heads=2, embed_dim=8, ff_dim=12, max_positions=6)
    model = models.build(models.ModelConfig(v_in, v_out, model="transformer", **shape))
    params = model.init(jax.random.PRNGKey(0))
    # non-trivial norms and biases, so that a weight copied to the wrong place shows
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    params = jax.tree.unflatten(tree, [a + 0.1 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])
    net = build_model(nn, torch, v_in, v_out, **shape)
    net.eval()
    load_minis2s_weights(net, params, torch)
    rng = np.random.default_rng(0)
    enc = rng.integers(0, v_in, (batch, t_enc)).astype(np.int32)
    dec = rng.integers(0, v_out, (batch, t_dec)).astype(np.int32)
    lengths = np.array([t_enc, 2, 1], np.int32)
    ours = np.asarray(model.apply(params, {"encoder_tokens": enc, "encoder_lengths": lengths, "decoder_tokens": dec}))
    with torch.no_grad():
        theirs = net(torch.tensor(enc, dtype=torch.int64), torch.tensor(dec, dtype=torch.int64),
                     torch.tensor(lengths, dtype=torch.int64)).numpy()
    return float(np.max(np.abs(theirs - ours)))

"""Draw what each cross-attention head of a trained transformer looks at, for one sentence
(docs/math.md section 17, ``docs/img/transformer-heads.png``).

The model translates the sentence greedily; then the decoder is run once more over its own
output, teacher-forced (every position at once, as in training: the same numbers greedy
decoding saw, since the causal mask hides the later characters), and one decoder layer's
cross-attention weights ``(n_h, T_d, T_e)`` are drawn, one panel per head and their mean
(the mean is what ``minis2s translate --attention-plot`` shows).

Run::

    python scripts/lessons/transformer_heads.py RUN_OR_CHECKPOINT [--sentence TEXT] [--layer L] [--out PNG]

e.g. after ``minis2s train --model transformer --data demo --out runs/demo-transformer``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from minis2s import translate as translating  # noqa: E402
from minis2s.data import START  # noqa: E402
from minis2s.models import transformer  # noqa: E402


def head_weights(params, config, encoder_tokens, encoder_lengths, decoder_tokens, layer: int = -1) -> jnp.ndarray:
    """Cross-attention weights ``(B, n_h, T_d, T_e)`` of decoder block ``layer``, teacher-forced
    on ``decoder_tokens (B, T_d)`` (the start token, then the output characters)."""
    memory, key_mask = transformer.encode_sequence(params, encoder_tokens, encoder_lengths, config.layers)
    y = transformer.positional_embedding(params["decoder_embedding"], decoder_tokens)
    per_layer = []
    for l in range(config.layers):
        y, weights = transformer.decoder_block(params[f"decoder_{l}"], y, memory, key_mask)
        per_layer.append(weights)
    return per_layer[layer]


def sentence_heads(trained, english: str, layer: int = -1) -> tuple[str, np.ndarray]:
    """``(output, weights (n_h, len(output), len(english)))`` for one English sentence: the greedy
    translation (with its end character, if it stopped by itself) and each head's weights."""
    [result] = translating.translate(trained, [english])
    out = result.hypothesis.chars  # the end character included when it stopped by itself
    config = translating.model_config_of(trained)
    enc = jnp.asarray(trained.input_vocab.encode([english], trained.max_encoder_seq_length))
    previous = [trained.target_vocab.index[START]] + [trained.target_vocab.index[c] for c in out[:-1]]
    weights = head_weights(trained.params, config, enc, jnp.array([len(english)], jnp.int32),
                           jnp.asarray([previous], jnp.int32), layer)
    return out, np.asarray(weights[0, :, : len(out), : len(english)])


def draw(english: str, output: str, weights: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = lambda c: {" ": "␣", "\n": "⏎"}.get(c, c)  # noqa: E731
    panels = [*weights, weights.mean(0)]
    names = [f"head {i + 1}" for i in range(len(weights))] + ["mean of the heads"]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels) + 0.6, 0.22 * len(output) + 1.8),
                             squeeze=False)
    for ax, w, name in zip(axes[0], panels, names):
        ax.imshow(w, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(english)), [show(c) for c in english], fontsize=8)
        ax.set_yticks(range(len(output)), [show(c) for c in output], fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("English", fontsize=8)
    axes[0][0].set_ylabel("output character", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    from minis2s.trained import load_trained

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a training run or checkpoint directory of a transformer")
    p.add_argument("--sentence", default="I see.", help="the English sentence (default 'I see.')")
    p.add_argument("--layer", type=int, default=-1, help="decoder layer, 0-based (default -1: the last)")
    p.add_argument("--out", default=str(ROOT / "docs" / "img" / "transformer-heads.png"))
    args = p.parse_args(argv)
    trained = load_trained(args.run)
    if trained.config.model != "transformer":
        print(f"transformer_heads.py: {args.run} holds a {trained.config.model} model, not a transformer", file=sys.stderr)
        return 2
    output, weights = sentence_heads(trained, args.sentence, args.layer)
    layer = args.layer % translating.model_config_of(trained).layers
    title = (f"{args.sentence!r} -> {output.rstrip(chr(10))!r}: cross-attention of decoder layer {layer + 1}, "
             f"epoch {trained.epoch}")
    print("wrote", draw(args.sentence, output, weights, Path(args.out), title))
    print("rows: output characters; columns: English characters; each row of each head sums to 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())

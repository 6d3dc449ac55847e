#!/usr/bin/env python
"""Which output head for the Bahdanau model: ``softmax(W [s_t; c_t])`` or ``softmax(W s_t)``?

Trains both variants side by side with the same data, seed, shuffles and recipe (the
seed's RMSprop and loss), and prints each one's best val_loss (and its epoch), its final
val_accuracy, and greedy chrF on the first validation sentences::

    python scripts/bahdanau_head.py --num-samples 5000 --epochs 10 --latent-dim 128

The registered ``bahdanau`` model uses the head this measurement preferred (see
docs/math.md, section "The Bahdanau model").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from minis2s import data, decode, metrics, models, train  # noqa: E402
from minis2s.models import bahdanau  # noqa: E402

SHARED_FRA = ROOT.parent / "shared" / "data" / "fra-eng" / "fra.txt"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(SHARED_FRA))
    p.add_argument("--num-samples", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--latent-dim", type=int, default=128)
    p.add_argument("--chrf-sentences", type=int, default=500, help="validation sentences decoded for chrF")
    args = p.parse_args(argv)

    ds = data.load_dataset(args.data, args.num_samples)
    rows = []
    for head in bahdanau.HEADS:
        name = f"bahdanau-head-{head}"
        models.MODELS[name] = lambda config, cell, head=head: bahdanau.make(config, cell, head)
        cfg = train.Config(num_samples=args.num_samples, epochs=args.epochs, latent_dim=args.latent_dim, model=name)
        t0 = time.perf_counter()
        params, hist = train.fit(cfg, ds, log=None)
        seconds = time.perf_counter() - t0
        best = min(range(len(hist["val_loss"])), key=hist["val_loss"].__getitem__)
        n = len(ds)
        val = list(range(train.split_train_val(n, cfg.validation_split), n))[: args.chrf_sentences]
        model = models.build(train.model_config(cfg, ds))
        outs = decode.decode_tokens(params, ds.encoder_tokens[val], ds.target_vocab, ds.max_decoder_seq_length,
                                    input_lengths=ds.encoder_lengths[val], model=model)
        hyps = [o.text for o in outs]
        refs = [ds.target_texts[i].removeprefix(data.START).removesuffix(data.END) for i in val]
        chrf = 100 * metrics.chrf(hyps, refs)
        rows.append((head, hist["val_loss"][best], best + 1, hist["val_accuracy"][-1], chrf, seconds / args.epochs))
        print(f"{head}: best val_loss {rows[-1][1]:.4f} at epoch {best + 1}", file=sys.stderr, flush=True)

    print(f"{args.num_samples} pairs, latent {args.latent_dim}, {args.epochs} epochs, seed recipe, same seed")
    print("| head | best val_loss (epoch) | final val_accuracy | greedy val chrF | s/epoch |")
    print("|---|---|---|---|---|")
    for head, vl, ep, va, chrf, s in rows:
        print(f"| {head} | {vl:.4f} ({ep}) | {va:.4f} | {chrf:.1f} | {s:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

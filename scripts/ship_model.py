"""Ship a trained model inside the package: copy a checkpoint (or the best checkpoint of a run
directory) into ``minis2s/pretrained/NAME/`` with its parameters only, its manifest's config,
vocabularies, lengths, data SHA-256 and training history, and a ``SHA256SUMS`` file
(:func:`minis2s.pretrained.export`).

    python scripts/ship_model.py /work/runs/full-transformer --name fra-eng
    python scripts/model_card.py --name fra-eng --data ../shared/data/fra-eng/fra.txt --cpu-hours H

An existing model of that name is replaced (its card with it: a new model needs a new card,
which ``scripts/model_card.py`` writes from measured scores).
"""

from __future__ import annotations

import argparse
import sys

from minis2s import checkpoint, pretrained


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ship_model.py", description=__doc__.split("\n\n")[0])
    p.add_argument("source", metavar="RUN_OR_CHECKPOINT",
                   help="a checkpoint (epoch-NNNN), or a run directory: its best checkpoint by val_loss")
    p.add_argument("--name", default=pretrained.DEFAULT,
                   help=f"the shipped model's folder name (default {pretrained.DEFAULT}, the one --pretrained uses)")
    p.add_argument("--root", default=None, help=f"folder of the shipped models (default {pretrained.ROOT})")
    args = p.parse_args(argv)
    try:
        folder = pretrained.export(args.source, args.name, root=args.root)
        trained = pretrained.load_pretrained(args.name, root=args.root)
    except (checkpoint.CheckpointError, ValueError, OSError) as e:
        print(f"ship_model.py: error: {e}", file=sys.stderr)
        return 2
    sha = pretrained.read_sums(folder)[checkpoint.MANIFEST_FILE]
    print(f"Shipped {trained.manifest['shipped']['from_checkpoint']} of {args.source} as {folder}: "
          f"{trained.config.model}, {pretrained.parameter_count(trained.params):,} parameters, "
          f"{pretrained.size_bytes(folder) / 1e6:.2f} MB, manifest SHA-256 {sha}")
    root = "" if args.root is None else f" --root {args.root}"
    print(f"Next, its card: python scripts/model_card.py --name {args.name}{root} --data PATH/TO/fra.txt --cpu-hours H")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``minis2s train ...`` (more commands register themselves below)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import checkpoint
from .data import DataError


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def _num_samples(s: str) -> int | None:
    return None if s == "all" else _positive_int(s)


def _fraction(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {v}")
    return v


# --------------------------------------------------------------------------- train


def add_train(sub) -> None:
    from .train import Config

    d = Config()
    p = sub.add_parser("train", help="train the seed model (Keras example recipe)")
    p.add_argument("--data", help="fra.txt or fra-eng.zip (default: download to the cache)")
    p.add_argument("--epochs", type=_positive_int, default=d.epochs)
    p.add_argument("--num-samples", type=_num_samples, default=d.num_samples, help="a count, or 'all'")
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    p.add_argument("--latent-dim", type=_positive_int, default=d.latent_dim)
    p.add_argument("--validation-split", type=_fraction, default=d.validation_split)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default="runs/seed", help="checkpoint directory (default: runs/seed)")
    p.add_argument("--show", type=int, default=5, help="decode this many training sentences at the end")
    # [issue 8] scaling: devices, several hosts, buckets, masked loss (docs/scaling.md)
    s = p.add_argument_group("scaling (docs/scaling.md)")
    s.add_argument("--devices", type=_positive_int, default=None,
                   help="devices per process to split each batch over (default: all local devices)")
    s.add_argument("--distributed", action="store_true",
                   help="one process of a multi-host run: call jax.distributed.initialize first")
    s.add_argument("--coordinator", default=None, help="with --distributed: HOST:PORT of process 0 (else auto-detected)")
    s.add_argument("--num-processes", type=_positive_int, default=None, help="with --distributed (else auto-detected)")
    s.add_argument("--process-id", type=int, default=None, help="with --distributed (else auto-detected)")
    s.add_argument("--bucket", action="store_true", default=d.bucket,
                   help="batch sentences of similar length, cut to their length bucket (not the seed's numbers)")
    s.add_argument("--mask-padding", action="store_true", default=d.mask_padding,
                   help="loss and accuracy over real target characters only (not the seed's numbers)")
    p.set_defaults(func=run_train)


def run_train(args) -> int:
    from . import data as data_mod
    from . import parallel  # [issue 8]
    from .decode import greedy_reference
    from .bucketing import encoder_pad_width  # [issue 8]
    from .train import Config, fit, write_history

    if args.distributed:  # [issue 8] before anything touches a device
        parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    elif args.coordinator or args.num_processes or args.process_id is not None:
        raise ValueError("--coordinator, --num-processes and --process-id need --distributed")
    mesh = parallel.make_mesh(args.devices)  # [issue 8]
    config = Config(
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        epochs=args.epochs,
        latent_dim=args.latent_dim,
        validation_split=args.validation_split,
        seed=args.seed,
        bucket=args.bucket,  # [issue 8]
        mask_padding=args.mask_padding,  # [issue 8]
    )
    path = data_mod.resolve_data(args.data)
    ds = data_mod.load_dataset(path, config.num_samples)
    print(f"Number of samples: {len(ds)}")
    print(f"Number of unique input tokens: {len(ds.input_vocab)}")
    print(f"Number of unique output tokens: {len(ds.target_vocab)}")
    print(f"Max sequence length for inputs: {ds.max_encoder_seq_length}")
    print(f"Max sequence length for outputs: {ds.max_decoder_seq_length}", flush=True)
    print(parallel.describe(mesh, config.batch_size), flush=True)  # [issue 8]
    params, history = fit(config, ds, log=lambda line: print(line, flush=True), mesh=mesh)
    params = parallel.to_host(params)  # [issue 8] replicated arrays -> this process's copy
    out = Path(args.out)
    if parallel.is_main_process():  # [issue 8] one writer in a multi-host run
        checkpoint.save_trained(out, params, config, ds)
        write_history(out / "history.json", history)
        print(f"Saved checkpoint and history to {out}/")
    for i in range(min(args.show, len(ds))):
        enc = ds.encoder_tokens[i]
        if config.bucket:  # [issue 8] pad as training did: to the sentence's bucket width
            enc = enc[: encoder_pad_width(len(ds.input_texts[i]), ds.max_encoder_seq_length)]
        decoded = greedy_reference(params, enc, ds.target_vocab, ds.max_decoder_seq_length)
        print("-")
        print("Input sentence:", ds.input_texts[i])
        print("Decoded sentence:", decoded.rstrip("\n"))
    return 0


# --------------------------------------------------------------------------- main

COMMANDS = [add_train]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minis2s", description="Character-level English-to-French seq2seq in pure JAX"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DataError, checkpoint.CheckpointError, ValueError) as e:
        print(f"minis2s {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

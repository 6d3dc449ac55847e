"""Command line: ``minis2s train ...`` (more commands register themselves below)."""

from __future__ import annotations

import argparse
import math
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


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {s}")
    return v


# --------------------------------------------------------------------------- train

# Flags that define the model, the data split or the shuffles: fixed once a run exists.
_FIXED_ON_RESUME = ("num_samples", "batch_size", "latent_dim", "validation_split", "seed")


def add_train(sub) -> None:
    from .train import Config

    d = Config()
    p = sub.add_parser(
        "train",
        help="train the seed model (Keras example recipe)",
        description="Train the seed model. Every epoch (see --checkpoint-every) writes OUT/epoch-NNNN with "
        "the optimizer and RNG state; --resume OUT continues exactly where the run stopped.",
    )
    p.add_argument("--data", help="fra.txt or fra-eng.zip, or 'demo' (default: download to the cache)")
    p.add_argument("--epochs", type=_positive_int, help=f"total epochs (default {d.epochs})")
    p.add_argument("--num-samples", type=_num_samples, help=f"a count, or 'all' (default {d.num_samples})")
    p.add_argument("--batch-size", type=_positive_int, help=f"default {d.batch_size}")
    p.add_argument("--latent-dim", type=_positive_int, help=f"default {d.latent_dim}")
    p.add_argument("--validation-split", type=_fraction, help=f"default {d.validation_split}")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--learning-rate", type=_positive_float, help=f"RMSprop learning rate (default {d.learning_rate:g})")
    p.add_argument("--out", help="run directory for checkpoints and history (default: runs/seed)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest complete checkpoint")
    p.add_argument("--patience", type=_positive_int,
                   help="stop when val_loss has not improved for N epochs (Keras EarlyStopping)")
    p.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                   help="write a checkpoint every N epochs (default 1); the best and the last epoch are always written")
    p.add_argument("--show", type=int, default=5, help="decode this many training sentences at the end")
    p.set_defaults(func=run_train)


class UsageError(ValueError):
    """A combination of flags that cannot work."""


def _describe(ds) -> None:
    print(f"Number of samples: {len(ds)}")
    print(f"Number of unique input tokens: {len(ds.input_vocab)}")
    print(f"Number of unique output tokens: {len(ds.target_vocab)}")
    print(f"Max sequence length for inputs: {ds.max_encoder_seq_length}")
    print(f"Max sequence length for outputs: {ds.max_decoder_seq_length}", flush=True)


def _load_data(path, num_samples):
    from . import data as data_mod

    ds = data_mod.load_dataset(path, num_samples)
    if num_samples is not None and len(ds) < num_samples:
        print(
            f"note: --num-samples {num_samples} is more than the {len(ds)} pairs in {path}; using all {len(ds)}",
            file=sys.stderr,
        )
    return ds


def run_train(args) -> int:
    import dataclasses

    from . import data as data_mod
    from .decode import greedy_reference
    from .train import Config, fit, load_state, split_train_val

    options = {"patience": args.patience, "checkpoint_every": args.checkpoint_every or 1}
    if args.resume:
        if args.out is not None:
            raise UsageError("--resume DIR continues training in DIR; leave out --out")
        resume = Path(args.resume)
        if checkpoint.is_checkpoint(resume):
            ckpt, out = resume, resume.parent
        else:
            ckpt, out = checkpoint.latest_checkpoint(resume), resume
        manifest = checkpoint.read_manifest(ckpt)
        try:
            saved = Config.from_dict(manifest["config"])
            saved_options = manifest.get("options", {})
        except (KeyError, TypeError) as e:
            raise checkpoint.CheckpointError(f"{ckpt}: not a training checkpoint ({e!r})") from None
        for name in _FIXED_ON_RESUME:
            given = getattr(args, name)
            if given is not None and given != getattr(saved, name):
                flag = "--" + name.replace("_", "-")
                raise UsageError(
                    f"{flag} {given} differs from the run being resumed ({flag} {getattr(saved, name)}); "
                    f"leave it out, or start a new run with --out"
                )
        config = dataclasses.replace(
            saved,
            epochs=args.epochs or saved.epochs,
            learning_rate=args.learning_rate or saved.learning_rate,
        )
        if args.patience is None:
            options["patience"] = saved_options.get("patience")
        if args.checkpoint_every is None:
            options["checkpoint_every"] = int(saved_options.get("checkpoint_every", 1))
        recorded = manifest.get("data", {}).get("path") if isinstance(manifest.get("data"), dict) else None
        if not (args.data or recorded):
            raise UsageError(f"{ckpt} does not record its training data; pass --data PATH")
        path = data_mod.resolve_data(args.data or recorded)
        ds = _load_data(path, config.num_samples)
        try:
            _, state, _ = load_state(ckpt, ds)
        except checkpoint.CheckpointError as e:
            older = [p for _, p in checkpoint.list_checkpoints(out) if p != ckpt]
            if older and "data differs" not in str(e):
                raise checkpoint.CheckpointError(f"{e}. An older checkpoint exists: --resume {older[-1]}") from None
            raise
        if config.learning_rate != saved.learning_rate:
            print(f"note: learning rate changed from {saved.learning_rate:g} to {config.learning_rate:g}", file=sys.stderr)
        print(f"Resuming {out}/ from {ckpt.name}: {state.epoch} of {config.epochs} epochs done", flush=True)
        if state.epoch >= config.epochs:
            print(f"Nothing to do: the run already has {state.epoch} epochs; pass --epochs N with N > {state.epoch} to train on")
            return 0
    else:
        d = Config()
        config = Config(**{
            name: getattr(args, name) if getattr(args, name) is not None else getattr(d, name)
            for name in (*_FIXED_ON_RESUME, "epochs", "learning_rate")
        })
        out = Path(args.out or "runs/seed")
        existing = checkpoint.list_checkpoints(out)
        if existing:
            raise UsageError(
                f"{out} already holds a training run ({existing[-1][1].name}); continue it with --resume {out}, "
                "or choose another --out"
            )
        path = data_mod.resolve_data(args.data)
        ds = _load_data(path, config.num_samples)
        state = None
        split_at = split_train_val(len(ds), config.validation_split)
        if split_at == 0 or split_at == len(ds):
            raise UsageError(
                f"--validation-split {config.validation_split} of {len(ds)} samples leaves {split_at} for training "
                f"and {len(ds) - split_at} for validation; both must be non-empty: use more --num-samples"
            )
        if config.batch_size > split_at:
            raise UsageError(
                f"--batch-size {config.batch_size} is larger than the training set ({split_at} of {len(ds)} samples, "
                f"the rest is validation); use --batch-size {split_at} or less, or more --num-samples"
            )
    _describe(ds)
    extra = {"data": {"path": str(Path(path).resolve())}, "options": options}
    params, history = fit(
        config, ds, log=lambda line: print(line, flush=True), out=out, state=state,
        patience=options["patience"], checkpoint_every=options["checkpoint_every"], checkpoint_extra=extra,
    )
    found = [p.name for _, p in checkpoint.list_checkpoints(out)]
    best = checkpoint.best_checkpoint(out).name if found else None
    print(f"Saved checkpoints to {out}/ ({', '.join(found)}; best by val_loss: {best}) and {out}/history.json")
    for i in range(min(args.show, len(ds))):
        decoded = greedy_reference(params, ds.encoder_tokens[i], ds.target_vocab, ds.max_decoder_seq_length)
        print("-")
        print("Input sentence:", ds.input_texts[i])
        print("Decoded sentence:", decoded.rstrip("\n"))
    return 0


# --------------------------------------------------------------------------- gradcheck


def _entries(s: str) -> int | str:
    return "all" if s == "all" else _positive_int(s)


def add_gradcheck(sub) -> None:
    p = sub.add_parser(
        "gradcheck",
        help="check the model's loss gradient against float64 finite differences",
        description="Build a tiny random batch and model, compare jax.grad of the training loss "
        "with fourth-order central differences in float64, leaf by leaf. Exit status 1 if "
        "any leaf is out of tolerance.",
    )
    p.add_argument("--latent-dim", type=_positive_int, default=8)
    p.add_argument("--seed", type=int, default=0, help="seeds the parameters, the batch and the checked entries")
    p.add_argument("--entries", type=_entries, default="all", help="entries per leaf: a count, or 'all' (default)")
    p.add_argument("--directions", type=int, default=2, help="random directions per leaf (default 2)")
    p.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (default 1e-6)")
    p.add_argument("--atol", type=float, default=1e-10, help="absolute tolerance near zero (default 1e-10)")
    p.set_defaults(func=run_gradcheck)


def run_gradcheck(args) -> int:
    import jax
    import numpy as np

    from .gradcheck import check_grads
    from .model import ModelConfig, init_params
    from .train import loss_fn

    if args.directions < 0 or not args.rtol > 0 or not args.atol >= 0:
        raise ValueError("--directions must be >= 0, --rtol > 0 and --atol >= 0")
    # A tiny random problem: 7 input and 9 output tokens, 3 samples, short sequences,
    # one padding row of weight 0 as in a real last batch.
    v_in, v_out, batch_size, t_enc, t_dec = 7, 9, 3, 5, 6
    config = ModelConfig(v_in, v_out, args.latent_dim)
    params = init_params(jax.random.PRNGKey(args.seed), config)
    rng = np.random.default_rng(args.seed)
    batch = {
        "encoder_tokens": rng.integers(0, v_in, (batch_size, t_enc)).astype(np.int32),
        "decoder_tokens": rng.integers(0, v_out, (batch_size, t_dec)).astype(np.int32),
        "target_tokens": rng.integers(0, v_out, (batch_size, t_dec)).astype(np.int32),
        "weight": np.array([1.0, 1.0, 0.0], np.float32),
    }
    print(
        f"gradcheck: loss of a {v_in}->{v_out}-token model, latent_dim {args.latent_dim}, "
        f"batch {batch_size}x{t_enc}->{t_dec}, seed {args.seed}"
    )
    report = check_grads(
        lambda p: loss_fn(p, batch)[0],
        params,
        entries=args.entries,
        directions=args.directions,
        rtol=args.rtol,
        atol=args.atol,
        seed=args.seed,
    )
    print(report.table())
    if not report.ok:
        print("gradcheck: FAILED for " + ", ".join(leaf.path for leaf in report.failures), file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- main

COMMANDS = [add_train, add_gradcheck]


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
    except FloatingPointError as e:  # train.NonFiniteLoss: the message says where and what is kept
        print(f"minis2s {args.command}: error: {e}", file=sys.stderr)
        return 3
    except OSError as e:  # disk full, permissions: name the path, no traceback
        print(f"minis2s {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command == "train":
            run = getattr(args, "resume", None) or getattr(args, "out", None) or "runs/seed"
            print(f"interrupted; the last complete checkpoint is kept: continue with "
                  f"minis2s train --resume {run}", file=sys.stderr)
        else:
            print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

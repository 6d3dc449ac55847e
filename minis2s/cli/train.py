"""``minis2s train``: flags onto a :class:`minis2s.config.Config`, a new run or a resumed one,
then :func:`minis2s.train.fit` and a report."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

from .. import checkpoint, newrun, resources, runlock, splits
from ..splits import SPLITS
from ..run import best_checkpoint, list_checkpoints
from .. import resume as resume_mod
from .options import (UsageError, add_model_options, add_show_option, count_or_all, num_samples_value, number,
                      positive_int, seed)


def add(sub) -> None:
    from ..config import Config
    from ..demo_corpus import TRAIN_DEFAULTS

    d = Config()
    p = sub.add_parser(
        "train",
        help="train a model (default: the seed, with the Keras example recipe)",
        description="Train a model (--model, --cell; default the seed, the Keras example). Every epoch "
        "(see --checkpoint-every) writes OUT/epoch-NNNN with the optimizer and RNG state; --resume OUT "
        "continues exactly where the run stopped.",
    )
    demo = " ".join(f"--{k.replace('_', '-')} {'all' if v is None else v}" for k, v in TRAIN_DEFAULTS.items())
    p.add_argument("--data", metavar="PATH", help="fra.txt or fra-eng.zip, or 'demo': templated pairs shipped with "
                   f"minis2s, trained by default with {demo} (default: download to the cache)")
    p.add_argument("--epochs", type=positive_int, metavar="N", help=f"total epochs (default {d.epochs})")
    p.add_argument("--num-samples", type=count_or_all, metavar="N|all",
                   help=f"pairs to read from the start of the file, or 'all' (default {d.num_samples})")
    p.add_argument("--batch-size", type=positive_int, metavar="N", help=f"default {d.batch_size}")
    p.add_argument("--latent-dim", type=positive_int, metavar="N", help=f"default {d.latent_dim}")
    p.add_argument("--validation-split", type=number(float, 0.0, 1.0, inclusive=False), metavar="F",
                   help=f"the last fraction F of the pairs is held out for validation (default {d.validation_split}); "
                        "with --split source, the fraction of English sentences")
    p.add_argument("--split", choices=SPLITS, default=None,
                   help="keras: validate on the last lines, as the seed (default); source: every translation of an "
                        "English sentence on one side, with a test side (minis2s/splits.py)")
    p.add_argument("--test-split", type=number(float, 0.0, 1.0, inclusive=False), metavar="F",
                   help=f"with --split source: the fraction of English sentences held out for the test "
                        f"(default {d.test_split}); `minis2s evaluate --split test` scores them")
    p.add_argument("--split-seed", type=seed, metavar="N",
                   help=f"with --split source: the seed of the sides' draw (default {d.split_seed}; "
                        "independent of --seed, so runs with different seeds share a test set)")
    p.add_argument("--seed", type=seed, help=f"default {d.seed}")
    p.add_argument("--learning-rate", type=number(float, 0.0, inclusive=False), metavar="LR",
                   help=f"RMSprop learning rate (default {d.learning_rate:g})")
    p.add_argument("--grad", choices=("autodiff", "bptt"),
                   help=f"LSTM gradient: hand-derived BPTT or JAX autodiff (same numbers; default {d.grad})")
    add_model_options(p)
    p.add_argument("--teacher-forcing", type=number(float, 0.0, 1.0), metavar="R",
                   help="probability of feeding the decoder the true previous character; otherwise its own "
                   f"argmax prediction (scheduled sampling; default {d.teacher_forcing:g}: always, the seed)")
    p.add_argument("--teacher-forcing-end", type=number(float, 0.0, 1.0), metavar="R",
                   help="decay --teacher-forcing linearly to R at the last epoch (default: constant)")
    p.add_argument("--out", metavar="DIR", help="run directory for checkpoints and history (default runs/seed)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest complete checkpoint "
                   "(default: start a new run)")
    p.add_argument("--warm-start", metavar="CHECKPOINT",
                   help="start a new run (--out) from a checkpoint without optimizer state, such as a shipped model "
                   "(minis2s/pretrained/fra-eng): its parameters, epochs and shuffles, RMSprop's averages rebuilt "
                   "from 32 batches' gradients (minis2s/warmstart.py; default: start from random weights)")
    p.add_argument("--patience", type=positive_int, metavar="N",
                   help="stop when val_loss has not improved for N epochs, Keras EarlyStopping (default: never; "
                   "on --resume, the run's own)")
    p.add_argument("--checkpoint-every", type=positive_int, metavar="N",
                   help="write a checkpoint every N epochs (default 1); the best and the last epoch are always written")
    add_show_option(p, 5, "training sentences")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar within epochs, only the epoch lines (the default when stdout is not a terminal)")
    s = p.add_argument_group("scaling (docs/scaling.md)")
    s.add_argument("--devices", type=positive_int, default=None, metavar="N",
                   help="devices per process to split each batch over (default: all local devices)")
    s.add_argument("--distributed", action="store_true",
                   help="one process of a multi-host run: call jax.distributed.initialize first (default: off)")
    s.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="with --distributed: address of process 0 (default: detected from the cluster)")
    s.add_argument("--num-processes", type=positive_int, default=None, metavar="N",
                   help="with --distributed (default: detected from the cluster)")
    s.add_argument("--process-id", type=number(int, 0), default=None, metavar="I",
                   help="with --distributed, 0 to N-1 (default: detected from the cluster)")
    s.add_argument("--bucket", action="store_true", default=None,
                   help="batch sentences of similar length, cut to their length bucket (not the seed's numbers; "
                   "default: off)")
    s.add_argument("--mask-padding", action="store_true", default=None,
                   help="loss and accuracy over real target characters only (not the seed's numbers; default: off)")
    t = p.add_argument_group("transformer sizes (--model transformer; the other models ignore them)")
    t.add_argument("--layers", type=positive_int, metavar="N", help=f"blocks in the encoder and in the decoder (default {d.layers})")
    t.add_argument("--heads", type=positive_int, metavar="N", help=f"attention heads, each of embed-dim/heads (default {d.heads})")
    t.add_argument("--embed-dim", type=positive_int, metavar="N", help=f"width d of every block (default {d.embed_dim})")
    t.add_argument("--ff-dim", type=positive_int, metavar="N", help=f"feed-forward hidden width (default {d.ff_dim})")
    t.add_argument("--max-positions", type=positive_int, metavar="N",
                   help=f"learned positions: the longest input sentence or decoded output (default {d.max_positions})")
    t.add_argument("--dropout", type=number(float, 0.0, 1.0, what="in [0, 1)"), metavar="P",
                   help=f"dropout rate in training, on the embeddings and every sublayer's output "
                   f"(default {d.dropout:g}: none)")
    p.set_defaults(func=run)


def describe(ds, sides) -> None:
    print(f"Number of samples: {len(ds)}")
    print(f"Number of unique input tokens: {len(ds.input_vocab)}")
    print(f"Number of unique output tokens: {len(ds.target_vocab)}")
    print(f"Max sequence length for inputs: {ds.max_encoder_seq_length}")
    print(f"Max sequence length for outputs: {ds.max_decoder_seq_length}")
    print(splits.describe(sides), flush=True)


def load_data(path, num_samples):
    """The dataset, with a note on stderr when the file holds fewer than ``num_samples`` pairs."""
    from .. import rebuild

    ds, note = rebuild.load_dataset(path, num_samples)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return ds


def _given(args) -> dict:
    """The model/split/shuffle settings given on the command line, as Config holds them."""
    out = {}
    for name in resume_mod.FIXED_ON_RESUME:
        value = getattr(args, name)
        if value is not None:
            out[name] = num_samples_value(value) if name == "num_samples" else value
    return out


def start_distributed(args) -> None:
    """``--distributed``: join the run before anything touches a device; JAX's own message
    for a setting it cannot detect becomes one naming the flag to add."""
    from .. import parallel

    if not args.distributed:
        if args.coordinator or args.num_processes or args.process_id is not None:
            raise UsageError("--coordinator, --num-processes and --process-id need --distributed")
        return
    try:
        parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    except ValueError as e:
        text = str(e).lower()
        missing = [f for f, key in (("--coordinator HOST:PORT", "coordinator"), ("--num-processes N", "number of "
                   "processes"), ("--process-id I", "process id")) if key in text]
        if not missing:
            raise
        raise UsageError(f"--distributed: no cluster (Cloud TPU, SLURM, Open MPI) detected to take it from "
                         f"({str(e).rstrip('.')}); add {' '.join(missing)}") from None


def _refuse_existing_run(out: Path) -> None:
    """A new run's ``--out`` must not hold one already (checked again under the lock later)."""
    if list_checkpoints(out):
        with runlock.hold(out):  # a run still training there is the better message
            pass
        newrun.refuse_existing_run(out)


def run(args) -> int:
    with contextlib.ExitStack() as held:  # the run directory's lock, once taken (runlock.py)
        return _run(args, held)


def _run(args, held: contextlib.ExitStack) -> int:
    from .. import data as data_mod
    from .. import parallel
    from ..config import Config, model_config

    start_distributed(args)
    mesh = parallel.make_mesh(args.devices)
    writer = parallel.is_main_process()  # one writer (and lock holder) in a multi-host run
    if args.warm_start and args.resume:
        raise UsageError("--warm-start starts a new run from a checkpoint, --resume continues one: give one of them")
    if args.warm_start:
        if args.out is None:
            raise UsageError("--warm-start CHECKPOINT needs --out DIR, the new run's directory")
        out = Path(args.out)
        _refuse_existing_run(out)
        r = resume_mod.warm_start(args.warm_start, out, _given(args), data=args.data, epochs=args.epochs,
                                  learning_rate=args.learning_rate, patience=args.patience,
                                  checkpoint_every=args.checkpoint_every)
        for note in r.notes:
            print(f"note: {note}", file=sys.stderr)
        if r.done:
            raise UsageError(f"--warm-start {args.warm_start} has {r.state.epoch} epochs already; "
                             f"pass --epochs N with N > {r.state.epoch}")
        print(f"Warm start in {out}/ from {r.checkpoint}: {r.state.epoch} of {r.config.epochs} epochs done", flush=True)
        config, ds, path, state, options = r.config, r.data, r.path, r.state, r.options
        warm = {"from": str(Path(r.checkpoint).resolve()), "epoch": state.epoch}  # the checkpoint, also for a run dir
    elif args.resume:
        if args.out is not None:
            raise UsageError("--resume DIR continues training in DIR; leave out --out")
        out, _ = resume_mod.locate(args.resume)
        if writer and out.is_dir():  # before reading: a run training there prunes what we would read
            held.enter_context(runlock.hold(out, "wait for it to end, then resume"))
        r = resume_mod.resume(args.resume, _given(args), data=args.data, epochs=args.epochs,
                              learning_rate=args.learning_rate, patience=args.patience,
                              checkpoint_every=args.checkpoint_every)
        for note in r.notes:
            print(f"note: {note}", file=sys.stderr)
        if r.done:  # never "5 of 2 epochs done"
            fewer = f" (--epochs {r.config.epochs})" if r.config.epochs < r.state.epoch else ""
            print(f"Nothing to do: the run already has {r.state.epoch} epochs{fewer}, nothing is left to train "
                  f"({r.out}/{r.checkpoint.name}); pass --epochs N with N > {r.state.epoch} to train on")
            return 0
        print(f"Resuming {r.out}/ from {r.checkpoint.name}: {r.state.epoch} of {r.config.epochs} epochs done", flush=True)
        config, ds, path, out, state, options = r.config, r.data, r.path, r.out, r.state, r.options
        warm = checkpoint.read_manifest(r.checkpoint).get("warm_start")  # kept by every later checkpoint
    else:
        from ..demo_corpus import TRAIN_DEFAULTS

        d = dataclasses.replace(Config(), **TRAIN_DEFAULTS) if args.data == "demo" else Config()
        given = {**_given(args), **{k: getattr(args, k) for k in ("epochs", "learning_rate") if getattr(args, k)}}
        config = dataclasses.replace(d, **given)
        if config.split != "source" and (args.test_split is not None or args.split_seed is not None):
            raise UsageError("--test-split and --split-seed need --split source")
        options = {"patience": args.patience, "checkpoint_every": args.checkpoint_every or 1}
        out = Path(args.out or "runs/seed")
        _refuse_existing_run(out)
        path = data_mod.resolve_data(args.data)
        ds = load_data(path, config.num_samples)
        state, warm = None, None
        newrun.check_split(config, ds.input_texts)
    resources.check_fits(model_config(config, ds), parallel.padded_batch_size(config.batch_size, mesh),
                         ds.max_encoder_seq_length, ds.max_decoder_seq_length)  # before init
    if writer and not args.resume:  # before any work: the run directory must be writable and ours alone
        newrun.check_writable(out)
        held.enter_context(runlock.hold(out))
        newrun.refuse_existing_run(out)  # another run wrote here after the check above
    describe(ds, splits.split_rows(config, ds.input_texts))
    return _train_and_report(args, config, ds, path, out, state, options, mesh, writer, warm)


def _train_and_report(args, config, ds, path, out, state, options, mesh, writer, warm=None) -> int:
    from .. import models, parallel, train
    from ..bucketing import encoder_pad_width
    from ..search import greedy_reference
    from ..progress import ProgressBar

    extra = {"data": {"path": str(Path(path).resolve())}, "options": options}
    if warm:  # where a warm-started run's first epochs came from
        extra["warm_start"] = warm
    print(parallel.describe(mesh, config.batch_size), flush=True)
    bar = ProgressBar(sys.stdout) if writer and not args.quiet and sys.stdout.isatty() else None
    try:
        params, history = train.fit(
            config, ds, log=bar.log if bar else lambda line: print(line, flush=True), out=out if writer else None,
            state=state, patience=options["patience"], checkpoint_every=options["checkpoint_every"],
            checkpoint_extra=extra, mesh=mesh, progress=bar,
        )
    finally:
        if bar:  # an error or Ctrl-C mid-epoch: its message goes below the bar
            bar.close()
    params = parallel.to_host(params)  # replicated arrays -> this process's copy
    model = models.build(train.model_config(config, ds))
    if not writer:
        return 0
    found = [p.name for _, p in list_checkpoints(out)]
    best = best_checkpoint(out).name if found else None
    print(f"Saved checkpoints to {out}/ ({', '.join(found)}; best by val_loss: {best}) and {out}/history.json")
    for i in range(min(args.show, len(ds))):
        enc = ds.encoder_tokens[i]
        if config.bucket:  # pad as training did: to the sentence's bucket width
            enc = enc[: encoder_pad_width(len(ds.input_texts[i]), ds.max_encoder_seq_length)]
        decoded = greedy_reference(params, enc, ds.target_vocab, ds.max_decoder_seq_length, model,
                                   len(ds.input_texts[i]))
        print("-")
        print("Input sentence:", ds.input_texts[i])
        print("Decoded sentence:", decoded.rstrip("\n"))
    return 0


def interrupted_advice(args) -> str:
    """What to run after Ctrl-C: resume the run when it holds a checkpoint, else start again."""
    run_dir = Path(getattr(args, "resume", None) or getattr(args, "out", None) or "runs/seed")
    if checkpoint.is_checkpoint(run_dir):  # an epoch-NNNN folder: resume the run, i.e. its newest
        run_dir = run_dir.parent
    if list_checkpoints(run_dir):
        return f"interrupted; the last complete checkpoint is kept: continue with minis2s train --resume {run_dir}"
    return (f"interrupted before the first checkpoint; {run_dir} holds none, so there is nothing to resume: "
            "run the same command again to start over")


__all__ = ["add", "describe", "interrupted_advice", "load_data", "run"]

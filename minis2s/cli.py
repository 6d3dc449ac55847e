"""Command line: ``minis2s train ...`` (more commands register themselves below)."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path

from . import checkpoint, resources, run, runlock
from . import trained as trained_mod
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


def _unit_interval(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (inclusive), got {v}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {s}")
    return v


# What jax.random.PRNGKey takes: an integer that fits a signed 64-bit C long (it raises
# OverflowError beyond; tests/test_reliability.py checks both ends against it).
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1


def _seed(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if not SEED_MIN <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer from -2**63 to 2**63-1 (a JAX PRNG seed), got {s}")
    return v


# --------------------------------------------------------------------------- train

# Flags that define the model, the data split or the shuffles: fixed once a run exists.
_FIXED_ON_RESUME = (
    "num_samples", "batch_size", "latent_dim", "validation_split", "seed", "grad", "model", "cell", "bucket",
    "mask_padding", "attention_scale", "teacher_forcing", "teacher_forcing_end",
)


def _add_model_options(p, default_model: str | None = None, default_cell: str | None = None) -> None:
    """``--model`` and ``--cell``, their choices read from the registries."""
    from .cells import CELLS
    from .models import MODELS

    p.add_argument("--model", choices=tuple(MODELS), default=default_model,
                   help="which model: 'seed' is the Keras example (default seed)")
    p.add_argument("--cell", choices=tuple(CELLS), default=default_cell,
                   help="recurrent cell of the encoder and decoder (default lstm)")
    p.add_argument("--attention-scale", action="store_true", default=None,
                   help="luong: learn a scalar on the attention scores, Keras Attention(use_scale=True) "
                   "(default: off, as Attention())")


def add_train(sub) -> None:
    from .train import Config

    d = Config()
    p = sub.add_parser(
        "train",
        help="train a model (default: the seed, with the Keras example recipe)",
        description="Train the seed model. Every epoch (see --checkpoint-every) writes OUT/epoch-NNNN with "
        "the optimizer and RNG state; --resume OUT continues exactly where the run stopped.",
    )
    from .demo_corpus import TRAIN_DEFAULTS

    demo = " ".join(f"--{k.replace('_', '-')} {'all' if v is None else v}" for k, v in TRAIN_DEFAULTS.items())
    p.add_argument("--data", help="fra.txt or fra-eng.zip, or 'demo': templated pairs shipped with minis2s, "
                   f"trained by default with {demo} (default: download to the cache)")
    p.add_argument("--epochs", type=_positive_int, help=f"total epochs (default {d.epochs})")
    p.add_argument("--num-samples", type=_num_samples, help=f"a count, or 'all' (default {d.num_samples})")
    p.add_argument("--batch-size", type=_positive_int, help=f"default {d.batch_size}")
    p.add_argument("--latent-dim", type=_positive_int, help=f"default {d.latent_dim}")
    p.add_argument("--validation-split", type=_fraction, help=f"default {d.validation_split}")
    p.add_argument("--seed", type=_seed, help=f"default {d.seed}")
    p.add_argument("--learning-rate", type=_positive_float, help=f"RMSprop learning rate (default {d.learning_rate:g})")
    p.add_argument(
        "--grad", choices=("autodiff", "bptt"),
        help=f"LSTM gradient: hand-derived BPTT or JAX autodiff (same numbers; default: {d.grad})",
    )
    _add_model_options(p)
    p.add_argument("--teacher-forcing", type=_unit_interval, metavar="R",
                   help="probability of feeding the decoder the true previous character; otherwise its own "
                   f"argmax prediction (scheduled sampling; default {d.teacher_forcing:g}: always, the seed)")
    p.add_argument("--teacher-forcing-end", type=_unit_interval, metavar="R",
                   help="decay --teacher-forcing linearly to R at the last epoch (default: constant)")
    p.add_argument("--out", help="run directory for checkpoints and history (default: runs/seed)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest complete checkpoint")
    p.add_argument("--patience", type=_positive_int,
                   help="stop when val_loss has not improved for N epochs (Keras EarlyStopping)")
    p.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                   help="write a checkpoint every N epochs (default 1); the best and the last epoch are always written")
    p.add_argument("--show", type=int, default=5, help="decode this many training sentences at the end")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar within epochs, only the epoch lines (the default when stdout is not a terminal)")
    # scaling: devices, several hosts, buckets, masked loss (docs/scaling.md)
    s = p.add_argument_group("scaling (docs/scaling.md)")
    s.add_argument("--devices", type=_positive_int, default=None,
                   help="devices per process to split each batch over (default: all local devices)")
    s.add_argument("--distributed", action="store_true",
                   help="one process of a multi-host run: call jax.distributed.initialize first")
    s.add_argument("--coordinator", default=None, help="with --distributed: HOST:PORT of process 0 (else auto-detected)")
    s.add_argument("--num-processes", type=_positive_int, default=None, help="with --distributed (else auto-detected)")
    s.add_argument("--process-id", type=int, default=None, help="with --distributed (else auto-detected)")
    s.add_argument("--bucket", action="store_true", default=None,
                   help="batch sentences of similar length, cut to their length bucket (not the seed's numbers)")
    s.add_argument("--mask-padding", action="store_true", default=None,
                   help="loss and accuracy over real target characters only (not the seed's numbers)")
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
    with contextlib.ExitStack() as held:  # the run directory's lock, once taken (runlock.py)
        return _run_train(args, held)


def _run_train(args, held: contextlib.ExitStack) -> int:
    import dataclasses

    from . import data as data_mod
    from . import parallel
    from .train import Config, load_state, model_config, split_train_val

    if args.distributed:  # before anything touches a device
        parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    elif args.coordinator or args.num_processes or args.process_id is not None:
        raise UsageError("--coordinator, --num-processes and --process-id need --distributed")
    mesh = parallel.make_mesh(args.devices)
    writer = parallel.is_main_process()  # one writer (and lock holder) in a multi-host run
    options = {"patience": args.patience, "checkpoint_every": args.checkpoint_every or 1}
    if args.resume:
        if args.out is not None:
            raise UsageError("--resume DIR continues training in DIR; leave out --out")
        resume = Path(args.resume)
        explicit = checkpoint.is_checkpoint(resume) or bool(run.EPOCH_DIR.match(resume.name))
        out = resume.parent if explicit else resume
        if writer and out.is_dir():  # before reading: a run training there prunes what we would read
            held.enter_context(runlock.hold(out, "wait for it to end, then resume"))
        ckpt = run.resume_checkpoint(resume)  # verified; a run passes over damaged ones with a warning
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
        _, state, _ = load_state(ckpt, ds)
        if config.learning_rate != saved.learning_rate:
            print(f"note: learning rate changed from {saved.learning_rate:g} to {config.learning_rate:g}", file=sys.stderr)
        print(f"Resuming {out}/ from {ckpt.name}: {state.epoch} of {config.epochs} epochs done", flush=True)
        if state.epoch >= config.epochs:
            print(f"Nothing to do: the run already has {state.epoch} epochs; pass --epochs N with N > {state.epoch} to train on")
            return 0
    else:
        from .demo_corpus import TRAIN_DEFAULTS

        d = dataclasses.replace(Config(), **TRAIN_DEFAULTS) if args.data == "demo" else Config()
        config = Config(**{
            name: getattr(args, name) if getattr(args, name) is not None else getattr(d, name)
            for name in (*_FIXED_ON_RESUME, "epochs", "learning_rate")
        })
        out = Path(args.out or "runs/seed")
        existing = run.list_checkpoints(out)
        if existing:
            with runlock.hold(out):  # a run still training there is the better message
                pass
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
    resources.check_fits(model_config(config, ds), parallel.padded_batch_size(config.batch_size, mesh),
                         ds.max_encoder_seq_length, ds.max_decoder_seq_length)  # before init
    if writer and not args.resume:  # before any work: the run directory must be writable and ours alone
        _check_writable(out)
        held.enter_context(runlock.hold(out))
        found = run.list_checkpoints(out)
        if found:  # another run wrote here after the check above
            raise UsageError(f"{out} already holds a training run ({found[-1][1].name}); continue it with "
                             f"--resume {out}, or choose another --out")
    return _train_and_report(args, config, ds, path, out, state, options, mesh, writer)


def _check_writable(out: Path) -> None:
    """Refuse an ``--out`` that cannot be created or written, before an epoch is spent."""
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write there ({e.strerror or e}); choose another --out") from None


def _train_and_report(args, config, ds, path, out, state, options, mesh, writer) -> int:
    from . import models, parallel
    from .bucketing import encoder_pad_width
    from .decode import greedy_reference
    from .progress import ProgressBar
    from .train import fit, model_config

    _describe(ds)
    extra = {"data": {"path": str(Path(path).resolve())}, "options": options}
    print(parallel.describe(mesh, config.batch_size), flush=True)
    bar = ProgressBar(sys.stdout) if writer and not args.quiet and sys.stdout.isatty() else None
    try:
        params, history = fit(
            config, ds, log=bar.log if bar else lambda line: print(line, flush=True), out=out if writer else None,
            state=state, patience=options["patience"], checkpoint_every=options["checkpoint_every"],
            checkpoint_extra=extra, mesh=mesh, progress=bar,
        )
    finally:
        if bar:  # an error or Ctrl-C mid-epoch: its message goes below the bar
            bar.close()
    params = parallel.to_host(params)  # replicated arrays -> this process's copy
    model = models.build(model_config(config, ds))
    if not writer:
        return 0
    found = [p.name for _, p in run.list_checkpoints(out)]
    best = run.best_checkpoint(out).name if found else None
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
    p.add_argument("--grad", choices=("bptt", "autodiff"), default="bptt",
                   help="which LSTM gradient to check: the hand-derived BPTT that training uses "
                   "by default, or JAX autodiff (default bptt)")
    _add_model_options(p, "seed", "lstm")
    p.set_defaults(func=run_gradcheck)


def run_gradcheck(args) -> int:
    import jax
    import numpy as np

    from . import models
    from .gradcheck import check_grads
    from .train import loss_fn

    if args.directions < 0 or not args.rtol > 0 or not args.atol >= 0:
        raise ValueError("--directions must be >= 0, --rtol > 0 and --atol >= 0")
    # A tiny random problem: 7 input and 9 output tokens, 3 samples, short sequences,
    # one padding row of weight 0 as in a real last batch.
    v_in, v_out, batch_size, t_enc, t_dec = 7, 9, 3, 5, 6
    model = models.build(models.ModelConfig(v_in, v_out, args.latent_dim, args.model, args.cell,
                                            bool(args.attention_scale)), args.grad)
    params = model.init(jax.random.PRNGKey(args.seed))
    rng = np.random.default_rng(args.seed)
    batch = {
        "encoder_tokens": rng.integers(0, v_in, (batch_size, t_enc)).astype(np.int32),
        "encoder_lengths": np.array([t_enc, t_enc - 2, 1], np.int32),
        "decoder_tokens": rng.integers(0, v_out, (batch_size, t_dec)).astype(np.int32),
        "target_tokens": rng.integers(0, v_out, (batch_size, t_dec)).astype(np.int32),
        "weight": np.array([1.0, 1.0, 0.0], np.float32),
    }
    print(
        f"gradcheck: loss of a {v_in}->{v_out}-token model, latent_dim {args.latent_dim}, "
        f"batch {batch_size}x{t_enc}->{t_dec}, seed {args.seed}, model {args.model}, {args.cell} cell, "
        f"{args.grad} gradient"
    )
    report = check_grads(
        lambda p: loss_fn(p, batch, model.apply)[0],
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


# --------------------------------------------------------------------------- translate


def _beam_width(s: str) -> int:
    return _positive_int(s)


def _non_negative_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not (v >= 0.0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {s}")
    return v


def _add_decoding_options(p) -> None:
    p.add_argument("--beam", type=_beam_width, default=1, metavar="N",
                   help="beam search width (1 = greedy, the seed's decoding; default 1)")
    p.add_argument("--length-alpha", type=_non_negative_float, default=0.0, metavar="A",
                   help="beam search ranks finished outputs by log p / length**A (default 0: plain log p)")
    p.add_argument("--batch-size", type=_positive_int, default=256,
                   help="sentences decoded per call of the jitted decoder (default 256)")


def add_translate(sub) -> None:
    p = sub.add_parser(
        "translate",
        help="translate English sentences with a trained checkpoint",
        description="Translate the SENTENCEs given, or else every line of standard input; "
        "prints one translation per input line, in order. Put '--' before sentences that start with '-'.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT_DIR")
    p.add_argument("sentences", nargs="*", metavar="SENTENCE")
    _add_decoding_options(p)
    g = p.add_argument_group("sampling")
    g.add_argument("--sample", action="store_true",
                   help="draw translations from the softmax instead of greedy/beam decoding; prints "
                   "--samples lines per input line, in order")
    g.add_argument("--temperature", type=_non_negative_float, default=1.0, metavar="T",
                   help="with --sample: draw from p**(1/T), renormalised (0 = greedy; default 1)")
    g.add_argument("--samples", type=_positive_int, default=1, metavar="N",
                   help="with --sample: translations per sentence (default 1)")
    g.add_argument("--seed", type=int, default=0, help="with --sample: the random seed (default 0)")
    p.add_argument("--on-error", choices=["fail", "skip", "truncate"], default="fail",
                   help="input with characters outside the vocabulary or longer than the encoder: "
                   "fail (default: report every bad input, translate nothing), skip (empty output line, "
                   "warning) or truncate (drop those characters, cut to the encoder length, warning)")
    p.add_argument("--attention-plot", metavar="PNG",
                   help="also draw each translation's attention weights (French characters against "
                   "English characters, one panel per sentence) to PNG; needs matplotlib and a model "
                   "with attention (--model luong)")
    p.set_defaults(func=run_translate)
    _allow_intermixed(p)


def _allow_intermixed(p: argparse.ArgumentParser) -> None:
    """Let options come after positionals (``translate CKPT "Go." --beam 3 "Run!"``).

    Plain argparse stops filling a ``nargs="*"`` positional at the first option and then
    rejects the rest; this subparser (it has no subparsers of its own) parses intermixed.
    """
    plain = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        p.parse_known_args = plain  # the intermixed parse calls parse_known_args itself
        try:
            return p.parse_known_intermixed_args(args, namespace)
        finally:
            p.parse_known_args = parse_known_args

    p.parse_known_args = parse_known_args  # type: ignore[method-assign]


def _read_stdin_lines(on_error: str) -> tuple[list[str], list[str]]:
    """Lines of standard input (without line endings) and warnings about undecodable lines.

    Invalid UTF-8 fails under ``--on-error fail``; otherwise the line is decoded with
    U+FFFD for the bad bytes, which the vocabulary check then reports and handles.
    """
    from .decode import InputError

    stream = getattr(sys.stdin, "buffer", None)
    raw = stream.read() if stream is not None else sys.stdin.read().encode("utf-8", "surrogatepass")
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a BOM is not part of the first sentence
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line starts no new input
    texts, warnings = [], []
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix(b"\r")
        try:
            texts.append(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            message = f"line {number}: not valid UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1})"
            if on_error == "fail":
                raise InputError([message], "save the input as UTF-8, or use --on-error skip or truncate") from None
            texts.append(line.decode("utf-8", "replace"))
            warnings.append(message)
    return texts, warnings


def run_translate(args) -> int:
    from . import decode

    if args.sample and args.beam != 1:
        print("minis2s translate: error: --sample draws each character; it cannot be combined with --beam", file=sys.stderr)
        return 2
    if not args.sample and (args.samples != 1 or args.temperature != 1.0):
        print("minis2s translate: error: --samples and --temperature need --sample", file=sys.stderr)
        return 2
    trained = trained_mod.load_trained(args.checkpoint)
    decode.check_trained(trained, args.checkpoint)
    if args.attention_plot:  # refuse before translating: a model without attention, no matplotlib
        from . import alignment, plot

        if not alignment.has_attention(decode.model_of(trained)):
            raise ValueError(f"--attention-plot: the {trained.config.model} model of {args.checkpoint} has no "
                             "attention weights to plot; train one with --model luong")
        plot._import_pyplot()
    try:
        if args.sentences:
            texts, warnings = list(args.sentences), []
        else:
            texts, warnings = _read_stdin_lines(args.on_error)
        if args.sample:
            per_text = decode.translate_samples(
                trained, texts, samples=args.samples, temperature=args.temperature, seed=args.seed,
                on_error=args.on_error, batch_size=args.batch_size,
            )
            results = [r for rs in per_text for r in rs]
        else:
            results = decode.translate(
                trained, texts, beam=args.beam, length_alpha=args.length_alpha,
                on_error=args.on_error, batch_size=args.batch_size,
            )
    except decode.InputError as e:
        for line in e.problems:
            print(f"minis2s translate: error: {line}", file=sys.stderr)
        if e.hint:
            print(f"minis2s translate: {e.hint}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"minis2s translate: warning: {w}", file=sys.stderr)
    for r in results[:: args.samples if args.sample else 1]:  # one warning per input, not per sample
        if r.problem:
            what = "skipped" if r.hypothesis is None else "repaired"
            print(f"minis2s translate: warning ({what}): {r.problem}", file=sys.stderr)
    sys.stdout.write("".join(r.output + "\n" for r in results))
    sys.stdout.flush()
    if args.attention_plot:
        _plot_attention(trained, texts, results, args)
    return 0


def _plot_attention(trained, texts, results, args) -> None:
    """Draw the attention of every translated input (the text the encoder read, repaired
    when ``--on-error truncate`` changed it) to ``args.attention_plot``."""
    from . import alignment, decode, plot

    prepared = decode.prepare_inputs(texts, trained.input_vocab, trained.max_encoder_seq_length,
                                     "skip" if args.on_error == "fail" else args.on_error)
    pairs = [(p.text, r.hypothesis.chars) for p, r in zip(prepared, results)
             if p.text and r.hypothesis is not None and r.hypothesis.chars]
    weights = alignment.attention_weights(trained, pairs)
    out = plot.plot_attention([(e, c, w) for (e, c), w in zip(pairs, weights)], args.attention_plot)
    print(f"minis2s translate: wrote {out} ({len(pairs)} panel(s))", file=sys.stderr)


# --------------------------------------------------------------------------- evaluate


def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="decode a split of the training data and score it (exact match, char accuracy, chrF)",
        description="Rebuild the dataset as training did (the checkpoint's num_samples and "
        "validation_split), decode the validation (or training) split in batches, print exact match, "
        "character accuracy and chrF, write source/reference/hypothesis to a TSV, and print the "
        "seed's demo: the first training sentences decoded.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT_DIR")
    p.add_argument("--data", help="fra.txt or fra-eng.zip to read, or 'demo' (default: the file the "
                   "checkpoint records it was trained on, checked against its SHA-256; else the downloaded copy)")
    p.add_argument("--split", choices=["val", "train"], default="val")
    p.add_argument("--num-samples", type=_num_samples, default=None,
                   help="samples to read (default: the checkpoint's; 'all' for the whole file)")
    p.add_argument("--limit", type=_positive_int, default=None,
                   help="score only the first N sentences of the split")
    _add_decoding_options(p)
    p.add_argument("--out", help="TSV to write (default: CHECKPOINT_DIR/eval-SPLIT.tsv, "
                   "or eval-SPLIT-beamN.tsv for beam search)")
    p.add_argument("--demo", type=int, default=20, metavar="N",
                   help="decode the first N training sentences, as the seed does (default 20; 0: none)")
    p.set_defaults(func=run_evaluate)


def _check_same_data(trained, path, inputs, targets) -> None:
    """The recorded data file still holds the texts the run was trained on (its data_sha256)."""
    import types

    from .run import data_fingerprint

    want = trained.manifest.get("data_sha256")
    if want and data_fingerprint(types.SimpleNamespace(input_texts=inputs, target_texts=targets)) != want:
        raise ValueError(f"{path} has changed since {trained.path} was trained on it (its SHA-256 differs); "
                         "pass --data PATH to the file it was trained on")


def run_evaluate(args) -> int:
    import csv
    import time

    from . import data as data_mod
    from . import decode, metrics
    from .train import split_train_val

    trained = trained_mod.load_trained(args.checkpoint, "minis2s evaluate")
    decode.check_trained(trained, args.checkpoint)
    config = trained.config
    num_samples = config.num_samples if args.num_samples is None else args.num_samples
    recorded = trained.manifest.get("data")
    recorded = recorded.get("path") if isinstance(recorded, dict) else None
    path = data_mod.resolve_data(args.data if args.data is not None or recorded is None else recorded)
    if args.data is None and recorded is not None and not Path(recorded).is_file():
        raise ValueError(f"{trained.path} was trained on {recorded}, which no longer exists; "
                         f"pass --data PATH to that file (or its copy)")
    text, source = data_mod.read_text(path)
    inputs, targets = data_mod.parse_pairs(text, num_samples, source)
    if args.data is None and recorded is not None and num_samples == config.num_samples:
        _check_same_data(trained, recorded, inputs, targets)
    references = [t.removeprefix(data_mod.START).removesuffix(data_mod.END) for t in targets]
    n = len(inputs)
    split_at = split_train_val(n, config.validation_split)
    lo, hi = (split_at, n) if args.split == "val" else (0, split_at)
    if args.limit is not None:
        hi = min(hi, lo + args.limit)
    if hi <= lo:
        raise ValueError(
            f"the {args.split} split of {n} samples (validation_split={config.validation_split}) is empty"
        )
    if num_samples != config.num_samples:
        count = lambda k: "all" if k is None else k  # noqa: E731
        print(f"note: reading {count(num_samples)} samples, the checkpoint was trained on "
              f"{count(config.num_samples)}; the split differs from training's")
    how = "greedy" if args.beam == 1 else f"beam {args.beam}" + (
        f", length alpha {args.length_alpha}" if args.length_alpha else "")
    split_name = "validation" if args.split == "val" else "training"
    print(f"Evaluating {args.checkpoint} on the {split_name} split: samples {lo}-{hi - 1} "
          f"({hi - lo} sentences) of {n} from {source}, {how}", flush=True)

    t0 = time.perf_counter()
    results = decode.translate(
        trained, inputs[lo:hi], beam=args.beam, length_alpha=args.length_alpha,
        on_error="skip", batch_size=args.batch_size, first_number=lo + 1,
    )
    seconds = time.perf_counter() - t0
    kept = [i for i, r in enumerate(results) if r.problem is None]
    skipped = len(results) - len(kept)
    if skipped:
        first = next(r.problem for r in results if r.problem)
        print(f"warning: {skipped} sentence(s) do not fit this checkpoint and are left out of the "
              f"scores (is --data the file it was trained on?); first: {first}")
    if not kept:
        raise ValueError("no sentence of the split fits the checkpoint's vocabulary and lengths")
    hyps = [results[i].output for i in kept]
    refs = [references[lo + i] for i in kept]
    scores = metrics.score(hyps, refs)
    print(f"Decoded {len(results)} sentences in {seconds:.1f}s ({len(results) / seconds:.0f} sentences/s)")
    print(f"exact match:    {scores['exact_match']:.4f}")
    print(f"char accuracy:  {scores['char_accuracy']:.4f}")
    print(f"chrF:           {100 * scores['chrf']:.2f}")

    suffix = "" if args.beam == 1 else f"-beam{args.beam}"
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"eval-{args.split}{suffix}.tsv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["source", "reference", "hypothesis"])
        for i, r in enumerate(results):
            w.writerow([r.source, references[lo + i], r.output if r.problem is None else ""])
    print(f"Wrote {out}")

    n_demo = min(max(args.demo, 0), split_at)
    if n_demo:
        demo = decode.translate(trained, inputs[:n_demo], on_error="skip", batch_size=args.batch_size)
        for r in demo:
            print("-")
            print("Input sentence:", r.source)
            print("Decoded sentence:", r.output if r.problem is None else f"(skipped: {r.problem})")
    return 0


# --------------------------------------------------------------------------- plot


def add_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw loss and accuracy per epoch (train and validation) to a PNG")
    p.add_argument("run", metavar="DIR", help="a run directory holding history.json (or the file itself)")
    p.add_argument("--out", help="PNG to write (default: DIR/history.png)")
    p.set_defaults(func=run_plot)


def run_plot(args) -> int:
    from . import plot

    history_path = plot.find_history(args.run)
    history = plot.load_history(history_path)
    out = Path(args.out) if args.out else history_path.parent / "history.png"
    plot.plot_history(history, out, title=plot.run_title(history_path))
    epochs = max(len(v) for v in history.values())
    print(f"Wrote {out} ({epochs} epochs)")
    return 0


# --------------------------------------------------------------------------- main

COMMANDS = [add_train, add_translate, add_evaluate, add_plot, add_gradcheck]


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
    except (MemoryError, RuntimeError) as e:
        if not resources.is_out_of_memory(e):
            raise
        lower = "--latent-dim or --batch-size" if args.command == "train" else "--batch-size"
        first = (str(e).strip().splitlines() or ["MemoryError"])[0][:200]
        print(f"minis2s {args.command}: error: out of memory ({first}); lower {lower}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command == "train":
            run = getattr(args, "resume", None) or getattr(args, "out", None) or "runs/seed"
            if checkpoint.is_checkpoint(run):  # an epoch-NNNN folder: resume the run, i.e. its newest
                run = str(Path(run).parent)
            print(f"interrupted; the last complete checkpoint is kept: continue with "
                  f"minis2s train --resume {run}", file=sys.stderr)
        else:
            print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

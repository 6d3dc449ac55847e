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
    p.set_defaults(func=run_train)


def run_train(args) -> int:
    from . import data as data_mod
    from .decode import greedy_reference
    from .train import Config, fit, write_history

    config = Config(
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        epochs=args.epochs,
        latent_dim=args.latent_dim,
        validation_split=args.validation_split,
        seed=args.seed,
    )
    path = data_mod.resolve_data(args.data)
    ds = data_mod.load_dataset(path, config.num_samples)
    print(f"Number of samples: {len(ds)}")
    print(f"Number of unique input tokens: {len(ds.input_vocab)}")
    print(f"Number of unique output tokens: {len(ds.target_vocab)}")
    print(f"Max sequence length for inputs: {ds.max_encoder_seq_length}")
    print(f"Max sequence length for outputs: {ds.max_decoder_seq_length}", flush=True)
    params, history = fit(config, ds, log=lambda line: print(line, flush=True))
    out = Path(args.out)
    checkpoint.save_trained(out, params, config, ds)
    write_history(out / "history.json", history)
    print(f"Saved checkpoint and history to {out}/")
    for i in range(min(args.show, len(ds))):
        decoded = greedy_reference(params, ds.encoder_tokens[i], ds.target_vocab, ds.max_decoder_seq_length)
        print("-")
        print("Input sentence:", ds.input_texts[i])
        print("Decoded sentence:", decoded.rstrip("\n"))
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
    p.add_argument("--on-error", choices=["fail", "skip", "truncate"], default="fail",
                   help="input with characters outside the vocabulary or longer than the encoder: "
                   "fail (default: report every bad input, translate nothing), skip (empty output line, "
                   "warning) or truncate (drop those characters, cut to the encoder length, warning)")
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

    trained = checkpoint.load_trained(args.checkpoint)
    decode.check_trained(trained, args.checkpoint)
    try:
        if args.sentences:
            texts, warnings = list(args.sentences), []
        else:
            texts, warnings = _read_stdin_lines(args.on_error)
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
    for r in results:
        if r.problem:
            what = "skipped" if r.hypothesis is None else "repaired"
            print(f"minis2s translate: warning ({what}): {r.problem}", file=sys.stderr)
    sys.stdout.write("".join(r.output + "\n" for r in results))
    sys.stdout.flush()
    return 0


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
    p.add_argument("--data", help="fra.txt or fra-eng.zip the checkpoint was trained on "
                   "(default: the downloaded copy in the cache; 'demo' for the bundled corpus)")
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


def run_evaluate(args) -> int:
    import csv
    import time

    from . import data as data_mod
    from . import decode, metrics
    from .train import split_train_val

    trained = checkpoint.load_trained(args.checkpoint)
    decode.check_trained(trained, args.checkpoint)
    config = trained.config
    num_samples = config.num_samples if args.num_samples is None else args.num_samples
    path = data_mod.resolve_data(args.data)
    text, source = data_mod.read_text(path)
    inputs, targets = data_mod.parse_pairs(text, num_samples, source)
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
    plot.plot_history(history, out, title=str(history_path.parent))
    epochs = max(len(v) for v in history.values())
    print(f"Wrote {out} ({epochs} epochs)")
    return 0


# --------------------------------------------------------------------------- main

COMMANDS = [add_train, add_translate, add_evaluate, add_plot]


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

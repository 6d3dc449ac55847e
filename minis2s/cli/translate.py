"""``minis2s translate``: English sentences (arguments or standard input) to French, one
output line per input line (``--samples`` lines with ``--sample``)."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import pretrained, trained as trained_mod
from ..run import best_checkpoint
from .options import add_decoding_options, allow_intermixed, number, positive_int, seed

STDIN_HINT = "minis2s translate: reading sentences from standard input, one per line (end with Ctrl-D)"


def add(sub) -> None:
    p = sub.add_parser(
        "translate",
        help="translate English sentences with a trained checkpoint, or the model shipped with minis2s",
        usage="%(prog)s [options] CHECKPOINT_DIR [SENTENCE ...]\n"
        "       %(prog)s [options] --pretrained [SENTENCE ...]",
        description="Translate the SENTENCEs given, or else every line of standard input, with the model "
        "in CHECKPOINT_DIR or, with --pretrained, the model shipped with minis2s; prints one translation "
        "per input line, in order. Put '--' before sentences that start with '-'.",
    )
    p.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT_DIR",
                   help="a checkpoint (epoch-NNNN), or a run directory: its best checkpoint by val_loss "
                   "(not with --pretrained)")
    p.add_argument("sentences", nargs="*", metavar="SENTENCE",
                   help="English sentences to translate (default: read lines of standard input)")
    add_pretrained_option(p, "translate with the model shipped with minis2s (a transformer trained on the "
                          "whole Tatoeba fra-eng file; its card: minis2s/pretrained/fra-eng/MODEL_CARD.md) "
                          "instead of a CHECKPOINT_DIR; every positional is then a sentence")
    add_decoding_options(p)
    g = p.add_argument_group("sampling")
    g.add_argument("--sample", action="store_true",
                   help="draw translations from the softmax instead of greedy/beam decoding; prints "
                   "--samples lines per input line, in order (default: off)")
    g.add_argument("--temperature", type=number(float, 0.0), default=1.0, metavar="T",
                   help="with --sample: draw from p**(1/T), renormalised (0 = greedy; default 1)")
    g.add_argument("--samples", type=positive_int, default=1, metavar="N",
                   help="with --sample: translations per sentence (default 1)")
    g.add_argument("--seed", type=seed, default=0, help="with --sample: the random seed (default 0)")
    p.add_argument("--on-error", choices=["fail", "skip", "truncate"], default="fail",
                   help="input with characters outside the vocabulary or longer than the encoder: "
                   "fail (default: report every bad input, translate nothing), skip (empty output line, "
                   "warning) or truncate (drop those characters, cut to the encoder length, warning)")
    p.add_argument("--attention-plot", metavar="PNG",
                   help="also draw each translation's attention weights (French characters against "
                   "English characters, one panel per translation) to PNG ('.png' is added to a name without "
                   "a suffix); needs matplotlib and a model with attention, --model luong (default: no plot)")
    p.set_defaults(func=run)
    allow_intermixed(p)


def add_pretrained_option(p, text: str) -> None:
    """``--pretrained``: the shipped model (:data:`minis2s.pretrained.DEFAULT`) instead of a checkpoint."""
    p.add_argument("--pretrained", action="store_true", help=text + " (default: off)")


def load(given: str | None, command: str = "minis2s translate"):
    """The trained model ``given`` (a checkpoint, or a run directory: its best checkpoint) names,
    or the shipped model when ``given`` is None (``--pretrained``); ``command`` is the one a
    recovery message tells the user to run again."""
    from ..translate import check_trained

    if given is None:
        trained = pretrained.load_pretrained(pretrained.DEFAULT, command=command)
    else:
        trained = trained_mod.load_trained(given, command)
    check_trained(trained, str(trained.path if given is None else given))
    return trained


def describe_checkpoint(given: str | None, trained) -> str:
    """``RUN/epoch-0004 (epoch 4, the lowest val_loss of the run: 0.4321)``, or the path
    alone when the checkpoint records no training; ``given`` None: the shipped model."""
    parts = []
    if given is None:
        parts.append(f"the model shipped with minis2s, {pretrained.DEFAULT!r}")
        given = trained.path
    if trained.epoch:
        parts.append(f"epoch {trained.epoch}")
    if Path(trained.path) != Path(given):  # a run directory: its best checkpoint, unless that one is damaged
        if Path(trained.path) == best_checkpoint(given):
            val = trained.manifest.get("training", {}).get("history", {}).get("val_loss") or []
            best = f": {val[trained.epoch - 1]:.4f}" if 0 < trained.epoch <= len(val) else ""
            parts.append(f"the lowest val_loss of the run{best}")
        else:
            parts.append("the run's best checkpoint is damaged; this is its newest good one")
    return f"{trained.path}" + (f" ({', '.join(parts)})" if parts else "")


def _read_stdin_lines(on_error: str) -> tuple[list[str], list[str]]:
    """Lines of standard input (without line endings) and warnings about undecodable lines.

    Invalid UTF-8 fails under ``--on-error fail``; otherwise the line is decoded with
    U+FFFD for the bad bytes, which the vocabulary check then reports and handles.
    """
    from ..translate import InputError

    if sys.stdin.isatty():  # a person at a terminal: say what the silence is waiting for
        print(STDIN_HINT, file=sys.stderr, flush=True)
    stream = getattr(sys.stdin, "buffer", None)
    raw = stream.read() if stream is not None else sys.stdin.read().encode("utf-8", "surrogatepass")
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a BOM is not part of the first sentence
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line starts no new input
    texts, warnings = [], []
    for number_, line in enumerate(lines, start=1):
        line = line.removesuffix(b"\r")
        try:
            texts.append(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            message = f"line {number_}: not valid UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1})"
            if on_error == "fail":
                raise InputError([message], "save the input as UTF-8, or use --on-error skip or truncate") from None
            texts.append(line.decode("utf-8", "replace"))
            warnings.append(message)
    return texts, warnings


def run(args) -> int:
    from .. import translate as text

    if args.sample and args.beam != 1:
        print("minis2s translate: error: --sample draws each character; it cannot be combined with --beam", file=sys.stderr)
        return 2
    if not args.sample and (args.samples != 1 or args.temperature != 1.0):
        print("minis2s translate: error: --samples and --temperature need --sample", file=sys.stderr)
        return 2
    args.checkpoint, args.sentences = pretrained.choose_model(args.checkpoint, args.sentences, args.pretrained)
    trained = load(args.checkpoint)
    where = args.checkpoint or f"--pretrained ({trained.path})"
    png = None
    if args.attention_plot:  # refuse before translating: a model without attention, no matplotlib
        from .. import alignment, plot

        if not alignment.has_attention(text.model_of(trained)):
            raise ValueError(f"--attention-plot: the {trained.config.model} model of {where} has no "
                             "attention weights to plot; train one with --model luong")
        plot._import_pyplot()
        png = plot.png_path(args.attention_plot)
    if args.checkpoint is not None and Path(trained.path) != Path(args.checkpoint):  # a run directory: which checkpoint
        print(f"minis2s translate: using {describe_checkpoint(args.checkpoint, trained)}", file=sys.stderr)
    try:
        if args.sentences:
            texts, warnings = list(args.sentences), []
        else:
            texts, warnings = _read_stdin_lines(args.on_error)
        if args.sample:
            per_text = text.translate_samples(
                trained, texts, samples=args.samples, temperature=args.temperature, seed=args.seed,
                on_error=args.on_error, batch_size=args.batch_size,
            )
        else:
            per_text = [[r] for r in text.translate(
                trained, texts, beam=args.beam, length_alpha=args.length_alpha,
                on_error=args.on_error, batch_size=args.batch_size,
            )]
    except text.InputError as e:
        for line in e.problems:
            print(f"minis2s translate: error: {line}", file=sys.stderr)
        if e.hint:
            print(f"minis2s translate: {e.hint}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"minis2s translate: warning: {w}", file=sys.stderr)
    for rs in per_text:  # one warning per input, not per sample
        if rs[0].problem:
            what = "skipped" if rs[0].hypothesis is None else "repaired"
            print(f"minis2s translate: warning ({what}): {rs[0].problem}", file=sys.stderr)
    sys.stdout.write("".join(r.output + "\n" for rs in per_text for r in rs))
    sys.stdout.flush()
    if png is not None:
        _plot_attention(trained, texts, per_text, png, args.on_error)
    return 0


def attention_panels(trained, texts, per_text, on_error: str) -> list[tuple[str, str]]:
    """``(encoder text, output characters)`` of every translation to draw, in output order:
    each input's own translations (all its samples) against the text its encoder read (the
    repaired text under ``--on-error truncate``). Empty and skipped inputs draw nothing."""
    from .. import translate as text

    prepared = text.prepare_inputs(texts, trained.input_vocab, trained.max_encoder_seq_length,
                                     "skip" if on_error == "fail" else on_error)
    return [(p.text, r.hypothesis.chars) for p, rs in zip(prepared, per_text, strict=True) for r in rs
            if p.text and r.hypothesis is not None and r.hypothesis.chars]


def _plot_attention(trained, texts, per_text, png, on_error: str) -> None:
    from .. import alignment, plot

    pairs = attention_panels(trained, texts, per_text, on_error)
    weights = alignment.attention_weights(trained, pairs)
    out = plot.plot_attention([(e, c, w) for (e, c), w in zip(pairs, weights)], png)
    print(f"minis2s translate: wrote {out} ({len(pairs)} panel(s))", file=sys.stderr)

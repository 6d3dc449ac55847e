"""``minis2s evaluate``: score a checkpoint on the split training held out (or trained on)."""

from __future__ import annotations

from .options import (DeprecatedAlias, add_decoding_options, add_show_option, count_or_all, num_samples_value,
                      positive_int)
from .. import pretrained
from .translate import add_pretrained_option, describe_checkpoint, load


def add(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="decode a split of the training data and score it (exact match, char accuracy, chrF, BLEU)",
        description="Rebuild the dataset as training did (the checkpoint's num_samples, validation_split "
        "and split), decode the validation (or training, or test) split in batches, print exact match, "
        "character accuracy, chrF and BLEU against each line's reference and, each distinct source once, "
        "against all its references, write source/reference/hypothesis/references to a TSV, and print the "
        "seed's demo: the first training sentences decoded.",
    )
    p.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT_DIR",
                   help="a checkpoint (epoch-NNNN), or a run directory: its best checkpoint by val_loss "
                   "(not with --pretrained)")
    add_pretrained_option(p, "evaluate the model shipped with minis2s instead of a CHECKPOINT_DIR; needs --data "
                          "PATH to the fra.txt it was trained on (checked against its SHA-256)")
    p.add_argument("--data", metavar="PATH", help="fra.txt or fra-eng.zip to read, or 'demo' (default: the file "
                   "the checkpoint records it was trained on, checked against its SHA-256; else the downloaded copy)")
    p.add_argument("--split", choices=["val", "train", "test"], default="val",
                   help="the validation split training held out, the training split, or the test split of a "
                   "run trained with --split source (default val)")
    p.add_argument("--num-samples", type=count_or_all, default=None, metavar="N|all",
                   help="pairs to read (default: the checkpoint's; 'all' for the whole file)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="score only the first N sentences of the split (default: all of it)")
    add_decoding_options(p)
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="sentences the checkpoint cannot take (characters or lengths it never saw): fail "
                   "(default), or skip them and score the rest")
    p.add_argument("--out", metavar="TSV", help="TSV to write (default: CHECKPOINT_DIR/eval-SPLIT.tsv, "
                   "or eval-SPLIT-beamN.tsv for beam search; with --pretrained, eval-fra-eng-SPLIT[-beamN].tsv "
                   "in the current directory)")
    add_show_option(p, 20, "training sentences")
    p.add_argument("--demo", type=int, dest="show", action=DeprecatedAlias, new="--show")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import evaluate

    args.checkpoint, _ = pretrained.choose_model(args.checkpoint, [], args.pretrained, takes_sentences=False)
    if args.pretrained:
        pretrained.require_data(args.data)
    trained = load(args.checkpoint, "minis2s evaluate")
    num_samples = trained.config.num_samples if args.num_samples is None else num_samples_value(args.num_samples)
    split = evaluate.rebuild_split(trained, args.data, num_samples, args.split, args.limit)
    for note in split.notes:
        print(f"note: {note}")
    how = "greedy" if args.beam == 1 else f"beam {args.beam}" + (
        f", length alpha {args.length_alpha}" if args.length_alpha else "")
    print(f"Evaluating {describe_checkpoint(args.checkpoint, trained)} on the {evaluate.SPLIT_NAMES[args.split]} "
          f"split: {split.describe()} from {split.source}, {how}", flush=True)
    result = evaluate.evaluate(trained, split, beam=args.beam, length_alpha=args.length_alpha,
                               batch_size=args.batch_size, on_error=args.on_error)
    if result.skipped:
        print(f"warning: {result.skipped} sentence(s) do not fit this checkpoint and are left out of the "
              f"scores (--on-error skip); first: {result.first_problem}")
    n, seconds = len(result.results), result.seconds
    print(f"Decoded {n} sentences in {seconds:.1f}s ({n / seconds:.0f} sentences/s)")
    print(f"exact match:    {result.scores['exact_match']:.4f}")
    print(f"char accuracy:  {result.scores['char_accuracy']:.4f}")
    print(f"chrF:           {100 * result.scores['chrf']:.2f}")
    print(f"BLEU:           {100 * result.scores['bleu']:.2f}")
    _print_by_source(result)
    default = (pretrained.default_tsv(pretrained.DEFAULT, args.split, args.beam) if args.checkpoint is None
               else evaluate.default_tsv(args.checkpoint, args.split, args.beam))
    out = evaluate.write_tsv(args.out or default, split, result.results)
    print(f"Wrote {out}")
    _show(trained, split, args)
    return 0


def _print_by_source(result) -> None:
    """The scores of each distinct source once: all its references, and its first line's only."""
    s = result.scores
    print(f"Each distinct source once ({result.sources} sources, {result.references / result.sources:.2f} "
          f"references each on average), all its references | first line's reference only:")
    print(f"  exact (any reference):  {s['exact_match_multi']:.4f} | {s['exact_match_first']:.4f}")
    print(f"  chrF, all references:   {100 * s['chrf_multi']:6.2f} | {100 * s['chrf_first']:.2f}")
    print(f"  BLEU, all references:   {100 * s['bleu_multi']:6.2f} | {100 * s['bleu_first']:.2f}")


def _show(trained, split, args) -> None:
    """The seed's demo: the first ``--show`` training sentences, decoded greedily."""
    from .. import translate as text

    n = min(args.show, len(split.train_lines))
    if n:
        texts = [split.inputs[i] for i in split.train_lines[:n]]
        for r in text.translate(trained, texts, on_error="skip", batch_size=args.batch_size):
            print("-")
            print("Input sentence:", r.source)
            print("Decoded sentence:", r.output if r.problem is None else f"(skipped: {r.problem})")


__all__ = ["add", "run"]

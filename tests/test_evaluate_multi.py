"""``minis2s evaluate`` scoring each distinct source once against all its references, on a
file written here with several translations per source, checked against sacreBLEU."""

from __future__ import annotations

import csv
import re

import pytest

from minis2s import evaluate, metrics
from tests._cli import run
from tests._tiny_model import save_tiny_checkpoint
from tests.conftest import require_module

# English sentences of the tiny model's training data (so they fit its vocabulary and
# lengths) with translations written for this test: 15 pairs, the last 3 the validation
# split (Keras' last 20%); "Go." and "Hello." have several translations, on both sides of
# the split, "Va !" twice (counted once).
PAIRS = [
    ("Go.", "Va !"), ("Hello.", "Bonjour."), ("Go.", "Bouge !"), ("Thanks.", "Merci."), ("Hello.", "Salut."),
    ("I see.", "Je vois."), ("Go.", "Vas-y."), ("Thanks.", "Merci beaucoup."), ("I see.", "Je comprends."),
    ("Run!", "Cours !"), ("Wait.", "Attends."), ("Stop!", "Arrête !"),
    ("Go.", "Va !"), ("Hello.", "Coucou."), ("Go.", "Fiche le camp !"),
]
GROUPS = {"Go.": ["Va !", "Bouge !", "Vas-y.", "Fiche le camp !"], "Hello.": ["Bonjour.", "Salut.", "Coucou."]}


@pytest.fixture(scope="module")
def sacrebleu():
    return require_module("sacrebleu")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt"))


def printed(out: str, label: str) -> tuple[float, float]:
    """``(all references, first line's reference)`` of a line ``  LABEL:  X | Y``."""
    m = re.search(re.escape(label) + r":\s+([0-9.]+) \| ([0-9.]+)", out)
    return float(m.group(1)), float(m.group(2))


def test_evaluate_scores_each_source_once_against_all_its_references(ckpt, tmp_path, sacrebleu):
    data = tmp_path / "pairs.txt"
    data.write_text("".join(f"{e}\t{f}\n" for e, f in PAIRS), encoding="utf-8")
    tsv = tmp_path / "val.tsv"
    rc, out, err = run(["evaluate", ckpt, "--data", str(data), "--num-samples", "15", "--out", str(tsv),
                        "--show", "0"])
    assert rc == 0, err
    with open(tsv, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["source", "reference", "hypothesis", "references"]
    rows = rows[1:]
    assert [(r[0], r[1]) for r in rows] == PAIRS[12:]
    assert [r[3].split(" ||| ") for r in rows] == [GROUPS["Go."], GROUPS["Hello."], GROUPS["Go."]]
    hyps = [r[2] for r in rows]
    assert "Each distinct source once (2 sources, 3.50 references each on average)" in out

    # line by line: the seed's figures, and BLEU against each line's own reference
    line_bleu = sacrebleu.metrics.BLEU().corpus_score(hyps, [[r[1] for r in rows]]).score
    assert float(re.search(r"BLEU:\s+([0-9.]+)", out).group(1)) == pytest.approx(line_bleu, abs=0.005 + 1e-9)
    # each source once, its first line's hypothesis: all references, and the first line's only
    once = [hyps[0], hyps[1]]
    refs = [GROUPS["Go."], GROUPS["Hello."]]
    multi = sacrebleu.metrics.CHRF().corpus_score(once, [[r[j] if j < len(r) else None for r in refs]
                                                         for j in range(4)]).score
    first = sacrebleu.metrics.CHRF().corpus_score(once, [["Va !", "Coucou."]]).score
    assert printed(out, "chrF, all references") == pytest.approx((multi, first), abs=0.005 + 1e-9)
    multi = sacrebleu.metrics.BLEU().corpus_score(once, [[r[j] if j < len(r) else None for r in refs]
                                                         for j in range(4)]).score
    first = sacrebleu.metrics.BLEU().corpus_score(once, [["Va !", "Coucou."]]).score
    assert printed(out, "BLEU, all references") == pytest.approx((multi, first), abs=0.005 + 1e-9)
    exact = (sum(h in r for h, r in zip(once, refs)) / 2, (once[0] == "Va !") / 2 + (once[1] == "Coucou.") / 2)
    assert printed(out, "exact (any reference)") == pytest.approx(exact, abs=0.5e-4)


def test_source_scores_by_hand():
    """Duplicated sources are scored once, by their first line's hypothesis; a hypothesis
    equal to any reference of its source is exact."""
    inputs = [e for e, _ in PAIRS]
    references = [f for _, f in PAIRS]
    split = evaluate.Split(inputs, references, (12, 13, 14), tuple(range(12)), "pairs.txt",
                           groups=metrics.references_by_source(inputs, references))
    scores, sources, n_refs = evaluate.source_scores(split, [12, 13, 14], ["Bouge !", "Salut.", "nothing"])
    assert (sources, n_refs) == (2, 7)
    assert scores["exact_match_multi"] == 1.0 and scores["chrf_multi"] == 1.0
    assert scores["exact_match_first"] == 0.0  # "Va !" and "Coucou." were the lines' own references
    assert scores["chrf_first"] == metrics.chrf(["Bouge !", "Salut."], ["Va !", "Coucou."])
    assert split.describe() == "samples 12-14 (3 sentences) of 15"
    split = evaluate.Split(inputs, references, (0, 2, 13), (), "pairs.txt")
    assert split.describe() == "3 sentences (2 distinct sources) of 15"


@pytest.mark.parametrize("split", ["test", "val"])
def test_evaluate_rebuilds_a_source_split(tmp_path, split):
    """On a run trained with --split source, --split test (and val) score that side's lines,
    none of whose English sentences training saw, and the demo shows training's first lines."""
    import dataclasses

    from minis2s import splits
    from minis2s.data import DEMO_PATH
    from minis2s.trained import save_trained
    from tests._tiny_model import tiny_model

    params, ds, config, _ = tiny_model()
    config = dataclasses.replace(config, split="source", test_split=0.2, validation_split=0.2, split_seed=3)
    ckpt = save_trained(tmp_path / "ckpt", params, config, ds)
    tsv = tmp_path / "out.tsv"
    rc, out, err = run(["evaluate", str(ckpt), "--data", str(DEMO_PATH), "--split", split, "--out", str(tsv),
                        "--show", "2"])
    assert rc == 0, err
    sides = splits.source_split(ds.input_texts, 0.2, 0.2, 3)
    lines = getattr(sides, split)
    with open(tsv, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    assert [r[0] for r in rows] == [ds.input_texts[i] for i in lines]
    chosen = {r[0] for r in rows}
    assert 0 < len(rows) < len(ds) // 2
    # every line of those sources, and no training line shares one
    assert [i for i, s in enumerate(ds.input_texts) if s in chosen] == list(lines)
    assert not chosen & {ds.input_texts[i] for i in sides.train}
    name = {"test": "test", "val": "validation"}[split]
    assert f"on the {name} split: {len(rows)} sentences ({len(chosen)} distinct sources) of 140" in out
    shown = re.findall(r"Input sentence: (.*)", out)
    assert shown == [ds.input_texts[i] for i in sides.train[:2]]


@pytest.mark.slow
def test_train_split_source_then_evaluate_split_test(tmp_path):
    """End to end: the split a run records (train --split source) is the one evaluate rebuilds."""
    from minis2s import splits
    from minis2s.data import DEMO_PATH, load_dataset

    out = tmp_path / "run"
    rc, text, err = run(["train", "--data", str(DEMO_PATH), "--split", "source", "--test-split", "0.25",
                         "--split-seed", "7", "--latent-dim", "8", "--batch-size", "16", "--epochs", "1", "--show", "0",
                         "--out", str(out)])
    assert rc == 0, err
    tsv = tmp_path / "test.tsv"
    rc, text, err = run(["evaluate", str(out), "--split", "test", "--show", "0", "--out", str(tsv)])
    assert rc == 0, err
    ds = load_dataset(DEMO_PATH, None)
    test = splits.source_split(ds.input_texts, 0.25, 0.2, 7).test
    with open(tsv, encoding="utf-8", newline="") as f:
        assert [r[0] for r in list(csv.reader(f, delimiter="\t"))[1:]] == [ds.input_texts[i] for i in test]
    assert f"on the test split: {len(test)} sentences" in text

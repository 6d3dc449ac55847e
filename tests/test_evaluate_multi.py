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

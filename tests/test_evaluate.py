"""Metrics (checked against sacreBLEU's chrF) and ``minis2s evaluate`` on the tiny model."""

from __future__ import annotations

import csv
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._tiny_model import save_tiny_checkpoint, tiny_model
from minis2s import decode, metrics, models, search, train
from minis2s import trained as trained_mod
from minis2s.data import DEMO_PATH
from tests.conftest import require_module
from tests._cli import run


# --------------------------------------------------------------------------- metrics


def test_exact_match_and_char_accuracy_by_hand():
    hyps = ["Va !", "Cours", "Salut.", ""]
    refs = ["Va !", "Cours !", "Salué.", "Merci."]
    assert metrics.exact_match(hyps, refs) == 0.25
    # matches: 4 + 5 + 4 ("Salu", "t" != "é", ".") + 0; lengths: 4 + 7 + 6 + 6
    assert metrics.char_accuracy(hyps, refs) == pytest.approx((4 + 5 + 5 + 0) / (4 + 7 + 6 + 6))
    assert metrics.char_accuracy(["abc"], ["abc"]) == 1.0
    assert metrics.char_accuracy(["abcd"], ["abc"]) == 0.75  # an extra character counts
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        metrics.exact_match(["a", "b"], ["a"])


def test_chrf_by_hand():
    # order 1 only: hyp "ab" vs ref "abc" -> P = 2/2, R = 2/3
    p, r = 1.0, 2 / 3
    assert metrics.chrf(["ab"], ["abc"], order=1) == pytest.approx(5 * p * r / (4 * p + r))
    assert metrics.chrf(["a b"], ["ab"], order=2) == 1.0  # whitespace is removed
    assert metrics.chrf(["xyz"], ["abc"]) == 0.0



@pytest.fixture(scope="module")
def sacrebleu():
    """sacreBLEU, the chrF oracle: the tests that need it skip without it (fail in CI)."""
    return require_module("sacrebleu")


FIXED_CASES = [
    (["Va !", "Cours !", "Je vois."], ["Va !", "Courez !", "Je le vois."]),
    (["", "Salut."], ["Salut.", ""]),
    (["Il fait froid.", "a"], ["Il fait très froid.", "aa"]),
    ([" ", "J'ai faim."], ["  ", "J'ai très faim."]),
    (["aaaaaaa"], ["aa"]),
]


@pytest.mark.parametrize("hyps,refs", FIXED_CASES)
def test_chrf_equals_sacrebleu_on_fixed_cases(sacrebleu, hyps, refs):
    expected = sacrebleu.metrics.CHRF().corpus_score(hyps, [refs]).score
    assert 100 * metrics.chrf(hyps, refs) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text("abc é.'", max_size=12), st.text("abc é.'", max_size=12)), min_size=1, max_size=5))
def test_chrf_equals_sacrebleu_on_random_corpora(sacrebleu, pairs):
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    expected = sacrebleu.metrics.CHRF().corpus_score(hyps, [refs]).score
    assert 100 * metrics.chrf(hyps, refs) == pytest.approx(expected, abs=1e-9)


# --------------------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt"))


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["source", "reference", "hypothesis", "references"]  # the seed's three, then all references
    return [r[:3] for r in rows[1:]]


def reported(out: str) -> dict[str, float]:
    return {
        "exact_match": float(re.search(r"exact match:\s+([0-9.]+)", out).group(1)),
        "char_accuracy": float(re.search(r"char accuracy:\s+([0-9.]+)", out).group(1)),
        "chrf": float(re.search(r"chrF:\s+([0-9.]+)", out).group(1)) / 100,
    }


def test_evaluate_validation_split(ckpt, tmp_path):
    params, ds, config, _ = tiny_model()
    model = models.build(train.model_config(config, ds))
    tsv = tmp_path / "val.tsv"
    rc, out, err = run(["evaluate", ckpt, "--data", str(DEMO_PATH), "--out", str(tsv)])
    assert rc == 0, err
    rows = read_tsv(tsv)
    # the last 20% of the 140 demo pairs, as Keras' validation_split takes them
    assert [r[0] for r in rows] == ds.input_texts[112:]
    assert [r[1] for r in rows] == [t[1:-1] for t in ds.target_texts[112:]]
    for i in (0, 13, 27):  # the batched decoder's output is the seed loop's
        seed = search.greedy_reference(params, ds.encoder_tokens[112 + i], ds.target_vocab, ds.max_decoder_seq_length,
                                       model)
        assert rows[i][2] == seed.removesuffix("\n")
    scores = metrics.score([r[2] for r in rows], [r[1] for r in rows])
    # all three are printed to 4 decimals of the fraction (chrF as 100x with 2): rounding only
    for k, v in reported(out).items():
        assert v == pytest.approx(scores[k], abs=0.5e-4 + 1e-12), k
    assert "samples 112-139 (28 sentences) of 140" in out
    # the seed's demo: the first 20 training sentences, decoded
    demo = re.findall(r"Input sentence: (.*)\nDecoded sentence: (.*)", out)
    assert [s for s, _ in demo] == ds.input_texts[:20]
    hyps = decode.decode_tokens(params, ds.encoder_tokens[:20], ds.target_vocab, ds.max_decoder_seq_length, model=model)
    assert [d for _, d in demo] == [h.text for h in hyps]


@pytest.mark.slow
def test_evaluate_train_split_with_beam_and_default_tsv(ckpt):
    rc, out, err = run(["evaluate", ckpt, "--data", str(DEMO_PATH), "--split", "train", "--beam", "2",
                        "--limit", "30", "--show", "0"])
    assert rc == 0, err
    rows = read_tsv(f"{ckpt}/eval-train-beam2.tsv")
    _, ds, _, _ = tiny_model()
    assert [r[0] for r in rows] == ds.input_texts[:30]
    assert "Input sentence" not in out
    # the oracle: the plain-Python beam search (width 2, greedy's output kept as decode_tokens
    # does) on each sentence, and exact match counted here
    from tests._decode_reference import beam_with_greedy_reference

    params, ds, config, _ = tiny_model()
    model = models.build(train.model_config(config, ds))
    for i, row in enumerate(rows):
        chars = beam_with_greedy_reference(model, params, ds.encoder_tokens[i], ds.target_vocab,
                                           ds.max_decoder_seq_length, 2)[0]
        assert row[2] == chars.removesuffix("\n"), i
    exact = sum(r[2] == r[1] for r in rows) / len(rows)
    assert reported(out)["exact_match"] == pytest.approx(exact, abs=0.5e-4 + 1e-12)
    assert 0.1 < metrics.score([r[2] for r in rows], [r[1] for r in rows])["char_accuracy"] < 1  # learned something, not everything


@pytest.mark.slow
def test_evaluate_on_other_data_fails_or_leaves_unfit_sentences_out(ckpt, tmp_path):
    data = tmp_path / "other.txt"
    data.write_text("Go.\tVa !\nWho?\tQui ?\nÇa va?\tÇa va ?\nHi.\tSalut.\nRun!\tCours !\n", encoding="utf-8")
    argv = ["evaluate", ckpt, "--data", str(data), "--split", "train", "--num-samples", "5", "--out",
            str(tmp_path / "o.tsv")]
    # a sentence the model cannot read is an error naming it, not a silent score over the rest
    rc, out, err = run([*argv, "--show", "3"])
    assert rc == 2 and not (tmp_path / "o.tsv").exists()
    assert err.strip().splitlines() == [
        f"minis2s evaluate: error: 1 of 4 sentence(s) do not fit {ckpt} (is --data the file it was trained on?); "
        "first: input 3 'Ça va?': 1 character(s) outside the training vocabulary: 'Ç' (U+00C7 LATIN CAPITAL "
        "LETTER C WITH CEDILLA); use --on-error skip to score the rest"]
    # --on-error skip scores the rest; --demo is the old name of --show
    rc, out, err = run([*argv, "--on-error", "skip", "--demo", "3"])
    assert rc == 0, err
    assert "--demo is an old name of --show" in err
    assert "note: reading 5 samples, the checkpoint was trained on all" in out
    assert "1 sentence(s) do not fit" in out and "'Ç' (U+00C7" in out
    assert len(re.findall("Input sentence:", out)) == 3
    rows = read_tsv(tmp_path / "o.tsv")
    assert len(rows) == 4 and rows[2] == ["Ça va?", "Ça va ?", ""]


def test_evaluate_errors(ckpt, tmp_path):
    rc, _, err = run(["evaluate", str(tmp_path / "nope"), "--data", "demo"])
    assert rc == 2 and "nope" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run(["evaluate", ckpt, "--data", str(tmp_path / "missing.txt")])
    assert rc == 2 and "missing.txt: no such file" in err
    rc, _, err = run(["evaluate", ckpt, "--data", "demo", "--split", "tset"])
    assert rc == 2 and "invalid choice" in err
    # a run trained on the Keras split holds out no test split: one line naming the flag
    rc, out, err = run(["evaluate", ckpt, "--data", str(DEMO_PATH), "--split", "test"])
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [
        "minis2s evaluate: error: --split test: this run holds out no test split (it was trained with the Keras "
        "split, the last validation_split for validation); use --split val, or train with --split source"]


def test_evaluate_reads_the_data_its_run_recorded(tmp_path):
    """Without --data, evaluate reads the file the checkpoint records (checked against the
    recorded SHA-256), as --resume does; a gone or changed file is a one-line error."""
    from minis2s import train
    from minis2s.trained import save_trained

    params, ds, config, _ = tiny_model()
    copy = tmp_path / "pairs.txt"
    copy.write_bytes(DEMO_PATH.read_bytes())
    ckpt = save_trained(tmp_path / "ckpt", params, config, ds,
                                   {"data": {"path": str(copy)}, "data_sha256": train.data_fingerprint(ds)})
    rc, out, err = run(["evaluate", str(ckpt), "--show", "0", "--out", str(tmp_path / "a.tsv")])
    assert rc == 0, err
    assert f"of 140 from {copy}" in out
    rc, _, err = run(["evaluate", str(ckpt), "--data", str(DEMO_PATH), "--show", "0", "--out", str(tmp_path / "b.tsv")])
    assert rc == 0, err
    assert read_tsv(tmp_path / "a.tsv") == read_tsv(tmp_path / "b.tsv")

    copy.write_text(DEMO_PATH.read_text(encoding="utf-8").replace("Go.", "Go!", 1), encoding="utf-8")
    rc, out, err = run(["evaluate", str(ckpt), "--show", "0"])
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [f"minis2s evaluate: error: {copy} has changed since {ckpt} was trained on it "
                                        "(its SHA-256 differs); pass --data PATH to the file it was trained on"]
    copy.unlink()
    rc, out, err = run(["evaluate", str(ckpt), "--show", "0"])
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [f"minis2s evaluate: error: {ckpt} was trained on {copy}, which no longer "
                                        "exists; pass --data PATH to that file (or its copy)"]


def test_evaluate_refuses_data_that_is_not_the_training_data(tmp_path):
    """--data naming another file than the one the run trained on (its SHA-256 differs) is an
    error naming both, not a validation split of some other file scored near 0."""
    from minis2s import train

    params, ds, config, _ = tiny_model()
    ckpt = trained_mod.save_trained(tmp_path / "ckpt", params, config, ds,
                                   {"data": {"path": str(DEMO_PATH)}, "data_sha256": train.data_fingerprint(ds)})
    other = tmp_path / "other.txt"
    other.write_text(DEMO_PATH.read_text(encoding="utf-8").replace("Go.", "Go!", 1), encoding="utf-8")
    rc, out, err = run(["evaluate", str(ckpt), "--data", str(other), "--show", "0", "--out", str(tmp_path / "o.tsv")])
    assert rc == 2 and out == "" and not (tmp_path / "o.tsv").exists()
    assert err.strip().splitlines() == [
        f"minis2s evaluate: error: --data {other} is not the data {ckpt} was trained on ({DEMO_PATH}): the SHA-256 "
        f"of its first 140 pairs differs; pass --data PATH to that file"]

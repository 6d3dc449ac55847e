"""scripts/benchmarks/seed_vs_shipped.py: the ten-sentences rule, the draw, the scoring of
skipped sentences as empty, the tables (fast); the whole script on two tiny runs (slow)."""

from __future__ import annotations

import json

import pytest

from minis2s import data, splits, train
from minis2s.config import Config
from minis2s.translate import Translation
from tests.conftest import load_script


@pytest.fixture(scope="module")
def svs():
    return load_script("benchmarks/seed_vs_shipped")


def test_words_lowercase_and_strip_edge_punctuation_only(svs):
    assert svs.words('"Don\'t go," Tom said.') == ["don't", "go", "tom", "said"]
    assert svs.words("- Hi... «Oui» !") == ["hi", "oui"]  # "-" and "!" leave no word


def test_top_words_counts_every_sentence_and_breaks_ties_by_first_appearance(svs):
    # tom 2, ran 2, sat 2, i 1, mary 1: the two most frequent, ties in order of appearance
    training = ["Tom ran.", "Tom sat.", "I ran!", "Mary sat."]
    assert svs.top_words(training, 2) == {"tom", "ran"}
    assert svs.top_words(training, 3) == {"tom", "ran", "sat"}


def test_everyday_candidates_keep_distinct_sources_of_3_to_7_known_words_in_order(svs):
    vocabulary = {"tom", "ran", "sat", "i", "mary", "is", "here", "again"}
    sources = [
        "Tom ran.",                                  # 2 words
        "I sat here.",                               # kept
        "Tom is here!",                              # kept
        "Mary is here now.",                         # "now" unknown
        "I sat here.",                               # repeat
        "Tom, Mary, I ran here, sat here again.",    # 8 words
        "Tom ran here again, Mary sat here.",        # 7 words, kept
    ]
    assert svs.everyday_candidates(sources, vocabulary) == ["I sat here.", "Tom is here!",
                                                            "Tom ran here again, Mary sat here."]


def test_draw_ten_with_seed_zero_in_file_order(svs):
    candidates = [f"s{i:02d}" for i in range(20)]
    # numpy.random.default_rng(0).choice(20, 10, replace=False), sorted: written out by hand
    want = [0, 1, 3, 4, 6, 7, 9, 16, 17, 18]
    assert svs.draw(candidates) == [f"s{i:02d}" for i in want]
    assert svs.draw(candidates[:4]) == candidates[:4]  # fewer than ten: all of them


def test_skipped_sentences_count_as_empty_output(svs):
    results = [Translation("Hi.", "", problem="input 1: too long"), Translation("Go.", "ab")]
    outputs, skipped = svs.outputs_or_empty(results)
    assert (outputs, skipped) == (["", "ab"], 1)
    # By hand (chrF, beta 2, orders 1..6, whitespace removed), sentence 2 against its best
    # reference "ab": n=1 H=2 R=2 M=2, n=2 H=1 R=1 M=1; sentence 1 ("" against "ab"): H=0,
    # R_1=2, R_2=1. Totals n=1 (2, 4, 2), n=2 (1, 2, 1): P = 1, R = 1/2,
    # F = 5 * 1 * 0.5 / (4 * 1 + 0.5) = 5/9. Against first references ("ab", "cd") nothing matches.
    scores = svs.score(outputs, [["ab"], ["cd", "ab"]])
    assert scores["chrf_multi"] == pytest.approx(500 / 9)
    assert scores["chrf_first"] == 0.0
    assert scores["exact_match_any"] == 50.0
    assert scores["bleu_multi"] == 0.0  # one word per sentence: no 2-, 3- or 4-grams
    # left out instead of scored as empty, the same output would score 100
    assert svs.score(["ab"], [["cd", "ab"]])["chrf_multi"] == pytest.approx(100.0)


def test_ratio_and_reference_cell(svs):
    assert svs.ratio(60.0, 40.0) == 1.5 and svs.ratio(1.0, 0.0) is None
    assert svs.reference_cell(["a", "b", "c", "d"]) == "a / b / c …"
    assert svs.reference_cell(["a"]) == "a"


def test_ten_table_marks_exact_outputs(svs):
    table = svs.ten_table(["Go."], {"Go.": "Va !"}, {"Go.": ""}, {"Go.": ["Bouge !", "Va !"]})
    assert table.splitlines() == [
        "| English | shipped model | seed recipe | references |", "|---|---|---|---|",
        "| Go. | Va ! ✓ | — | Bouge ! / Va ! |",
    ]


@pytest.mark.slow
def test_script_end_to_end_on_tiny_runs(svs, demo_path, tmp_path, capsys):
    common = dict(epochs=1, latent_dim=8, batch_size=16, split="source", test_split=0.3, validation_split=0.2)
    full = Config(num_samples=None, **common)
    seed = Config(num_samples=60, **common)
    train.fit(full, data.load_dataset(demo_path, None), out=tmp_path / "model", log=None)
    train.fit(seed, data.load_dataset(demo_path, 60), out=tmp_path / "seed", log=None)
    out = tmp_path / "out"
    svs.main(["--data", str(demo_path), "--seed-run", str(tmp_path / "seed"), "--model", str(tmp_path / "model"),
              "--out", str(out)])
    result = json.loads((out / "seed_vs_shipped.json").read_text(encoding="utf-8"))
    ds = data.load_dataset(demo_path, None)
    test = {ds.input_texts[i] for i in splits.split_rows(full, ds.input_texts).test}
    in_first = test & set(ds.input_texts[:60])
    assert result["test_sources"] == len(test)
    parts = list(result["parts"].values())
    assert [p["sources"] for p in parts] == [len(test), len(in_first)]
    for p in parts:
        for model in ("shipped", "seed"):
            assert 0.0 <= p[model]["chrf_multi"] <= 100.0 and 0 <= p[model]["skipped"] <= p["sources"]
    assert {s["english"] for s in result["ten_sentences"]} <= test
    assert (out / "ten_sentences.md").read_text(encoding="utf-8").startswith("| English |")
    assert "chrF shipped/seed" in capsys.readouterr().out
    # without --seed-run: the model's side alone, its scores the same as beside the seed
    alone = tmp_path / "alone"
    svs.main(["--data", str(demo_path), "--model", str(tmp_path / "model"), "--out", str(alone)])
    lone = json.loads((alone / "seed_vs_shipped.json").read_text(encoding="utf-8"))
    assert lone["seed"] is None and lone["seed_num_samples"] == svs.SEED_LINES
    first = list(lone["parts"].values())[0]
    assert first["shipped"] == parts[0]["shipped"] and "seed" not in first and first["ratio_chrf_multi"] is None
    assert all(row["seed"] is None for row in lone["ten_sentences"])
    assert "| (not run) |" in (alone / "ten_sentences.md").read_text(encoding="utf-8")

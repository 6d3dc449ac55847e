"""Multi-reference chrF and BLEU (``minis2s.metrics``) against sacreBLEU, the oracle, on
corpora written here; the shared corpus and real model outputs are in test_metrics_corpus.py."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minis2s import metrics
from tests.conftest import require_module


@pytest.fixture(scope="module")
def sacrebleu():
    """sacreBLEU: the tests that need it skip without it (fail in CI)."""
    return require_module("sacrebleu")


def streams(references: list[list[str]]) -> list[list[str | None]]:
    """sacreBLEU's layout of ``references``: one stream per reference number, ``None`` where
    a sentence has fewer references."""
    k = max(len(r) for r in references)
    return [[r[j] if j < len(r) else None for r in references] for j in range(k)]


def oracle(sacrebleu, hyps, refs) -> tuple[float, float]:
    """sacreBLEU's corpus chrF and BLEU (0-100), default settings, several references."""
    return (sacrebleu.metrics.CHRF().corpus_score(hyps, streams(refs)).score,
            sacrebleu.metrics.BLEU().corpus_score(hyps, streams(refs)).score)


# Written for these tests: several references per sentence (1 to 4), lengths from 0 to 11
# words, punctuation cut off or kept by the 13a tokeniser (' - . , « » ? ! … and digits), accents,
# the narrow no-break space French puts before ! and ?, an empty hypothesis, a hypothesis equal
# to one of its references, and one closer to a later reference than to the first.
FIXTURES = [
    (["Je t'aime.", "Il fait très froid aujourd'hui.", ""],
     [["Je vous aime.", "Je t'aime.", "Je t'adore."], ["Il fait froid.", "Aujourd'hui, il fait très froid."],
      ["Salut !"]]),
    (["Va-t'en !", "Où est la gare ?", "Il est 3,5 fois plus grand, non ?"],
     [["Va-t'en\u202f!", "Dégage !", "Pars !", "Fous le camp !"], ["Où se trouve la gare ?"],
      ["C'est 3,5 fois plus grand.", "Il est 3,5 fois plus grand, pas vrai ?"]]),
    (["« Pourquoi ? » a-t-il demandé.", "J'ai 20-25 ans…", "Elle a mangé une pomme et deux poires."],
     [["« Pourquoi ? », demanda-t-il.", "Il a demandé : « Pourquoi ? »"], ["J'ai entre 20 et 25 ans."],
      ["Elle a mangé une pomme.", "Elle mangea une pomme et deux poires.", "Elle a mangé deux poires."]]),
    (["Je ne sais pas ce que tu veux dire par là, franchement."],
     [["Je ne sais pas ce que vous voulez dire.", "Je ne sais pas ce que tu veux dire par là.",
       "Franchement, je ne vois pas ce que tu veux dire."]]),
]


@pytest.mark.parametrize("hyps,refs", FIXTURES)
def test_multi_reference_chrf_and_bleu_equal_sacrebleu(sacrebleu, hyps, refs):
    chrf, bleu = oracle(sacrebleu, hyps, refs)
    assert 100 * metrics.chrf_multi(hyps, refs) == pytest.approx(chrf, abs=1e-9)
    assert 100 * metrics.bleu(hyps, refs) == pytest.approx(bleu, abs=1e-9)
    assert 0 < bleu < chrf < 100  # the fixtures score neither 0 nor everything


def test_short_sentences_equal_to_a_reference_have_chrf_100_and_bleu_0(sacrebleu):
    """Two tokens each ("Non", "."): no hypothesis 3-gram in the whole corpus, so BLEU is 0
    in sacreBLEU and here, while chrF, on characters, is 100."""
    hyps, refs = ["Non.", "Oui.", "Peut-être."], [["Non !", "Non."], ["Si.", "Oui."], ["Peut-être.", "Peut-être !"]]
    assert oracle(sacrebleu, hyps, refs) == (100.0, 0.0)
    assert (metrics.chrf_multi(hyps, refs), metrics.bleu(hyps, refs)) == (1.0, 0.0)


def test_all_fixtures_as_one_corpus(sacrebleu):
    hyps = [h for hs, _ in FIXTURES for h in hs]
    refs = [r for _, rs in FIXTURES for r in rs]
    chrf, bleu = oracle(sacrebleu, hyps, refs)
    assert 100 * metrics.chrf_multi(hyps, refs) == pytest.approx(chrf, abs=1e-9)
    assert 100 * metrics.bleu(hyps, refs) == pytest.approx(bleu, abs=1e-9)
    # one reference each, the first: the seed's chrF, and sacreBLEU's single-reference BLEU
    first = [r[0] for r in refs]
    assert metrics.chrf_multi(hyps, [[r] for r in first]) == metrics.chrf(hyps, first)
    assert 100 * metrics.bleu(hyps, [[r] for r in first]) == pytest.approx(
        sacrebleu.metrics.BLEU().corpus_score(hyps, [first]).score, abs=1e-9)
    # more references never lower either score here, and raise both
    assert metrics.chrf_multi(hyps, refs) > metrics.chrf(hyps, first)
    assert metrics.bleu(hyps, refs) > metrics.bleu(hyps, [[r] for r in first])


def test_a_hypothesis_equal_to_any_reference_scores_100(sacrebleu):
    hyps = ["Je vous aime.", "Il fait très froid aujourd'hui, mon ami."]
    refs = [["Je t'aime.", "Je vous aime."], ["Il fait froid.", "Il fait très froid aujourd'hui, mon ami."]]
    assert metrics.chrf_multi(hyps, refs) == 1.0
    assert metrics.bleu(hyps, refs) == pytest.approx(1.0, abs=1e-12)
    assert metrics.score_multi(hyps, refs)["exact_match"] == 1.0
    assert oracle(sacrebleu, hyps, refs) == pytest.approx((100.0, 100.0), abs=1e-9)


def test_bleu_by_hand():
    """BLEU's pieces on a sentence worked out on paper (independent of sacreBLEU)."""
    # hyp: le chat est sur le tapis .  (7 tokens; the period is cut off)
    # refs: "le chat est sur le lit ." (7) and "un chat est sur le tapis ." (7)
    # 1-grams: all 7 match (le x2 from ref 1);  2-grams: le chat, chat est, est sur, sur le,
    # le tapis, tapis . -> 6 of 6; 3-grams: 5 of 5; 4-grams: le chat est sur, chat est sur le,
    # est sur le tapis, sur le tapis . -> 4 of 4.  BP = 1.
    assert metrics.bleu(["le chat est sur le tapis."], [["le chat est sur le lit.", "un chat est sur le tapis."]]) \
        == pytest.approx(1.0)
    # one reference "le chat est sur le lit .": p = 6/7, 4/6, 3/5, 2/4
    p = [6 / 7, 4 / 6, 3 / 5, 2 / 4]
    assert metrics.bleu(["le chat est sur le tapis."], [["le chat est sur le lit."]]) == pytest.approx(
        math.exp(sum(map(math.log, p)) / 4))
    # closest reference length, the shorter of two equally close: hyp 2 tokens, refs of 1 and 3 -> rho = 1
    assert metrics.bleu_statistics("a b", ["a", "a b c"])[:2] == [2, 1]
    # a hypothesis shorter than its reference: BP = exp(1 - 4/2); no 3- or 4-gram -> BLEU 0
    stats = metrics.bleu_statistics("a b", ["a b c d"])
    assert stats == [2, 4, 2, 1, 0, 0, 2, 1, 0, 0]
    assert metrics.bleu_from_statistics(stats) == 0.0
    # exp smoothing: 3 tokens all right, none of order 3 matched, order 4 empty -> still 0
    # (an order without hypothesis n-grams); with four tokens, the 4-gram unmatched: p4 = 1/(2*1)
    stats = metrics.bleu_statistics("a b c x", ["a b c y"])
    assert stats == [4, 4, 3, 2, 1, 0, 4, 3, 2, 1]
    assert metrics.bleu_from_statistics(stats) == pytest.approx((3 / 4 * 2 / 3 * 1 / 2 * 1 / 2) ** 0.25)
    assert metrics.bleu(["", ""], [["a"], ["b"]]) == 0.0


def test_chrf_picks_the_best_reference_per_sentence():
    # "Je t'aime." matches its second reference exactly: the sentence counts as perfect, and
    # the first reference's counts do not enter the corpus sums at all
    stats = metrics.best_chrf_statistics("Je t'aime.", ["Je vous aime.", "Je t'aime."])
    assert stats == metrics.chrf_statistics("Je t'aime.", "Je t'aime.")
    # equal sentence scores: the first reference
    assert metrics.best_chrf_statistics("ab", ["abX", "abY"]) == metrics.chrf_statistics("ab", "abX")


def test_tokenize_13a_by_hand():
    assert metrics.tokenize_13a("Il est 3,5 fois plus grand, non ?") == \
        ["Il", "est", "3,5", "fois", "plus", "grand", ",", "non", "?"]
    assert metrics.tokenize_13a("Va-t'en\u202f!") == ["Va-t'en", "!"]
    assert metrics.tokenize_13a("J'ai 20-25 ans... (oui)") == ["J'ai", "20", "-", "25", "ans", ".", ".", ".", "(",
                                                               "oui", ")"]
    assert metrics.tokenize_13a("« A » &amp; B.") == ["«", "A", "»", "&", "B", "."]


@settings(max_examples=300, deadline=None)
@given(st.text("ab 12.,-'!?\u202f\xa0é&;:()«»\"/", max_size=16))
def test_tokenize_13a_equals_sacrebleu(sacrebleu, text):
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    assert " ".join(metrics.tokenize_13a(text)) == Tokenizer13a()(text.rstrip())


SENTENCE = st.text("ab c.'!é", max_size=14)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(SENTENCE, st.lists(SENTENCE, min_size=1, max_size=4)), min_size=1, max_size=5))
def test_multi_reference_scores_equal_sacrebleu_on_random_corpora(sacrebleu, corpus):
    hyps, refs = [h for h, _ in corpus], [r for _, r in corpus]
    chrf, bleu = oracle(sacrebleu, hyps, refs)
    assert 100 * metrics.chrf_multi(hyps, refs) == pytest.approx(chrf, abs=1e-9)
    assert 100 * metrics.bleu(hyps, refs) == pytest.approx(bleu, abs=1e-9)


def test_references_by_source_and_errors():
    sources = ["I love you.", "Go.", "I love you.", "I love you.", "Go."]
    targets = ["Je t'aime.", "Va !", "Je vous aime.", "Je t'aime.", "Bouge !"]
    assert metrics.references_by_source(sources, targets) == {
        "I love you.": ["Je t'aime.", "Je vous aime."], "Go.": ["Va !", "Bouge !"]}
    with pytest.raises(ValueError, match="sentence 2: expected a list of one or more references"):
        metrics.bleu(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="sentence 1: expected a list"):
        metrics.chrf_multi(["a"], ["a"])  # a string is not a list of references
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        metrics.score_multi(["a", "b"], [["a"]])

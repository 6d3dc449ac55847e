"""Translation quality: exact match, character accuracy and chrF, corpus-level.

All three compare hypotheses ``h_i`` with references ``r_i`` (plain strings, no start or
end token) and return a number in ``[0, 1]`` (chrF also as the usual 0-100 in reports).

Exact match
    ``EM = (1/N) sum_i [h_i == r_i]``.

Character accuracy
    position-by-position agreement, pooled over the corpus::

        acc = sum_i #{t < min(|h_i|, |r_i|) : h_i[t] == r_i[t]}  /  sum_i max(|h_i|, |r_i|)

    Characters missing from or added to a hypothesis count as wrong, so ``acc = 1`` only
    when every hypothesis equals its reference. (This is the Keras training "accuracy"
    measured on free-running output rather than under teacher forcing, without padding.)

chrF (Popović 2015), in the form sacreBLEU 2 computes by default (``CHRF()``:
character n-grams up to ``n = 6``, ``beta = 2``, whitespace removed)
    Remove all whitespace from both strings. For each order ``n = 1..6`` and each
    sentence, count the n-grams of the hypothesis (``H_n``), of the reference (``R_n``)
    and their clipped overlap ``M_n = sum_g min(count_h(g), count_r(g))``; a hypothesis'
    n-grams count only if its reference has n-grams of that order. Sum the three counts
    over the corpus, then for every order where both sums are positive (the *effective*
    orders, ``E`` of them)::

        P_n = M_n / H_n,   R_n = M_n / R_n,
        P = (1/E) sum_n P_n,   R = (1/E) sum_n R_n,
        chrF_beta = (1 + beta^2) P R / (beta^2 P + R)       (0 if P + R = 0 or E = 0)

    ``beta = 2`` weighs recall twice as much as precision.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not references:
        raise ValueError("no sentences to score")


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of hypotheses identical to their reference."""
    _check(hypotheses, references)
    return sum(h == r for h, r in zip(hypotheses, references)) / len(references)


def char_accuracy(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Position-wise character agreement pooled over the corpus (see the module docstring)."""
    _check(hypotheses, references)
    correct = total = 0
    for h, r in zip(hypotheses, references):
        correct += sum(a == b for a, b in zip(h, r))
        total += max(len(h), len(r))
    return correct / total if total else 1.0  # all pairs empty: all equal


def char_ngrams(text: str, n: int) -> Counter:
    """Counts of the character n-grams of ``text`` with whitespace removed."""
    s = "".join(text.split())
    return Counter(s[i : i + n] for i in range(len(s) - n + 1))


def chrf_statistics(hypothesis: str, reference: str, order: int = 6) -> list[tuple[int, int, int]]:
    """``[(H_n, R_n, M_n) for n in 1..order]`` of one sentence pair."""
    stats = []
    for n in range(1, order + 1):
        hyp, ref = char_ngrams(hypothesis, n), char_ngrams(reference, n)
        matches = sum(min(c, ref[g]) for g, c in hyp.items() if g in ref)
        hyp_total = sum(hyp.values()) if ref else 0  # no reference n-grams: nothing to match
        stats.append((hyp_total, sum(ref.values()), matches))
    return stats


def chrf(hypotheses: Sequence[str], references: Sequence[str], order: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF in ``[0, 1]`` (multiply by 100 for sacreBLEU's scale)."""
    _check(hypotheses, references)
    totals = [[0, 0, 0] for _ in range(order)]
    for h, r in zip(hypotheses, references):
        for tot, stat in zip(totals, chrf_statistics(h, r, order)):
            for j in range(3):
                tot[j] += stat[j]
    effective = [(m / h, m / r) for h, r, m in totals if h > 0 and r > 0]
    if not effective:
        return 0.0
    precision = sum(p for p, _ in effective) / len(effective)
    recall = sum(r for _, r in effective) / len(effective)
    if precision + recall == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * precision * recall / (b2 * precision + recall)


def score(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """``{"exact_match", "char_accuracy", "chrf"}``, each in ``[0, 1]``."""
    return {
        "exact_match": exact_match(hypotheses, references),
        "char_accuracy": char_accuracy(hypotheses, references),
        "chrf": chrf(hypotheses, references),
    }

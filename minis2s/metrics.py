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

Several references per sentence (``chrf_multi``, ``bleu``, ``score_multi``): sentence ``i``
has references ``r_i1 .. r_iK_i`` (``K_i >= 1``, any number per sentence).

chrF with several references, as sacreBLEU's ``CHRF().corpus_score`` takes them
    For each sentence keep the counts ``(H_n, R_n, M_n)`` of the *one* reference whose
    sentence-level chrF (the formula above on that sentence alone) is highest, the first
    of equals; sum those over the corpus as above. A hypothesis is scored against the
    translation it is closest to, not against a blend of all of them.

BLEU (Papineni et al. 2002), as sacreBLEU 2's ``BLEU()`` computes it by default
    Tokenise hypotheses and references with the ``13a`` rules of mteval-v13a (``tokenize_13a``),
    then for each sentence and each order ``n = 1..4`` count the hypothesis' word n-grams,
    ``T_n``, and the matched ones clipped by the largest count in any one reference::

        C_n = sum_g min(count_h(g), max_k count_{r_k}(g))

    The sentence's reference length ``rho_i`` is the length of the reference closest to
    the hypothesis length ``|h_i|`` (the shorter of two equally close ones). Summed over
    the corpus (``c = sum |h_i|``, ``rho = sum rho_i``)::

        p_n = C_n / T_n                  (exp smoothing: if C_n = 0, p_n = 1 / (2^j T_n)
                                          for the j-th such order, j = 1, 2, ...)
        BP  = 1 if c >= rho else exp(1 - rho / c)          (0 if c = 0)
        BLEU = BP * exp((1/4) sum_n log p_n)

    BLEU is 0 when no n-gram matches at all, or when some order has no hypothesis n-gram
    (``T_n = 0``: the whole corpus shorter than 4 words), as in sacreBLEU.
"""

from __future__ import annotations

import math
import re
import string
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


def _f_beta(totals: Sequence[Sequence[int]], beta: float) -> float:
    """chrF in ``[0, 1]`` from ``[(H_n, R_n, M_n)]``, averaging over the effective orders."""
    effective = [(m / h, m / r) for h, r, m in totals if h > 0 and r > 0]
    if not effective:
        return 0.0
    precision = sum(p for p, _ in effective) / len(effective)
    recall = sum(r for _, r in effective) / len(effective)
    if precision + recall == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * precision * recall / (b2 * precision + recall)


def _add(totals: list[list[int]], stats: Sequence[Sequence[int]]) -> None:
    for tot, stat in zip(totals, stats):
        for j in range(len(stat)):
            tot[j] += stat[j]


def chrf(hypotheses: Sequence[str], references: Sequence[str], order: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF in ``[0, 1]`` (multiply by 100 for sacreBLEU's scale)."""
    _check(hypotheses, references)
    totals = [[0, 0, 0] for _ in range(order)]
    for h, r in zip(hypotheses, references):
        _add(totals, chrf_statistics(h, r, order))
    return _f_beta(totals, beta)


def _check_multi(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    _check(hypotheses, references)
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not refs:
            raise ValueError(f"sentence {i + 1}: expected a list of one or more references, got {refs!r}")


def best_chrf_statistics(hypothesis: str, references: Sequence[str], order: int = 6,
                         beta: float = 2.0) -> list[tuple[int, int, int]]:
    """``chrf_statistics`` against the reference with the highest sentence chrF (the first
    of equals). Compared on the 0-100 scale sacreBLEU compares on, so that two references
    whose scores round to the same number there tie here too."""
    best, best_f = None, -1.0
    for ref in references:
        stats = chrf_statistics(hypothesis, ref, order)
        f = 100 * _f_beta(stats, beta)
        if f > best_f:
            best, best_f = stats, f
    return best


def chrf_multi(hypotheses: Sequence[str], references: Sequence[Sequence[str]], order: int = 6,
               beta: float = 2.0) -> float:
    """Corpus chrF in ``[0, 1]`` with ``references[i]`` the list of references of sentence ``i``."""
    _check_multi(hypotheses, references)
    totals = [[0, 0, 0] for _ in range(order)]
    for h, refs in zip(hypotheses, references):
        _add(totals, best_chrf_statistics(h, refs, order, beta))
    return _f_beta(totals, beta)


# ------------------------------------------------------------------ BLEU

# mteval-v13a's tokenisation, as sacreBLEU's default "13a" applies it: ASCII punctuation is cut
# off as a token of its own, except the apostrophe and hyphen (kept inside words: "l'aide",
# "peut-être") and the period and comma, which are cut off only where they do not sit in a
# number ("3.5", "1,000"); a hyphen after a digit is cut off ("3-4"). Non-ASCII punctuation
# ("«", "…") stays attached; words are then split at any Unicode whitespace (str.split), so the
# narrow no-break space U+202F that French puts before "!" and "?" separates words too.
_ALWAYS_SPLIT = re.compile("([" + re.escape("".join(sorted(set(string.punctuation) - set("'-.,")))) + "])")
_STOP_AFTER_NON_DIGIT = re.compile(r"([^0-9])([.,])")
_STOP_BEFORE_NON_DIGIT = re.compile(r"([.,])([^0-9])")
_HYPHEN_AFTER_DIGIT = re.compile(r"([0-9])(-)")
_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))


def tokenize_13a(text: str) -> list[str]:
    """The words of ``text`` under the 13a rules (see the comment above), trailing space dropped."""
    line = text.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, char in _ENTITIES:
        line = line.replace(entity, char)
    line = _ALWAYS_SPLIT.sub(r" \1 ", f" {line} ")
    line = _STOP_AFTER_NON_DIGIT.sub(r"\1 \2 ", line)   # each pattern in one left-to-right pass,
    line = _STOP_BEFORE_NON_DIGIT.sub(r" \1 \2", line)  # matches not overlapping, as mteval's
    line = _HYPHEN_AFTER_DIGIT.sub(r"\1 \2 ", line)
    return line.split()


def _word_ngrams(words: Sequence[str], order: int) -> Counter:
    """Counts of the word n-grams of ``words``, ``n = 1..order``, as tuples."""
    return Counter(tuple(words[i:i + n]) for n in range(1, order + 1) for i in range(len(words) - n + 1))


def bleu_statistics(hypothesis: str, references: Sequence[str], order: int = 4) -> list[int]:
    """``[|h|, rho, C_1..C_order, T_1..T_order]`` of one sentence (see the module docstring)."""
    hyp = tokenize_13a(hypothesis)
    ref_counts: Counter = Counter()
    ref_lengths = []
    for ref in references:
        words = tokenize_13a(ref)
        ref_lengths.append(len(words))
        for g, c in _word_ngrams(words, order).items():
            ref_counts[g] = max(ref_counts[g], c)
    rho = min(ref_lengths, key=lambda n: (abs(n - len(hyp)), n))  # closest, the shorter of equals
    matched, total = [0] * order, [0] * order
    for g, c in _word_ngrams(hyp, order).items():
        total[len(g) - 1] += c
        matched[len(g) - 1] += min(c, ref_counts[g])
    return [len(hyp), rho, *matched, *total]


def bleu_from_statistics(stats: Sequence[int], order: int = 4) -> float:
    """Corpus BLEU in ``[0, 1]`` from the summed ``bleu_statistics``, exp smoothing."""
    c, rho = stats[0], stats[1]
    matched, total = stats[2:2 + order], stats[2 + order:2 + 2 * order]
    if not any(matched) or not all(total):
        return 0.0
    halvings, log_p = 0, 0.0
    for m, t in zip(matched, total):
        if m == 0:
            halvings += 1
            log_p += math.log(1 / (2 ** halvings * t))
        else:
            log_p += math.log(m / t)
    bp = 1.0 if c >= rho else math.exp(1 - rho / c)  # c > 0 here: some n-gram matched
    return bp * math.exp(log_p / order)


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], order: int = 4) -> float:
    """Corpus BLEU in ``[0, 1]`` (sacreBLEU's ``BLEU()`` / 100) with ``references[i]`` the list of
    references of sentence ``i``."""
    _check_multi(hypotheses, references)
    totals = [0] * (2 + 2 * order)
    for h, refs in zip(hypotheses, references):
        for j, s in enumerate(bleu_statistics(h, refs, order)):
            totals[j] += s
    return bleu_from_statistics(totals, order)


def score(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """``{"exact_match", "char_accuracy", "chrf"}``, each in ``[0, 1]``."""
    return {
        "exact_match": exact_match(hypotheses, references),
        "char_accuracy": char_accuracy(hypotheses, references),
        "chrf": chrf(hypotheses, references),
    }


def score_multi(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"exact_match", "chrf", "bleu"}`` in ``[0, 1]`` with ``references[i]`` the references of
    sentence ``i``: a hypothesis is exact when it equals any of them."""
    _check_multi(hypotheses, references)
    return {
        "exact_match": sum(h in refs for h, refs in zip(hypotheses, references)) / len(references),
        "chrf": chrf_multi(hypotheses, references),
        "bleu": bleu(hypotheses, references),
    }


def references_by_source(sources: Sequence[str], references: Sequence[str]) -> dict[str, list[str]]:
    """The distinct references of each distinct source, both in the order they first appear:
    ``{"I love you.": ["Je t'aime.", "Je vous aime.", ...], ...}``."""
    _check(sources, references)
    groups: dict[str, list[str]] = {}
    for s, r in zip(sources, references):
        refs = groups.setdefault(s, [])
        if r not in refs:
            refs.append(r)
    return groups

"""Signals of a (new question, stored question) pair for the duplicate scorer: pure functions.

A question cosine alone misses what makes two near-identical questions different ("best phone
under 10000" vs "under 20000"; "why" vs "how"), and says nothing about the neighbourhood: a
stored question that is the new one's single closest match, well ahead of the next, is far more
likely the same question than one of ten equally close. The index measures the dense and lexical
signals and the neighbourhood; this module turns texts and token lists into the rest.

Column order is :data:`FEATURES`; the duplicate scorer (``qa_search.scoring.calibration``) is fitted on
these columns and stores their names, so a change here is detected when a calibration is loaded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np

#: The pair signals, in column order. ``cosine``: the two questions' cosine. ``lexical``:
#: normalised BM25 of the stored question for the new one (``qa_search.scoring.lexical``). ``jaccard``:
#: overlap of their stemmed content words; ``idf_jaccard``: the same weighted by idf.
#: ``unmatched_max`` / ``unmatched_min``: the idf mass of the words only one side has, as a
#: fraction of the pair's total (larger side, smaller side). ``numbers_differ``: 1 when the sets
#: of numbers written in the two differ. ``question_word_differs``: 1 when they open with different
#: question words (what/how/why/...). ``length_difference``: |word counts| apart, capped.
#: ``margin``: the pair's cosine minus the new question's best cosine with any *other* stored
#: question. ``rank``: the stored question's place among the new one's nearest questions (0 =
#: closest; :data:`RANK_DEPTH` = not among them).
FEATURES = (
    "cosine",
    "lexical",
    "jaccard",
    "idf_jaccard",
    "unmatched_max",
    "unmatched_min",
    "numbers_differ",
    "question_word_differs",
    "length_difference",
    "margin",
    "rank",
)

#: Nearest stored questions looked at for ``rank`` and ``margin``; farther ones rank this.
RANK_DEPTH = 20
#: ``length_difference`` is capped here (a long rant and a one-liner differ "a lot" either way).
LENGTH_CAP = 30

_QUESTION_WORDS = frozenset(
    "what how why which who whom whose where when is are am was were can could do does did "  # noqa: SIM905
    "should would will shall may might has have had".split()
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"\w+")


def question_word(text: str) -> str:
    """The question word a text opens with (lower case), or "" when it opens otherwise."""
    first = _WORD.search(text)
    word = first.group(0).lower() if first else ""
    return word if word in _QUESTION_WORDS else ""


def numbers(text: str) -> frozenset[str]:
    """The numbers written in ``text`` ("10,000" and "10000" stay different strings)."""
    return frozenset(_NUMBER.findall(text))


def text_features(
    text_a: str,
    text_b: str,
    tokens_a: Sequence[str],
    tokens_b: Sequence[str],
    idf: Callable[[str], float],
) -> tuple[float, float, float, float, float, float, float]:
    """The text-only signals of a pair, in :data:`FEATURES` order from ``jaccard`` to
    ``length_difference``. ``tokens_*`` are the stemmed content words (``lexical.tokenize``);
    ``idf(token)`` weighs a word (unknown words should weigh the most)."""
    sa, sb = set(tokens_a), set(tokens_b)
    union = sa | sb
    jac = len(sa & sb) / len(union) if union else 0.0
    w = {t: idf(t) for t in union}
    # fsum: exact, so the result does not follow the (per-process salted) order of a set
    total = math.fsum(w.values())
    if total > 0:
        shared = math.fsum(w[t] for t in sa & sb) / total
        only_a = math.fsum(w[t] for t in sa - sb) / total
        only_b = math.fsum(w[t] for t in sb - sa) / total
    else:
        shared = only_a = only_b = 0.0
    numbers_differ = float(numbers(text_a) != numbers(text_b))
    word_differs = float(question_word(text_a) != question_word(text_b))
    length = min(abs(len(text_a.split()) - len(text_b.split())), LENGTH_CAP)
    return jac, shared, max(only_a, only_b), min(only_a, only_b), numbers_differ, word_differs, float(length)


def rank_feature(position: int | None) -> float:
    """The ``rank`` signal: a stored question's place among the new one's nearest questions
    (0 = closest), :data:`RANK_DEPTH` when it is not among the first ``RANK_DEPTH``."""
    return float(RANK_DEPTH if position is None else min(position, RANK_DEPTH))


def best_other(scores: Sequence[float], position: int | None) -> float:
    """The best cosine in ``scores`` other than the one at ``position`` (0.0 when none)."""
    for i, s in enumerate(scores):
        if i != position:
            return float(s)
    return 0.0


def feature_rows(
    cosine: np.ndarray,
    lexical: np.ndarray,
    text: np.ndarray,
    best_other_cosine: np.ndarray,
    rank: np.ndarray,
) -> np.ndarray:
    """(n, len(FEATURES)) float64 from the measured pieces: cosine (n,), lexical (n,), the
    :func:`text_features` rows (n, 7), the new question's best other cosine (n,) and rank (n,)."""
    cosine = np.asarray(cosine, np.float64)
    text = np.asarray(text, np.float64).reshape(len(cosine), 7)
    margin = cosine - np.asarray(best_other_cosine, np.float64)
    return np.column_stack(
        [cosine, np.asarray(lexical, np.float64), text, margin, np.asarray(rank, np.float64)]
    )

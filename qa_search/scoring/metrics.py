"""Retrieval and classification metrics, as pure functions: no I/O, no index, no model.

Ranking metrics take one query's ranked ids (best first) and its set of relevant ids and return a
fraction in [0, 1]; average them over queries yourself. Pair metrics take scores and 0/1 labels.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import NamedTuple

import numpy as np


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the relevant ids found in the first k; 0 when nothing is relevant."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """1 / rank of the first relevant id within the first k, else 0."""
    for rank, item in enumerate(ranked[:k], 1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """nDCG@k with binary gains: sum of 1/log2(rank + 1) over relevant hits, divided by the same
    sum for an ideal ranking (min(|relevant|, k) relevant hits on top); 0 when nothing is relevant."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(r + 1) for r, item in enumerate(ranked[:k], 1) if item in relevant)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def semeval_average_precision(labels_in_system_order: Sequence[bool], cutoff: int = 10) -> float:
    """Average precision as SemEval-2016 Task 3's official scorer computes it.

    ``labels_in_system_order`` are one question's candidates' relevance, sorted by the system's
    score (descending, stable: ties keep the search engine's order). AP = (1/n) * sum of P@k over
    the ranks k <= cutoff holding a relevant candidate, n = relevant candidates in the top
    ``cutoff``. A question with no relevant candidate there scores 0 (and still counts in MAP).
    """
    hits, total = 0, 0.0
    for k, rel in enumerate(labels_in_system_order[:cutoff], 1):
        if rel:
            hits += 1
            total += hits / k
    return total / hits if hits else 0.0


def semeval_map(questions: Sequence[tuple[Sequence[float], Sequence[bool]]], cutoff: int = 10) -> float:
    """MAP over questions, each ``(system scores, relevance)`` for its candidates in search-engine
    order. Candidates are sorted by score, descending and stably, as the official scorer does."""
    if not questions:
        return 0.0
    aps = []
    for scores, labels in questions:
        order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
        aps.append(semeval_average_precision([bool(labels[i]) for i in order], cutoff))
    return sum(aps) / len(questions)


def _precision_recall_curve(scores: np.ndarray, labels: np.ndarray):
    """Precision, recall and threshold at every distinct score, from the highest down."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    # one point per distinct threshold: the last position of each run of tied scores
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp, fp, thr = tp[last], fp[last], s[last]
    positives = max(int(y.sum()), 1)
    return tp / (tp + fp), tp / positives, thr


def average_precision(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Area under the precision-recall curve as a step sum: sum over thresholds of
    (recall gain) x precision, tied scores forming one threshold. 0 when no label is positive."""
    labels = np.asarray(labels).astype(bool)
    if not labels.any():
        return 0.0
    precision, recall, _ = _precision_recall_curve(np.asarray(scores), labels)
    gains = np.diff(np.r_[0.0, recall])
    return float(np.sum(gains * precision))


class OperatingPoint(NamedTuple):
    """A score threshold and the precision and recall of "score >= threshold"."""

    threshold: float
    precision: float
    recall: float


def recall_at_precision(
    scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, min_precision: float
) -> OperatingPoint:
    """The threshold giving the highest recall whose precision is at least ``min_precision``.

    When no threshold reaches that precision, returns threshold +inf with recall 0 (and
    precision 1 by convention: nothing is flagged, so nothing is wrongly flagged).
    """
    precision, recall, thr = _precision_recall_curve(np.asarray(scores), np.asarray(labels))
    ok = np.nonzero(precision >= min_precision)[0]
    if not len(ok):
        return OperatingPoint(math.inf, 1.0, 0.0)
    best = ok[np.argmax(recall[ok])]
    return OperatingPoint(float(thr[best]), float(precision[best]), float(recall[best]))


def precision_recall_at(
    scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, threshold: float
) -> OperatingPoint:
    """Precision and recall of flagging every pair scoring at least ``threshold``."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    flagged = scores >= threshold
    tp = int((flagged & labels).sum())
    precision = tp / int(flagged.sum()) if flagged.any() else 1.0
    recall = tp / int(labels.sum()) if labels.any() else 0.0
    return OperatingPoint(float(threshold), precision, recall)

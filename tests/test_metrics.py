"""Metric functions against cases computed by hand."""

from __future__ import annotations

import math

import pytest

from qa_search.scoring.metrics import (
    average_precision,
    mrr_at_k,
    ndcg_at_k,
    precision_recall_at,
    recall_at_k,
    recall_at_precision,
    semeval_average_precision,
    semeval_map,
)

RANKED = ["a", "b", "c", "d", "e"]


def test_recall_at_k():
    assert recall_at_k(RANKED, {"b", "e"}, 1) == 0.0
    assert recall_at_k(RANKED, {"b", "e"}, 2) == 0.5
    assert recall_at_k(RANKED, {"b", "e"}, 5) == 1.0
    assert recall_at_k(RANKED, {"b", "z"}, 10) == 0.5
    assert recall_at_k(RANKED, set(), 5) == 0.0


def test_mrr():
    assert mrr_at_k(RANKED, {"c", "e"}) == pytest.approx(1 / 3)
    assert mrr_at_k(RANKED, {"e"}, k=4) == 0.0
    assert mrr_at_k(RANKED, {"a"}) == 1.0


def test_ndcg():
    # relevant at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5); ideal = 1 + 1/log2(3)
    want = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(RANKED, {"b", "d"}) == pytest.approx(want)
    assert ndcg_at_k(RANKED, {"a", "b"}) == pytest.approx(1.0)
    # a relevant id beyond the cut-off only raises the ideal
    assert ndcg_at_k(RANKED, {"a", "z"}, k=5) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(RANKED, set()) == 0.0


def test_semeval_ap_follows_the_official_scorer():
    # relevant at ranks 1, 3, 6: (1/1 + 2/3 + 3/6) / 3
    labels = [True, False, True, False, False, True, False, False, False, False]
    assert semeval_average_precision(labels) == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    # nothing relevant: AP is 0, not undefined
    assert semeval_average_precision([False] * 10) == 0.0
    # a relevant candidate below the cut-off does not count
    assert semeval_average_precision([False, True, True], cutoff=1) == 0.0


def test_semeval_map_counts_questions_without_relevant_candidates_and_sorts_stably():
    perfect = ([0.9, 0.1], [True, False])  # AP 1
    hopeless = ([0.5, 0.4], [False, False])  # AP 0, still in the mean
    tied = ([0.3, 0.3], [False, True])  # tie keeps search-engine order: relevant at rank 2
    assert semeval_map([perfect, hopeless, tied]) == pytest.approx((1 + 0 + 0.5) / 3)


def test_average_precision_by_hand():
    # sorted: 1, 0, 1, 0 -> precision at the positives 1/1 and 2/3
    scores = [0.9, 0.8, 0.7, 0.1]
    labels = [1, 0, 1, 0]
    assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3) / 2)
    # all tied: one threshold, precision 0.5 for the whole recall
    assert average_precision([0.5] * 4, labels) == pytest.approx(0.5)
    assert average_precision(scores, [0, 0, 0, 0]) == 0.0


def test_recall_at_precision_picks_the_highest_recall_meeting_the_target():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    labels = [1, 1, 0, 1, 0]
    point = recall_at_precision(scores, labels, 0.9)
    assert point.threshold == pytest.approx(0.8)
    assert (point.precision, point.recall) == pytest.approx((1.0, 2 / 3))
    point = recall_at_precision(scores, labels, 0.75)
    assert point.threshold == pytest.approx(0.6)
    assert (point.precision, point.recall) == pytest.approx((0.75, 1.0))
    unreachable = recall_at_precision([0.9, 0.1], [0, 1], 0.99)
    assert unreachable.recall == 0.0 and math.isinf(unreachable.threshold)


def test_precision_recall_at_threshold():
    point = precision_recall_at([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 1], 0.7)
    assert (point.precision, point.recall) == pytest.approx((2 / 3, 2 / 3))
    nothing = precision_recall_at([0.1], [1], 0.5)
    assert (nothing.precision, nothing.recall) == (1.0, 0.0)

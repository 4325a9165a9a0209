"""Calibrated duplicate verdicts and the evaluation of an index."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FakeEmbedder

from qa_search import ForumIndex, IndexConfig, Thread
from qa_search.calibration import Calibration, feature_matrix, fit_calibration
from qa_search.evaluation import LabelledPair, LabelledQuery, evaluate_pairs, evaluate_queries, read_pairs
from qa_search.metrics import precision_recall_at


def _synthetic_pairs(n, seed):
    """Pairs whose signals are noisy functions of a hidden 0/1 label (30% positives)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    cos = np.clip(0.55 + 0.2 * y + 0.12 * rng.standard_normal(n), -1, 1)
    lex = np.clip(0.3 + 0.25 * y + 0.2 * rng.standard_normal(n), 0, 1)
    jac = np.clip(0.2 + 0.2 * y + 0.15 * rng.standard_normal(n), 0, 1)
    return feature_matrix(cos, lex, jac), y


def test_tiers_reach_their_target_precision_on_held_out_pairs():
    x, y = _synthetic_pairs(8000, seed=1)
    cal = fit_calibration(x, y, {"duplicate": 0.9, "related": 0.6})
    assert cal.tiers["duplicate"] > cal.tiers["related"]
    x_new, y_new = _synthetic_pairs(8000, seed=2)  # never seen by the fit
    p = cal.probability(x_new)
    for tier, target in (("duplicate", 0.9), ("related", 0.6)):
        point = precision_recall_at(p, y_new, cal.tiers[tier])
        assert point.precision >= target - 0.03, (tier, point)
        assert point.recall > 0.1
    # the probabilities are calibrated: predicted and observed rates agree within bins
    for lo, hi in ((0.1, 0.3), (0.4, 0.6), (0.7, 0.9)):
        inside = (p >= lo) & (p < hi)
        assert lo - 0.07 <= y_new[inside].mean() <= hi + 0.07


def test_calibration_is_monotone_in_every_signal():
    x, y = _synthetic_pairs(3000, seed=3)
    cal = fit_calibration(x, y)
    grid = np.linspace(0, 1, 21)
    for base in ([0.6, 0.3, 0.2], [0.8, 0.6, 0.4]):
        for col in range(3):
            signals = np.tile(base, (len(grid), 1))
            signals[:, col] = grid
            p = cal.probability(feature_matrix(*signals.T))
            assert np.all(np.diff(p) >= 0), (base, col)
    tiers = [cal.tier(v) for v in np.linspace(0, 1, 101)]
    order = {None: 0, "related": 1, "duplicate": 2}
    assert [order[t] for t in tiers] == sorted(order[t] for t in tiers)


def test_calibration_round_trips_and_refuses_one_sided_labels():
    x, y = _synthetic_pairs(500, seed=4)
    cal = fit_calibration(x, y)
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_allclose(back.probability(x), cal.probability(x))
    with pytest.raises(ValueError, match="both kinds"):
        fit_calibration(x, np.zeros(len(x)))


THREADS = [
    Thread("a1", "how do I stop panic attacks at work"),
    Thread("a2", "stopping panic attacks while at work"),
    Thread("a3", "panic attacks at my work place what to do"),
    Thread("b1", "my partner and I fight about money"),
    Thread("b2", "fighting with my partner over money"),
    Thread("c1", "cannot sleep because my mind races"),
    Thread("c2", "mind racing at night and no sleep"),
    Thread("d1", "grief after losing my dog"),
    Thread("e1", "my teenager refuses to go to school"),
    Thread("f1", "how to tell my boss about my depression"),
]
GROUPS = [{"a1", "a2", "a3"}, {"b1", "b2"}, {"c1", "c2"}]


def _labelled_pairs():
    ids = [t.id for t in THREADS]
    return [(a, b, int(any({a, b} <= g for g in GROUPS))) for i, a in enumerate(ids) for b in ids[i + 1 :]]


def test_index_calibration_drives_duplicate_verdicts_and_is_saved(tmp_path):
    emb = FakeEmbedder()
    index = ForumIndex(emb, IndexConfig())
    index.upsert(THREADS)
    # uncalibrated: raw cosines, no probability, and the index says so
    assert index.calibration is None
    hit = index.find_duplicates("panic attacks at work", threshold=0.0, k=1)[0]
    assert hit.probability is None and hit.tier is None
    assert index.duplicate_cutoff()[1] == "cosine"

    pairs = _labelled_pairs()
    cal = index.calibrate([(a, b) for a, b, _ in pairs], [y for *_, y in pairs], {"duplicate": 0.9})
    assert set(cal.tiers) == {"duplicate"}
    scores = index.pair_scores([(a, b) for a, b, _ in pairs])
    assert np.all((scores >= 0) & (scores <= 1))
    dups = index.find_duplicates("stop panic attacks at work", k=3)
    assert dups and dups[0].thread_id.startswith("a")
    assert all(d.tier == "duplicate" and d.probability >= cal.tiers["duplicate"] for d in dups)
    assert [d.probability for d in dups] == sorted((d.probability for d in dups), reverse=True)

    index.save(tmp_path / "ix")
    back = ForumIndex.load(tmp_path / "ix", embedder=emb)
    assert back.calibration == cal
    assert back.find_duplicates("stop panic attacks at work", k=3) == dups


def test_evaluate_queries_drops_the_query_itself():
    emb = FakeEmbedder()
    index = ForumIndex(emb, IndexConfig())
    index.upsert(THREADS)
    queries = [LabelledQuery("a1", THREADS[0].question_text, frozenset({"a2", "a3"}))]
    got = evaluate_queries(index, queries)
    assert got["queries"] == 1
    assert set(got) == {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "queries"}
    # a1 itself ranks first but is not counted; both duplicates are in the top 10
    assert got["recall@10"] == 1.0 and got["recall@1"] == 0.5
    assert all(0 <= got[k] <= 1 for k in got if k != "queries")


def test_evaluate_pairs_reports_ap_and_the_threshold_in_use(tmp_path):
    index = ForumIndex(FakeEmbedder(), IndexConfig(duplicate_threshold=0.5))
    index.upsert(THREADS)
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(json.dumps({"id1": a, "id2": b, "label": y}) + "\n" for a, b, y in _labelled_pairs())
    )
    pairs = read_pairs(path)
    assert pairs[0] == LabelledPair("a1", "a2", 1)
    got = evaluate_pairs(index, pairs)
    assert got["scorer"] == "cosine" and got["threshold"] == 0.5
    assert 0 < got["ap"] <= 1 and 0 <= got["recall_at_precision_0.9"] <= 1
    assert got["positives"] == 5 and got["pairs"] == 45

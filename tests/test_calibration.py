"""Calibrated duplicate verdicts and the evaluation of an index."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import FakeEmbedder, labelled_pairs

from qa_search import ForumIndex, IndexConfig, Thread
from qa_search.errors import DumpFormatError, QASearchError
from qa_search.scoring.calibration import (
    BOOSTED,
    COSINE,
    Calibration,
    RerankerBlend,
    fit_boosted,
    fit_calibration,
    fit_reranker_blend,
    group_folds,
)
from qa_search.scoring.metrics import average_precision, precision_recall_at
from qa_search.scoring.pairs import FEATURES, feature_rows
from qa_search.tools.evaluation import (
    LabelledPair,
    LabelledQuery,
    evaluate_pairs,
    evaluate_queries,
    read_pairs,
    read_queries,
)


def _synthetic_pairs(n, seed):
    """Pair signals that are noisy functions of a hidden 0/1 label (30% positives), in
    pairfeatures.FEATURES order; the label also flips numbers_differ off, like real duplicates."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    cos = np.clip(0.55 + 0.2 * y + 0.12 * rng.standard_normal(n), -1, 1)
    lex = np.clip(0.3 + 0.25 * y + 0.2 * rng.standard_normal(n), 0, 1)
    jac = np.clip(0.2 + 0.2 * y + 0.15 * rng.standard_normal(n), 0, 1)
    idf_jac = np.clip(jac + 0.05 * rng.standard_normal(n), 0, 1)
    only = np.clip(1 - idf_jac - 0.1 * rng.random((2, n)), 0, 1)
    numbers = (rng.random(n) < np.where(y == 1, 0.02, 0.3)).astype(float)
    word = (rng.random(n) < 0.2).astype(float)
    length = rng.integers(0, 10, n).astype(float)
    text = np.column_stack([jac, idf_jac, only.max(0), only.min(0), numbers, word, length])
    other = np.clip(cos - 0.05 * y + 0.08 * rng.standard_normal(n), -1, 1)
    rank = np.where(y == 1, rng.integers(0, 3, n), rng.integers(0, 21, n)).astype(float)
    return feature_rows(cos, lex, text, other, rank), y


def test_tiers_reach_their_target_precision_on_held_out_pairs():
    x, y = _synthetic_pairs(6000, seed=1)
    cal = fit_calibration(x, y, {"duplicate": 0.9, "related": 0.6})
    assert cal.scorer == BOOSTED
    assert cal.tiers["duplicate"] > cal.tiers["related"]
    x_new, y_new = _synthetic_pairs(6000, seed=2)  # never seen by the fit
    p = cal.probability(x_new)
    for tier, target in (("duplicate", 0.9), ("related", 0.6)):
        point = precision_recall_at(p, y_new, cal.tiers[tier])
        assert point.precision >= target - 0.03, (tier, point)
        assert point.recall > 0.1
    # the probabilities are calibrated: predicted and observed rates agree within bins
    for lo, hi in ((0.1, 0.3), (0.4, 0.6), (0.7, 0.9)):
        inside = (p >= lo) & (p < hi)
        assert lo - 0.07 <= y_new[inside].mean() <= hi + 0.07
    # and the combined scorer beats the cosine alone on unseen pairs
    assert average_precision(p, y_new) > average_precision(x_new[:, 0], y_new) + 0.05


def test_calibration_is_monotone_in_the_cosine_and_in_its_score():
    x, y = _synthetic_pairs(3000, seed=3)
    cal = fit_calibration(x, y)
    grid = np.linspace(-0.2, 1, 61)
    for row in x[:40]:
        rows = np.tile(row, (len(grid), 1))
        rows[:, 0] = grid
        assert np.all(np.diff(cal.probability(rows)) >= 0), row
    scores = cal.score(x)
    order = np.argsort(scores)
    assert np.all(np.diff(cal.probability(x)[order]) >= 0)
    tiers = [cal.tier(v) for v in np.linspace(0, 1, 101)]
    rank = {None: 0, "related": 1, "duplicate": 2}
    assert [rank[t] for t in tiers] == sorted(rank[t] for t in tiers)


def test_the_scorer_with_the_better_out_of_fold_ap_is_kept():
    x, y = _synthetic_pairs(400, seed=5)
    cal = fit_calibration(x, y)
    r = cal.report
    assert r["ap_out_of_fold"] == max(r["ap_out_of_fold_boosted"], r["ap_out_of_fold_cosine"])
    assert cal.scorer == (BOOSTED if r["ap_out_of_fold_boosted"] > r["ap_out_of_fold_cosine"] else COSINE)
    # with only the cosine to choose from, the probability is a rising function of the cosine
    only = fit_calibration(x, y, scorers=(COSINE,))
    assert only.scorer == COSINE and only.trees is None
    assert np.all(np.diff(only.probability(x[np.argsort(x[:, 0])])) >= 0)


def test_exported_trees_score_exactly_as_scikit_learn():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    from qa_search.scoring import calibration

    x, y = _synthetic_pairs(1500, seed=6)
    trees = fit_boosted(x, y, seed=0)
    with threadpool_limits(1):  # as fit_boosted does: many threads only slow a small fit
        model = HistGradientBoostingClassifier(
            max_iter=calibration.BOOST_ROUNDS,
            learning_rate=calibration.BOOST_LEARNING_RATE,
            max_leaf_nodes=calibration.BOOST_MAX_LEAVES,
            monotonic_cst=[1] + [0] * (x.shape[1] - 1),
            random_state=0,
        ).fit(x, y)
    np.testing.assert_allclose(trees.raw(x), model.decision_function(x), rtol=1e-9, atol=1e-9)


def test_folds_keep_groups_together_and_balanced():
    groups = [i // 3 for i in range(300)]  # 100 groups of 3 pairs
    fold = group_folds(groups, 300, 5, seed=0)
    for g in range(100):
        assert len(set(fold[g * 3 : g * 3 + 3].tolist())) == 1
    assert np.bincount(fold, minlength=5).tolist() == [60] * 5


def test_calibration_round_trips_and_refuses_bad_input():
    x, y = _synthetic_pairs(500, seed=4)
    cal = fit_calibration(x, y)
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_allclose(back.probability(x), cal.probability(x))
    with pytest.raises(ValueError, match="both kinds"):
        fit_calibration(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="feature matrix"):
        fit_calibration(x[:, :4], y)
    old = {
        "features": ["cosine", "lexical"],
        "coef": [1.0, 2.0],
        "intercept": 0.0,
        "tiers": {},
        "targets": {},
    }
    with pytest.raises(ValueError, match="calibrate"):
        Calibration.from_dict(old)


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
    return labelled_pairs(THREADS, GROUPS)


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
    queries = [LabelledQuery("a1", THREADS[0].question_text, frozenset({"a2", "a3"})),
               # nothing relevant besides itself: cannot be scored, so it is left out, not a 0
               LabelledQuery("a2", THREADS[1].question_text, frozenset({"a2"}))]
    got = evaluate_queries(index, queries)
    assert got["queries"] == 1 and got["skipped_queries"] == 1
    assert set(got) == {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "queries",
                        "skipped_queries"}
    # a1 itself ranks first but is not counted; both duplicates are in the top 10
    assert got["recall@10"] == 1.0 and got["recall@1"] == 0.5
    assert all(0 <= got[k] <= 1 for k in got if not k.endswith("queries"))
    with pytest.raises(QASearchError, match="no query has a relevant thread besides itself"):
        evaluate_queries(index, queries[1:])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query_id": "q", "text": "hi"}', "missing required field 'relevant_ids'"),
        ('{"query_id": "q", "text": "  ", "relevant_ids": ["a"]}', "'text' must be a non-empty string"),
        ('{"query_id": "q", "text": 7, "relevant_ids": ["a"]}', "'text' must be a non-empty string"),
        ('{"query_id": "q", "text": "hi", "relevant_ids": "a2"}', "'relevant_ids' must be a list"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_a_bad_query_line_is_named_by_its_line_number(tmp_path, line, message):
    path = tmp_path / "queries.jsonl"
    good = json.dumps({"query_id": "a1", "text": "How do I sleep?", "relevant_ids": ["a2", 3]})
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(DumpFormatError, match=f"line 3: {message}"):
        read_queries(path)
    path.write_text(good + "\n")
    assert read_queries(path) == [LabelledQuery("a1", "How do I sleep?", frozenset({"a2", "3"}))]


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


def test_pair_features_measure_the_neighbourhood_exactly():
    emb = FakeEmbedder()
    index = ForumIndex(emb, IndexConfig())
    index.upsert(THREADS)
    ids = [t.id for t in THREADS]
    vecs = emb.encode([t.question_text for t in THREADS])
    pairs = [(a, b) for a in ids for b in ids if a != b]
    x = index.pair_features(pairs)
    col = {name: i for i, name in enumerate(FEATURES)}
    for row, (a, b) in zip(x, pairs, strict=True):
        ia, ib = ids.index(a), ids.index(b)
        cos = vecs[[i for i in range(len(ids)) if i != ia]] @ vecs[ia]
        others = [ids[i] for i in range(len(ids)) if i != ia]
        order = [others[i] for i in np.argsort(-cos, kind="stable")]
        assert row[col["cosine"]] == pytest.approx(float(vecs[ia] @ vecs[ib]), abs=1e-5)
        assert row[col["rank"]] == order.index(b)
        best_other = max(float(vecs[ia] @ vecs[ids.index(t)]) for t in others if t != b)
        assert row[col["margin"]] == pytest.approx(row[col["cosine"]] - best_other, abs=1e-5)


def test_an_old_calibration_is_dropped_with_a_warning(tmp_path, caplog):
    emb = FakeEmbedder()
    index = ForumIndex(emb, IndexConfig())
    index.upsert(THREADS)
    pairs = _labelled_pairs()
    index.calibrate([(a, b) for a, b, _ in pairs], [y for *_, y in pairs])
    snap = index.save(tmp_path / "ix")
    old = {
        "features": ["cosine"],
        "coef": [9.0],
        "intercept": -7.0,
        "tiers": {"duplicate": 0.9},
        "targets": {},
    }
    (snap / "calibration.json").write_text(json.dumps(old))
    with caplog.at_level("WARNING"):
        back = ForumIndex.load(tmp_path / "ix", embedder=emb, verify=False)
    assert back.calibration is None
    assert "calibrate" in caplog.text
    assert back.find_duplicates(THREADS[0].question_text, k=1)[0].probability is None


def test_cli_eval_and_calibrate_on_a_built_index(tmp_path, monkeypatch):
    import sys

    from click.testing import CliRunner
    from conftest import SAMPLE_DUMP, SAMPLE_GROUPS

    from qa_search import read_dump
    from qa_search.cli import main
    from qa_search.operations.lifecycle import current_model
    from qa_search.storage.generations import current_generation, list_generations
    from qa_search.tools.evaluation import RANKING_METRICS

    fake = lambda name=None, **_options: FakeEmbedder()  # noqa: E731
    for module in ("qa_search.operations.lifecycle", "qa_search.embedding.loading"):
        monkeypatch.setattr(sys.modules[module], "load_embedder", fake)
    cli, ix = CliRunner(), str(tmp_path / "ix")
    assert cli.invoke(main, ["build", str(SAMPLE_DUMP), "--index", ix, "-q"]).exit_code == 0
    threads = {t.id: t for t in read_dump(SAMPLE_DUMP)}
    groups = [set(g) for g in json.loads(SAMPLE_GROUPS.read_text())]

    # eval --queries: each group's first thread asks for the others
    queries = tmp_path / "queries.jsonl"
    rows = [{"query_id": g[0], "text": threads[g[0]].question_text, "relevant_ids": g[1:]}
            for g in map(sorted, groups)]
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = cli.invoke(main, ["eval", ix, "--queries", str(queries), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert set(got) == {*RANKING_METRICS, "queries", "skipped_queries"} and got["queries"] == len(groups)
    assert got == evaluate_queries(ForumIndex.load(ix, FakeEmbedder()), read_queries(queries))
    assert 0 < got["recall@10"] <= 1 and "warning" not in r.stderr
    text = cli.invoke(main, ["eval", ix, "--queries", str(queries)]).stdout
    assert f"ndcg@10  {got['ndcg@10']}" in text
    # a relevant id the index does not hold is a miss, and the operator is told
    rows[0]["relevant_ids"] = ["no-such-thread"]
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = cli.invoke(main, ["eval", ix, "--queries", str(queries), "--json"])
    assert r.exit_code == 0 and "1 relevant id(s) are not in the index" in r.stderr
    assert "'no-such-thread'" in r.stderr and json.loads(r.stdout)["queries"] == len(groups)

    # eval --pairs before and after calibrate, on all pairs of the grouped threads and 20 others
    grouped = set().union(*groups)
    members = sorted(grouped) + [t for t in sorted(threads) if t not in grouped][:20]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(
        json.dumps({"id1": a, "id2": b, "label": y}) + "\n"
        for a, b, y in labelled_pairs([threads[i] for i in members], groups)
    ))
    before = json.loads(cli.invoke(main, ["eval", ix, "--pairs", str(pairs), "--json"]).stdout)
    assert before["scorer"] == "cosine" and before["positives"] > 0
    r = cli.invoke(main, ["calibrate", ix, "--pairs", str(pairs), "--keep", "1", "--json"])
    assert r.exit_code == 0, r.output
    cal = json.loads(r.stdout)
    assert cal["generation"] == 2 == current_generation(ix) and cal["pruned"] == [1]
    assert list_generations(ix) == [2] and set(cal["tiers"]) <= {"duplicate", "related"}
    assert current_model(ix)["name"] == "fake-bow"
    after = json.loads(cli.invoke(main, ["eval", ix, "--pairs", str(pairs), "--json"]).stdout)
    assert after["scorer"] != "cosine" and after["pairs"] == before["pairs"]
    # bad input: one of --queries / --pairs exactly; an unknown id publishes nothing
    assert cli.invoke(main, ["eval", ix]).exit_code == 2
    assert cli.invoke(main, ["eval", ix, "--queries", str(queries), "--pairs", str(pairs)]).exit_code == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id1": "t001", "id2": "zzz", "label": 1}\n{"id1": "t001", "id2": "t002", "label": 0}\n')
    r = cli.invoke(main, ["calibrate", ix, "--pairs", str(bad)])
    assert r.exit_code == 1 and "no thread with id 'zzz'" in r.output and current_generation(ix) == 2


# -- blending a reranker with the calibrated scorer ----------------------------------------


def _blend_inputs(n, seed, reranker_informative):
    """Out-of-fold calibrated probabilities and reranker probabilities of n pairs: each a noisy
    reading of the hidden label; the reranker's noise is independent of the calibrated one's,
    or (not informative) it is noise alone."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    cal = 1 / (1 + np.exp(-(2.0 * (y - 0.5) * 2 + 1.5 * rng.standard_normal(n))))
    signal = 2.0 * (y - 0.5) * 2 if reranker_informative else 0.0
    rr = 1 / (1 + np.exp(-(signal + 1.5 * rng.standard_normal(n))))
    return cal, rr, y


def test_a_reranker_that_adds_evidence_is_blended_and_its_tiers_hold_out_of_fold():
    cal, rr, y = _blend_inputs(3000, 0, reranker_informative=True)
    blend = fit_reranker_blend(cal[:2000], rr[:2000], y[:2000], {"duplicate": 0.9, "related": 0.6}, "d" * 64)
    assert isinstance(blend, RerankerBlend)
    assert blend.scorer == "combined" and min(blend.coef) > 0 and blend.uses_reranker
    r = blend.report
    assert r["ap_out_of_fold_combined"] > max(r["ap_out_of_fold_calibrated"], r["ap_out_of_fold_reranker"])
    # on pairs it never saw, the blend ranks better than either input and its tiers keep their aim
    p = blend.probability(cal[2000:], rr[2000:])
    assert average_precision(p, y[2000:]) > average_precision(cal[2000:], y[2000:])
    assert average_precision(p, y[2000:]) > average_precision(rr[2000:], y[2000:])
    flagged = p >= blend.tiers["duplicate"]
    assert flagged.sum() > 20 and y[2000:][flagged].mean() >= 0.85
    assert blend.tier(float(p.max())) == "duplicate"


def test_a_reranker_that_adds_nothing_leaves_the_verdicts_to_the_calibrated_scorer():
    cal, rr, y = _blend_inputs(2000, 1, reranker_informative=False)
    blend = fit_reranker_blend(cal, rr, y, {"duplicate": 0.9, "related": 0.6}, "e" * 64)
    assert isinstance(blend, RerankerBlend)
    assert blend.scorer == "calibrated" and blend.coef[1] == 0 and not blend.uses_reranker
    # reading the calibrated probability alone, it needs no reranker output
    np.testing.assert_allclose(
        blend.probability(cal[:5], None), 1 / (1 + np.exp(-(blend.coef[0] * np.log(cal[:5] / (1 - cal[:5]))
                                                             + blend.intercept)))
    )


def test_a_blend_needs_enough_unseen_pairs_of_each_class_and_round_trips():
    cal, rr, y = _blend_inputs(60, 2, reranker_informative=True)
    few = np.zeros(60, int)
    few[:5] = 1
    why = fit_reranker_blend(cal, rr, few, {"duplicate": 0.9}, "f" * 64)
    assert isinstance(why, str) and "5 duplicates" in why and "at least 10" in why
    cal, rr, y = _blend_inputs(2000, 3, reranker_informative=True)
    blend = fit_reranker_blend(cal, rr, y, {"duplicate": 0.9, "related": 0.6}, "a" * 64)
    assert isinstance(blend, RerankerBlend)
    calibration = fit_calibration(*_synthetic_pairs(400, 0))
    with_blend = replace(calibration, reranker_blend=blend)
    back = Calibration.from_dict(json.loads(json.dumps(with_blend.to_dict())))
    assert back.reranker_blend == blend and back == with_blend
    assert back.blend_for("a" * 64) == blend and back.blend_for("b" * 64) is None
    assert calibration.blend_for("a" * 64) is None
    bad = with_blend.to_dict()
    bad["reranker_blend"]["scorer"] = "magic"
    with pytest.raises(ValueError, match="unknown reranker blend scorer"):
        Calibration.from_dict(bad)

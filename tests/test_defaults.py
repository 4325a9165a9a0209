"""The search defaults: the per-query lexical weight, exactness with it, old snapshots keeping
the settings they were built with, and the paraphrase set benchmarks/defaults.py reads."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeEmbedder
from test_hybrid import _corpus, assert_search_ranks
from test_index import brute_force_score

from qa_search import ForumIndex, IndexConfig, Thread
from qa_search.index.config import RECORDED_BEFORE
from qa_search.scoring.fusion import LEXICAL_MODES, query_lexical_weight
from qa_search.storage.generations import resolve_snapshot

ROOT = Path(__file__).resolve().parent.parent
PARAPHRASES = ROOT / "benchmarks" / "data" / "counselchat_paraphrases.jsonl"
COUNSELCHAT = ROOT.parent / "shared" / "data" / "counselchat" / "threads.jsonl.gz"


# -- the per-query weight ------------------------------------------------------------------


def test_fixed_weight_ignores_the_query():
    for top in (0.0, 0.3, 1.0):
        assert query_lexical_weight(0.7, "fixed", top) == 0.7
    np.testing.assert_array_equal(query_lexical_weight(0.7, "fixed", np.array([0.0, 0.5, 1.0])), [0.7] * 3)


def test_coverage_weight_is_monotone_and_bounded():
    tops = np.linspace(-0.5, 1.5, 81)
    for lw in (0.0, 0.3, 1.0, 2.5):
        got = np.array([query_lexical_weight(lw, "coverage", t) for t in tops])
        assert np.all(np.diff(got) >= 0)  # a better lexical match never lowers the weight
        assert got.min() >= 0 and got.max() <= lw
        assert query_lexical_weight(lw, "coverage", 1.0) == lw
        assert query_lexical_weight(lw, "coverage", 0.0) == 0.0
        # an array is the scalars elementwise
        np.testing.assert_array_equal(query_lexical_weight(lw, "coverage", tops), got)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="lexical mode must be one of fixed, coverage"):
        query_lexical_weight(1.0, "adaptive", 0.5)
    with pytest.raises(ValueError, match="lexical_mode must be one of"):
        IndexConfig(lexical_mode="adaptive")
    assert set(LEXICAL_MODES) == {"fixed", "coverage"}


# -- exact search with it -----------------------------------------------------------------


@pytest.mark.parametrize("mode", LEXICAL_MODES)
@pytest.mark.parametrize("k", [1, 5, 50])
@pytest.mark.parametrize(
    ("filters", "keep"),
    [({}, lambda t: True), ({"category": "c2"}, lambda t: t.category == "c2")],
)
def test_search_with_the_query_weight_equals_brute_force(mode, k, filters, keep):
    threads, overrides, rng = _corpus(seed=3)
    emb = FakeEmbedder(dimension=16, overrides=overrides)
    cfg = IndexConfig(answer_weight=0.8, lexical_weight=0.6, lexical_mode=mode, vote_boost=0.1)
    index = ForumIndex(emb, cfg)
    index.upsert(threads)
    index.delete(["t0", "t1"])
    live = [t for t in threads[2:] if keep(t)]
    for _ in range(8):
        q = rng.standard_normal(16)
        q /= np.linalg.norm(q)
        text = " ".join(rng.choice(["anxiety", "sleep", "panic", "grief", "school", "zebra"], size=2))
        emb.overrides[text] = q
        lex = index.lexical_index()
        lex_scores = lex.scores(text)
        # the weight reads the best lexical match in the whole forum, filtered out or not
        best = max(float(lex_scores[lex.position[t.id]]) for t in threads[2:])
        weight = query_lexical_weight(cfg.lexical_weight, mode, best)
        want = {t.id: brute_force_score(t, overrides, q, cfg) + weight * float(lex_scores[lex.position[t.id]])
                for t in live}
        assert_search_ranks(index, text, k, filters, want)


def test_the_weight_is_read_over_the_whole_forum():
    # like idf, the best coverage is a statistic of the forum: a filtered search scores its
    # threads as score_threads does, whatever the filter leaves out
    emb = FakeEmbedder()
    index = ForumIndex(emb, IndexConfig(lexical_weight=1.0, lexical_mode="coverage"))
    index.upsert([Thread("a", "trouble sleeping after panic", category="x"),
                  Thread("b", "grief and loss of a parent", category="x"),
                  Thread("c", "panic night terrors sleeping", category="y")])
    text = "panic sleeping night terrors"
    lex = index.lexical_index()
    s = lex.scores(text)
    assert s[lex.position["c"]] > s[lex.position["a"]] > 0
    got = index.search(text, k=2, category="x")
    assert [h.thread_id for h in got] == ["a", "b"]
    np.testing.assert_allclose([h.score for h in got], index.score_threads(text, ["a", "b"]), atol=1e-6)
    # and the weight is the best coverage's share of lexical_weight, below the whole weight
    fixed = ForumIndex(emb, IndexConfig(lexical_weight=1.0, lexical_mode="fixed"))
    fixed.upsert(index.threads())
    gap = fixed.score_threads(text, ["a"])[0] - index.score_threads(text, ["a"])[0]
    assert gap == pytest.approx((1 - float(s[lex.position["c"]])) * float(s[lex.position["a"]]), abs=1e-5)


# -- old snapshots ----------------------------------------------------------------------------


def test_a_snapshot_keeps_the_settings_it_was_built_with(tmp_path):
    emb = FakeEmbedder()
    threads = [Thread("a", "panic attacks at work"), Thread("b", "cannot sleep at night"),
               Thread("c", "panic about sleep")]
    index = ForumIndex(emb)
    index.upsert(threads)
    index.save(tmp_path / "ix")
    mf = resolve_snapshot(tmp_path / "ix") / "manifest.json"
    manifest = json.loads(mf.read_text())
    assert manifest["config"]["lexical_mode"] == IndexConfig().lexical_mode
    assert ForumIndex.load(tmp_path / "ix", embedder=emb).config == IndexConfig()
    # written before lexical_mode existed (and before the lexical weight's default changed):
    # it loads with what it was built with, not with today's defaults
    for key in RECORDED_BEFORE:
        del manifest["config"][key]
    mf.write_text(json.dumps(manifest))
    old = ForumIndex.load(tmp_path / "ix", embedder=emb)
    assert (old.config.lexical_mode, old.config.lexical_weight) == ("fixed", 1.0)
    legacy = ForumIndex(emb, IndexConfig(lexical_mode="fixed", lexical_weight=1.0))
    legacy.upsert(threads)
    assert [(h.thread_id, h.score) for h in old.search("panic sleep", k=3)] == [
        (h.thread_id, h.score) for h in legacy.search("panic sleep", k=3)
    ]
    # a value it records is kept whatever the defaults
    manifest["config"]["lexical_weight"] = 0.4
    mf.write_text(json.dumps(manifest))
    assert ForumIndex.load(tmp_path / "ix", embedder=emb).config.lexical_weight == 0.4


def test_from_dict_fills_only_missing_settings_with_what_came_before():
    assert IndexConfig.from_dict({}).lexical_mode == "fixed"
    assert IndexConfig.from_dict({}).lexical_weight == 1.0
    cfg = IndexConfig.from_dict({"lexical_mode": "coverage", "lexical_weight": 0.2, "unknown": 1})
    assert (cfg.lexical_mode, cfg.lexical_weight) == ("coverage", 0.2)


# -- the paraphrase set -----------------------------------------------------------------------


def _paraphrases() -> list[dict]:
    return [json.loads(line) for line in PARAPHRASES.read_text("utf-8").splitlines() if line.strip()]


def test_paraphrases_are_well_formed():
    rows = _paraphrases()
    assert len(rows) >= 40
    for row in rows:
        assert set(row) == {"query", "thread_id"}
        assert isinstance(row["query"], str) and row["query"].strip()
        assert isinstance(row["thread_id"], str) and row["thread_id"].strip()
    assert len({r["query"] for r in rows}) == len(rows)


@pytest.mark.skipif(not COUNSELCHAT.is_file(), reason="../shared/data/counselchat is not beside the repo")
def test_every_paraphrase_names_a_counselchat_thread_in_other_words():
    with gzip.open(COUNSELCHAT, "rt", encoding="utf-8") as fh:
        threads = {r["thread_id"]: r for r in map(json.loads, fh)}
    for row in _paraphrases():
        assert row["thread_id"] in threads, row["thread_id"]
        thread = threads[row["thread_id"]]
        # a paraphrase, not the thread's own text
        query = row["query"].lower()
        assert query not in thread["title"].lower() and query not in thread["body"].lower()

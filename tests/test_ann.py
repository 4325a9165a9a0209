"""Index types: the size switch, HNSW+SQ8 against brute force, and tombstones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FakeEmbedder

from qa_search import ForumIndex, IndexConfig, Thread
from qa_search.scoring.ann import FLAT, HNSW_SQ8, VectorIndex, choose_index_type
from qa_search.scoring.fusion import brute_force_topk


def clustered(n: int, d: int = 48, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres, like embeddings of texts on a few topics."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def test_choose_index_type_is_exact_below_the_limit_and_hnsw_from_it():
    assert choose_index_type(0) == choose_index_type(49_999) == FLAT
    assert choose_index_type(50_000) == choose_index_type(10**7) == HNSW_SQ8
    assert choose_index_type(99, exact_limit=100) == FLAT
    assert choose_index_type(100, exact_limit=100) == HNSW_SQ8


def test_hnsw_sq8_recall_against_brute_force_on_seeded_data():
    x = clustered(5000)
    queries, base = x[:200], x[200:]
    ids = np.arange(1000, 1000 + len(base), dtype=np.int64)
    index = VectorIndex(x.shape[1], kind=HNSW_SQ8)
    index.add(ids, base)
    assert index.kind == HNSW_SQ8 and len(index) == len(base)
    _, found = index.search(queries, 10)
    _, truth = brute_force_topk(queries, base, 10)
    assert recall_at_k(found, ids[truth]) >= 0.97


def test_tombstoned_ids_are_never_returned_and_compaction_drops_them(tmp_path):
    x = clustered(600, seed=1)
    ids = np.arange(600, dtype=np.int64) * 7 + 3
    index = VectorIndex(x.shape[1], kind=HNSW_SQ8)
    index.add(ids, x)
    # remove every id the first 50 queries rank top-5, so the search must dig past them
    _, top = index.search(x[:50], 5)
    dead = np.unique(top)
    assert index.remove(np.concatenate([dead, [-5]])) == len(dead)  # an unknown id is not counted
    assert index.remove(dead[:3]) == 0  # already gone
    assert len(index) == 600 - len(dead) and index.tombstones == len(dead)
    scores, found = index.search(x[:50], 10)
    assert not np.isin(found, dead).any()
    assert (found >= 0).all() and (np.diff(scores, axis=1) <= 1e-6).all()
    _, deep = index.search(x[:1], 600)  # a search deeper than the live count: live ids only
    deep = deep[0][deep[0] >= 0].tolist()
    assert len(deep) == len(set(deep)) > 10
    assert set(deep) <= set(ids.tolist()) - set(dead.tolist())
    with pytest.raises(ValueError, match="tombstones"):
        index.save(tmp_path / "v.faiss")
    compact = index.rebuilt()
    assert compact.tombstones == 0 and len(compact) == len(index) and compact.kind == HNSW_SQ8
    compact.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss", x.shape[1])
    assert loaded.kind == HNSW_SQ8 and len(loaded) == len(index)
    assert not np.isin(loaded.search(x[:50], 10)[1], dead).any()


def test_rebuilt_converts_between_types_keeping_ids_and_vectors():
    x = clustered(300, seed=2)
    ids = np.arange(300, dtype=np.int64) + 10
    flat = VectorIndex(x.shape[1])
    flat.add(ids, x)
    flat.remove(ids[:20])
    hnsw = flat.rebuilt(HNSW_SQ8)
    got_ids, got = hnsw.vectors()
    assert got_ids.tolist() == ids[20:].tolist()
    assert np.abs(got - x[20:]).max() < 0.02  # 8-bit quantisation error only
    back = hnsw.rebuilt(FLAT)
    assert back.kind == FLAT and back.vectors()[0].tolist() == ids[20:].tolist()


def _forum(n: int, seed: int = 0) -> list[Thread]:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(300)]
    return [
        Thread(f"t{i}", " ".join(rng.choice(words, 8)), body=" ".join(rng.choice(words, 20)))
        for i in range(n)
    ]


def test_index_type_switch_keeps_forum_results_equal_to_exact_search(tmp_path):
    threads = _forum(400)
    queries = [" ".join(t.title.split()[:4]) for t in threads[:40]]
    exact = ForumIndex(FakeEmbedder(), IndexConfig())
    approx = ForumIndex(FakeEmbedder(), IndexConfig(exact_search_limit=100))
    for index in (exact, approx):
        index.upsert(threads)
        index.save(tmp_path / str(id(index)))
    manifest = json.loads(next((tmp_path / str(id(approx))).glob("generations/*/manifest.json")).read_text())
    assert manifest["index"]["types"] == {"questions": HNSW_SQ8, "answers": FLAT}  # 400 q, 0 a
    assert approx._questions.kind == HNSW_SQ8 and exact._questions.kind == FLAT
    loaded = ForumIndex.load(tmp_path / str(id(approx)), FakeEmbedder())
    assert loaded._questions.kind == HNSW_SQ8
    for want, got, again in zip(
        exact.search_many(queries, k=5),
        approx.search_many(queries, k=5),
        loaded.search_many(queries, k=5),
        strict=True,
    ):
        assert [h.thread_id for h in got] == [h.thread_id for h in again]
        assert np.allclose([h.score for h in got], [h.score for h in want], atol=0.02)
        # the same threads, allowing 8-bit rounding to swap two near-equal neighbours
        assert {h.thread_id for h in got[:3]} <= {h.thread_id for h in want}


def test_deleted_and_replaced_threads_never_come_back_from_hnsw(tmp_path):
    threads = _forum(300, seed=3)
    index = ForumIndex(FakeEmbedder(), IndexConfig(exact_search_limit=50))
    index.upsert(threads)
    index.save(tmp_path / "idx")  # now HNSW, which cannot remove ids
    assert index._questions.kind == HNSW_SQ8
    gone = [t.id for t in threads[:100]]
    assert index.delete(gone) == 100
    index.upsert([Thread("t100", "a completely new title about zebra crossings")])
    for t in threads[:120]:
        hits = index.search(t.title, k=10)
        assert not {h.thread_id for h in hits} & set(gone)
        for h in hits:
            if h.thread_id == "t100":
                assert h.title.startswith("a completely new")
    assert index._questions.tombstones == 101
    index.save(tmp_path / "idx")
    assert index._questions.tombstones == 0 and len(index._questions) == 200
    again = ForumIndex.load(tmp_path / "idx", FakeEmbedder())
    assert not {h.thread_id for h in again.search(threads[0].title, k=50)} & set(gone)

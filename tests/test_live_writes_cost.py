"""Live writes on a forum index: no rebuild, and the same scores as an index built from scratch.

An index that took many upserts, edits and deletes must rank and score exactly as one built
in one go over the threads it ends up holding (hybrid search, lexical weight > 0, boosts on),
before and after a save and load; and a write must leave the lexical index's main segment, and
every other structure over all threads, as it was.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FakeEmbedder

from qa_search import Answer, ForumIndex, IndexConfig, Thread
from qa_search.index.contents import IndexContents
from qa_search.scoring import lexical as lexical_module
from qa_search.storage.generations import resolve_snapshot

WORDS = [
    "anxiety", "sleep", "therapist", "money", "partner", "breakup", "panic", "work", "family",
    "anger", "grief", "school", "lonely", "exam", "sister", "mother", "job", "trust",
]  # fmt: skip
#: Hit scores are rounded to 6 decimals and lexical scores agree to float32 rounding of the same
#: sums (see tests/test_lexical.py), so scores of the two indexes agree to this.
TOLERANCE = 1e-5
CONFIG = IndexConfig(answer_weight=0.8, lexical_weight=0.5, solved_boost=0.1, vote_boost=0.2, vote_cap=10)


def _thread(rng: np.random.Generator, tid: str) -> Thread:
    title = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6))))
    answers = tuple(
        Answer(f"{tid}-a{j}", " ".join(rng.choice(WORDS, size=4)), score=int(rng.integers(0, 15)),
               accepted=bool(rng.random() < 0.3))
        for j in range(int(rng.integers(0, 3)))
    )
    return Thread(tid, title, answers=answers, score=int(rng.integers(0, 5)))


def _written(seed: int, writes: int) -> tuple[ForumIndex, dict[str, Thread], np.random.Generator]:
    """An index of 60 threads that then took ``writes`` random writes one at a time (new
    threads, question edits, answer-only edits, deletes), and the threads it should hold."""
    rng = np.random.default_rng(seed)
    held = {f"t{i}": _thread(rng, f"t{i}") for i in range(60)}
    index = ForumIndex(FakeEmbedder(dimension=32), CONFIG)
    index.upsert(list(held.values()))
    for step in range(writes):
        op = int(rng.integers(0, 4))
        if op == 0 or not held:
            new = _thread(rng, f"n{step}")
            index.upsert(new)
            held[new.id] = new
        elif op == 1:  # the question changes
            tid = str(rng.choice(sorted(held)))
            held[tid] = _thread(rng, tid)
            index.upsert(held[tid])
        elif op == 2:  # only the answers change: the question keeps its lexical slot
            tid = str(rng.choice(sorted(held)))
            old = held[tid]
            held[tid] = Thread(tid, old.title, answers=_thread(rng, tid).answers, score=old.score)
            index.upsert(held[tid])
        else:
            gone = [str(t) for t in rng.choice(sorted(held), size=min(2, len(held)), replace=False)]
            assert index.delete(gone) == len(gone)
            for tid in gone:
                del held[tid]
    return index, held, rng


def _fresh(held: dict[str, Thread]) -> ForumIndex:
    index = ForumIndex(FakeEmbedder(dimension=32), CONFIG)
    index.upsert(list(held.values()))
    return index


def _assert_same_scores(got: ForumIndex, want: ForumIndex, rng: np.random.Generator) -> None:
    ids = sorted(t.id for t in want.threads())
    assert sorted(t.id for t in got.threads()) == ids
    assert got.counts == want.counts
    for _ in range(12):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4))))
        for k in (1, 5, len(ids) + 5):
            a, b = got.search(text, k), want.search(text, k)
            assert [h.thread_id for h in a] == [h.thread_id for h in b]
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=TOLERANCE)
        got_scores, want_scores = got.score_threads(text, ids), want.score_threads(text, ids)
        np.testing.assert_allclose(got_scores, want_scores, atol=TOLERANCE)
    pairs = [(ids[i], ids[-1 - i]) for i in range(10)]
    np.testing.assert_allclose(got.pair_features(pairs), want.pair_features(pairs), atol=TOLERANCE)


@pytest.mark.parametrize("seed", [0, 1])
def test_search_after_many_writes_scores_as_a_fresh_build(seed):
    index, held, rng = _written(seed, writes=120)
    lexical = index.lexical_index()
    assert None in lexical.slot_ids  # removed questions' slots are still there, masked
    _assert_same_scores(index, _fresh(held), rng)


def test_search_after_writes_that_merge_segments_scores_as_a_fresh_build(monkeypatch):
    # every add folds the new documents into the main segment, whose dead slots stay masked
    monkeypatch.setattr(lexical_module, "_MERGE_FLOOR", 0)
    index, held, rng = _written(2, writes=80)
    _assert_same_scores(index, _fresh(held), rng)


def test_save_and_load_after_writes_keep_the_scores(tmp_path):
    index, held, rng = _written(3, writes=100)
    index.save(tmp_path / "ix")
    assert None not in index.lexical_index().slot_ids  # saving compacted it
    back = ForumIndex.load(tmp_path / "ix", FakeEmbedder(dimension=32))
    _assert_same_scores(back, _fresh(held), rng)
    # and the loaded index goes on taking writes in place
    new = _thread(rng, "after-load")
    back.upsert(new)
    held[new.id] = new
    back.delete([next(iter(held))])
    del held[next(iter(held))]
    _assert_same_scores(back, _fresh(held), rng)


def test_a_snapshot_with_a_first_format_lexical_file_is_rebuilt_once_on_load(tmp_path):
    index, held, rng = _written(4, writes=30)
    snap = index.save(tmp_path / "ix")
    ids = [t.id for t in index.threads()]
    # the first format: bm25s' precomputed weights, which cannot take writes
    with open(resolve_snapshot(snap) / "lexical.npz", "wb") as fh:
        np.savez(fh, data=np.zeros(0, np.float32), indices=np.zeros(0, np.int64),
                 indptr=np.zeros(1, np.int64), vocab=np.array("[]"), vocab_ids=np.zeros(0, np.int64),
                 doc_ids=np.array(json.dumps(ids)))
    back = ForumIndex.load(snap, FakeEmbedder(dimension=32), verify=False)
    lexical = back.lexical_index()
    assert sorted(lexical.position) == sorted(ids)
    back.upsert(_thread(rng, "x"))
    assert back.lexical_index() is lexical  # rebuilt at load, then updated in place
    held["x"] = back.get("x")
    _assert_same_scores(back, _fresh(held), rng)


def test_a_write_leaves_the_lexical_index_and_its_main_segment_in_place(monkeypatch):
    index, held, rng = _written(5, writes=0)
    lexical = index.lexical_index()
    main = (lexical._inv_indptr, lexical._inv_slots, lexical._inv_tf, lexical._fwd_terms)

    # nothing over all threads runs on a write or a search once the index exists
    def walk(self):
        raise AssertionError("a pass over every thread on the request path")

    monkeypatch.setattr(IndexContents, "_largest_boost", walk)
    index.upsert(Thread("new", "a zebra at work"))
    index.upsert(Thread("t3", "grief and trust", answers=(Answer("a", "talk to a therapist", score=9),)))
    index.delete(["t5", "t6"])
    assert index.search("zebra", k=3)
    assert index.lexical_index() is lexical
    assert all(a is b for a, b in zip(main, (lexical._inv_indptr, lexical._inv_slots, lexical._inv_tf,
                                             lexical._fwd_terms), strict=True))
    assert np.flatnonzero(lexical.scores("zebra")).tolist() == [lexical.position["new"]]
    assert "t5" not in lexical.position and lexical.position["new"] >= 60
    assert index.boost_bound() >= index.boost("t3") > 0


def test_an_answer_only_edit_keeps_the_question_slot():
    index, _, _ = _written(6, writes=0)
    lexical = index.lexical_index()
    slot = lexical.position["t7"]
    old = index.get("t7")
    index.upsert(Thread("t7", old.title, answers=(Answer("new", "a new answer about sleep"),)))
    assert lexical.position["t7"] == slot and len(lexical.slot_ids) == 60


def test_the_lexical_head_never_names_a_removed_question():
    index = ForumIndex(FakeEmbedder(dimension=32), IndexConfig(lexical_weight=1.0))
    index.upsert([Thread(str(i), f"sleep question {i}") for i in range(30)])
    index.delete([str(i) for i in range(0, 30, 2)])  # half the slots dead, all scoring 0 for "grief"
    lexical = index.lexical_index()
    scores = lexical.scores("grief")
    head = lexical.top(scores, 100)
    assert len(head) == len(lexical) == 15
    assert all(lexical.slot_ids[s] is not None for s in head.tolist())
    # the sparse head holds only what scores: no term of the query is indexed, so nothing
    assert len(lexical.query("grief").top(100)[0]) == 0
    slots, _ = lexical.query("sleep").top(100)
    assert sorted(lexical.slot_ids[s] for s in slots.tolist()) == sorted(str(i) for i in range(1, 30, 2))
    # k above the live count: every live thread, none twice, no removed one
    hits = index.search("grief", k=40)
    assert sorted(h.thread_id for h in hits) == sorted(str(i) for i in range(1, 30, 2))

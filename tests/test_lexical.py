"""The incremental lexical index: writes never rebuild it, and scores match a fresh build."""

from __future__ import annotations

import numpy as np
import pytest

from qa_search.scoring.analyser import check_language, tokenize
from qa_search.scoring.lexical import LexicalIndex

WORDS = [
    "anxiety", "sleep", "therapist", "money", "partner", "breakup", "panic", "work", "family",
    "anger", "grief", "school", "depression", "boyfriend", "explain", "mistakes", "trust",
    "lonely", "exam", "sister", "mother", "job", "move",
]  # fmt: skip
#: Fresh and incremental scores agree to float32 rounding of the same sums.
TOLERANCE = 1e-6


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(0, 9)))) for _ in range(n)]


def _aligned(index: LexicalIndex, fresh: LexicalIndex, query: str) -> tuple[np.ndarray, np.ndarray]:
    """Both indexes' scores for ``query``, in the fresh index's document order."""
    got = index.scores(query)
    ids = [d for d in fresh.slot_ids if d is not None]
    return np.array([got[index.position[d]] for d in ids]), fresh.scores(query)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_after_many_writes_equal_a_fresh_build_of_the_same_documents(seed):
    rng = np.random.default_rng(seed)
    docs = {f"d{i}": t for i, t in enumerate(_texts(rng, 60))}
    index = LexicalIndex.build(list(docs), list(docs.values()))
    for step in range(300):
        op = rng.integers(0, 3)
        if op == 0:  # add new documents
            new = {f"n{step}-{k}": t for k, t in enumerate(_texts(rng, int(rng.integers(1, 4))))}
            index.add(list(new), list(new.values()))
            docs.update(new)
        elif op == 1 and docs:  # edit one
            d = str(rng.choice(sorted(docs)))
            docs[d] = _texts(rng, 1)[0]
            index.add([d], [docs[d]])
        elif docs:  # delete some
            gone = list(rng.choice(sorted(docs), size=min(len(docs), 2), replace=False))
            assert index.remove(gone) == len(gone)
            for d in gone:
                del docs[d]
    fresh = LexicalIndex.build(list(docs), list(docs.values()))
    assert len(index) == len(fresh) == len(docs)
    for query in [*_texts(rng, 40), "anxiety anxiety", "zebra", ""]:
        got, want = _aligned(index, fresh, query)
        np.testing.assert_allclose(got, want, atol=TOLERANCE)
        assert not index.scores(query)[[s for s, d in enumerate(index.slot_ids) if d is None]].any()
    pairs = sorted(docs)[:20]
    queries = _texts(rng, 20)
    got, want = index.score_pairs(queries, pairs), fresh.score_pairs(queries, pairs)
    np.testing.assert_allclose(got, want, atol=TOLERANCE)


def test_a_write_touches_only_the_documents_written():
    # a write appends to the small segment: the main segment's arrays are the same objects
    index = LexicalIndex.build([f"d{i}" for i in range(50)], _texts(np.random.default_rng(3), 50))
    main = index._inv_slots
    index.add(["new"], ["panic at work"])
    index.remove(["d3"])
    assert index._inv_slots is main
    assert index.scores("panic work")[index.position["new"]] > 0


def test_a_removed_term_stops_counting_in_the_query_normalisation():
    index = LexicalIndex.build(["a", "b"], ["grief counselling", "exam stress"])
    index.remove(["a"])
    fresh = LexicalIndex.build(["b"], ["exam stress"])
    # "grief" no longer exists anywhere: the query's attainable maximum is the exam term alone
    assert index.scores("grief exam")[index.position["b"]] == pytest.approx(fresh.scores("grief exam")[0])


def test_save_compacts_and_load_round_trips(tmp_path):
    rng = np.random.default_rng(4)
    texts = _texts(rng, 40)
    index = LexicalIndex.build([f"d{i}" for i in range(40)], texts)
    index.remove([f"d{i}" for i in range(0, 40, 3)])
    index.add(["x", "d1"], ["lonely at school", "mother and sister"])
    index.save(tmp_path / "lex.npz")
    assert None not in index.slot_ids  # compacted
    back = LexicalIndex.load(tmp_path / "lex.npz")
    assert back.slot_ids == index.slot_ids
    for query in _texts(rng, 20):
        np.testing.assert_array_equal(back.scores(query), index.scores(query))
    # and it keeps taking writes after loading
    back.add(["y"], ["boyfriend trust"])
    assert back.scores("trust")[back.position["y"]] > 0


def test_an_index_saved_in_the_first_format_is_rebuilt_from_its_texts(tmp_path):
    # the first format held bm25s' precomputed weights, which cannot be updated
    path = tmp_path / "old.npz"
    np.savez(path, data=np.zeros(0, np.float32), indices=np.zeros(0, np.int64), indptr=np.zeros(1, np.int64),
             vocab=np.array("[]"), vocab_ids=np.zeros(0, np.int64), doc_ids=np.array('["a", "b"]'))
    with pytest.raises(ValueError, match="older lexical index"):
        LexicalIndex.load(path)
    back = LexicalIndex.load(path, texts={"a": "panic attacks", "b": "sleep"})
    assert back.scores("panic")[back.position["a"]] > 0


def test_the_analyser_language_is_a_setting():
    assert tokenize(["Les enfants jouent dans les jardins"], "french") == [["enfant", "jouent", "jardin"]]
    index = LexicalIndex.build(["a"], ["Les enfants jouent"], language="french")
    assert index.scores("enfant")[0] > 0
    with pytest.raises(ValueError, match="lexical language must be one of"):
        check_language("klingon")


@pytest.mark.parametrize("language", ["english", "french", "german", "spanish"])
def test_the_analyser_splits_and_stems_exactly_as_bm25s_does(language):
    import bm25s

    from qa_search.scoring.analyser import _stemmer

    texts = [
        "How do therapists handle their own mistakes?", "", "the", "C# and 🙂", "x" * 300,
        "Ünïcödé Wörds, ÇA VA? l'été dernier", "Les enfants jouent dans les jardins",
        "Die Kinder spielen in den Gärten", "Los niños juegan en los jardines", "don't I'm can't",
        "日本語のテキスト 2024 a1 b2c3", "running runs ran runner RUNNING",
    ]  # fmt: skip
    want = bm25s.tokenize(
        texts, stopwords=language, stemmer=_stemmer(language), return_ids=False, show_progress=False
    )
    assert tokenize(texts, language) == want
    assert tokenize(texts, language) == want  # and again, from the remembered stems


def _dense_head(index: LexicalIndex, query: str, m: int) -> tuple[list[float], float]:
    """The m best scores above 0 over every slot, best first, and the m-th (the bound on the
    rest): what the sparse query must reproduce."""
    scores = index.scores(query)
    best = np.sort(scores[scores > 0])[::-1][:m]
    return best.tolist(), float(best[-1]) if len(best) == m else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_sparse_query_equals_the_dense_scores_to_the_bit(seed):
    # a skewed vocabulary: a few words in most documents (as "what" is in 40% of Quora's), the
    # rest rare, so the head is found both from rare terms and from common terms alone
    rng = np.random.default_rng(seed)
    common, rare = WORDS[:3], WORDS[3:]

    def text() -> str:
        words = list(rng.choice(common, size=int(rng.integers(0, 4))))
        words += list(rng.choice(rare, size=int(rng.integers(0, 3))))
        return " ".join(words)

    docs = {f"d{i}": text() for i in range(400)}
    index = LexicalIndex.build(list(docs), list(docs.values()))
    for step in range(150):  # writes leave dead slots and a new-document segment behind
        if rng.random() < 0.5:
            index.add([f"n{step}"], [text()])
        else:
            index.remove([str(rng.choice([d for d in index.slot_ids if d is not None]))])
    assert index._new_docs and len(index) < len(index.slot_ids)
    live = np.array([s for s, d in enumerate(index.slot_ids) if d is not None])
    queries = [text() for _ in range(40)] + [" ".join(common), common[0], rare[0], "zebra", ""]
    for query in queries:
        q = index.query(query)
        dense = index.scores(query)
        # every slot, live or dead, scores as the dense array says, to the last bit
        np.testing.assert_array_equal(q.scores_at(np.arange(len(index.slot_ids))), dense)
        for m in (1, 5, 40, 1000):
            slots, scores = q.top(m)
            want, _ = _dense_head(index, query, m)
            assert scores.tolist() == want, (query, m)
            np.testing.assert_array_equal(dense[slots], scores)
            assert all(index.slot_ids[s] is not None for s in slots.tolist())
            if len(slots) == m:  # none outside the head scores above its last
                rest = np.setdiff1d(live, slots)
                assert dense[rest].max(initial=0) <= scores[-1]
            else:  # the head holds every document that scores at all
                assert len(slots) == np.count_nonzero(dense > 0)
        assert bool(q) == bool(dense.any() or index.query_terms(tokenize([query], index.language)[0]))
        deep = index.query(query, depth=40)  # a shallow head is the deep one's prefix
        for m in (1, 5, 40):
            for got, want in zip(deep.top(m), index.query(query).top(m), strict=True):
                np.testing.assert_array_equal(got, want)


def test_a_tie_at_the_edge_of_the_head_goes_to_the_lower_slot():
    index = LexicalIndex.build([f"d{i}" for i in range(6)], ["grief"] * 6)
    slots, scores = index.query("grief").top(4)
    assert slots.tolist() == [0, 1, 2, 3] and len(set(scores.tolist())) == 1


def test_weights_kept_between_writes_follow_every_write_to_the_bit():
    # a query keeps each slot's length normalisation, each term's weights and largest weight,
    # and a common term's weights by slot until the next write; querying between every write,
    # merge and compaction must never read stale ones
    rng = np.random.default_rng(7)
    common, rare = WORDS[:3], WORDS[3:]

    def text(n_common: int) -> str:
        words = list(rng.choice(common, size=n_common)) + list(rng.choice(rare, size=int(rng.integers(0, 3))))
        return " ".join(words)

    docs = {f"d{i}": text(int(rng.integers(0, 4))) for i in range(300)}
    index = LexicalIndex.build(list(docs), list(docs.values()))
    queries = [text(int(rng.integers(1, 4))) for _ in range(12)] + [" ".join(common), common[0]]
    def check() -> None:
        live = [d for d in index.slot_ids if d is not None]
        fresh = LexicalIndex.build(live, [docs[d] for d in live])  # keeps nothing from before
        for query in queries:
            dense = index.scores(query)
            np.testing.assert_allclose(dense[[index.position[d] for d in live]], fresh.scores(query),
                                       atol=TOLERANCE)
            for m in (1, 3, 5, 20):
                slots, scores = index.query(query).top(m)
                want, _ = _dense_head(index, query, m)
                assert scores.tolist() == want, (query, m)
                np.testing.assert_array_equal(dense[slots], scores)
            q = index.query(query)
            np.testing.assert_array_equal(q.scores_at(np.arange(len(index.slot_ids))), dense)

    for step in range(60):
        check()  # fills what is kept, then a write changes the statistics under it
        op = step % 5
        if op == 0:  # documents full of common words: their weights (and the average length) move
            new = {f"n{step}-{j}": text(6) for j in range(8)}
            index.add(list(new), list(new.values()))
            docs.update(new)
        elif op == 1:
            gone = [d for d in index.slot_ids if d is not None][:6]
            index.remove(gone)
            for d in gone:
                del docs[d]
        elif op == 2:
            d = str(rng.choice([d for d in index.slot_ids if d is not None]))
            docs[d] = f"{common[0]} {rare[0]} {rare[1]}"
            index.add([d], [docs[d]])
        elif op == 3:
            index.merge()
        else:
            index.compact()
    check()


def test_a_write_that_raises_a_common_terms_largest_weight_is_not_missed():
    # "sleep" is bounded by its largest weight once a query has read it; a short document of
    # nothing but "sleep" then outscores every "grief" document, and the bound must follow it
    filler = [" ".join(f"x{(i + j) % 40}" for j in range(9)) for i in range(200)]
    texts = [f"grief {f}" for f in filler[:20]] + [f"sleep {f}" for f in filler[20:80]] + filler[80:]
    index = LexicalIndex.build([f"d{i}" for i in range(200)], texts)
    before, _ = index.query("grief sleep").top(1)
    assert texts[int(before[0])].startswith("grief")  # a "grief" document leads before the write
    index.add(["short"], ["sleep sleep sleep sleep sleep"])
    slots, scores = index.query("grief sleep").top(1)
    assert index.slot_ids[int(slots[0])] == "short"
    assert scores.tolist() == _dense_head(index, "grief sleep", 1)[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_view_hiding_some_labels_scores_as_an_index_of_the_other_documents_alone(seed):
    rng = np.random.default_rng(seed)
    docs = {f"d{i}": t for i, t in enumerate(_texts(rng, 80))}
    index = LexicalIndex.build(list(docs), list(docs.values()))
    late = {f"n{i}": t for i, t in enumerate(_texts(rng, 6))}  # still in the new segment
    index.add(list(late), list(late.values()))
    docs.update(late)
    left_out = {d for d in docs if rng.random() < 0.3} | {"n1", "n4"}
    # two labels left out, one kept, as a caller sees two groups' documents but not a third's
    index.relabel(sorted(left_out), [1 + i % 2 for i in range(len(left_out))])
    index.relabel(["d0"] if "d0" not in left_out else ["d1"], [3])
    before = {q: index.scores(q).copy() for q in _texts(rng, 5)}
    view = index.hiding([1, 2])
    kept = [d for d in docs if d not in left_out]
    fresh = LexicalIndex.build(kept, [docs[d] for d in kept])
    for query in [*_texts(rng, 30), "anxiety anxiety", "zebra"]:
        got, want = _aligned(view, fresh, query)
        np.testing.assert_array_equal(got, want)
        slots, scores = view.query(query).top(8)
        fresh_slots, fresh_scores = fresh.query(query).top(8)
        np.testing.assert_array_equal(scores, fresh_scores)
        assert not {view.slot_ids[s] for s in slots.tolist()} & left_out
        word = query.split()[0] if query else "zebra"
        assert view.idf(word) == fresh.idf(word)
    queries = _texts(rng, 10)
    np.testing.assert_array_equal(view.score_pairs(queries, kept[:10]), fresh.score_pairs(queries, kept[:10]))
    # the index itself is untouched, and a view of nothing is the index
    for query, scores in before.items():
        np.testing.assert_array_equal(index.scores(query), scores)
    assert index.hiding([7]) is index and len(view) == len(kept)

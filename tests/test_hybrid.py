"""The lexical index and hybrid (dense + lexical) search."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeEmbedder
from test_index import brute_force_score

from qa_search import Answer, ForumIndex, IndexConfig, Thread
from qa_search.scoring.fusion import top_indices
from qa_search.scoring.lexical import LexicalIndex

WORDS = ["anxiety", "sleep", "therapist", "money", "partner", "breakup"]
WORDS += ["panic", "work", "family", "anger", "grief", "school"]


def test_lexical_scores_are_normalised_per_query():
    ix = LexicalIndex.build(
        ["a", "b", "c"],
        ["How do I learn Python programming?", "Best way to learn python", "Capital of France"],
    )
    s = ix.scores("learning python")  # stemming: learning -> learn
    assert s.shape == (3,) and s[2] == 0.0
    assert 0 < s[0] < 1 and 0 < s[1] < 1
    assert s[1] > s[0]  # same terms, shorter document
    # a query of unknown words matches nothing, and a longer query does not inflate the scale
    assert not ix.scores("zebra quantum").any()
    assert ix.scores("python python python learn zebra").max() <= 1.0


def test_lexical_round_trip(tmp_path):
    ix = LexicalIndex.build(["a", "b"], ["panic attacks at work", "sleep and anxiety"])
    ix.save(tmp_path / "lex.npz")
    back = LexicalIndex.load(tmp_path / "lex.npz")
    assert back.slot_ids == ["a", "b"]
    np.testing.assert_array_equal(back.scores("anxious at work"), ix.scores("anxious at work"))


def _corpus(seed=0, n=80, dim=16):
    rng = np.random.default_rng(seed)
    overrides, threads = {}, []
    for i in range(n):
        title = " ".join(rng.choice(WORDS, size=3)) + f" q{i}"
        answers = tuple(
            Answer(
                f"t{i}-a{j}",
                f"answer {i} {j}",
                score=int(rng.integers(0, 20)),
                accepted=bool(j == 0 and i % 2),
            )
            for j in range(rng.integers(0, 3))
        )
        t = Thread(f"t{i}", title, answers=answers, category=f"c{i % 3}", tags=(f"g{i % 4}",))
        threads.append(t)
        for text in [t.question_text] + [a.body for a in answers]:
            v = rng.standard_normal(dim)
            overrides[text] = v / np.linalg.norm(v)
    return threads, overrides, rng


def assert_search_ranks(index: ForumIndex, text: str, k: int, filters: dict, want: dict[str, float]) -> None:
    """``index.search`` returns the k best of ``want`` (thread id -> brute-force score; ties by
    id) with those scores, and ``score_threads`` scores that fixed list the same way."""
    ranked = sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    got = index.search(text, k, **filters)
    assert [h.thread_id for h in got] == [tid for tid, _ in ranked]
    np.testing.assert_allclose([h.score for h in got], [s for _, s in ranked], atol=1e-5)
    ids = [tid for tid, _ in ranked]
    np.testing.assert_allclose(index.score_threads(text, ids), [s for _, s in ranked], atol=1e-5)


@pytest.mark.parametrize("scoring", [{}, {"agreement_weight": 0.0, "solved_boost": 0.2, "vote_boost": 0.3}])
@pytest.mark.parametrize("k", [1, 5, 50])
@pytest.mark.parametrize(
    ("filters", "keep"),
    [({}, lambda t: True), ({"category": "c2", "tags": ["g1", "g3"]}, lambda t: t.category == "c2")],
)
@pytest.mark.parametrize("lw", [0.5, 4.0])  # 4: the lexical head and its bound decide the ranking
def test_hybrid_search_equals_brute_force(k, filters, keep, scoring, lw):
    threads, overrides, rng = _corpus()
    emb = FakeEmbedder(dimension=16, overrides=overrides)
    cfg = IndexConfig(answer_weight=0.8, lexical_weight=lw, lexical_mode="fixed", **scoring)
    index = ForumIndex(emb, cfg)
    index.upsert(threads)
    index.delete(["t0", "t1"])
    live = [t for t in threads[2:] if keep(t) and (not filters.get("tags") or set(t.tags) & {"g1", "g3"})]
    for _ in range(8):
        q = rng.standard_normal(16)
        q /= np.linalg.norm(q)
        text = " ".join(rng.choice(WORDS, size=2))
        emb.overrides[text] = q
        lex = index.lexical_index()
        lex_scores = lex.scores(text)
        want = {}
        for t in live:
            dense = brute_force_score(t, overrides, q, cfg)
            want[t.id] = dense + lw * float(lex_scores[lex.position[t.id]])
        assert_search_ranks(index, text, k, filters, want)


def test_lexical_index_follows_upserts_and_survives_save(tmp_path):
    emb = FakeEmbedder()
    index = ForumIndex(emb, IndexConfig(lexical_weight=0.3))
    index.upsert([Thread("a", "panic attacks at work"), Thread("b", "cannot sleep at night")])
    assert index.search("panic", k=1)[0].thread_id == "a"
    index.upsert([Thread("a", "grief after losing my dog")])
    assert "a" in index.lexical_index().position
    assert index.lexical_index().scores("panic").max() == 0.0
    index.save(tmp_path / "ix")
    back = ForumIndex.load(tmp_path / "ix", embedder=emb)
    again = back.search("grief dog", k=2)
    assert [h.thread_id for h in again] == [h.thread_id for h in index.search("grief dog", k=2)]


def test_top_indices_is_the_head_of_a_full_sort():
    rng = np.random.default_rng(7)
    values = np.round(rng.random(500), 2).astype(np.float32)  # many ties
    full = np.argsort(-values, kind="stable")
    for m in (1, 5, 37, 499, 500, 900):
        head = top_indices(values, m)
        assert len(head) == min(m, 500)
        np.testing.assert_array_equal(values[head], values[full[: len(head)]])


_REPRODUCE = r"""
import hashlib, json, sys
import numpy as np
from conftest import SAMPLE_DUMP
from qa_search import read_dump
from qa_search.scoring.analyser import tokenize
from qa_search.scoring.lexical import LexicalIndex
from qa_search.scoring.pairs import text_features

threads = list(read_dump(SAMPLE_DUMP))
texts = [t.question_text for t in threads]
lex = LexicalIndex.build([t.id for t in threads], texts)
queries = [t.question_text for t in threads[::7]]
scores = np.stack([lex.scores(q) for q in queries])
pairs = lex.score_pairs(queries, [t.id for t in threads[1::7]][: len(queries)])
toks = tokenize(texts)
feats = [text_features(texts[i], texts[i + 1], toks[i], toks[i + 1], lex.idf) for i in range(0, 140, 3)]
digest = hashlib.sha256(scores.tobytes() + pairs.tobytes() + json.dumps(feats).encode()).hexdigest()
print(json.dumps({"digest": digest, "vocab": sorted(lex._vocab.items(), key=lambda kv: kv[1])[:5]}))
"""


def test_lexical_scores_and_pair_signals_do_not_depend_on_the_hash_seed():
    """Python salts string hashes per process; term ids and sums over sets must not follow it,
    or scores (and the duplicate scorer's trees) differ in their last bits from run to run."""
    here = Path(__file__).resolve().parent
    outs = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(here)}
        command = [sys.executable, "-c", _REPRODUCE]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=True)
        outs.append(proc.stdout.strip().splitlines()[-1])
    assert outs[0] == outs[1] == outs[2]

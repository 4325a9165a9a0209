import json

import numpy as np
import pytest
from conftest import FakeEmbedder

from qa_search import (
    Answer,
    ForumIndex,
    IncompatibleSnapshotError,
    IndexConfig,
    SnapshotError,
    Thread,
    UnknownThreadError,
)
from qa_search.scoring.ann import VectorIndex
from qa_search.scoring.fusion import brute_force_topk, thread_boost, thread_dense_score
from qa_search.storage.generations import current_generation, list_generations

THREADS = [
    Thread(
        "sleep",
        "How can I fall asleep when my mind races at night?",
        answers=(Answer("sleep-1", "Write your worries down before bed and keep a routine."),),
    ),
    Thread(
        "mistakes",
        "How do therapists handle their own mistakes?",
        answers=(Answer("mistakes-1", "A good therapist names the rupture and repairs it with you."),),
    ),
    Thread(
        "breakup",
        "How do I stop texting my ex after a breakup?",
        answers=(
            Answer("breakup-1", "Mute the chat and tell a friend when the urge comes."),
            Answer("breakup-2", "Grief after a breakup is normal; give it time."),
        ),
    ),
    Thread("money", "My partner and I fight about money every week", body="We never agree on a budget."),
]


def make_index(embedder=None, threads=THREADS, **cfg):
    index = ForumIndex(embedder or FakeEmbedder(), IndexConfig(**cfg))
    index.upsert(threads)
    return index


def test_search_returns_one_hit_per_thread_best_first():
    index = make_index()
    hits = index.search("therapists handle mistakes", k=10)
    assert [h.thread_id for h in hits][0] == "mistakes"
    assert len(hits) == len(THREADS) == len({h.thread_id for h in hits})
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].matched == "question" and hits[0].answer_id is None
    assert hits[0].title == "How do therapists handle their own mistakes?"


def test_answer_match_is_reported_with_its_answer_id_and_snippet():
    index = make_index()
    hit = index.search("mute the chat and tell a friend when the urge comes", k=1)[0]
    assert (hit.thread_id, hit.matched, hit.answer_id) == ("breakup", "answer", "breakup-1")
    assert hit.snippet.startswith("Mute the chat")


def test_replaced_parts_are_never_returned():
    emb = FakeEmbedder()
    index = make_index(emb)
    old = "Mute the chat and tell a friend when the urge comes."
    edited = Thread(
        "breakup",
        "How do I stop texting my ex after a breakup?",
        answers=(Answer("breakup-3", "Delete the number and plan your evenings."),),
    )
    index.upsert([edited])
    for hit in index.search(old, k=10):
        if hit.thread_id == "breakup":
            assert hit.answer_id in (None, "breakup-3")
            assert "Mute" not in hit.snippet
    assert index.counts == {"threads": 4, "answers": 3, "question_vectors": 4, "answer_vectors": 3}
    assert index.get("breakup") == edited


def test_deleted_threads_are_never_returned():
    index = make_index()
    assert index.delete(["mistakes", "no-such-thread"]) == 1
    assert "mistakes" not in index
    assert all(h.thread_id != "mistakes" for h in index.search("therapists handle mistakes", k=10))
    assert index.find_duplicates("How do therapists handle their own mistakes?", threshold=-1.0) != []
    assert all(
        d.thread_id != "mistakes"
        for d in index.find_duplicates("How do therapists handle their own mistakes?", threshold=-1.0)
    )
    with pytest.raises(UnknownThreadError, match="no thread with id 'mistakes'"):
        index.get("mistakes")
    assert index.counts["question_vectors"] == 3 and index.counts["answer_vectors"] == 3


def test_unchanged_texts_are_not_embedded_again():
    emb = FakeEmbedder()
    index = make_index(emb)
    stats = index.upsert(THREADS)
    assert (stats.threads, stats.embedded, stats.reused) == (4, 0, 8)
    before = index.search("fight about money", k=4)
    edited = Thread(
        "breakup",
        THREADS[2].title,
        answers=(THREADS[2].answers[0], Answer("breakup-2", "Something new entirely.")),
    )
    stats = index.upsert([edited])
    assert (stats.embedded, stats.reused) == (1, 2)
    assert index.search("fight about money", k=4)[0] == before[0]


def test_duplicates_compare_questions_only_and_respect_the_threshold():
    index = make_index()
    answer_text = "Write your worries down before bed and keep a routine."
    assert all(
        d.thread_id != "sleep" or d.score < 0.99 for d in index.find_duplicates(answer_text, threshold=-1)
    )
    dups = index.find_duplicates("How do therapists handle their own mistakes?")
    assert [d.thread_id for d in dups] == ["mistakes"]
    assert dups[0].score == pytest.approx(1.0, abs=1e-5)
    loose = index.find_duplicates("therapists mistakes", threshold=-1.0, k=10)
    assert len(loose) == 4
    assert all(d.score >= 0.5 for d in index.find_duplicates("therapists mistakes", threshold=0.5))


def _seeded_corpus(seed=0, n_threads=60, dim=16):
    """Threads whose every text maps to a seeded random unit vector, with random votes and
    accepted answers (for the boosts)."""
    rng = np.random.default_rng(seed)
    overrides, threads = {}, []
    for i in range(n_threads):
        answers = tuple(
            Answer(
                f"t{i}-a{j}", f"answer {i} {j}", score=int(rng.integers(-2, 30)), accepted=rng.random() < 0.2
            )
            for j in range(rng.integers(0, 4))
        )
        t = Thread(
            f"t{i}",
            f"question {i}",
            answers=answers,
            category=f"c{i % 3}",
            tags=(f"g{i % 5}",),
            score=int(rng.integers(-3, 12)),
        )
        threads.append(t)
        for text in [t.question_text] + [a.body for a in answers]:
            v = rng.standard_normal(dim)
            overrides[text] = v / np.linalg.norm(v)
    return threads, overrides, rng


def brute_force_score(thread, vectors, query, cfg):
    """A thread's search score as the README defines it, written out independently of the index:
    max(q, w a) + c min(q, w a) (q alone without answers) plus the solved and vote boosts."""
    q = float(vectors[thread.question_text] @ query)
    if thread.answers:
        a = cfg.answer_weight * max(float(vectors[x.body] @ query) for x in thread.answers)
        score = max(q, a) + cfg.agreement_weight * min(q, a)
    else:
        score = q
    if any(x.accepted for x in thread.answers):
        score += cfg.solved_boost
    votes = max([thread.score] + [x.score for x in thread.answers])
    if votes > 0:
        score += cfg.vote_boost * min(1.0, np.log1p(votes) / np.log1p(cfg.vote_cap))
    return score


SCORING_CONFIGS = [
    {"answer_weight": 0.8, "agreement_weight": 0.0},  # the plain better-of-the-two
    {"answer_weight": 0.8, "agreement_weight": 0.25},
    {"answer_weight": 0.9, "agreement_weight": 0.5, "solved_boost": 0.3, "vote_boost": 0.2, "vote_cap": 10},
]


@pytest.mark.parametrize("scoring", SCORING_CONFIGS)
@pytest.mark.parametrize("k", [1, 3, 10, 100])
@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ({}, lambda t: True),
        ({"category": "c1"}, lambda t: t.category == "c1"),
        ({"tags": ["g0", "g3"]}, lambda t: set(t.tags) & {"g0", "g3"}),
        ({"tags": ["g2"], "category": "c0"}, lambda t: t.category == "c0" and "g2" in t.tags),
        ({"tags": "g4"}, lambda t: "g4" in t.tags),  # one tag as a plain string, not its letters
        ({"tags": ["", "g1"], "category": ""}, lambda t: "g1" in t.tags),  # empty values: no filter
    ],
)
def test_thread_search_equals_brute_force_on_seeded_vectors(k, filters, keep, scoring):
    threads, overrides, rng = _seeded_corpus()
    emb = FakeEmbedder(dimension=16, overrides=overrides)
    cfg = IndexConfig(lexical_weight=0.0, **scoring)
    index = ForumIndex(emb, cfg)
    index.upsert(threads)
    index.delete([t.id for t in threads[:5]])
    live = [t for t in threads[5:] if keep(t)]
    for _ in range(10):
        query = rng.standard_normal(16)
        query /= np.linalg.norm(query)
        text = f"query {rng.integers(1 << 30)}"
        emb.overrides[text] = query
        got = index.search(text, k, **filters)
        scores = {t.id: brute_force_score(t, overrides, query, cfg) for t in live}
        want = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        assert [h.thread_id for h in got] == [tid for tid, _ in want]
        np.testing.assert_allclose([h.score for h in got], [s for _, s in want], atol=1e-5)
        np.testing.assert_allclose(
            index.score_threads(text, [h.thread_id for h in got]), [h.score for h in got], atol=1e-5
        )


def test_thread_dense_score_by_hand():
    # max(0.6, 0.9 * 0.5) + 0.25 * min(0.6, 0.45)
    assert thread_dense_score(0.6, 0.5, 0.9, 0.25) == pytest.approx(0.7125)
    # the answer leads: max(0.2, 0.72) + 0.25 * 0.2
    assert thread_dense_score(0.2, 0.8, 0.9, 0.25) == pytest.approx(0.77)
    assert thread_dense_score(0.2, 0.8, 0.9, 0.0) == pytest.approx(0.72)
    assert thread_dense_score(0.6, None, 0.9, 0.25) == 0.6
    # log1p(9) / log1p(99) = 0.5: half the vote boost at 9 votes of a cap of 99
    assert thread_boost(True, 9, 0.1, 0.2, 99) == pytest.approx(0.1 + 0.1)
    assert thread_boost(False, 500, 0.1, 0.2, 99) == pytest.approx(0.2)
    assert thread_boost(False, -4, 0.1, 0.2, 99) == 0.0


def _at(cosine, axis, dim):
    """A unit vector at this cosine to the query (axis 0), off along ``axis``."""
    v = np.zeros(dim, np.float32)
    v[0], v[axis] = cosine, np.sqrt(1 - cosine**2)
    return v


@pytest.mark.parametrize("lexical_weight", [0.0, 1.0])
def test_a_thread_matching_on_question_and_answer_is_found_below_both_lists(lexical_weight):
    """The bound on unseen threads must count the agreement term: the winner here is in neither
    the first question list nor the first answer list, and only its two matches together make it
    the best thread."""
    dim = 48

    def at(cosine, axis):
        return _at(cosine, axis, dim)

    overrides, threads = {"zzz": at(1.0, 1)}, []
    for i in range(20):  # questions better than the winner's, no answers
        overrides[f"qd {i}"] = at(0.5 + 0.005 * i, 1 + i)
        threads.append(Thread(f"qd{i}", f"qd {i}"))
    for i in range(20):  # answers better than the winner's, unrelated questions
        overrides[f"ad {i}"], overrides[f"ad answer {i}"] = at(0.0, 21 + i), at(0.5 + 0.005 * i, 1 + i)
        threads.append(Thread(f"ad{i}", f"ad {i}", answers=(Answer(f"ad{i}-1", f"ad answer {i}"),)))
    overrides["winner"], overrides["winner answer"] = at(0.45, 42), at(0.45, 43)
    threads.append(Thread("win", "winner", answers=(Answer("win-1", "winner answer"),)))
    emb = FakeEmbedder(dimension=dim, overrides=overrides)
    cfg = {"answer_weight": 1.0, "agreement_weight": 1.0, "lexical_weight": lexical_weight}
    index = make_index(emb, threads, **cfg)
    hit = index.search("zzz", k=1)[0]
    assert (hit.thread_id, hit.score) == ("win", pytest.approx(0.9, abs=1e-5))


def test_a_boost_added_after_searching_still_bounds_unseen_threads():
    """The boost bound is kept between writes: an upsert that brings a larger boost raises it,
    or a boosted thread outside the fetched lists would be missed."""
    dim = 24
    overrides = {"zzz": _at(1.0, 1, dim)}
    threads = []
    for i in range(20):
        overrides[f"qd {i}"] = _at(0.5 + 0.005 * i, 1 + i, dim)
        threads.append(Thread(f"qd{i}", f"qd {i}"))
    overrides["voted"] = _at(0.45, 22, dim)
    emb = FakeEmbedder(dimension=dim, overrides=overrides)
    index = make_index(emb, threads, lexical_weight=0.0, vote_boost=0.5, vote_cap=10)
    assert index.search("zzz", k=1)[0].thread_id == "qd19"
    index.upsert([Thread("voted", "voted", score=10)])
    hit = index.search("zzz", k=1)[0]
    assert (hit.thread_id, hit.score) == ("voted", pytest.approx(0.95, abs=1e-5))
    index.delete(["voted"])
    assert index.search("zzz", k=1)[0].thread_id == "qd19"


def test_threads_without_answers_score_by_their_question_alone():
    """A forum without answers (Quora, SemEval) ranks exactly as by the question's score."""
    threads = [t for t in THREADS if not t.answers] + [
        Thread("q1", "How do I stop overthinking at night?"),
        Thread("q2", "Why do I feel anxious before work?", body="Every Sunday evening."),
    ]
    plain = make_index(threads=threads, lexical_weight=0.0, agreement_weight=0.0)
    combined = make_index(threads=threads, lexical_weight=0.0, agreement_weight=0.5, answer_weight=0.3)
    emb = FakeEmbedder()
    for text in ["overthinking at night", "money budget", "anxious before work"]:
        query = emb.encode([text])[0]
        questions = {t.id: float(emb.encode([t.question_text])[0] @ query) for t in threads}
        got = combined.search(text, k=10)
        assert got == plain.search(text, k=10)
        np.testing.assert_allclose([h.score for h in got], [questions[h.thread_id] for h in got], atol=1e-5)
        assert all(h.matched == "question" for h in got)


def test_agreement_lifts_a_thread_whose_question_and_answer_both_match():
    v = np.eye(4, dtype=np.float32)
    # both threads' questions match the query equally (cosine 0.6); only b's answer also matches
    query = 0.6 * v[0] + 0.8 * v[1]
    overrides = {
        "question a": v[0],
        "question b": v[0],
        "answer a": v[2],
        "answer b": 0.6 * v[0] + 0.8 * v[3],
    }
    threads = [
        Thread("a", "question a", answers=(Answer("a1", "answer a"),)),
        Thread("b", "question b", answers=(Answer("b1", "answer b"),)),
    ]
    emb = FakeEmbedder(dimension=4, overrides={**overrides, "the query": query})
    with_agreement = make_index(emb, threads, lexical_weight=0.0)
    hits = with_agreement.search("the query", k=2)
    assert [h.thread_id for h in hits] == ["b", "a"]
    # b: max(0.6, 0.9 * 0.36) + 0.25 * 0.324; a: 0.6 + 0.25 * min(0.6, 0)
    np.testing.assert_allclose([h.score for h in hits], [0.6 + 0.25 * 0.324, 0.6], atol=1e-5)
    assert hits[0].matched == "question"
    without = make_index(emb, threads, lexical_weight=0.0, agreement_weight=0.0).search("the query", k=2)
    assert [h.score for h in without] == pytest.approx([0.6, 0.6], abs=1e-5)


def test_boosts_are_off_by_default_and_reorder_as_documented():
    cfg = IndexConfig()
    assert (cfg.solved_boost, cfg.vote_boost) == (0.0, 0.0)
    same = "How do I talk to my parents about therapy?"
    threads = [
        Thread("a", same, answers=(Answer("a1", "Pick a calm moment."),)),
        Thread("b", same, answers=(Answer("b1", "Pick a calm moment.", score=9, accepted=True),)),
    ]
    plain = make_index(threads=threads).search(same, k=2)
    assert [h.thread_id for h in plain] == ["a", "b"] and plain[0].score == plain[1].score  # a tie, by id
    boosted = make_index(threads=threads, solved_boost=0.05, vote_boost=0.1, vote_cap=99).search(same, k=2)
    assert [h.thread_id for h in boosted] == ["b", "a"]
    # solved 0.05 + 0.1 * log1p(9) / log1p(99) = 0.05 + 0.05
    assert boosted[0].score - boosted[1].score == pytest.approx(0.1, abs=1e-5)
    assert boosted[1].score == plain[0].score


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("agreement_weight", -0.1),
        ("answer_weight", -1.0),
        ("solved_boost", -0.01),
        ("vote_boost", -1),
        ("vote_cap", 0),
    ],
)
def test_config_refuses_weights_that_would_break_exact_search(field, value):
    with pytest.raises(ValueError, match=f"IndexConfig.{field} must be at least"):
        IndexConfig(**{field: value})


def test_vector_index_equals_numpy_brute_force():
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((500, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(1000, 1500, dtype=np.int64)
    vi = VectorIndex(32)
    vi.add(ids, vecs)
    queries = vecs[:20] + 0.1 * rng.standard_normal((20, 32)).astype(np.float32)
    scores, got = vi.search(queries, 10)
    want_s, want_rows = brute_force_topk(queries, vecs, 10)
    np.testing.assert_array_equal(got, ids[want_rows])
    np.testing.assert_allclose(scores, want_s, atol=1e-5)
    assert vi.remove(ids[:250]) == 250
    _, got = vi.search(queries, 10)
    assert (got >= 1250).all()


def test_save_load_round_trip_gives_identical_results(tmp_path):
    emb = FakeEmbedder()
    index = make_index(emb, chunk_words=5, chunk_overlap=1)
    index.delete(["money"])
    snap = index.save(tmp_path / "idx")
    assert snap == tmp_path / "idx" / "generations" / "000001"
    loaded = ForumIndex.load(tmp_path / "idx", emb)
    assert loaded.config == index.config
    assert loaded.counts == index.counts
    for q in ["money fights", "therapists", "texting my ex", "worries before bed"]:
        assert loaded.search(q, k=5) == index.search(q, k=5)
        assert loaded.find_duplicates(q, threshold=0) == index.find_duplicates(q, threshold=0)
    # ids keep counting after a load: a new thread never reuses an id
    loaded.upsert([Thread("new", "A new question about sleep")])
    assert loaded.search("A new question about sleep", k=1)[0].thread_id == "new"
    manifest = json.loads((snap / "manifest.json").read_text())
    assert manifest["model"]["name"] == "fake-bow" and manifest["model"]["dimension"] == 64
    assert manifest["format_version"] == 1 and manifest["counts"]["threads"] == 3
    files = {"threads.jsonl", "parts.jsonl", "questions.faiss", "answers.faiss", "lexical.npz"}
    assert set(manifest["files"]) == files


def test_loading_with_another_model_fails_naming_both(tmp_path):
    make_index(FakeEmbedder(name="model-a")).save(tmp_path / "idx")
    with pytest.raises(IncompatibleSnapshotError) as err:
        ForumIndex.load(tmp_path / "idx", FakeEmbedder(name="model-b", seed=1))
    assert "'model-a'" in str(err.value) and "'model-b'" in str(err.value)
    with pytest.raises(IncompatibleSnapshotError, match="dimension 64.*dimension 32"):
        ForumIndex.load(tmp_path / "idx", FakeEmbedder(name="model-a", dimension=32))


def test_loading_another_format_version_fails_naming_both(tmp_path):
    snap = make_index().save(tmp_path / "idx")
    manifest = json.loads((snap / "manifest.json").read_text())
    manifest["format_version"] = 99
    (snap / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleSnapshotError, match="format version 99.*reads version 1"):
        ForumIndex.load(tmp_path / "idx", FakeEmbedder())


def test_a_damaged_file_is_refused(tmp_path):
    snap = make_index().save(tmp_path / "idx")
    data = bytearray((snap / "threads.jsonl").read_bytes())
    data[10] ^= 0x01
    (snap / "threads.jsonl").write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="threads.jsonl does not match its checksum"):
        ForumIndex.load(tmp_path / "idx", FakeEmbedder())


def test_a_crash_while_saving_leaves_the_current_generation_intact(tmp_path, monkeypatch):
    emb = FakeEmbedder()
    index = make_index(emb)
    index.save(tmp_path / "idx")
    index.delete(["sleep"])

    def boom(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(VectorIndex, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        index.save(tmp_path / "idx")
    assert current_generation(tmp_path / "idx") == 1 and list_generations(tmp_path / "idx") == [1]
    assert "sleep" in ForumIndex.load(tmp_path / "idx", emb)
    monkeypatch.undo()
    index.save(tmp_path / "idx")
    assert current_generation(tmp_path / "idx") == 2
    assert "sleep" not in ForumIndex.load(tmp_path / "idx", emb)
    assert not [p for p in (tmp_path / "idx" / "generations").iterdir() if p.name.startswith(".tmp")]


def test_loading_a_missing_index_says_how_to_build_one(tmp_path):
    with pytest.raises(SnapshotError, match="qa-search build DUMP --index"):
        ForumIndex.load(tmp_path / "missing", FakeEmbedder())


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="k must be at least 1"):
        make_index().search("x", k=0)


def test_a_blank_query_finds_nothing_and_is_not_embedded():
    emb = FakeEmbedder()
    index = make_index(emb)
    before = emb.texts_encoded
    assert index.search("") == [] and index.search(" \t\n", k=3) == []
    assert index.find_duplicates("  ", threshold=-1.0) == []
    assert emb.texts_encoded == before
    # in a batch, the blank texts keep their places and the others are answered as alone
    got = index.search_many(["", "therapists handle mistakes", " "], k=2)
    assert got[0] == [] and got[2] == []
    assert got[1] == index.search("therapists handle mistakes", k=2) and got[1]
    dups = index.find_duplicates_many(["How do therapists handle their own mistakes?", ""])
    assert [d.thread_id for d in dups[0]] == ["mistakes"] and dups[1] == []
    assert emb.texts_encoded == before + 3


def test_a_single_string_is_one_id_or_refused_where_a_list_of_texts_is_meant(tmp_path):
    numbered = [Thread("1", "first question"), Thread("2", "second question"), Thread("12", "twelfth")]
    index = make_index(threads=numbered)
    assert index.delete("12") == 1  # thread "12", never threads "1" and "2"
    assert sorted(t.id for t in index.threads()) == ["1", "2"]
    assert index.upsert(Thread("3", "third question")).threads == 1 and "3" in index
    index.delete("3")
    with pytest.raises(TypeError, match=r"search_many takes a list of texts; for one text use search\("):
        index.search_many("first question")
    with pytest.raises(TypeError, match="find_duplicates_many takes a list"):
        index.find_duplicates_many("first question")
    # the same for an index directory and for a serving process
    from qa_search import LiveIndex
    from qa_search.operations.changes import delete_threads
    from qa_search.operations.lifecycle import build_index

    build_index(tmp_path / "ix", numbered, FakeEmbedder())
    assert delete_threads(tmp_path / "ix", "12", FakeEmbedder()).threads == 2
    live = LiveIndex(tmp_path / "ix", FakeEmbedder())
    assert live.delete("2").ids == ("2",)
    with live.reading() as current:
        assert [t.id for t in current.threads()] == ["1"]


def test_upsert_checks_threads_as_a_dump_line_so_a_saved_index_always_reloads(tmp_path):
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread("ok", "how to sleep better")])
    refused = (Thread("x", "rice", answers=(Answer("a", ""),)), Thread("y", "rice", score=2.5),
               Thread("z", ""))
    for bad in refused:
        with pytest.raises(ValueError, match=f"thread '{bad.id}'"):
            index.upsert([Thread("fine", "a fine thread"), bad])
    assert [t.id for t in index.threads()] == ["ok"]  # a refused batch adds nothing
    index.upsert(Thread(5, "  padded title  "))  # normalised as a dump round trip would be
    assert index.get("5").title == "padded title"
    index.save(tmp_path / "idx")
    again = ForumIndex.load(tmp_path / "idx", FakeEmbedder())
    assert [(t.id, t.title) for t in again.threads()] == [
        ("ok", "how to sleep better"), ("5", "padded title")]


def test_threads_is_a_copy_that_survives_writes_while_iterating():
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread("a", "first"), Thread("b", "second")])
    for t in index.threads():
        index.delete([t.id])
    assert len(index) == 0


@pytest.mark.parametrize("titles", [["C#"], ["🙂", "the a an"], ["x"]])
def test_questions_without_an_indexable_word_search_save_and_load(tmp_path, titles):
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread(str(i), t) for i, t in enumerate(titles)])
    hits = index.search("anything at all", k=5)
    assert sorted(h.thread_id for h in hits) == sorted(str(i) for i in range(len(titles)))
    index.save(tmp_path / "idx")
    again = ForumIndex.load(tmp_path / "idx", FakeEmbedder())
    assert [h.thread_id for h in again.search("anything at all", k=5)] == [h.thread_id for h in hits]
    index.upsert([Thread("w", "worries about sleep")])  # a first real word later is indexed
    assert index.search("sleep worries", k=1)[0].thread_id == "w"

"""A served index under concurrent readers, writers and generation swaps.

Threads in one process hit one :class:`LiveIndex` at once: searches and duplicate checks with
and without ``groups``, writes (restricted threads included) and new generations. Every read
is checked against what a fresh index built single-threaded over the same threads answers,
and against the writes acknowledged before it started: a thread restricted or deleted by an
acknowledged write never comes back to a caller outside its groups. Each test is bounded: a
thread that does not come back within its join timeout is a wedged lock, and a failure.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FakeEmbedder
from fastapi.testclient import TestClient

from qa_search import Answer, ForumIndex, IndexConfig, LiveIndex, Thread
from qa_search.embedding.model_defaults import ShippedDefaults
from qa_search.index.contents import VIEWS_KEPT
from qa_search.index.rwlock import RWLock
from qa_search.scoring.lexical import LexicalIndex
from qa_search.scoring.relevance import FEATURES, RelevanceModel
from qa_search.storage.generations import rollback
from service.app import create_app
from service.routes.moderation import ClusterCache
from service.settings import Settings

GROUPS = ("mods", "grief", "teens", "carers", "staff")
WORDS = [
    "anxiety", "panic", "sleep", "therapist", "medication", "grief", "loss", "school", "exam",
    "friend", "partner", "family", "lonely", "work", "burnout", "anger", "calm", "breathing",
    "relapse", "sober", "diary", "walk", "doctor", "waiting", "list", "night", "fear", "trust",
]  # fmt: skip
#: Scores are rounded to 6 decimals; the lexical sums agree to float32 rounding.
TOLERANCE = 1e-5
#: Seconds a worker thread may take before it counts as wedged.
WEDGED = 30.0
#: Every caller's groups a reader picks from: more distinct sets than lexical views are kept.
CALLERS: list[frozenset[str] | None] = [None, frozenset()] + [
    frozenset(g) for g in {tuple(sorted(random.Random(i).sample(GROUPS, 1 + i % 2))) for i in range(40)}
]


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.sample(WORDS, rng.randint(lo, hi)))


def _thread(rng: random.Random, tid: str, visible_to: tuple[str, ...] = ()) -> Thread:
    # the id's own word keeps every title distinct: no two threads tie on a score
    answers = tuple(Answer(f"{tid}-a{j}", _words(rng, 3, 8), rng.randint(0, 9))
                    for j in range(rng.randint(0, 2)))
    return Thread(tid, f"{_words(rng, 2, 5)} {tid}", _words(rng, 0, 5), answers, visible_to=visible_to)


def _forum(rng: random.Random, prefix: str, n: int) -> list[Thread]:
    """n threads, two in five restricted to one or two groups."""
    return [_thread(rng, f"{prefix}{i}",
                    () if rng.random() < 0.6 else tuple(rng.sample(GROUPS, rng.randint(1, 2))))
            for i in range(n)]


def _visible(thread: Thread, groups: frozenset[str] | None) -> bool:
    return groups is None or not thread.visible_to or bool(groups & set(thread.visible_to))


Hits = list[tuple[str, float]]


def _publish(index_dir: Path, threads: list[Thread]) -> None:
    index = ForumIndex(FakeEmbedder())
    index.upsert(threads)
    index.save(index_dir)


def _answer(index: ForumIndex, text: str, k: int, groups: frozenset[str] | None) -> Hits:
    return [(h.thread_id, h.score) for h in index.search(text, k, groups=groups)]


def _alone(threads: list[Thread], groups: frozenset[str] | None) -> ForumIndex:
    """An index built single-threaded over the threads the caller may see."""
    alone = ForumIndex(FakeEmbedder())
    alone.upsert([t for t in threads if _visible(t, groups)])
    return alone


def _expected(threads: list[Thread], text: str, k: int, groups: frozenset[str] | None) -> Hits:
    return _answer(_alone(threads, groups), text, k, None)


def _same(got: Hits, want: Hits) -> None:
    assert [t for t, _ in got] == [t for t, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=TOLERANCE)


def _run(workers: list[Callable[[], None]], seconds: float = WEDGED) -> None:
    """Run each worker in its own thread; re-raise the first failure; a worker still running
    after ``seconds`` is wedged (a deadlock, or a writer starved)."""
    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # reported in the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    wedged = [t.name for t in threads if t.is_alive()]
    if errors:
        raise errors[0]
    assert not wedged, f"wedged after {seconds} s: {wedged}"


@pytest.fixture
def served(tmp_path) -> tuple[Path, list[Thread]]:
    threads = _forum(random.Random(1), "t", 50)
    _publish(tmp_path / "idx", threads)
    return tmp_path / "idx", threads


# -- readers alone: shared caches and lexical views --------------------------------------------


def test_concurrent_readers_of_many_groups_score_as_a_single_threaded_index(served):
    """Readers share the lexical index's weight caches and the callers' views (more distinct
    sets of groups than views are kept, so views are made and dropped while others read
    them): each answer is the one a fresh index over the caller's threads gives."""
    index_dir, threads = served
    live = LiveIndex(index_dir, FakeEmbedder(), cache_size=16)
    rng = random.Random(2)
    queries = [_words(rng, 1, 4) for _ in range(10)] + [t.title for t in rng.sample(threads, 4)]
    alone = {g: _alone(threads, g) for g in CALLERS}
    want = {(q, g): _answer(alone[g], q, 6, None) for q in queries for g in CALLERS}
    assert len(CALLERS) > VIEWS_KEPT + 2

    def reader(seed: int) -> Callable[[], None]:
        def work() -> None:
            r = random.Random(seed)
            for _ in range(120):
                q, g = r.choice(queries), r.choice(CALLERS)
                _same(_answer_live(live, q, 6, g), want[(q, g)])
        return work

    _run([reader(s) for s in range(6)])


def _answer_live(live: LiveIndex, text: str, k: int, groups: frozenset[str] | None) -> Hits:
    return [(h.thread_id, h.score) for h in live.search(text, k, groups=groups)]


# -- readers and writers --------------------------------------------------------------------------


class Acks:
    """What the writers have had acknowledged, in order: restricted and deleted ids."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hidden: dict[str, frozenset[str]] = {}  # id -> the only groups that may see it
        self.deleted: set[str] = set()
        self.upserted: dict[str, Thread] = {}

    def snapshot(self) -> tuple[dict[str, frozenset[str]], set[str]]:
        with self.lock:
            return dict(self.hidden), set(self.deleted)


def _check_hits(ids: list[str], groups: frozenset[str] | None, hidden: dict[str, frozenset[str]],
                deleted: set[str]) -> None:
    for tid in ids:
        assert tid not in deleted, f"{tid} was returned after its delete was acknowledged"
        allowed = hidden.get(tid)
        assert allowed is None or groups is None or groups & allowed, \
            f"{tid} reached a caller outside the groups an acknowledged write restricted it to"


def _writer(live: LiveIndex, acks: Acks, threads: list[Thread], seed: int, writes: int) -> Callable[[], None]:
    """Random writes: new threads (some for 'staff' alone), question edits keeping each
    thread's readers, public threads restricted, deletes. A restriction and a delete are for
    good, so a reader may check them against whatever was acknowledged before it started."""
    def work() -> None:
        rng = random.Random(seed)
        held = {t.id: t for t in threads}
        for step in range(writes):
            op = rng.random()
            if op < 0.3:
                new = _thread(rng, f"w{seed}x{step}", ("staff",) if rng.random() < 0.5 else ())
                live.upsert(new)
                held[new.id] = new
                with acks.lock:
                    if new.visible_to:
                        acks.hidden[new.id] = frozenset(new.visible_to)
            elif op < 0.55:
                tid = rng.choice(sorted(held))
                held[tid] = dataclasses.replace(_thread(rng, tid), visible_to=held[tid].visible_to)
                live.upsert(held[tid])
            elif op < 0.8:
                public = sorted(t for t in held if not held[t].visible_to)
                if public:
                    tid = rng.choice(public)
                    held[tid] = dataclasses.replace(held[tid], visible_to=("staff",))
                    live.upsert(held[tid])
                    with acks.lock:
                        acks.hidden[tid] = frozenset({"staff"})
            else:
                tid = rng.choice(sorted(held))
                del held[tid]
                live.delete(tid)
                with acks.lock:
                    acks.deleted.add(tid)
    return work


def test_searches_during_writes_see_each_acknowledged_write_and_score_as_a_fresh_index(served):
    """While writers restrict, edit, add and delete, every search and duplicate check names no
    thread deleted or restricted (for that caller) by a write acknowledged before it began, and
    scores as a fresh single-threaded index over the threads it read (the lexical view of the
    caller's groups included, which each write makes stale)."""
    index_dir, threads = served
    live = LiveIndex(index_dir, FakeEmbedder(), cache_size=8)
    acks = Acks()
    rng = random.Random(3)
    queries = [_words(rng, 1, 4) for _ in range(12)]
    seen: list[tuple[list[Thread], str, frozenset[str] | None, list[tuple[str, float]]]] = []
    done = threading.Event()

    def reader(seed: int) -> Callable[[], None]:
        def work() -> None:
            r = random.Random(seed)
            while not done.is_set():
                q, g = r.choice(queries), r.choice(CALLERS)
                hidden, deleted = acks.snapshot()
                _check_hits([t for t, _ in _answer_live(live, q, 8, g)], g, hidden, deleted)
                dups = live.find_duplicates(q, threshold=-1.0, k=8, groups=g)
                _check_hits([d.thread_id for d in dups], g, hidden, deleted)
                with live.reading() as index:  # the threads and the answer, from one state
                    held = index.threads()
                    got = _answer(index, q, 8, g)
                _check_hits([t for t, _ in got], g, hidden, deleted)
                seen.append((held, q, g, got))
        return work

    # each writer its own threads: a write of one never undoes the other's restriction or delete
    writers = [_writer(live, acks, threads[s % 2::2], s, 40) for s in (10, 11)]

    def writing() -> None:
        try:
            _run(writers)
        finally:
            done.set()

    _run([writing, *(reader(s) for s in range(4))])
    assert acks.deleted and acks.hidden and len(seen) > 20
    for held, q, g, got in random.Random(4).sample(seen, min(30, len(seen))):
        _same(got, _expected(held, q, 8, g))


# -- generation swaps ------------------------------------------------------------------------------


def test_swaps_never_mix_generations_nor_lose_an_acknowledged_write(tmp_path):
    """Generations published and rolled back while the watcher swaps them in under readers and
    writers: each answer comes from one generation; a thread restricted or deleted by an
    acknowledged write stays so through every swap, and one added is found from its ack on."""
    index_dir = tmp_path / "idx"
    rng = random.Random(5)
    bases = [_forum(rng, f"g{n}-", 30) for n in range(4)]
    _publish(index_dir, bases[0])
    live = LiveIndex(index_dir, FakeEmbedder(), cache_size=8)
    live.start(0.01)
    acks = Acks()
    done = threading.Event()
    queries = [_words(rng, 1, 3) for _ in range(8)]
    seen: list[tuple[list[Thread], str, frozenset[str] | None, Hits]] = []

    def publisher() -> None:
        try:
            for n in range(1, 4):
                _publish(index_dir, bases[n])
                time.sleep(0.15)
                rollback(index_dir)
                time.sleep(0.15)
        finally:
            done.set()

    def reader(seed: int) -> Callable[[], None]:
        def work() -> None:
            r = random.Random(seed)
            while not done.is_set():
                g = r.choice(CALLERS)
                hidden, deleted = acks.snapshot()
                ids = [t for t, _ in _answer_live(live, r.choice(queries), 30, g)]
                _check_hits(ids, g, hidden, deleted)
                gens = {t.split("-")[0] for t in ids if t.startswith("g")}
                assert len(gens) <= 1, f"one answer from several generations: {sorted(gens)}"
                q = r.choice(queries)
                with live.reading() as index:
                    seen.append((index.threads(), q, g, _answer(index, q, 8, g)))
        return work

    def writer() -> None:
        r = random.Random(6)
        written: list[Thread] = []
        step = 0
        while not done.is_set():
            step += 1
            if written and r.random() < 0.4:
                gone = written.pop(r.randrange(len(written)))
                live.delete(gone.id)
                with acks.lock:
                    acks.deleted.add(gone.id)
                assert gone.id not in [t for t, _ in _answer_live(live, gone.title, 5, None)]
            else:
                new = _thread(r, f"w{step}", ("staff",) if r.random() < 0.5 else ())
                live.upsert(new)
                with acks.lock:
                    if new.visible_to:
                        acks.hidden[new.id] = frozenset(new.visible_to)
                written.append(new)
                assert new.id in [t for t, _ in _answer_live(live, new.title, 5, None)], \
                    "an acknowledged write is not served"

    try:
        _run([publisher, writer, *(reader(s) for s in range(3))])
        assert _eventually(lambda: live.generation == 3)  # the last rollback's target
    finally:
        live.stop()
    assert len(seen) > 20 and live.cache.hits  # a deleted thread's title was searched before
    # every generation was served and scored as a fresh index over the threads it held then
    assert {t.split("-")[0] for held, *_ in seen for t in (h.id for h in held)} >= {"g0", "g1", "g2", "g3"}
    for held, q, g, got in random.Random(7).sample(seen, 20):
        _same(got, _expected(held, q, 8, g))


# -- a lexical index built on first need -----------------------------------------------------------


def test_the_first_searches_that_need_the_lexical_index_build_it_once(tmp_path, monkeypatch):
    """An index saved without a lexical index (lexical weight 0, no calibration) builds one on
    the first search that needs it (highlights): concurrent first searches share one build,
    rather than each building its own over every question, and each sees it whole."""
    threads = _forum(random.Random(7), "t", 40)
    index = ForumIndex(FakeEmbedder(), IndexConfig(lexical_weight=0.0))
    index.upsert(threads)
    index.save(tmp_path / "idx")
    live = LiveIndex(tmp_path / "idx", FakeEmbedder())
    assert live.index._lexical is None
    readers = 4
    builds: list[int] = []
    build = LexicalIndex.build
    # The stand-in build holds on until every reader has asked for the lexical index while it
    # was still missing, so that all of them meet the build in progress however the threads are
    # scheduled; a reader that never asks leaves it waiting, and the test fails rather than pass
    # without the race.
    asking: set[int] = set()
    asking_lock = threading.Lock()
    all_asking = threading.Event()
    ask = live.index.lexical_index

    def counted_ask() -> LexicalIndex:
        with asking_lock:
            if live.index._lexical is None:
                asking.add(threading.get_ident())
                if len(asking) == readers:
                    all_asking.set()
        return ask()

    def held_build(*args, **kwargs):
        builds.append(1)
        assert all_asking.wait(5), f"{len(asking)} of {readers} first searches asked for the lexical index"
        return build(*args, **kwargs)

    want = {g: [(h.thread_id, h.highlights) for h in index.search("sleep night", 5, groups=g, highlight=True)]
            for g in CALLERS[:readers]}
    monkeypatch.setattr(live.index, "lexical_index", counted_ask)
    monkeypatch.setattr(LexicalIndex, "build", held_build)
    start = threading.Barrier(readers)

    def reader(g: frozenset[str] | None) -> Callable[[], None]:
        def work() -> None:
            start.wait(5)
            hits = live.search("sleep night", 5, groups=g, highlight=True)
            assert [(h.thread_id, h.highlights) for h in hits] == want[g]
        return work

    _run([reader(g) for g in CALLERS[:readers]])
    assert len(asking) == readers
    assert len(builds) == 1


# -- locks: no deadlock, no starved writer ---------------------------------------------------------


def test_writes_and_a_rollback_go_through_under_constant_typeahead(served):
    """Typeahead readers that never pause (each keystroke a search, a duplicate check or a
    verdict) hold back neither the writes nor a rollback's swap: every write and the swap finish
    while the readers are still reading."""
    index_dir, threads = served
    live = LiveIndex(index_dir, FakeEmbedder(), cache_size=64)
    live.start(0.01)
    done = threading.Event()
    reads = [0]

    def typeahead(seed: int) -> Callable[[], None]:
        def work() -> None:
            r = random.Random(seed)
            title = r.choice(threads).title
            while not done.is_set():
                text = title[: r.randint(1, len(title))]
                g = r.choice(CALLERS)
                live.search(text, 5, groups=g)
                live.find_duplicates(text, groups=g)
                live.duplicate_verdicts(text, groups=g)
                reads[0] += 1
        return work

    def writer() -> None:
        try:
            while reads[0] < 50:  # the readers are at it
                time.sleep(0.01)
            rng = random.Random(8)
            for step in range(20):
                live.upsert(_thread(rng, f"w{step}"))
                live.delete(f"t{step}")
            _publish(index_dir, threads[:10])
            assert _eventually(lambda: live.generation == 2)
            rollback(index_dir)
            assert _eventually(lambda: live.generation == 1)
            assert "w19" in live.index and "t19" not in live.index
        finally:
            done.set()

    try:
        _run([writer, *(typeahead(s) for s in range(6))])
    finally:
        live.stop()


def _eventually(check: Callable[[], bool], seconds: float = WEDGED / 2) -> bool:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.005)
    return check()


# -- memory ----------------------------------------------------------------------------------------


def test_many_distinct_callers_and_queries_keep_a_bounded_number_of_views_and_vectors(served):
    """Every caller's groups and every query distinct, from several threads at once, while
    writes make the views stale: the lexical views and the query cache stay within their bounds."""
    index_dir, threads = served
    live = LiveIndex(index_dir, FakeEmbedder(), cache_size=32)
    sizes: list[tuple[int, int]] = []

    def reader(seed: int) -> Callable[[], None]:
        def work() -> None:
            r = random.Random(seed)
            for i in range(150):
                groups = [f"g{seed}-{i}", *r.sample(GROUPS, r.randint(0, 2))]
                live.search(f"{_words(r, 1, 3)} {seed} {i}", 3, groups=groups)
                sizes.append((len(live.index._views), len(live.cache)))
        return work

    def writer() -> None:
        rng = random.Random(9)
        for step in range(15):
            live.upsert(_thread(rng, f"w{step}", ("staff",)))
            time.sleep(0.01)

    _run([writer, *(reader(s) for s in range(4))])
    assert max(v for v, _ in sizes) <= VIEWS_KEPT
    assert max(c for _, c in sizes) <= 32
    assert live.cache.misses >= 4 * 150  # every query was new: nothing was kept past the bound


def test_a_writer_interrupted_while_it_waits_for_readers_holds_back_no_later_reader():
    """A write that gives up while readers hold the lock (an interrupt in a notebook, an
    exception raised into its thread) leaves the lock as it found it: later readers and writers
    go through, rather than waiting for good behind a writer that is no longer there."""
    lock = RWLock()
    holding, release = threading.Event(), threading.Event()

    def long_search() -> None:
        with lock.read():
            holding.set()
            assert release.wait(WEDGED)

    searching = threading.Thread(target=long_search, daemon=True)
    searching.start()
    assert holding.wait(WEDGED)
    wait = lock._cond.wait

    def interrupted(timeout=None):
        lock._cond.wait = wait  # once
        raise KeyboardInterrupt

    lock._cond.wait = interrupted
    with pytest.raises(KeyboardInterrupt), lock.write():
        pass
    release.set()
    searching.join(WEDGED)

    def later() -> None:
        with lock.read():
            pass
        with lock.write():
            pass

    _run([later], seconds=5)


def test_a_rollback_during_the_startup_load_is_served_once_the_handle_is_up(tmp_path, monkeypatch):
    """A worker starting while an operator rolls back: the generation it loads stops being
    served before it has read the log. It starts, and serves the rollback's target with the
    writes the log holds, rather than failing to start."""
    index_dir = tmp_path / "idx"
    rng = random.Random(12)
    _publish(index_dir, _forum(rng, "g0-", 10))
    _publish(index_dir, _forum(rng, "g1-", 10))
    LiveIndex(index_dir, FakeEmbedder()).upsert(_thread(rng, "w0"))
    load = ForumIndex.load

    def load_then_roll_back(path, *args, **kwargs):
        loaded = load(path, *args, **kwargs)
        if path.name.endswith("2"):
            rollback(index_dir)
        return loaded

    monkeypatch.setattr(ForumIndex, "load", load_then_roll_back)
    live = LiveIndex(index_dir, FakeEmbedder())
    assert live.generation == 1
    assert "w0" in live.index and "g0-0" in live.index and "g1-0" not in live.index


def test_callers_whose_groups_hide_the_same_threads_share_one_lexical_view(served, monkeypatch):
    """Many callers, each with a group of their own (a user's group, say) besides the forum's:
    those who may not see the same threads read one view, made once between writes, rather
    than one each, made again and again as more callers come than views are kept."""
    index_dir, threads = served
    live = LiveIndex(index_dir, FakeEmbedder())
    made: list[int] = []
    hiding = LexicalIndex.hiding

    def counted(self, labels):
        made.append(1)
        return hiding(self, labels)

    monkeypatch.setattr(LexicalIndex, "hiding", counted)
    callers = [frozenset({f"user{i}", *extra}) for i in range(3 * VIEWS_KEPT) for extra in ((), ("staff",))]
    # two sets of hidden threads: those of every restricted thread, and those not for staff
    want = {"staff" in g: _expected(threads, "sleep night", 5, g) for g in callers[:2]}

    def reader(seed: int) -> Callable[[], None]:
        def work() -> None:
            for g in random.Random(seed).sample(callers, len(callers)):
                _same(_answer_live(live, "sleep night", 5, g), want["staff" in g])
        return work

    readers = 3
    _run([reader(s) for s in range(readers)])
    assert len(made) <= 2 * readers  # each reader may make one before the first is kept


def test_the_lock_never_lets_a_writer_in_beside_a_reader_or_another_writer():
    """Seeded schedules of readers and writers (each yielding inside the lock so that others
    run): no reader is inside while a writer is, and never two writers at once."""
    lock = RWLock()
    inside = {"readers": 0, "writers": 0}
    state = threading.Lock()

    def enter(kind: str) -> None:
        with state:
            inside[kind] += 1
            assert inside["writers"] <= 1
            assert not (inside["writers"] and inside["readers"]), f"{inside}"

    def leave(kind: str) -> None:
        with state:
            inside[kind] -= 1

    def worker(seed: int) -> Callable[[], None]:
        def work() -> None:
            r = random.Random(seed)
            for _ in range(300):
                kind = "writers" if r.random() < 0.2 else "readers"
                with lock.write() if kind == "writers" else lock.read():
                    enter(kind)
                    time.sleep(0 if r.random() < 0.7 else 0.0002)
                    leave(kind)
        return work

    _run([worker(s) for s in range(6)])


@pytest.mark.parametrize("deleter", ["this worker", "another worker"])
def test_a_delete_logged_with_a_rollback_is_seen_while_the_rollback_loads(tmp_path, deleter):
    """Worker A meets a rollback's log (to be served once its generation loads, held here) in
    the same read as a delete that it takes itself, or that worker B logged just after the
    rollback: A applies the delete to the generation it still serves, as it does every write
    logged later, rather than serving the deleted thread until the load ends (or, while it
    fails, at all)."""
    index_dir = tmp_path / "idx"
    rng = random.Random(13)
    _publish(index_dir, _forum(rng, "g0-", 10))
    _publish(index_dir, _forum(rng, "g1-", 10))
    a, b = LiveIndex(index_dir, FakeEmbedder()), LiveIndex(index_dir, FakeEmbedder())
    release = threading.Event()

    def held(path, embedder):
        assert release.wait(WEDGED)
        return ForumIndex.load(path, embedder)

    a._loader = held
    a.start(60)  # woken by requests alone: none comes between the rollback and B's delete
    try:
        gone = _thread(rng, "w0")
        b.upsert(gone)
        assert _eventually(lambda: "w0" in [t for t, _ in _answer_live(a, gone.title, 3, None)])
        rollback(index_dir)
        (a if deleter == "this worker" else b).delete("w0")
        assert _eventually(lambda: "w0" not in [t for t, _ in _answer_live(a, gone.title, 3, None)], 5), \
            "an acknowledged delete is served until the rollback's generation loads"
        assert _eventually(lambda: a.loading_generation == 1)
        assert a.generation == 2  # the old generation, still loading the rollback's
    finally:
        release.set()
        a.stop()
    assert a.generation == 1 and "w0" not in a.index


# -- one generation per answer: the relevance cut, the moderators' clusters ---------------------


def _with_cut(threads: list[Thread], cut: float) -> ForumIndex:
    """An index whose relevance model gives every hit 0.5 and cuts at ``cut``."""
    model = RelevanceModel((FEATURES[0],), (0.0,), 0.0, cut)
    index = ForumIndex(FakeEmbedder())
    index.shipped_defaults = ShippedDefaults.of(index.embedder.name, {"relevance": model.to_dict()})
    index.upsert(threads)
    return index


@pytest.mark.parametrize(("old_cut", "new_cut"), [(0.9, 0.1), (0.1, 0.9)])
def test_a_search_page_is_cut_at_the_default_of_the_generation_its_hits_come_from(tmp_path, monkeypatch,
                                                                                   old_cut, new_cut):
    """A generation with another relevance model (a model change, or refreshed defaults) is
    swapped in as a search begins: the page is cut at that generation's default cut, the one
    its hits' relevance was fitted for, never at the generation the request was parsed under."""
    index_dir = tmp_path / "idx"
    threads = _forum(random.Random(14), "t", 12)
    _with_cut(threads, old_cut).save(index_dir)
    app = create_app(Settings(index_dir=index_dir, read_rate="0", poll_seconds=60), embedder=FakeEmbedder())
    with TestClient(app) as client:
        live: LiveIndex = app.state.live
        reading = live.reading
        swapped: list[int] = []

        def swap_first() -> Any:
            if not swapped:  # published only now, so that nothing swaps to it earlier
                _with_cut(threads, new_cut).save(index_dir)
                swapped.append(1)
                assert live.check_generation()
            return reading()

        monkeypatch.setattr(live, "reading", swap_first)
        resp = client.get("/v1/search", params={"q": threads[0].title, "k": 5})
    assert resp.status_code == 200, resp.text
    assert swapped and live.generation == 2
    hits = resp.json()["hits"]
    assert all(h["relevance"] == pytest.approx(0.5) for h in hits)
    assert len(hits) == (5 if new_cut < 0.5 else 0)


class _PausedAfterWrites:
    """A readers-writer lock that, once a write has released it, waits for ``resume``: the moment
    between a write and whatever its writer does next, held open for a reader."""

    def __init__(self, lock: RWLock) -> None:
        self._lock = lock
        self.released, self.resume = threading.Event(), threading.Event()

    def read(self) -> Any:
        return self._lock.read()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._lock.write():
            yield
        self.released.set()
        assert self.resume.wait(WEDGED)


def test_the_moderators_clusters_are_never_those_of_before_an_applied_write(served):
    """A reader coming in just after a write released the index (before its writer moves on) gets
    clusters with that write: the cache's key, what the worker has applied, changed with the
    index itself, so clusters computed before the write are not served as current."""
    index_dir, threads = served
    live = LiveIndex(index_dir, FakeEmbedder())
    live.start(60)
    cache = ClusterCache()
    try:
        before = cache.get(live)
        assert "copy" not in {m.thread_id for c in before.clusters for m in c.threads}
        lock = live._rw = _PausedAfterWrites(live._rw)
        copy = dataclasses.replace(threads[0], id="copy", visible_to=())
        writer = threading.Thread(target=live.upsert, args=(copy,), daemon=True)
        writer.start()
        try:
            assert lock.released.wait(WEDGED)
            during = cache.get(live)
        finally:
            lock.resume.set()
            writer.join(WEDGED)
        assert not writer.is_alive()
        assert {threads[0].id, "copy"} <= {m.thread_id for c in during.clusters for m in c.threads}, \
            "clusters from before an applied write served as current"
    finally:
        live.stop()


class _CountedWalks(dict):
    """A dict that counts the walks over it."""

    walks = 0

    def __iter__(self) -> Any:
        type(self).walks += 1
        return super().__iter__()

    def items(self) -> Any:
        type(self).walks += 1
        return super().items()

    def values(self) -> Any:
        type(self).walks += 1
        return super().values()


def test_a_search_never_walks_every_restricted_set_of_groups(tmp_path):
    """A forum's private messages restrict each thread to a set of groups of its own (thousands of
    sets, which stay numbered once their threads are deleted): a caller's search finds what it
    may see from its own groups, not by a walk over every set, and still scores as an index of
    the threads it may see alone."""
    rng = random.Random(15)
    public = _forum(rng, "p", 30)
    private = [_thread(rng, f"m{i}", (f"user{i}", "mods") if i % 2 else (f"user{i}",)) for i in range(2000)]
    index = ForumIndex(FakeEmbedder())
    index.upsert(public + private)
    index.delete([t.id for t in private[1000:]])
    threads = public + private[:1000]
    counted = _CountedWalks(index._audiences)
    index._audiences = counted
    callers = [frozenset(), frozenset({"user7", "grief"}), frozenset({"user8"}), frozenset({"mods"}),
               frozenset({"user1500"})]
    text = "sleep night therapist"
    want = {groups: _expected(threads, text, 5, groups) for groups in callers}
    for groups in callers * 3:
        _same(_answer(index, text, 5, groups), want[groups])
    walks = counted.walks
    assert walks == 0, "a search walked every restricted set of groups"

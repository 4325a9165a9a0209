"""The durable write log, the query cache, and a serving process's live index (fake embedder)."""

import fcntl
import threading

import numpy as np
import pytest
from conftest import TWO_THREADS, FakeEmbedder, two_thread_index

from qa_search import Answer, ForumIndex, LiveIndex, SnapshotError, Thread
from qa_search.embedding.querycache import QueryCache
from qa_search.operations.publishing import publish_with_log
from qa_search.storage.generations import current_generation, rollback
from qa_search.storage.logformat import LOCK_NAME
from qa_search.storage.writelog import WriteLog

BASE = TWO_THREADS


@pytest.fixture
def index_dir(tmp_path):
    return two_thread_index(tmp_path / "idx")


def test_appends_are_read_once_by_every_other_handle(tmp_path):
    writer, reader = WriteLog(tmp_path), WriteLog(tmp_path)
    assert reader.poll() == [] and not reader.changed()
    unseen, first = writer.append_upsert([Thread("x", "title x")])
    assert unseen == [] and first.seq == 1 and first.threads[0].id == "x"
    other = WriteLog(tmp_path)
    unseen, second = other.append_delete(["x"])
    assert [e.seq for e in unseen] == [1] and second.seq == 2  # the other handle catches up first
    assert reader.changed()
    assert [(e.seq, e.op) for e in reader.poll()] == [(1, "upsert"), (2, "delete")]
    assert reader.poll() == [] and not reader.changed()
    # a line still being written is left for the next poll
    with open(tmp_path / "writes.jsonl", "ab") as fh:
        fh.write(b'{"seq": 3, "op": "delete", "ids": ["y"]')
    assert reader.poll() == []
    with open(tmp_path / "writes.jsonl", "ab") as fh:
        fh.write(b"}\n")
    assert [e.ids for e in reader.poll()] == [("y",)]


def test_a_damaged_line_is_an_error_not_a_silent_skip(tmp_path):
    (tmp_path / "writes.jsonl").write_text('{"seq": 1, "op": "upsert", "threads": [{"id": "x"}]}\n')
    with pytest.raises(SnapshotError, match="damaged entry.*'title'"):
        WriteLog(tmp_path).poll()


def test_a_damaged_line_stops_writes_but_not_searches_and_skips_nothing(index_dir):
    a, b = LiveIndex(index_dir, FakeEmbedder()), LiveIndex(index_dir, FakeEmbedder())
    # a thread no dump line could hold is refused before it reaches the shared log
    with pytest.raises(ValueError, match="thread '2'.*'score'"):
        a.upsert([Thread("2", "rice?", score=3.5)])
    a.upsert(Thread("c", "feeling lonely after moving city"))  # one Thread, as ForumIndex takes
    log_path = index_dir / "writes.jsonl"
    good = log_path.read_bytes()
    with open(log_path, "ab") as fh:  # damaged by hand (or a disk fault), then a good write after it
        fh.write(b'{"seq": 2, "op": "upsert", "threads": [{"id": "x"}]}\n')
        fh.write(b'{"seq": 3, "op": "delete", "ids": ["a"]}\n')
    for _ in range(2):  # every read still answers, over what was applied before the damage
        with b.reading() as index:
            assert "c" in index and "a" in index
    damaged = log_path.read_bytes()
    # a write is refused, not renumbered, and the message names the line of the file
    with pytest.raises(SnapshotError, match=r"writes.jsonl, line 3, holds a damaged entry"):
        b.upsert([Thread("d", "new thread")])
    with LiveIndex(index_dir, FakeEmbedder()).reading() as index:  # a (re)starting worker serves too
        assert "c" in index and "a" in index
    assert log_path.read_bytes() == damaged
    # once the line is repaired, the entries after it are applied, none skipped
    log_path.write_bytes(good + b'{"seq": 2, "op": "delete", "ids": ["b"]}\n'
                         b'{"seq": 3, "op": "delete", "ids": ["a"]}\n')
    with b.reading() as index:
        assert "c" in index and "a" not in index and "b" not in index
    assert b.upsert([Thread("d", "new thread")]).seq == 4


def test_a_build_refuses_a_damaged_log_and_publishes_nothing(index_dir):
    LiveIndex(index_dir, FakeEmbedder()).upsert([Thread("c", "feeling lonely after moving city")])
    with open(index_dir / "writes.jsonl", "ab") as fh:
        fh.write(b'{"seq": 2, "op": "delete"}\n')
    fresh = ForumIndex(FakeEmbedder())
    fresh.upsert(BASE)
    with pytest.raises(SnapshotError, match="damaged entry"):
        publish_with_log(fresh, index_dir)
    assert current_generation(index_dir) == 1 and len(WriteLog(index_dir).read_all()) == 1


def test_a_build_folds_the_log_into_the_next_generation(index_dir):
    log = WriteLog(index_dir)
    log.append_upsert([Thread("c", "feeling lonely after moving city")])
    log.append_delete(["a"])
    fresh = ForumIndex(FakeEmbedder())
    fresh.upsert(BASE)
    path, folded = publish_with_log(fresh, index_dir)
    assert folded == 2 and path.name == "000002"
    assert sorted(t.id for t in ForumIndex.load(index_dir, FakeEmbedder()).threads()) == ["b", "c"]
    after = WriteLog(index_dir)
    assert after.read_all() == [] and after.last_seq == 2  # seq keeps counting after compaction
    _, entry = after.append_delete(["b"])
    assert entry.seq == 3 and entry.generation == 2


class _LockProbingEmbedder(FakeEmbedder):
    """Records, for each text it embeds, whether the write log's lock was free at the time."""

    def __init__(self, index_dir):
        super().__init__()
        self.lock_path = index_dir / LOCK_NAME
        self.seen: dict[str, bool] = {}

    def encode(self, texts, batch_size=64):
        with open(self.lock_path, "a+b") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                free = True
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            except BlockingIOError:
                free = False
        self.seen.update(dict.fromkeys(texts, free))
        return super().encode(texts, batch_size=batch_size)


def test_a_build_embeds_the_pending_writes_before_it_locks_the_log(index_dir):
    # the service's writes wait on the log's lock: a build must not hold it while it embeds
    log = WriteLog(index_dir)
    log.append_upsert([Thread("c", "feeling lonely after moving", answers=(Answer("c1", "join a club"),))])
    log.append_upsert([Thread("c", "feeling lonely after moving, edited")])
    model = _LockProbingEmbedder(index_dir)
    fresh = ForumIndex(model)
    fresh.upsert(BASE)
    model.seen.clear()
    path, folded = publish_with_log(fresh, index_dir)
    assert folded == 2
    assert any("join a club" in t for t in model.seen) and any("edited" in t for t in model.seen)
    assert all(model.seen.values()), model.seen  # every one embedded with the lock free
    rebuilt = ForumIndex.load(index_dir, FakeEmbedder())
    assert rebuilt.search("lonely after moving edited", k=1)[0].thread_id == "c"
    assert [t.title for t in rebuilt.threads() if t.id == "c"] == ["feeling lonely after moving, edited"]


def test_query_cache_is_an_lru_with_counters():
    inner = FakeEmbedder()
    cache = QueryCache(inner, maxsize=2)
    first = cache.encode(["one", "two", "one"])
    np.testing.assert_allclose(first, inner.encode(["one", "two", "one"]))
    assert (cache.hits, cache.misses) == (0, 3) and len(cache) == 2
    cache.encode(["one"])  # hit: "one" becomes the most recent, so "two" is evicted next
    cache.encode(["three"])
    calls = inner.calls
    cache.encode(["one"])
    assert inner.calls == calls
    cache.encode(["two"])
    assert inner.calls == calls + 1
    assert cache.hits == 2 and cache.hit_rate == pytest.approx(2 / 7)


def test_workers_share_writes_and_keep_them_across_a_swap_and_a_restart(index_dir):
    one, two = LiveIndex(index_dir, FakeEmbedder()), LiveIndex(index_dir, FakeEmbedder())
    one.upsert([Thread("c", "feeling lonely after moving city")])
    two.delete(["a"])  # two catches up with one's write before logging its own
    with one.reading() as index:  # one applies two's delete on its next read
        assert sorted(t.id for t in index.threads()) == ["b", "c"]

    # an operator publishes a generation that knows nothing of the live writes
    newer = ForumIndex(FakeEmbedder())
    newer.upsert([*BASE, Thread("d", "my dog died and I cannot stop crying")])
    newer.save(index_dir)
    assert one.check_generation() and one.generation == current_generation(index_dir) == 2
    with one.reading() as index:
        assert sorted(t.id for t in index.threads()) == ["b", "c", "d"]
    restarted = LiveIndex(index_dir, FakeEmbedder())
    with restarted.reading() as index:
        assert sorted(t.id for t in index.threads()) == ["b", "c", "d"]
    assert not restarted.check_generation()


def test_a_rollback_is_swapped_in_like_a_publish(index_dir):
    live = LiveIndex(index_dir, FakeEmbedder())
    newer = ForumIndex(FakeEmbedder())
    newer.upsert([*BASE, Thread("d", "my dog died and I cannot stop crying")])
    newer.save(index_dir)
    assert live.check_generation() and "d" in live.index
    rollback(index_dir, to=1)
    assert live.check_generation() and live.generation == 1 and "d" not in live.index
    rollback(index_dir, to=2)  # and forward again
    assert live.check_generation() and live.generation == 2 and "d" in live.index
    assert not live.check_generation()


def test_searches_keep_running_while_a_generation_is_swapped(index_dir):
    live = LiveIndex(index_dir, FakeEmbedder())
    errors, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                with live.reading() as index:
                    assert index.search("sleep better", k=2)
            except Exception as exc:  # noqa: BLE001 - any failure fails the test
                errors.append(exc)

    workers = [threading.Thread(target=client) for _ in range(4)]
    for w in workers:
        w.start()
    for n in range(3):
        newer = ForumIndex(FakeEmbedder())
        newer.upsert([*BASE, Thread(f"n{n}", f"new thread number {n}")])
        newer.save(index_dir)
        assert live.check_generation()
    stop.set()
    for w in workers:
        w.join()
    assert errors == [] and live.generation == 4 and "n2" in live.index


class _GatedEmbedder(FakeEmbedder):
    """Blocks while embedding any text containing "gated" until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def encode(self, texts, *, batch_size=64):
        if any("gated" in t for t in texts):
            self.entered.set()
            assert self.release.wait(30)
        return super().encode(texts, batch_size=batch_size)


def test_a_write_embeds_before_it_locks_so_searches_are_not_held_up(index_dir):
    model = _GatedEmbedder()
    live = LiveIndex(index_dir, model)
    writer = threading.Thread(target=live.upsert, args=([Thread("g", "a gated thread about sleep")],))
    writer.start()
    assert model.entered.wait(30)  # the write is embedding now
    found = []

    def search() -> None:
        with live.reading() as index:
            found.append(index.search("sleep", k=1))

    reader = threading.Thread(target=search)
    reader.start()
    reader.join(10)
    assert not reader.is_alive() and found[0][0].thread_id == "a"  # answered during the write
    model.release.set()
    writer.join(10)
    assert not writer.is_alive()
    with live.reading() as index:
        assert index.search("gated thread about sleep", k=1)[0].thread_id == "g"


def test_the_watcher_logs_a_damaged_line_once_and_a_snapshot_is_served_read_only(index_dir, caplog):
    import logging
    import time

    from qa_search.errors import ReadOnlyIndexError

    live = LiveIndex(index_dir, FakeEmbedder())
    with open(index_dir / "writes.jsonl", "ab") as fh:
        fh.write(b'{"seq": 1, "op": "delete"}\n')
    caplog.set_level(logging.INFO, logger="qa_search")
    live.start(0.01)
    time.sleep(0.3)
    live.stop()
    damage = [r for r in caplog.records if "damaged" in r.getMessage()]
    assert len(damage) == 1 and not any("watcher failed" in r.getMessage() for r in caplog.records)
    snapshot = LiveIndex(index_dir / "generations" / "000001", FakeEmbedder())
    with pytest.raises(ReadOnlyIndexError, match="single snapshot, served read-only"):
        snapshot.upsert([Thread("x", "a write no build would fold in")])
    with pytest.raises(ReadOnlyIndexError):
        snapshot.delete(["a"])
    assert not (index_dir / "generations" / "000001" / "writes.jsonl").exists()


def test_a_line_repaired_in_place_with_the_same_size_is_read_again(index_dir):
    import os

    a = LiveIndex(index_dir, FakeEmbedder())
    log_path = index_dir / "writes.jsonl"
    a.upsert(Thread("c", "feeling lonely after moving city"))
    good = b'{"seq": 2, "op": "delete", "ids": ["a"]}\n'
    bad = b'{"seq": 2, "op": "delete", "idz": ["a"]}\n'  # the same length as the good line
    with open(log_path, "ab") as fh:
        fh.write(bad)
    stamp = os.stat(log_path)
    with pytest.raises(SnapshotError, match="damaged entry"):
        a.catch_up()
    with pytest.raises(SnapshotError, match="damaged entry"):  # remembered, not re-read
        a.catch_up()
    log_path.write_bytes(log_path.read_bytes().replace(bad, good))  # repaired in place
    os.utime(log_path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # a coarse clock: same mtime
    a.catch_up()
    with a.reading() as index:
        assert "a" not in index

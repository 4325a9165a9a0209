"""Conditional writes: a read-modify-write passes the threads as it read them (``expected``), and
the write is logged only where no write logged since, by this process or another on the same
index directory, changed one of them, and no generation published since the one it read from
(a sync, an update, a build, a rollback) changed one of them; the check and the append are one
step under the log's lock."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import FakeEmbedder

from qa_search import (
    Answer,
    ForumIndex,
    LiveIndex,
    Thread,
    WriteConflictError,
    delete_threads,
    rollback_index,
    update_index,
)
from qa_search.operations.lifecycle import build_index
from qa_search.storage.layout import CHANGED_NAME, generation_path
from qa_search.storage.writelog import WriteLog, published_over, serving_generation


@pytest.fixture
def index_dir(tmp_path):
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread("a", "Trouble sleeping before exams"),
                  Thread("b", "Talking to a parent about therapy")])
    index.save(tmp_path / "index")
    return tmp_path / "index"


def _log_size(index_dir) -> int:
    path = index_dir / "writes.jsonl"
    return path.stat().st_size if path.exists() else 0


def test_a_write_whose_thread_another_process_logged_since_its_read_is_refused(index_dir):
    mine, other = LiveIndex(index_dir, FakeEmbedder()), LiveIndex(index_dir, FakeEmbedder())
    read = mine.current("a")
    other.upsert(Thread("a", "Trouble sleeping before exams", body="their part"))
    size = _log_size(index_dir)
    with pytest.raises(WriteConflictError, match="thread 'a' changed since it was read") as caught:
        mine.upsert(Thread("a", read.title, body="my part"), expected={"a": read})
    assert "my part" not in str(caught.value) and _log_size(index_dir) == size
    # the other's write is applied by then: read again, the write goes through on top of it
    again = mine.current("a")
    assert again.body == "their part"
    mine.upsert(Thread("a", again.title, body="their part, my part"), expected={"a": again})
    assert other.current("a").body == "their part, my part"


def test_writes_to_other_threads_and_an_unchanged_thread_are_no_conflict(index_dir):
    mine, other = LiveIndex(index_dir, FakeEmbedder()), LiveIndex(index_dir, FakeEmbedder())
    read, absent = mine.current("a"), mine.current("new")
    other.upsert(Thread("b", "Talking to a parent about therapy", body="edited"))
    other.delete("zzz")  # names no thread this write read
    entry = mine.upsert([Thread("a", read.title, body="mine"), Thread("new", "A new question")],
                        expected={"a": read, "new": absent})
    assert entry.seq == 3 and other.current("new").title == "A new question"


def test_a_thread_written_here_since_its_read_or_created_meanwhile_is_a_conflict(index_dir):
    live = LiveIndex(index_dir, FakeEmbedder())
    read, absent = live.current("a"), live.current("c")
    live.upsert(Thread("a", read.title, extra={"note": 1}))  # the same fields: only extra differs
    with pytest.raises(WriteConflictError):
        live.upsert(Thread("a", "Another title"), expected={"a": read})
    LiveIndex(index_dir, FakeEmbedder()).upsert(Thread("c", "Created by another process"))
    with pytest.raises(WriteConflictError):
        live.upsert(Thread("c", "Created here"), expected={"c": absent})
    assert live.current("c").title == "Created by another process"


def test_a_conditional_delete_is_refused_after_another_write_and_goes_through_otherwise(index_dir):
    mine, other = LiveIndex(index_dir, FakeEmbedder()), LiveIndex(index_dir, FakeEmbedder())
    read = mine.current("b")
    other.upsert(Thread("b", "Talking to a parent about therapy", body="a new answer's worth"))
    with pytest.raises(WriteConflictError):
        mine.delete("b", expected={"b": read})
    assert other.current("b") is not None
    entry = mine.delete("b", expected={"b": mine.current("b")})
    assert entry.ids == ("b",) and other.current("b") is None


def test_a_refused_large_write_removes_the_vectors_it_kept_for_the_other_workers(index_dir):
    mine, other = LiveIndex(index_dir, FakeEmbedder()), LiveIndex(index_dir, FakeEmbedder())
    kept = index_dir / "write-vectors"
    answers = tuple(Answer(f"r{i}", f"reply number {i} about exam nerves") for i in range(20))
    read = mine.current("a")
    other.upsert(Thread("a", read.title, body="theirs"))  # seen only at the log's append
    with pytest.raises(WriteConflictError):
        mine.upsert(Thread("a", read.title, answers=answers), expected={"a": read})
    mine.upsert(Thread("b", "Talking to a parent about therapy", body="mine"))
    with pytest.raises(WriteConflictError):  # seen by the check before the append
        mine.upsert(Thread("b", "Another title", answers=answers[::-1]), expected={"b": read})
    assert len(list(kept.glob("*.npz"))) == 0
    # one that goes through keeps its file, named by its entry
    entry = mine.upsert(Thread("a", read.title, answers=answers), expected={"a": mine.current("a")})
    assert [p.name for p in kept.glob("*.npz")] == [f"{entry.id}.npz"]


def test_the_log_appends_nothing_when_an_unread_entry_touches_a_guarded_thread(index_dir):
    reader, writer = WriteLog(index_dir), WriteLog(index_dir)
    _, first = writer.append_upsert([Thread("x", "title x")])
    _, gone = writer.append_delete(["y"])
    unseen, entry = reader.append_upsert([Thread("y", "title y")], unless_changed={"y"})
    assert entry is None and [e.seq for e in unseen] == [first.seq, gone.seq]
    assert reader.last_seq == gone.seq and [e.seq for e in WriteLog(index_dir).read_all()] == [1, 2]
    # read now: the next append goes through, numbered after them
    unseen, entry = reader.append_delete(["x"], unless_changed={"x", "y"})
    assert unseen == [] and entry is not None and entry.seq == 3


# -- generations published since the read --------------------------------------------------------


def test_a_write_over_a_publish_not_loaded_yet_is_refused_for_the_threads_it_changed(index_dir):
    """An update (what an incremental sync publishes) changes thread a in generation 2; a worker
    still serving generation 1 read a there. Its write to a would be replayed over the update's
    version of a, so it is refused; its write to b, which the update did not change, is not."""
    worker = LiveIndex(index_dir, FakeEmbedder())  # no watcher: it loads only when told to
    read_a, read_b = worker.current("a"), worker.current("b")
    update_index(index_dir, [Thread("a", read_a.title, answers=(Answer("s1", "the sync's reply"),))],
                 FakeEmbedder())
    assert worker.generation == 1 and serving_generation(index_dir) == 2
    size = _log_size(index_dir)
    with pytest.raises(WriteConflictError):
        worker.upsert(replace(read_a, body="the event's part"), expected={"a": read_a})
    assert _log_size(index_dir) == size  # nothing logged
    worker.upsert(replace(read_b, body="edited"), expected={"b": read_b})
    assert worker.check_generation() and worker.generation == 2
    again = worker.current("a")
    worker.upsert(replace(again, body="the event's part"), expected={"a": again})
    fresh = LiveIndex(index_dir, FakeEmbedder())
    a, b = fresh.current("a"), fresh.current("b")
    assert [x.body for x in a.answers] == ["the sync's reply"] and a.body == "the event's part"
    assert b.body == "edited"


def test_a_conditional_delete_over_a_publish_that_deleted_or_changed_its_thread_is_refused(index_dir):
    worker = LiveIndex(index_dir, FakeEmbedder())
    read_a, read_b = worker.current("a"), worker.current("b")
    delete_threads(index_dir, ["b"], FakeEmbedder())
    with pytest.raises(WriteConflictError):
        worker.upsert(replace(read_b, body="recreated by a stale read"), expected={"b": read_b})
    worker.delete("a", expected={"a": read_a})  # the publish did not change a
    worker.check_generation()
    assert worker.current("a") is None and worker.current("b") is None


def test_a_full_build_conflicts_every_conditional_write_until_it_is_loaded(index_dir):
    worker = LiveIndex(index_dir, FakeEmbedder())
    read = worker.current("b")
    build_index(index_dir, [Thread("a", "Trouble sleeping before exams"),
                            Thread("b", "Talking to a parent about therapy")], FakeEmbedder())
    with pytest.raises(WriteConflictError):
        worker.upsert(replace(read, body="mine"), expected={"b": read})
    with pytest.raises(WriteConflictError):
        worker.delete("b", expected={"b": read})
    worker.upsert(replace(read, body="unconditional"))  # a plain write is never refused
    worker.check_generation()
    again = worker.current("b")
    worker.upsert(replace(again, body="mine"), expected={"b": again})
    assert LiveIndex(index_dir, FakeEmbedder()).current("b").body == "mine"


def test_a_generation_without_the_record_counts_as_changing_every_thread(index_dir):
    worker = LiveIndex(index_dir, FakeEmbedder())
    read = worker.current("b")
    update_index(index_dir, [Thread("a", "Trouble sleeping before exams", body="changed")], FakeEmbedder())
    # as a generation published before the record existed
    (generation_path(index_dir, 2) / CHANGED_NAME).unlink()
    with pytest.raises(WriteConflictError):
        worker.upsert(replace(read, body="mine"), expected={"b": read})


def test_the_walk_stops_at_the_generation_read_and_refuses_a_line_that_does_not_hold_it(index_dir):
    update_index(index_dir, [Thread("a", "Trouble sleeping before exams", body="2")], FakeEmbedder())
    update_index(index_dir, [Thread("c", "A third thread")], FakeEmbedder())
    # generation 1 recorded nothing (saved directly): "all", but it is the one read, not walked
    assert not published_over(index_dir, 3, 1, {"b"}) and published_over(index_dir, 3, 1, {"a"})
    assert not published_over(index_dir, 3, 2, {"a"}) and published_over(index_dir, 3, 2, {"c"})
    assert published_over(index_dir, 2, 3, {"b"})  # rolled back below the generation read
    assert published_over(index_dir, None, 2, {"b"}) is True


def test_a_rollback_below_the_generation_a_worker_read_from_refuses_its_conditional_writes(index_dir):
    update_index(index_dir, [Thread("a", "Trouble sleeping before exams", body="2")], FakeEmbedder())
    worker = LiveIndex(index_dir, FakeEmbedder())
    read = worker.current("b")
    rollback_index(index_dir, 1)
    with pytest.raises(WriteConflictError):
        worker.upsert(replace(read, body="mine"), expected={"b": read})

"""Conditional writes: a read-modify-write passes the threads as it read them (``expected``), and
the write is logged only where no write logged since, by this process or another on the same
index directory, changed one of them; the check and the append are one step under the log's lock."""

from __future__ import annotations

import pytest
from conftest import FakeEmbedder

from qa_search import ForumIndex, LiveIndex, Thread, WriteConflictError
from qa_search.storage.writelog import WriteLog


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

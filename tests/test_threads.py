import gzip
import json

import pytest

from qa_search import Answer, DumpFormatError, Thread, read_dump, thread_from_dict, write_dump
from qa_search.index.parts import ANSWER, QUESTION, chunk_words, thread_parts
from qa_search.threads import checked_thread


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_minimal_and_full_threads_are_read(tmp_path):
    full = {
        "id": "t1",
        "title": " Can't sleep ",
        "body": "Every night.",
        "answers": [{"id": "a1", "body": "Try a routine.", "score": 3, "accepted": True}],
        "tags": ["sleep"],
        "category": "sleep",
        "created_at": "2025-01-01T00:00:00Z",
        "score": 4,
        "url": "https://x/t1",
        "views": 10,
    }
    path = _write(tmp_path / "d.jsonl", [json.dumps({"id": 7, "title": "Hi"}), "", json.dumps(full)])
    a, b = list(read_dump(path))
    assert a == Thread(id="7", title="Hi")
    assert b.title == "Can't sleep" and b.answers == (Answer("a1", "Try a routine.", 3, True),)
    assert b.tags == ("sleep",) and b.extra == {"views": 10}
    assert b.question_text == "Can't sleep\nEvery night."


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "invalid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"title": "no id"}', "missing required field 'id'"),
        ('{"id": "x"}', "missing required field 'title'"),
        ('{"id": "x", "title": "   "}', "'title' must not be empty"),
        (
            '{"id": "x", "title": "t", "answers": [{"id": "a", "body": ""}]}',
            "answers[0].body must not be empty",
        ),
        (
            '{"id": "x", "title": "t", "answers": [{"id": "a", "body": "b"}, {"id": "a", "body": "c"}]}',
            "repeated",
        ),
        ('{"id": "x", "title": "t", "score": "high"}', "'score' must be int"),
        ('{"id": "x", "title": "t", "tags": "anxiety"}', "'tags' must be list"),
        # a wrong value is an error even when it is falsy, not a default
        ('{"id": "x", "title": "t", "body": 0}', "'body' must be str"),
        ('{"id": "x", "title": "t", "body": []}', "'body' must be str"),
        ('{"id": "x", "title": "t", "answers": {}}', "'answers' must be list"),
        ('{"id": "x", "title": "t", "score": false}', "'score' must be an integer"),
        ('{"id": "x", "title": "t", "answers": [{"body": "b", "accepted": 0}]}', "accepted must be bool"),
        ('{"id": "x", "title": "bad \\ud800 text"}', "'title' holds a lone surrogate"),
        ('{"id": "x", "title": "t", "answers": [{"body": "\\udfff"}]}', "answers[0].body holds a lone"),
        ('{"id": "x", "title": "t", "note": "\\ud800"}', "extra fields cannot be stored"),
    ],
)
def test_malformed_line_names_file_line_and_reason(tmp_path, line, reason):
    path = _write(tmp_path / "bad.jsonl", [json.dumps({"id": "ok", "title": "fine"}), "", line])
    with pytest.raises(DumpFormatError) as err:
        list(read_dump(path))
    assert err.value.line == 3
    assert err.value.path == str(path)
    assert reason in str(err.value)
    assert str(err.value).startswith(f"{path}, line 3:")


def test_invalid_utf8_is_reported_with_its_line(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b'{"id": "1", "title": "ok"}\n{"id": "2", "title": "\xff\xfe"}\n')
    with pytest.raises(DumpFormatError, match="line 2: not valid UTF-8"):
        list(read_dump(path))


def test_gzip_dump_round_trip(tmp_path):
    threads = [
        Thread("a", "First?", "body", (Answer("a1", "yes", 2, True),), ("x", "y"), "c", None, 1, "u"),
        Thread("b", "Second?"),
    ]
    path = tmp_path / "d.jsonl.gz"
    assert write_dump(threads, path) == 2
    with gzip.open(path, "rt") as fh:
        assert len(fh.readlines()) == 2
    assert list(read_dump(path)) == threads


def test_missing_dump_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="dump file not found"):
        list(read_dump(tmp_path / "nope.jsonl"))


def test_chunking_covers_every_word_with_overlap():
    words = [f"w{i}" for i in range(45)]
    chunks = chunk_words(" ".join(words), size=20, overlap=5)
    assert [c.split()[0] for c in chunks] == ["w0", "w15", "w30"]
    assert all(len(c.split()) <= 20 for c in chunks)
    assert chunks[-1].split()[-1] == "w44"
    assert chunk_words("  short   text ", 20, 5) == ["short text"]
    with pytest.raises(ValueError):
        chunk_words("x", 10, 10)


def test_thread_parts_question_first_then_answer_chunks():
    long_body = " ".join(["word"] * 50)
    t = Thread("t", "Title", "Body", (Answer("a1", "short"), Answer("a2", long_body)))
    parts = thread_parts(t, chunk_size=20, chunk_overlap=5)
    assert [(p.kind, p.answer_id, p.chunk) for p in parts] == [
        (QUESTION, None, 0),
        (ANSWER, "a1", 0),
        (ANSWER, "a2", 0),
        (ANSWER, "a2", 1),
        (ANSWER, "a2", 2),
    ]
    assert parts[0].text == "Title\nBody"


def test_a_byte_order_mark_and_null_fields_are_read(tmp_path):
    path = tmp_path / "bom.jsonl"
    first = b'{"id": "1", "title": "first", "body": null, "answers": null, "score": null}\n'
    path.write_bytes(b"\xef\xbb\xbf" + first + b'{"id": "2", "title": "second"}\n')
    assert [t.id for t in read_dump(path)] == ["1", "2"]


@pytest.mark.parametrize(
    ("thread", "reason"),
    [
        (Thread("x", "rice", answers=(Answer("a", ""),)), r"thread 'x': answers\[0\].body must not be empty"),
        (Thread("x", "rice", answers=(Answer("a", "b"), Answer("a", "c"))), "repeated"),
        (Thread("x", "rice", score=2.5), "'score' must be int"),
        (Thread("x", "  "), "'title' must not be empty"),
        (Thread("x", "rice", extra={"title": "other"}), "'extra' holds keys that are thread fields: title"),
        (Thread("x", "rice", tags="anxiety"), "'tags' and 'answers' must be sequences"),
        (Thread("x", "bad \ud800"), "lone surrogate"),
    ],
)
def test_checked_thread_refuses_what_a_dump_line_could_not_hold(thread, reason):
    with pytest.raises(ValueError, match=reason):
        checked_thread(thread)


def test_checked_thread_normalises_as_a_dump_round_trip_does():
    got = checked_thread(Thread(5, "  padded title ", body=" b ", tags=("x", " ")))
    assert got == Thread("5", "padded title", body="b", tags=("x",))
    with pytest.raises(TypeError, match="expected a Thread, got dict"):
        checked_thread({"id": "1", "title": "t"})


def test_write_dump_refuses_a_bad_thread_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("previous content\n")
    with pytest.raises(ValueError, match="thread 'b'"):
        write_dump([Thread("a", "fine"), Thread("b", "bad \ud800")], path)
    assert path.read_text() == "previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_a_thread_is_checked_once_where_it_comes_in_and_trusted_inside():
    import dataclasses

    read = thread_from_dict({"id": 7, "title": "  How do I sleep?  "})
    assert read.id == "7" and read.title == "How do I sleep?"
    # a record the dump reader built is the record the library keeps, not a re-validated copy
    assert checked_thread(read) is read
    # one built by hand is checked and normalised at the library's entry...
    by_hand = Thread("8", "  Why can't I sleep?  ")
    checked = checked_thread(by_hand)
    assert checked is not by_hand and checked.title == "Why can't I sleep?"
    assert checked_thread(checked) is checked
    # ...and so is a copy changed after it was checked
    with pytest.raises(ValueError, match="title"):
        checked_thread(dataclasses.replace(read, title="   "))

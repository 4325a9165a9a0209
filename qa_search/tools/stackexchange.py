"""Reading a Stack Exchange data dump: ``Posts.xml`` (questions, answers by ``ParentId``,
accepted answer, score, tags, closed state) as threads, and ``PostLinks.xml`` (duplicate links,
``LinkTypeId`` 3) as labelled pairs for evaluation and calibration, with the pairs' writer.

Everything streams: memory does not grow with the size of the file. In ``Posts.xml`` answers
may come before or long after their question, so questions and answers are first spooled into
a temporary SQLite database on disk (indexed by parent) and threads are assembled from there.

Malformed input raises :class:`DumpFormatError` (file, line, reason); with ``on_error`` the error
is passed to it and reading goes on, so the caller can skip and report. What real dumps hold
and an import can safely pass over (an answer with no text, not even an image's ``alt``) is not
an error: it goes to ``on_skip`` (default: a logged warning) and the import goes on.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import tempfile
import xml.parsers.expat
from collections.abc import Container, Iterable, Iterator
from pathlib import Path

from qa_search.dumps import check_input, replacing
from qa_search.errors import DumpFormatError
from qa_search.threads import Thread, thread_from_dict
from qa_search.tools.fields import OnError, html_to_text, parse_int, parse_tags

log = logging.getLogger(__name__)


def _iter_rows(path: Path) -> Iterator[tuple[dict, int]]:
    """The attributes and line of every ``<row>`` of a Stack Exchange XML file, streamed."""
    check_input(path)
    parser = xml.parsers.expat.ParserCreate()
    rows: list[tuple[dict, int]] = []

    def start(name: str, attrs: dict) -> None:
        if name == "row":
            rows.append((attrs, parser.CurrentLineNumber))

    parser.StartElementHandler = start
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            try:
                parser.Parse(chunk, not chunk)
            except xml.parsers.expat.ExpatError as exc:
                reason = xml.parsers.expat.errors.messages.get(exc.code, str(exc))
                raise DumpFormatError(str(path), exc.lineno, f"malformed XML: {reason}") from exc
            yield from rows  # at most one chunk's rows are held at a time
            rows.clear()
            if not chunk:
                return


def read_stackexchange_posts(
    path: str | Path,
    *,
    on_error: OnError | None = None,
    site_url: str | None = None,
    workdir: str | Path | None = None,
    on_skip: OnError | None = None,
) -> Iterator[Thread]:
    """Stream the threads of a Stack Exchange ``Posts.xml``, in the order of their questions.

    Questions (``PostTypeId`` 1) become threads; answers (``PostTypeId`` 2) join the question
    named by their ``ParentId``; the answer named by ``AcceptedAnswerId`` is marked accepted.
    Bodies are HTML turned into text; ``ClosedDate`` is kept as ``closed_at``. With
    ``site_url`` (``https://cooking.stackexchange.com``) each thread gets its URL. Other post
    types (tag wikis and the like) are not threads and are passed over. An answer whose
    question is not in the file is an error (file, line, reason), like a malformed row. An
    answer with no text (an image without ``alt`` text, an empty body) is passed to ``on_skip``
    and left out: real dumps have them, and they carry nothing to search. ``workdir`` holds
    the temporary database (default: the system's temporary directory).
    """
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="qa-search-import-", dir=workdir) as tmp:
        db = sqlite3.connect(Path(tmp) / "posts.sqlite")
        try:
            yield from _threads_from_posts(db, path, on_error, site_url, on_skip or _log_skip)
        finally:
            db.close()


def _log_skip(err: DumpFormatError) -> None:
    log.warning("skipped %s", err)


def _report(err: DumpFormatError, on_error: OnError | None) -> None:
    if on_error is None:
        raise err
    on_error(err)


def _threads_from_posts(
    db: sqlite3.Connection, path: Path, on_error: OnError | None, site_url: str | None, on_skip: OnError
) -> Iterator[Thread]:
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TABLE q (id TEXT PRIMARY KEY, line INTEGER, data TEXT)")
    db.execute("CREATE TABLE a (parent TEXT, line INTEGER, data TEXT)")
    db.execute("CREATE TABLE skipped (id TEXT PRIMARY KEY)")  # questions reported as invalid

    for attrs, line in _iter_rows(path):
        kind = attrs.get("PostTypeId")
        pid = attrs.get("Id", "").strip()
        try:
            if kind not in ("1", "2"):
                continue
            if not pid:
                raise ValueError("row has no Id")
            if kind == "1":
                if not attrs.get("Title", "").strip():
                    db.execute("INSERT OR IGNORE INTO skipped VALUES (?)", (pid,))
                    raise ValueError(f"question {pid} has no Title")
                db.execute("INSERT INTO q VALUES (?, ?, ?)", (pid, line, json.dumps(attrs)))
            else:
                parent = attrs.get("ParentId", "").strip()
                if not parent:
                    raise ValueError(f"answer {pid} has no ParentId")
                db.execute("INSERT INTO a VALUES (?, ?, ?)", (parent, line, json.dumps(attrs)))
        except sqlite3.IntegrityError:
            _report(DumpFormatError(str(path), line, f"question {pid} appears twice"), on_error)
        except ValueError as exc:
            _report(DumpFormatError(str(path), line, str(exc)), on_error)
    db.execute("CREATE INDEX a_parent ON a (parent)")
    orphans = db.execute(
        "SELECT a.line, a.parent, s.id IS NOT NULL FROM a LEFT JOIN skipped s ON s.id = a.parent"
        " WHERE a.parent NOT IN (SELECT id FROM q) ORDER BY a.rowid"
    )
    for line, parent, question_skipped in orphans:
        where = "which was skipped as invalid" if question_skipped else "which is not in the file"
        _report(DumpFormatError(str(path), line, f"answer to question {parent}, {where}"), on_error)
    questions = db.execute("SELECT id, line, data FROM q ORDER BY rowid")
    for qid, line, data in questions:
        q = json.loads(data)
        accepted = q.get("AcceptedAnswerId")
        answers = []
        for aline, adata in db.execute("SELECT line, data FROM a WHERE parent = ? ORDER BY rowid", (qid,)):
            a = json.loads(adata)
            body = html_to_text(a.get("Body", ""))
            if not body:
                on_skip(DumpFormatError(str(path), aline, f"answer {a['Id']} has no text"))
                continue
            try:
                score = parse_int(a.get("Score", "0"), f"answer {a['Id']}'s Score")
            except ValueError as exc:
                _report(DumpFormatError(str(path), aline, str(exc)), on_error)
                continue
            answers.append({"id": a["Id"], "body": body, "score": score, "accepted": a["Id"] == accepted})
        obj = {
            "id": qid,
            "title": q["Title"],
            "body": html_to_text(q.get("Body", "")),
            "answers": answers,
            "tags": parse_tags(q.get("Tags", "")),
            "created_at": q.get("CreationDate"),
            "url": f"{site_url.rstrip('/')}/questions/{qid}" if site_url else None,
        }
        try:
            obj["score"] = parse_int(q.get("Score", "0"), "Score")
            if q.get("ClosedDate"):
                obj["closed_at"] = q["ClosedDate"]
            thread = thread_from_dict(obj)
        except ValueError as exc:
            _report(DumpFormatError(str(path), line, str(exc)), on_error)
            continue
        yield thread


def stackexchange_question_ids(path: str | Path) -> set[str]:
    """The ids of the questions (``PostTypeId`` 1) in a Stack Exchange ``Posts.xml``, streamed."""
    return {
        attrs.get("Id", "").strip() for attrs, _ in _iter_rows(Path(path)) if attrs.get("PostTypeId") == "1"
    }


def read_stackexchange_duplicates(
    path: str | Path,
    *,
    on_error: OnError | None = None,
    questions: Container[str] | None = None,
    on_skip: OnError | None = None,
    on_repeat: OnError | None = None,
) -> Iterator[tuple[str, str]]:
    """The duplicate links of a Stack Exchange ``PostLinks.xml`` (``LinkTypeId`` 3), as
    ``(post id, duplicate of)`` pairs in file order, each pair once.

    With ``questions`` (the ids :func:`stackexchange_question_ids` reads from the dump's
    ``Posts.xml``), a link naming a post that is not there (deleted posts keep their links) is
    passed to ``on_skip`` (default: a logged warning) and left out, so every pair written
    names two threads an index built from the same dump has. A link between two posts already
    paired, either way round (two questions closed as duplicates of each other, a link recorded
    twice), is passed to ``on_repeat`` (default: a logged warning) and left out: written twice it
    would weigh twice in eval, calibrate and tune."""
    path = Path(path)
    skip = on_skip or _log_skip
    paired: set[frozenset[str]] = set()
    for attrs, line in _iter_rows(path):
        if attrs.get("LinkTypeId") != "3":
            continue
        a, b = attrs.get("PostId", "").strip(), attrs.get("RelatedPostId", "").strip()
        if not a or not b:
            _report(
                DumpFormatError(str(path), line, "duplicate link without PostId or RelatedPostId"), on_error
            )
            continue
        if questions is not None:
            missing = [p for p in (a, b) if p not in questions]
            if missing:
                reason = f"duplicate link of post {missing[0]}, not in Posts.xml"
                skip(DumpFormatError(str(path), line, reason))
                continue
        if frozenset((a, b)) in paired:
            (on_repeat or _log_skip)(DumpFormatError(str(path), line, "a link between posts already paired"))
            continue
        paired.add(frozenset((a, b)))
        yield a, b


def write_pairs(pairs: Iterable[tuple[str, str]], path: str | Path) -> int:
    """Write labelled duplicate pairs as JSONL ``{"id1", "id2", "label": 1}``; returns the count.

    The file is written beside ``path`` and renamed into place once every pair is written, so
    an error while reading ``pairs`` leaves an existing ``path`` as it was.
    """
    n = 0
    with replacing(Path(path)) as target, open(target, "w", encoding="utf-8") as fh:
        for a, b in pairs:
            fh.write(json.dumps({"id1": a, "id2": b, "label": 1}) + "\n")
            n += 1
    return n

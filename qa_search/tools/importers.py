"""Importers: forum exports other than the JSONL dump, read as streams of :class:`Thread`.

- CSV with a column mapping: one row per thread, or one row per answer with the thread's
  columns repeated on consecutive rows (rows of one thread must be next to each other).
- A Stack Exchange data dump: ``Posts.xml`` (questions, answers by ``ParentId``, accepted
  answer, score, tags, closed state) and ``PostLinks.xml`` (duplicate links, ``LinkTypeId`` 3,
  exported as labelled pairs for evaluation and calibration).

Everything streams: memory does not grow with the size of the file. In ``Posts.xml`` answers
may come before or long after their question, so questions and answers are first spooled into
a temporary SQLite database on disk (indexed by parent) and threads are assembled from there.

Malformed input raises :class:`DumpFormatError` (file, line, reason); with ``on_error`` the error
is passed to it and reading goes on, so the caller can skip and report. What real dumps hold
and an import can safely pass over (an answer with no text, not even an image's ``alt``) is not
an error: it goes to ``on_skip`` (default: a logged warning) and the import goes on.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import sqlite3
import tempfile
import xml.parsers.expat
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from html.parser import HTMLParser
from pathlib import Path

from qa_search.errors import DumpFormatError
from qa_search.threads import Thread, check_input, read_dump, replacing, thread_from_dict

OnError = Callable[[DumpFormatError], None]

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "csv", "stackexchange")

#: Fields a CSV column can be mapped to. ``answer`` (and ``answer_id``, ``answer_score``,
#: ``answer_accepted``) describe one answer per row.
CSV_FIELDS = (
    "id",
    "title",
    "body",
    "tags",
    "category",
    "created_at",
    "score",
    "url",
    "answer",
    "answer_id",
    "answer_score",
    "answer_accepted",
)


def detect_format(path: str | Path) -> str:
    """The format of a file from its name: ``.jsonl[.gz]``, ``.csv`` or ``.xml``."""
    name = Path(path).name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".xml"):
        return "stackexchange"
    raise ValueError(f"cannot tell the format of {path} from its name: pass --format ({', '.join(FORMATS)})")


def read_threads(
    paths: Iterable[str | Path],
    fmt: str = "auto",
    *,
    mapping: Mapping[str, str] | None = None,
    on_error: OnError | None = None,
    site_url: str | None = None,
    on_skip: OnError | None = None,
) -> Iterator[Thread]:
    """Stream the threads of several files of one format (``"auto"``: from each file's name).

    ``on_error`` takes malformed records (default: raise); ``on_skip`` takes records passed over
    as empty (default: a logged warning)."""
    for path in paths:
        kind = detect_format(path) if fmt == "auto" else fmt
        if kind == "jsonl":
            yield from read_dump(path, on_error)
        elif kind == "csv":
            yield from read_csv(path, mapping or {}, on_error=on_error)
        elif kind == "stackexchange":
            yield from read_stackexchange_posts(path, on_error=on_error, site_url=site_url, on_skip=on_skip)
        else:
            raise ValueError(f"unknown format {kind!r}: use one of {', '.join(FORMATS)}")


def parse_tags(value: str) -> list[str]:
    """Tags written ``<a><b>`` (Stack Exchange), ``|a|b|`` or ``a, b``."""
    value = value.strip()
    if value.startswith("<"):
        return re.findall(r"<([^<>]+)>", value)
    sep = "|" if "|" in value else ","
    return [t.strip() for t in value.split(sep) if t.strip()]


def _int(value: str, what: str) -> int:
    try:
        return int(value.strip() or 0)
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {value[:40]!r}") from None


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "y", "t"}


# -- CSV -------------------------------------------------------------------------------------


def read_csv(
    path: str | Path, mapping: Mapping[str, str], *, on_error: OnError | None = None
) -> Iterator[Thread]:
    """Stream threads from a CSV file with a header row.

    ``mapping`` maps :data:`CSV_FIELDS` to column names (``{"id": "post_id", "title":
    "subject"}``); a field not mapped is read from the column of its own name, if there is one.
    A mapped column that the header lacks is an error, as is a missing ``id`` or ``title``
    column. Consecutive rows with the same ``id`` are one thread, each row adding its ``answer``.
    A line that is not UTF-8 raises :class:`DumpFormatError` naming it, even with ``on_error``.
    """
    path = Path(path)
    check_input(path)
    unknown = set(mapping) - set(CSV_FIELDS)
    if unknown:
        raise ValueError(
            f"cannot map to {', '.join(sorted(unknown))}: the fields are {', '.join(CSV_FIELDS)}"
        )
    with open(path, "rb") as fh:
        reader = csv.reader(_csv_lines(fh, path))
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DumpFormatError(str(path), 1, f"cannot read the header: {exc}") from exc
        columns = {name: i for i, name in enumerate(header)}
        fields = {f: mapping.get(f, f) for f in CSV_FIELDS}
        # id and title always need a column; any other field only when it is mapped by name
        needed = [f for f in CSV_FIELDS if f in ("id", "title") or f in mapping]
        missing = [f"{f} (column {fields[f]!r})" for f in needed if fields[f] not in columns]
        if missing:
            raise DumpFormatError(
                str(path), 1, f"no column for {', '.join(missing)}; the header has {', '.join(header)}"
            )
        index = {f: columns[c] for f, c in fields.items() if c in columns}

        # the thread being assembled, with "_line" (its first row) and "_bad" (the first
        # (line, reason) wrong in one of its rows, reported once the thread is complete)
        current: dict | None = None
        seen: set[str] = set()
        end_line = 1

        def finish(obj: dict) -> Thread | None:
            line, bad = obj.pop("_line"), obj.pop("_bad")
            try:
                if bad:
                    line, reason = bad
                    raise ValueError(reason)
                return thread_from_dict(obj)
            except ValueError as exc:
                err = DumpFormatError(str(path), line, str(exc))
                if on_error is None:
                    raise err from exc
                on_error(err)
                return None

        while True:
            start = end_line + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise DumpFormatError(str(path), start, f"malformed CSV: {exc}") from exc
            end_line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                err = DumpFormatError(str(path), start, f"{len(row)} columns, the header has {len(header)}")
                if on_error is None:
                    raise err
                on_error(err)
                continue
            cell = {f: row[i] for f, i in index.items()}
            tid = cell["id"].strip()
            if current is not None and tid == current["id"]:
                obj = current
            else:
                if current is not None:
                    done = finish(current)
                    if done is not None:
                        yield done
                if tid in seen:
                    err = DumpFormatError(
                        str(path),
                        start,
                        f"thread {tid!r} continues here, but its earlier rows are not just above: "
                        "sort the file by thread id",
                    )
                    current = None
                    if on_error is None:
                        raise err
                    on_error(err)
                    continue
                seen.add(tid)
                obj = current = {
                    "id": tid,
                    "title": cell["title"],
                    "answers": [],
                    "_line": start,
                    "_bad": None,
                }
                try:
                    for f in ("body", "category", "created_at", "url"):
                        if cell.get(f, "").strip():
                            obj[f] = cell[f]
                    if "tags" in cell:
                        obj["tags"] = parse_tags(cell["tags"])
                    if "score" in cell:
                        obj["score"] = _int(cell["score"], f"column {fields['score']!r}")
                except ValueError as exc:
                    obj["_bad"] = (start, str(exc))
            if cell.get("answer", "").strip():
                answer: dict = {"body": cell["answer"]}
                try:
                    if cell.get("answer_id", "").strip():
                        answer["id"] = cell["answer_id"].strip()
                    if "answer_score" in cell:
                        answer["score"] = _int(cell["answer_score"], f"column {fields['answer_score']!r}")
                    if "answer_accepted" in cell:
                        answer["accepted"] = _bool(cell["answer_accepted"])
                except ValueError as exc:
                    obj["_bad"] = obj["_bad"] or (start, str(exc))
                obj["answers"].append(answer)
        if current is not None:
            done = finish(current)
            if done is not None:
                yield done


def _csv_lines(fh: Iterable[bytes], path: Path) -> Iterator[str]:
    """The decoded lines of a CSV file opened in binary, line ends kept, for :mod:`csv`.

    Each physical line is decoded on its own, so a byte that is not UTF-8 is reported on its
    own line (decoding in text mode goes buffer by buffer and loses it). Lines end at LF, CRLF
    or a lone CR, as in text mode; a byte-order mark opening the file is dropped.
    """
    lineno = 0
    for raw in fh:
        for piece in raw.splitlines(keepends=True):
            lineno += 1
            try:
                text = piece.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DumpFormatError(str(path), lineno, f"not valid UTF-8 ({exc.reason})") from exc
            yield text.removeprefix("\ufeff") if lineno == 1 else text


# -- Stack Exchange ----------------------------------------------------------------------------


#: The notice Stack Exchange puts at the top of a question closed as a duplicate ("Possible
#: Duplicate:" in older posts, "This question already has an answer here:" since), in a
#: blockquote of its own. It names the other question, which would skew the question's embedding.
_DUPLICATE_NOTICE = re.compile(
    r"^\s*(possible duplicates?:|this question already has (an )?answers? here)", re.IGNORECASE
)


class _TextOfHtml(HTMLParser):
    """Plain text of a post body: tags dropped, block elements on their own lines, an image's
    ``alt`` text kept, a closed question's duplicate notice left out."""

    BLOCKS = frozenset(
        {"p", "br", "li", "pre", "blockquote", "div", "h1", "h2", "h3", "h4", "h5", "h6", "hr"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._quote_depth = 0
        self._quote_start = 0  # where the outermost blockquote's text starts in ``out``

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "blockquote":
            if not self._quote_depth:
                self._quote_start = len(self.out)
            self._quote_depth += 1
        if tag in self.BLOCKS:
            self.out.append("\n")
        elif tag == "img":
            alt = dict(attrs).get("alt") or ""
            if alt.strip():
                self.out.extend(("\n", alt, "\n"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "blockquote" and self._quote_depth:
            self._quote_depth -= 1
            if not self._quote_depth and _DUPLICATE_NOTICE.match("".join(self.out[self._quote_start :])):
                del self.out[self._quote_start :]

    def handle_data(self, data: str) -> None:
        self.out.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML fragment, whitespace tidied."""
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.out).splitlines())
    return "\n".join(line for line in lines if line)


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
                score = _int(a.get("Score", "0"), f"answer {a['Id']}'s Score")
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
            obj["score"] = _int(q.get("Score", "0"), "Score")
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
) -> Iterator[tuple[str, str]]:
    """The duplicate links of a Stack Exchange ``PostLinks.xml`` (``LinkTypeId`` 3), as
    ``(post id, duplicate of)`` pairs in file order.

    With ``questions`` (the ids :func:`stackexchange_question_ids` reads from the dump's
    ``Posts.xml``), a link naming a post that is not there (deleted posts keep their links) is
    passed to ``on_skip`` (default: a logged warning) and left out, so every pair written
    names two threads an index built from the same dump has."""
    path = Path(path)
    skip = on_skip or _log_skip
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

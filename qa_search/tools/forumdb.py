"""Reading a forum's threads straight from its database, through SQLAlchemy.

A :class:`SourceMapping` says how: a SQL query per kind of record (threads, answers) and a map
from the fields of a :class:`~qa_search.threads.Thread` to the queries' columns, with the field
names of the CSV importer (``id``, ``title``, ``body``, ``tags``, ``category``, ``created_at``,
``score``, ``url``; ``answer``, ``answer_id``, ``answer_score``, ``answer_accepted``, an answer
row's ``id`` naming its thread). Two more fields make reading incremental: ``updated_at`` (when
the record last changed) and, in a ``changes`` query, one row per record that can change a thread
(hidden and deleted ones included) with the thread's ``id`` and the change's ``updated_at``.

The queries are wrapped as subqueries (``SELECT ... FROM (query) AS src WHERE ...``), so they
must be plain SELECTs without a trailing semicolon; the database pushes the filters into them.
:func:`q2a_mapping` is the mapping of a Question2Answer database; :func:`read_mapping` reads
one from a YAML or JSON file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from qa_search.errors import DumpFormatError, QASearchError
from qa_search.threads import Thread, thread_from_dict
from qa_search.tools.importers import html_to_text, parse_tags

OnSkip = Callable[[DumpFormatError], None]

#: Fields a thread query's column can be mapped to.
THREAD_FIELDS = (
    "id", "title", "body", "tags", "category", "created_at", "score", "url",
    "updated_at", "format", "closed_at", "duplicate_of",
)
#: Fields an answer query's column can be mapped to (``id``: the answer's thread).
ANSWER_FIELDS = ("id", "answer", "answer_id", "answer_score", "answer_accepted", "updated_at", "format")
#: Fields of the ``changes`` query (``id``: the thread a change touches).
CHANGE_FIELDS = ("id", "updated_at")
#: Ids per ``IN (...)`` list when threads are read by id.
ID_CHUNK = 500

_PREFIX = re.compile(r"^[A-Za-z0-9_]{0,40}$")


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """One kind of record: its SQL and the columns that hold each field (a field not mapped
    is read from the column of its own name, if the query has one)."""

    sql: str
    columns: Mapping[str, str] = field(default_factory=dict)
    #: Whether the text columns hold HTML (turned into text); a ``format`` column of ``html``
    #: says it row by row instead.
    html: bool = False

    def column(self, name: str) -> str:
        return self.columns.get(name, name)


@dataclass(frozen=True, slots=True)
class SourceMapping:
    """How a forum's database holds its threads (see the module's docstring)."""

    name: str
    threads: RecordQuery
    answers: RecordQuery | None = None
    changes: RecordQuery | None = None

    def fingerprint(self) -> str:
        """What identifies this mapping in a sync's state: a change of it means a full sync."""
        parts = [self.threads, self.answers, self.changes]
        return json.dumps([None if q is None else [q.sql, dict(q.columns), q.html] for q in parts])


def _record(obj: Any, kind: str, allowed: Sequence[str], where: str) -> RecordQuery:
    if isinstance(obj, str):
        obj = {"query": obj}
    if not isinstance(obj, dict):
        raise QASearchError(f"{where}: '{kind}' must be a mapping with a 'query'")
    unknown = set(obj) - {"query", "columns", "html"}
    if unknown:
        raise QASearchError(f"{where}: '{kind}' has unknown keys {', '.join(sorted(unknown))}; "
                            "it takes query, columns and html")
    sql = obj.get("query")
    if not isinstance(sql, str) or not sql.strip():
        raise QASearchError(f"{where}: '{kind}' needs a 'query' (a SELECT)")
    columns = obj.get("columns") or {}
    if not isinstance(columns, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in columns.items()
    ):
        raise QASearchError(f"{where}: '{kind}.columns' must map field names to column names")
    bad = set(columns) - set(allowed)
    if bad:
        raise QASearchError(f"{where}: '{kind}.columns' cannot map {', '.join(sorted(bad))}; "
                            f"the fields are {', '.join(allowed)}")
    html = obj.get("html", False)
    if not isinstance(html, bool):
        raise QASearchError(f"{where}: '{kind}.html' must be true or false")
    return RecordQuery(sql.strip().rstrip(";").strip(), dict(columns), html)


def mapping_from_dict(obj: Any, where: str = "the mapping") -> SourceMapping:
    """A :class:`SourceMapping` from its dict form (``threads``, optional ``answers`` and
    ``changes``, each ``{query, columns, html}``); :class:`QASearchError` naming what is wrong."""
    if not isinstance(obj, dict) or "threads" not in obj:
        raise QASearchError(f"{where}: expected a mapping with a 'threads' query")
    unknown = set(obj) - {"threads", "answers", "changes"}
    if unknown:
        raise QASearchError(f"{where}: unknown keys {', '.join(sorted(unknown))}; "
                            "it takes threads, answers and changes")
    return SourceMapping(
        name=where,
        threads=_record(obj["threads"], "threads", THREAD_FIELDS, where),
        answers=_optional_record(obj, "answers", ANSWER_FIELDS, where),
        changes=_optional_record(obj, "changes", CHANGE_FIELDS, where),
    )


def _optional_record(obj: dict, kind: str, allowed: Sequence[str], where: str) -> RecordQuery | None:
    return None if obj.get(kind) is None else _record(obj[kind], kind, allowed, where)


def read_mapping(path: str | Path) -> SourceMapping:
    """Read a mapping file: YAML (``.yaml``, ``.yml``) or JSON."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml  # PyYAML: only a YAML mapping needs it

            obj = yaml.safe_load(text)
        else:
            obj = json.loads(text)
    except ValueError as exc:  # JSON's errors; YAML's below
        raise QASearchError(f"{path}: not valid JSON ({exc.__class__.__name__})") from None
    except Exception as exc:
        if exc.__class__.__module__.startswith("yaml"):
            mark = getattr(exc, "problem_mark", None)
            line = f", line {mark.line + 1}" if mark is not None else ""
            raise QASearchError(f"{path}: not valid YAML{line}") from None
        raise
    return mapping_from_dict(obj, str(path))


def q2a_mapping(prefix: str = "qa_") -> SourceMapping:
    """The mapping of a Question2Answer database whose tables are named ``{prefix}posts`` and
    ``{prefix}categories``.

    Questions (type ``Q``) are threads, answers (``A``) their answers, the question's
    ``selchildid`` the accepted one; hidden (``*_HIDDEN``) and queued (``*_QUEUED``) posts are
    left out, and so are comments (``C``) and notes. ``netvotes`` is the score, the category its
    title, ``tags`` the comma-separated tags; HTML content (``format`` ``html``) becomes text. A
    closed question (``closedbyid`` set) keeps ``closed_at`` (its last update, which the close
    sets) and, when it was closed as a duplicate of another question, ``duplicate_of``.
    """
    if not _PREFIX.match(prefix):
        raise QASearchError("the table prefix may hold letters, digits and underscores only")
    posts, categories = f"{prefix}posts", f"{prefix}categories"
    threads = f"""
        SELECT q.postid AS id, q.title AS title, q.content AS body, q.format AS format,
               q.tags AS tags, c.title AS category, q.created AS created_at,
               q.netvotes AS score, COALESCE(q.updated, q.created) AS updated_at,
               CASE WHEN q.closedbyid IS NOT NULL THEN COALESCE(q.updated, q.created) END AS closed_at,
               d.postid AS duplicate_of
        FROM {posts} q
        LEFT JOIN {categories} c ON c.categoryid = q.categoryid
        LEFT JOIN {posts} d ON d.postid = q.closedbyid AND d.type = 'Q'
        WHERE q.type = 'Q'"""
    answers = f"""
        SELECT a.parentid AS id, a.postid AS answer_id, a.content AS answer, a.format AS format,
               a.netvotes AS answer_score,
               CASE WHEN q.selchildid = a.postid THEN 1 ELSE 0 END AS answer_accepted,
               COALESCE(a.updated, a.created) AS updated_at
        FROM {posts} a
        JOIN {posts} q ON q.postid = a.parentid AND q.type = 'Q'
        WHERE a.type = 'A'"""
    # every question or answer, whatever its state: hiding or queueing one changes its thread
    changes = f"""
        SELECT CASE WHEN p.type IN ('A', 'A_HIDDEN', 'A_QUEUED') THEN p.parentid ELSE p.postid END AS id,
               COALESCE(p.updated, p.created) AS updated_at
        FROM {posts} p
        WHERE p.type IN ('Q', 'Q_HIDDEN', 'Q_QUEUED', 'A', 'A_HIDDEN', 'A_QUEUED')"""
    return SourceMapping(
        name=f"Question2Answer ({posts})",
        threads=RecordQuery(" ".join(threads.split())),
        answers=RecordQuery(" ".join(answers.split())),
        changes=RecordQuery(" ".join(changes.split())),
    )


#: The presets ``--schema`` names, each a function of the table prefix.
SCHEMAS: dict[str, Callable[[str], SourceMapping]] = {"q2a": q2a_mapping}


# -- reading -----------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _moment(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    text = _text(value).strip()
    return text or None


def _integer(value: Any, what: str) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, Decimal)) or (isinstance(value, float) and value == int(value)):
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{what} must be an integer") from None


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "y", "t"}
    return bool(value)


def _readable(value: Any, html: bool, fmt: Any) -> str:
    text = _text(value)
    if html or _text(fmt).strip().lower() == "html":
        return html_to_text(text)
    return text.strip()


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(t).strip() for t in value if t is not None and str(t).strip()]
    return parse_tags(_text(value))


def _answer_order(answer: dict) -> tuple:
    """Answers by id, numerically where ids are numbers (the order they were posted in, in the
    forums whose ids count up); those without an id last, in the order read."""
    aid = answer.get("id", "")
    if not aid:
        return (2, 0, "")
    return (0, int(aid), "") if aid.isdigit() else (1, 0, aid)


class ForumDatabase:
    """A connection to a forum's database and the queries of its :class:`SourceMapping`.

    ``url`` is a SQLAlchemy URL (``mysql+pymysql://``, ``postgresql+psycopg://``,
    ``sqlite:///``). Reads run in one transaction per :meth:`snapshot` block. Database errors
    become :class:`QASearchError` naming the source (without its password), never its data.
    """

    def __init__(self, url: str, mapping: SourceMapping) -> None:
        self.mapping = mapping
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise QASearchError("--from is not a database URL such as "
                                "mysql+pymysql://user:password@host/forum") from None
        self.where = parsed.render_as_string(hide_password=True)
        try:
            self.engine = sa.create_engine(parsed)
        except (ModuleNotFoundError, sa.exc.NoSuchModuleError) as exc:
            raise QASearchError(
                f"cannot open {self.where}: its driver is not installed ({exc}); "
                "install the sync extra: pip install 'qa-search[sync]'"
            ) from None
        self._conn: sa.Connection | None = None
        #: Ids of the threads read but left out as unusable (see :meth:`threads`).
        self.skipped_ids: set[str] = set()
        self._changes: list[RecordQuery] | None = None

    def close(self) -> None:
        self.engine.dispose()

    def failed(self, exc: Exception, doing: str) -> QASearchError:
        """The error to raise for a database error ``exc`` met while ``doing``."""
        orig = getattr(exc, "orig", None) or exc
        return QASearchError(f"{self.where}: {doing} failed: {orig.__class__.__name__}: "
                             f"{str(orig).splitlines()[0][:300] if str(orig) else ''}")

    def _execute(self, sql: str, params: Mapping[str, Any] | None = None, doing: str = "a query",
                 expanding: Iterable[str] = ()) -> sa.CursorResult:
        statement = sa.text(sql)
        if expanding:
            statement = statement.bindparams(*(sa.bindparam(name, expanding=True) for name in expanding))
        if self._conn is None:
            raise RuntimeError("ForumDatabase queries run inside snapshot()")
        try:
            return self._conn.execute(statement, dict(params or {}))
        except sa.exc.SQLAlchemyError as exc:
            raise self.failed(exc, doing) from None

    def snapshot(self) -> _Snapshot:
        """A ``with`` block whose reads see one consistent state of the database, where it
        gives one (PostgreSQL's and MariaDB's repeatable read, SQLite's read transaction)."""
        return _Snapshot(self)

    # -- the queries ---------------------------------------------------------------------------

    def _wrapped(self, query: RecordQuery, select: str, where: str = "") -> str:
        return f"SELECT {select} FROM ({query.sql}) src" + (f" WHERE {where}" if where else "")

    def _change_queries(self) -> list[RecordQuery]:
        """The queries that say when threads change: the mapping's ``changes``, else those of
        threads and answers that have an ``updated_at`` (none, if the threads have none)."""
        if self._changes is None:
            if self.mapping.changes is not None:
                self._changes = [self.mapping.changes]
            else:
                own = [q for q in (self.mapping.threads, self.mapping.answers)
                       if q is not None and self._has_column(q, q.column("updated_at"))]
                self._changes = own if self.mapping.threads in own else []
        return self._changes

    def _has_column(self, query: RecordQuery, column: str) -> bool:
        result = self._execute(self._wrapped(query, "*", "1 = 0"), doing="reading the query's columns")
        return column in list(result.keys())

    @property
    def incremental(self) -> bool:
        """Whether the mapping says when threads change (else every sync reads them all)."""
        return bool(self._change_queries())

    def watermark(self) -> Any:
        """The latest change time the database holds (None when it says none), read before the
        threads so that a change made while they are read is newer than it."""
        latest = None
        for q in self._change_queries():
            col = q.column("updated_at")
            sql = self._wrapped(q, f"MAX(src.{col})")
            value = self._execute(sql, doing="reading the latest change").scalar()
            if value is not None and (latest is None or value > latest):
                latest = value
        return latest

    def changed_ids(self, since: Any) -> list[Any]:
        """The ids of the threads changed after ``since``, as the database holds them."""
        out: dict[str, Any] = {}
        for q in self._change_queries():
            sql = self._wrapped(q, f"DISTINCT src.{q.column('id')}", f"src.{q.column('updated_at')} > :since")
            for (tid,) in self._execute(sql, {"since": since}, doing="reading what changed"):
                if tid is not None:
                    out.setdefault(str(tid).strip(), tid)
        return list(out.values())

    def live_ids(self) -> list[Any]:
        """The ids of every thread the threads query gives (ids only: cheap)."""
        q = self.mapping.threads
        sql = self._wrapped(q, f"src.{q.column('id')}")
        return [tid for (tid,) in self._execute(sql, doing="reading the thread ids") if tid is not None]

    def threads(self, ids: Sequence[Any] | None = None, on_skip: OnSkip | None = None) -> Iterator[Thread]:
        """The threads (those with ``ids``, as :meth:`live_ids` gives them; all for None), with
        their answers. A record that cannot be a thread (no title, say) goes to ``on_skip``,
        named by its id, and is left out."""
        if ids is None:
            yield from self._read(None, on_skip)
            return
        for start in range(0, len(ids), ID_CHUNK):
            yield from self._read(list(ids[start:start + ID_CHUNK]), on_skip)

    def _read(self, ids: list[Any] | None, on_skip: OnSkip | None) -> Iterator[Thread]:
        tq, aq = self.mapping.threads, self.mapping.answers
        where = f"src.{tq.column('id')} IN :ids" if ids is not None else ""
        params = {"ids": ids} if ids is not None else {}
        expanding = ("ids",) if ids is not None else ()
        answers: dict[str, list[dict]] = {}
        if aq is not None:
            awhere = f"src.{aq.column('id')} IN :ids" if ids is not None else ""
            result = self._execute(self._wrapped(aq, "*", awhere), params, "reading the answers", expanding)
            keys = list(result.keys())
            for number, row in enumerate(result, 1):
                record = dict(zip(keys, row, strict=True))
                answer = self._answer(record, aq, number, on_skip)
                if answer is not None:
                    answers.setdefault(answer.pop("_thread"), []).append(answer)
            for listed in answers.values():  # a subquery's ORDER BY is not kept by every database
                listed.sort(key=_answer_order)
        result = self._execute(self._wrapped(tq, "*", where), params, "reading the threads", expanding)
        keys = list(result.keys())
        for number, row in enumerate(result, 1):
            record = dict(zip(keys, row, strict=True))
            thread = self._thread(record, tq, answers, number, on_skip)
            if thread is not None:
                yield thread

    def _skip(self, on_skip: OnSkip | None, kind: str, number: int, reason: str) -> None:
        if on_skip is not None:
            on_skip(DumpFormatError(f"{self.mapping.name}, {kind} query", number, reason))

    def _answer(self, record: dict, q: RecordQuery, number: int, on_skip: OnSkip | None) -> dict | None:
        tid = _text(record.get(q.column("id"))).strip()
        aid = _text(record.get(q.column("answer_id"))).strip()
        if not tid:
            self._skip(on_skip, "answers", number, "an answer without the id of its thread")
            return None
        body = _readable(record.get(q.column("answer")), q.html, record.get(q.column("format")))
        if not body:
            self._skip(on_skip, "answers", number, f"answer {aid or '?'} of thread {tid} has no text")
            return None
        out: dict[str, Any] = {"_thread": tid, "body": body}
        if aid:
            out["id"] = aid
        try:
            out["score"] = _integer(record.get(q.column("answer_score")), f"answer {aid}'s score")
        except ValueError as exc:
            self._skip(on_skip, "answers", number, str(exc))
            return None
        out["accepted"] = _flag(record.get(q.column("answer_accepted")))
        return out

    def _thread(self, record: dict, q: RecordQuery, answers: Mapping[str, list[dict]], number: int,
                on_skip: OnSkip | None) -> Thread | None:
        tid = _text(record.get(q.column("id"))).strip()
        fmt = record.get(q.column("format"))
        obj: dict[str, Any] = {
            "id": tid,
            "title": _text(record.get(q.column("title"))).strip(),
            "body": _readable(record.get(q.column("body")), q.html, fmt),
            "answers": answers.get(tid, []),
            "tags": _tags(record.get(q.column("tags"))),
            "category": _text(record.get(q.column("category"))).strip() or None,
            "created_at": _moment(record.get(q.column("created_at"))),
            "url": _text(record.get(q.column("url"))).strip() or None,
        }
        closed = _moment(record.get(q.column("closed_at")))
        if closed:
            obj["closed_at"] = closed
        duplicate = _text(record.get(q.column("duplicate_of"))).strip()
        if duplicate:
            obj["duplicate_of"] = duplicate
        try:
            obj["score"] = _integer(record.get(q.column("score")), "score")
            return thread_from_dict(obj)
        except ValueError as exc:
            if tid:
                self.skipped_ids.add(tid)
            self._skip(on_skip, "threads", number, f"thread {tid or '?'}: {exc}")
            return None


class _Snapshot:
    def __init__(self, db: ForumDatabase) -> None:
        self.db = db

    def __enter__(self) -> ForumDatabase:
        try:
            conn = self.db.engine.connect()
            if conn.dialect.name in ("postgresql", "mysql", "mariadb"):
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            conn.begin()
        except sa.exc.SQLAlchemyError as exc:
            raise self.db.failed(exc, "connecting") from None
        self.db._conn = conn
        return self.db

    def __exit__(self, *exc_info: object) -> None:
        conn, self.db._conn = self.db._conn, None
        if conn is not None:
            conn.rollback()  # read only: nothing to keep
            conn.close()


# -- the change time -----------------------------------------------------------------------------


def encode_moment(value: Any) -> dict | None:
    """A change time as the database gave it, as JSON (``{"kind", "value"}``)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return {"kind": "datetime", "value": value.isoformat()}
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return {"kind": "number", "value": float(value) if isinstance(value, (float, Decimal)) else value}
    return {"kind": "text", "value": str(value)}


def moment_before(stored: dict, margin: timedelta) -> Any:
    """The change time ``stored`` (see :func:`encode_moment`) less ``margin``, as a value to
    compare with the database's: a time, a number of seconds, or text in the same form."""
    kind, value = stored["kind"], stored["value"]
    if kind == "datetime":
        return datetime.fromisoformat(value) - margin
    if kind == "number":
        return value - margin.total_seconds()
    text = str(value)
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return text  # not a time we can move back: compared as it is
    moved = parsed - margin
    sep = "T" if "T" in text else " "
    spec = "microseconds" if "." in text else "seconds"
    out = moved.replace(tzinfo=None).isoformat(sep=sep, timespec=spec) if text.endswith("Z") else \
        moved.isoformat(sep=sep, timespec=spec)
    return out + "Z" if text.endswith("Z") else out

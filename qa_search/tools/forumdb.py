"""Reading a forum's threads straight from its database, through SQLAlchemy, as a
:class:`~qa_search.tools.sourcemapping.SourceMapping` says: every thread or those named by id,
the ids changed since a watermark and the ids still live, in one transaction per snapshot; and
the change time a sync keeps between runs.

The database's values become a thread's fields here (HTML as text, tags, integers, flags,
times); a record that cannot be read is passed to ``on_skip`` and left out. Database errors name
the source (without its password), never its data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from qa_search.errors import DumpFormatError, QASearchError
from qa_search.threads import Thread, thread_from_dict
from qa_search.tools.fields import html_to_text, parse_tags
from qa_search.tools.sourcemapping import RecordQuery, SourceMapping

OnSkip = Callable[[DumpFormatError], None]

#: Ids per ``IN (...)`` list when threads are read by id.
ID_CHUNK = 500
#: Seconds a connection to the forum's database may take before the sync gives up (PostgreSQL;
#: a URL's own ``connect_timeout`` wins).
CONNECT_TIMEOUT_S = 10


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


#: A missing table, as MariaDB/MySQL, PostgreSQL and SQLite say it.
_NO_TABLE = re.compile(r"doesn't exist|does not exist|no such table", re.IGNORECASE)
#: Query parameters of a URL that hold a password (libpq's and the MySQL drivers' spellings).
_SECRET_PARAMS = frozenset({"password", "passwd", "pass", "sslpassword", "pgpass"})
#: The scheme to write, with the sync extra's driver, for one that names no driver.
_SCHEMES = {"mysql": "mysql+pymysql", "mariadb": "mysql+pymysql", "postgres": "postgresql+psycopg",
            "postgresql": "postgresql+psycopg"}


def database_url(url: str) -> sa.URL:
    """``url`` parsed, or a :class:`QASearchError` that quotes none of it (it holds a password).

    A password holding ``@`` unescaped moves its tail into the host; that is refused here,
    before a driver's "cannot resolve host" would print the tail.
    """
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise QASearchError("--from is not a database URL such as "
                            "mysql+pymysql://user:password@host/forum") from None
    if "@" in (parsed.host or ""):
        raise QASearchError("the database URL holds more than one '@': percent-encode the user name and "
                            "password (@ as %40, / as %2F, : as %3A, # as %23)")
    path = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and path not in ("", ":memory:") and "uri" not in parsed.query \
            and not Path(path).is_file():
        # SQLite would create an empty database there, and the sync find no tables in it
        raise QASearchError(f"there is no SQLite database at {path}: check the path after sqlite:/// "
                            "(an absolute path takes four slashes)")
    return parsed


def describe_url(url: sa.URL) -> str:
    """``url`` as messages and the sync's state name it: no password, in the user part or in
    the query (``?password=``)."""
    hidden = {key: "***" for key in url.query if key.lower() in _SECRET_PARAMS}
    # rendering percent-encodes the stars; shown as the user part's ***
    return url.update_query_dict(hidden).render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")


class ForumDatabase:
    """A connection to a forum's database and the queries of its :class:`SourceMapping`.

    ``url`` is a SQLAlchemy URL (``mysql+pymysql://``, ``postgresql+psycopg://``,
    ``sqlite:///``). Reads run in one transaction per :meth:`snapshot` block. Database errors
    become :class:`QASearchError` naming the source (without its password), never its data.
    """

    def __init__(self, url: str, mapping: SourceMapping) -> None:
        self.mapping = mapping
        parsed = database_url(url)
        self.where = describe_url(parsed)
        options: dict[str, Any] = {}
        if parsed.drivername == "postgresql+psycopg":
            connect: dict[str, Any] = {}
            if "client_encoding" not in parsed.query:
                # a SQL_ASCII database (old forums' default) hands psycopg bytes, on which
                # SQLAlchemy's own first query fails with a TypeError; asking for UTF-8 has the
                # server check it
                connect["client_encoding"] = "utf8"
            if "connect_timeout" not in parsed.query:
                # libpq waits on an unreachable host for the system's TCP timeout (minutes);
                # PyMySQL's own default is the same 10 s
                connect["connect_timeout"] = CONNECT_TIMEOUT_S
            options["connect_args"] = connect
        try:
            self.engine = sa.create_engine(parsed, **options)
        except (ModuleNotFoundError, sa.exc.NoSuchModuleError) as exc:
            if parsed.drivername in _SCHEMES:  # mysql://, postgres://: a driver the extra lacks
                raise QASearchError(
                    f"cannot open {self.where}: {parsed.drivername}:// names a driver the sync extra "
                    f"does not install; write {_SCHEMES[parsed.drivername]}:// instead"
                ) from None
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
        said = str(orig).splitlines()[0][:300] if str(orig) else ""
        hint = ""
        q2a = self.mapping.name.startswith("Question2Answer")
        if q2a and doing != "connecting" and _NO_TABLE.search(said):
            hint = ("; check the table prefix (--prefix: QA_MYSQL_TABLE_PREFIX in the forum's "
                    "qa-config.php)")
        return QASearchError(f"{self.where}: {doing} failed: {orig.__class__.__name__}: {said}{hint}")

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
        groups = record.get(q.column("visible_to"))
        if groups is not None:  # an array (PostgreSQL), or text as tags are (GROUP_CONCAT's a,b)
            listed = isinstance(groups, (list, tuple))
            obj["visible_to"] = [_text(g) for g in groups if g is not None] if listed else _tags(groups)
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

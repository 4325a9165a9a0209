"""Forum threads: the record types and the JSONL dump format they are read from.

A dump has one JSON object per line, one thread each::

    {"id": "t1", "title": "...", "body": "...",
     "answers": [{"id": "t1-a1", "body": "...", "score": 3, "accepted": true}],
     "tags": ["anxiety"], "category": "anxiety", "created_at": "2025-01-31T12:00:00Z",
     "score": 7, "url": "https://forum.example.org/t/t1"}

Only ``id`` and ``title`` are required. Files ending in ``.gz`` are read as gzip.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import DumpFormatError


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer of a thread."""

    id: str
    body: str
    score: int = 0
    accepted: bool = False


@dataclass(frozen=True, slots=True)
class Thread:
    """A forum thread: a question (title and body) and its answers."""

    id: str
    title: str
    body: str = ""
    answers: tuple[Answer, ...] = ()
    tags: tuple[str, ...] = ()
    category: str | None = None
    created_at: str | None = None
    score: int = 0
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def question_text(self) -> str:
        """The text embedded for the thread's question: the title, then the body."""
        return f"{self.title}\n{self.body}" if self.body else self.title

    def to_dict(self) -> dict[str, Any]:
        """The thread as a dump line's JSON object (inverse of :func:`thread_from_dict`)."""
        out = asdict(self)
        out["answers"] = [asdict(a) for a in self.answers]
        out["tags"] = list(self.tags)
        extra = out.pop("extra")
        out.update(extra)
        return out


_THREAD_FIELDS = {
    "id",
    "title",
    "body",
    "answers",
    "tags",
    "category",
    "created_at",
    "score",
    "url",
}


def _expect(value: Any, kind: type | tuple[type, ...], what: str, nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    # bool is an int subclass; a score of `true` is almost certainly a mistake
    if kind is int and isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got a boolean")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(f"{what} must be {names}, got {type(value).__name__}")
    return value


def _thread_id(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{what} must be a string or an integer")
    text = str(value).strip()
    if not text:
        raise ValueError(f"{what} must not be empty")
    return text


def thread_from_dict(obj: Any) -> Thread:
    """Validate one dump object and build a :class:`Thread`.

    Raises ``ValueError`` naming the first field that is wrong.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "id" not in obj:
        raise ValueError("missing required field 'id'")
    if "title" not in obj:
        raise ValueError("missing required field 'title'")
    tid = _thread_id(obj["id"], "'id'")
    title = _expect(obj["title"], str, "'title'").strip()
    if not title:
        raise ValueError("'title' must not be empty")
    body = _expect(obj.get("body") or "", str, "'body'").strip()
    raw_answers = _expect(obj.get("answers") or [], list, "'answers'")
    answers = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_answers):
        where = f"answers[{i}]"
        _expect(raw, dict, where)
        aid = _thread_id(raw.get("id", f"{tid}#{i + 1}"), f"{where}.id")
        if aid in seen:
            raise ValueError(f"{where}.id {aid!r} is repeated in this thread")
        seen.add(aid)
        abody = _expect(raw.get("body", ""), str, f"{where}.body").strip()
        if not abody:
            raise ValueError(f"{where}.body must not be empty")
        answers.append(
            Answer(
                id=aid,
                body=abody,
                score=_expect(raw.get("score") or 0, int, f"{where}.score"),
                accepted=_expect(raw.get("accepted") or False, bool, f"{where}.accepted"),
            )
        )
    tags = _expect(obj.get("tags") or [], list, "'tags'")
    for t in tags:
        _expect(t, str, "each tag")
    return Thread(
        id=tid,
        title=title,
        body=body,
        answers=tuple(answers),
        tags=tuple(t.strip() for t in tags if t.strip()),
        category=_expect(obj.get("category"), str, "'category'", nullable=True),
        created_at=_expect(obj.get("created_at"), str, "'created_at'", nullable=True),
        score=_expect(obj.get("score") or 0, int, "'score'"),
        url=_expect(obj.get("url"), str, "'url'", nullable=True),
        extra={k: v for k, v in obj.items() if k not in _THREAD_FIELDS},
    )


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_dump(
    path: str | Path, on_error: Callable[[DumpFormatError], None] | None = None
) -> Iterator[Thread]:
    """Stream the threads of one ``.jsonl`` or ``.jsonl.gz`` dump, in file order.

    Blank lines are skipped. A line that is not UTF-8, not valid JSON or not a valid thread
    raises :class:`DumpFormatError` naming the file, the 1-based line number and the reason; with
    ``on_error``, that error is passed to it instead and reading goes on with the next line.
    A file that cannot be read any further (a truncated gzip) always raises.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dump file not found: {path}")
    # lines are read as bytes and decoded one by one, so a bad byte is pinned to its line
    with _open_binary(path) as fh:
        lineno = 0
        while True:
            try:
                raw = fh.readline()
            except (OSError, EOFError) as exc:  # truncated or corrupt gzip
                raise DumpFormatError(str(path), lineno + 1, f"cannot read: {exc}") from exc
            if not raw:
                return
            lineno += 1
            try:
                thread = _parse_line(raw)
            except ValueError as exc:
                err = DumpFormatError(str(path), lineno, str(exc))
                if on_error is None:
                    raise err from exc
                on_error(err)
                continue
            if thread is not None:
                yield thread


def json_line(raw: bytes) -> object | None:
    """One JSONL line's value (None for a blank line); ValueError says what is wrong."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 ({exc.reason})") from exc
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg}") from exc


def _parse_line(raw: bytes) -> Thread | None:
    """One dump line as a thread (None for a blank line); ValueError says what is wrong."""
    obj = json_line(raw)
    return None if obj is None else thread_from_dict(obj)


def read_dumps(
    paths: Iterable[str | Path], on_error: Callable[[DumpFormatError], None] | None = None
) -> Iterator[Thread]:
    """Stream the threads of several dumps, one after the other."""
    for p in paths:
        yield from read_dump(p, on_error)


def write_dump(threads: Iterable[Thread], path: str | Path) -> int:
    """Write threads as a JSONL dump (gzip if the name ends in ``.gz``); returns the count."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    n = 0
    with opener(path, "wt", encoding="utf-8") as fh:
        for t in threads:
            fh.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n

"""The write log's file format: entries, their lines, and the header a log file starts with.

Layout of ``DIR/writes.jsonl``::

    {"header": {"format": 1, "compacted_through": 17, "generation": 4, "file": "..."}, "check": "..."}
    {"seq": 18, "op": "upsert", "threads": [{...}], "generation": 4, "at": "...", "id": "...", "check": "..."}
    {"seq": 19, "op": "delete", "ids": ["t042"], "generation": 4, "at": "...", "id": "...", "check": "..."}

(a log a rollback wrote also has ``"switch": {"from", "to", ...}`` in its header, see
:func:`log_switch`). ``seq`` numbers writes across compactions; ``generation`` is the generation
the writer was serving, for the record; ``at`` is when the write was acknowledged (UTC,
microseconds), kept through compactions and rollbacks, so a full build can tell the writes
newer than its dump. ``check`` is the first 16 hex digits of the SHA-256 of the line's
canonical JSON without it (:func:`canonical`): a line edited into other valid JSON is damaged,
not a different write. Lines written before checksums were recorded have none and are read as
they are. How the log is appended to, read and compacted is in writelog.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from qa_search.errors import SnapshotError
from qa_search.threads import Thread, thread_from_dict

LOG_NAME = "writes.jsonl"
LOCK_NAME = "writes.lock"
FORMAT = 1
UPSERT = "upsert"
DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WriteEntry:
    """One logged write: an upsert of ``threads`` or a delete of ``ids``."""

    seq: int
    op: str
    threads: tuple[Thread, ...] = ()
    ids: tuple[str, ...] = ()
    generation: int | None = None
    #: For a write a rollback put back: the generation that first folded it in.
    restored_from: int | None = None
    #: The write's own identity, kept when a build folds it in and a rollback puts it back
    #: (None for entries logged before identities were recorded).
    id: str | None = None
    #: When the write was acknowledged, ISO 8601 UTC (None: not recorded, or not logged yet).
    at: str | None = None

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """The ids of the threads the entry upserts or deletes."""
        return tuple(t.id for t in self.threads) + self.ids

    @property
    def logged_at(self) -> datetime | None:
        """:attr:`at` as an aware datetime (None when not recorded or unreadable)."""
        return parse_time(self.at)


CHECK = "check"


def now_iso() -> str:
    """The time now as the log records it: ISO 8601, UTC, to the microsecond."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    """A time the log recorded (with or without fractions of a second), aware, in UTC."""
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def canonical(record: dict) -> bytes:
    """The bytes a line's checksum covers: its object without ``check``, keys sorted, compact."""
    body = {k: v for k, v in record.items() if k != CHECK}
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def checksum(record: dict) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()[:16]


def with_check(record: dict) -> dict:
    """``record`` with its checksum added (replacing any it had)."""
    return {**{k: v for k, v in record.items() if k != CHECK}, CHECK: checksum(record)}


def entry_record(entry: WriteEntry, seq: int) -> dict:
    """``entry`` as a log line's object, numbered ``seq``."""
    if entry.op == UPSERT:
        body = {"op": UPSERT, "threads": [t.to_dict() for t in entry.threads]}
    else:
        body = {"op": DELETE, "ids": list(entry.ids)}
    out = {"seq": seq, **body, "generation": entry.generation, "at": entry.at or now_iso()}
    if entry.restored_from is not None:
        out["restored_from"] = entry.restored_from
    if entry.id is not None:
        out["id"] = entry.id
    return out


def log_lines(records: Iterable[dict]) -> bytes:
    """``records`` as log lines, each with its checksum."""
    return b"".join((json.dumps(with_check(r), ensure_ascii=False) + "\n").encode("utf-8") for r in records)


def entry_lines(entries: Iterable[WriteEntry]) -> bytes:
    """``entries`` as log lines, each under its own seq (the record a generation keeps of the
    writes it folded in)."""
    return log_lines(entry_record(e, e.seq) for e in entries)


def log_header(compacted_through: int, generation: int | None, switch: dict | None = None) -> dict:
    """A log file's first line; ``file`` is a token of its own, whatever inode it gets.
    ``switch``: written by a rollback, see :func:`log_switch`."""
    out: dict[str, object] = {"format": FORMAT, "compacted_through": compacted_through,
                              "generation": generation, "file": uuid.uuid4().hex}
    if switch is not None:
        out["switch"] = switch
    return {"header": out}


def read_header(fh) -> dict:
    """The header of the open log ``fh`` ({} for a log without one)."""
    first = os.pread(fh.fileno(), 4096, 0)  # a header is a few hundred bytes
    end = first.find(b"\n")
    if not first.startswith(b'{"header"') or end < 0:
        return {}
    try:
        found = json.loads(first[:end])["header"]
    except (ValueError, KeyError, TypeError):
        return {}
    return found if isinstance(found, dict) else {}


def file_token(fh) -> str | None:
    """The token in the header of the open log ``fh`` (None for a log without one)."""
    return read_header(fh).get("file")


def log_switch(index_dir: str | Path) -> dict | None:
    """The switch a rollback recorded in the log's header: ``{"from", "to", "restored",
    "dropped"}``, or None.

    A rollback sets the log for its target first and moves ``CURRENT`` after; while ``CURRENT``
    still names ``from`` (a moment, or for good if the rollback was killed), the log already
    belongs to ``to``, so readers serve ``to`` (:func:`~qa_search.storage.writelog.serving_generation`)
    and the next writer finishes the switch (:func:`~qa_search.storage.generations.finish_switch`).
    Any later rewrite of the log (a build's compaction) drops the record; appends keep the header."""
    try:
        with open(Path(index_dir) / LOG_NAME, "rb") as fh:
            switch = read_header(fh).get("switch")
    except OSError:
        return None
    ok = isinstance(switch, dict) and all(isinstance(switch.get(k), int) for k in ("from", "to"))
    return switch if ok else None


def decode_line(line: bytes) -> WriteEntry | dict:
    """An entry, or the header dict; ``ValueError``, ``KeyError`` or ``TypeError`` if damaged:
    not an entry, or (checked after, so the reason is the more telling one) not the line that
    was written, by its checksum. A line without a checksum (written before they were
    recorded) is taken as it is."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    out = _decoded(obj)
    if CHECK in obj and obj[CHECK] != checksum(obj):
        raise ValueError("its checksum does not match: the line was changed after it was written")
    return out


def _decoded(obj: dict) -> WriteEntry | dict:
    if "header" in obj:
        return obj["header"]
    op = obj["op"]
    if op not in (UPSERT, DELETE):
        raise ValueError(f"unknown op {op!r}")
    threads = tuple(thread_from_dict(t) for t in obj["threads"]) if op == UPSERT else ()
    ids = tuple(str(i) for i in obj["ids"]) if op == DELETE else ()
    seq = int(obj["seq"])
    return WriteEntry(seq, op, threads=threads, ids=ids, generation=obj.get("generation"),
                      restored_from=obj.get("restored_from"), id=obj.get("id"), at=obj.get("at"))


def damaged_line(path: Path, lineno: int | None, exc: Exception) -> SnapshotError:
    where = f"{path}, line {lineno}," if lineno else f"{path}"
    return SnapshotError(f"{where} holds a damaged entry ({exc}); repair or remove that line")


def parse_line(line: bytes, path: Path, lineno: int | None = None) -> WriteEntry | dict:
    """An entry, or the header dict. A damaged line is an error: skipping it would lose a write.
    ``lineno`` (the line's number in the file) goes into the message where it is known."""
    try:
        return decode_line(line)
    except (ValueError, KeyError, TypeError) as exc:
        raise damaged_line(path, lineno, exc) from exc

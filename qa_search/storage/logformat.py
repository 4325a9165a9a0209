"""The write log's file format: entries, their lines, and the header a log file starts with.

Layout of ``DIR/writes.jsonl``::

    {"header": {"format": 1, "compacted_through": 17, "generation": 4, "file": "..."}}
    {"seq": 18, "op": "upsert", "threads": [{...dump format...}], "generation": 4, "at": "...", "id": "..."}
    {"seq": 19, "op": "delete", "ids": ["t042"], "generation": 4, "at": "...", "id": "..."}

(a log a rollback wrote also has ``"switch": {"from", "to", ...}`` in its header, see
:func:`log_switch`). ``seq`` numbers writes across compactions; ``generation`` is the generation
the writer was serving, for the record. How the log is appended to, read and compacted is in
writelog.py.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
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


def entry_record(entry: WriteEntry, seq: int) -> dict:
    """``entry`` as a log line's object, numbered ``seq``."""
    if entry.op == UPSERT:
        body = {"op": UPSERT, "threads": [t.to_dict() for t in entry.threads]}
    else:
        body = {"op": DELETE, "ids": list(entry.ids)}
    out = {"seq": seq, **body, "generation": entry.generation,
           "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if entry.restored_from is not None:
        out["restored_from"] = entry.restored_from
    if entry.id is not None:
        out["id"] = entry.id
    return out


def log_lines(records: Iterable[dict]) -> bytes:
    return b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8") for r in records)


def entry_lines(entries: Iterable[WriteEntry]) -> bytes:
    """``entries`` as log lines, each under its own seq (the record a generation keeps of the
    writes it folded in)."""
    return log_lines(entry_record(e, e.seq) for e in entries)


def log_header(compacted_through: int, generation: int | None, switch: dict | None = None) -> dict:
    """A log file's first line; ``file`` is a token of its own, whatever inode it gets.
    ``switch``: written by a rollback, see :func:`log_switch`."""
    out = {"format": FORMAT, "compacted_through": compacted_through, "generation": generation,
           "file": uuid.uuid4().hex}
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
    """An entry, or the header dict; ``ValueError``, ``KeyError`` or ``TypeError`` if damaged."""
    obj = json.loads(line)
    if "header" in obj:
        return obj["header"]
    op = obj["op"]
    common = {"generation": obj.get("generation"), "restored_from": obj.get("restored_from"),
              "id": obj.get("id")}
    if op == UPSERT:
        threads = tuple(thread_from_dict(t) for t in obj["threads"])
        return WriteEntry(int(obj["seq"]), op, threads=threads, **common)
    if op == DELETE:
        ids = tuple(str(i) for i in obj["ids"])
        return WriteEntry(int(obj["seq"]), op, ids=ids, **common)
    raise ValueError(f"unknown op {op!r}")


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

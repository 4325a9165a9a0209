"""The JSONL dump format: reading and writing forum dumps (one thread per line, ``.gz`` read
and written as gzip), and the line-by-line reading, input checks and atomic replacement that
the other JSONL files (labelled pairs, exports) share. What a line must hold is
:func:`~qa_search.threads.thread_from_dict`'s to say.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import os
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path
from typing import Any

from qa_search.errors import DumpFormatError
from qa_search.threads import Thread, checked_thread, thread_from_dict

log = logging.getLogger(__name__)


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
    check_input(path)
    for lineno, raw in numbered_lines(path):
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


def check_input(path: Path, kind: str = "dump file") -> None:
    """Refuse a missing path or a directory, calling it a ``kind``; anything else (a file, a
    pipe, /dev/stdin) is read."""
    if not path.exists():
        raise FileNotFoundError(f"{kind} not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a {kind}")


def numbered_lines(
    path: Path, error: type[DumpFormatError] = DumpFormatError
) -> Iterator[tuple[int, bytes]]:
    """``(1-based number, raw bytes)`` of each line of ``path`` (gzip if it ends in ``.gz``).

    Lines are read as bytes, for the caller to decode one by one, so a bad byte is pinned to its
    line; a file that cannot be read any further (a truncated or false gzip) raises ``error``
    naming the line reached.
    """
    with _open_binary(path) as fh:
        lineno = 0
        while True:
            try:
                raw = fh.readline()
            except (OSError, EOFError) as exc:
                raise error(str(path), lineno + 1, f"cannot read: {exc}") from exc
            if not raw:
                return
            lineno += 1
            yield lineno, raw


def json_line(raw: bytes) -> object | None:
    """One JSONL line's value (None for a blank line); ValueError says what is wrong."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 ({exc.reason})") from exc
    if not line.strip():
        return None
    try:
        return json.loads(line.removeprefix("\ufeff"))  # a byte-order mark opens some files
    except json.JSONDecodeError as exc:  # where on the line, never its text (it may hold anything)
        raise ValueError(f"invalid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}") from exc


def pair_label(value: Any) -> int:
    """A labelled pair's ``label``: 1 (duplicate) or 0; anything else (``true``, ``"1"``, 0.7)
    is a ``ValueError``. One rule for every pair file (tune, eval, calibrate)."""
    if isinstance(value, bool) or value not in (0, 1):
        # a string or a list may be a post that slid into the label's column: named, not quoted
        kinds: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}
        shown = kinds.get(type(value), repr(value))
        raise ValueError(f"'label' must be 0 or 1, got {shown}")
    return int(value)


#: Told of a pair-file line that repeats an earlier pair: ``(path, line, first_path, first_line)``.
OnRepeat = Callable[[str, int, str, int], None]


def log_repeated_pair(path: str, line: int, first_path: str, first_line: int) -> None:
    """The default :data:`OnRepeat`: a logged warning."""
    log.warning("%s, line %d repeats the pair of %s, line %d: counted once",
                path, line, first_path, first_line)


class PairLines:
    """Where each pair of the pair files read so far was first read, so that a pair (two ids or
    two texts, whichever way round) counts once across them. One rule for every pair file."""

    def __init__(
        self, on_repeat: OnRepeat | None = None, error: type[DumpFormatError] = DumpFormatError
    ) -> None:
        self._first: dict[Hashable, tuple[str, int, int]] = {}
        self._on_repeat = on_repeat or log_repeated_pair
        self._error = error

    def first(self, key: Hashable, path: str, line: int, label: int) -> bool:
        """Whether this line is the first of its pair (``key``); a repeat with the same label is
        passed to ``on_repeat``, one with the other label raises ``error`` naming both lines."""
        first = self._first.setdefault(key, (path, line, label))
        if first[:2] == (path, line):
            return True
        where = f"line {first[1]}" + ("" if first[0] == path else f" of {first[0]}")
        if first[2] != label:
            raise self._error(path, line, f"the pair of {where} again (either order), labelled "
                                          f"{first[2]} there and {label} here: keep the one that is right")
        self._on_repeat(path, line, first[0], first[1])
        return False


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
    with replacing(path) as target, opener(target, "wt", encoding="utf-8") as fh:
        for t in threads:
            fh.write(json.dumps(checked_thread(t).to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Where to write a new ``path``: a file beside it, renamed over it on success (removed on
    failure, so a failure part way leaves the old file as it was). A link is followed, so its
    target gets the new content; a pipe or a device (``/dev/stdout``) is written to directly."""
    path = Path(path)
    if path.exists() and not path.is_file():
        yield path
        return
    path = path.resolve() if path.is_symlink() else path
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

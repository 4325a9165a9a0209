"""Importers: forum exports read as streams of :class:`Thread`, whatever their format: the JSONL
dump, CSV with a column mapping (csvreader.py) or a Stack Exchange data dump
(stackexchange.py); the format is told from each file's name or given.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from qa_search.dumps import read_dump
from qa_search.threads import Thread
from qa_search.tools.csvreader import read_csv
from qa_search.tools.fields import OnError
from qa_search.tools.stackexchange import read_stackexchange_posts

FORMATS = ("jsonl", "csv", "stackexchange")


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
    """Stream the threads of several files, each read as ``fmt`` (``"auto"``: as its name says,
    so one call may read dumps and CSV files together).

    ``on_error`` takes malformed records (default: raise); ``on_skip`` takes records passed over
    as empty (default: a logged warning). Raises ``ValueError`` at once, before reading anything,
    where :func:`check_inputs` does; no file is opened until the stream is read."""
    return _read(check_inputs(paths, fmt, mapping=mapping, site_url=site_url), mapping or {}, on_error,
                 site_url, on_skip)


def check_inputs(
    paths: Iterable[str | Path],
    fmt: str = "auto",
    *,
    mapping: Mapping[str, str] | None = None,
    site_url: str | None = None,
) -> list[tuple[str | Path, str]]:
    """Each of ``paths`` with the format :func:`read_threads` reads it as; from names alone, no
    file is opened.

    Raises ``ValueError`` for a format it cannot tell or does not know, a ``mapping`` when no
    input is CSV or a ``site_url`` when none is a Stack Exchange dump: ignored, they would leave
    each record short of the fields they were meant to supply, and the error would then blame
    the data."""
    inputs = [(path, detect_format(path) if fmt == "auto" else fmt) for path in paths]
    for _, kind in inputs:
        if kind not in FORMATS:
            raise ValueError(f"unknown format {kind!r}: use one of {', '.join(FORMATS)}")
    if not inputs:
        return inputs
    path, kind = inputs[0]
    if mapping and all(k != "csv" for _, k in inputs):
        raise ValueError(
            f"a column mapping is for CSV files, and no input is one ({path} is read as {kind}); "
            "a JSONL dump's lines must use the dump's own field names (id, title, body, answers "
            "with body, ...), which a mapping does not rename"
        )
    if site_url and all(k != "stackexchange" for _, k in inputs):
        raise ValueError(
            f"a site URL is for Stack Exchange Posts.xml files, and no input is one ({path} is read "
            f"as {kind}); give each thread its url in the data instead"
        )
    return inputs


def _read(
    inputs: list[tuple[str | Path, str]],
    mapping: Mapping[str, str],
    on_error: OnError | None,
    site_url: str | None,
    on_skip: OnError | None,
) -> Iterator[Thread]:
    for path, kind in inputs:
        if kind == "jsonl":
            yield from read_dump(path, on_error)
        elif kind == "csv":
            yield from read_csv(path, mapping, on_error=on_error)
        else:
            yield from read_stackexchange_posts(path, on_error=on_error, site_url=site_url, on_skip=on_skip)

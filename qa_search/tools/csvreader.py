"""Reading a forum exported as CSV, with a column mapping: one row per thread, or one row per
answer with the thread's columns repeated on consecutive rows (rows of one thread must be next
to each other). Streams: memory does not grow with the size of the file.

Malformed input raises :class:`DumpFormatError` (file, line, reason); with ``on_error`` the
error is passed to it and reading goes on.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from qa_search.dumps import check_input
from qa_search.errors import DumpFormatError
from qa_search.threads import Thread, thread_from_dict
from qa_search.tools.fields import OnError, parse_flag, parse_int, parse_tags

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

#: The longest field read: a post's text, however long a forum lets it be, and a bound on what
#: an unclosed quote reads before it is reported.
MAX_FIELD_CHARS = 16 * 1024 * 1024


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
    # the csv module's default (131,072 characters a field) refuses a forum's longest posts;
    # the limit is the process's, only ever raised here
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
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
            # the header is not quoted back: a file that is not CSV at all (a JSONL dump given
            # as CSV, a CSV without a header) has post text where the column names would be
            raise DumpFormatError(
                str(path), 1, f"no column for {', '.join(missing)} among the header's {len(header)} columns; "
                "map fields to columns with --map FIELD=COLUMN, or check the file is CSV with a header row"
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
                        obj["score"] = parse_int(cell["score"], f"column {fields['score']!r}")
                except ValueError as exc:
                    obj["_bad"] = (start, str(exc))
            if cell.get("answer", "").strip():
                answer: dict = {"body": cell["answer"]}
                try:
                    if cell.get("answer_id", "").strip():
                        answer["id"] = cell["answer_id"].strip()
                    if "answer_score" in cell:
                        what = f"column {fields['answer_score']!r}"
                        answer["score"] = parse_int(cell["answer_score"], what)
                    if "answer_accepted" in cell:
                        answer["accepted"] = parse_flag(cell["answer_accepted"])
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
                # spreadsheets export CSV in the system's code page (Windows-1252, say) unless told
                raise DumpFormatError(str(path), lineno, f"not valid UTF-8 ({exc.reason}): save the CSV as "
                                      "UTF-8, or convert it: iconv -f WINDOWS-1252 -t UTF-8") from exc
            yield text.removeprefix("\ufeff") if lineno == 1 else text

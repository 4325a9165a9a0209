"""How a forum's database holds its threads, for reading them straight from it (forumdb.py).

A :class:`SourceMapping` says how: a SQL query per kind of record (threads, answers) and a map
from the fields of a :class:`~qa_search.threads.Thread` to the queries' columns, with the field
names of the CSV importer (``id``, ``title``, ``body``, ``tags``, ``category``, ``created_at``,
``score``, ``url``; ``answer``, ``answer_id``, ``answer_score``, ``answer_accepted``, an answer
row's ``id`` naming its thread). Two more fields make reading incremental: ``updated_at`` (when
the record last changed) and, in a ``changes`` query, one row per record that can change a thread
(hidden and deleted ones included) with the thread's ``id`` and the change's ``updated_at``.

The queries are wrapped as subqueries (``SELECT ... FROM (query) AS src WHERE ...``), so they
must be plain SELECTs without a trailing semicolon; the database pushes the filters into them.
:func:`read_mapping` reads a mapping from a YAML or JSON file; the presets are in q2a.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa_search.errors import QASearchError

#: Fields a thread query's column can be mapped to.
THREAD_FIELDS = (
    "id", "title", "body", "tags", "category", "created_at", "score", "url",
    "updated_at", "format", "closed_at", "duplicate_of", "visible_to",
)
#: Fields an answer query's column can be mapped to (``id``: the answer's thread).
ANSWER_FIELDS = ("id", "answer", "answer_id", "answer_score", "answer_accepted", "updated_at", "format")
#: Fields of the ``changes`` query (``id``: the thread a change touches).
CHANGE_FIELDS = ("id", "updated_at")


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
    """How a forum's database holds its threads (see :mod:`qa_search.tools.sourcemapping`)."""

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

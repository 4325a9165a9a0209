"""An index directory's layout, and what can be read from it without the writer lock.

Layout::

    DIR/CURRENT              the current generation's number, e.g. "3"
    DIR/generations/000003/  one complete snapshot (see snapshot.py), with what its publish
                             folded in (live_writes.jsonl) and changed (changed_threads.json)

    DIR/HISTORY              one JSON line per publish or rollback (generation, action, time)
    DIR/pruned/000002.jsonl  what a pruned generation folded in, while a rollback may need it
    DIR/LOCK                 the writer lock (see lock.py)
    DIR/writes.jsonl         the log of live writes (see writelog.py)

The changes (publish, rollback, prune) are in generations.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from qa_search.errors import SnapshotError
from qa_search.storage.snapshot import MANIFEST, read_manifest

CURRENT = "CURRENT"
GENERATIONS = "generations"
HISTORY = "HISTORY"
#: ``DIR/pruned/N.jsonl``: what a pruned generation N folded in (its ``live_writes.jsonl``, after
#: a header naming its parent), kept while a rollback between kept generations may need it.
PRUNED = "pruned"
#: The name of a generation's own record of the live writes it folded in (see writelog).
FOLDED_NAME = "live_writes.jsonl"
#: The name of a generation's record of the threads its publish changed relative to its parent,
#: beyond the live writes it folded in: ``{"all": true}`` or ``{"ids": [...]}`` (see
#: :func:`generation_changes`).
CHANGED_NAME = "changed_threads.json"


def generation_path(index_dir: Path, number: int) -> Path:
    return index_dir / GENERATIONS / f"{number:06d}"


def pruned_record(index_dir: Path, number: int) -> Path:
    """Where the record of a pruned generation's parent and folded writes is kept."""
    return index_dir / PRUNED / f"{number:06d}.jsonl"


def generation_writes_file(index_dir: Path, number: int) -> Path:
    """The file holding the live writes generation ``number`` folded in: its own while it is
    kept, the pruned record after (the path may not exist: none were, or none are recorded)."""
    own = generation_path(index_dir, number)
    return own / FOLDED_NAME if (own / MANIFEST).is_file() else pruned_record(index_dir, number)


def changes_record(ids: Iterable[str] | None) -> bytes:
    """The content of :data:`CHANGED_NAME` for a publish that changed the threads ``ids`` (None:
    any thread may have changed, as in a full build or a change of settings)."""
    record = {"all": True} if ids is None else {"ids": sorted({str(i) for i in ids})}
    return json.dumps(record, separators=(",", ":")).encode("utf-8") + b"\n"


def generation_changes(index_dir: Path, number: int) -> frozenset[str] | None:
    """The threads generation ``number``'s publish changed relative to its parent, beyond the
    live writes it folded in (those are log entries); None where any may have: it recorded
    "all", recorded nothing (made before the record existed) or was pruned."""
    path = generation_path(index_dir, number) / CHANGED_NAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ids = record.get("ids") if isinstance(record, dict) and record.get("all") is not True else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return None
    return frozenset(ids)


def list_generations(index_dir: str | Path) -> list[int]:
    """The numbers of the complete generations in an index directory, ascending."""
    gens = Path(index_dir) / GENERATIONS
    if not gens.is_dir():
        return []
    return sorted(int(p.name) for p in gens.iterdir() if p.name.isdigit() and (p / MANIFEST).is_file())


def current_generation(index_dir: str | Path) -> int | None:
    """The current generation's number, or None when nothing was published yet."""
    pointer = Path(index_dir) / CURRENT
    if not pointer.is_file():
        return None
    text = pointer.read_text(encoding="utf-8").strip()
    if not text.isdigit():
        raise SnapshotError(f"{pointer} is damaged: expected a generation number, found {text[:40]!r}")
    return int(text)


def read_history(index_dir: str | Path) -> list[dict]:
    """The publish and rollback records, oldest first (a torn last line from a crash is skipped)."""
    path = Path(index_dir) / HISTORY
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("generation"), int):
            out.append(rec)
    return out


def last_published(index_dir: str | Path) -> int:
    """The highest generation number ever made current (0 when none)."""
    numbers = [r["generation"] for r in read_history(index_dir)]
    current = current_generation(index_dir)
    return max(numbers + [current or 0])


def lineage(index_dir: str | Path, generation: int) -> list[int]:
    """``generation`` and the generations it was made on top of, newest first.

    Each publish records the generation that was current then (``"parent"`` in its manifest,
    and in the record a prune keeps, see :func:`~qa_search.storage.generations.prune`). For
    generations that predate that record, the history says it: a publish's parent is the
    generation current just before it. Where neither knows, the one numbered below it is taken
    (publishes before any rollback are a straight line).
    """
    index_dir = Path(index_dir)
    parents: dict[int, int | None] = {}
    before: int | None = None
    for rec in read_history(index_dir):
        if rec.get("action") == "publish":
            parents.setdefault(rec["generation"], before)
        before = rec["generation"]
    chain = [generation]
    while True:
        g = chain[-1]
        recorded = _recorded_parent(index_dir, g)
        parent = recorded["parent"] if "parent" in recorded else parents.get(g, g - 1)
        if not isinstance(parent, int) or parent < 1 or parent >= g:  # the first, or nonsense
            return chain
        chain.append(parent)


def _recorded_parent(index_dir: Path, g: int) -> dict:
    """The manifest of generation ``g``, or the header of its pruned record ({} if neither)."""
    snap = generation_path(index_dir, g)
    if (snap / MANIFEST).is_file():
        try:
            return read_manifest(snap)
        except SnapshotError:
            return {}
    try:
        with open(pruned_record(index_dir, g), encoding="utf-8") as fh:
            header = json.loads(fh.readline()).get("header")
    except (OSError, ValueError, AttributeError):
        return {}
    return header if isinstance(header, dict) else {}

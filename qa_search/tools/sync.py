"""Keeping an index in step with a forum's own database: ``qa-search sync``.

The first sync reads every thread and builds the index (a full build, through the embedding
cache); later ones read only the threads changed since the last (by the source's change times,
less an overlap margin for transactions that commit late), compare the set of live thread ids
with the ids synced before to find the threads deleted or hidden at the source, and publish one
generation with both. A thread whose record reads the same as last time is not written again,
and a sync that finds nothing changed publishes nothing.

What a sync has done is kept in ``DIR/sync-state.json``: the source (its URL without the
password, and the mapping), the latest change time seen, and each synced thread's id with a
hash of its record. It is written, atomically and with the index's file modes, only after the
generation it describes is published; a sync killed before that leaves the published generation
as it was, and the next one reads again from the state before it. A state that does not describe
the current generation or one below it (after a rollback past it) is set aside: the next sync is
a full one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from qa_search.embedding.models import Embedder
from qa_search.errors import DumpFormatError, QASearchError
from qa_search.operations.admin import build
from qa_search.operations.changes import update_index
from qa_search.operations.lifecycle import (
    DEFAULT_KEEP,
    DEFAULT_MAX_REMOVALS,
    BuildReport,
    Progress,
    build_index,
)
from qa_search.storage.generations import writer_lock
from qa_search.storage.layout import current_generation, lineage
from qa_search.storage.permissions import open_file
from qa_search.threads import Thread

#: The presets ``qa-search sync --schema`` knows.
SYNC_SCHEMAS = ("q2a",)
#: The sync's state in the index directory.
STATE_NAME = "sync-state.json"
STATE_FORMAT = 1
#: How far before the latest change time seen a sync reads again: a transaction that commits
#: after a sync has read may carry change times up to its own duration older.
DEFAULT_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What a sync did.

    ``full``: every thread was read (a first sync, a changed source or mapping, ``full=True``);
    ``read``: threads read from the database; ``changed``: those whose record differed from the
    last sync's (all of them on a full sync); ``removed``: threads taken out of the index because
    the source no longer lists them (or, on a full sync, that the index held and the source
    lacks); ``embedded``/``reused``: texts given to the model / taken from the cache;
    ``threads``: the published index's count; ``generation``: the generation now current
    (None when nothing was ever published); ``published``: whether this sync published it;
    ``skipped``: records left out as unusable (named in the log by id, never by their text).
    """

    full: bool
    read: int
    changed: int
    removed: int
    embedded: int
    reused: int
    threads: int
    generation: int | None
    published: bool
    seconds: float
    skipped: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _hash(thread: Thread) -> str:
    record = json.dumps(thread.to_dict(), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.blake2b(record.encode("utf-8"), digest_size=8).hexdigest()


def _source_key(where: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{where}\n{fingerprint}".encode()).hexdigest()


def read_state(index_dir: str | Path) -> dict | None:
    """The sync state of ``index_dir``, or None when there is none (or it cannot be read)."""
    try:
        with open(Path(index_dir) / STATE_NAME, encoding="utf-8") as fh:
            state = json.load(fh)
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        return None
    return state


def write_state(index_dir: Path, state: dict) -> None:
    """Replace the sync state atomically (written beside it, synced, renamed), with the index's
    file mode."""
    target = index_dir / STATE_NAME
    partial = index_dir / f".{STATE_NAME}.{os.getpid()}.tmp"
    fd = open_file(partial, os.O_WRONLY | os.O_TRUNC)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, ensure_ascii=False, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    dir_fd = os.open(index_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _usable(state: dict | None, index_dir: Path, source: str) -> bool:
    """Whether ``state`` can start an incremental sync of ``index_dir`` from ``source``."""
    if state is None or state.get("source") != source:
        return False
    current = current_generation(index_dir)
    generation = state.get("generation")
    return current is not None and isinstance(generation, int) and generation in lineage(index_dir, current)


def sync_index(
    index_dir: str | Path,
    url: str,
    *,
    schema: str | None = None,
    mapping: str | Path | None = None,
    prefix: str = "qa_",
    full: bool = False,
    embedder: Embedder | None = None,
    model: str | None = None,
    backend: str | None = None,
    margin: timedelta = DEFAULT_MARGIN,
    keep: int = DEFAULT_KEEP,
    max_removals: float = DEFAULT_MAX_REMOVALS,
    allow_removals: bool = False,
    group_readable: bool | None = None,
    progress: Progress | None = None,
    on_skip: Callable[[DumpFormatError], None] | None = None,
    after_read: Callable[[], None] | None = None,
) -> SyncReport:
    """Bring ``index_dir`` in step with the forum database at ``url`` (a SQLAlchemy URL) and
    publish the result as a new generation (none when nothing changed).

    The source is a preset (``schema``: ``"q2a"``, Question2Answer, its tables named with
    ``prefix``) or a mapping file (``mapping``, YAML or JSON; see
    :mod:`qa_search.tools.forumdb`). ``full`` reads every thread even when the state allows
    less. The model is ``embedder``, else ``model`` on ``backend`` as for
    :func:`~qa_search.operations.admin.build` (the index's own by default). A sync that would
    remove more than ``max_removals`` (a share) of the threads synced before raises
    :class:`QASearchError` before publishing, unless ``allow_removals``. ``progress`` is a
    ``(done, total)`` callback for the texts embedded; ``on_skip`` takes the records left out
    (default: none is reported); ``after_read`` is called once the threads are read, before
    anything is embedded or published.
    """
    # SQLAlchemy takes half a second to import: only a sync needs it, not every command
    from qa_search.tools.forumdb import ForumDatabase, encode_moment, moment_before
    from qa_search.tools.q2a import SCHEMAS
    from qa_search.tools.sourcemapping import read_mapping

    if (schema is None) == (mapping is None):
        raise QASearchError("name the source's schema: a preset (--schema q2a) or a mapping file (--mapping)")
    if schema is not None and schema not in SCHEMAS:
        raise QASearchError(f"unknown schema {schema!r}: the presets are {', '.join(SCHEMAS)}")
    if not 0 <= max_removals <= 1:
        raise ValueError(f"max_removals is a share between 0 and 1, got {max_removals}")
    source = SCHEMAS[schema](prefix) if schema is not None else read_mapping(mapping)  # type: ignore[arg-type]
    index_dir = Path(index_dir)
    started = time.perf_counter()
    skipped: list[DumpFormatError] = []

    def skip(err: DumpFormatError) -> None:
        skipped.append(err)
        if on_skip is not None:
            on_skip(err)

    db = ForumDatabase(url, source)
    key = _source_key(db.where, source.fingerprint())
    try:
        with writer_lock(index_dir):
            state = read_state(index_dir)
            incremental = not full and _usable(state, index_dir, key)
            as_of = datetime.now(timezone.utc)
            with db.snapshot():
                watermark = db.watermark()
                if incremental and db.incremental and state is not None:
                    read, live, asked = _read_changes(db, state, margin, moment_before, skip)
                else:  # every thread (compared with the state's below, where it is usable)
                    read = list(db.threads(on_skip=skip))
                    live = asked = {t.id for t in read} | db.skipped_ids
            if after_read is not None:
                after_read()
            hashes = {t.id: _hash(t) for t in read}
            if incremental and state is not None:
                report, synced = _apply_changes(
                    index_dir, state, read, hashes, live, asked, embedder, keep, max_removals, allow_removals,
                    group_readable, progress, started,
                )
            else:
                report, synced = _rebuild(
                    index_dir, read, hashes, embedder, model, backend, keep, as_of, max_removals,
                    allow_removals, group_readable, progress, started,
                )
            if report.generation is not None:
                write_state(index_dir, {
                    "format": STATE_FORMAT,
                    "source": key,
                    "where": db.where,
                    "generation": report.generation,
                    "watermark": encode_moment(watermark),
                    "synced_at": as_of.isoformat(),
                    "threads": synced,
                })
            return replace(report, skipped=len(skipped), seconds=round(time.perf_counter() - started, 3))
    finally:
        db.close()


def _read_changes(db: Any, state: dict, margin: timedelta, moment_before: Callable,
                  skip: Callable[[DumpFormatError], None]) -> tuple[list[Thread], set[str], set[str]]:
    """The threads changed since ``state`` was written (and those the source lists that the
    state lacks), the ids of every thread the source lists, and the ids of those asked for."""
    live_raw = db.live_ids()
    live = {str(i).strip() for i in live_raw}
    known = state.get("threads", {})
    wanted = {str(i).strip(): i for i in live_raw if str(i).strip() not in known}
    stored = state.get("watermark")
    if stored is not None:
        for i in db.changed_ids(moment_before(stored, margin)):
            wanted.setdefault(str(i).strip(), i)
    else:  # the source held no change time: every thread is read again
        wanted.update({str(i).strip(): i for i in live_raw})
    asked = {tid: raw for tid, raw in wanted.items() if tid in live}
    return list(db.threads(list(asked.values()), on_skip=skip)), live, set(asked)


def _check_removals(removing: int, before: int, max_removals: float, allow_removals: bool) -> None:
    share = removing / before if before else 0.0
    if share > max_removals and not allow_removals:
        raise QASearchError(
            f"this sync would remove {removing} of the {before} threads synced before ({share:.1%}), "
            f"more than the {max_removals:.0%} allowed; nothing was published. Check the source "
            "(its URL, the mapping's queries), or allow it (qa-search sync --allow-removals, or "
            "--max-removals SHARE)"
        )


def _apply_changes(
    index_dir: Path, state: dict, read: list[Thread], hashes: dict[str, str], live: set[str],
    asked: set[str], embedder: Embedder | None, keep: int, max_removals: float, allow_removals: bool,
    group_readable: bool | None, progress: Progress | None, started: float,
) -> tuple[SyncReport, dict[str, str]]:
    known: dict[str, str] = dict(state.get("threads", {}))
    got = {t.id for t in read}
    # gone from the source, or still listed but no longer readable as a thread (skipped)
    gone = sorted(tid for tid in known if tid not in live or (tid in asked and tid not in got))
    changed = [t for t in read if known.get(t.id) != hashes[t.id]]
    synced = {tid: h for tid, h in known.items() if tid not in gone}
    synced.update({t.id: hashes[t.id] for t in changed})
    current = current_generation(index_dir)
    if not changed and not gone:
        return SyncReport(full=False, read=len(read), changed=0, removed=0, embedded=0, reused=0,
                          threads=len(synced), generation=current, published=False, seconds=0.0), synced
    _check_removals(len(gone), len(known), max_removals, allow_removals)
    report = update_index(index_dir, changed, embedder, keep=keep, progress=progress,
                          group_readable=group_readable, removing=gone)
    summary = _from_build(report, full=False, read=len(read), changed=len(changed), removed=report.deleted)
    return summary, synced


def _rebuild(
    index_dir: Path, read: list[Thread], hashes: dict[str, str], embedder: Embedder | None,
    model: str | None, backend: str | None, keep: int, as_of: datetime, max_removals: float,
    allow_removals: bool, group_readable: bool | None, progress: Progress | None, started: float,
) -> tuple[SyncReport, dict[str, str]]:
    options: dict[str, Any] = dict(keep=keep, progress=progress, as_of=as_of, max_removals=max_removals,
                                   allow_removals=allow_removals, group_readable=group_readable)
    if embedder is not None:
        report = build_index(index_dir, read, embedder, **options)
    else:
        report = build(index_dir, read, model, backend=backend, **options)
    return _from_build(report, full=True, read=len(read), changed=len(read), removed=report.removed), hashes


def _from_build(report: BuildReport, **fields: Any) -> SyncReport:
    return SyncReport(embedded=report.embedded, reused=report.reused, threads=report.threads,
                      generation=report.generation, published=True, seconds=report.seconds, **fields)

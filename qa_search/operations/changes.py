"""Changing an index directory's current generation: update, delete, reconfigure and
calibrate, each publishing a new generation under the writer lock (a full build is in
lifecycle.py, whose publish, report and embedding cache these share).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

from qa_search.embedding.cache import CachedEmbedder
from qa_search.embedding.loading import load_recorded_embedder
from qa_search.embedding.models import Embedder
from qa_search.embedding.reranker import Reranker
from qa_search.errors import QASearchError, SnapshotError, UnknownThreadError
from qa_search.index.contents import as_str_list
from qa_search.index.defaults import refresh_defaults as adopt_package_defaults
from qa_search.index.forum import ForumIndex
from qa_search.operations.lifecycle import (
    DEFAULT_KEEP,
    BuildReport,
    Progress,
    cached_embedder,
    publish_generation,
    report_of,
)
from qa_search.scoring.calibration import Calibration
from qa_search.storage.generations import resolve_snapshot, writer_lock
from qa_search.storage.logformat import UPSERT
from qa_search.storage.permissions import set_access
from qa_search.storage.snapshot import read_manifest
from qa_search.storage.writelog import WriteLog, current_folded_through, pending_entries
from qa_search.threads import Thread


def _log_brings_texts(index_dir: Path) -> bool:
    """Whether the write log holds upserts that a publish would fold in: their new texts are then
    embedded through the embedding cache, so they are counted and kept for the next build (a
    publish that embeds nothing of its own need not open the cache otherwise)."""
    try:
        pending = pending_entries(WriteLog(index_dir), current_folded_through(index_dir))
        return any(e.op == UPSERT for e in pending)
    except SnapshotError:  # a damaged log: the publish itself stops at it, naming the line
        return False


def _load_current(
    index_dir: Path, embedder: Embedder | None, use_cache: bool
) -> tuple[ForumIndex, CachedEmbedder | None]:
    manifest = read_manifest(resolve_snapshot(index_dir))
    if embedder is None:
        embedder = load_recorded_embedder(manifest["model"])
    cached = cached_embedder(index_dir, embedder) if use_cache else None
    return ForumIndex.load(index_dir, cached or embedder), cached


def update_index(
    index_dir: str | Path,
    threads: Iterable[Thread],
    embedder: Embedder | None = None,
    *,
    keep: int = DEFAULT_KEEP,
    use_cache: bool = True,
    progress: Progress | None = None,
    index_progress: Progress | None = None,
    group_readable: bool | None = None,
    removing: Iterable[str] = (),
) -> BuildReport:
    """Publish a new generation: the current one with ``threads`` added or replaced.

    Without ``embedder`` the model named in the current generation's manifest is loaded.
    ``group_readable``: as for :func:`build_index`. ``removing``: ids of threads to remove in
    the same generation (those absent are passed over; the report's ``deleted`` counts the rest).
    """
    index_dir = Path(index_dir)
    started = time.perf_counter()
    with writer_lock(index_dir, existing=True):
        set_access(index_dir, group_readable)
        index, cached = _load_current(index_dir, embedder, use_cache)
        batch = list(threads)
        gone = as_str_list(removing)
        if not batch and not gone:
            raise QASearchError("no threads to update: the input is empty")
        before = cached.embedded if cached else 0
        stats = index.upsert(batch, progress=progress)  # the model's work, before the log is locked
        embedded = cached.embedded - before if cached else stats.embedded
        deleted = 0

        def apply(ix: ForumIndex) -> None:
            nonlocal deleted
            ix.upsert(batch)
            deleted = ix.delete(gone)

        # the service's pending writes are folded in first and the update applied again on top:
        # the operator's command is newer than them (its vectors are in the index or the cache)
        report = publish_generation(
            index_dir, index, cached, embedded, stats.embedded + stats.reused, started, keep,
            index_progress=index_progress, then=apply, changed=[*(t.id for t in batch), *gone],
        )
        return replace(report, deleted=deleted)


class _NothingDeleted(Exception):
    pass


def delete_threads(
    index_dir: str | Path,
    thread_ids: Iterable[str],
    embedder: Embedder | None = None,
    *,
    missing_ok: bool = False,
    keep: int = DEFAULT_KEEP,
) -> BuildReport:
    """Publish a new generation: the current one without these threads.

    An id not in the index raises :class:`UnknownThreadError` (nothing is published) unless
    ``missing_ok``.
    """
    index_dir = Path(index_dir)
    started = time.perf_counter()
    ids = list(dict.fromkeys(as_str_list(thread_ids)))
    deleted = 0

    def delete(ix: ForumIndex) -> None:
        # after the service's pending writes: a thread only they hold can be deleted, and a
        # pending edit of a deleted thread cannot bring it back
        nonlocal deleted
        unknown = [tid for tid in ids if tid not in ix]
        if unknown and not missing_ok:
            raise UnknownThreadError(unknown[0])
        deleted = ix.delete(ids)
        if not deleted:
            raise _NothingDeleted

    with writer_lock(index_dir, existing=True):
        index, cached = _load_current(index_dir, embedder, use_cache=_log_brings_texts(index_dir))
        try:
            report = publish_generation(index_dir, index, cached, 0, 0, started, keep, then=delete,
                                        changed=ids)
        except _NothingDeleted:  # no change, no new generation
            return report_of(index, resolve_snapshot(index_dir), started)
        return replace(report, deleted=deleted)


def reconfigure_index(
    index_dir: str | Path,
    settings: Mapping[str, object],
    embedder: Embedder | None = None,
    *,
    keep: int = DEFAULT_KEEP,
    refresh_defaults: bool = False,
    reranker: Reranker | Literal[False] | None = None,
) -> BuildReport:
    """Publish a new generation: the current one with scoring ``settings`` changed, and with
    ``refresh_defaults`` the package's current shipped defaults for its model adopted (see
    :func:`~qa_search.index.defaults.refresh_defaults`). ``reranker``: attach this one (its
    files are copied into the index directory), False: detach it, None: keep what is attached.

    Nothing is embedded again; see :meth:`ForumIndex.reconfigure` for what may change. A bad
    setting raises ``ValueError`` before anything is written.
    """
    index_dir = Path(index_dir)
    started = time.perf_counter()
    with writer_lock(index_dir, existing=True):
        index, cached = _load_current(index_dir, embedder, use_cache=_log_brings_texts(index_dir))
        index.reconfigure(settings)
        if refresh_defaults:
            adopt_package_defaults(index)
        if reranker is not None:
            index.reranker = reranker or None
        return publish_generation(index_dir, index, cached, 0, 0, started, keep)


def calibrate_index(
    index_dir: str | Path,
    pairs: Sequence[tuple[str, str]],
    labels: Sequence[int],
    targets: Mapping[str, float] | None = None,
    embedder: Embedder | None = None,
    *,
    keep: int = DEFAULT_KEEP,
    on_missing: Callable[[int], None] | None = None,
) -> tuple[Calibration, BuildReport]:
    """Publish a new generation: the current one with its duplicate scorer fitted on labelled
    pairs of stored threads (see :meth:`ForumIndex.calibrate`). Holds the writer lock, folds in
    the service's live writes and prunes like every publish; bad pairs (an unknown id, a single
    class) raise before anything is written. With ``on_missing``, a pair naming a thread the
    index lacks is not an error: its position in ``pairs`` is passed there and it is left out
    (the index is known only under the lock, with the live writes folded in). Returns the
    calibration and the report."""
    index_dir = Path(index_dir)
    started = time.perf_counter()
    with writer_lock(index_dir, existing=True):
        index, cached = _load_current(index_dir, embedder, use_cache=_log_brings_texts(index_dir))
        if on_missing is not None:
            kept = []
            for i, (a, b) in enumerate(pairs):
                if a in index and b in index:
                    kept.append(i)
                else:
                    on_missing(i)
            if not kept:
                raise QASearchError(
                    f"none of the {len(pairs)} pairs names two threads of the index: nothing to calibrate on"
                )
            pairs, labels = [pairs[i] for i in kept], [labels[i] for i in kept]
        calibration = index.calibrate(pairs, labels, None if targets is None else dict(targets))
        # the duplicate scorer changes, no thread: a conditional write read before it still holds
        return calibration, publish_generation(index_dir, index, cached, 0, 0, started, keep, changed=())

"""Building an index directory: a full build from a forum's threads, published as a new
generation with cached embeddings under the writer lock, keeping the acknowledged live writes.

Also what every publishing operation shares: the report (:class:`BuildReport`), the embedding
cache in front of the model, the publish itself (live writes folded in, old generations pruned),
and the model and settings a build starts from. Changing the current generation (update,
delete, reconfigure, calibrate) is in changes.py; verification in verify.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from qa_search.embedding.cache import CachedEmbedder, EmbeddingCache, cache_root
from qa_search.embedding.loading import load_embedder, load_recorded_embedder
from qa_search.embedding.model_defaults import ShippedDefaults
from qa_search.embedding.models import Embedder, model_fingerprint, probe_vectors, resolve_model
from qa_search.embedding.tuned import model_index_settings
from qa_search.errors import QASearchError, SnapshotError
from qa_search.index.config import IndexConfig, config_of
from qa_search.index.forum import ForumIndex
from qa_search.index.persistence import (
    matches_recorded_model,
    stored_calibration,
    stored_reranker,
    stored_shipped_defaults,
)
from qa_search.operations.publishing import newer_than, publish_with_log
from qa_search.scoring.calibration import Calibration
from qa_search.storage.generations import prune, resolve_snapshot, writer_lock
from qa_search.storage.layout import (
    current_generation,
    generation_changes,
    generation_path,
    lineage,
    list_generations,
)
from qa_search.storage.logformat import UPSERT, WriteEntry, parse_time
from qa_search.storage.permissions import secure_tree, set_access
from qa_search.storage.snapshot import read_manifest
from qa_search.storage.writelog import WriteLog, current_folded_through, generation_writes, pending_entries
from qa_search.threads import Thread, thread_from_dict

#: Generations kept after a publish, by default (the current one is always kept).
DEFAULT_KEEP = 3
#: The embedding cache is merged (and stale vectors dropped) when it has more shards than this.
COMPACT_SHARDS = 8
#: The share of the threads an index serves that ``qa-search build`` removes without being told to.
DEFAULT_MAX_REMOVALS = 0.1

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What a build, update or delete did.

    ``threads`` and ``vectors`` count the whole published index; ``embedded`` the texts given to
    the model; ``reused`` the vectors of the written threads taken from the cache or the previous
    index instead; ``seconds`` is wall time; ``pruned`` the generations deleted afterwards.
    """

    threads: int
    vectors: int
    embedded: int
    reused: int
    seconds: float
    generation: int
    snapshot: str
    deleted: int = 0
    pruned: tuple[int, ...] = ()
    #: Writes from the service's live write log folded into this generation (then compacted away).
    live_writes: int = 0
    #: Why a rebuild could not keep the index's duplicate calibration (None: kept, or none).
    calibration_dropped: str | None = None
    #: Threads the index served before a full build that its result does not hold.
    removed: int = 0
    #: Live writes folded into earlier generations that a full build applied again on top of
    #: its input (acknowledged after the input's time, see :func:`build_index`).
    kept_live_writes: int = 0
    #: Threads that publishes after the input's time (an operator's update or delete, a sync)
    #: changed, which a full build kept as the index held them (see :func:`build_index`).
    kept_published: int = 0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["pruned"] = list(self.pruned)
        return out


def cached_embedder(index_dir: Path, embedder: Embedder) -> CachedEmbedder:
    """``embedder`` behind ``index_dir``'s embedding cache, keyed by the model's probe vectors."""
    fingerprint = model_fingerprint(probe_vectors(embedder))
    return CachedEmbedder(embedder, EmbeddingCache(cache_root(index_dir), fingerprint, embedder.dimension))


def _referenced_hashes(index_dir: Path) -> set[str]:
    """The text hashes used by the generations kept in ``index_dir``."""
    hashes: set[str] = set()
    for g in list_generations(index_dir):
        with open(generation_path(index_dir, g) / "parts.jsonl", encoding="utf-8") as fh:
            for line in fh:
                hashes.add(json.loads(line)[4])
    return hashes


def publish_generation(
    index_dir: Path,
    index: ForumIndex,
    cached: CachedEmbedder | None,
    embedded: int,
    written_vectors: int,
    started: float,
    keep: int,
    index_progress: Progress | None = None,
    then: Callable[[ForumIndex], None] | None = None,
    since: datetime | None = None,
    carried: list[WriteEntry] | None = None,
    changed: Collection[str] | None = None,
) -> BuildReport:
    """Publish ``index`` as ``index_dir``'s next generation: the service's live writes folded in
    and ``then`` applied on top of them, under the log's lock (``since``, ``carried`` and
    ``changed``, the threads the caller changed or None for any, as for
    :func:`~qa_search.operations.publishing.publish_with_log`); then all but ``keep`` generations
    pruned and the embedding cache flushed (compacted past :data:`COMPACT_SHARDS` shards).
    ``embedded`` and ``written_vectors`` count the caller's own texts embedded and vectors
    written since ``started`` (``time.perf_counter``)."""
    if cached is not None:
        cached.cache.flush()  # first: the embeddings are kept even if writing the snapshot fails
        before_log = cached.embedded
    # live writes pushed to the service since the last publish are folded in, then dropped from the log
    path, live_writes = publish_with_log(index, index_dir, progress=index_progress, then=then, since=since,
                                         carried=carried, changed=changed)
    if cached is not None and cached.embedded > before_log:  # texts the live writes brought
        cached.cache.flush()
        embedded += cached.embedded - before_log
        written_vectors += cached.embedded - before_log
    pruned = prune(index_dir, keep)
    if cached is not None and cached.cache.shard_count > COMPACT_SHARDS:
        cached.cache.compact(_referenced_hashes(index_dir))
    secure_tree(index_dir)  # the embedding cache's shards, written after the publish's own pass
    return report_of(index, path, started, embedded=embedded, reused=written_vectors - embedded,
                   pruned=tuple(pruned), live_writes=live_writes)


def report_of(
    index: ForumIndex, snapshot: Path, started: float, embedded: int = 0, reused: int = 0, **fields
) -> BuildReport:
    """The report of ``index``, published as ``snapshot``, by a run that began at ``started``."""
    counts = index.counts
    return BuildReport(
        threads=counts["threads"],
        vectors=counts["question_vectors"] + counts["answer_vectors"],
        embedded=embedded,
        reused=reused,
        seconds=round(time.perf_counter() - started, 3),
        generation=int(snapshot.name),
        snapshot=str(snapshot),
        **fields,
    )


def current_config(index_dir: str | Path) -> IndexConfig:
    """The settings of ``index_dir``'s current generation (the defaults when it has none)."""
    if current_generation(index_dir) is None:
        return IndexConfig()
    snap = resolve_snapshot(index_dir)
    return config_of(snap, read_manifest(snap))


def current_model(index_dir: str | Path) -> dict | None:
    """The model record (``name``, ``backend``, ``dimension``, ...) of ``index_dir``'s current
    generation, or None when it has none."""
    if current_generation(index_dir) is None:
        return None
    return dict(read_manifest(resolve_snapshot(index_dir))["model"])


def build_embedder(index_dir: str | Path, model: str | None = None, backend: str | None = None) -> Embedder:
    """The embedder a build of ``index_dir`` uses: ``model`` on ``backend`` where given, and
    otherwise what the index was built with, so a rebuild keeps its model and encoder. A new
    index, or a model other than the index's, starts on the default model and ``"auto"``.
    """
    recorded = current_model(index_dir)
    if recorded is not None and (model is None or resolve_model(model)[0] == recorded["name"]):
        if backend is None:
            return load_recorded_embedder(recorded)
        return load_embedder(str(recorded["name"]), backend=backend)
    return load_embedder(model, backend=backend or "auto")


def starting_config(index_dir: str | Path, model: str) -> tuple[IndexConfig, dict[str, object]]:
    """The settings a build of ``index_dir`` with ``model`` starts from, and the model's part.

    The current generation's settings are kept; where the index is new or was built with
    another model, the settings a tuned model recommends
    (:func:`~qa_search.embedding.tuned.model_index_settings`) are applied on top. Returns
    ``(config, settings taken from the model)``.
    """
    if current_generation(index_dir) is None:
        config = IndexConfig()
    else:
        snap = resolve_snapshot(index_dir)
        manifest = read_manifest(snap)
        config = config_of(snap, manifest)
        if manifest["model"]["name"] == model:
            return config, {}
    from_model = model_index_settings(model)
    try:
        return config.updated(from_model), from_model
    except ValueError as exc:
        raise QASearchError(f"the settings of model {model} do not fit this version: {exc}") from exc


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _folded_since(index_dir: Path, since: datetime | None) -> list[WriteEntry]:
    """The live writes the current generation and those below it folded in, acknowledged after
    ``since``, oldest first, each once (a write a rollback put back is recorded twice)."""
    current = current_generation(index_dir)
    if current is None:
        return []
    seen: set[str] = set()
    out = []
    for g in reversed(lineage(index_dir, current)):
        for entry in newer_than(generation_writes(index_dir, g), since):
            if entry.id is not None:
                if entry.id in seen:
                    continue
                seen.add(entry.id)
            out.append(entry)
    return out


def _current_threads(index_dir: Path, ids: set[str] | None = None) -> dict[str, dict]:
    """The current generation's threads (those in ``ids``), as stored, by id."""
    current = current_generation(index_dir)
    if current is None:
        return {}
    out = {}
    with open(generation_path(index_dir, current) / "threads.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                if ids is None or record["id"] in ids:
                    out[record["id"]] = record
    return out


#: A generation's recorded publish time is cut to the second: one in the second of the input's
#: time may be later than it, and is taken to be (what the index holds then stands).
_PUBLISH_TIME_GRAIN = timedelta(seconds=1)


def _published_since(index_dir: Path, since: datetime) -> set[str]:
    """The threads that the publishes after ``since`` on the current generation's line changed
    (an operator's update or delete, a sync), as far back as the kept generations record it. A
    publish that recorded "any thread" (a build, a change of settings) names none: its input
    is no newer account of a thread than this build's."""
    current = current_generation(index_dir)
    ids: set[str] = set()
    for g in [] if current is None else lineage(index_dir, current):
        try:
            at = parse_time(read_manifest(generation_path(index_dir, g)).get("created_at"))
        except SnapshotError:  # pruned
            break
        if at is None or at + _PUBLISH_TIME_GRAIN <= since:  # older from here on, or not known
            break
        ids.update(generation_changes(index_dir, g) or ())
    return ids


def _carry(index_dir: Path, index: ForumIndex, ids: set[str]) -> None:
    """Set the threads ``ids`` (those live writes folded in earlier, or later publishes, name)
    to the state the current generation holds them in: the write's, or what an operator's update
    or delete made of them since (not the write's, which that would undo), or absent."""
    if not ids:
        return
    held = _current_threads(index_dir, ids)
    if held:
        index.upsert([thread_from_dict(r) for r in held.values()])
    gone = [i for i in ids if i not in held and i in index]
    if gone:
        index.delete(gone)


def _served_ids(index_dir: Path) -> set[str]:
    """The threads served now: the current generation's, with the pending live writes on top."""
    ids = set(_current_threads(index_dir))
    for entry in pending_entries(WriteLog(index_dir), current_folded_through(index_dir)):
        if entry.op == UPSERT:
            ids.update(t.id for t in entry.threads)
        else:
            ids.difference_update(entry.ids)
    return ids


def build_index(
    index_dir: str | Path,
    threads: Iterable[Thread],
    embedder: Embedder,
    *,
    config: IndexConfig | None = None,
    keep: int = DEFAULT_KEEP,
    use_cache: bool = True,
    progress: Progress | None = None,
    index_progress: Progress | None = None,
    as_of: datetime | None = None,
    max_removals: float | None = None,
    allow_removals: bool = False,
    group_readable: bool | None = None,
) -> BuildReport:
    """Index ``threads`` from scratch and publish them as a new generation of ``index_dir``.

    Holds the writer lock from before the first thread is read. With ``use_cache``, texts whose
    embedding is in ``DIR/cache`` (from earlier builds with this model) are not embedded again,
    and new embeddings are added to it as they are made, so even an interrupted build is not
    wasted. ``config`` defaults to :func:`starting_config`: the current generation's settings,
    with a tuned model's recommended ones when the model is new to the index.
    Afterwards all but the ``keep`` newest generations are pruned. ``progress`` and
    ``index_progress`` are ``(done, total)`` callbacks for the texts embedded and the vectors
    indexed (the latter only when a vector index is rebuilt, e.g. as HNSW).

    Acknowledged live writes are kept: ``threads`` are taken to be the forum as of ``as_of``
    (when the dump was exported; a naive time is UTC), and what every
    live write acknowledged after it did is kept on top of them: a write still in the write log
    is applied; a thread that one folded into the current generation, or a generation below it,
    names is kept as the current generation holds it (so an operator's later update or delete
    of it stands), as far back as those records are kept (the ``keep`` generations, those a
    rollback between them needs, and the writes each full build carried over). So too a thread
    that a publish after ``as_of`` changed (an operator's update or delete, a sync), as far back
    as the kept generations go. Older writes and publishes are replaced by ``threads``.
    Without ``as_of``, ``threads`` are taken to be as of the current generation's publish: the
    pending writes are applied, those folded in before are replaced (``qa-search build``
    always passes a time).

    With ``max_removals`` (a share: ``qa-search build`` passes :data:`DEFAULT_MAX_REMOVALS`,
    0.1 = 10%), a build that would remove more of the threads the index serves raises
    :class:`QASearchError`, naming the count and the share, before anything is published,
    unless ``allow_removals``; None sets no bound. The report's ``removed`` counts them.
    ``group_readable``: make the index group-readable (True), owner-only (False) or keep it as
    it is (None; owner-only for a new index), see :mod:`qa_search.storage.permissions`.
    """
    index_dir = Path(index_dir)
    started = time.perf_counter()
    since = None if as_of is None else _aware(as_of)
    if max_removals is not None and not 0 <= max_removals <= 1:
        raise ValueError(f"max_removals is a share between 0 and 1, got {max_removals}")
    with writer_lock(index_dir):
        set_access(index_dir, group_readable)
        batch = list(threads)
        if not batch:
            raise QASearchError("no threads to index: the input is empty")
        cached = cached_embedder(index_dir, embedder) if use_cache else None
        index = ForumIndex(cached or embedder, config or starting_config(index_dir, embedder.name)[0])
        current = _current_snapshot(index_dir)
        index.calibration, dropped = _kept_calibration(current, index)
        # it reads question texts, not vectors: any model keeps it
        index.reranker = None if current is None else stored_reranker(*current)
        index.shipped_defaults = _kept_shipped_defaults(current, index)
        before = cached.embedded if cached else 0
        stats = index.upsert(batch, progress=progress)
        # writes acknowledged after the dump was made and folded in since: the dump lacks them
        kept = _folded_since(index_dir, since) if since is not None else []
        # and threads that publishes after it changed: the sync, update or delete that made them
        published = _published_since(index_dir, since) if since is not None else set()
        _carry(index_dir, index, {i for e in kept for i in e.thread_ids} | published)
        embedded = cached.embedded - before if cached else stats.embedded
        removed: list[str] = []

        def guard(ix: ForumIndex) -> None:  # with the pending writes applied, under the log's lock
            served = _served_ids(index_dir)
            removed.extend(i for i in served if i not in ix)
            share = len(removed) / len(served) if served else 0.0
            if max_removals is not None and share > max_removals and not allow_removals:
                raise QASearchError(
                    f"this build would remove {len(removed)} of the {len(served)} threads the index "
                    f"serves ({share:.1%}), more than the {max_removals:.0%} allowed; nothing was "
                    "published. Check that the input is the whole forum, or allow it "
                    "(qa-search build --allow-removals, or --max-removals SHARE)"
                )

        report = publish_generation(
            index_dir, index, cached, embedded, stats.embedded + stats.reused, started, keep,
            index_progress=index_progress, then=guard, since=since, carried=kept,
        )
        return replace(report, calibration_dropped=dropped, removed=len(removed), kept_live_writes=len(kept),
                       kept_published=len(published))


def _current_snapshot(index_dir: Path) -> tuple[Path, dict] | None:
    """The current generation's snapshot and manifest, whose parts a rebuild keeps (None for a
    new index)."""
    if current_generation(index_dir) is None:
        return None
    snap = resolve_snapshot(index_dir)
    return snap, read_manifest(snap)


def _kept_shipped_defaults(current: tuple[Path, dict] | None, index: ForumIndex) -> ShippedDefaults | None:
    """The shipped defaults the current generation recorded, for a rebuild with the same model to
    keep (a package upgrade changes them only through configure --refresh-defaults); None (the
    package's current ones) for a first build, another model or an unreadable record."""
    if current is None:
        return None
    snap, manifest = current
    if manifest["model"]["name"] != index.embedder.name:
        return None
    try:
        return stored_shipped_defaults(snap, manifest)
    except (OSError, ValueError):
        return None


def _kept_calibration(
    current: tuple[Path, dict] | None, index: ForumIndex
) -> tuple[Calibration | None, str | None]:
    """The current generation's duplicate calibration, for a rebuild with the same model to keep
    (it maps the pair signals of this model to probabilities, whatever threads are indexed), or
    why it cannot be kept."""
    if current is None:
        return None, None
    snap, manifest = current
    if "calibration.json" not in manifest.get("files", {}):
        return None, None
    model = manifest["model"]
    embedder = index.embedder
    if model["name"] != embedder.name or not matches_recorded_model(model, embedder, index._probe):
        return None, f"it was fitted with model {model['name']!r}; run qa-search calibrate again"
    try:
        return stored_calibration(snap, manifest), None
    except (OSError, ValueError) as exc:
        return None, f"{exc}; run qa-search calibrate again"

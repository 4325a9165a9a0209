"""An index directory's operations as an operator runs them, one call each: a build that names its
model, changing settings, rolling back, describing the directory, and the check before serving.

Each does under the writer lock what must not interleave with another writer, and raises the
library's errors (:class:`~qa_search.errors.SettingsError` for a bad setting) for the caller to
report; the ``qa-search`` commands are these calls plus printing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from qa_search.embedding.cache import cache_root
from qa_search.embedding.loading import check_recorded_model
from qa_search.embedding.model_defaults import package_defaults
from qa_search.embedding.reranker import Reranker
from qa_search.errors import SettingsError, SnapshotError
from qa_search.index.config import IndexConfig, check_scoring_settings
from qa_search.index.persistence import stored_calibration
from qa_search.operations.changes import reconfigure_index
from qa_search.operations.lifecycle import (
    DEFAULT_KEEP,
    BuildReport,
    Progress,
    build_embedder,
    build_index,
    current_config,
    starting_config,
)
from qa_search.storage.generations import GenerationInfo, describe, resolve_snapshot, rollback, writer_lock
from qa_search.storage.layout import current_generation, read_history
from qa_search.storage.lock import read_holder
from qa_search.storage.snapshot import MANIFEST, read_manifest
from qa_search.storage.writelog import serving_generation
from qa_search.threads import Thread

#: Publishes and rollbacks an :class:`IndexDescription` lists, newest last.
HISTORY_SHOWN = 10


def build(
    index_dir: str | Path,
    threads: Iterable[Thread],
    model: str | None = None,
    *,
    backend: str | None = None,
    settings: Mapping[str, object] | None = None,
    keep: int = DEFAULT_KEEP,
    use_cache: bool = True,
    progress: Progress | None = None,
    index_progress: Progress | None = None,
    on_model_settings: Callable[[dict[str, object]], None] | None = None,
    as_of: datetime | None = None,
    max_removals: float | None = None,
    allow_removals: bool = False,
    group_readable: bool | None = None,
) -> BuildReport:
    """Index ``threads`` from scratch with ``model`` and publish them as a new generation.

    The writer lock is taken before the model loads, so a second writer fails at once rather
    than after the load. ``model`` and ``backend`` default to the index's (see
    :func:`~qa_search.operations.lifecycle.build_embedder`); the settings start from the index's
    (a tuned model's recommended ones when the model is new to it) with ``settings`` on top. A
    bad or clashing setting raises :class:`SettingsError` before anything is embedded.
    ``on_model_settings`` is called with the settings a tuned model brought that ``settings`` did
    not override, before embedding starts. The report's ``seconds`` counts from this call: the
    model's load (and its one-time ONNX export) included. ``as_of``, ``max_removals``,
    ``allow_removals`` and ``group_readable``: see
    :func:`~qa_search.operations.lifecycle.build_index` (the live writes a full build keeps, the
    guard on what it removes, who may read the files).
    """
    started = time.perf_counter()
    asked = dict(settings or {})
    with writer_lock(index_dir):
        embedder = build_embedder(index_dir, model, backend)
        config, from_model = starting_config(index_dir, embedder.name)
        try:
            config = config.updated(asked)
        except ValueError as exc:  # a value at odds with one the index keeps
            raise SettingsError(str(exc)) from None
        brought = {k: v for k, v in from_model.items() if k not in asked}
        if brought and on_model_settings is not None:
            on_model_settings(brought)
        report = build_index(
            index_dir,
            threads,
            embedder,
            config=config,
            keep=keep,
            use_cache=use_cache,
            progress=progress,
            index_progress=index_progress,
            as_of=as_of,
            max_removals=max_removals,
            allow_removals=allow_removals,
            group_readable=group_readable,
        )
    return replace(report, seconds=round(time.perf_counter() - started, 3))


@dataclass(frozen=True, slots=True)
class Configured:
    """The settings of an index after :func:`configure_index`."""

    config: IndexConfig
    #: The generation holding ``config``: the new one, or the current one when nothing changed.
    generation: int
    #: What was published; None when the index already had these settings.
    published: BuildReport | None = None
    #: The shipped defaults in use after it (see :func:`defaults_in_use`).
    defaults: dict | None = None
    #: The reranker attached after it, as the manifest records it (None: none).
    reranker: dict | None = None


def configure_index(
    index_dir: str | Path,
    settings: Mapping[str, object] | None = None,
    *,
    keep: int = DEFAULT_KEEP,
    refresh_defaults: bool = False,
    reranker: str | Path | Literal[False] | None = None,
) -> Configured:
    """The current generation's settings with ``settings`` changed, published as a new generation
    when that changes anything (nothing is embedded again).

    ``refresh_defaults``: adopt this package's shipped relevance model and duplicate calibration
    for the index's model in place of those its snapshot recorded (published only when they
    differ). ``reranker``: the directory of a reranker (``qa-search tune --reranker``) to attach,
    its files copied into the index directory, or False to detach the one attached (None: leave
    it); a directory that is no reranker raises :class:`ModelLoadError` before anything is
    written. A setting that is unknown, out of range or one that only a build may change
    (``chunk_words`` ...) raises :class:`SettingsError` before the model loads.
    """
    generation = current_generation(index_dir)
    if generation is None:
        raise SnapshotError(f"{index_dir} holds no published generation; build it first")
    asked = dict(settings or {})
    current = current_config(index_dir)
    try:
        check_scoring_settings(asked)
        config = current.updated(asked)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    before = _current_defaults(index_dir) or {}
    # a snapshot written before the record takes one, of the package's current defaults
    stale = refresh_defaults and not (before.get("recorded") and before.get("current"))
    attached = _current_reranker(index_dir)
    new_reranker = None if reranker is None or reranker is False else Reranker.load(reranker)
    same_reranker = (
        reranker is None
        or (reranker is False and attached is None)
        or (new_reranker is not None and attached is not None and attached["sha256"] == new_reranker.digest)
    )
    if config == current and not stale and same_reranker:  # what the index has already: nothing published
        return Configured(config, generation, None, before or None, attached)
    report = reconfigure_index(
        index_dir, asked, keep=keep, refresh_defaults=stale,
        reranker=None if same_reranker else (new_reranker or False),
    )
    return Configured(
        config, report.generation, report, _current_defaults(index_dir), _current_reranker(index_dir)
    )


def _current_manifest(index_dir: str | Path) -> dict | None:
    """The current generation's manifest; None where there is no readable one (the list of
    generations says why)."""
    try:
        return read_manifest(resolve_snapshot(index_dir))
    except SnapshotError:
        return None


def _current_reranker(index_dir: str | Path) -> dict | None:
    return (_current_manifest(index_dir) or {}).get("reranker")


def defaults_in_use(manifest: Mapping) -> dict:
    """What scores a snapshot's duplicate verdicts and "no match", from its manifest:
    ``{"calibration": "own" | "shipped" | "none", "shipped": {"model", "sha256", "fitted"} | None,
    "recorded": bool, "current": bool}``. ``recorded``: the snapshot holds the shipped defaults
    it uses (False for one written before the record, which uses the package's current ones);
    ``current``: they are this package's current ones for its model."""
    model = manifest.get("model", {}).get("name", "")
    package = package_defaults(model)
    package_summary = None if package is None else package.summary()
    recorded = "shipped_defaults" in manifest
    shipped = manifest["shipped_defaults"] if recorded else package_summary
    own = "calibration.json" in manifest.get("files", {})
    has_calibration = shipped is not None and (package is None or "duplicate_calibration" in package.content)
    return {
        "calibration": "own" if own else ("shipped" if has_calibration else "none"),
        "shipped": shipped,
        "recorded": recorded,
        "current": (shipped or {}).get("sha256") == (package_summary or {}).get("sha256"),
    }


@dataclass(frozen=True, slots=True)
class RollbackReport:
    """What :func:`rollback_index` did."""

    previous: int | None
    current: int
    #: The service's live writes the target lacked, put back into the write log.
    restored_writes: int
    #: Pending writes the target holds already, taken out of the log.
    dropped_writes: int

    def to_dict(self) -> dict:
        return {
            "from": self.previous,
            "current": self.current,
            "restored_writes": self.restored_writes,
            "dropped_writes": self.dropped_writes,
        }


def rollback_index(index_dir: str | Path, to: int | None = None) -> RollbackReport:
    """Make generation ``to`` (default: the newest kept one numbered below the current) current
    again, atomically; see :func:`~qa_search.storage.generations.rollback`."""
    before = current_generation(index_dir)
    seen = len(read_history(index_dir))
    now = rollback(index_dir, to)
    # this call's switches: one, or two when it first finished a rollback killed midway
    records = [r for r in read_history(index_dir)[seen:] if r.get("action") == "rollback"]
    return RollbackReport(
        previous=before,
        current=now,
        restored_writes=sum(r.get("restored_writes", 0) for r in records),
        dropped_writes=sum(r.get("dropped_writes", 0) for r in records),
    )


@dataclass(frozen=True, slots=True)
class IndexDescription:
    """An index directory's generations, cache and recent history (:func:`describe_index`)."""

    index_dir: str
    current: int | None
    #: Differs from ``current`` only while a rollback killed midway waits for the next writer.
    serving: int | None
    generations: list[GenerationInfo]
    cache_bytes: int
    cache_shards: int
    #: The last publishes and rollbacks, oldest first.
    history: list[dict] = field(default_factory=list)
    #: What the last process to take the writer lock recorded (None: nothing readable).
    last_writer: dict | None = None
    #: The current generation's duplicate calibration and shipped defaults (:func:`defaults_in_use`).
    defaults: dict | None = None

    def to_dict(self) -> dict:
        return {
            "index_dir": self.index_dir,
            "current": self.current,
            "generations": [asdict(g) for g in self.generations],
            "cache": {"bytes": self.cache_bytes, "shards": self.cache_shards},
            "history": self.history,
            "last_writer": self.last_writer,
            "serving": self.serving,
            "defaults": self.defaults,
        }


def describe_index(index_dir: str | Path) -> IndexDescription:
    """Describe ``index_dir``; raises :class:`SnapshotError` saying why when it is no index (a
    single snapshot's folder included: it has no generations to describe)."""
    if (Path(index_dir) / MANIFEST).is_file():
        raise SnapshotError(
            f"{index_dir} is a single snapshot, not an index directory: give the directory that "
            f"holds its generations/ folder (`qa-search verify {index_dir}` checks this snapshot)"
        )
    generations = describe(index_dir)
    current = current_generation(index_dir)
    if not generations and current is None:
        resolve_snapshot(index_dir)  # says why: no directory, or nothing published in it
    cache = cache_root(index_dir)
    return IndexDescription(
        index_dir=str(index_dir),
        current=current,
        serving=serving_generation(index_dir),
        generations=generations,
        cache_bytes=sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) if cache.is_dir() else 0,
        cache_shards=len(list(cache.rglob("*.npy"))) if cache.is_dir() else 0,
        history=read_history(index_dir)[-HISTORY_SHOWN:],
        last_writer=read_holder(index_dir) or None,
        defaults=_current_defaults(index_dir),
    )


def _current_defaults(index_dir: str | Path) -> dict | None:
    """:func:`defaults_in_use` of the current generation, with ``"reranker"`` (whether one is
    attached) and ``"verdicts"``: which scorer gives its duplicate verdicts, as
    :func:`~qa_search.index.duplicates.duplicate_cutoff` names it ("combined", "reranker",
    "calibrated" or "cosine"); None where there is no readable current generation."""
    manifest = _current_manifest(index_dir)
    if manifest is None:
        return None
    used = defaults_in_use(manifest)
    scored = "cosine" if used["calibration"] == "none" else "calibrated"
    reranker = manifest.get("reranker")
    if reranker is None:
        return {**used, "reranker": False, "verdicts": scored}
    own = None
    try:  # a blend lives in the forum's own calibration, tied to the reranker it was fitted with
        if used["calibration"] == "own":
            own = stored_calibration(resolve_snapshot(index_dir), manifest)
    except (OSError, ValueError, SnapshotError):
        pass  # verify says what is wrong with it; here the reranker is taken to decide alone
    blend = None if own is None else own.blend_for(reranker.get("sha256", ""))
    return {**used, "reranker": True, "verdicts": "reranker" if blend is None else blend.scorer}


def check_servable(index_dir: str | Path) -> Path:
    """The snapshot a service of ``index_dir`` would load, once its model is checked to be
    loadable: one error here rather than one from each worker."""
    snapshot = resolve_snapshot(index_dir)
    check_recorded_model(read_manifest(snapshot)["model"])
    return snapshot

"""An index as a snapshot directory: its files, its manifest, and the model check on loading.

A snapshot holds ``threads.jsonl``, ``parts.jsonl`` (part id, thread, answer, chunk, text hash),
``questions.faiss`` and ``answers.faiss``, and when needed ``lexical.npz``,
``calibration.json`` and ``shipped_defaults.json`` (the shipped relevance model and duplicate
calibration the index uses, see :mod:`.defaults`); its manifest records the model (name,
dimension, probe vectors), the vector index types, the settings, the counts and which shipped
defaults are recorded (see :mod:`qa_search.storage.snapshot`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import numpy as np

from qa_search._version import __version__
from qa_search.embedding.loading import load_recorded_embedder
from qa_search.embedding.model_defaults import ShippedDefaults
from qa_search.embedding.models import PROBE_MIN_COSINE, Embedder, same_model
from qa_search.embedding.reranker import Reranker, files_digest
from qa_search.errors import IncompatibleSnapshotError, ModelLoadError, SnapshotError
from qa_search.index.config import IndexConfig, config_of
from qa_search.index.contents import IndexContents
from qa_search.index.defaults import shipped_defaults
from qa_search.index.results import PartRef
from qa_search.scoring.ann import VectorIndex
from qa_search.scoring.calibration import Calibration
from qa_search.scoring.lexical import LexicalIndex
from qa_search.storage.generations import publish, resolve_snapshot
from qa_search.storage.layout import GENERATIONS
from qa_search.storage.snapshot import file_sha256, read_manifest, verify_files
from qa_search.threads import thread_from_dict

log = logging.getLogger(__name__)

Index = TypeVar("Index", bound=IndexContents)


def stored_calibration(snapshot: Path, manifest: Mapping) -> Calibration | None:
    """The duplicate calibration a snapshot holds (None without one); ``ValueError`` for one
    made by another version (other signals)."""
    if "calibration.json" not in manifest.get("files", {}):
        return None
    return Calibration.from_dict(json.loads((snapshot / "calibration.json").read_text(encoding="utf-8")))


def stored_shipped_defaults(snapshot: Path, manifest: Mapping) -> ShippedDefaults | None:
    """The shipped defaults a snapshot recorded (None for one written before the record, or of
    a model with none); ``ValueError`` for a damaged record."""
    if "shipped_defaults.json" not in manifest.get("files", {}):
        return None
    return ShippedDefaults.from_bytes((snapshot / "shipped_defaults.json").read_bytes())


#: Where an index directory keeps the rerankers attached to it, each in a folder named by the
#: first 16 hex digits of its :attr:`~qa_search.embedding.reranker.Reranker.digest`.
RERANKERS = "rerankers"


def reranker_record(reranker: Reranker) -> dict:
    """What a manifest records of an attached reranker: its folder (relative to the index
    directory), the SHA-256 of its files together and of each, and its recipe's summary."""
    recipe = reranker.recipe
    return {
        "dir": f"{RERANKERS}/{reranker.digest[:16]}",
        "sha256": reranker.digest,
        "files": dict(reranker.files),
        "precision": recipe.get("precision", "fp32"),
        "base_model": recipe.get("base_model"),
        "pairs": recipe.get("pairs"),
        "created_at": recipe.get("created_at"),
        "tiers": dict(reranker.tiers),
    }


def _index_root(snap: Path) -> Path:
    """The index directory a snapshot belongs to (the snapshot itself when it stands alone)."""
    return snap.parent.parent if snap.parent.name == GENERATIONS else snap


def reranker_problems(snap: Path, recorded: Mapping) -> list[str]:
    """What is wrong with the reranker a snapshot's manifest records ([] when it is sound or
    there is none): its folder or a file missing, or a file whose SHA-256 differs."""
    record = recorded.get("reranker")
    if not record:
        return []
    folder = _index_root(snap) / record["dir"]
    problems = []
    for name, sha in sorted(record["files"].items()):
        f = folder / name
        if not f.is_file():
            problems.append(f"the reranker's {name} is missing from {folder}")
        elif file_sha256(f) != sha:
            problems.append(
                f"the reranker's {name} in {folder} does not match its checksum (changed or damaged)"
            )
    if not problems and files_digest(record["files"]) != record["sha256"]:
        problems.append("the manifest's reranker record does not match its own file checksums")
    return problems


def stored_reranker(snap: Path, recorded: Mapping) -> Reranker | None:
    """The reranker a snapshot records, loaded (None without one). One whose files are missing
    or differ from the recorded checksums raises :class:`SnapshotError`: duplicate verdicts
    must come from the reranker the snapshot was published with."""
    record = recorded.get("reranker")
    if not record:
        return None
    folder = _index_root(snap) / record["dir"]
    try:
        reranker = Reranker.load(folder, precision=record.get("precision"))
    except ModelLoadError as exc:
        raise SnapshotError(f"snapshot {snap}: its reranker cannot be loaded: {exc}") from None
    if reranker.digest != record["sha256"]:
        raise SnapshotError(
            f"snapshot {snap}: the reranker in {folder} does not match its checksum (changed or "
            "damaged); attach it again with qa-search configure --reranker DIR, or roll back"
        )
    return reranker


def store_reranker(reranker: Reranker, index_dir: Path) -> Path:
    """Copy ``reranker``'s files into ``index_dir``'s :data:`RERANKERS` folder under its content
    address, unless they are there already; returns that folder. Kept there for every
    generation that records it, so a rollback, or a deleted training directory, keeps working."""
    target = index_dir / RERANKERS / reranker.digest[:16]
    if target.resolve() == reranker.directory.resolve():
        return target
    if target.is_dir() and all(
        (target / n).is_file() and (target / n).stat().st_size == (reranker.directory / n).stat().st_size
        for n in reranker.files
    ):  # the same content address: the same files (verify checks their checksums)
        return target
    tmp = target.with_name(f".tmp-{target.name}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        for name in reranker.files:
            shutil.copyfile(reranker.directory / name, tmp / name)
        if target.exists():  # a damaged copy: replaced
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _probe_min_cosine(embedder: Embedder) -> float:
    return float(getattr(embedder, "probe_min_cosine", PROBE_MIN_COSINE))


def matches_recorded_model(model: Mapping, embedder: Embedder, probe: np.ndarray) -> bool:
    """Whether ``embedder``, whose probe vectors are ``probe``, is the model a manifest records
    (``model``): its probe vectors agree within :func:`probe_tolerance` (another dimension never
    does)."""
    return same_model(np.asarray(model["probe"], np.float32), probe, probe_tolerance(model, embedder))


def probe_tolerance(model: Mapping, embedder: Embedder) -> float:
    """The least probe cosine at which ``embedder`` counts as the model a manifest records.

    The encoder the index was built with gives the recorded probe almost exactly, so it is held
    to :data:`~qa_search.embedding.models.PROBE_MIN_COSINE` (a model directory whose weights changed, a
    lightly fine-tuned copy, fails it). Only another encoder of the model (int8 against fp32)
    gets the looser tolerance either side declares."""
    recorded = model.get("backend")
    if recorded is not None and recorded == getattr(embedder, "backend", None):
        return PROBE_MIN_COSINE
    return min(_probe_min_cosine(embedder), float(model.get("probe_min_cosine", PROBE_MIN_COSINE)))


def manifest(index: IndexContents) -> dict:
    """What a snapshot of ``index`` records about it (the files' checksums are added on publishing)."""
    embedder = index.embedder
    return {
        "library_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {
            "name": embedder.name,
            "dimension": embedder.dimension,
            "normalized": True,
            "fingerprint": index.model_fingerprint,
            "probe": np.round(index.probe.astype(np.float64), 6).tolist(),
            "backend": getattr(embedder, "backend", None),
            "probe_min_cosine": _probe_min_cosine(embedder),
        },
        "index": {
            "type": index.question_index.kind,
            "types": {"questions": index.question_index.kind, "answers": index.answer_index.kind},
            "next_part_id": index.next_part_id,
        },
        "config": asdict(index.config),
        "counts": index.counts,
        # which shipped defaults shipped_defaults.json holds (None: its model has none)
        "shipped_defaults": None if (shipped := shipped_defaults(index)) is None else shipped.summary(),
        "reranker": None if index.reranker is None else reranker_record(index.reranker),
    }


def write_files(index: IndexContents, out: Path) -> None:
    """Write the index's own files into the folder ``out``."""
    with open(out / "threads.jsonl", "w", encoding="utf-8") as fh:
        for t in index.threads():
            fh.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
    with open(out / "parts.jsonl", "w", encoding="utf-8") as fh:
        for pid, ref in index.parts.items():
            fh.write(json.dumps([pid, *ref], ensure_ascii=False) + "\n")
    index.question_index.save(out / "questions.faiss")
    index.answer_index.save(out / "answers.faiss")
    if index.config.lexical_weight > 0 or index.calibration is not None:
        # saving compacts it: removed questions' slots and terms are dropped for good
        index.lexical_index().save(out / "lexical.npz")
    if index.calibration is not None:
        (out / "calibration.json").write_text(json.dumps(index.calibration.to_dict(), indent=2) + "\n")
    shipped = shipped_defaults(index)
    if shipped is not None:
        (out / "shipped_defaults.json").write_bytes(shipped.to_bytes())


def save(
    index: IndexContents,
    index_dir: str | Path,
    *,
    progress=None,
    extra_files: Mapping[str, bytes] | None = None,
    manifest_extra: Mapping[str, object] | None = None,
) -> Path:
    """Publish ``index`` as a new snapshot generation of ``index_dir``; returns its path.

    The generation is written completely before it becomes current, so readers of
    ``index_dir`` never see a partial snapshot, even if this process dies midway.
    ``progress(done, total)`` reports vectors indexed when a vector index is rebuilt (a
    change of index type, or tombstones compacted away). ``extra_files`` (name to content)
    are written into the snapshot beside the index's own and checksummed with them;
    ``manifest_extra`` adds entries to its manifest.
    """
    # the index type follows the size, and tombstones are compacted away, here
    index.compact(progress)
    if index.reranker is not None:
        store_reranker(index.reranker, Path(index_dir))

    def write(out: Path) -> None:
        write_files(index, out)
        for name, data in (extra_files or {}).items():
            (out / name).write_bytes(data)

    _, path = publish(index_dir, write, {**manifest(index), **(manifest_extra or {})})
    return path


def load(
    make: Callable[[Embedder, IndexConfig], Index],
    path: str | Path,
    embedder: Embedder | None = None,
    *,
    verify: bool = True,
    threads: int | None = None,
) -> Index:
    """Load a snapshot (or an index directory's current generation) into ``make(embedder, config)``.

    Without ``embedder`` the model named in the manifest is loaded (with ``threads`` CPU
    threads, as :func:`~qa_search.load_embedder` takes them). A snapshot from another
    model, dimension or format version raises :class:`IncompatibleSnapshotError`; one whose
    files do not match their recorded checksums (``verify``) raises :class:`SnapshotError`.
    """
    snap = resolve_snapshot(path)
    recorded = read_manifest(snap)
    if verify:
        problems = verify_files(snap, recorded)
        if problems:
            raise SnapshotError(f"snapshot {snap} failed verification: " + "; ".join(problems))
    model = recorded["model"]
    if embedder is None:
        embedder = load_recorded_embedder(model, threads=threads)
    index = make(embedder, config_of(snap, recorded))
    if not matches_recorded_model(model, embedder, index.probe):
        raise IncompatibleSnapshotError(
            f"snapshot {snap} was built with model {model['name']!r} "
            f"(dimension {model['dimension']}, fingerprint {model['fingerprint']}), but the "
            f"embedder in use is {embedder.name!r} (dimension {embedder.dimension}, "
            f"fingerprint {index.model_fingerprint}); load it with the same model or rebuild it"
        )
    _read_files(index, snap, recorded)
    return index


def _read_files(index: IndexContents, snap: Path, recorded: dict) -> None:
    try:
        with open(snap / "threads.jsonl", encoding="utf-8") as fh:
            threads = [thread_from_dict(json.loads(line)) for line in fh]
        parts = {}
        with open(snap / "parts.jsonl", encoding="utf-8") as fh:
            for line in fh:
                pid, tid, aid, chunk, h = json.loads(line)
                parts[pid] = PartRef(tid, aid, chunk, h)
        dim = index.embedder.dimension
        questions = VectorIndex.load(snap / "questions.faiss", dim)
        vectors = (questions, VectorIndex.load(snap / "answers.faiss", dim))
        lexical = None
        if "lexical.npz" in recorded.get("files", {}):
            # a file in the first format cannot take writes: it is rebuilt from the questions,
            # once, here, so that no write or search has to
            questions_by_id = {t.id: t.question_text for t in threads}
            lexical = LexicalIndex.load(snap / "lexical.npz", texts=questions_by_id)
            if len(lexical) != len(threads) or not all(t.id in lexical.position for t in threads):
                raise ValueError(f"lexical.npz holds {len(lexical)} questions for {len(threads)} threads")
        # without a record (a snapshot written before it): the package's current ones
        index.shipped_defaults = stored_shipped_defaults(snap, recorded)
        index.reranker = stored_reranker(snap, recorded)
        try:
            index.calibration = stored_calibration(snap, recorded)
        except ValueError as exc:
            # an old calibration is dropped, not fatal: search works, verdicts are raw
            log.warning("snapshot %s: %s; duplicates are uncalibrated until then", snap, exc)
    except (OSError, ValueError, RuntimeError) as exc:
        raise SnapshotError(f"cannot read snapshot {snap}: {exc}") from exc
    n_vectors = len(vectors[0]) + len(vectors[1])
    if n_vectors != len(parts):
        raise SnapshotError(f"snapshot {snap} is inconsistent: {n_vectors} vectors for {len(parts)} parts")
    index.restore(threads, parts, vectors, int(recorded["index"]["next_part_id"]), lexical)

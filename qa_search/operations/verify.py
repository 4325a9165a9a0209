"""Verifying an index directory or one snapshot: files against the manifest, counts against
the files, the model against its recorded fingerprint, and the write log line by line (each
line against its checksum, where it has one)."""

from __future__ import annotations

from pathlib import Path

from qa_search.embedding.loading import load_recorded_embedder
from qa_search.embedding.models import Embedder, model_fingerprint, probe_vectors
from qa_search.errors import ModelLoadError, SnapshotError
from qa_search.index.persistence import matches_recorded_model, reranker_problems
from qa_search.scoring.ann import VectorIndex
from qa_search.storage.generations import resolve_snapshot
from qa_search.storage.layout import generation_path, list_generations
from qa_search.storage.logformat import LOG_NAME
from qa_search.storage.snapshot import read_manifest, verify_files
from qa_search.storage.writelog import WriteLog, serving_generation


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def verify_snapshot(snap: Path, embedder: Embedder | None = None, *, check_model: bool = True) -> list[str]:
    """The problems of one snapshot directory ([] when it is sound).

    Checks the manifest, every file's size and SHA-256 (an attached reranker's too), that the
    counts in the manifest match the files (threads, parts, vectors), and, with ``check_model``,
    that the model (``embedder``, or the one the manifest names) still gives the recorded
    fingerprint.
    """
    try:
        manifest = read_manifest(snap)
    except SnapshotError as exc:
        return [str(exc)]
    problems = verify_files(snap, manifest) + reranker_problems(snap, manifest)
    if problems:
        return problems
    counts = manifest.get("counts", {})
    dim = manifest["model"]["dimension"]
    try:
        found = {
            "threads": _count_lines(snap / "threads.jsonl"),
            "question_vectors": len(VectorIndex.load(snap / "questions.faiss", dim)),
            "answer_vectors": len(VectorIndex.load(snap / "answers.faiss", dim)),
        }
        parts = _count_lines(snap / "parts.jsonl")
    except (OSError, ValueError, RuntimeError) as exc:
        return [f"cannot read the snapshot's files: {exc}"]
    for key, n in found.items():
        if counts.get(key) != n:
            problems.append(f"the manifest counts {counts.get(key)} {key}, the files hold {n}")
    vectors = found["question_vectors"] + found["answer_vectors"]
    if parts != vectors:
        problems.append(f"parts.jsonl lists {parts} parts for {vectors} vectors")
    if check_model:
        model = manifest["model"]
        try:
            embedder = embedder or load_recorded_embedder(model)
        except ModelLoadError as exc:
            return [*problems, f"the model cannot be loaded to check its fingerprint: {exc}"]
        probe = probe_vectors(embedder)
        if not matches_recorded_model(model, embedder, probe):  # the rule loading applies
            problems.append(
                f"the model {model['name']!r} no longer matches: the snapshot recorded fingerprint "
                f"{model['fingerprint']}, the model now gives {model_fingerprint(probe)}"
            )
    return problems


class VerifyResults(dict[str, list[str]]):
    """``{what: problems}``, and :attr:`warnings`: what is worth an operator's look but is no
    failure (a write-log line cut short at its end)."""

    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []


def verify_index(
    path: str | Path,
    embedder: Embedder | None = None,
    *,
    all_generations: bool = False,
    check_model: bool = True,
) -> VerifyResults:
    """Verify an index directory's current generation (or every generation), or one snapshot.

    Returns ``{what: problems}`` for each snapshot checked, e.g. ``{"generation 3": []}``, and,
    for an index directory with a write log, ``"write log"``: a damaged line in the service's log
    of live writes (which stops writes, builds and rollbacks until it is repaired), naming the
    file, the line and the reason. A last line without its newline (an append a crash or a full
    disk cut short, never acknowledged, which the next write drops) is no problem: it is in the
    result's ``warnings``, with its byte offset and length.
    """
    path = Path(path)
    try:
        current = resolve_snapshot(path)
    except SnapshotError as exc:
        out = VerifyResults()
        out[str(path)] = [str(exc)]
        return out
    index_dir = current != path  # else ``path`` is one snapshot
    if index_dir and all_generations:
        targets = [generation_path(path, g) for g in list_generations(path)]
    else:
        targets = [current]
    serving = serving_generation(path) if index_dir else None
    out = VerifyResults()
    for snap in targets:
        label = f"generation {int(snap.name)}" if snap.name.isdigit() else str(snap)
        if snap.name.isdigit() and int(snap.name) == serving:
            label += " (current)"
        out[label] = verify_snapshot(snap, embedder, check_model=check_model)
    if index_dir and (path / LOG_NAME).exists():
        out["write log"] = _verify_log(path)
        out.warnings.extend(_torn_end(path / LOG_NAME))
    return out


def _torn_end(log: Path) -> list[str]:
    """A warning for bytes after the log's last newline, if there are any."""
    try:
        with open(log, "rb") as fh:
            size = fh.seek(0, 2)
            tail = min(size, 1 << 20)
            fh.seek(size - tail)
            data = fh.read()
    except OSError:
        return []
    if not data or data.endswith(b"\n"):
        return []
    cut = data.rfind(b"\n")
    if cut < 0 and tail < size:  # a last line over 1 MiB: find where it starts
        with open(log, "rb") as fh:
            start = fh.read().rfind(b"\n") + 1
    else:
        start = size - tail + cut + 1
    return [f"write log: {log} ends with {size - start} bytes at byte offset {start} that are not a "
            "complete line: a write cut short (a crash or a full disk), never acknowledged, or one "
            "being appended as verify read; the next write drops them"]


def _verify_log(index_dir: Path) -> list[str]:
    """The write log's problems: a line that does not parse as an entry, read the way a build
    reads it (a line still being appended is not one)."""
    try:
        WriteLog(index_dir).read_all_strict()
    except SnapshotError as exc:
        return [str(exc)]
    except OSError as exc:
        return [f"cannot read the write log: {exc}"]
    return []

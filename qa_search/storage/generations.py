"""Changing an index directory: numbered snapshot generations and a pointer to the current one.

The layout, and what can be read without the writer lock, is in layout.py. Publishing writes the
new generation completely, then replaces ``CURRENT`` atomically, so a reader sees either the old
generation or the new one, never a mixture. Every change to an index directory (publish,
rollback, prune) holds the writer lock (:func:`writer_lock`).

A generation numbered above every generation ever made current was written by a writer that
died before publishing it: it is debris, removed by the next writer, like temporary directories.
Pruning renames a generation to a temporary name before deleting it, so a crash mid-delete
never leaves a partial generation under a generation's name.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from qa_search.errors import SnapshotError
from qa_search.storage.layout import (
    CURRENT,
    FOLDED_NAME,
    GENERATIONS,
    HISTORY,
    PRUNED,
    current_generation,
    generation_path,
    last_published,
    lineage,
    list_generations,
    pruned_record,
)
from qa_search.storage.lock import hold_writer_lock
from qa_search.storage.logformat import log_switch
from qa_search.storage.permissions import make_dirs, open_file, secure_tree, set_access
from qa_search.storage.snapshot import (
    MANIFEST,
    TMP_PREFIX,
    read_manifest,
    verify_files,
    write_snapshot,
    write_text_atomic,
)
from qa_search.storage.writelog import serving_generation, writes_for_switch


@contextmanager
def writer_lock(
    index_dir: str | Path, command: str | None = None, *, existing: bool = False
) -> Iterator[None]:
    """Hold the index directory's writer lock for the ``with`` block (see lock.py), having first
    finished a rollback killed midway (:func:`finish_switch`), so a writer never reads a
    directory whose write log and ``CURRENT`` disagree.

    Creates ``index_dir`` if needed (and removes it again on exit if the block left it empty);
    with ``existing``, a writer that changes an index already there, a missing ``index_dir``
    raises :class:`SnapshotError` saying there is no index, instead of being created first and
    then found empty.
    Raises :class:`~qa_search.errors.IndexLockedError`, naming the holder, when another process
    holds the lock. ``command`` is recorded for that message (default: this process's command
    line).
    """
    if existing and not Path(index_dir).exists():
        resolve_snapshot(index_dir)
    with hold_writer_lock(index_dir, command) as first:
        if first:  # a nested hold comes after the outer one has finished it
            finish_switch(index_dir)
        yield


def resolve_snapshot(path: str | Path) -> Path:
    """The snapshot directory to load for ``path``: a snapshot itself, or an index directory's
    current generation (the one it serves: see
    :func:`~qa_search.storage.writelog.serving_generation`)."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    number = serving_generation(path)
    if number is None:
        if not path.exists():
            raise SnapshotError(f"no index at {path}: build one with `qa-search build DUMP --index {path}`")
        inside = [p for p in sorted(path.iterdir()) if (p / CURRENT).is_file()] if path.is_dir() else []
        fix = (f"did you mean {inside[0]}?" if inside
               else "give an index directory, or build one there with `qa-search build DUMP --index DIR`")
        raise SnapshotError(f"{path} holds no published snapshot (no {CURRENT} file or {MANIFEST}): {fix}")
    snap = generation_path(path, number)
    if not (snap / MANIFEST).is_file():
        raise SnapshotError(f"{path}: the current generation {number} is missing ({snap})")
    return snap


def _append_history(index_dir: Path, generation: int, action: str, **record) -> None:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rec = {"generation": generation, "action": action, "at": at, **record}
    line = json.dumps(rec) + "\n"
    fd = open_file(index_dir / HISTORY, os.O_RDWR | os.O_APPEND)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        if end and os.pread(fd, 1, end - 1) != b"\n":
            line = "\n" + line  # a crash tore the last line: start on a fresh one
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _set_current(index_dir: Path, number: int, action: str, **record) -> None:
    # CURRENT first: it is what readers follow; the history line is only a record
    write_text_atomic(index_dir / CURRENT, f"{number}\n")
    _append_history(index_dir, number, action, **record)


def finish_switch(index_dir: str | Path) -> int | None:
    """Move ``CURRENT`` to where a rollback killed midway had set the write log for; returns
    the generation it moved to (None when there was nothing to finish). Writers call it when
    they take the writer lock, before they read anything."""
    index_dir = Path(index_dir)
    if not (index_dir / CURRENT).is_file():
        return None
    target, number = serving_generation(index_dir), current_generation(index_dir)
    if target is None or target == number:  # None only when there is no current generation either
        return None
    switch = log_switch(index_dir) or {}
    _set_current(index_dir, target, "rollback", restored_writes=switch.get("restored", 0),
                 dropped_writes=switch.get("dropped", 0), finished_after_a_crash=True)
    return target


def _discard(path: Path) -> None:
    """Delete a directory so that a crash midway leaves only a temporary name behind."""
    doomed = path.parent / f"{TMP_PREFIX}deleted-{path.name}.{uuid.uuid4().hex[:8]}"
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def clean_debris(index_dir: Path) -> list[str]:
    """Remove what a crashed writer left: temporary files and directories, and generations
    written but never published. Returns the names removed. Call it holding the writer lock."""
    removed = []
    gens = index_dir / GENERATIONS
    if gens.is_dir():
        published = last_published(index_dir)
        for p in sorted(gens.iterdir()):
            if p.name.startswith(TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(f"{GENERATIONS}/{p.name}")
            elif p.name.isdigit() and int(p.name) > published:
                _discard(p)
                removed.append(f"{GENERATIONS}/{p.name}")
    for p in [*index_dir.glob(f"{TMP_PREFIX}*"), *(index_dir / PRUNED).glob(f"{TMP_PREFIX}*")]:
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(str(p.relative_to(index_dir)))
    return removed


def publish(index_dir: str | Path, write_files: Callable[[Path], None], manifest: dict) -> tuple[int, Path]:
    """Write a new generation and make it current. Returns ``(number, snapshot path)``.

    Holds the writer lock (raising :class:`~qa_search.errors.IndexLockedError` if another
    process has it) and first removes any debris of a crashed writer.
    """
    index_dir = Path(index_dir)
    if (index_dir / MANIFEST).is_file():
        raise SnapshotError(
            f"{index_dir} is a single snapshot, not an index directory: publish into another directory"
        )
    with writer_lock(index_dir):
        clean_debris(index_dir)
        number = max(list_generations(index_dir) + [last_published(index_dir)]) + 1
        # the generation this one was made on top of: what a rollback follows (see lineage)
        manifest = {**manifest, "generation": number, "parent": current_generation(index_dir)}
        snap = write_snapshot(generation_path(index_dir, number), write_files, manifest)
        _set_current(index_dir, number, "publish")
        # files written before (an older version's, the embedding cache's) follow the policy
        set_access(index_dir, None)
        secure_tree(index_dir)
    return number, snap


def rollback(index_dir: str | Path, to: int | None = None) -> int:
    """Make an earlier generation current again; returns its number.

    ``to`` defaults to the newest generation older than the current one. The target's files are
    checked against its manifest first; a damaged generation is refused.
    """
    index_dir = Path(index_dir)
    # a rollback killed before it moved CURRENT, which taking the lock finishes: this one repeats
    # it, and without --to it must not go a generation further
    unfinished = index_dir.is_dir() and (index_dir / CURRENT).is_file() \
        and serving_generation(index_dir) != current_generation(index_dir)
    with writer_lock(index_dir, existing=True):
        clean_debris(index_dir)
        current = current_generation(index_dir)
        if current is None:
            raise SnapshotError(f"{index_dir} holds no published generation to roll back from")
        if to is None and unfinished:
            return current
        published = last_published(index_dir)
        available = [g for g in list_generations(index_dir) if g <= published]  # not a crash's debris
        if to is None:
            older = [g for g in available if g < current]
            if not older:
                raise SnapshotError(
                    f"{index_dir}: no generation older than the current one ({current}) is kept"
                )
            to = older[-1]
        elif to not in available:
            listed = ", ".join(map(str, available)) or "none"
            raise SnapshotError(f"{index_dir} has no generation {to} (kept: {listed})")
        snap = generation_path(index_dir, to)
        problems = verify_files(snap, read_manifest(snap))
        if problems:
            raise SnapshotError(f"generation {to} is damaged, not switching to it: " + "; ".join(problems))
        # the service's writes that the current generation's line holds and the target's does
        # not go back into the log; those in the log that the target holds already leave it
        restored, dropped = writes_for_switch(index_dir, current, to)
        _set_current(index_dir, to, "rollback", restored_writes=restored, dropped_writes=dropped)
    return to


def prune(index_dir: str | Path, keep: int) -> list[int]:
    """Delete all but the ``keep`` newest generations (the current one is always kept).

    Returns the numbers deleted, ascending.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    index_dir = Path(index_dir)
    with writer_lock(index_dir):
        clean_debris(index_dir)
        current = current_generation(index_dir)
        gens = list_generations(index_dir)
        retained = set(gens[-keep:]) | {current}
        doomed = [g for g in gens if g not in retained]
        needed = _between_kept(index_dir, sorted(g for g in retained if g is not None))
        for g in doomed:
            if g in needed:
                _keep_record(index_dir, g)
            _discard(generation_path(index_dir, g))
        records = index_dir / PRUNED
        if records.is_dir():  # records no rollback between the kept generations can reach
            for path in records.glob("*.jsonl"):
                if path.stem.isdigit() and int(path.stem) not in needed:
                    path.unlink()
    return doomed


def _between_kept(index_dir: Path, kept: list[int]) -> set[int]:
    """The generations on the paths between kept ones (each line down to where it meets the
    other's): a rollback from one kept generation to another puts back the writes they folded
    in, and tells by them which writes the target holds."""
    lines = {k: lineage(index_dir, k) for k in kept}
    needed: set[int] = set()
    for a, b in itertools.combinations(kept, 2):
        for mine, other in ((lines[a], set(lines[b])), (lines[b], set(lines[a]))):
            for g in mine:
                if g in other:
                    break
                needed.add(g)
    return needed


def _keep_record(index_dir: Path, g: int) -> None:
    """Copy what generation ``g`` folded in, after a header naming its parent, out of its
    directory before a prune deletes it."""
    line = lineage(index_dir, g)
    header = {"header": {"generation": g, "parent": line[1] if len(line) > 1 else None}}
    own = generation_path(index_dir, g) / FOLDED_NAME
    body = own.read_text(encoding="utf-8") if own.is_file() else ""
    path = pruned_record(index_dir, g)
    make_dirs(path.parent)
    write_text_atomic(path, json.dumps(header) + "\n" + body)


@dataclass(frozen=True, slots=True)
class GenerationInfo:
    """One generation of an index directory, as its manifest describes it."""

    number: int
    current: bool
    created_at: str | None
    model: str | None
    threads: int | None
    vectors: int | None
    bytes: int
    #: False for a generation written but never made current (a crashed writer's; debris).
    published: bool = True
    #: Why the manifest could not be read (None when it could).
    error: str | None = None
    #: The encoder it was built on (``"onnx-int8"``, ``"onnx"``, ``"torch"``), where recorded.
    backend: str | None = None
    #: The generation it was made on top of (None for the first; see :func:`lineage`).
    parent: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def describe(index_dir: str | Path) -> list[GenerationInfo]:
    """Every complete generation of an index directory, oldest first."""
    index_dir = Path(index_dir)
    current = current_generation(index_dir)
    published = last_published(index_dir)
    out = []
    for g in list_generations(index_dir):
        snap = generation_path(index_dir, g)
        size = sum(f.stat().st_size for f in snap.iterdir() if f.is_file())
        line = lineage(index_dir, g)
        parent = line[1] if len(line) > 1 else None
        try:
            m = read_manifest(snap)
        except SnapshotError as exc:
            info = GenerationInfo(g, g == current, None, None, None, None, size, g <= published, str(exc),
                                  parent=parent)
            out.append(info)
            continue
        counts = m.get("counts", {})
        vectors = counts.get("question_vectors", 0) + counts.get("answer_vectors", 0)
        out.append(
            GenerationInfo(
                g, g == current, m.get("created_at"), m.get("model", {}).get("name"),
                counts.get("threads"), vectors, size, g <= published,
                backend=m.get("model", {}).get("backend"), parent=parent,
            )
        )
    return out

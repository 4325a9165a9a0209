"""The vectors a live write's texts were embedded to, kept beside the write log so that the
other serving processes apply the write without running the model again.

A worker that takes a write embeds its new texts, saves them here under the write's id
(``DIR/write-vectors/<id>.npz``: text hashes, vectors and the model they came from), and only
then logs the write. Another worker that reads the entry loads the file instead of embedding
the texts: a large write costs the model once, not once per worker, and a small write to
another worker does not wait for its model to redo a large one. The file is only a shortcut:
a worker on another model, or one that finds no file (the writer died, a compaction removed
it), embeds the texts itself. Compacting the log removes the files of the entries it drops.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from qa_search.storage.permissions import make_dirs
from qa_search.storage.snapshot import write_bytes_atomic

DIRECTORY = "write-vectors"
#: A file no entry names after this long was left by a writer that died before logging its write.
ORPHAN_SECONDS = 3600


def _path(index_dir: Path, write_id: str) -> Path:
    return index_dir / DIRECTORY / f"{write_id}.npz"


def save(
    index_dir: str | Path, write_id: str, model: str, hashes: Sequence[str], vectors: np.ndarray
) -> None:
    """Keep ``vectors`` ((n, d) float32) of the texts hashed ``hashes`` (hex) for the write
    ``write_id``, embedded by ``model`` (a key naming the model and encoder). Durable before it
    returns, so a write logged after it never names a missing file (unless a compaction took
    it)."""
    index_dir = Path(index_dir)
    make_dirs(index_dir / DIRECTORY)
    buf = io.BytesIO()
    np.savez(buf, hashes=np.array([bytes.fromhex(h) for h in hashes], dtype="S16"),
             vectors=np.asarray(vectors, np.float32), model=np.array(model))
    write_bytes_atomic(_path(index_dir, write_id), buf.getvalue())


def load(index_dir: str | Path, write_id: str | None, model: str) -> dict[str, np.ndarray]:
    """The vectors kept for ``write_id`` by ``model``, by text hash ({} when there is no such
    file, it is another model's, or it cannot be read: the texts are embedded again)."""
    if write_id is None:
        return {}
    try:
        with np.load(_path(Path(index_dir), write_id), allow_pickle=False) as data:
            if str(data["model"]) != model:
                return {}
            hashes, vectors = data["hashes"], data["vectors"]
            if vectors.ndim != 2 or len(hashes) != len(vectors):
                return {}
            return {h.hex(): np.array(v, np.float32) for h, v in zip(hashes.tolist(), vectors, strict=True)}
    except (OSError, ValueError, KeyError):
        return {}


def discard(index_dir: str | Path, write_id: str | None) -> None:
    """Remove the file kept for ``write_id`` (None: nothing was kept), for a write that was
    refused before it was logged. Safe whatever happened to the write: the file is only a
    shortcut, and a missing one makes the other workers embed the texts themselves."""
    if write_id is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_path(Path(index_dir), write_id))


def drop(index_dir: str | Path, done: Iterable[str | None], pending: Iterable[str | None]) -> None:
    """Remove the files of the writes ``done`` (compacted out of the log), and those no
    ``pending`` entry names that are older than :data:`ORPHAN_SECONDS` (their writer died
    before logging; a younger one may belong to a write being logged now)."""
    folder = Path(index_dir) / DIRECTORY
    if not folder.is_dir():
        return
    done_ids = {i for i in done if i is not None}
    kept = {i for i in pending if i is not None}
    now = time.time()
    for p in folder.iterdir():
        name = p.name[: -len(".npz")] if p.name.endswith(".npz") else None
        with contextlib.suppress(FileNotFoundError):
            stale = now - p.stat().st_mtime > ORPHAN_SECONDS
            if name in done_ids or (stale and name not in kept):  # a temporary file has no name
                os.unlink(p)

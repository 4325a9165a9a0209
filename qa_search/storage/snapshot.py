"""Snapshots on disk: one directory, a ``manifest.json`` and the data files it lists.

A snapshot is written into a temporary sibling directory, every file is flushed to disk, the
manifest (with each file's size and SHA-256) is written last, and only then is the directory
renamed into place. A crash at any point leaves either no snapshot or a complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qa_search.errors import IncompatibleSnapshotError, SnapshotError
from qa_search.storage.permissions import make_dir, make_dirs, open_file, secure_tree

FORMAT_NAME = "qa-search-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file or a directory entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (write a temp file, fsync, rename, fsync dir)."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{uuid.uuid4().hex[:8]}")
    with open(open_file(tmp, os.O_WRONLY | os.O_EXCL), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_snapshot(path: str | Path, write_files: Callable[[Path], None], manifest: dict) -> Path:
    """Create the snapshot directory ``path`` (which must not exist yet).

    ``write_files(tmp_dir)`` writes the data files; the manifest gets the format fields and a
    ``files`` table of sizes and checksums added, and is written last. Returns ``path``.
    """
    path = Path(path)
    if path.exists():
        raise SnapshotError(f"cannot write snapshot: {path} already exists")
    make_dirs(path.parent)
    tmp = make_dir(path.parent / f"{TMP_PREFIX}{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        write_files(tmp)
        secure_tree(tmp)  # the writers of the data files (FAISS, NumPy) know nothing of modes
        files = {}
        for f in sorted(tmp.iterdir()):
            fsync_path(f)
            files[f.name] = {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
        full = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **manifest, "files": files}
        with open(open_file(tmp / MANIFEST, os.O_WRONLY | os.O_EXCL), "w", encoding="utf-8") as fh:
            json.dump(full, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        fsync_path(tmp)
        os.rename(tmp, path)
        fsync_path(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_manifest(path: str | Path) -> dict:
    """Read and check a snapshot's manifest: it must exist, parse and be of this format version."""
    path = Path(path)
    mf = path / MANIFEST
    if not mf.is_file():
        raise SnapshotError(f"{path} is not a snapshot: it has no {MANIFEST}")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{mf} is damaged: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise SnapshotError(f"{mf} is not a qa_search manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IncompatibleSnapshotError(
            f"{path} has snapshot format version {version}, but this qa_search reads version "
            f"{FORMAT_VERSION}: rebuild the index with this version (qa-search build)"
        )
    return manifest


def verify_files(path: str | Path, manifest: dict, checksums: bool = True) -> list[str]:
    """Compare the files in a snapshot with its manifest; returns the problems found (none: [])."""
    path = Path(path)
    problems = []
    for name, meta in sorted(manifest.get("files", {}).items()):
        f = path / name
        if not f.is_file():
            problems.append(f"{name} is missing")
        elif f.stat().st_size != meta["bytes"]:
            problems.append(f"{name} has {f.stat().st_size} bytes, the manifest says {meta['bytes']}")
        elif checksums and file_sha256(f) != meta["sha256"]:
            problems.append(f"{name} does not match its checksum (the file was changed or damaged)")
    return problems

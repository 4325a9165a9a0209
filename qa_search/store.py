"""An index directory: numbered snapshot generations and a pointer to the current one.

Layout::

    DIR/CURRENT              the current generation's number, e.g. "3"
    DIR/generations/000003/  one complete snapshot (see snapshot.py)

Publishing writes the new generation completely, then replaces ``CURRENT`` atomically, so a
reader sees either the old generation or the new one, never a mixture.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from .errors import SnapshotError
from .snapshot import MANIFEST, TMP_PREFIX, write_snapshot, write_text_atomic

CURRENT = "CURRENT"
GENERATIONS = "generations"


def generation_path(index_dir: Path, number: int) -> Path:
    return index_dir / GENERATIONS / f"{number:06d}"


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


def resolve_snapshot(path: str | Path) -> Path:
    """The snapshot directory to load for ``path``: a snapshot itself, or an index directory's
    current generation."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    number = current_generation(path)
    if number is None:
        if not path.exists():
            raise SnapshotError(f"no index at {path}: build one with `qa-search build DUMP --index {path}`")
        raise SnapshotError(f"{path} holds no published snapshot (no {CURRENT} file or {MANIFEST})")
    snap = generation_path(path, number)
    if not (snap / MANIFEST).is_file():
        raise SnapshotError(f"{path}: the current generation {number} is missing ({snap})")
    return snap


def clean_debris(index_dir: Path) -> None:
    """Remove half-written generations left by a crash (temporary directories)."""
    gens = index_dir / GENERATIONS
    if gens.is_dir():
        for p in gens.iterdir():
            if p.name.startswith(TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)
    for p in index_dir.glob(f"{TMP_PREFIX}*"):
        if p.is_file():
            p.unlink(missing_ok=True)


def publish(index_dir: str | Path, write_files: Callable[[Path], None], manifest: dict) -> tuple[int, Path]:
    """Write a new generation and make it current. Returns ``(number, snapshot path)``."""
    index_dir = Path(index_dir)
    if (index_dir / MANIFEST).is_file():
        raise SnapshotError(
            f"{index_dir} is a single snapshot, not an index directory: publish into another directory"
        )
    index_dir.mkdir(parents=True, exist_ok=True)
    clean_debris(index_dir)
    existing = list_generations(index_dir)
    number = max(existing + [current_generation(index_dir) or 0]) + 1
    manifest = {**manifest, "generation": number}
    snap = write_snapshot(generation_path(index_dir, number), write_files, manifest)
    write_text_atomic(index_dir / CURRENT, f"{number}\n")
    return number, snap

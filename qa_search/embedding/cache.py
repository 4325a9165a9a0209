"""A persistent embedding cache, so a rebuild embeds only the texts that changed.

Entries are keyed by (model fingerprint, :func:`text_hash` of the exact text
embedded) and live beside the index::

    DIR/cache/<model fingerprint>/<sha256 prefix>.npy    one shard, never modified once written

A shard is a NumPy structured array of (hash: 16 bytes, vector: d float32), sorted by hash. New
vectors are buffered and written as a new shard every ``flush_every`` vectors and at the end:
written to a temporary file, flushed, then renamed, so ``kill -9`` loses at most the unflushed
buffer and never leaves a half-written shard under a shard name. The shard's name is its content
checksum; a damaged shard is detected when the cache is opened and discarded (it is only a
cache: the texts are embedded again).

Memory stays bounded: shards are memory-mapped, and a lookup is a binary search per shard, so
the cache's size on disk does not become resident. :meth:`EmbeddingCache.compact` merges shards
and drops the vectors no retained generation uses.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from qa_search.embedding.models import PROBE_MIN_COSINE
from qa_search.storage.snapshot import TMP_PREFIX, file_sha256, fsync_path

log = logging.getLogger(__name__)

CACHE = "cache"


def _dtype(dimension: int) -> np.dtype:
    return np.dtype([("hash", "S16"), ("vec", "<f4", (dimension,))])


def _key(h: str) -> bytes:
    return bytes.fromhex(h)


def text_hash(text: str) -> str:
    """A content hash of an embedded text (hex, 128 bits): equal texts share an embedding."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class EmbeddingCache:
    """Vectors of one model, addressed by text hash, stored under ``root/<fingerprint>/``."""

    def __init__(
        self, root: str | Path, fingerprint: str, dimension: int, *, flush_every: int = 4096
    ) -> None:
        self.directory = Path(root) / fingerprint
        self.dimension = dimension
        self.flush_every = flush_every
        self._dtype = _dtype(dimension)
        self._shards: list[tuple[Path, np.ndarray]] = []
        self._pending: dict[bytes, np.ndarray] = {}
        self._open_shards()

    def _open_shards(self) -> None:
        if not self.directory.is_dir():
            return
        for p in sorted(self.directory.iterdir()):
            if p.name.startswith(TMP_PREFIX):
                p.unlink(missing_ok=True)  # a shard a crashed writer did not finish
                continue
            if p.suffix != ".npy":
                continue
            try:
                if not file_sha256(p).startswith(p.stem):
                    raise ValueError("checksum mismatch")
                arr = np.load(p, mmap_mode="r")
                if arr.dtype != self._dtype:
                    raise ValueError(f"dtype {arr.dtype}, expected {self._dtype}")
            except (OSError, ValueError) as exc:
                log.warning("discarding damaged embedding cache shard %s: %s", p, exc)
                p.unlink(missing_ok=True)
                continue
            self._shards.append((p, arr))

    def __len__(self) -> int:
        """Entries on disk plus pending ones (a text in two shards counts twice)."""
        return sum(len(a) for _, a in self._shards) + len(self._pending)

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    def lookup(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``hashes`` (hex text hashes): {hash: (d,) float32}."""
        found: dict[str, np.ndarray] = {}
        if not hashes:
            return found
        keys = np.array([_key(h) for h in hashes], dtype="S16")
        missing = np.ones(len(keys), bool)
        for i, k in enumerate(keys.tolist()):
            v = self._pending.get(k)
            if v is not None:
                found[hashes[i]] = v
                missing[i] = False
        for _, arr in self._shards:
            if not missing.any():
                break
            idx = np.flatnonzero(missing)
            column = arr["hash"]
            pos = np.searchsorted(column, keys[idx])
            pos_ok = pos < len(column)
            hit = np.zeros(len(idx), bool)
            hit[pos_ok] = column[pos[pos_ok]] == keys[idx][pos_ok]
            for i, p in zip(idx[hit].tolist(), pos[hit].tolist(), strict=True):
                found[hashes[i]] = np.array(arr["vec"][p], dtype=np.float32)
                missing[i] = False
        return found

    def add(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Remember (n, d) vectors under n text hashes; written to disk every ``flush_every``."""
        for h, v in zip(hashes, vectors, strict=True):
            self._pending[_key(h)] = np.array(v, dtype=np.float32)
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write the pending vectors as one new shard (atomically)."""
        if not self._pending:
            return
        arr = np.empty(len(self._pending), self._dtype)
        arr["hash"] = list(self._pending.keys())
        arr["vec"] = np.stack(list(self._pending.values()))
        self._write_shard(np.sort(arr, order="hash"))
        self._pending.clear()

    def _write_shard(self, arr: np.ndarray) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f"{TMP_PREFIX}{uuid.uuid4().hex}.npy"
        with open(tmp, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        final = self.directory / f"{file_sha256(tmp)[:32]}.npy"
        os.replace(tmp, final)
        fsync_path(self.directory)
        self._shards.append((final, np.load(final, mmap_mode="r")))
        return final

    def compact(self, keep: Iterable[str] | None = None) -> int:
        """Merge all shards into one, keeping only the hashes in ``keep`` (all when None).

        The merged shard is written before the old ones are removed, so a crash in between
        only leaves duplicates. Returns the number of entries kept. Holds the kept vectors in
        memory while merging: (entries, d) float32.
        """
        self.flush()
        if not self._shards:
            return 0
        merged = np.concatenate([np.asarray(a) for _, a in self._shards])
        if keep is not None:
            wanted = np.array(sorted({_key(h) for h in keep}), dtype="S16")
            merged = merged[np.isin(merged["hash"], wanted)]
        merged = np.sort(merged, order="hash")
        if len(merged):
            first = np.ones(len(merged), bool)
            first[1:] = merged["hash"][1:] != merged["hash"][:-1]
            merged = merged[first]
        old = [p for p, _ in self._shards]
        self._shards = []
        new = self._write_shard(merged) if len(merged) else None
        for p in old:
            if p != new:
                p.unlink(missing_ok=True)
        return len(merged)


class CachedEmbedder:
    """An :class:`~qa_search.embedding.models.Embedder` that answers from an :class:`EmbeddingCache`
    and embeds only the texts it has not seen; new vectors are added to the cache.

    ``embedded`` counts the texts actually passed to the wrapped model, ``cached`` those
    answered from the cache.
    """

    def __init__(self, embedder, cache: EmbeddingCache) -> None:
        self.inner = embedder
        self.cache = cache
        self.name = embedder.name
        self.dimension = embedder.dimension
        self.embedded = 0
        self.cached = 0

    # what the manifest records of the model must be the wrapped model's, not the wrapper's
    @property
    def backend(self) -> str | None:
        return getattr(self.inner, "backend", None)

    @property
    def probe_min_cosine(self) -> float:
        return float(getattr(self.inner, "probe_min_cosine", PROBE_MIN_COSINE))

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        hashes = [text_hash(t) for t in texts]
        found = self.cache.lookup(hashes)
        out = np.zeros((len(texts), self.dimension), np.float32)
        todo = []
        for i, h in enumerate(hashes):
            v = found.get(h)
            if v is None:
                todo.append(i)
            else:
                out[i] = v
        if todo:
            vecs = self.inner.encode([texts[i] for i in todo], batch_size=batch_size)
            out[todo] = vecs
            self.cache.add([hashes[i] for i in todo], vecs)
        self.embedded += len(todo)
        self.cached += len(texts) - len(todo)
        return out


def cache_root(index_dir: str | Path) -> Path:
    return Path(index_dir) / CACHE

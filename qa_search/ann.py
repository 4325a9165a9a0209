"""The vector index: FAISS inner-product search over L2-normalised vectors with int64 ids.

One implementation today (exact search, ``IndexFlatIP`` inside ``IndexIDMap2``); the class is the
seam where approximate index types go when a corpus outgrows exact search.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np


class VectorIndex:
    """Exact cosine (inner-product) search over unit vectors, addressed by int64 ids."""

    kind = "flat-ip"

    def __init__(self, dimension: int, _index: faiss.Index | None = None) -> None:
        self.dimension = dimension
        self._index = _index if _index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add (n, d) float32 unit vectors under n int64 ids; the ids must be new."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f"expected vectors of shape (n, {self.dimension}), got {vectors.shape}")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(ids):
            self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove the vectors with these ids; returns how many were present."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def reconstruct(self, part_id: int) -> np.ndarray:
        """The stored vector of one id: (d,) float32."""
        return self._index.reconstruct(int(part_id))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product for (m, d) queries: scores (m, k) float32, ids (m, k) int64.

        Rows are best first; where fewer than k vectors exist the tail is padded with id -1.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise ValueError(f"expected queries of shape (m, {self.dimension}), got {queries.shape}")
        m = len(queries)
        if k < 1 or len(self) == 0:
            return np.zeros((m, max(k, 0)), np.float32), np.full((m, max(k, 0)), -1, np.int64)
        scores, ids = self._index.search(queries, k)
        return scores, ids

    def save(self, path: str | Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: str | Path, dimension: int) -> VectorIndex:
        index = faiss.read_index(str(path))
        if index.d != dimension:
            raise ValueError(f"{path}: vectors have dimension {index.d}, expected {dimension}")
        return cls(dimension, index)

"""The vector index: FAISS inner-product search over L2-normalised vectors with int64 ids.

Two kinds, chosen from the data's size by :func:`choose_index_type` (the one place that decides):

- ``"flat-ip"``: exact search (``IndexFlatIP``); 4 bytes per dimension per vector.
- ``"hnsw-sq8"``: an HNSW graph over 8-bit scalar-quantised vectors (``IndexHNSWSQ``); 1 byte
  per dimension plus the graph's links, about 0.1-0.2 ms per query at a million vectors.

Both sit inside ``IndexIDMap2`` (ids in, ids out, reconstruct by id). HNSW cannot remove
vectors, and removing them from a flat index moves every vector stored after them (a copy of the
whole index on each live write), so removed ids of either kind become *tombstones*: they are
filtered out of results, with the search fetching deeper to make up for them, and dropped for
good by :meth:`VectorIndex.rebuilt`, which ``ForumIndex.save`` calls before every snapshot (so
a saved index never holds tombstones). A removal costs what the ids removed cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

FLAT = "flat-ip"
HNSW_SQ8 = "hnsw-sq8"
INDEX_TYPES = (FLAT, HNSW_SQ8)

#: Below this many vectors search is exact; at or above it, HNSW over 8-bit vectors.
#: Exact search costs ~5 ms per query at 100k vectors of 384 dimensions on 2 cores, which is
#: already too slow for typeahead; HNSW answers in ~0.1 ms there at recall@10 above 0.99.
EXACT_SEARCH_LIMIT = 50_000

#: HNSW settings: links per node, the build's beam width, and the search's beam width.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 128
#: Vectors used to train the 8-bit quantiser's per-dimension ranges.
SQ_TRAIN_SAMPLE = 100_000
#: Vectors per add call when progress is reported.
ADD_BLOCK = 20_000

#: ``progress(done, total)``, called as vectors are added.
Progress = Callable[[int, int], None]


@contextmanager
def single_threaded() -> Iterator[None]:
    """FAISS searches of the calling thread use one OpenMP thread inside this block (restored
    after). For many small searches in a row: on a busy machine each multi-threaded search pays
    for its threads' barriers (see :meth:`VectorIndex._search`)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def choose_index_type(n_vectors: int, exact_limit: int = EXACT_SEARCH_LIMIT) -> str:
    """The index type for ``n_vectors`` vectors: exact below ``exact_limit``, HNSW+SQ8 above."""
    return FLAT if n_vectors < exact_limit else HNSW_SQ8


def _kind_of(index: faiss.Index) -> str:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexFlat):
        return FLAT
    if isinstance(inner, faiss.IndexHNSWSQ):
        return HNSW_SQ8
    raise ValueError(f"unsupported FAISS index {type(inner).__name__}")


class VectorIndex:
    """Cosine (inner-product) search over unit vectors, addressed by int64 ids.

    ``kind`` is one of :data:`INDEX_TYPES`; an HNSW index is trained on the vectors of its
    first :meth:`add` (use :meth:`rebuilt` to convert an index holding all the data).
    """

    def __init__(
        self, dimension: int, _index: faiss.IndexIDMap2 | None = None, *, kind: str = FLAT
    ) -> None:
        if kind not in INDEX_TYPES:
            raise ValueError(f"index type must be one of {INDEX_TYPES}, got {kind!r}")
        self.dimension = dimension
        if _index is not None:
            kind = _kind_of(_index)
        elif kind == FLAT:
            _index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        else:
            # faiss's stub types the quantizer as a ScalarQuantizer; the C++ constructor takes its type
            hnsw = faiss.IndexHNSWSQ(
                dimension, faiss.ScalarQuantizer.QT_8bit, HNSW_M, faiss.METRIC_INNER_PRODUCT  # type: ignore[arg-type]
            )
            hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            hnsw.hnsw.efSearch = HNSW_EF_SEARCH
            _index = faiss.IndexIDMap2(hnsw)
        self.kind = kind
        self._index = _index
        # ids removed from an index that cannot remove them (HNSW); sorted for np.isin
        self._tombstones = np.zeros(0, np.int64)

    def __len__(self) -> int:
        """Live vectors (tombstoned ones excluded)."""
        return int(self._index.ntotal) - len(self._tombstones)

    @property
    def tombstones(self) -> int:
        """Removed ids still held by the index until the next :meth:`rebuilt`."""
        return len(self._tombstones)

    def add(self, ids: np.ndarray, vectors: np.ndarray, progress: Progress | None = None) -> None:
        """Add (n, d) float32 unit vectors under n int64 ids; the ids must be new.

        ``progress(done, n)``, if given, is called after each block of ``ADD_BLOCK`` vectors
        (building an HNSW graph over a million vectors takes minutes)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f"expected vectors of shape (n, {self.dimension}), got {vectors.shape}")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if not len(ids):
            return
        if not self._index.is_trained:
            self._index.train(vectors[:SQ_TRAIN_SAMPLE])
        if progress is None:
            self._index.add_with_ids(vectors, ids)
            return
        for start in range(0, len(ids), ADD_BLOCK):
            self._index.add_with_ids(vectors[start : start + ADD_BLOCK], ids[start : start + ADD_BLOCK])
            progress(min(start + ADD_BLOCK, len(ids)), len(ids))

    def remove(self, ids: np.ndarray) -> int:
        """Remove the vectors with these ids; returns how many were present."""
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        ids = ids[~self._dead(ids)]
        present = np.array([i for i in ids.tolist() if self._holds(i)], np.int64)
        self._tombstones = np.insert(self._tombstones, np.searchsorted(self._tombstones, present), present)
        return len(present)

    def _holds(self, part_id: int) -> bool:
        # the id map's own hash lookup: copying the map out to search it costs O(n) per write
        try:
            self._index.reconstruct(part_id)
        except RuntimeError:
            return False
        return True

    def _dead(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` (any shape) are tombstones: a binary search each, O(log tombstones)."""
        if not len(self._tombstones):
            return np.zeros(ids.shape, bool)
        at = np.minimum(np.searchsorted(self._tombstones, ids), len(self._tombstones) - 1)
        return self._tombstones[at] == ids

    def reconstruct(self, part_id: int) -> np.ndarray:
        """The stored vector of one id: (d,) float32 (decoded from 8 bits for HNSW+SQ8)."""
        # faiss's stub picks its torch overload whenever the output buffer is left out
        return self._index.reconstruct(int(part_id))  # type: ignore[return-value]

    def reconstruct_many(self, part_ids: np.ndarray) -> np.ndarray:
        """The stored vectors of several ids: (n, d) float32, in the order given. One call into
        FAISS: a search scores its few dozen candidates' parts this way, where one call per part
        cost more than the search itself."""
        ids = np.ascontiguousarray(part_ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.dimension), np.float32)
        return self._index.reconstruct_batch(ids)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All live vectors: ids (n,) int64 and vectors (n, d) float32, in insertion order."""
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        inner = faiss.downcast_index(self._index.index)
        vecs = (
            inner.reconstruct_n(0, inner.ntotal)
            if inner.ntotal
            else np.zeros((0, self.dimension), np.float32)
        )
        live = ~np.isin(ids, self._tombstones)
        return ids[live], np.ascontiguousarray(vecs[live])

    def rebuilt(self, kind: str | None = None, progress: Progress | None = None) -> VectorIndex:
        """This index without tombstones, as ``kind`` (default: its own). Returns ``self`` when
        there is nothing to change. ``progress`` as for :meth:`add`."""
        kind = kind or self.kind
        if kind == self.kind and not len(self._tombstones):
            return self
        out = VectorIndex(self.dimension, kind=kind)
        out.add(*self.vectors(), progress=progress)
        return out

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product for (m, d) queries: scores (m, k) float32, ids (m, k) int64.

        Rows are best first; where fewer than k vectors exist the tail is padded with id -1.
        Tombstoned ids are never returned: the search fetches deeper until k live ids are found
        or the index is exhausted.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise ValueError(f"expected queries of shape (m, {self.dimension}), got {queries.shape}")
        m = len(queries)
        if k < 1 or len(self) == 0:
            return np.zeros((m, max(k, 0)), np.float32), np.full((m, max(k, 0)), -1, np.int64)
        if not len(self._tombstones):
            return self._search(queries, k)
        total = int(self._index.ntotal)
        fetch = min(total, k + min(len(self._tombstones), 4 * k))
        while True:
            scores, ids = self._search(queries, fetch)
            dead = self._dead(ids)
            enough = np.sum(~dead & (ids >= 0), axis=1) >= min(k, len(self))
            if enough.all() or fetch >= total:
                break
            fetch = min(total, fetch * 4)
        out_s = np.zeros((m, k), np.float32)
        out_i = np.full((m, k), -1, np.int64)
        for row in range(m):
            keep = ~dead[row] & (ids[row] >= 0)
            n = min(k, int(keep.sum()))
            out_s[row, :n] = scores[row, keep][:n]
            out_i[row, :n] = ids[row, keep][:n]
        return out_s, out_i

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if len(queries) > 1:
            return self._index.search(queries, k)
        # One query gains nothing from OpenMP threads, and on a busy machine their barriers cost
        # ~10x (measured: 4 ms vs 44 ms over 50k vectors on 2 loaded cores). The setting is
        # per calling thread in OpenMP, so concurrent requests and batch searches are unaffected.
        with single_threaded():
            return self._index.search(queries, k)

    def save(self, path: str | Path) -> None:
        """Write the index; tombstones must have been compacted away first (:meth:`rebuilt`)."""
        if len(self._tombstones):
            raise ValueError("compact the index (rebuilt()) before saving: it holds tombstones")
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: str | Path, dimension: int) -> VectorIndex:
        index = faiss.read_index(str(path))
        if not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"{path}: not a vector index qa_search wrote (FAISS {type(index).__name__})")
        if index.d != dimension:
            raise ValueError(f"{path}: vectors have dimension {index.d}, expected {dimension}")
        out = cls(dimension, index)
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = HNSW_EF_SEARCH
        return out

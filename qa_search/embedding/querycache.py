"""An LRU cache of query embeddings, for typeahead.

A person typing a question sends the same prefixes again and again (backspace, retyping,
several tabs); embedding is the slow step of a search, so repeated texts skip the model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from qa_search.embedding.models import Embedder


class QueryCache:
    """An :class:`Embedder` that remembers the vectors of the last ``maxsize`` distinct texts.

    Thread-safe. ``hits`` and ``misses`` count texts (not calls); vectors are returned as
    copies, so callers cannot corrupt the cache.
    """

    def __init__(self, embedder: Embedder, maxsize: int = 1024) -> None:
        if maxsize < 0:
            raise ValueError(f"maxsize must be at least 0, got {maxsize}")
        self.inner = embedder
        self.name = embedder.name
        self.dimension = embedder.dimension
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def hit_rate(self) -> float:
        """Hits over lookups so far; 0.0 before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """(n, d) float32, L2-normalised, like the wrapped embedder; misses are embedded in one batch."""
        out = np.empty((len(texts), self.dimension), np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vec = self._cache.get(text)
                if vec is None:
                    missing.setdefault(text, []).append(i)
                    self.misses += 1
                else:
                    self._cache.move_to_end(text)
                    out[i] = vec
                    self.hits += 1
        if missing:
            # the model runs outside the lock: concurrent misses embed in parallel
            fresh = self.inner.encode(list(missing), batch_size=batch_size)
            with self._lock:
                for (text, rows), vec in zip(missing.items(), fresh, strict=True):
                    out[rows] = vec
                    if self.maxsize:
                        self._cache[text] = vec.copy()
                        self._cache.move_to_end(text)
                while len(self._cache) > self.maxsize:
                    self._cache.popitem(last=False)
        return out

    def clear(self) -> None:
        """Forget every cached vector (the counters are kept)."""
        with self._lock:
            self._cache.clear()

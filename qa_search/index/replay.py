"""Replaying logged live writes (see storage/writelog.py) on a forum index, in log order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from qa_search.index.forum import ForumIndex
from qa_search.storage.logformat import UPSERT, WriteEntry


def apply_entries(
    index: ForumIndex, entries: Iterable[WriteEntry], vectors: Mapping[str, np.ndarray] | None = None
) -> int:
    """Apply logged writes to ``index`` in order; returns how many entries were applied.

    ``vectors`` are embeddings made beforehand by text (see ``ForumIndex.pending_texts``)."""
    n = 0
    for entry in entries:
        if entry.op == UPSERT:
            index.upsert(entry.threads, vectors=vectors)
        else:
            index.delete(entry.ids)
        n += 1
    return n

"""What a serving index does for a write before taking any lock: each thread checked as every
reader of the log can read it back, the new texts embedded (or the vectors another worker
kept for them taken), and a large write's vectors kept beside the log for the other workers.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

from qa_search.embedding.cache import text_hash
from qa_search.index.forum import ForumIndex
from qa_search.storage import writevectors
from qa_search.storage.logformat import UPSERT, WriteEntry
from qa_search.threads import Thread, check_portable, checked_thread

log = logging.getLogger(__name__)

#: A write bringing at least this many new texts keeps their vectors for the other workers.
SHARE_MIN_TEXTS = 16


def portable(thread: Thread, at: int | None = None) -> Thread:
    """``thread`` checked as a dump line would be and as plain JSON every reader can parse back;
    ``ValueError`` naming it (and its place ``at`` in a batch) otherwise."""
    try:
        return check_portable(checked_thread(thread))
    except ValueError as exc:
        if at is None:
            raise
        raise ValueError(f"threads[{at}]: {exc}") from None


def model_key(index: ForumIndex) -> str:
    """Which model and encoder made a vector: another worker's vectors are used only when
    they came from the same."""
    embedder = index.embedder
    return f"{embedder.name}|{getattr(embedder, 'backend', None)}|{embedder.dimension}"


def embed_writes(
    index_dir: Path, index: ForumIndex, entries: Iterable[WriteEntry], threads: Iterable[Thread] = (),
    vectors: dict[str, np.ndarray] | None = None, reading: AbstractContextManager | None = None,
) -> dict[str, np.ndarray]:
    """Embeddings, by text, of what applying the logged ``entries`` and upserting ``threads``
    would embed in ``index``, less the texts in ``vectors`` (added to the result). Vectors the
    writer of an entry kept beside the log of ``index_dir`` are taken instead of running the
    model. ``index`` is read under ``reading`` (the serving index's shared lock); the model
    runs under none."""
    vectors = dict(vectors or {})
    entries = [e for e in entries if e.op == UPSERT]
    threads = [*(t for e in entries for t in e.threads), *threads]
    if not threads:
        return vectors
    with reading if reading is not None else nullcontext():
        texts = [t for t in index.pending_texts(threads) if t not in vectors]
    if texts and entries:
        key = model_key(index)
        kept: dict[str, np.ndarray] = {}
        for entry in entries:
            kept.update(writevectors.load(index_dir, entry.id, key))
        for text in texts:
            found = kept.get(text_hash(text))
            if found is not None and found.shape == (index.embedder.dimension,):
                vectors[text] = found
        texts = [t for t in texts if t not in vectors]
    if texts:
        # similar lengths batch together and pad little (a write may carry thousands of answers)
        texts.sort(key=len)
        embedded = index.embedder.encode(texts, batch_size=index.config.batch_size)
        vectors.update(zip(texts, embedded, strict=True))
    return vectors


def keep_vectors(
    index_dir: Path, index: ForumIndex, threads: list[Thread], vectors: dict[str, np.ndarray],
    reading: AbstractContextManager,
) -> str | None:
    """Save the vectors of a large write's new texts for the other workers, under the id the
    write will be logged with (None: a small write, cheaper to embed again than to keep).
    ``index`` is read under ``reading``."""
    with reading:
        texts = [t for t in index.pending_texts(threads) if t in vectors]
    if len(texts) < SHARE_MIN_TEXTS:
        return None
    write_id = uuid.uuid4().hex
    try:
        writevectors.save(index_dir, write_id, model_key(index),
                          [text_hash(t) for t in texts], np.stack([vectors[t] for t in texts]))
    except OSError as exc:  # only a shortcut: the other workers embed the texts themselves
        log.warning("not keeping a write's vectors for the other workers: %s", exc)
    return write_id

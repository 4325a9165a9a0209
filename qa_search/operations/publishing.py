"""Publishing a forum index as the next generation of an index directory, with the live writes
logged since the current one folded in and compacted out of the write log."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np

from qa_search.index.forum import ForumIndex
from qa_search.index.replay import apply_entries
from qa_search.storage.layout import CHANGED_NAME, FOLDED_NAME, changes_record
from qa_search.storage.logformat import UPSERT, WriteEntry, entry_lines
from qa_search.storage.writelog import WriteLog, current_folded_through, pending_entries


def _embed_pending(index: ForumIndex, entries: list[WriteEntry]) -> dict[str, np.ndarray]:
    """Embeddings, by text, of the new texts the pending upserts ``entries`` bring to ``index``."""
    new = (text for e in entries if e.op == UPSERT for text in index.pending_texts(e.threads))
    texts = sorted(dict.fromkeys(new), key=len)  # batches of similar length pad little
    if not texts:
        return {}
    embedded = index.embedder.encode(texts, batch_size=index.config.batch_size)
    return dict(zip(texts, embedded, strict=True))


def _superseded_dropped(entries: list[WriteEntry]) -> list[WriteEntry]:
    """``entries`` without the threads of upserts that a later entry among them sets again (an
    edit, a delete): applied in order, the result is the same (a thread ends as its last entry
    leaves it), and a thread deleted through the service leaves no copy of its text in the
    record a generation keeps. Each entry stays, with its id, for a rollback to tell by."""
    later: set[str] = set()
    out = []
    for e in reversed(entries):
        if e.op == UPSERT:
            kept = tuple(t for t in e.threads if t.id not in later)
            later.update(t.id for t in e.threads)
            out.append(e if len(kept) == len(e.threads) else replace(e, threads=kept))
        else:
            later.update(e.ids)
            out.append(e)
    return out[::-1]


def newer_than(entries: list[WriteEntry], since: datetime | None) -> list[WriteEntry]:
    """The entries acknowledged after ``since`` (all of them for None); an entry without a
    recorded time counts as older than any ``since``."""
    if since is None:
        return list(entries)
    return [e for e in entries if (at := e.logged_at) is not None and at > since]


def publish_with_log(
    index: ForumIndex,
    index_dir: str | Path,
    *,
    progress=None,
    then: Callable[[ForumIndex], None] | None = None,
    since: datetime | None = None,
    carried: list[WriteEntry] | None = None,
    changed: Collection[str] | None = None,
) -> tuple[Path, int]:
    """Apply the pending live writes of ``index_dir`` to ``index``, then ``then(index)`` (an
    operator's update or delete, which must win over older live writes), publish it as the next
    generation and compact the log. Returns (snapshot path, number of writes folded in).

    With ``since`` (a full build from a dump exported then), only the pending writes
    acknowledged after it are applied: the dump holds the older ones. All of them leave the log
    and are recorded as folded in, applied or not. ``carried``: writes earlier generations
    folded in that the caller applied again; recorded again with this generation's, so they
    outlive the pruning of those generations (a rollback tells them by their ids).
    ``changed``: the ids of the threads the caller changed (``index`` against the current
    generation, and ``then``), recorded in the generation (None: any thread may have, as in a
    full build or a change of settings); a conditional write read from an older generation is
    refused where this publish changed its thread (see
    :func:`~qa_search.storage.writelog.published_over`).

    The log stays locked throughout, so no write can slip between the read and the compaction;
    searches are never blocked (serving processes only read).
    """
    # the pending writes' new texts are embedded before the log is locked: the service's writes
    # wait on that lock, and a day of writes can take the encoder a while; only the few that
    # come in meanwhile are embedded under it
    done = current_folded_through(index_dir)  # the caller holds the writer lock: CURRENT stays
    vectors = _embed_pending(index, newer_than(pending_entries(WriteLog(index_dir), done), since))
    log = WriteLog(index_dir)
    with log.locked():
        entries = pending_entries(log, done)  # a damaged line stops the publish: nothing is lost
        apply_entries(index, newer_than(entries, since), vectors)
        if then is not None:  # the caller's own change is newer than the pending writes
            then(index)
        # kept in the snapshot too: a rollback past this generation puts them back in the log
        recorded = [*(carried or ()), *entries]
        files = {CHANGED_NAME: changes_record(changed)}
        if recorded:
            files[FOLDED_NAME] = entry_lines(_superseded_dropped(recorded))
        # the generation says which log entries it holds, so a worker that loads it before the
        # log is compacted below does not apply them (and undo ``then``) a second time
        path = index.save(index_dir, progress=progress, extra_files=files,
                          manifest_extra={"write_log": {"folded_through": log.last_seq}})
        if entries or log.path.exists():
            log.truncate_through(log.last_seq, int(path.name))
    return path, len(entries)

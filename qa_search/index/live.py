"""The index one serving process holds: the current generation plus the live write log.

Searches run concurrently under a shared lock; a write (ours or another process's, read from
the log) takes the lock exclusively for the in-memory update only. The model's work comes
before any lock: a write embeds its new texts, and those of the entries other processes have
logged since this one last read, holding nothing; only then does it take this process's write
lock and the log's, to append (which acknowledges it) and apply vectors already made. So a
large write delays neither searches nor other writes, here or in another process, by its
embedding; whatever was logged in the moment between is embedded under the lock. A large
write's vectors are kept beside the log (storage/writevectors.py) for the other processes,
which apply it without running the model again (index/writeprep.py prepares a write: checks,
embedding, vectors kept; index/rwlock.py is the lock).

A new generation (a publish by another process, or a rollback) is loaded and brought up to
date with the log in a loader thread of its own (:meth:`LiveIndex.start`) while the old one keeps
serving, and the watcher goes on applying other processes' writes to the old one (a large
generation takes a minute to load: they would be missing from this process all that time);
then the reference is swapped, which waits only for the searches already running on
the old index. While the watcher runs, a search never loads a generation or reads the log
itself: one that notices the log or the generation has changed wakes the watcher and answers
from what is served now. A writer's read (:meth:`LiveIndex.current`) applies the log first, and
a read-modify-write passes what it read to the write, which logs nothing where another write to
those threads was logged, or a generation that changed them was published, in between
(optimistic concurrency: no lock spans the read, the merge and the embedding; see
:meth:`LiveIndex.upsert`). A generation that fails to load is logged, counted
(:attr:`LiveIndex.load_failures`) and tried again, at growing intervals, while the old one
serves. So publishing never fails or delays a request beyond that swap. A handle whose watcher
was never started (a script, a test) does that work in the call that notices it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qa_search.embedding.models import Embedder
from qa_search.embedding.querycache import QueryCache
from qa_search.errors import (
    QASearchError,
    ReadOnlyIndexError,
    SnapshotError,
    UnknownThreadError,
    WriteConflictError,
)
from qa_search.index.contents import as_str_list
from qa_search.index.forum import ForumIndex
from qa_search.index.relevance import relevance_model
from qa_search.index.replay import apply_entries
from qa_search.index.results import DuplicateHit, DuplicateVerdicts, SearchHit, SearchPage
from qa_search.index.rwlock import RWLock
from qa_search.index.search import SearchOptions, check_min_relevance, check_options
from qa_search.index.writeprep import embed_writes, keep_vectors, portable
from qa_search.storage import writevectors
from qa_search.storage.generations import generation_path, resolve_snapshot, serving_generation
from qa_search.storage.logformat import WriteEntry, log_switch
from qa_search.storage.writelog import WriteLog, folded_through, published_over
from qa_search.threads import Thread, same_thread

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

log = logging.getLogger(__name__)


def _readable(wlog: WriteLog) -> list[WriteEntry]:
    """The entries ``wlog`` has not returned yet, up to a damaged line if there is one (which
    the serving process has logged already)."""
    try:
        return wlog.poll()  # reads to the end, or up to a damaged line
    except SnapshotError:
        return []


def _conflict(expected: Mapping[str, Thread | None] | None) -> WriteConflictError:
    ids = sorted(expected or {})
    what = f"thread {ids[0]!r}" if len(ids) == 1 else "threads " + ", ".join(repr(i) for i in ids)
    return WriteConflictError(f"{what} changed since it was read (another write was logged first): "
                              "nothing was written; read it again and redo the change")


def _default_cut(index: ForumIndex) -> float | None:
    model = relevance_model(index)
    return None if model is None else model.min_relevance


class LiveIndex:
    """A served index directory: its current generation with the write log applied on top.

    ``index_dir`` is an index directory (generations + ``CURRENT``) or a single snapshot; a
    single snapshot is served as is, read-only (a write raises :class:`ReadOnlyIndexError`).
    A query shorter than ``min_query_chars`` once trimmed finds nothing, without embedding it
    (typeahead sends every keystroke).
    """

    #: Seconds before a generation that failed to load is tried again; doubled after each
    #: failure, up to :attr:`retry_max_seconds`.
    retry_seconds = 1.0
    retry_max_seconds = 60.0

    def __init__(
        self, index_dir: Path, embedder: Embedder | None = None, cache_size: int = 1024, *,
        threads: int | None = None, min_query_chars: int = 1,
    ) -> None:
        self.index_dir = Path(index_dir)
        self.min_query_chars = max(1, min_query_chars)
        self._watch = resolve_snapshot(self.index_dir) != self.index_dir  # a directory, not one snapshot
        self.generation = serving_generation(self.index_dir) if self._watch else None
        snap = self.index_dir if self.generation is None else generation_path(self.index_dir, self.generation)
        self.index = ForumIndex.load(snap, embedder, threads=threads)
        self.cache = QueryCache(self.index.embedder, cache_size)
        self.index.query_embedder = self.cache
        self.log = WriteLog(self.index_dir, after=folded_through(snap))
        self._log_damage: str | None = None
        #: Log entries applied on top of the generation served; set with the index, under its
        #: write lock, so that (generation, applied) read under :meth:`reading` names what the
        #: reader sees.
        self.applied = 0
        self._rw = RWLock()
        self._sync = threading.Lock()  # one catch-up / write / swap at a time
        self._loading = threading.Lock()  # one generation load at a time
        #: How a generation is loaded (a test may slow it down or make it fail).
        self._loader: Callable[[Path, Embedder], ForumIndex] = ForumIndex.load
        self._failed_generation: int | None = None
        self._retry_at = 0.0
        self._retry_delay = self.retry_seconds
        #: The generation being loaded in the background (None: none).
        self.loading_generation: int | None = None
        #: Why the newest generation could not be loaded (None once one loads), and how many
        #: loads have failed since this process started.
        self.load_error: str | None = None
        self.load_failures = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._poller: threading.Thread | None = None
        self._load_due = threading.Event()
        self._load_thread: threading.Thread | None = None
        # set by the swap to the next generation loaded (and then replaced), for wait_loaded
        self._swapped = threading.Event()
        self._outwaited: int | None = None  # a generation whose load a wait_loaded timed out on
        # last: a rollback met here (one that began while the generation loaded) loads its target
        self._catch_up_or_log()  # the whole log, from its start

    # -- reads --------------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[ForumIndex]:
        """The index, for one request's reads. Where the log has changed (a ``stat``), other
        processes' writes are applied: by the watcher, woken here and not waited for, when it
        runs (so a write acknowledged anywhere is visible within moments); else here, first."""
        if self.log.changed():
            if self._watching():
                self._wake.set()
            else:
                self._catch_up_or_log()
        with self._rw.read():
            yield self.index

    def _watching(self) -> bool:
        """Whether the watcher runs, in a thread other than this one."""
        poller = self._poller
        return poller is not None and poller.is_alive() and poller is not threading.current_thread()

    def _swap_due(self) -> None:
        """The log now belongs to another generation (a rollback): the loader thread loads it,
        woken here; without one, it is loaded here."""
        loader = self._load_thread
        if loader is not None and loader.is_alive() and loader is not threading.current_thread():
            self._load_due.set()
        else:
            self.check_generation()

    def _query(self, text: str, typing: bool = False) -> str | None:
        stripped = text.strip()
        if len(stripped) < self.min_query_chars:
            return None
        # while typing, a space at the end is what says the last word is finished
        return text.lstrip() if typing else stripped

    def search(
        self, text: str, k: int = 10, *, offset: int = 0, rerank: bool = False,
        **options: Unpack[SearchOptions],
    ) -> list[SearchHit]:
        """:meth:`ForumIndex.search` on the index as it is now: the k threads most similar to
        ``text``, best first, after the first ``offset``; none for a query under
        ``min_query_chars``. Empty ``tags`` and ``category`` filter nothing (a form's blank
        fields). ``groups``: the caller's groups, whose visible threads alone are searched
        (empty: public threads only; None: every thread, for an operator's own tools; a service
        passes every caller's groups). The other ``options`` as :meth:`ForumIndex.search` takes
        them (:class:`~qa_search.index.search.SearchOptions`; ``rerank``: with the reranker
        loaded with the generation, never per request). The text is trimmed, but with ``typing``
        its end is kept: a space after the last word is what says that word is finished."""
        # a short query finds nothing, but a misspelt keyword is still told
        check_options(options, "search", rerank=True)
        query = self._query(text, bool(options.get("typing")))
        if query is None:
            return []
        with self.reading() as index:
            return index.search(query, k=k, offset=offset, rerank=rerank, **options)

    def search_page(
        self, text: str, k: int = 10, *, offset: int = 0, rerank: bool = False, index_cut: bool = False,
        max_offset: int | None = None, **options: Unpack[SearchOptions],
    ) -> SearchPage:
        """The page of k hits of :meth:`search` at ``offset``, and where the next page starts
        (:meth:`SearchPage.of <qa_search.SearchPage.of>`: the ``min_relevance`` cut applies to the
        page alone, and a next page is offered only up to ``max_offset``). ``index_cut``: where
        ``min_relevance`` is None, cut at the index's own default (:attr:`default_min_relevance`)
        instead of keeping every hit. That cut is read from the generation the hits come from, in
        the same read, so a swap to a generation with another relevance model never puts one
        generation's cut on the other's hits."""
        check_options(options, "search_page", rerank=True)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        cut = check_min_relevance(options.pop("min_relevance", None))
        query = self._query(text, bool(options.get("typing")))
        with self.reading() as index:
            # one more than the page, uncut: whether a next page follows is told from the extra hit
            hits = [] if query is None else index.search(query, k=k + 1, offset=offset, rerank=rerank,
                                                         **options)
            if cut is None and index_cut:
                cut = _default_cut(index)
        return SearchPage.of(hits, offset, k, cut, max_offset)

    @property
    def default_min_relevance(self) -> float | None:
        """The relevance cut fitted with the index's model, at which off-topic text and gibberish
        find nothing (None where the model has no relevance model). For a search, pass
        ``index_cut`` to :meth:`search_page` instead: this reads the generation served now, which
        a swap may replace before the search runs."""
        return _default_cut(self.index)

    def find_duplicates(
        self, text: str, *, threshold: float | None = None, k: int = 5, groups: Iterable[str] | None = None
    ) -> list[DuplicateHit]:
        """:meth:`ForumIndex.find_duplicates` on the index as it is now: threads whose question
        matches ``text`` at or above ``threshold`` (default: the index's), best first, at most
        k; none for a query under ``min_query_chars``. ``groups`` as :meth:`search` takes them."""
        query = self._query(text)
        if query is None:
            return []
        with self.reading() as index:
            return index.find_duplicates(query, threshold=threshold, k=k, groups=groups)

    def duplicate_verdicts(
        self, text: str, *, threshold: float | None = None, k: int = 5, groups: Iterable[str] | None = None
    ) -> DuplicateVerdicts:
        """:meth:`find_duplicates` with the scorer that judged the hits, both from the
        generation served at that moment (one read, so a swap cannot fall between them)."""
        query = self._query(text)
        with self.reading() as index:
            hits = [] if query is None else index.find_duplicates(query, threshold=threshold, k=k,
                                                                  groups=groups)
            return DuplicateVerdicts(tuple(hits), index.duplicate_cutoff(rerank=True)[1])

    # -- writes -------------------------------------------------------------------------

    def _prepared(self, threads: Iterable[Thread] = ()) -> dict[str, np.ndarray]:
        """Vectors for ``threads`` and for the upserts other processes logged since this handle
        last read, made before any lock is taken (see the module's summary)."""
        return embed_writes(self.index_dir, self.index, self.log.peek(), threads, reading=self._rw.read())

    def _apply(self, entries: list[WriteEntry], vectors: dict[str, np.ndarray] | None = None) -> None:
        """Apply entries to the serving index, in order. ``vectors``: embeddings made beforehand;
        any text still missing (an entry logged since they were made) is embedded here, before
        the exclusive lock."""
        if not entries:
            return
        vectors = embed_writes(self.index_dir, self.index, entries, vectors=vectors, reading=self._rw.read())
        with self._rw.write():
            apply_entries(self.index, entries, vectors)
            # with the index, under the lock: a reader never sees the count of one state with the
            # other (the moderators' clusters are kept for as long as the two are the same)
            self.applied += len(entries)

    def _check_writable(self) -> None:
        if not self._watch:
            raise ReadOnlyIndexError(
                f"{self.index_dir} is a single snapshot, served read-only: no build would ever fold "
                "writes into it. Serve the index directory to take writes"
            )

    def _catch_up_or_log(self) -> None:
        # a damaged log line stops writes (they poll first) but not searches: they go on over
        # what was applied before it, and the error is logged once per damage
        try:
            self.catch_up()
        except SnapshotError as exc:
            if str(exc) != self._log_damage:
                self._log_damage = str(exc)
                log.error("not applying the write log past a damaged line until it is repaired: %s", exc)

    def catch_up(self) -> None:
        """Apply what other processes appended to the log, or, when a rollback has set the log
        for another generation, swap to that one (never apply its log to this one)."""
        vectors = self._prepared()  # their texts are embedded while this process's writes go on
        with self._sync:
            before = self.log.file
            swap = self._take(before, self.log.poll(), vectors)
        if swap:
            self._swap_due()

    def _take(
        self, before: tuple | None, entries: list[WriteEntry], vectors: dict[str, np.ndarray] | None = None
    ) -> bool:
        """Apply entries read from the log; returns whether a swap is due: the log has become
        another generation's (a rollback rewrote it: ``before`` is the file this handle read
        until now). Then the writes the rollback put back, which the generation served holds
        already, are left for the swap; the others (those pending, numbered again, and any
        logged since) are applied here too, so each is seen from its acknowledgement on rather
        than from a swap that waits for a load (and never comes while the load fails)."""
        if self._watch and self.log.file != before:
            switch = log_switch(self.index_dir)
            if switch is not None and switch["from"] == self.generation != switch["to"]:
                self._apply([e for e in entries if e.restored_from is None], vectors)
                return True
        self._apply(entries, vectors)
        return False

    def upsert(
        self, threads: Iterable[Thread] | Thread, *, expected: Mapping[str, Thread | None] | None = None
    ) -> WriteEntry:
        """Log the threads durably, then apply them here (a single :class:`Thread` may be passed
        as it is). Each is checked first as a dump line would be (``ValueError`` naming it, and
        its place ``threads[i]`` in a batch), so the log never holds an entry that another
        process could not read back. Returns the log entry.

        The new texts are embedded first, holding no lock (see the module's summary): the log
        append, which is what acknowledges the write, comes after, so a write whose embedding
        fails (or whose process dies meanwhile) was never acknowledged and leaves no trace.

        ``expected``: the condition of a read-modify-write, the threads as it read them
        (:meth:`current`), by id (None: the index held none). Where any of them is no longer
        so, because a write logged since (by any process, in log order before this one) changed
        it, nothing is logged and :class:`WriteConflictError` is raised; that write is applied
        here by then, so reading the thread again sees it. So too where a generation published
        since the one served here (a sync, an update, a build, a rollback) changed one of them:
        reading again sees it once this process has loaded that generation
        (:meth:`wait_loaded`). The check and the append are one step under the log's lock, and
        no lock is held while the caller reads and merges."""
        self._check_writable()
        if isinstance(threads, Thread):
            threads = [portable(threads)]
        else:
            threads = [portable(t, i) for i, t in enumerate(threads)]
        vectors = self._prepared(threads)
        write_id = keep_vectors(self.index_dir, self.index, threads, vectors, self._rw.read())
        entry = None
        try:
            with self._sync:
                self._check_expected(expected)
                before = self.log.file
                unseen, entry = self.log.append_upsert(
                    threads, write_id, unless_changed=(expected or {}).keys(), read_from=self.generation)
                swap = self._take(before, unseen if entry is None else [*unseen, entry], vectors)
        finally:
            if entry is None:  # refused, or failed before it was logged: no entry will name the file
                writevectors.discard(self.index_dir, write_id)
        if swap:  # the write is in the log of the generation swapped to as well
            self._swap_due()
        if entry is None:
            raise _conflict(expected)
        return entry

    def current(self, thread_id: str) -> Thread | None:
        """The thread ``thread_id`` as the writes logged so far leave it (None: the index holds
        none): those other processes logged that this one has not applied yet are applied first
        (:class:`SnapshotError` where a log line is damaged). What a read-modify-write reads, to
        pass back as ``expected`` to :meth:`upsert` or :meth:`delete`."""
        if self._watch and self.log.changed():
            self.catch_up()
        with self._rw.read():
            return self._held(thread_id)

    def _held(self, thread_id: str) -> Thread | None:
        """The thread as this process holds it (None: it holds none); call holding a read."""
        return self.index.get(thread_id) if thread_id in self.index else None

    def _check_expected(self, expected: Mapping[str, Thread | None] | None) -> None:
        """:class:`WriteConflictError` unless the index holds each thread of ``expected`` as
        given; with the writes this handle has read applied (call holding ``_sync``)."""
        if not expected:
            return
        with self._rw.read():
            for thread_id, thread in expected.items():
                if not same_thread(self._held(thread_id), thread):
                    raise _conflict(expected)

    def delete(
        self, thread_ids: Iterable[str] | str, *, missing_ok: bool = True,
        expected: Mapping[str, Thread | None] | None = None,
    ) -> WriteEntry:
        """Log a delete durably, then apply it here (a single string is one id; ids are trimmed,
        as stored ones are). Returns the log entry.

        With ``missing_ok=False``, an id the index does not hold raises
        :class:`UnknownThreadError` and nothing is logged. The check and the write are one step
        under the lock every write here takes, after catching up with other processes' writes:
        of two requests deleting the same thread, one succeeds and the other is told it is gone.
        A process that logs its delete between that catch-up and this write (the log's own
        lock orders them) makes this delete a no-op, which is reported the same way.
        ``expected`` as :meth:`upsert` takes it.
        """
        self._check_writable()
        ids = [str(i).strip() for i in as_str_list(thread_ids)]  # stored ids are text, trimmed
        while True:
            vectors = self._prepared()  # others' logged upserts: embedded before the locks
            with self._sync:
                swap = False
                if not missing_ok:  # others' writes first; a rollback's new log: swap, then check
                    before = self.log.file
                    swap = self._take(before, self.log.poll(), vectors)
                if not swap:
                    if not missing_ok:
                        self._require(ids)
                    self._check_expected(expected)
                    before = self.log.file
                    unseen, entry = self.log.append_delete(ids, unless_changed=(expected or {}).keys(),
                                                           read_from=self.generation)
                    swap = self._take(before, unseen, vectors)
                    if entry is None:
                        break
                    absent = [] if missing_ok or swap else [i for i in ids if i not in self.index]
                    self._apply([entry])  # served from its acknowledgement on, a swap due or not
                    if absent:  # another process deleted it first, in log order
                        raise UnknownThreadError(absent[0])
                    break
            self.check_generation()  # the check needs the new generation (or the watcher's load)
        if swap:  # the write is in the log of the generation swapped to as well
            self._swap_due()
        if entry is None:
            raise _conflict(expected)
        return entry

    def _require(self, ids: list[str]) -> None:
        for thread_id in ids:
            if thread_id not in self.index:
                raise UnknownThreadError(thread_id)

    # -- generations --------------------------------------------------------------------

    def check_generation(self) -> bool:
        """Swap to a newly published generation, if any; returns whether it swapped.

        The generation is loaded and the log replayed onto it while the old one serves and
        takes writes; the writes logged meanwhile are embedded before, and applied under, the
        lock that orders writes, and the swap itself waits only for running searches. A load
        that fails is logged and counted, the old generation serves on, and the same
        generation is tried again after :attr:`retry_seconds`, doubling each time."""
        if not self._watch:
            return False
        with self._loading:
            try:
                number = serving_generation(self.index_dir)
            except QASearchError as exc:
                log.error("cannot read the current generation: %s", exc)
                return False
            if number is None or number == self.generation:
                return False
            if number == self._failed_generation and time.monotonic() < self._retry_at:
                return False
            self.loading_generation = number
            try:
                return self._load(number)
            except Exception as exc:  # keep serving the old one; try it again later
                self._load_failed(number, exc)
                return False
            finally:
                self.loading_generation = None

    def _load(self, number: int) -> bool:
        path = generation_path(self.index_dir, number)
        fresh = self._loader(path, self.index.embedder)
        fresh.query_embedder = self.cache
        fresh_log = WriteLog(self.index_dir, after=folded_through(path))
        # the bulk of the log is applied while the old index still serves and takes writes
        entries = _readable(fresh_log)
        applied = apply_entries(fresh, entries, embed_writes(self.index_dir, fresh, entries))
        vectors = embed_writes(self.index_dir, fresh, fresh_log.peek())  # logged since: no lock yet
        with self._sync:
            entries = _readable(fresh_log)
            applied += apply_entries(fresh, entries, embed_writes(self.index_dir, fresh, entries,
                                                                  vectors=vectors))
            with self._rw.write():
                self.index, self.log, self.generation, self.applied = fresh, fresh_log, number, applied
            swapped, self._swapped = self._swapped, threading.Event()
        swapped.set()
        self.load_error, self._failed_generation, self._retry_delay = None, None, self.retry_seconds
        log.info("now serving generation %d (%d threads, %d live writes on top)", number, len(fresh), applied)
        return True

    def wait_loaded(self, timeout: float) -> bool:
        """Wait, up to ``timeout`` seconds, until this process serves the generation to serve (a
        publish or rollback its loader has not loaded yet); returns whether it does (at once
        where it did already). What a read-modify-write refused over such a generation waits
        for before it reads again. Only the loader thread loads (:meth:`start`; without it,
        False at once: a load may take a minute, the caller's to run). A load that failed last
        time, or that a wait already timed out on, is not waited for: the callers behind get
        their answer at once rather than each waiting out the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            swapped = self._swapped  # taken before the check: a swap after it sets this one
            try:
                target = serving_generation(self.index_dir)
            except QASearchError:
                return False
            if target is None or target == self.generation:
                return True
            loader = self._load_thread
            given_up = target in (self._failed_generation, self._outwaited)
            if loader is None or not loader.is_alive() or given_up:
                return False
            self._load_due.set()
            if not swapped.wait(max(0.0, deadline - time.monotonic())):
                self._outwaited = target
                return False

    def read_outdated(self, thread_ids: Collection[str]) -> bool:
        """Whether what this process holds of ``thread_ids`` may be older than the index: a
        generation published since the one served here (not loaded yet) changed one of them
        (:func:`~qa_search.storage.writelog.published_over`). A conditional write refuses such a
        read by itself; this is for a read-modify-write that decides to write nothing."""
        if not self._watch:
            return False
        try:
            serving = serving_generation(self.index_dir)
        except QASearchError:
            return False
        generation = self.generation
        return generation is not None and published_over(self.index_dir, serving, generation, thread_ids)

    def _load_failed(self, number: int, exc: Exception) -> None:
        if number != self._failed_generation:
            self._retry_delay = self.retry_seconds
        self._failed_generation = number
        self._retry_at = time.monotonic() + self._retry_delay
        reason = str(exc) if isinstance(exc, QASearchError) else f"{type(exc).__name__}: {exc}"
        self.load_error = f"generation {number}: {reason}"
        self.load_failures += 1
        log.error("not switching to generation %d (still serving %s; trying again in %.0f s): %s",
                  number, self.generation, self._retry_delay, reason)
        self._retry_delay = min(self._retry_delay * 2, self.retry_max_seconds)

    def _watch_loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval)  # a tick, or a request that saw the log change
            self._wake.clear()
            if self._stop.is_set():
                break
            self._load_due.set()  # a new generation is the loader's: its load holds up no write here
            try:
                if self.log.changed():
                    self._catch_up_or_log()  # a damaged line is logged once, not every tick
            except Exception:  # the watcher must survive anything; the next tick retries
                log.exception("index watcher failed")
            self._stop.wait(0.005)  # a damaged log reads as changed on every request: not a spin

    def _load_loop(self) -> None:
        while not self._stop.is_set():
            # the watcher's tick or wake, or a rollback's log: the watcher ticks every interval, so
            # a timeout of the loader's own would only check the generation twice as often
            self._load_due.wait()
            self._load_due.clear()
            if self._stop.is_set():
                break
            try:
                self.check_generation()
            except Exception:  # as the watcher: survive, and try again at the next tick
                log.exception("index loader failed")

    def start(self, interval: float) -> None:
        """Watch for new generations and log entries in two threads: every ``interval`` seconds,
        and whenever a request sees the log change. From then on, requests leave loading
        generations and applying other processes' writes to them; one loads, the other applies
        the writes meanwhile."""
        self._load_thread = threading.Thread(target=self._load_loop, name="qa-search-load",
                                             daemon=True)
        self._poller = threading.Thread(target=self._watch_loop, args=(interval,), name="qa-search-watch",
                                        daemon=True)
        self._load_thread.start()
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._load_due.set()
        for thread in (self._poller, self._load_thread):
            if thread is not None:
                thread.join(timeout=10)

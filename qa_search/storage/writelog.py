"""The durable log of live writes that sit on top of an index directory's snapshots.

Snapshots are immutable; a forum's back end still pushes new, edited and deleted threads all
day. Each such write is appended to ``DIR/writes.jsonl`` (one JSON object per line, fsync'ed
before the append returns) and every serving process applies the log, in order, on top of the
generation it serves. The next build compacts the log: it applies the pending writes to the
index it is about to publish, then rewrites the log without them.

The file format (entries, the header and the switch a rollback records in it) is in
logformat.py. Every entry sets the state of the threads it names, so replaying a suffix of the
log on an index that already reflects it changes nothing: a process may apply an entry twice
(for instance around a compaction) without harm, but never skips one.

Appends and compactions hold an exclusive ``flock`` on ``DIR/writes.lock``; readers take no
lock and only consume complete lines.

The writes a build folds in are also kept in the generation it publishes (``live_writes.jsonl``,
the same records, each with the ``id`` it was given when logged). A serving process that had not
read some of them when the log was compacted reads them from there, so that the generation it
serves while it loads the new one has them too. A rollback puts the writes the
current generation's line holds and the target's does not back at the head of the log (see
:func:`writes_for_switch`), so a write the service acknowledged is never lost to a rollback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import uuid
from collections.abc import Collection, Iterable, Iterator, Set
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from qa_search.errors import SnapshotError
from qa_search.storage import writevectors
from qa_search.storage.layout import (
    current_generation,
    generation_changes,
    generation_path,
    generation_writes_file,
    lineage,
)
from qa_search.storage.logformat import (
    DELETE,
    LOCK_NAME,
    LOG_NAME,
    UPSERT,
    WriteEntry,
    damaged_line,
    decode_line,
    entry_record,
    file_token,
    log_header,
    log_lines,
    log_switch,
    now_iso,
    parse_line,
)
from qa_search.storage.permissions import make_dirs, open_file
from qa_search.storage.snapshot import MANIFEST, fsync_path, read_manifest, write_bytes_atomic
from qa_search.threads import Thread

log = logging.getLogger(__name__)


def serving_generation(index_dir: str | Path) -> int | None:
    """The generation to serve: ``CURRENT``'s, unless a rollback has set the write log for
    another and not yet moved ``CURRENT`` (see :func:`~qa_search.storage.logformat.log_switch`)."""
    number = current_generation(index_dir)
    switch = log_switch(index_dir)
    if switch is None or number != switch["from"] or switch["to"] == number:
        return number
    target = switch["to"]
    return target if (generation_path(Path(index_dir), target) / MANIFEST).is_file() else number


def published_over(index_dir: str | Path, serving: int | None, read_from: int, ids: Collection[str]) -> bool:
    """Whether a thread of ``ids``, read from generation ``read_from``, may read otherwise in
    ``serving``: a generation published on top of ``read_from``, up to ``serving``, changed one
    of them (or recorded that any may have changed, see
    :func:`~qa_search.storage.layout.generation_changes`), or ``serving`` is not on top of it at
    all (a rollback went elsewhere). The live writes those publishes folded in are not looked at
    here: they are log entries, and a handle that had not read them gets them back as unseen."""
    if serving == read_from:
        return False
    if serving is None:
        return True
    index_dir = Path(index_dir)
    for g in lineage(index_dir, serving):
        if g == read_from:
            return False
        changed = generation_changes(index_dir, g)
        if changed is None or not changed.isdisjoint(ids):
            return True
    return True


def _write_all(fd: int, data: bytes, size: int) -> None:
    """Append ``data`` wholly and fsync it, or leave the file at ``size`` and raise: a write is
    acknowledged only when every byte is on disk (a full disk may take part of it)."""
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, "the write log took no bytes")
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.ftruncate(fd, size)
        raise


def folded_through(snapshot: str | Path) -> int:
    """The last write-log seq a generation folded in when it was published (0: none recorded)."""
    return int(read_manifest(Path(snapshot)).get("write_log", {}).get("folded_through", 0))


def current_folded_through(index_dir: str | Path) -> int:
    """:func:`folded_through` of the index directory's current generation (0 when none)."""
    number = current_generation(index_dir)
    return 0 if number is None else folded_through(generation_path(Path(index_dir), number))


def generation_writes(index_dir: str | Path, generation: int) -> list[WriteEntry]:
    """The live writes generation ``generation`` folded in, from its directory or, once pruned,
    from the record the prune kept (none where neither is there)."""
    return _writes_in(generation_writes_file(Path(index_dir), generation))


def _writes_in(path: Path) -> list[WriteEntry]:
    if not path.is_file():
        return []
    with open(path, "rb") as fh:
        items = [parse_line(line, path, n) for n, line in enumerate(fh, 1) if line.strip()]
    return [e for e in items if isinstance(e, WriteEntry)]


def writes_for_switch(index_dir: str | Path, current: int, to: int) -> tuple[int, int]:
    """Make the log right for switching from generation ``current`` to ``to`` (a rollback, or a
    roll forward after one). Returns (writes put back, writes taken out).

    Generations form a tree: each was made on top of the one current then
    (:func:`~qa_search.storage.layout.lineage`), and holds the writes folded into it and into the
    generations below it. The writes that ``current``'s line holds and ``to``'s does not (those
    folded in since the two lines parted) go back at the head of the log, oldest first, so no
    acknowledged write is lost. Pending entries that ``to`` holds already leave the log: applied
    again on top, they would undo what ``to`` did after them, such as a moderator's delete.
    Call it holding the writer lock.
    """
    index_dir = Path(index_dir)
    target_line = lineage(index_dir, to)
    held_by_target = set(target_line)
    held_ids = {e.id for g in target_line for e in generation_writes(index_dir, g) if e.id is not None}

    def held(entry: WriteEntry) -> bool:
        return (entry.id is not None and entry.id in held_ids) or entry.restored_from in held_by_target

    parted: list[int] = []  # current's line down to (not including) the generation the lines share
    for g in lineage(index_dir, current):
        if g in held_by_target:
            break
        parted.append(g)
    restored: list[WriteEntry] = []
    seen: set[str] = set()
    for g in reversed(parted):
        for e in generation_writes(index_dir, g):
            if held(e) or (e.id is not None and e.id in seen):
                continue
            if e.id is not None:
                seen.add(e.id)
            # a write keeps the generation that first folded it in, through later rollbacks
            restored.append(e if e.restored_from is not None else replace(e, restored_from=g))
    log = WriteLog(index_dir)
    with log.locked():
        pending = log.read_all_strict()  # a damaged line stops the switch: nothing is lost
        doomed = {e.seq for e in pending if held(e)}
        # rewritten even when nothing changes: its header says which generation it now belongs to
        switch = {"from": current, "to": to, "restored": len(restored), "dropped": len(doomed)}
        log.restore(restored, to, drop=doomed, switch=switch)
    return len(restored), len(doomed)


class WriteLog:
    """One process's handle on an index directory's write log.

    It remembers how far it has read (``last_seq``), so :meth:`poll` returns only the entries
    other processes appended since, and :meth:`append` first hands back those it had not seen
    (the caller applies them before its own, keeping every process in log order).
    """

    def __init__(self, index_dir: str | Path, after: int = 0) -> None:
        self.index_dir = Path(index_dir)
        self.path = self.index_dir / LOG_NAME
        #: The highest seq read (or compacted away) so far. ``after``: the entries up to it are
        #: in the generation being served already (see :func:`folded_through`), so they are
        #: skipped, even in the moment between a publish and its compaction of the log.
        self.last_seq = after
        # the file read: (device, inode, the token its header carries); an inode number can come
        # back for a later file after two rewrites, the token cannot
        self._file_id: tuple | None = None
        self._offset = 0
        self._mtime = 0
        self._damage: tuple | None = None  # (position, error, file state) of a damaged line met

    # -- reading ------------------------------------------------------------------------

    @property
    def file(self) -> tuple | None:
        """Which log file this handle reads ((device, inode, header token); None before any)."""
        return self._file_id

    def _stat(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except FileNotFoundError:
            return None

    def changed(self) -> bool:
        """Whether the log may hold entries not yet polled (one ``stat``, no reading)."""
        st = self._stat()
        if st is None:
            return self._file_id is not None
        return (
            self._file_id is None
            or (st.st_dev, st.st_ino) != self._file_id[:2]
            or st.st_size != self._offset
            or st.st_mtime_ns != self._mtime
        )

    def _read(self, scratch: bool = False) -> tuple[list[WriteEntry], tuple, SnapshotError | None]:
        """What a poll would return, the read position after it and the error of a damaged
        line (reading stops before it), without moving this handle. ``scratch``: the log as it
        is, from its start (for whoever rewrites it), without what was compacted out of it."""
        if self._damage is not None:  # the same damaged file as last time: not read again
            st = self._stat()
            position, error, seen, line = self._damage
            here = (self._file_id, self._offset) == position[:2]
            if here and st is not None and (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == seen:
                # the same damaged bytes still there (a repair in place may keep size and mtime)
                with contextlib.suppress(OSError), open(self.path, "rb") as fh:
                    if os.pread(fh.fileno(), len(line), position[1]) == line:
                        return [], position, error
            self._damage = None
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed below; the fd's identity matters
        except FileNotFoundError:
            return [], (None, 0, self.last_seq, 0), None
        with fh:
            st = os.fstat(fh.fileno())
            file_id = (st.st_dev, st.st_ino, file_token(fh))
            offset = self._offset if file_id == self._file_id else 0  # else a new file (rewritten)
            fh.seek(offset)
            data = fh.read()
        complete = data.rfind(b"\n") + 1  # a line still being written is read next time
        last_seq, pos = self.last_seq, 0
        out: list[WriteEntry] = []
        for line in data[:complete].splitlines(keepends=True):
            if line.strip():
                try:
                    item = decode_line(line)
                except (ValueError, KeyError, TypeError) as exc:
                    with open(self.path, "rb") as again:  # only now: which line of the file it is
                        lineno = again.read(offset + pos).count(b"\n") + 1
                    error = damaged_line(self.path, lineno, exc)
                    position = (file_id, offset + pos, last_seq, st.st_mtime_ns)
                    if not out:  # remembered: until the file changes, every poll gives this
                        state = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                        self._damage = (position, error, state, line)
                    return out, position, error
                if isinstance(item, dict):
                    if not scratch:
                        out.extend(self._compacted_unread(item, last_seq))
                    last_seq = max(last_seq, int(item.get("compacted_through", 0)))
                elif item.seq > last_seq:
                    out.append(item)
                    last_seq = item.seq
            pos += len(line)
        return out, (file_id, offset + complete, last_seq, st.st_mtime_ns), None

    def _compacted_unread(self, header: dict, last_seq: int) -> list[WriteEntry]:
        """The entries publishes compacted out of the log (``header`` is the new log's) before
        this handle read them, from the generations that folded them in: a serving process
        applies them to the generation it serves while it loads the newest. Several publishes
        may have come and gone since this handle last read: the generations the header's was
        made on are read too, newest first, down to one that folded in nothing unread. None
        after a rollback's header: the writes it puts back are in its log, and a served
        generation must not get its target's."""
        through, generation = int(header.get("compacted_through", 0)), header.get("generation")
        if through <= last_seq or generation is None or "switch" in header:
            return []
        found: dict[int, WriteEntry] = {}
        for g in lineage(self.index_dir, int(generation)):
            for e in generation_writes(self.index_dir, g):
                if last_seq < e.seq <= through:
                    found.setdefault(e.seq, e)
            snap = generation_path(self.index_dir, g)
            # a generation's parent folded in only what it had itself (seqs only grow); a pruned
            # one's manifest is gone, and so, long since, are writes a running process missed
            if not (snap / MANIFEST).is_file() or folded_through(snap) <= last_seq:
                break
        return [found[seq] for seq in sorted(found)]

    def poll(self) -> list[WriteEntry]:
        """Entries appended since the last poll, in log order.

        A damaged line is never stepped over (that would lose the writes after it): the entries
        before it are returned, and the next poll raises :class:`SnapshotError` until the line
        is repaired; then reading goes on from it.
        """
        return self._poll()

    def _poll(self, scratch: bool = False) -> list[WriteEntry]:
        entries, position, error = self._read(scratch)
        if error is not None and not entries:
            raise error
        self._file_id, self._offset, self.last_seq, self._mtime = position
        return entries

    def peek(self) -> list[WriteEntry]:
        """The entries a :meth:`poll` would return now (up to a damaged line), without moving
        this handle: what a writer embeds before it takes a lock, so that little is left to
        embed once it holds one."""
        try:
            return self._read()[0]
        except OSError:
            return []

    def read_all(self) -> list[WriteEntry]:
        """Every entry in the log, up to a damaged line (resets this handle to read from the
        start)."""
        self._file_id, self._offset, self.last_seq, self._mtime = None, 0, 0, 0
        return self._poll(scratch=True)

    def read_all_strict(self) -> list[WriteEntry]:
        """Every entry in the log; :class:`SnapshotError` if a line is damaged. For whoever
        rewrites the log (a build, a rollback): what it leaves out would be lost."""
        return self.read_all() + self.poll()

    # -- writing ------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the log's exclusive lock (appends and compactions take it)."""
        make_dirs(self.index_dir, index_dir=True)
        with open(open_file(self.index_dir / LOCK_NAME, os.O_RDWR | os.O_APPEND), "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def append_upsert(
        self, threads: Iterable[Thread], write_id: str | None = None, *, unless_changed: Collection[str] = (),
        read_from: int | None = None,
    ) -> tuple[list[WriteEntry], WriteEntry | None]:
        """Durably log an upsert. Returns (entries appended by others and not yet seen, this one).
        ``write_id``: the write's id, where the caller chose it first (to keep its vectors under
        it, see writevectors.py); a new one otherwise. ``unless_changed``: thread ids; where an
        entry not yet seen upserts or deletes one of them, or (given ``read_from``, the
        generation the caller read them from) a generation published since changed one of
        them, nothing is logged and this one is None (see :meth:`_append`). Without it, it is
        never None."""
        entry = WriteEntry(0, UPSERT, threads=tuple(threads), id=write_id)
        return self._append(entry, unless_changed, read_from)

    def append_delete(
        self, ids: Iterable[str], *, unless_changed: Collection[str] = (), read_from: int | None = None
    ) -> tuple[list[WriteEntry], WriteEntry | None]:
        """Durably log a delete. Returns (entries appended by others and not yet seen, this one);
        ``unless_changed`` and ``read_from`` as :meth:`append_upsert` takes them."""
        return self._append(WriteEntry(0, DELETE, ids=tuple(ids)), unless_changed, read_from)

    def restore(
        self, restored: list[WriteEntry], generation: int, drop: Set[int] = frozenset(),
        switch: dict | None = None,
    ) -> None:
        """Rewrite the log as ``restored`` followed by its own entries (less the seqs in
        ``drop``), numbered on from the highest seq so far (so every process applies them, in
        this order), under a header recording ``switch``. Call with :meth:`locked` held."""
        every = self.read_all_strict()
        existing = [e for e in every if e.seq not in drop]
        top = self.last_seq
        header = log_header(top, generation, switch)
        records = [entry_record(e, top + i) for i, e in enumerate([*restored, *existing], 1)]
        self._rewrite(log_lines([header, *records]))
        writevectors.drop(self.index_dir, [e.id for e in every if e.seq in drop], [e.id for e in existing])

    def _rewrite(self, data: bytes) -> None:
        write_bytes_atomic(self.path, data)
        self.read_all()

    def _append(
        self, entry: WriteEntry, unless_changed: Collection[str] = (), read_from: int | None = None
    ) -> tuple[list[WriteEntry], WriteEntry | None]:
        """Log ``entry`` under the lock, after reading what others logged first (returned, for
        the caller to apply before its own). Where one of those touches a thread in
        ``unless_changed``, nothing is logged (None for this one): the caller read that thread
        before them and would write over their part of it. So too where the caller read from
        generation ``read_from`` and a publish since (a sync, an update, a build, a rollback:
        none of them logs the threads it changes) changed one of those threads
        (:func:`published_over`): replayed on the generation served, the write would undo that
        publish's change. The check and the append are one step under the lock, as a publish
        and its compaction of the log are, so no other process can log or publish between them
        (optimistic concurrency: a read-modify-write holds no lock while it reads, merges and
        embeds)."""
        with self.locked():
            # a damaged line refuses the write (its seq could not be known) and consumes nothing
            unseen, position, error = self._read()
            if error is not None:
                raise error
            self._file_id, self._offset, self.last_seq, self._mtime = position
            serving = serving_generation(self.index_dir)
            if unless_changed and (
                any(_touches(e, unless_changed) for e in unseen)
                or (read_from is not None and published_over(self.index_dir, serving, read_from,
                                                             unless_changed))
            ):
                return unseen, None
            mine = replace(entry, seq=self.last_seq + 1, generation=serving,
                           id=entry.id or uuid.uuid4().hex, at=now_iso())
            data = log_lines([entry_record(mine, mine.seq)])
            created = not self.path.exists()
            fd = open_file(self.path, os.O_RDWR | os.O_APPEND)
            try:
                size = os.fstat(fd).st_size
                if size > self._offset and self._file_id is not None:
                    # bytes after the last complete line: an append that died part way (a crash,
                    # a full disk) and so was never acknowledged; the next line must not join it
                    log.warning("%s: dropping %d bytes of an unfinished write", self.path,
                                size - self._offset)
                    os.ftruncate(fd, self._offset)
                    size = self._offset
                header = log_header(self.last_seq, mine.generation) if size == 0 else None
                if header is not None:  # a new log starts with a header naming it (see file_token)
                    data = log_lines([header]) + data
                _write_all(fd, data, size)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if created:
                fsync_path(self.index_dir)
            # this handle moves past what it wrote, so its next read starts after its own line
            token = header["header"]["file"] if header is not None else self._file_id[2]
            self._file_id, self._offset = (st.st_dev, st.st_ino, token), size + len(data)
            self._mtime = st.st_mtime_ns
            self.last_seq = mine.seq
        return unseen, mine

    def truncate_through(self, seq: int, generation: int) -> None:
        """Drop entries up to ``seq`` (now part of ``generation``). Call with :meth:`locked` held."""
        header = log_header(seq, generation)
        kept, kept_ids, done_ids = [], [], []
        with open(self.path, "rb") as src:
            for lineno, raw in enumerate(src, 1):
                if not raw.endswith(b"\n"):  # an unfinished append, never acknowledged
                    break
                item = parse_line(raw, self.path, lineno) if raw.strip() else None
                if isinstance(item, WriteEntry):
                    if item.seq > seq:
                        kept.append(raw)
                        kept_ids.append(item.id)
                    else:
                        done_ids.append(item.id)
        self._rewrite(log_lines([header]) + b"".join(kept))
        writevectors.drop(self.index_dir, done_ids, kept_ids)  # the generation holds their vectors


def _touches(entry: WriteEntry, ids: Collection[str]) -> bool:
    """Whether ``entry`` upserts or deletes one of the threads ``ids``."""
    return any(i in ids for i in entry.thread_ids)


def pending_entries(log: WriteLog, done: int) -> list[WriteEntry]:
    """The log's entries after ``done``, the last one the current generation folded in (a
    publish killed before it compacted the log leaves those in it); :class:`SnapshotError` if a
    line is damaged."""
    return [e for e in log.read_all_strict() if e.seq > done]

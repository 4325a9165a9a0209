"""One writer per index directory: an advisory lock on ``DIR/LOCK``.

The lock is ``fcntl.flock`` taken without blocking, so a second writer fails at once instead of
queueing behind a long build. The kernel releases it when its holder exits, however it exits
(even ``kill -9``), so a crashed writer never leaves a stale lock behind; the pid, host and
start time written into the file only serve to name the holder in the error message.

Readers (search, the service) take no lock: they only ever see complete generations.

The lock is reentrant within a process (a build takes it, and the publish inside the build takes
it again), but not shared between threads: use one writer thread per index. ``flock`` is not
reliable on network file systems; keep index directories on a local disk.

Writers take it through :func:`qa_search.storage.generations.writer_lock`, which also finishes a
rollback killed midway; this module only holds the ``flock``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qa_search.errors import IndexLockedError, SnapshotError
from qa_search.storage.permissions import make_dirs, open_file
from qa_search.storage.snapshot import MANIFEST

LOCK = "LOCK"

# realpath of an index directory -> [open file descriptor, nesting depth] for locks this process holds
_held: dict[str, list[int]] = {}


def read_holder(index_dir: str | Path) -> dict:
    """What the current (or last) holder wrote into the lock file; {} when unreadable."""
    try:
        data = json.loads((Path(index_dir) / LOCK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextmanager
def hold_writer_lock(index_dir: str | Path, command: str | None = None) -> Iterator[bool]:
    """Hold the index directory's writer lock for the ``with`` block; yields whether this is the
    outermost hold in this process (False when the process held it already).

    Creates ``index_dir`` if needed (and removes it again on exit if the block left it empty).
    Raises :class:`IndexLockedError`, naming the holder, when another process holds the lock.
    ``command`` is recorded for that message (default: this process's command line).
    """
    index_dir = Path(index_dir)
    key = os.path.realpath(index_dir)
    if key in _held:
        _held[key][1] += 1
        try:
            yield False
        finally:
            _held[key][1] -= 1
        return

    if (index_dir / MANIFEST).is_file():  # before anything (a lock file, a cache) is put into it
        raise SnapshotError(
            f"{index_dir} is a single snapshot, not an index directory: publish into another directory"
        )
    created = not index_dir.exists()
    make_dirs(index_dir, index_dir=True)
    path = index_dir / LOCK
    fd = open_file(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise IndexLockedError(str(index_dir), read_holder(index_dir)) from None
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command or " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
    _held[key] = [fd, 1]
    try:
        yield True
    finally:
        del _held[key]
        try:
            # a failed first build leaves no empty directory behind; the lock is still held
            # here, so nobody else can be working in it
            if created and [p.name for p in index_dir.iterdir()] == [LOCK]:
                path.unlink()
                index_dir.rmdir()
        except OSError:
            pass
        os.close(fd)  # releases the flock

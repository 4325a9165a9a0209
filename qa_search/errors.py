"""The exceptions qa_search raises. Each message names the thing at fault and how to fix it."""

from __future__ import annotations


class QASearchError(Exception):
    """Base class of every error raised on purpose by qa_search."""


class DumpFormatError(QASearchError):
    """A forum dump line that cannot be read as a thread.

    ``path`` and ``line`` (1-based) locate it; ``reason`` says what is wrong with it.
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}, line {line}: {reason}")


class ModelLoadError(QASearchError):
    """The embedding model could not be loaded."""


class SnapshotError(QASearchError):
    """A snapshot directory is missing, incomplete or damaged."""


class IncompatibleSnapshotError(SnapshotError):
    """A snapshot was written by another model or another format version than the one in use."""


class UnknownThreadError(QASearchError, KeyError):
    """A thread id that is not in the index."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        super().__init__(f"no thread with id {thread_id!r} in the index")

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]


class IndexLockedError(QASearchError):
    """Another process is writing to the same index directory.

    ``holder`` is what that process recorded in the lock file (pid, host, start time, command),
    or an empty dict when it could not be read.
    """

    def __init__(self, index_dir: str, holder: dict) -> None:
        self.index_dir = index_dir
        self.holder = holder
        if holder:
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started_at')}"
                f" ({holder.get('command') or 'unknown command'})"
            )
        else:
            who = "another process (its details are not readable)"
        super().__init__(
            f"index {index_dir} is locked by {who}: one writer at a time; wait for it to finish "
            "(a writer that died has released its lock, so a retry then succeeds)"
        )


class ReadOnlyIndexError(QASearchError):
    """A write to an index served read-only (a single snapshot, which no build updates)."""


class WriteConflictError(QASearchError):
    """A conditional write found a thread changed since it was read (another worker wrote it
    meanwhile): nothing was written; read the thread again and redo the change."""


class NoRerankerError(QASearchError):
    """A search asked to rerank on an index with no reranker attached."""

    def __init__(self) -> None:
        super().__init__(
            "this index has no reranker to rerank with; attach one with "
            "qa-search configure INDEX --reranker DIR, or search without rerank"
        )


class SettingsError(QASearchError, ValueError):
    """An index setting that is unknown, out of its range, or at odds with one the index keeps."""

"""qa_search: semantic search and duplicate-question finding for Q&A forums.

The public API is the names in ``__all__``; every other module is internal.
"""

from qa_search._version import __version__
from qa_search.embedding.loading import load_embedder
from qa_search.embedding.models import DEFAULT_MODEL, Embedder, SentenceTransformerEmbedder  # noqa: E402
from qa_search.errors import (  # noqa: E402
    DumpFormatError,
    IncompatibleSnapshotError,
    IndexLockedError,
    ModelLoadError,
    QASearchError,
    ReadOnlyIndexError,
    SnapshotError,
    UnknownThreadError,
)
from qa_search.index.config import IndexConfig  # noqa: E402
from qa_search.index.forum import ForumIndex  # noqa: E402
from qa_search.index.live import LiveIndex  # noqa: E402
from qa_search.index.results import DuplicateHit, SearchHit, UpsertStats  # noqa: E402
from qa_search.threads import Answer, Thread, read_dump, read_dumps, thread_from_dict, write_dump  # noqa: E402
from qa_search.tools.dedupe import (  # noqa: E402
    ClusterThread,
    DedupeResult,
    DuplicateCluster,
    ScoredPair,
    find_duplicate_clusters,
)
from qa_search.tools.tuning import TuneResult, tune  # noqa: E402

__all__ = [
    "DEFAULT_MODEL",
    "Answer",
    "ClusterThread",
    "DedupeResult",
    "DumpFormatError",
    "DuplicateCluster",
    "DuplicateHit",
    "Embedder",
    "ForumIndex",
    "IncompatibleSnapshotError",
    "IndexLockedError",
    "IndexConfig",
    "LiveIndex",
    "ModelLoadError",
    "QASearchError",
    "ReadOnlyIndexError",
    "ScoredPair",
    "SearchHit",
    "SentenceTransformerEmbedder",
    "SnapshotError",
    "Thread",
    "TuneResult",
    "UnknownThreadError",
    "UpsertStats",
    "__version__",
    "find_duplicate_clusters",
    "load_embedder",
    "read_dump",
    "read_dumps",
    "thread_from_dict",
    "tune",
    "write_dump",
]

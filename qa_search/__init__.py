"""qa_search: semantic search and duplicate-question finding for Q&A forums.

The public API is the names in ``__all__``; every other module is internal.
"""

__version__ = "0.1.0"

from .dedupe import ClusterThread, DedupeResult, DuplicateCluster, ScoredPair, find_duplicate_clusters  # noqa: E402
from .embedding import DEFAULT_MODEL, Embedder, SentenceTransformerEmbedder, load_embedder  # noqa: E402
from .errors import (  # noqa: E402
    DumpFormatError,
    IncompatibleSnapshotError,
    IndexLockedError,
    ModelLoadError,
    QASearchError,
    SnapshotError,
    UnknownThreadError,
)
from .index import DuplicateHit, ForumIndex, IndexConfig, SearchHit, UpsertStats  # noqa: E402
from .live import LiveIndex  # noqa: E402
from .threads import Answer, Thread, read_dump, read_dumps, thread_from_dict, write_dump  # noqa: E402
from .tuning import TuneResult, tune  # noqa: E402

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

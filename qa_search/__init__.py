"""qa_search: semantic search and duplicate-question finding for Q&A forums.

The public API is the names in ``__all__``; every other module is internal.
"""

__version__ = "0.1.0"

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
    "DumpFormatError",
    "DuplicateHit",
    "Embedder",
    "ForumIndex",
    "IncompatibleSnapshotError",
    "IndexLockedError",
    "IndexConfig",
    "LiveIndex",
    "ModelLoadError",
    "QASearchError",
    "SearchHit",
    "SentenceTransformerEmbedder",
    "SnapshotError",
    "Thread",
    "TuneResult",
    "UnknownThreadError",
    "UpsertStats",
    "__version__",
    "load_embedder",
    "read_dump",
    "read_dumps",
    "thread_from_dict",
    "tune",
    "write_dump",
]

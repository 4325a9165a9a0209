"""qa_search: semantic search and duplicate-question finding for Q&A forums.

The public API is the names in ``__all__``; every other module is internal. The ``qa-search``
command and the HTTP service use nothing else.
"""

from qa_search._version import __version__
from qa_search.dumps import read_dump, read_dumps, write_dump
from qa_search.embedding.loading import BACKENDS, load_embedder
from qa_search.embedding.models import DEFAULT_MODEL, Embedder, SentenceTransformerEmbedder
from qa_search.embedding.reranker import Reranker
from qa_search.errors import (
    DumpFormatError,
    IncompatibleSnapshotError,
    IndexLockedError,
    ModelLoadError,
    NoRerankerError,
    QASearchError,
    ReadOnlyIndexError,
    SettingsError,
    SnapshotError,
    UnknownThreadError,
    WriteConflictError,
)
from qa_search.index.config import IndexConfig
from qa_search.index.forum import ForumIndex
from qa_search.index.live import LiveIndex
from qa_search.index.results import DuplicateHit, DuplicateVerdicts, SearchHit, SearchPage, UpsertStats
from qa_search.index.search import SearchOptions
from qa_search.operations.admin import (
    Configured,
    IndexDescription,
    RollbackReport,
    build,
    check_servable,
    configure_index,
    describe_index,
    rollback_index,
)
from qa_search.operations.changes import calibrate_index, delete_threads, update_index
from qa_search.operations.lifecycle import DEFAULT_KEEP, BuildReport
from qa_search.operations.verify import verify_index
from qa_search.scoring.calibration import check_targets
from qa_search.threads import Answer, Thread, thread_from_dict
from qa_search.tools.csvreader import CSV_FIELDS
from qa_search.tools.dedupe import (
    DEFAULT_NEIGHBOURS,
    ClusterThread,
    DedupeResult,
    DuplicateCluster,
    ScoredPair,
    find_duplicate_clusters,
)
from qa_search.tools.evaluation import (
    evaluate_pairs,
    evaluate_queries,
    locate_unknown,
    read_pairs,
    read_queries,
)
from qa_search.tools.importers import FORMATS, check_inputs, detect_format, read_threads
from qa_search.tools.rerankertraining import (
    DEFAULT_RERANKER_LEARNING_RATE,
    RerankerTrainResult,
    train_reranker,
)
from qa_search.tools.stackexchange import (
    read_stackexchange_duplicates,
    stackexchange_question_ids,
    write_pairs,
)
from qa_search.tools.sync import SYNC_SCHEMAS, SyncReport, sync_index
from qa_search.tools.tuning import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LEARNING_RATE, TuneResult, tune
from qa_search.tools.tuningdata import DEFAULT_SEED
from qa_search.tools.tuningdata import read_pairs as read_tuning_pairs
from qa_search.tools.webhooks import (
    DISCOURSE_EVENTS,
    DiscourseEvents,
    WebhookChange,
    WebhookOutcome,
    discourse_change,
)

__all__ = [
    "__version__",
    # errors
    "DumpFormatError",
    "IncompatibleSnapshotError",
    "IndexLockedError",
    "ModelLoadError",
    "QASearchError",
    "NoRerankerError",
    "ReadOnlyIndexError",
    "SettingsError",
    "SnapshotError",
    "UnknownThreadError",
    "WriteConflictError",
    # threads and formats
    "CSV_FIELDS",
    "FORMATS",
    "Answer",
    "Thread",
    "check_inputs",
    "detect_format",
    "read_dump",
    "read_dumps",
    "read_stackexchange_duplicates",
    "stackexchange_question_ids",
    "read_threads",
    "thread_from_dict",
    "write_dump",
    "write_pairs",
    # embedding models
    "BACKENDS",
    "DEFAULT_MODEL",
    "Embedder",
    "Reranker",
    "SentenceTransformerEmbedder",
    "load_embedder",
    # the index
    "DuplicateHit",
    "DuplicateVerdicts",
    "ForumIndex",
    "IndexConfig",
    "LiveIndex",
    "SearchHit",
    "SearchOptions",
    "SearchPage",
    "UpsertStats",
    # operating an index directory
    "DEFAULT_KEEP",
    "BuildReport",
    "Configured",
    "IndexDescription",
    "RollbackReport",
    "build",
    "calibrate_index",
    "check_servable",
    "configure_index",
    "delete_threads",
    "describe_index",
    "rollback_index",
    "update_index",
    "verify_index",
    # keeping an index in step with a forum's database
    "SYNC_SCHEMAS",
    "SyncReport",
    "sync_index",
    # forum events (webhooks) as live writes
    "DISCOURSE_EVENTS",
    "DiscourseEvents",
    "WebhookChange",
    "WebhookOutcome",
    "discourse_change",
    # quality, duplicate clusters, tuning
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_NEIGHBOURS",
    "DEFAULT_RERANKER_LEARNING_RATE",
    "DEFAULT_SEED",
    "ClusterThread",
    "DedupeResult",
    "DuplicateCluster",
    "RerankerTrainResult",
    "ScoredPair",
    "TuneResult",
    "check_targets",
    "evaluate_pairs",
    "evaluate_queries",
    "find_duplicate_clusters",
    "locate_unknown",
    "read_pairs",
    "read_queries",
    "read_tuning_pairs",
    "train_reranker",
    "tune",
]

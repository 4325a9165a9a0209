"""The forum index: similar-thread search and duplicate detection over a forum's threads.

:class:`ForumIndex` is the one type callers hold. What it keeps in memory, and its writes, are
:class:`~qa_search.index.contents.IndexContents`; each of its other methods hands over to the
module that does the work: :mod:`.search`, :mod:`.duplicates` and :mod:`.persistence`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qa_search.embedding.models import Embedder
from qa_search.index import duplicates, persistence, search
from qa_search.index.contents import IndexContents
from qa_search.index.rerank import rerank_search
from qa_search.index.results import DuplicateHit, SearchHit
from qa_search.index.search import SearchOptions
from qa_search.scoring.calibration import Calibration

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11


class ForumIndex(IndexContents):
    """Similar-thread search and duplicate detection over a forum's threads.

    >>> index = ForumIndex(load_embedder())          # doctest: +SKIP
    >>> index.upsert(read_dump("threads.jsonl"))      # doctest: +SKIP
    >>> index.search("how do therapists handle mistakes?", k=5)  # doctest: +SKIP
    """

    # -- search -------------------------------------------------------------------------

    def search(
        self, text: str, k: int = 10, *, offset: int = 0, rerank: bool = False,
        **options: Unpack[SearchOptions],
    ) -> list[SearchHit]:
        """The k threads most similar to ``text``, best first, one hit per thread, after the
        first ``offset``; ``options`` (``tags``, ``category``, ``groups``, ``created_after``,
        ``created_before``, ``exclude_closed``, ``recency_half_life_days``, ``highlight``,
        ``min_relevance``, ``typing``: see :class:`.search.SearchOptions`) filter, boost and mark
        them.
        ``rerank``: the first hits in the attached reranker's order (see
        :func:`.rerank.rerank_search`)."""
        search.check_options(options, "search", rerank=True)
        return self.search_many([text], k, offset=offset, rerank=rerank, **options)[0]

    def search_many(
        self, texts: Sequence[str], k: int = 10, *, offset: int = 0, rerank: bool = False,
        **options: Unpack[SearchOptions],
    ) -> list[list[SearchHit]]:
        """:meth:`search` for several texts, embedded in one batch; a blank text finds nothing."""
        search.check_options(options, "search_many", rerank=True)  # before a missing reranker is reported
        if options.pop("typing", False):  # the text left is what is embedded, scored, cached and reranked
            viewer = search.viewer_groups(options.get("groups"))
            texts = [search.typed_text(self, t, viewer) for t in search.texts_list(texts, "search")]

        def run(n: int, start: int = 0) -> list[list[SearchHit]]:
            return search.search_many(self, texts, n, offset=start, **options)

        if rerank:
            return rerank_search(self, texts, k, offset, run)
        return run(k, offset)

    def score_threads(
        self, text: str, thread_ids: Sequence[str], groups: Iterable[str] | None = None
    ) -> list[float]:
        """The search score of each given thread for ``text``, in the order given, as a search
        by a caller in ``groups`` scores it (see :func:`.search.score_threads`)."""
        return search.score_threads(self, text, thread_ids, groups)

    def question_neighbours(
        self, k: int, *, batch: int = 4096, progress: Callable[[int, int], None] | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Each thread's k most similar other questions (see :func:`.search.question_neighbours`)."""
        return search.question_neighbours(self, k, batch=batch, progress=progress)

    # -- duplicates ---------------------------------------------------------------------

    def find_duplicates(
        self, text: str, *, threshold: float | None = None, k: int = 5, groups: Iterable[str] | None = None
    ) -> list[DuplicateHit]:
        """Threads whose question matches ``text`` at or above ``threshold`` (default: the
        config's ``duplicate_threshold``), best first, at most k; with ``groups``, only threads
        those groups may see."""
        return duplicates.find_duplicates_many(self, [text], threshold=threshold, k=k, groups=groups)[0]

    def find_duplicates_many(
        self,
        texts: Sequence[str],
        *,
        threshold: float | None = None,
        k: int = 5,
        groups: Iterable[str] | None = None,
    ) -> list[list[DuplicateHit]]:
        """:meth:`find_duplicates` for several texts (see :func:`.duplicates.find_duplicates_many`)."""
        return duplicates.find_duplicates_many(self, texts, threshold=threshold, k=k, groups=groups)

    def pair_features(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Signals of stored pairs (see :func:`.duplicates.pair_features`)."""
        return duplicates.pair_features(self, pairs)

    def pair_scores(self, pairs: Sequence[tuple[str, str]], *, rerank: bool = False) -> np.ndarray:
        """The duplicate scorer's score of stored pairs (see :func:`.duplicates.pair_scores`)."""
        return duplicates.pair_scores(self, pairs, rerank=rerank)

    def duplicate_cutoff(self, *, rerank: bool = False) -> tuple[float, str]:
        """The score at which a pair counts as a duplicate, and which scorer that is."""
        return duplicates.duplicate_cutoff(self, rerank=rerank)

    def calibrate(
        self, pairs: Sequence[tuple[str, str]], labels: Sequence[int], targets: dict[str, float] | None = None
    ) -> Calibration:
        """Fit the duplicate scorer on labelled stored pairs and use it from now on (see
        :func:`.duplicates.calibrate`)."""
        return duplicates.calibrate(self, pairs, labels, targets)

    # -- snapshots ----------------------------------------------------------------------

    def save(
        self,
        index_dir: str | Path,
        *,
        progress: Callable[[int, int], None] | None = None,
        extra_files: Mapping[str, bytes] | None = None,
        manifest_extra: Mapping[str, object] | None = None,
    ) -> Path:
        """Publish the index as a new snapshot generation of ``index_dir`` (see
        :func:`.persistence.save`); returns its path."""
        return persistence.save(
            self, index_dir, progress=progress, extra_files=extra_files, manifest_extra=manifest_extra
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        embedder: Embedder | None = None,
        *,
        verify: bool = True,
        threads: int | None = None,
    ) -> ForumIndex:
        """Load a snapshot or an index directory's current generation (see :func:`.persistence.load`)."""
        return persistence.load(cls, path, embedder, verify=verify, threads=threads)

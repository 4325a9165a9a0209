"""What the index returns: typed, frozen results of searches, duplicate checks and writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Highlights:
    """Where a hit's title and snippet hold the query's terms (stemmed matches included): sorted
    [start, end) character offsets (Python string indices) into :attr:`SearchHit.title` and
    :attr:`SearchHit.snippet`, for a front end to mark as text, without HTML."""

    title: tuple[tuple[int, int], ...] = ()
    snippet: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One thread found by :meth:`ForumIndex.search`.

    ``matched`` is ``"question"`` or ``"answer"``; for an answer, ``answer_id`` names it.
    ``score`` is the thread's score (cosine-based, higher is better).
    """

    thread_id: str
    score: float
    title: str
    matched: str
    answer_id: str | None
    snippet: str
    url: str | None = None
    #: Probability in [0, 1] that the thread answers the query (see
    #: :mod:`qa_search.scoring.relevance`); None where the index's model has no relevance model.
    relevance: float | None = None
    #: The query's terms in the title and snippet; None unless the search was asked for them.
    highlights: Highlights | None = None
    #: Whether the thread has at least one answer (what an "answered" badge shows).
    answered: bool = False

    def to_dict(self) -> dict:
        """The hit as JSON-ready data; ``highlights`` only when the search asked for them."""
        out = asdict(self)
        if self.highlights is None:
            del out["highlights"]
        return out


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of a search: its hits, and where the next page starts (None: this is the last)."""

    hits: tuple[SearchHit, ...]
    next_offset: int | None

    @classmethod
    def of(
        cls,
        hits: Sequence[SearchHit],
        offset: int,
        k: int,
        min_relevance: float | None = None,
        max_offset: int | None = None,
    ) -> SearchPage:
        """The page of ``k`` at ``offset`` from the uncut hits of a search for ``k + 1`` there.

        The ``min_relevance`` cut applies to the page alone, so a hit past the page never slips
        into it when one within is cut, and pages stay disjoint; a next page is offered only
        when the extra hit passes the cut too (it is never empty) and would start at or before
        ``max_offset``. A hit without a relevance is kept.
        """

        def kept(hit: SearchHit) -> bool:
            return min_relevance is None or hit.relevance is None or hit.relevance >= min_relevance

        more = len(hits) > k and kept(hits[k]) and (max_offset is None or offset + k <= max_offset)
        return cls(tuple(h for h in hits[:k] if kept(h)), offset + k if more else None)

    def to_dict(self) -> dict:
        return {"hits": [h.to_dict() for h in self.hits], "next_offset": self.next_offset}


@dataclass(frozen=True, slots=True)
class DuplicateHit:
    """A thread whose question is likely the same question as the one asked."""

    thread_id: str
    score: float
    title: str
    url: str | None = None
    #: Calibrated probability that this is a duplicate (the forum's own calibration, else the
    #: one shipped for the index's model); None where the index has neither.
    probability: float | None = None
    #: "duplicate" or "related" from the calibration's tiers; None where it has no calibration.
    tier: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DuplicateVerdicts:
    """A text's likely duplicates and which scorer judged them ("combined", "reranker",
    "calibrated" or "cosine"), both read from the same index: a server that swaps generations
    between the two reads could otherwise label one generation's verdicts with the next's
    scorer."""

    hits: tuple[DuplicateHit, ...]
    scorer: str


class PartRef(NamedTuple):
    """Where an embedded vector came from."""

    thread_id: str
    answer_id: str | None  # None for the question
    chunk: int
    text_hash: str


@dataclass(frozen=True, slots=True)
class UpsertStats:
    """What an upsert did: threads written, vectors embedded anew and vectors reused."""

    threads: int
    embedded: int
    reused: int

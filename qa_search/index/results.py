"""What the index returns: typed, frozen results of searches, duplicate checks and writes."""

from __future__ import annotations

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
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DuplicateHit:
    """A thread whose question is likely the same question as the one asked."""

    thread_id: str
    score: float
    title: str
    url: str | None = None
    #: Calibrated probability that this is a duplicate; None while the index is uncalibrated.
    probability: float | None = None
    #: "duplicate" or "related" from the calibrated tiers; None while the index is uncalibrated.
    tier: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


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

"""Index settings: what is embedded and how threads are scored, saved with every snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, SupportsFloat, SupportsIndex

import numpy as np

from qa_search.errors import SnapshotError
from qa_search.scoring.analyser import DEFAULT_LANGUAGE, check_language
from qa_search.scoring.ann import EXACT_SEARCH_LIMIT
from qa_search.scoring.fusion import LEXICAL_MODES


@dataclass(frozen=True)
class IndexConfig:
    """Settings that shape what is embedded and how threads are scored; saved in the snapshot."""

    #: Words per answer chunk; all-MiniLM-L6-v2 reads about 200 words (256 tokens).
    chunk_words: int = 160
    #: Words shared by consecutive chunks of one answer.
    chunk_overlap: int = 30
    #: A thread's answer match counts this much relative to a question match.
    answer_weight: float = 0.9
    #: Credit for a thread whose question and best answer both match: its dense score is
    #: ``max(q, a) + agreement_weight * min(q, a)``, q the question's cosine and a
    #: ``answer_weight`` x the best answer chunk's cosine (q alone without answers); 0 is the
    #: plain better-of-the-two. Measured on CounselChat (README, "Answer-aware scoring").
    agreement_weight: float = 0.25
    #: Weight of the lexical signal (per-query normalised BM25 of the question, in [0, 1]) added
    #: to a thread's cosine score; 0 turns the lexical index off. Chosen leave-one-data-set-out
    #: (docs/quality.md, "Lexical weight").
    lexical_weight: float = 0.5
    #: How the lexical weight applies to a query (:data:`qa_search.scoring.fusion.LEXICAL_MODES`):
    #: ``"fixed"``, the whole weight for every query, or ``"coverage"``, the weight times the
    #: share of the query its best lexical match covers
    #: (:func:`~qa_search.scoring.fusion.query_lexical_weight`). A snapshot that records none
    #: was built with ``"fixed"``.
    lexical_mode: str = "coverage"
    #: Cosine at or above which a question is reported as a likely duplicate.
    duplicate_threshold: float = 0.8
    #: Maximum characters of a hit's snippet.
    snippet_chars: int = 200
    #: Texts per batch when embedding.
    batch_size: int = 64
    #: A vector index this size or larger is saved as HNSW over 8-bit vectors, smaller as exact
    #: search (see :func:`qa_search.scoring.ann.choose_index_type`).
    exact_search_limit: int = EXACT_SEARCH_LIMIT
    #: Added to the score of a thread with an accepted answer. Off (0) by default: it did not
    #: help on the data measured (README, "Boosts").
    solved_boost: float = 0.0
    #: Up to this much is added for votes (the larger of the thread's score and its best
    #: answer's): ``vote_boost * min(1, log1p(votes) / log1p(vote_cap))``. Off (0) by default.
    vote_boost: float = 0.0
    #: Votes at which the vote boost is complete.
    vote_cap: int = 100
    #: The lexical analyser's language (Snowball stemmer and stop words; one of
    #: :data:`qa_search.scoring.analyser.LANGUAGES`): the forum's language. A snapshot that
    #: records none was built in English.
    lexical_language: str = DEFAULT_LANGUAGE

    def __post_init__(self) -> None:
        # each value is of its field's kind: whole numbers for the int fields, finite numbers
        # (stored as float, so that "0" and 0.0 are one setting) for the float fields
        for f in fields(self):
            value = getattr(self, f.name)
            if _KINDS[f.name] is str:
                if not isinstance(value, str):
                    raise ValueError(f"IndexConfig.{f.name} must be a string, got {value!r}")
            elif _KINDS[f.name] is float:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"IndexConfig.{f.name} must be a number, got {value!r}")
                if not np.isfinite(value):
                    raise ValueError(f"IndexConfig.{f.name} must be a finite number, got {value!r}")
                object.__setattr__(self, f.name, float(value))
            elif isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"IndexConfig.{f.name} must be a whole number, got {value!r}")
        # search is exact only while a thread's score never falls as a cosine or a boost rises
        for name in ("answer_weight", "agreement_weight", "lexical_weight", "solved_boost", "vote_boost"):
            if getattr(self, name) < 0:
                raise ValueError(f"IndexConfig.{name} must be at least 0, got {getattr(self, name)}")
        for name in ("chunk_words", "snippet_chars", "batch_size", "vote_cap"):
            if getattr(self, name) < 1:
                raise ValueError(f"IndexConfig.{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.chunk_overlap < self.chunk_words:
            raise ValueError(
                f"IndexConfig.chunk_overlap must be at least 0 and below chunk_words "
                f"({self.chunk_words}), got {self.chunk_overlap}"
            )
        if not -1 <= self.duplicate_threshold <= 1:
            raise ValueError(
                f"IndexConfig.duplicate_threshold is a cosine in [-1, 1], got {self.duplicate_threshold}"
            )
        if self.exact_search_limit < 0:
            raise ValueError(
                f"IndexConfig.exact_search_limit must be at least 0, got {self.exact_search_limit}"
            )
        if self.lexical_mode not in LEXICAL_MODES:
            raise ValueError(
                f"IndexConfig.lexical_mode must be one of {', '.join(LEXICAL_MODES)}, "
                f"got {self.lexical_mode!r}"
            )
        try:
            check_language(self.lexical_language)
        except ValueError as exc:
            raise ValueError(f"IndexConfig.lexical_language: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict) -> IndexConfig:
        """The settings a snapshot's manifest records; a setting it does not record takes the
        value snapshots were built with before the setting existed (:data:`RECORDED_BEFORE`),
        not today's default, so an old snapshot searches as it did when it was written."""
        known = {f.name for f in fields(cls)}
        return cls(**{**RECORDED_BEFORE, **{k: v for k, v in data.items() if k in known}})

    def updated(self, settings: Mapping[str, object]) -> IndexConfig:
        """A copy with ``settings`` changed; values may be strings (``"0.5"``), as a command line gives them.

        Raises ``ValueError`` naming an unknown setting (and the known ones) or a value that is
        not a number of the setting's kind or out of its range.
        """
        # each value has its setting's kind (``_KINDS``), which the name alone cannot tell mypy
        changes: dict[str, Any] = {}
        for name, raw in settings.items():
            if name not in _KINDS:
                raise ValueError(f"unknown setting {name!r}; the settings are: {', '.join(_KINDS)}")
            kind = _KINDS[name]
            if kind is str:
                if not isinstance(raw, str):
                    raise ValueError(f"setting {name} must be a string, got {raw!r}")
                changes[name] = raw.strip()
                continue
            try:
                if isinstance(raw, bool):
                    raise ValueError
                if kind is not float:
                    value: float = int(str(raw).strip())
                elif isinstance(raw, (str, bytes, SupportsFloat, SupportsIndex)):
                    value = float(raw)
                else:  # what float() would refuse anyway
                    raise TypeError
            except (TypeError, ValueError):
                noun = "a number" if kind is float else "a whole number"
                raise ValueError(f"setting {name} must be {noun}, got {raw!r}") from None
            if kind is float and not np.isfinite(value):
                raise ValueError(f"setting {name} must be a finite number, got {raw!r}")
            changes[name] = value
        return replace(self, **changes)

    def changed(self) -> dict[str, object]:
        """The settings that differ from the defaults."""
        default = IndexConfig()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }


#: Settings whose default changed, or that were added after snapshots without them were
#: written: the value such a snapshot was built and searched with.
RECORDED_BEFORE: dict[str, object] = {"lexical_mode": "fixed", "lexical_weight": 1.0}


#: Each setting's kind, from its declaration (not from its current value: 0 is a float setting's
#: value too).
_KINDS: dict[str, type] = {
    f.name: {"int": int, "float": float, "str": str}[str(f.type)] for f in fields(IndexConfig)
}


def config_of(snapshot: str | Path, manifest: Mapping) -> IndexConfig:
    """The settings recorded in a snapshot's manifest; :class:`SnapshotError` if this version
    refuses them (a value out of its range)."""
    try:
        return IndexConfig.from_dict(manifest.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"snapshot {snapshot} records settings this version refuses: {exc}") from exc


#: Settings that decide what is embedded or how vectors are stored: changing one means a rebuild
#: (``qa-search build --set``), not :meth:`ForumIndex.reconfigure`.
EMBEDDING_SETTINGS = frozenset({"chunk_words", "chunk_overlap", "exact_search_limit"})


def check_scoring_settings(settings: Mapping[str, object]) -> None:
    """Raise ``ValueError`` if ``settings`` name one of :data:`EMBEDDING_SETTINGS`, which a built
    index cannot change in place."""
    refused = ", ".join(sorted(EMBEDDING_SETTINGS & settings.keys()))
    if refused:
        raise ValueError(
            f"cannot change {refused} on a built index: {refused} can only change with a new build "
            "(what is embedded and how the vectors are stored depend on it)"
        )

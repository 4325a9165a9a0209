"""The forum index: threads, their embedded parts, two vector indexes, search and duplicates.

Questions and answer chunks live in separate vector indexes, so a duplicate check only ever
compares questions with questions, and a search can weigh the two kinds differently. Every
embedded part has a stable int64 id that maps back to (thread, answer, chunk); replacing or
deleting a thread removes its ids from the vector indexes at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from qa_search._version import __version__
from qa_search.embedding.loading import load_recorded_embedder
from qa_search.embedding.models import (
    PROBE_MIN_COSINE,
    Embedder,
    model_fingerprint,
    probe_vectors,
    same_model,
)
from qa_search.errors import IncompatibleSnapshotError, SnapshotError, UnknownThreadError
from qa_search.index.parts import ANSWER, QUESTION, Part, chunk_words, thread_parts
from qa_search.scoring.ann import EXACT_SEARCH_LIMIT, VectorIndex, choose_index_type
from qa_search.scoring.calibration import Calibration, fit_calibration, pair_groups
from qa_search.scoring.fusion import (
    make_snippet,
    thread_boost,
    thread_dense_score,
    top_indices,
    top_threads,
    unseen_bound,
)
from qa_search.scoring.lexical import LexicalIndex, tokenize
from qa_search.scoring.pairs import (
    FEATURES,
    RANK_DEPTH,
    best_other,
    feature_rows,
    rank_feature,
    text_features,
)
from qa_search.storage.generations import publish, resolve_snapshot
from qa_search.storage.snapshot import read_manifest, verify_files
from qa_search.threads import Thread, checked_thread, thread_from_dict

log = logging.getLogger(__name__)


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
    #: to a thread's cosine score; 0 turns the lexical index off. Tuned on dev data (README,
    #: "Quality").
    lexical_weight: float = 1.0
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

    def __post_init__(self) -> None:
        # each value is of its field's kind: whole numbers for the int fields, finite numbers
        # (stored as float, so that "0" and 0.0 are one setting) for the float fields
        for f in fields(self):
            value = getattr(self, f.name)
            if _KINDS[f.name] is float:
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

    @classmethod
    def from_dict(cls, data: dict) -> IndexConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def updated(self, settings: Mapping[str, object]) -> IndexConfig:
        """A copy with ``settings`` changed; values may be strings (``"0.5"``), as a command line gives them.

        Raises ``ValueError`` naming an unknown setting (and the known ones) or a value that is
        not a number of the setting's kind or out of its range.
        """
        changes: dict[str, object] = {}
        for name, raw in settings.items():
            if name not in _KINDS:
                raise ValueError(f"unknown setting {name!r}; the settings are: {', '.join(_KINDS)}")
            kind = _KINDS[name]
            try:
                if isinstance(raw, bool):
                    raise ValueError
                value = kind(raw) if kind is float else int(str(raw).strip())
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


#: Each setting's kind, from its declaration (not from its current value: 0 is a float setting's
#: value too).
_KINDS: dict[str, type] = {f.name: {"int": int, "float": float}[str(f.type)] for f in fields(IndexConfig)}


def stored_calibration(snapshot: Path, manifest: Mapping) -> Calibration | None:
    """The duplicate calibration a snapshot holds (None without one); ``ValueError`` for one
    made by another version (other signals)."""
    if "calibration.json" not in manifest.get("files", {}):
        return None
    return Calibration.from_dict(json.loads((snapshot / "calibration.json").read_text(encoding="utf-8")))


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


def as_str_list(items: Iterable[str]) -> list[str]:
    """``items`` (ids, tags) as a list, where a single string is one item, not its characters."""
    return [items] if isinstance(items, str) else list(items)


def _thread_filter(tags: Iterable[str] | None, category: str | None):
    """A predicate on threads for the given filters, or None when there is nothing to filter.
    A single string is one tag (not its letters); empty tags and an empty category filter
    nothing (what a form sends for its blank fields); values are trimmed, as stored ones are."""
    wanted = frozenset(t.strip() for t in as_str_list(tags or ()) if t.strip())
    category = category.strip() if category else None
    if not wanted and not category:
        return None

    def keep(thread: Thread) -> bool:
        if category and thread.category != category:
            return False
        return not wanted or not wanted.isdisjoint(thread.tags)

    return keep


def _texts_list(texts: Sequence[str], method: str) -> list[str]:
    if isinstance(texts, str):  # its characters would each be searched for
        raise TypeError(f"{method}_many takes a list of texts; for one text use {method}(text)")
    return list(texts)


def _skip_blank(texts: Sequence[str], run: Callable[[list[str]], list[list]]) -> list[list]:
    """``run`` over the texts that are not blank; a blank text's result is an empty list."""
    todo = [i for i, t in enumerate(texts) if t.strip()]
    out: list[list] = [[] for _ in texts]
    for i, result in zip(todo, run([texts[i] for i in todo]) if todo else [], strict=True):
        out[i] = result
    return out


def _probe_min_cosine(embedder: Embedder) -> float:
    return float(getattr(embedder, "probe_min_cosine", PROBE_MIN_COSINE))


def matches_recorded_model(model: Mapping, embedder: Embedder, probe: np.ndarray) -> bool:
    """Whether ``embedder``, whose probe vectors are ``probe``, is the model a manifest records
    (``model``): its probe vectors agree within :func:`probe_tolerance` (another dimension never
    does)."""
    return same_model(np.asarray(model["probe"], np.float32), probe, probe_tolerance(model, embedder))


def probe_tolerance(model: Mapping, embedder: Embedder) -> float:
    """The least probe cosine at which ``embedder`` counts as the model a manifest records.

    The encoder the index was built with gives the recorded probe almost exactly, so it is held
    to :data:`~qa_search.embedding.models.PROBE_MIN_COSINE` (a model directory whose weights changed, a
    lightly fine-tuned copy, fails it). Only another encoder of the model (int8 against fp32)
    gets the looser tolerance either side declares."""
    recorded = model.get("backend")
    if recorded is not None and recorded == getattr(embedder, "backend", None):
        return PROBE_MIN_COSINE
    return min(_probe_min_cosine(embedder), float(model.get("probe_min_cosine", PROBE_MIN_COSINE)))


class ForumIndex:
    """Similar-thread search and duplicate detection over a forum's threads.

    >>> index = ForumIndex(load_embedder())          # doctest: +SKIP
    >>> index.upsert(read_dump("threads.jsonl"))      # doctest: +SKIP
    >>> index.search("how do therapists handle mistakes?", k=5)  # doctest: +SKIP
    """

    def __init__(self, embedder: Embedder, config: IndexConfig | None = None) -> None:
        self.embedder = embedder
        #: Embeds query texts (search, duplicates); may be a cache around ``embedder``.
        self.query_embedder: Embedder = embedder
        self.config = config or IndexConfig()
        self._probe = probe_vectors(embedder)
        self._threads: dict[str, Thread] = {}
        self._parts: dict[int, PartRef] = {}
        self._thread_parts: dict[str, list[int]] = {}
        self._questions = VectorIndex(embedder.dimension)
        self._answers = VectorIndex(embedder.dimension)
        self._next_id = 1
        self._lexical: LexicalIndex | None = None  # built on first use after every change
        self._max_boost: float | None = None  # a bound on thread boosts, see _boost_bound
        #: The fitted duplicate scorer (see :meth:`calibrate`); None while uncalibrated.
        self.calibration: Calibration | None = None

    def reconfigure(self, settings: Mapping[str, object]) -> IndexConfig:
        """Change scoring settings in place (see :meth:`IndexConfig.updated`); returns the new config.

        Only settings that leave the vectors as they are can change here; one of
        :data:`EMBEDDING_SETTINGS` raises ``ValueError`` (build the index again with it instead).
        The change is published with the next :meth:`save`.
        """
        check_scoring_settings(settings)
        self.config = self.config.updated(settings)
        self._max_boost = None  # the boosts may have changed
        return self.config

    # -- contents -----------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of threads."""
        return len(self._threads)

    def __contains__(self, thread_id: object) -> bool:
        return thread_id in self._threads

    def get(self, thread_id: str) -> Thread:
        """The stored thread; raises :class:`UnknownThreadError` when absent."""
        try:
            return self._threads[thread_id]
        except KeyError:
            raise UnknownThreadError(thread_id) from None

    def threads(self) -> list[Thread]:
        """All threads, in insertion order: a list of its own, so the index may change while
        the caller goes through it."""
        return list(self._threads.values())

    @property
    def counts(self) -> dict[str, int]:
        return {
            "threads": len(self._threads),
            "answers": sum(len(t.answers) for t in self._threads.values()),
            "question_vectors": len(self._questions),
            "answer_vectors": len(self._answers),
        }

    @property
    def model_fingerprint(self) -> str:
        return model_fingerprint(self._probe)

    # -- writes -------------------------------------------------------------------------

    def _plan(self, threads: Iterable[Thread]) -> tuple[dict[str, Thread], list[Part], np.ndarray, list[int]]:
        """What an upsert of ``threads`` involves: the threads by id (a later copy of an id wins),
        their parts, a (parts, d) array holding the reusable vectors, and the rows still to embed."""
        batch: dict[str, Thread] = {}
        for t in [threads] if isinstance(threads, Thread) else threads:
            t = checked_thread(t)  # what is indexed must be what a saved snapshot reloads
            batch[t.id] = t
        cfg = self.config
        new_parts: list[Part] = []
        for t in batch.values():
            new_parts.extend(thread_parts(t, cfg.chunk_words, cfg.chunk_overlap))
        reusable = self._reusable_vectors(batch.keys())
        vectors = np.zeros((len(new_parts), self.embedder.dimension), np.float32)
        to_embed = []
        for i, part in enumerate(new_parts):
            vec = reusable.get((part.kind, part.text_hash))
            if vec is None:
                to_embed.append(i)
            else:
                vectors[i] = vec
        return batch, new_parts, vectors, to_embed

    def pending_texts(self, threads: Iterable[Thread]) -> list[str]:
        """The distinct texts :meth:`upsert` would embed for ``threads`` (unchanged parts keep
        their vectors). Embed them elsewhere (outside a lock, on a cluster) and hand the result to
        ``upsert(threads, vectors=...)``."""
        _, parts, _, to_embed = self._plan(threads)
        return list(dict.fromkeys(parts[i].text for i in to_embed))

    def upsert(
        self,
        threads: Iterable[Thread],
        *,
        vectors: Mapping[str, np.ndarray] | None = None,
        progress=None,
    ) -> UpsertStats:
        """Add threads, or replace every part of threads whose id is already indexed.

        A part whose text is unchanged keeps its vector (no re-embedding). ``vectors`` maps texts
        to embeddings made beforehand ((d,) float32, L2-normalised, by this index's model; see
        :meth:`pending_texts`); other new texts go through the embedder. ``progress``, if given,
        is called as ``progress(done, total)`` with the texts embedded so far after each batch.
        ``UpsertStats.embedded`` counts new embeddings, whether made here or passed in. A single
        :class:`Thread` may be passed as it is.
        """
        batch, new_parts, vecs, to_embed = self._plan(threads)
        if not batch:
            return UpsertStats(0, 0, 0)
        model_rows = to_embed
        if vectors:
            model_rows = []
            for i in to_embed:
                given = vectors.get(new_parts[i].text)
                if given is None:
                    model_rows.append(i)
                else:
                    vecs[i] = given
        bs = self.config.batch_size
        # batches of similar length pad little: the encoder's cost follows the longest text
        model_rows.sort(key=lambda i: len(new_parts[i].text))
        for start in range(0, len(model_rows), bs):
            rows = model_rows[start : start + bs]
            vecs[rows] = self.embedder.encode([new_parts[i].text for i in rows], batch_size=bs)
            if progress is not None:
                progress(start + len(rows), len(model_rows))

        # embedding is the slow, failure-prone step: the index changes only after it succeeded
        self._remove_parts(batch.keys())
        ids = np.arange(self._next_id, self._next_id + len(new_parts), dtype=np.int64)
        self._next_id += len(new_parts)
        for pid, part in zip(ids.tolist(), new_parts, strict=True):
            self._parts[pid] = PartRef(part.thread_id, part.answer_id, part.chunk, part.text_hash)
            self._thread_parts.setdefault(part.thread_id, []).append(pid)
        is_q = np.array([p.kind == QUESTION for p in new_parts])
        self._questions.add(ids[is_q], vecs[is_q])
        self._answers.add(ids[~is_q], vecs[~is_q])
        self._threads.update(batch)
        self._lexical = None
        if self._max_boost is not None:
            # an upper bound suffices: raised by new threads, never lowered (no full pass per write)
            self._max_boost = max(self._max_boost, *(self._boost(tid) for tid in batch))
        return UpsertStats(len(batch), len(to_embed), len(new_parts) - len(to_embed))

    def delete(self, thread_ids: Iterable[str]) -> int:
        """Remove threads and all their vectors; returns how many of the ids were present.
        A single string is one id (``delete("12")`` never removes threads "1" and "2")."""
        present = [tid for tid in dict.fromkeys(as_str_list(thread_ids)) if tid in self._threads]
        self._remove_parts(present)
        for tid in present:
            del self._threads[tid]
        if present:
            self._lexical = None
        return len(present)

    def _reusable_vectors(self, thread_ids: Iterable[str]) -> dict[tuple[str, str], np.ndarray]:
        out = {}
        for tid in thread_ids:
            for pid in self._thread_parts.get(tid, ()):
                ref = self._parts[pid]
                if ref.answer_id is None:
                    out[(QUESTION, ref.text_hash)] = self._questions.reconstruct(pid)
                else:
                    out[(ANSWER, ref.text_hash)] = self._answers.reconstruct(pid)
        return out

    def _remove_parts(self, thread_ids: Iterable[str]) -> None:
        q_ids, a_ids = [], []
        for tid in thread_ids:
            for pid in self._thread_parts.pop(tid, ()):
                ref = self._parts.pop(pid)
                (q_ids if ref.answer_id is None else a_ids).append(pid)
        self._questions.remove(np.array(q_ids, np.int64))
        self._answers.remove(np.array(a_ids, np.int64))

    # -- reads --------------------------------------------------------------------------

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        tags: Iterable[str] | None = None,
        category: str | None = None,
    ) -> list[SearchHit]:
        """The k threads most similar to ``text``, best first, one hit per thread.

        ``tags`` keeps threads having at least one of these tags (a single string is one tag);
        ``category`` keeps threads of that category; empty values filter nothing. Filtering is
        exact: the search fetches deeper until k matching threads are certain (or none are
        left), so a filter never costs recall.
        """
        return self.search_many([text], k, tags=tags, category=category)[0]

    def search_many(
        self,
        texts: Sequence[str],
        k: int = 10,
        *,
        tags: Iterable[str] | None = None,
        category: str | None = None,
    ) -> list[list[SearchHit]]:
        """:meth:`search` for several texts, embedded in one batch. A blank text (empty or
        only whitespace) finds nothing: its list is empty, and it is not embedded."""
        texts = _texts_list(texts, "search")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        keep = _thread_filter(tags, category)

        def run(batch: list[str]) -> list[list[SearchHit]]:
            queries = self.query_embedder.encode(batch, batch_size=self.config.batch_size)
            return [self._search_exact(t, q, k, keep) for t, q in zip(batch, queries, strict=True)]

        return _skip_blank(texts, run)

    def lexical_index(self) -> LexicalIndex:
        """The BM25 index over the threads' questions, (re)built here if threads changed."""
        if self._lexical is None or len(self._lexical) != len(self._threads):
            tids = list(self._threads)
            self._lexical = LexicalIndex.build(tids, [self._threads[t].question_text for t in tids])
        return self._lexical

    def question_neighbours(
        self, k: int, *, batch: int = 4096, progress=None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Each thread's k most similar other questions, by the question index's own batched
        search (approximate on HNSW): the thread ids (n,), cosines (n, k) float32 best first and
        neighbour rows (n, k) int64 into those ids (-1 where fewer than k others exist).
        ``progress(done, n)`` is called after each batch of questions."""
        pids, vecs = self._questions.vectors()
        tids = [self._parts[p].thread_id for p in pids.tolist()]
        n = len(tids)
        scores, rows = np.zeros((n, k), np.float32), np.full((n, k), -1, np.int64)
        if n == 0 or k < 1:
            return tids, scores, rows
        row_of = np.full(self._next_id, -1, np.int64)
        row_of[pids] = np.arange(n)
        fetch = min(k + 1, n)  # one more: a question usually finds itself first
        for start in range(0, n, batch):
            s, ids = self._questions.search(vecs[start : start + batch], fetch)
            r = np.where(ids >= 0, row_of[np.maximum(ids, 0)], -1)
            for i in range(len(r)):
                keep = (r[i] >= 0) & (r[i] != start + i)
                got = r[i][keep][:k]
                rows[start + i, : len(got)] = got
                scores[start + i, : len(got)] = s[i][keep][:k]
            if progress is not None:
                progress(min(start + batch, n), n)
        return tids, scores, rows

    def _dense_score(self, thread_id: str, query: np.ndarray) -> tuple[float, int]:
        """A thread's exact dense score (:func:`retrieval.thread_dense_score`) and the part that
        matched: the question, or the best answer chunk when its weighted cosine is higher."""
        q, q_pid, a, a_pid = -np.inf, -1, None, -1
        for pid in self._thread_parts[thread_id]:
            if self._parts[pid].answer_id is None:
                q, q_pid = float(self._questions.reconstruct(pid) @ query), pid
            else:
                s = float(self._answers.reconstruct(pid) @ query)
                if a is None or s > a:
                    a, a_pid = s, pid
        cfg = self.config
        score = thread_dense_score(q, a, cfg.answer_weight, cfg.agreement_weight)
        return score, (a_pid if a is not None and cfg.answer_weight * a > q else q_pid)

    def _boost(self, thread_id: str) -> float:
        """The thread's solved and vote boost (0 unless the config turns boosts on)."""
        cfg = self.config
        if not (cfg.solved_boost or cfg.vote_boost):
            return 0.0
        t = self._threads[thread_id]
        votes = max([t.score, *(a.score for a in t.answers)])
        solved = any(a.accepted for a in t.answers)
        return thread_boost(solved, votes, cfg.solved_boost, cfg.vote_boost, cfg.vote_cap)

    def _boost_bound(self) -> float:
        """At least the largest boost of any thread: what an unseen thread might add to its dense
        score. Found once, then raised by upserts and left as it is by deletes (still a bound)."""
        if not (self.config.solved_boost or self.config.vote_boost):
            return 0.0
        if self._max_boost is None:
            self._max_boost = max((self._boost(t) for t in self._threads), default=0.0)
        return self._max_boost

    def score_threads(self, text: str, thread_ids: Sequence[str]) -> list[float]:
        """The search score of each given thread for ``text`` (what :meth:`search` would rank
        them by), in the order given. For reranking a fixed candidate list."""
        query = self.query_embedder.encode([text], batch_size=self.config.batch_size)[0]
        lw = self.config.lexical_weight
        lex = self.lexical_index().scores(text) if lw > 0 else None
        out = []
        for tid in thread_ids:
            self.get(tid)
            s, _ = self._dense_score(tid, query)
            s += self._boost(tid)
            if lex is not None:
                s += lw * float(lex[self._lexical.position[tid]])
            out.append(s)
        return out

    def _search_exact(self, text: str, query: np.ndarray, k: int, keep=None) -> list[SearchHit]:
        """The k best threads by dense score + boost (+ weighted lexical score when
        ``lexical_weight`` > 0), exact: candidates come from the question, answer (and lexical)
        lists, each scored exactly, and the lists are fetched deeper until no thread outside
        them can beat the k-th (each signal is bounded by its list's last fetched score, the
        boost by the largest boost of any thread)."""
        cfg = self.config
        w, c, lw = cfg.answer_weight, cfg.agreement_weight, cfg.lexical_weight
        lexical = self.lexical_index() if lw > 0 else None
        if lexical is not None:
            lex = lexical.scores(text)
        boost_bound = self._boost_bound()
        nq, na = len(self._questions), len(self._answers)
        fetch = max(2 * k, 16)
        q1 = query[None, :]
        exact: dict[str, tuple[float, int]] = {}
        while True:
            qs, qi = self._questions.search(q1, min(fetch, nq))
            as_, ai = self._answers.search(q1, min(fetch, na))
            qs, qi, as_, ai = qs[0], qi[0], as_[0], ai[0]
            cands = {self._parts[p].thread_id for p in (*qi.tolist(), *ai.tolist()) if p >= 0}
            if lexical is not None:
                top_lex = top_indices(lex, min(fetch, len(lex)))
                cands.update(lexical.doc_ids[i] for i in top_lex.tolist())
            for tid in cands:
                if tid in exact or (keep is not None and not keep(self._threads[tid])):
                    continue
                score, pid = self._dense_score(tid, query)
                score += self._boost(tid)
                if lexical is not None:
                    score += lw * float(lex[lexical.position[tid]])
                exact[tid] = (score, pid)
            ranked = top_threads(exact, k)
            # every thread has a question (and a lexical entry): an exhausted list means all
            # threads were seen and scored exactly
            if fetch >= nq or (lexical is not None and fetch >= len(lex)):
                break
            bound = unseen_bound(float(qs[-1]), float(as_[-1]) if fetch < na else None, w, c)
            bound += boost_bound
            if lexical is not None:
                bound += lw * float(lex[top_lex[-1]])
            if len(ranked) == k and ranked[-1][1] >= bound:
                break
            fetch *= 4
        return [self._hit(tid, score, pid) for tid, score, pid in ranked]

    def _hit(self, thread_id: str, score: float, part_id: int) -> SearchHit:
        thread = self._threads[thread_id]
        ref = self._parts[part_id]
        n = self.config.snippet_chars
        if ref.answer_id is None:
            matched, snippet = QUESTION, make_snippet(thread.body or thread.title, n)
        else:
            answer = next(a for a in thread.answers if a.id == ref.answer_id)
            chunk = chunk_words(answer.body, self.config.chunk_words, self.config.chunk_overlap)[ref.chunk]
            matched, snippet = ANSWER, make_snippet(chunk, n)
        return SearchHit(
            thread_id, round(float(score), 6), thread.title, matched, ref.answer_id, snippet, thread.url
        )

    def find_duplicates(self, text: str, *, threshold: float | None = None, k: int = 5) -> list[DuplicateHit]:
        """Threads whose question matches ``text`` at or above ``threshold`` (default: the
        config's ``duplicate_threshold``), best first, at most k."""
        return self.find_duplicates_many([text], threshold=threshold, k=k)[0]

    def find_duplicates_many(
        self, texts: Sequence[str], *, threshold: float | None = None, k: int = 5
    ) -> list[list[DuplicateHit]]:
        """:meth:`find_duplicates` for several texts, embedded in one batch.

        Uncalibrated, a hit is a question whose cosine reaches ``threshold`` (default: the
        config's ``duplicate_threshold``). Calibrated, candidates are ranked by probability and
        carry it with their tier; without an explicit ``threshold`` a hit must reach at least
        the lowest tier, with one it must reach that raw cosine. A blank text finds nothing.
        """
        texts = _texts_list(texts, "find_duplicates")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return _skip_blank(texts, lambda batch: self._find_duplicates(batch, threshold, k))

    def _find_duplicates(self, texts: list[str], threshold: float | None, k: int) -> list[list[DuplicateHit]]:
        cal = self.calibration
        limit = self.config.duplicate_threshold if threshold is None and cal is None else threshold
        queries = self.query_embedder.encode(texts, batch_size=self.config.batch_size)
        # calibrated, the scorer looks at each candidate's place among the nearest questions
        depth = k if cal is None else max(4 * k, RANK_DEPTH + 1)
        scores, ids = self._questions.search(queries, min(depth, max(len(self._questions), 1)))
        out = []
        for text, row_s, row_i in zip(texts, scores, ids, strict=True):
            near = [
                (s, self._parts[pid].thread_id)
                for s, pid in zip(row_s.tolist(), row_i.tolist(), strict=True)
                if pid >= 0
            ]
            if cal is None:
                hits = [self._duplicate_hit(tid, s) for s, tid in near if limit is None or s >= limit]
            else:
                near_scores = [s for s, _ in near]
                keep = [i for i, (s, _) in enumerate(near) if limit is None or s >= limit]
                x = self._pair_features(
                    [text] * len(keep),
                    [near[i][1] for i in keep],
                    np.array([near[i][0] for i in keep]),
                    np.array([best_other(near_scores, i) for i in keep]),
                    np.array([rank_feature(i) for i in keep]),
                )
                probs = cal.probability(x) if keep else []
                hits = [
                    self._duplicate_hit(near[i][1], near[i][0], float(p), cal.tier(float(p)))
                    for i, p in zip(keep, list(probs), strict=True)
                ]
                hits = [h for h in hits if threshold is not None or h.tier is not None]
                hits.sort(key=lambda h: (-h.probability, h.thread_id))
            out.append(hits[:k])
        return out

    def _duplicate_hit(self, thread_id: str, score: float, prob: float | None = None, tier=None):
        t = self._threads[thread_id]
        p = None if prob is None else round(prob, 6)
        return DuplicateHit(t.id, round(float(score), 6), t.title, t.url, p, tier)

    # -- duplicate scoring and calibration -----------------------------------------------

    def _question_vector(self, thread_id: str) -> np.ndarray:
        pid = next(p for p in self._thread_parts[thread_id] if self._parts[p].answer_id is None)
        return self._questions.reconstruct(pid)

    def _pair_features(
        self,
        texts: Sequence[str],
        thread_ids: Sequence[str],
        cosine: np.ndarray,
        best_other_cosine: np.ndarray,
        rank: np.ndarray,
    ) -> np.ndarray:
        """Signals (see pairfeatures.FEATURES) of (new question text, stored thread) pairs, from
        the dense neighbourhood measured by the caller."""
        if not len(texts):
            return np.zeros((0, len(FEATURES)))
        lexical_index = self.lexical_index()
        others = [self._threads[tid].question_text for tid in thread_ids]
        distinct = list(dict.fromkeys([*texts, *others]))
        tokens = dict(zip(distinct, tokenize(distinct), strict=True))
        lexical = lexical_index.score_pairs(texts, thread_ids, tokens)
        idf = lexical_index.idf
        text = [text_features(a, b, tokens[a], tokens[b], idf) for a, b in zip(texts, others, strict=True)]
        return feature_rows(cosine, lexical, np.array(text), best_other_cosine, rank)

    def _neighbours(self, thread_ids: Sequence[str]) -> dict[str, tuple[list[float], list[str]]]:
        """Each stored question's nearest other questions: ``{id: (cosines, thread ids)}``, best
        first, at most RANK_DEPTH + 1 of them (the thread itself left out)."""
        distinct = list(dict.fromkeys(thread_ids))
        if not distinct:
            return {}
        vectors = np.stack([self._question_vector(t) for t in distinct])
        depth = min(RANK_DEPTH + 2, len(self._questions))
        out = {}
        for start in range(0, len(distinct), 1024):
            scores, ids = self._questions.search(vectors[start : start + 1024], depth)
            for tid, row_s, row_i in zip(distinct[start : start + 1024], scores, ids, strict=True):
                near = [
                    (s, self._parts[pid].thread_id)
                    for s, pid in zip(row_s.tolist(), row_i.tolist(), strict=True)
                    if pid >= 0 and self._parts[pid].thread_id != tid
                ][: RANK_DEPTH + 1]
                out[tid] = ([s for s, _ in near], [t for _, t in near])
        return out

    def pair_features(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Signals of stored pairs ``(id1, id2)``, id1 in the role of the new question (its own
        thread left out of its neighbours): (n, len(pairfeatures.FEATURES)) float64."""
        for a, b in pairs:
            self.get(a), self.get(b)
        near = self._neighbours([a for a, _ in pairs])
        cos, other, rank = [], [], []
        for a, b in pairs:
            scores, tids = near[a]
            position = tids.index(b) if b in tids else None
            cos.append(float(self._question_vector(a) @ self._question_vector(b)))
            other.append(best_other(scores, position))
            rank.append(rank_feature(position))
        texts = [self._threads[a].question_text for a, _ in pairs]
        return self._pair_features(
            texts, [b for _, b in pairs], np.array(cos), np.array(other), np.array(rank)
        )

    def pair_scores(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """The duplicate scorer's score of stored pairs: the calibrated probability, or the raw
        question cosine while uncalibrated. (n,) float64."""
        x = self.pair_features(pairs)
        return x[:, 0] if self.calibration is None else self.calibration.probability(x)

    def duplicate_cutoff(self) -> tuple[float, str]:
        """The score at which a pair counts as a duplicate, on the :meth:`pair_scores` scale, and
        which scorer that is: ``(tier threshold, "calibrated")`` or ``(cosine, "cosine")``."""
        if self.calibration is None:
            return self.config.duplicate_threshold, "cosine"
        return self.calibration.tiers.get("duplicate", max(self.calibration.tiers.values())), "calibrated"

    def calibrate(
        self, pairs: Sequence[tuple[str, str]], labels: Sequence[int], targets: dict[str, float] | None = None
    ) -> Calibration:
        """Fit the duplicate scorer on labelled stored pairs and use it from now on (saved with
        the index). ``targets`` maps tier names to the precision each must reach (default
        duplicate 0.90, related 0.60). Pairs that share a thread are kept in one fold when the
        tiers are measured out of fold."""
        groups = pair_groups(pairs)
        self.calibration = fit_calibration(
            self.pair_features(pairs), np.asarray(labels), targets, groups=groups
        )
        return self.calibration

    # -- persistence --------------------------------------------------------------------

    def _manifest(self) -> dict:
        return {
            "library_version": __version__,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": {
                "name": self.embedder.name,
                "dimension": self.embedder.dimension,
                "normalized": True,
                "fingerprint": self.model_fingerprint,
                "probe": np.round(self._probe.astype(np.float64), 6).tolist(),
                "backend": getattr(self.embedder, "backend", None),
                "probe_min_cosine": _probe_min_cosine(self.embedder),
            },
            "index": {
                "type": self._questions.kind,
                "types": {"questions": self._questions.kind, "answers": self._answers.kind},
                "next_part_id": self._next_id,
            },
            "config": asdict(self.config),
            "counts": self.counts,
        }

    def _write_files(self, out: Path) -> None:
        with open(out / "threads.jsonl", "w", encoding="utf-8") as fh:
            for t in self._threads.values():
                fh.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
        with open(out / "parts.jsonl", "w", encoding="utf-8") as fh:
            for pid, ref in self._parts.items():
                fh.write(json.dumps([pid, *ref], ensure_ascii=False) + "\n")
        self._questions.save(out / "questions.faiss")
        self._answers.save(out / "answers.faiss")
        if self.config.lexical_weight > 0 or self.calibration is not None:
            self.lexical_index().save(out / "lexical.npz")
        if self.calibration is not None:
            (out / "calibration.json").write_text(json.dumps(self.calibration.to_dict(), indent=2) + "\n")

    def save(
        self,
        index_dir: str | Path,
        *,
        progress=None,
        extra_files: Mapping[str, bytes] | None = None,
        manifest_extra: Mapping[str, object] | None = None,
    ) -> Path:
        """Publish the index as a new snapshot generation of ``index_dir``; returns its path.

        The generation is written completely before it becomes current, so readers of
        ``index_dir`` never see a partial snapshot, even if this process dies midway.
        ``progress(done, total)`` reports vectors indexed when a vector index is rebuilt (a
        change of index type, or tombstones compacted away). ``extra_files`` (name to content)
        are written into the snapshot beside the index's own and checksummed with them;
        ``manifest_extra`` adds entries to its manifest.
        """
        # the index type follows the size, and tombstones (HNSW) are compacted away, here
        limit = self.config.exact_search_limit
        total = len(self._questions) + len(self._answers)
        q_report = None if progress is None else (lambda done, _n: progress(done, total))
        self._questions = self._questions.rebuilt(choose_index_type(len(self._questions), limit), q_report)
        offset = len(self._questions)
        a_report = None if progress is None else (lambda done, _n: progress(offset + done, total))
        self._answers = self._answers.rebuilt(choose_index_type(len(self._answers), limit), a_report)
        def write(out: Path) -> None:
            self._write_files(out)
            for name, data in (extra_files or {}).items():
                (out / name).write_bytes(data)

        _, path = publish(index_dir, write, {**self._manifest(), **(manifest_extra or {})})
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        embedder: Embedder | None = None,
        *,
        verify: bool = True,
        threads: int | None = None,
    ) -> ForumIndex:
        """Load a snapshot (or an index directory's current generation).

        Without ``embedder`` the model named in the manifest is loaded (with ``threads`` CPU
        threads, as :func:`~qa_search.load_embedder` takes them). A snapshot from another
        model, dimension or format version raises :class:`IncompatibleSnapshotError`; one whose
        files do not match their recorded checksums (``verify``) raises :class:`SnapshotError`.
        """
        snap = resolve_snapshot(path)
        manifest = read_manifest(snap)
        if verify:
            problems = verify_files(snap, manifest)
            if problems:
                raise SnapshotError(f"snapshot {snap} failed verification: " + "; ".join(problems))
        model = manifest["model"]
        if embedder is None:
            embedder = load_recorded_embedder(model, threads=threads)
        index = cls(embedder, config_of(snap, manifest))
        if not matches_recorded_model(model, embedder, index._probe):
            raise IncompatibleSnapshotError(
                f"snapshot {snap} was built with model {model['name']!r} "
                f"(dimension {model['dimension']}, fingerprint {model['fingerprint']}), but the "
                f"embedder in use is {embedder.name!r} (dimension {embedder.dimension}, "
                f"fingerprint {index.model_fingerprint}); load it with the same model or rebuild it"
            )
        index._read_files(snap, manifest)
        return index

    def _read_files(self, snap: Path, manifest: dict) -> None:
        try:
            with open(snap / "threads.jsonl", encoding="utf-8") as fh:
                for line in fh:
                    t = thread_from_dict(json.loads(line))
                    self._threads[t.id] = t
            with open(snap / "parts.jsonl", encoding="utf-8") as fh:
                for line in fh:
                    pid, tid, aid, chunk, h = json.loads(line)
                    self._parts[pid] = PartRef(tid, aid, chunk, h)
                    self._thread_parts.setdefault(tid, []).append(pid)
            dim = self.embedder.dimension
            self._questions = VectorIndex.load(snap / "questions.faiss", dim)
            self._answers = VectorIndex.load(snap / "answers.faiss", dim)
            if "lexical.npz" in manifest.get("files", {}):
                self._lexical = LexicalIndex.load(snap / "lexical.npz")
            try:
                self.calibration = stored_calibration(snap, manifest)
            except ValueError as exc:
                # an old calibration is dropped, not fatal: search works, verdicts are raw
                log.warning("snapshot %s: %s; duplicates are uncalibrated until then", snap, exc)
        except (OSError, ValueError, RuntimeError) as exc:
            raise SnapshotError(f"cannot read snapshot {snap}: {exc}") from exc
        self._next_id = int(manifest["index"]["next_part_id"])
        n_vectors = len(self._questions) + len(self._answers)
        if n_vectors != len(self._parts):
            raise SnapshotError(
                f"snapshot {snap} is inconsistent: {n_vectors} vectors for {len(self._parts)} parts"
            )

"""What an index holds in memory: threads, their embedded parts, two vector indexes, and writes.

Questions and answer chunks live in separate vector indexes, so a duplicate check only ever
compares questions with questions, and a search can weigh the two kinds differently. Every
embedded part has a stable int64 id that maps back to (thread, answer, chunk); replacing or
deleting a thread removes its ids from the vector indexes at once.

A write costs what the threads written cost, never what the corpus costs: the vector indexes,
the id maps, the lexical index, the answer count and the bound on boosts are all updated in
place (the speed page lists what a write touches). Work over every thread happens only when an
index is loaded, reconfigured or saved.

Search (:mod:`.search`), duplicate scoring (:mod:`.duplicates`) and snapshots
(:mod:`.persistence`) read an :class:`IndexContents` through its public methods.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

import numpy as np

from qa_search.embedding.model_defaults import ShippedDefaults
from qa_search.embedding.models import Embedder, model_fingerprint, probe_vectors
from qa_search.embedding.reranker import Reranker
from qa_search.errors import UnknownThreadError
from qa_search.index.config import IndexConfig, check_scoring_settings
from qa_search.index.parts import ANSWER, QUESTION, Part, thread_parts
from qa_search.index.results import PartRef, UpsertStats
from qa_search.scoring.ann import VectorIndex, choose_index_type
from qa_search.scoring.calibration import Calibration
from qa_search.scoring.fusion import thread_boost
from qa_search.scoring.lexical import LexicalIndex
from qa_search.threads import Thread, checked_thread


def as_str_list(items: Iterable[str]) -> list[str]:
    """``items`` (ids, tags) as a list, where a single string is one item, not its characters."""
    return [items] if isinstance(items, str) else list(items)


#: Lexical views kept for recent callers (see IndexContents.lexical_for), one per set of threads
#: hidden from them: a forum restricts threads to few sets of groups, and a view costs a copy of
#: the index's per-slot arrays.
VIEWS_KEPT = 8
#: Callers of several groups whose labels seen are kept (see IndexContents.lexical_for): a
#: moderator's groups may name thousands of sets, and the union of their labels costs what they
#: number; a caller with one such group reads its group's labels as they are kept.
SEEN_KEPT = 64


class IndexContents:
    """The threads of one index and the vectors of their parts, kept in memory."""

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
        self._answers_held = 0  # answers over all threads, kept by the writes for counts
        # kept in step with the threads by every write once it exists; None until a lexical
        # signal is needed (an index with lexical_weight 0 and no calibration never builds it)
        self._lexical: LexicalIndex | None = (
            LexicalIndex(self.config.lexical_language) if self.config.lexical_weight > 0 else None
        )
        self._max_boost = 0.0  # at least every thread's boost, see boost_bound
        # each set of groups some thread is restricted to, numbered from 1: the label the lexical
        # index keeps for the thread (0: public), so a caller's view leaves out a few labels
        # rather than a list of threads
        self._audiences: dict[frozenset[str], int] = {}
        # the labels of the sets that name each group: a caller's view is found from its own groups'
        # labels, never by a walk over every set (private messages make one set per pair of users,
        # and a set stays numbered after its threads are gone)
        self._group_audiences: dict[str, list[int]] = {}
        # each group's labels as one set, made by the first search after a set naming the group is
        # numbered (labels are only ever added, so its size tells whether it is current)
        self._group_seen: dict[str, frozenset[int]] = {}
        # callers of several groups -> (labels numbered, the labels they see): a set naming a group
        # never changes once numbered, so they see other labels only once another set is numbered
        self._seen_by: dict[frozenset[str], tuple[int, frozenset[int]]] = {}
        # one set object per set of labels seen by such callers: a view is then found by identity,
        # where equal sets of thousands of labels would be compared item by item on each search
        self._seen_sets: dict[frozenset[int], frozenset[int]] = {}
        # lexical views for recent callers: (lexical index, its version, labels numbered, labels
        # seen) -> view; callers whose groups differ but see the same labels, and so hide the same
        # threads (a group of a user's own), share one
        self._views: dict[tuple[int, int, int, frozenset[int]], tuple[LexicalIndex, LexicalIndex]] = {}
        self._views_lock = threading.Lock()
        # the searches that first need the lexical index arrive together, under a shared lock
        self._building = threading.Lock()
        #: The fitted duplicate scorer (see :func:`.duplicates.calibrate`); None while uncalibrated.
        self.calibration: Calibration | None = None
        #: The shipped defaults recorded in the snapshot it was loaded from (see :mod:`.defaults`);
        #: None: the package's current ones for its model, recorded when it is saved.
        self.shipped_defaults: ShippedDefaults | None = None
        #: The cross-encoder that rescores duplicate candidates (see :mod:`.rerank`); None: none attached.
        self.reranker: Reranker | None = None

    def reconfigure(self, settings: Mapping[str, object]) -> IndexConfig:
        """Change scoring settings in place (see :meth:`IndexConfig.updated`); returns the new config.

        Only settings that leave the vectors as they are can change here; one of
        :data:`~qa_search.index.config.EMBEDDING_SETTINGS` raises ``ValueError`` (build the index
        again with it instead). The change is published with the next save.
        """
        check_scoring_settings(settings)
        self.config = self.config.updated(settings)
        self._max_boost = self._largest_boost()  # the boosts may have changed
        if self._lexical is not None and self._lexical.language != self.config.lexical_language:
            self._lexical = None  # its terms were stemmed for another language: built again below
        if self.config.lexical_weight > 0 or (self._lexical is None and self.calibration is not None):
            self.lexical_index()  # built here, once, rather than by the next search
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
            "answers": self._answers_held,
            "question_vectors": len(self._questions),
            "answer_vectors": len(self._answers),
        }

    @property
    def probe(self) -> np.ndarray:
        """The embedder's vectors of the probe texts: (len(PROBE_TEXTS), d) float32."""
        return self._probe

    @property
    def model_fingerprint(self) -> str:
        return model_fingerprint(self._probe)

    @property
    def parts(self) -> Mapping[int, PartRef]:
        """Every embedded part by its id (a read-only view)."""
        return MappingProxyType(self._parts)

    @property
    def question_index(self) -> VectorIndex:
        """The questions' vectors, by part id."""
        return self._questions

    @property
    def answer_index(self) -> VectorIndex:
        """The answer chunks' vectors, by part id."""
        return self._answers

    @property
    def next_part_id(self) -> int:
        """The id the next embedded part gets (ids are never reused)."""
        return self._next_id

    def part_ids(self, thread_id: str) -> list[int]:
        """The ids of a stored thread's parts: its question, then its answer chunks."""
        return list(self._thread_parts[thread_id])

    def vector(self, part_id: int) -> np.ndarray:
        """A part's vector, (d,) float32, from the question or the answer index."""
        index = self._questions if self._parts[part_id].answer_id is None else self._answers
        return index.reconstruct(part_id)

    def question_vector(self, thread_id: str) -> np.ndarray:
        """A stored thread's question vector, (d,) float32."""
        pid = next(p for p in self._thread_parts[thread_id] if self._parts[p].answer_id is None)
        return self._questions.reconstruct(pid)

    # the earlier name, which tools and tests still use
    _question_vector = question_vector

    def lexical_index(self) -> LexicalIndex:
        """The BM25 index over the threads' questions. Writes update it in place; it is built
        here only the first time an index that had none needs it (see :meth:`restore`), once
        however many searches need it at that moment."""
        if self._lexical is None:
            with self._building:
                if self._lexical is None:
                    tids = list(self._threads)
                    self._lexical = self._label_restricted(LexicalIndex.build(
                        tids, [self._threads[t].question_text for t in tids], self.config.lexical_language
                    ))
        return self._lexical

    def lexical_for(self, viewer: frozenset[str] | None) -> LexicalIndex:
        """The lexical index as a caller in the ``viewer`` groups reads it: the threads they may
        not see are left out of its statistics as well as its hits (see
        :meth:`~qa_search.scoring.lexical.LexicalIndex.hiding`), so a score, a relevance or a
        query's lexical weight never depends on what those threads say. None (an operator's own
        tools) and a caller who may see every thread read the index itself."""
        lexical = self.lexical_index()
        if viewer is None:
            return lexical
        numbered = len(self._audiences)
        seen = self._labels_seen(viewer, numbered)
        if len(seen) == numbered:
            return lexical
        key = (id(lexical), lexical.version, numbered, seen)
        with self._views_lock:
            held = self._views.get(key)
        if held is not None and held[0] is lexical:
            return held[1]
        view = lexical.hiding(n for n in range(1, numbered + 1) if n not in seen)
        with self._views_lock:
            if len(self._views) >= VIEWS_KEPT or any(k[1] != lexical.version for k in self._views):
                self._views.clear()  # a write made every view stale; otherwise few hidden sets recur
            self._views[key] = (lexical, view)
        return view

    def _labels_seen(self, viewer: frozenset[str], numbered: int) -> frozenset[int]:
        """The labels of the sets naming one of the ``viewer`` groups (all such among the first
        ``numbered`` at least), as kept rather than gathered by each search: a moderators' group
        may be named by thousands of sets."""
        held = self._seen_by.get(viewer)
        if held is not None and held[0] == numbered:
            return held[1]
        labelled = [self._group_labels(group) for group in viewer if group in self._group_audiences]
        if len(labelled) == 1:
            return labelled[0]
        seen = frozenset().union(*labelled)
        if labelled:
            widest = max(labelled, key=len)
            with self._views_lock:
                if len(self._seen_by) >= SEEN_KEPT:
                    self._seen_by.clear()
                    self._seen_sets.clear()
                # a moderator's own group names only sets the moderators' group names too: they
                # see that group's labels, the set its members alone are given
                seen = widest if len(widest) == len(seen) else self._seen_sets.setdefault(seen, seen)
                self._seen_by[viewer] = (numbered, seen)
        return seen

    def _group_labels(self, group: str) -> frozenset[int]:
        labels = self._group_audiences[group]
        held = self._group_seen.get(group)
        if held is None or len(held) != len(labels):  # a set naming the group was numbered since
            held = self._group_seen[group] = frozenset(labels)
        return held

    def _audience(self, thread: Thread) -> int:
        """The lexical label of the thread's readers: 0 for a public thread."""
        if not thread.visible_to:
            return 0
        groups = frozenset(thread.visible_to)
        label = self._audiences.get(groups)
        if label is None:
            label = len(self._audiences) + 1
            for group in groups:  # first, so that a reader never counts a label it cannot find
                self._group_audiences.setdefault(group, []).append(label)
            self._audiences[groups] = label
        return label

    def _label_restricted(self, lexical: LexicalIndex) -> LexicalIndex:
        """``lexical`` (built or loaded over the threads) with the restricted threads' labels."""
        restricted = [t for t in self._threads.values() if t.visible_to]
        lexical.relabel([t.id for t in restricted], [self._audience(t) for t in restricted])
        return lexical

    def boost(self, thread_id: str) -> float:
        """The thread's solved and vote boost (0 unless the config turns boosts on)."""
        cfg = self.config
        if not (cfg.solved_boost or cfg.vote_boost):
            return 0.0
        t = self._threads[thread_id]
        votes = max([t.score, *(a.score for a in t.answers)])
        solved = any(a.accepted for a in t.answers)
        return thread_boost(solved, votes, cfg.solved_boost, cfg.vote_boost, cfg.vote_cap)

    def boost_bound(self) -> float:
        """At least the largest boost of any thread: what an unseen thread might add to its dense
        score. Found over every thread when the index is loaded or reconfigured, then raised by
        upserts and left as it is by deletes (still a bound), so no search or write walks the
        threads for it."""
        if not (self.config.solved_boost or self.config.vote_boost):
            return 0.0
        return self._max_boost

    def _largest_boost(self) -> float:
        if not (self.config.solved_boost or self.config.vote_boost):
            return 0.0
        return max((self.boost(t) for t in self._threads), default=0.0)

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
        progress: Callable[[int, int], None] | None = None,
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
        if self._lexical is not None:
            # a thread whose question is unchanged (an answer added, a vote) keeps its slot
            asked = [t for t in batch.values() if t.question_text != self._question_text(t.id)]
            self._lexical.add([t.id for t in asked], [t.question_text for t in asked],
                              [self._audience(t) for t in asked])
            readded = {t.id for t in asked}
            kept = [t for t in batch.values() if t.id not in readded]  # its readers may have changed
            self._lexical.relabel([t.id for t in kept], [self._audience(t) for t in kept])
        self._answers_held += sum(len(t.answers) - self._answer_count(t.id) for t in batch.values())
        self._threads.update(batch)
        # an upper bound suffices: raised by new threads, never lowered (no full pass per write)
        self._max_boost = max(self._max_boost, *(self.boost(tid) for tid in batch))
        return UpsertStats(len(batch), len(to_embed), len(new_parts) - len(to_embed))

    def delete(self, thread_ids: Iterable[str]) -> int:
        """Remove threads and all their vectors; returns how many of the ids were present.
        A single string is one id (``delete("12")`` never removes threads "1" and "2")."""
        present = [tid for tid in dict.fromkeys(as_str_list(thread_ids)) if tid in self._threads]
        self._remove_parts(present)
        if self._lexical is not None:
            self._lexical.remove(present)
        for tid in present:
            self._answers_held -= len(self._threads.pop(tid).answers)
        return len(present)

    def _question_text(self, thread_id: str) -> str | None:
        held = self._threads.get(thread_id)
        return None if held is None else held.question_text

    def _answer_count(self, thread_id: str) -> int:
        held = self._threads.get(thread_id)
        return 0 if held is None else len(held.answers)

    def _reusable_vectors(self, thread_ids: Iterable[str]) -> dict[tuple[str, str], np.ndarray]:
        out = {}
        for tid in thread_ids:
            for pid in self._thread_parts.get(tid, ()):
                kind = QUESTION if self._parts[pid].answer_id is None else ANSWER
                out[(kind, self._parts[pid].text_hash)] = self.vector(pid)
        return out

    def _remove_parts(self, thread_ids: Iterable[str]) -> None:
        q_ids: list[int] = []
        a_ids: list[int] = []
        for tid in thread_ids:
            for pid in self._thread_parts.pop(tid, ()):
                ref = self._parts.pop(pid)
                (q_ids if ref.answer_id is None else a_ids).append(pid)
        self._questions.remove(np.array(q_ids, np.int64))
        self._answers.remove(np.array(a_ids, np.int64))

    def compact(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Rebuild each vector index as the type its size calls for, dropping its tombstones.

        ``progress(done, total)`` reports vectors indexed when an index is rebuilt."""
        limit = self.config.exact_search_limit
        total = len(self._questions) + len(self._answers)
        q_report = None if progress is None else (lambda done, _n: progress(done, total))
        self._questions = self._questions.rebuilt(choose_index_type(len(self._questions), limit), q_report)
        offset = len(self._questions)
        a_report = None if progress is None else (lambda done, _n: progress(offset + done, total))
        self._answers = self._answers.rebuilt(choose_index_type(len(self._answers), limit), a_report)

    def restore(
        self,
        threads: Iterable[Thread],
        parts: Mapping[int, PartRef],
        vectors: tuple[VectorIndex, VectorIndex],
        next_part_id: int,
        lexical: LexicalIndex | None = None,
    ) -> None:
        """Take over stored contents, as a snapshot holds them: the threads, their parts by id,
        the (question, answer) vector indexes over those ids and the next part id; ``lexical``
        if one was stored (over the same threads). Nothing is embedded. Whatever the index needs
        over every thread (the lexical index when none was stored but search or the duplicate
        scorer uses one, the bound on boosts) is found here, while loading, not by a request."""
        self._threads = {t.id: t for t in threads}
        self._answers_held = sum(len(t.answers) for t in self._threads.values())
        self._parts = dict(parts)
        self._thread_parts = {}
        for pid, ref in self._parts.items():
            self._thread_parts.setdefault(ref.thread_id, []).append(pid)
        self._questions, self._answers = vectors
        self._next_id = next_part_id
        if lexical is not None and lexical.language != self.config.lexical_language:
            lexical = None  # stemmed for another language than the settings name: built again
        self._lexical = None if lexical is None else self._label_restricted(lexical)
        if lexical is None and (self.config.lexical_weight > 0 or self.calibration is not None):
            self.lexical_index()
        self._max_boost = self._largest_boost()

"""The lexical index: BM25 (Lucene's variant) over questions, as analyser.py tokenises them.

Raw BM25 is unbounded and its scale changes from query to query (long queries of rare words
score high), so it cannot be added to a cosine or compared with a threshold. The index returns
BM25 *normalised per query*: a document's BM25 divided by the query's attainable maximum, the sum
of the idf of its distinct known terms (the BM25 term-frequency factor of Lucene's variant is
below 1). The result is in [0, 1], means "how much of the query's idf mass this document
covers", and depends only on the query and the document, not on the other results.

The index is incremental. It keeps each document's term frequencies rather than precomputed
weights, together with the corpus statistics BM25 needs (the number of documents, each term's
document frequency, the total length); a query computes the weights of its few posting lists
from them. A write therefore costs time in proportion to the documents written, never to the
corpus, and after any sequence of writes the scores are those of an index built from scratch over
the same documents (to float32 rounding: the statistics are exact).

Documents live in numbered slots. Postings are kept in two segments: a main segment in
compressed column form (term -> slots and term frequencies) and a small segment of documents
added since the last merge, folded into the main one once it outgrows a fraction of it (a
numpy merge, amortised over the writes that filled it). A removed document's slot is marked
dead: its postings stay in the main segment, masked when a query runs, until the index is
compacted, which :meth:`LexicalIndex.save` does (a published snapshot holds live slots only).

A search needs the head of a query's scores and the scores of a few candidates, not a score for
every slot: :meth:`LexicalIndex.query` reads only posting lists (lexicalquery.py).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from qa_search.scoring.analyser import DEFAULT_LANGUAGE, check_language, tokenize
from qa_search.scoring.lexicalquery import LexicalQuery, forward_positions

__all__ = ["LexicalIndex", "LexicalQuery"]

#: BM25 saturation and length normalisation (bm25s' defaults for Lucene's variant are 1.5 / 0.75).
K1 = 1.2
B = 0.75
#: The new-document segment is merged once its postings exceed this many plus an eighth of the
#: main segment's, so merging costs O(1) amortised per posting.
_MERGE_FLOOR = 16_384
#: A term in at least this share of the live documents has its weights kept as one float32 per
#: slot between writes, read by slot rather than searched for (nine terms of the 137,537 Quora
#: questions, "what" in 39% of them: 36 bytes a slot if a query has read them all).
_DENSE_SHARE = 1 / 16
#: Format of the saved ``.npz`` (1: precomputed bm25s weights, read by rebuilding; 2: frequencies).
_FORMAT = 2


def _idf(df: np.ndarray, n: int) -> np.ndarray:
    """Lucene's idf: the largest weight a term can contribute to any document."""
    return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)


class LexicalIndex:
    """BM25 over a changing set of documents, each named by an id.

    :meth:`scores` returns one float32 per slot (``len(slot_ids)`` of them), dead slots 0;
    :attr:`position` maps a live id to its slot and :attr:`slot_ids` a slot to its id (``None``
    when dead).
    """

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = check_language(language)
        self.slot_ids: list[str | None] = []
        self.position: dict[str, int] = {}
        self._alive = np.zeros(0, bool)
        self._length = np.zeros(0, np.float32)  # tokens per slot (0 for a dead slot)
        # each slot's label: a number the owner gives a document (its readers, say) so that a
        # view can leave out every document of some labels (see hiding); 0 for none
        self._label = np.zeros(0, np.int32)
        self._vocab: dict[str, int] = {}
        self._df = np.zeros(0, np.int64)
        self._live = 0
        self._total_length = 0
        # main segment: inverted (term -> slots, tf) and forward (slot -> terms, tf) for the
        # first _main_slots slots
        self._inv_indptr = np.zeros(1, np.int64)
        self._inv_slots = np.zeros(0, np.int64)
        self._inv_tf = np.zeros(0, np.float32)
        self._fwd_indptr = np.zeros(1, np.int64)
        self._fwd_terms = np.zeros(0, np.int64)
        self._fwd_tf = np.zeros(0, np.float32)
        # documents added since the last merge, by slot: (term ids, tfs); and their postings
        self._new_docs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._new_postings: dict[int, tuple[list[int], list[float]]] = {}
        self._new_count = 0
        # what queries reuse between writes, keyed to the count of writes (every write changes
        # the statistics): each slot's length normalisation, and each term's main-segment
        # weights (one float32 per posting) with the count they were computed at
        self._writes = 0
        self._norm_cache: tuple[int, np.ndarray] | None = None
        self._inv_w = np.zeros(0, np.float32)
        self._w_at = np.zeros(0, np.int64)
        self._dense: tuple[int, dict[int, np.ndarray]] = (0, {})  # common terms' weights per slot
        self._maxima: tuple[int, dict[int, float]] = (0, {})  # terms' largest weights

    # ---- size and statistics -------------------------------------------------------------
    def __len__(self) -> int:
        """The number of live documents."""
        return self._live

    @property
    def _main_slots(self) -> int:
        return len(self._fwd_indptr) - 1

    def _avg_length(self) -> float:
        return self._total_length / self._live if self._live else 1.0

    @property
    def version(self) -> int:
        """A number that changes with every write (and merge): what is derived from the index,
        a view of it included, holds until it changes."""
        return self._writes

    def idf(self, token: str) -> float:
        """Lucene's idf of a stemmed token; a token no document has gets the highest idf."""
        j = self._vocab.get(token)
        df = int(self._df[j]) if j is not None else 0
        return float(_idf(np.array([df]), self._live)[0])

    # ---- writing -------------------------------------------------------------------------
    @classmethod
    def build(
        cls, doc_ids: Sequence[str], texts: Sequence[str], language: str = DEFAULT_LANGUAGE
    ) -> LexicalIndex:
        """Index ``texts`` (one per id)."""
        index = cls(language)
        index.add(doc_ids, texts)
        index.merge()
        return index

    def add(self, doc_ids: Sequence[str], texts: Sequence[str], labels: Sequence[int] | None = None) -> None:
        """Add documents, replacing any already indexed under the same id; ``labels``: each
        one's label (see :meth:`hiding`; default 0)."""
        if len(doc_ids) != len(texts):
            raise ValueError(f"{len(doc_ids)} ids for {len(texts)} texts")
        self.add_tokens(doc_ids, tokenize(texts, self.language), labels)

    def add_tokens(
        self, doc_ids: Sequence[str], tokens: Sequence[Sequence[str]], labels: Sequence[int] | None = None
    ) -> None:
        """:meth:`add` for documents already run through :func:`tokenize`."""
        self.remove(d for d in doc_ids if d in self.position)
        first = len(self.slot_ids)
        n = len(doc_ids)
        self._grow(first + n)
        for k, (doc_id, toks) in enumerate(zip(doc_ids, tokens, strict=True)):
            slot = first + k
            if doc_id in self.position:  # the same id twice in one call: the last one wins
                self._kill(self.position[doc_id])
            self.slot_ids.append(doc_id)
            self.position[doc_id] = slot
            counts = Counter(toks)
            terms = np.fromiter((self._term_id(t) for t in counts), np.int64, len(counts))
            tfs = np.fromiter(counts.values(), np.float32, len(counts))
            self._df[terms] += 1
            self._alive[slot] = True
            self._length[slot] = len(toks)
            self._label[slot] = 0 if labels is None else labels[k]
            self._live += 1
            self._total_length += len(toks)
            self._new_docs[slot] = (terms, tfs)
            for t, tf in zip(terms.tolist(), tfs.tolist(), strict=True):
                slots, freqs = self._new_postings.setdefault(t, ([], []))
                slots.append(slot)
                freqs.append(tf)
            self._new_count += len(terms)
        self._writes += 1
        if self._new_count > _MERGE_FLOOR + len(self._inv_slots) // 8:
            self.merge()

    def relabel(self, doc_ids: Sequence[str], labels: Sequence[int]) -> None:
        """Give indexed documents new labels (ids not indexed are ignored); a view made before
        a label changed is stale (:attr:`version` moves)."""
        slots = [self.position.get(d, -1) for d in doc_ids]
        at = np.array([s for s in slots if s >= 0], np.int64)
        new = np.array([lab for s, lab in zip(slots, labels, strict=True) if s >= 0], np.int32)
        if len(at) and (self._label[at] != new).any():
            self._label[at] = new
            self._writes += 1

    def remove(self, doc_ids: Iterable[str]) -> int:
        """Remove documents by id (ids not indexed are ignored); returns how many were removed."""
        removed = 0
        for doc_id in list(doc_ids):
            slot = self.position.get(doc_id)
            if slot is not None:
                self._kill(slot)
                removed += 1
        return removed

    def _kill(self, slot: int) -> None:
        self._writes += 1
        terms, _ = self._doc_terms(slot)
        self._df[terms] -= 1
        self._live -= 1
        self._total_length -= int(self._length[slot])
        self._alive[slot] = False
        self._length[slot] = 0
        del self.position[self.slot_ids[slot]]  # type: ignore[arg-type]
        self.slot_ids[slot] = None

    def _term_id(self, term: str) -> int:
        j = self._vocab.get(term)
        if j is None:
            j = self._vocab[term] = len(self._vocab)
            if j >= len(self._df):
                self._df = np.concatenate([self._df, np.zeros(max(1024, j), np.int64)])
        return j

    def _grow(self, slots: int) -> None:
        if slots > len(self._alive):
            extra = max(slots - len(self._alive), len(self._alive), 1024)
            self._alive = np.concatenate([self._alive, np.zeros(extra, bool)])
            self._length = np.concatenate([self._length, np.zeros(extra, np.float32)])
            self._label = np.concatenate([self._label, np.zeros(extra, np.int32)])

    def _doc_terms(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        if slot >= self._main_slots:
            return self._new_docs[slot]
        lo, hi = self._fwd_indptr[slot], self._fwd_indptr[slot + 1]
        return self._fwd_terms[lo:hi], self._fwd_tf[lo:hi]

    def merge(self) -> None:
        """Fold the documents added since the last merge into the main segment.

        Every new slot is above every main one, so each term's merged list is its main list
        followed by its new postings: the main segment is copied into place, never sorted again,
        and only the new postings are sorted (the cost is a copy of the main segment)."""
        if not self._new_docs and self._main_slots == len(self.slot_ids):
            return
        slots = range(self._main_slots, len(self.slot_ids))
        docs = [self._new_docs[s] for s in slots]
        sizes = np.array([len(t) for t, _ in docs], np.int64)
        new_terms = np.concatenate([t for t, _ in docs]) if docs else np.zeros(0, np.int64)
        new_tf = np.concatenate([f for _, f in docs]) if docs else np.zeros(0, np.float32)
        new_slots = np.repeat(np.arange(slots.start, slots.stop), sizes)
        self._fwd_indptr = np.concatenate([self._fwd_indptr, self._fwd_indptr[-1] + np.cumsum(sizes)])
        self._fwd_terms = np.concatenate([self._fwd_terms, new_terms])
        self._fwd_tf = np.concatenate([self._fwd_tf, new_tf])
        n_terms = len(self._vocab)
        main_counts = np.zeros(n_terms, np.int64)
        main_counts[: len(self._inv_indptr) - 1] = np.diff(self._inv_indptr)
        new_counts = np.bincount(new_terms, minlength=n_terms)
        new_before = (np.cumsum(new_counts) - new_counts).astype(np.int64)
        indptr = np.concatenate([[0], np.cumsum(main_counts + new_counts)]).astype(np.int64)
        merged_slots = np.empty(int(indptr[-1]), np.int64)
        merged_tf = np.empty(int(indptr[-1]), np.float32)
        # a main posting moves up by the new postings of the terms before its own
        at = np.arange(len(self._inv_slots)) + np.repeat(new_before, main_counts)
        merged_slots[at], merged_tf[at] = self._inv_slots, self._inv_tf
        order = np.argsort(new_terms, kind="stable")  # slot order within a term
        terms = new_terms[order]
        at = indptr[terms] + main_counts[terms] + (np.arange(len(terms)) - new_before[terms])
        merged_slots[at], merged_tf[at] = new_slots[order], new_tf[order]
        self._inv_indptr, self._inv_slots, self._inv_tf = indptr, merged_slots, merged_tf
        self._forget_weights()
        self._new_docs.clear()
        self._new_postings.clear()
        self._new_count = 0

    def _set_inverted(self, terms: np.ndarray, slots: np.ndarray, tfs: np.ndarray) -> None:
        # a stable sort by term keeps each posting list in slot order
        order = np.argsort(terms, kind="stable")
        counts = np.bincount(terms, minlength=len(self._vocab))
        self._inv_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._inv_slots = slots[order].astype(np.int64)
        self._inv_tf = tfs[order].astype(np.float32)
        self._forget_weights()

    def _forget_weights(self) -> None:
        # the main segment's postings moved: no term's weights are known
        self._writes += 1
        self._inv_w = np.zeros(len(self._inv_tf), np.float32)
        self._w_at = np.full(len(self._inv_indptr) - 1, -1, np.int64)

    def compact(self) -> None:
        """Drop dead slots and unused terms: slots are renumbered, scores do not change."""
        self.merge()
        keep = np.flatnonzero(self._alive[: len(self.slot_ids)])
        used = np.flatnonzero(self._df[: len(self._vocab)] > 0)
        term_map = np.full(len(self._vocab), -1, np.int64)
        term_map[used] = np.arange(len(used))
        sizes = np.diff(self._fwd_indptr)[keep]
        entry_slot = np.repeat(np.arange(self._main_slots), np.diff(self._fwd_indptr))
        take = self._alive[entry_slot]
        terms = term_map[self._fwd_terms[take]]
        tfs = self._fwd_tf[take]
        names = sorted(self._vocab, key=self._vocab.__getitem__)
        self._vocab = {names[j]: i for i, j in enumerate(used.tolist())}
        self._df = self._df[used].copy()
        ids = [self.slot_ids[s] for s in keep.tolist()]
        self.slot_ids = list(ids)
        self.position = {d: i for i, d in enumerate(ids)}  # type: ignore[misc]
        self._length = self._length[keep].copy()
        self._label = self._label[keep].copy()
        self._alive = np.ones(len(keep), bool)
        self._fwd_indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._fwd_terms = terms
        self._fwd_tf = tfs
        self._set_inverted(terms, np.repeat(np.arange(len(keep)), sizes), tfs)

    def hiding(self, labels: Iterable[int]) -> LexicalIndex:
        """A read-only view of the index without its live documents whose label is one of
        ``labels`` (see :meth:`add`, :meth:`relabel`): their slots never score, and their words
        count in none of the statistics BM25 reads (a term's document frequency, whether the
        term is known at all, the number of documents, their average length). Every score is
        therefore the one an index of the other documents alone gives, to the last bit: what a
        caller who may not see those documents gets, so that no score, and no relevance or
        lexical weight computed from one, tells whether a document they may not see holds a word.

        The view shares this index's postings and keeps its own statistics and caches; it is
        valid until this index is next written (see :attr:`version`), and is never written to.
        Making one costs a copy of the per-slot and per-term arrays and a pass over the left-out
        documents' own terms. With nothing left out it is the index itself."""
        n = len(self.slot_ids)
        wanted = np.fromiter(labels, np.int32)
        slots = np.flatnonzero(self._alive[:n] & np.isin(self._label[:n], wanted))
        if not len(slots):
            return self
        view = copy.copy(self)
        alive = self._alive.copy()
        alive[slots] = False
        df = self._df.copy()
        at, _ = forward_positions(self._fwd_indptr, slots[slots < self._main_slots])
        newer = [self._new_docs[int(s)][0] for s in slots[slots >= self._main_slots]]
        df -= np.bincount(np.concatenate([self._fwd_terms[at], *newer]), minlength=len(df))
        view._alive, view._df = alive, df
        view._live = self._live - len(slots)
        view._total_length = self._total_length - int(self._length[slots].sum())
        # every cache of weights, norms and bounds was computed from the whole index's statistics
        view._norm_cache = None
        view._inv_w = np.zeros(len(self._inv_tf), np.float32)
        view._w_at = np.full(len(self._inv_indptr) - 1, -1, np.int64)
        view._dense, view._maxima = (-1, {}), (-1, {})
        return view

    # ---- reading -------------------------------------------------------------------------
    def top(self, scores: np.ndarray, m: int) -> np.ndarray:
        """Slots of the ``m`` highest of ``scores`` (from :meth:`scores`) among live documents,
        best first: never a removed document's slot, and every live slot when ``m`` >= ``len``.
        (m',) int64, m' = min(m, len(self))."""
        m = min(m, self._live)
        if m <= 0:
            return np.zeros(0, np.int64)
        # a query's terms are in few documents (dead slots score 0): when those fill the head,
        # sorting them alone costs ~0.1 ms against ~2 ms for every slot at 137k
        hit = np.flatnonzero(scores > 0)
        if m <= len(hit) < len(scores):
            head = hit[np.argpartition(-scores[hit], m - 1)[:m]]
            return head[np.argsort(-scores[head], kind="stable")]
        if self._live < len(scores):  # dead slots score 0, as a live miss does: rank them last
            scores = np.where(self._alive[: len(scores)], scores, np.float32(-1))
        if m >= len(scores):
            return np.argsort(-scores, kind="stable")[:m]
        head = np.argpartition(-scores, m - 1)[:m]
        return head[np.argsort(-scores[head], kind="stable")]

    def query_terms(self, tokens: Sequence[str]) -> list[int]:
        """The term ids of the analysed ``tokens`` this index knows (held by some document):
        what a query scores with, and how relevance and typeahead tell a known word."""
        # terms in alphabetical order, so every sum over them runs in one order and a score is
        # the same to the last bit however the index was built; "" (bm25s' empty-document token)
        # and terms whose documents were all removed are not query terms
        known = sorted({t for t in tokens if t and t in self._vocab})
        return [j for j in (self._vocab[t] for t in known) if self._df[j] > 0]

    def _postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        if term < len(self._inv_indptr) - 1:
            lo, hi = self._inv_indptr[term], self._inv_indptr[term + 1]
            slots, tfs = self._inv_slots[lo:hi], self._inv_tf[lo:hi]
        else:
            slots, tfs = np.zeros(0, np.int64), np.zeros(0, np.float32)
        new = self._new_postings.get(term)
        if new is not None:
            slots = np.concatenate([slots, np.asarray(new[0], np.int64)])
            tfs = np.concatenate([tfs, np.asarray(new[1], np.float32)])
        return slots, tfs

    def _norms(self) -> np.ndarray:
        """BM25's length normalisation of every slot, K1 * (1 - B + B * length / average
        length): float32, one per slot (and per slot allocated ahead), until the next write."""
        cached = self._norm_cache
        if cached is None or cached[0] != self._writes:
            # elementwise, so each slot's value is the bits a computation over a few slots gives
            cached = self._norm_cache = (self._writes, K1 * ((1 - B) + B * self._length / self._avg_length()))
        return cached[1]

    def _weights(self, tfs: np.ndarray, slots: np.ndarray, idf: np.float32 | np.ndarray) -> np.ndarray:
        return idf * (tfs / (self._norms()[slots] + tfs))

    def _main_weights(self, term: int, idf: np.float32) -> tuple[np.ndarray, np.ndarray]:
        """``term``'s main-segment postings: slots ascending and their raw weights, computed
        once between writes (``idf`` is the term's, as the query computed it)."""
        if term >= len(self._inv_indptr) - 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        lo, hi = self._inv_indptr[term], self._inv_indptr[term + 1]
        slots, weights = self._inv_slots[lo:hi], self._inv_w[lo:hi]
        if self._w_at[term] != self._writes:
            weights[:] = self._weights(self._inv_tf[lo:hi], slots, idf)
            self._w_at[term] = self._writes
        return slots, weights

    def _dense_weights(
        self, term: int, runs: Callable[[], list[tuple[np.ndarray, np.ndarray]]]
    ) -> np.ndarray | None:
        """A common ``term``'s raw weight in every slot (0 where absent), made once between writes
        from what ``runs`` returns (slots, weights); None for a term in too few documents."""
        if self._df[term] < _DENSE_SHARE * self._live:
            return None
        at, kept = self._dense
        if at != self._writes:
            at, kept = self._dense = (self._writes, {})
        dense = kept.get(term)
        if dense is None:
            dense = np.zeros(len(self.slot_ids), np.float32)
            for slots, weights in runs():
                dense[slots] = weights
            kept[term] = dense
        return dense

    def _note_bound(self, term: int, runs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Keep ``term``'s largest weight (dead slots' included: a bound) until the next write."""
        at, maxima = self._maxima
        if at != self._writes:
            at, maxima = self._maxima = (self._writes, {})
        if term not in maxima:
            maxima[term] = max((float(w.max()) for _, w in runs if len(w)), default=0.0)

    def _bounds(self, terms: list[int], idf: list[float]) -> list[float]:
        """What each term can add to a document's raw score at most: its largest weight if a
        query has read its lists since the last write, else its idf."""
        at, maxima = self._maxima
        if at != self._writes:
            return idf
        return [maxima.get(t, b) for t, b in zip(terms, idf, strict=True)]

    def _term_idf(self, terms: np.ndarray) -> np.ndarray:
        return _idf(self._df[terms], self._live)

    def query(self, text: str, depth: int = 1) -> LexicalQuery:
        """Query ``text`` against the index as it is now, reading posting lists only (see the
        module's summary); :meth:`scores` is the same query over every slot. ``depth``: the
        head any :meth:`LexicalQuery.top` computes at least (a shallower one is its prefix)."""
        return self.query_tokens(tokenize([text], self.language)[0], depth)

    def query_tokens(self, tokens: Sequence[str], depth: int = 1) -> LexicalQuery:
        """:meth:`query` for a query already run through :func:`tokenize`."""
        return LexicalQuery(self, self.query_terms(tokens), depth)

    def scores(self, text: str) -> np.ndarray:
        """Normalised BM25 of every slot for query ``text``: (len(slot_ids),) float32 in [0, 1]."""
        return self.scores_of_tokens(tokenize([text], self.language)[0])

    def scores_of_tokens(self, tokens: Sequence[str]) -> np.ndarray:
        """:meth:`scores` for a query already run through :func:`tokenize`."""
        out = np.zeros(len(self.slot_ids), np.float32)
        terms = self.query_terms(tokens)
        if not terms:
            return out
        idf = _idf(self._df[terms], self._live)
        for t, w in zip(terms, idf, strict=True):
            slots, tfs = self._postings(t)
            live = self._alive[slots]
            slots, tfs = slots[live], tfs[live]
            out[slots] += self._weights(tfs, slots, w)
        out /= idf.sum()
        return np.minimum(out, 1.0, out=out)

    def score_pairs(
        self, texts: Sequence[str], doc_ids: Sequence[str], tokens: Mapping[str, list[str]] | None = None
    ) -> np.ndarray:
        """Normalised BM25 of document ``doc_ids[i]`` for query ``texts[i]``: (n,) float32.

        The same values as :meth:`scores`, computed per pair from the document's own terms, so
        scoring many pairs does not walk every posting list of every query. ``tokens`` maps texts
        to their :func:`tokenize` output where the caller has it already.
        """
        out = np.zeros(len(texts), np.float32)
        distinct = list(dict.fromkeys(texts))
        if tokens is None:
            tokens = dict(zip(distinct, tokenize(distinct, self.language), strict=True))
        terms_of = {text: np.asarray(self.query_terms(tokens[text]), np.int64) for text in distinct}
        avg = self._avg_length()
        for i, (text, doc) in enumerate(zip(texts, doc_ids, strict=True)):
            terms = terms_of[text]
            if not len(terms):
                continue
            slot = self.position[doc]
            doc_terms, doc_tf = self._doc_terms(slot)
            idf = _idf(self._df[terms], self._live)
            hit = np.isin(doc_terms, terms)
            if hit.any():
                w_idf = _idf(self._df[doc_terms[hit]], self._live)
                tf = doc_tf[hit]
                norm = K1 * ((1 - B) + B * float(self._length[slot]) / avg)
                out[i] = min(float((w_idf * (tf / (norm + tf))).sum()) / float(idf.sum()), 1.0)
        return out

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """One ``.npz`` file (frequencies, vocabulary, document ids); the index is compacted first."""
        self.compact()
        terms = sorted(self._vocab, key=self._vocab.__getitem__)
        with open(path, "wb") as fh:
            np.savez(
                fh,
                format=np.array(_FORMAT),
                language=np.array(self.language),
                fwd_indptr=self._fwd_indptr,
                fwd_terms=self._fwd_terms,
                fwd_tf=self._fwd_tf,
                length=self._length,
                vocab=np.array(json.dumps(terms)),
                doc_ids=np.array(json.dumps(self.slot_ids)),
            )

    @classmethod
    def load(cls, path: str | Path, texts: Mapping[str, str] | None = None) -> LexicalIndex:
        """An index saved by :meth:`save`.

        A file of the first format held precomputed weights that cannot be updated; it is
        rebuilt from ``texts`` (document id -> text), which the caller must then pass.
        """
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z.files:
                if texts is None:
                    raise ValueError(f"{path} is an older lexical index: rebuild it from its texts")
                ids = json.loads(str(z["doc_ids"]))
                missing = sum(d not in texts for d in ids)
                if missing:
                    raise ValueError(
                        f"{path} is an older lexical index and {missing} of its documents "
                        "have no text to rebuild it from"
                    )
                return cls.build(ids, [texts[d] for d in ids])
            index = cls(str(z["language"]))
            index._vocab = {t: i for i, t in enumerate(json.loads(str(z["vocab"])))}
            index.slot_ids = json.loads(str(z["doc_ids"]))
            index.position = {d: i for i, d in enumerate(index.slot_ids)}  # type: ignore[misc]
            index._fwd_indptr = z["fwd_indptr"].astype(np.int64)
            index._fwd_terms = z["fwd_terms"].astype(np.int64)
            index._fwd_tf = z["fwd_tf"].astype(np.float32)
            index._length = z["length"].astype(np.float32)
        # the analyser's first use imports it (~0.5 s): here, not in the first request
        tokenize(["warm"], index.language)
        n = len(index.slot_ids)
        index._alive = np.ones(n, bool)
        index._label = np.zeros(n, np.int32)  # labels are the owner's, given again after a load
        index._live = n
        index._total_length = int(index._length.sum())
        index._df = np.bincount(index._fwd_terms, minlength=len(index._vocab)).astype(np.int64)
        sizes = np.diff(index._fwd_indptr)
        index._set_inverted(index._fwd_terms, np.repeat(np.arange(n), sizes), index._fwd_tf)
        return index

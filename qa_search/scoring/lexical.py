"""The lexical index: BM25 (bm25s, Snowball-stemmed, English stop words removed) over questions.

Raw BM25 is unbounded and its scale changes from query to query (long queries of rare words
score high), so it cannot be added to a cosine or compared with a threshold. The index returns
BM25 *normalised per query*: a document's BM25 divided by the query's attainable maximum, the sum
of the idf of its distinct known terms (the BM25 term-frequency factor of Lucene's variant is
below 1). The result is in [0, 1], means "how much of the query's idf mass this document
covers", and depends only on the query and the document, not on the other results.

bm25s builds the index (tokenising and precomputing each (term, document) weight); scoring a
query is a few numpy slices over the precomputed column-sparse weights.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

#: BM25 saturation and length normalisation (bm25s' defaults for Lucene's variant are 1.5 / 0.75).
K1 = 1.2
B = 0.75


@functools.cache
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased, stop words removed, Snowball-stemmed word tokens for each text."""
    import bm25s

    if not texts:
        return []
    return bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False
    )


class LexicalIndex:
    """BM25 over a fixed list of documents (rebuilt, not updated, when the corpus changes).

    ``doc_ids`` name the documents in order; scores come back as (n_docs,) float32 arrays in
    that order, normalised to [0, 1] per query.
    """

    def __init__(self, doc_ids: list[str], data, indices, indptr, vocab: dict[str, int]) -> None:
        self.doc_ids = doc_ids
        self.position = {d: i for i, d in enumerate(doc_ids)}
        self._data = np.asarray(data, np.float32)
        self._indices = np.asarray(indices, np.int64)
        self._indptr = np.asarray(indptr, np.int64)
        self._vocab = vocab
        n = len(doc_ids)
        df = np.diff(self._indptr).astype(np.float64)
        # Lucene's idf, the largest weight a term can contribute to any document
        self._idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        self._by_doc = None  # document-by-term weights, built on first pair scoring

    def __len__(self) -> int:
        return len(self.doc_ids)

    @classmethod
    def build(cls, doc_ids: Sequence[str], texts: Sequence[str]) -> LexicalIndex:
        """Index ``texts`` (one per id)."""
        import bm25s

        if len(doc_ids) != len(texts):
            raise ValueError(f"{len(doc_ids)} ids for {len(texts)} texts")
        tokens = tokenize(texts)
        if not any(tokens):  # no texts, or none with an indexable word ("C#", "🙂", stop words)
            return cls(list(doc_ids), [], [], [0], {})
        model = bm25s.BM25(k1=K1, b=B, method="lucene")
        model.index(tokens, show_progress=False)
        s = model.scores
        data, indices, indptr = np.asarray(s["data"]), np.asarray(s["indices"]), np.asarray(s["indptr"])
        # bm25s numbers terms in set order, which Python salts per process; renumbered
        # alphabetically, every sum over a query's terms runs in one order, so a score is the
        # same to the last bit in every run
        columns = len(indptr) - 1  # the "" token bm25s adds may have no column: it stays last
        terms = sorted(t for t, i in model.vocab_dict.items() if i < columns)
        terms += sorted(t for t, i in model.vocab_dict.items() if i >= columns)
        old = np.array([model.vocab_dict[t] for t in terms[:columns]], np.int64)
        lengths = np.diff(indptr)[old]
        new_indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(indptr.dtype)
        # entry k of new column j is entry k of old column old[j]
        take = np.repeat(indptr[old] - new_indptr[:-1], lengths) + np.arange(new_indptr[-1])
        vocab = {t: i for i, t in enumerate(terms)}
        return cls(list(doc_ids), data[take], indices[take], new_indptr, vocab)

    def _term_ids(self, text: str) -> np.ndarray:
        return self._ids_of(tokenize([text])[0])

    def _ids_of(self, tokens: Sequence[str]) -> np.ndarray:
        ids = {self._vocab[t] for t in tokens if t in self._vocab}
        # the empty-string token bm25s adds for empty documents is never a query term
        ids.discard(self._vocab.get("", -1))
        return np.fromiter(sorted(ids), np.int64, len(ids))

    def idf(self, token: str) -> float:
        """Lucene's idf of a stemmed token; a token no document has gets the highest idf."""
        j = self._vocab.get(token)
        if j is None or j >= len(self._idf):
            return float(np.log1p((len(self.doc_ids) + 0.5) / 0.5))
        return float(self._idf[j])

    def scores(self, text: str) -> np.ndarray:
        """Normalised BM25 of every document for query ``text``: (n_docs,) float32 in [0, 1]."""
        out = np.zeros(len(self.doc_ids), np.float32)
        terms = self._term_ids(text)
        if not len(terms):
            return out
        for t in terms.tolist():
            lo, hi = self._indptr[t], self._indptr[t + 1]
            out[self._indices[lo:hi]] += self._data[lo:hi]
        out /= self._idf[terms].sum()
        return np.minimum(out, 1.0, out=out)

    def score_pairs(
        self, texts: Sequence[str], doc_ids: Sequence[str], tokens: Mapping[str, list[str]] | None = None
    ) -> np.ndarray:
        """Normalised BM25 of document ``doc_ids[i]`` for query ``texts[i]``: (n,) float32.

        The same values as :meth:`scores`, computed per pair from a document-by-term matrix, so
        scoring many pairs does not walk every posting list of every query. ``tokens`` maps texts
        to their :func:`tokenize` output where the caller has it already.
        """
        from scipy.sparse import csc_matrix

        if self._by_doc is None:
            shape = (len(self.doc_ids), len(self._indptr) - 1)
            self._by_doc = csc_matrix((self._data, self._indices, self._indptr), shape=shape).tocsr()
        out = np.zeros(len(texts), np.float32)
        # each distinct text is tokenised once, in one batch (tokenising one by one dominates)
        distinct = list(dict.fromkeys(texts))
        if tokens is None:
            tokens = dict(zip(distinct, tokenize(distinct), strict=True))
        terms_of = {text: self._ids_of(tokens[text]) for text in distinct}
        by_doc = self._by_doc
        for i, (text, doc) in enumerate(zip(texts, doc_ids, strict=True)):
            terms = terms_of[text]
            if not len(terms):
                continue
            r = self.position[doc]
            lo, hi = by_doc.indptr[r], by_doc.indptr[r + 1]
            hit = np.isin(by_doc.indices[lo:hi], terms)
            out[i] = min(float(by_doc.data[lo:hi][hit].sum()) / float(self._idf[terms].sum()), 1.0)
        return out

    def save(self, path: str | Path) -> None:
        """One ``.npz`` file (the weights, the vocabulary and the document ids)."""
        vocab = sorted(self._vocab.items(), key=lambda kv: kv[1])
        with open(path, "wb") as fh:
            np.savez(
                fh,
                data=self._data,
                indices=self._indices,
                indptr=self._indptr,
                vocab=np.array(json.dumps([t for t, _ in vocab])),
                vocab_ids=np.array([i for _, i in vocab], np.int64),
                doc_ids=np.array(json.dumps(self.doc_ids)),
            )

    @classmethod
    def load(cls, path: str | Path) -> LexicalIndex:
        with np.load(path, allow_pickle=False) as z:
            terms = json.loads(str(z["vocab"]))
            vocab = dict(zip(terms, z["vocab_ids"].tolist(), strict=True))
            return cls(json.loads(str(z["doc_ids"])), z["data"], z["indices"], z["indptr"], vocab)

"""Each search hit's relevance: the signals of :mod:`qa_search.scoring.relevance` measured on
an index, and the model that turns them into a probability.

The model comes with the index's embedding model (the package ships one for the default model,
see :mod:`qa_search.embedding.model_defaults`); an index whose model has none gives hits no
relevance (None), and a ``min_relevance`` cut then keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qa_search.index.contents import IndexContents
from qa_search.index.defaults import shipped_relevance
from qa_search.scoring.analyser import tokenize
from qa_search.scoring.relevance import RelevanceModel, relevance_rows


def relevance_model(index: IndexContents) -> RelevanceModel | None:
    """The relevance model for the index's embedding model (the shipped one recorded in its
    snapshot, else the package's, see :mod:`.defaults`), or None where none was fitted."""
    return shipped_relevance(index)


def hit_signals(
    index: IndexContents,
    text: str,
    hits: Sequence[tuple[str, float]],
    lexical: Sequence[float] | None = None,
    viewer: frozenset[str] | None = None,
) -> np.ndarray:
    """The relevance signals of one query's hits ``(thread id, dense score)``, best first:
    (n, len(FEATURES)) float64 (see :func:`~qa_search.scoring.relevance.relevance_rows`).
    ``lexical``: the hits' normalised BM25 where the caller has it (search adds it into the
    score), else measured here. ``viewer``: the caller's groups, whose threads alone decide
    which of the query's words are known (see :meth:`.contents.IndexContents.lexical_for`)."""
    lexical_index = index.lexical_for(viewer)
    tokens = tokenize([text], lexical_index.language)[0]
    known = len(lexical_index.query_terms(tokens))
    tids = [tid for tid, _ in hits]
    if lexical is None:
        measured = lexical_index.score_pairs([text] * len(tids), tids, {text: tokens}).tolist()
        return relevance_rows([d for _, d in hits], measured, len(set(tokens)), known)
    return relevance_rows([d for _, d in hits], lexical, len(set(tokens)), known)


def hit_relevance(
    index: IndexContents,
    text: str,
    hits: Sequence[tuple[str, float]],
    lexical: Sequence[float] | None = None,
    viewer: frozenset[str] | None = None,
) -> list[float | None]:
    """Each hit's relevance in [0, 1] (None for every hit where the model has no relevance
    model), in the order given; ``hits``, ``lexical`` and ``viewer`` as :func:`hit_signals`
    takes them."""
    model = relevance_model(index)
    if model is None or not hits:
        return [None] * len(hits)
    return [float(p) for p in model.probability(hit_signals(index, text, hits, lexical, viewer))]

"""The duplicate calibration an index uses while it has none of its own: the one the package
ships for its embedding model, put on the forum's cosine scale.

A forum's own calibration (:func:`.duplicates.calibrate`) always wins. Without one, the shipped
calibration (fitted on public pairs, see :mod:`qa_search.embedding.model_defaults`) scores
pairs after the forum's cosines are mapped onto the scale of the forums it was fitted on
(:meth:`~qa_search.scoring.calibration.Calibration.for_forum`), the scale being the quartiles
of each question's cosine with its nearest other question, measured on a sample of the forum's
questions once per size the index passes (it moves little as a forum grows).
"""

from __future__ import annotations

import functools

import numpy as np

from qa_search.embedding.model_defaults import model_defaults
from qa_search.index.contents import IndexContents
from qa_search.scoring.calibration import Calibration

#: Questions whose nearest neighbour is measured for the forum's cosine scale (evenly spread).
SCALE_SAMPLE = 2000
#: Fewer questions than this and the forum's scale is not measured: the cosines are used as
#: they are.
SCALE_MIN_QUESTIONS = 20


@functools.cache
def _shipped(model: str) -> Calibration | None:
    data = model_defaults(model).get("duplicate_calibration")
    return None if data is None else Calibration.from_dict(data)


def neighbour_quartiles(
    index: IndexContents, sample: int = SCALE_SAMPLE
) -> tuple[float, float, float] | None:
    """The quartiles of the cosine between a question and its nearest other question, over up
    to ``sample`` of the index's questions spread evenly through it; None under
    :data:`SCALE_MIN_QUESTIONS` questions."""
    questions = index.question_index
    n = len(questions)
    if n < SCALE_MIN_QUESTIONS:
        return None
    _, vecs = questions.vectors()
    rows = vecs[np.linspace(0, len(vecs) - 1, min(sample, len(vecs))).astype(np.int64)]
    scores, ids = questions.search(rows, 2)
    # a question finds itself first (cosine 1), and its nearest other second
    nearest = np.where(scores[:, 0] >= 0.9999, scores[:, 1], scores[:, 0])
    nearest = nearest[ids[:, 1] >= 0]
    q = np.quantile(nearest, [0.25, 0.5, 0.75])
    return float(q[0]), float(q[1]), float(q[2])


def duplicate_calibration(index: IndexContents) -> Calibration | None:
    """The calibration duplicate verdicts use: the index's own, else the shipped one for its
    model on the forum's cosine scale, else None (raw cosines)."""
    if index.calibration is not None:
        return index.calibration
    shipped = _shipped(index.embedder.name)
    if shipped is None:
        return None
    n = len(index.question_index)
    cached = index.__dict__.get("_shipped_calibration")
    # measured again once the forum has grown or shrunk by a quarter since
    if cached is None or not 0.8 * cached[0] <= n <= 1.25 * cached[0] or cached[1] is not shipped:
        quartiles = neighbour_quartiles(index)
        adapted = shipped if quartiles is None else shipped.for_forum(quartiles)
        cached = (max(n, 1), shipped, adapted)
        index.__dict__["_shipped_calibration"] = cached
    return cached[2]

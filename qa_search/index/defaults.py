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

import logging
import threading

import numpy as np

from qa_search.embedding.model_defaults import ShippedDefaults, package_defaults
from qa_search.index.contents import IndexContents
from qa_search.scoring.calibration import Calibration
from qa_search.scoring.relevance import RelevanceModel

log = logging.getLogger(__name__)

#: Questions whose nearest neighbour is measured for the forum's cosine scale (evenly spread).
SCALE_SAMPLE = 2000
#: Fewer questions than this and the forum's scale is not measured: the cosines are used as
#: they are.
SCALE_MIN_QUESTIONS = 20


#: Parsed parts of shipped defaults, by their SHA-256 and part (a handful at most).
_parsed: dict[tuple[str, str], Calibration | RelevanceModel | None] = {}


def shipped_defaults(index: IndexContents) -> ShippedDefaults | None:
    """The shipped defaults ``index`` uses: those recorded in its snapshot, else the package's
    current ones for its model (None where its model has none)."""
    if index.shipped_defaults is not None:
        return index.shipped_defaults
    return package_defaults(index.embedder.name)


def refresh_defaults(index: IndexContents) -> bool:
    """Make ``index`` use (and record, when saved) the package's current shipped defaults for
    its model; True when that changes what it uses."""
    current = package_defaults(index.embedder.name)
    before = shipped_defaults(index)
    index.shipped_defaults = current
    return (None if before is None else before.sha256) != (None if current is None else current.sha256)


def _part(defaults: ShippedDefaults | None, part: str) -> Calibration | RelevanceModel | None:
    if defaults is None:
        return None
    key = (defaults.sha256, part)
    if key not in _parsed:
        data = defaults.content.get(part)
        parse = Calibration.from_dict if part == "duplicate_calibration" else RelevanceModel.from_dict
        try:
            _parsed[key] = None if data is None else parse(data)
        except (ValueError, KeyError, TypeError) as exc:
            # recorded by another version of the package: its part cannot be read here
            log.warning("the recorded shipped %s cannot be used (%s): none is applied", part, exc)
            _parsed[key] = None
    return _parsed[key]


def shipped_calibration(index: IndexContents) -> Calibration | None:
    """The shipped duplicate calibration ``index`` uses (not yet on its cosine scale), or None."""
    got = _part(shipped_defaults(index), "duplicate_calibration")
    return got if isinstance(got, Calibration) else None


def shipped_relevance(index: IndexContents) -> RelevanceModel | None:
    """The shipped relevance model ``index`` uses, or None."""
    got = _part(shipped_defaults(index), "relevance")
    return got if isinstance(got, RelevanceModel) else None


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
    model on the forum's cosine scale, else None (raw cosines).

    The forum's scale is measured by one caller at a time per index: the requests that arrive
    together on a fresh index wait for the first one's measure rather than each making it."""
    if index.calibration is not None:
        return index.calibration
    shipped = shipped_calibration(index)
    if shipped is None:
        return None
    n = len(index.question_index)
    cached = _scaled(index, shipped, n)
    if cached is None:
        # callers hold the index's read lock; the measure under this one takes no other lock, so
        # a write waiting for the readers waits for one measure at most, and never deadlocks
        with index.__dict__.setdefault("_shipped_calibration_lock", threading.Lock()):
            cached = _scaled(index, shipped, n)
            if cached is None:
                quartiles = neighbour_quartiles(index)
                cached = shipped if quartiles is None else shipped.for_forum(quartiles)
                index.__dict__["_shipped_calibration"] = (max(n, 1), shipped, cached)
    return cached


def _scaled(index: IndexContents, shipped: Calibration, n: int) -> Calibration | None:
    """The shipped calibration on the forum's scale as last measured, unless the forum has grown
    or shrunk by a quarter since (or the shipped one changed): then None, to measure again."""
    cached = index.__dict__.get("_shipped_calibration")
    if cached is None or not 0.8 * cached[0] <= n <= 1.25 * cached[0] or cached[1] is not shipped:
        return None
    return cached[2]

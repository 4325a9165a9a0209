"""What the package ships fitted for a model: its search relevance and duplicate calibration.

A forum with no labelled pairs still needs a "no match" and duplicate probabilities that mean
what they say. Both depend on the model's score scale, not on the forum, so they are fitted once
per model on public data (``benchmarks/relevance.py``, ``benchmarks/default_calibration.py``)
and shipped as ``defaults/<model key>.json``. Only the packaged default model has them; a tuned
or other model has none.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from qa_search.embedding.models import DEFAULT_MODEL

#: Model name -> the file in ``defaults/`` holding what was fitted for it.
_FILES = {DEFAULT_MODEL: "all-MiniLM-L6-v2.json"}


@functools.cache
def _read(filename: str) -> dict:
    return json.loads(resources.files(__package__).joinpath(f"defaults/{filename}").read_text("utf-8"))


def model_defaults(model: str) -> dict:
    """The shipped defaults for the model named ``model`` (as a manifest records it):
    ``{"relevance": {...} | absent, "duplicate_calibration": {...} | absent}``; ``{}`` for a
    model with none. The caller turns each part into its typed model."""
    filename = _FILES.get(model)
    return _read(filename) if filename is not None else {}

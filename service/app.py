"""The FastAPI application. Routes parse, make one library call and return a response model.

The index is loaded once, in the lifespan, and shared through ``app.state``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request

from qa_search import ForumIndex

from .schemas import Health, Hit, SearchResponse
from .settings import Settings


class _DropQueryString(logging.Filter):
    """Strip the query string from uvicorn's access-log lines: queries are users' private text."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def _protect_access_log(settings: Settings) -> None:
    access = logging.getLogger("uvicorn.access")
    for f in list(access.filters):
        if isinstance(f, _DropQueryString):
            access.removeFilter(f)
    if not settings.log_queries:
        access.addFilter(_DropQueryString())


def get_index(request: Request) -> ForumIndex:
    """The index loaded in the lifespan."""
    return request.app.state.index


IndexDep = Annotated[ForumIndex, Depends(get_index)]


def create_app(settings: Settings | None = None, index: ForumIndex | None = None) -> FastAPI:
    """Build the app. An already loaded ``index`` is served as is; otherwise the lifespan loads
    ``settings.index_dir``."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _protect_access_log(settings)
        app.state.settings = settings
        app.state.index = index if index is not None else ForumIndex.load(settings.index_dir)
        yield

    app = FastAPI(
        title="qa_search",
        summary="Similar threads and likely duplicates for a Q&A forum.",
        version="0.1.0",
        lifespan=lifespan,
    )

    @app.get("/healthz", response_model=Health, summary="Liveness")
    def healthz() -> Health:
        return Health()

    @app.get("/v1/search", response_model=SearchResponse, summary="Similar threads")
    def search(
        index: IndexDep,
        q: Annotated[str, Query(min_length=1, description="The text typed so far.")],
        k: Annotated[int | None, Query(ge=1, description="Threads to return [default: 10].")] = None,
    ) -> SearchResponse:
        k = min(10, settings.max_k) if k is None else k
        if k > settings.max_k:
            raise HTTPException(422, f"k must be at most {settings.max_k}")
        if len(q) > settings.max_query_chars:
            raise HTTPException(422, f"q must be at most {settings.max_query_chars} characters")
        if not q.strip():
            raise HTTPException(422, "q must contain some text")
        hits = index.search(q, k=k)
        return SearchResponse(hits=[Hit(**h.to_dict()) for h in hits])

    return app

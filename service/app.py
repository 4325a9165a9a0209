"""The FastAPI application: ``create_app`` assembles the routers, the guard, the error handlers
and the lifespan, which loads the index once into a :class:`~qa_search.LiveIndex` (shared
through ``app.state.live``) that also follows newly published generations and other processes'
writes.

Modules: ``routes/`` (one router per concern), ``deps`` (typed dependencies), ``schemas``
(request and response models), ``guard`` (the outermost ASGI checks), ``errors`` (HTTP
translation of errors), ``lifespan``, ``logs``, ``metrics``, ``settings``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from qa_search import Embedder, __version__

from .errors import add_error_handlers
from .guard import RequestGuard
from .lifespan import lifespan
from .metrics import Metrics
from .routes import ROUTERS
from .routes.pages import DOCS_ASSETS, STATIC, SWAGGER_UI
from .settings import Settings


def create_app(settings: Settings | None = None, embedder: Embedder | None = None) -> FastAPI:
    """Build the app over ``settings.index_dir``. ``embedder`` replaces the model named in the
    snapshot's manifest (tests pass a fake one); with no arguments, settings come from the
    environment (the form ``uvicorn --factory service.app:create_app`` uses)."""
    settings = settings or Settings()
    metrics = Metrics()
    app = FastAPI(
        title="qa_search",
        summary="Similar threads and likely duplicates for a Q&A forum.",
        version=__version__,
        lifespan=lifespan(settings, metrics, embedder),
        docs_url=None,  # served from local files by routes.pages
        redoc_url=None,
        # Starlette's redirect to the path without its trailing slash builds the Location from
        # the Host header and repeats the query's text in it: /v1/search/ is a 404 instead
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.add_middleware(RequestGuard, settings=settings, metrics=metrics)
    if settings.cors_origins:  # added last, so outermost: the guard's own answers carry its headers
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type", "X-QA-Token"],
        )
    add_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_UI), name="static-docs")
    return app

"""The FastAPI application. Routes parse, make one library call and return a response model.

The index is loaded once, in the lifespan, into a :class:`~qa_search.LiveIndex` (shared
through ``app.state.live``), which also follows newly published generations and other
processes' writes.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote_to_bytes

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from qa_search import Embedder, LiveIndex, QASearchError, SnapshotError, Thread, thread_from_dict
from qa_search.errors import ReadOnlyIndexError
from qa_search.threads import check_portable
from qa_search.threads import check_text as threads_check_text

from .metrics import Metrics
from .schemas import (
    DraftQuestion,
    Duplicate,
    DuplicatesResponse,
    Health,
    Hit,
    Problem,
    Ready,
    SearchRequest,
    SearchResponse,
    UpsertRequest,
    WriteResponse,
)
from .settings import Settings

log = logging.getLogger("qa_search.service")
STATIC = Path(__file__).resolve().parent / "static"


class _DropQueryString(logging.Filter):
    """Strip the query string from the request lines uvicorn logs: queries are users' private
    text. Access-log lines carry the path as their third argument; the lines uvicorn's WebSocket
    protocols log on ``uvicorn.error`` (``'%s - "WebSocket %s" 403'``, when a WebSocket library
    is installed) as their second."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(record.msg, str) and '"WebSocket %s"' in record.msg:
            at = 1
        elif record.name == "uvicorn.access":
            at = 2
        else:  # the server's other lines name no request
            return True
        if isinstance(args, tuple) and len(args) > at and isinstance(args[at], str):
            record.args = (*args[:at], args[at].split("?", 1)[0], *args[at + 1:])
        return True


def _protect_access_log(settings: Settings) -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        for f in list(logger.filters):
            if isinstance(f, _DropQueryString):
                logger.removeFilter(f)
        if not settings.log_queries:
            logger.addFilter(_DropQueryString())


def _set_threads(n: int | None) -> None:
    if n is None:
        return
    import faiss
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


class _Guard:
    """Outermost checks, before any routing: a query string that is not UTF-8 and a body over
    the limit get a 4xx; an unexpected error gets a 500 logged without the request's text.
    It also times every request for the metrics."""

    def __init__(self, app, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                # which worker process answered: for operators (and tests) of a multi-worker server
                worker = (b"x-qa-search-worker", str(os.getpid()).encode())
                message = {**message, "headers": [*message.get("headers", []), worker]}
            await send(message)

        try:
            await self._guarded(scope, receive, send_status, status)
        except Exception as exc:
            self._log_error(scope, exc)
            if status["code"] == 500:  # nothing sent yet
                await _problem(500, "internal error; the request's text was not logged")(
                    scope, receive, send_status
                )
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"  # labels stay few
            self.metrics.observe(template, method, status["code"], time.perf_counter() - started)

    async def _guarded(self, scope, receive, send, status: dict) -> None:
        try:
            unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            msg = "the query string is not valid UTF-8: percent-encode the text's UTF-8 bytes"
            await _problem(400, msg)(scope, receive, send)
            return
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            limit = self.settings.max_body_bytes
            too_big = f"the request body is over {limit} bytes: send fewer or shorter threads per request"
            headers = dict(scope.get("headers") or [])
            declared = headers.get(b"content-length", b"").decode("latin-1")
            if declared.isdigit() and int(declared) > limit:
                await _problem(413, too_big)(scope, receive, send)
                return
            chunks, size = [], 0
            while True:  # read it all here (it is bounded), so a lying Content-Length cannot pass
                message = await receive()
                if message["type"] == "http.disconnect":
                    status["code"] = CLIENT_GONE  # nothing was sent: not a server error
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    await _problem(413, too_big)(scope, receive, send)
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)

    def _log_error(self, scope, exc: Exception) -> None:
        if self.settings.log_queries:
            log.error("error on %s %s?%s", scope["method"], scope["path"],
                      scope.get("query_string", b"").decode("latin-1"), exc_info=exc)
        else:  # the type and the stack, but not the message: it may quote the user's text
            stack = "".join(traceback.format_tb(exc.__traceback__))
            log.error("error on %s %s: %s\n%s", scope["method"], scope["path"], type(exc).__name__, stack)


@contextmanager
def _write_errors() -> Iterator[None]:
    """A single snapshot is served read-only (409). A damaged write-log line refuses writes (a
    503 naming it) until an operator repairs it; searches go on over what was applied."""
    try:
        yield
    except ReadOnlyIndexError as exc:
        raise HTTPException(409, str(exc)) from None
    except SnapshotError as exc:
        raise HTTPException(503, f"writes are suspended: {exc}") from None


#: Methods counted under their own name in the metrics; any other (HTTP allows made-up ones)
#: is counted as "other", so a client cannot grow the label set without bound.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Status recorded for a request whose client went away before its body arrived (nginx's 499).
CLIENT_GONE = 499


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 listing each problem's place and message. FastAPI's own handler also echoes the
    offending input, which fails to render (a 500) for a NaN, an infinity or a lone surrogate,
    and would put the user's text into a response that may end up in logs."""
    problems = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "invalid")),
                 "type": str(e.get("type", "value_error"))} for e in exc.errors()]
    return JSONResponse({"detail": problems}, status_code=422)


# -- dependencies ---------------------------------------------------------------------------


def get_live(request: Request) -> LiveIndex:
    live = getattr(request.app.state, "live", None)
    if live is None:
        raise HTTPException(503, "the index is still loading; retry shortly")
    return live


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


LiveDep = Annotated[LiveIndex, Depends(get_live)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The service's QA_SEARCH_API_KEY.")
_bearer = HTTPBearer(auto_error=False, description="Alternatively: Authorization: Bearer <key>.")


def require_key(
    settings: SettingsDep,
    key: Annotated[str | None, Depends(_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Writes need the configured key, compared in constant time."""
    if settings.api_key is None:
        raise HTTPException(403, "writes are disabled: set QA_SEARCH_API_KEY on the service to enable them")
    given = key if key is not None else (bearer.credentials if bearer is not None else None)
    if not given:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header "
                            "(or Authorization: Bearer)",
                            headers={"WWW-Authenticate": "Bearer"})
    expected = settings.api_key.get_secret_value().encode()
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
        raise HTTPException(403, "wrong API key")


_ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 413: {"model": Problem}, 422: {}}


# -- the app --------------------------------------------------------------------------------


def create_app(settings: Settings | None = None, embedder: Embedder | None = None) -> FastAPI:
    """Build the app over ``settings.index_dir``. ``embedder`` replaces the model named in the
    snapshot's manifest (tests pass a fake one); with no arguments, settings come from the
    environment (the form ``uvicorn --factory service.app:create_app`` uses)."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _protect_access_log(settings)
        _set_threads(settings.threads)
        app.state.settings = settings
        # without a given embedder, the recorded model's encoder too keeps to QA_SEARCH_THREADS
        try:
            live = LiveIndex(settings.index_dir, embedder, cache_size=settings.cache_size,
                             threads=settings.threads)
        except Exception as exc:
            _report_startup_failure(settings, exc)
            raise
        metrics.track(live)
        live.start(settings.poll_seconds)
        app.state.live = live
        try:
            yield
        finally:
            live.stop()

    app = FastAPI(
        title="qa_search",
        summary="Similar threads and likely duplicates for a Q&A forum.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(_Guard, settings=settings, metrics=metrics)
    if settings.cors_origins:  # added last, so outermost: the guard's own answers carry its headers
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def check_text(text: str, what: str) -> None:
        try:  # JSON's "\ud83d" escapes: half an emoji, cut by a client
            threads_check_text(text, what)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    def check_query(q: str, what: str = "q") -> str | None:
        """The query to run, or None when it is too short to be worth a search."""
        if len(q) > settings.max_query_chars:
            raise HTTPException(422, f"{what} must be at most {settings.max_query_chars} characters")
        check_text(q, what)
        text = q.strip()
        return text if len(text) >= settings.min_query_chars else None

    def check_k(k: int | None, default: int) -> int:
        if k is None:
            return min(default, settings.max_k)
        if k > settings.max_k:
            raise HTTPException(422, f"k must be at most {settings.max_k}")
        return k

    @app.head("/", include_in_schema=False)  # uptime checkers often ask with HEAD
    @app.get("/", include_in_schema=False)
    def demo() -> FileResponse:
        # the page loads only its own files; nothing inline, nothing from elsewhere, no framing
        policy = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": policy})

    @app.head("/healthz", include_in_schema=False)
    @app.get("/healthz", response_model=Health, summary="Liveness")
    def healthz() -> Health:
        return Health()

    @app.head("/readyz", include_in_schema=False)
    @app.get("/readyz", response_model=Ready, summary="Readiness: the index is loaded",
             responses={503: {"model": Problem}})
    def readyz(live: LiveDep) -> Ready:
        return Ready(generation=live.generation, threads=len(live.index))

    @app.get("/metrics", include_in_schema=False)
    def metrics_page() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/search", response_model=SearchResponse, summary="Similar threads (typeahead)",
             responses=_ERRORS)
    def search(
        live: LiveDep,
        q: Annotated[str, Query(description="The text typed so far.",
                                examples=["my therapist made a mistake"])],
        k: Annotated[int | None, Query(ge=1, description="Threads to return [default: 10].")] = None,
        tags: Annotated[list[str] | None, Query(
            description="Keep threads with any of these tags (an empty value is ignored).")] = None,
        category: Annotated[str | None, Query(
            description="Keep threads of this category (empty: no filter).")] = None,
    ) -> SearchResponse:
        return run_search(live, q, k, tags, category)

    @app.post("/v1/search", response_model=SearchResponse, summary="Similar threads, the text in the body",
              responses=_ERRORS)
    def search_posted(live: LiveDep, request: SearchRequest) -> SearchResponse:
        return run_search(live, request.q, request.k, request.tags, request.category)

    def run_search(
        live: LiveIndex, q: str, k: int | None, tags: list[str] | None, category: str | None
    ) -> SearchResponse:
        k = check_k(k, 10)
        text = check_query(q)
        if text is None:
            return SearchResponse(hits=[])
        with live.reading() as index:  # empty tags= / category= (a form's blank fields) filter nothing
            hits = index.search(text, k=k, tags=tags, category=category)
        return SearchResponse(hits=[Hit(**h.to_dict()) for h in hits])

    def duplicates_of(
        live: LiveIndex, text: str | None, k: int, threshold: float | None
    ) -> DuplicatesResponse:
        if text is None:
            return DuplicatesResponse(duplicates=[])
        with live.reading() as index:
            dups = index.find_duplicates(text, threshold=threshold, k=k)
        return DuplicatesResponse(duplicates=[Duplicate(**d.to_dict()) for d in dups])

    @app.get("/v1/duplicates", response_model=DuplicatesResponse, summary="Likely duplicates of a question",
             responses=_ERRORS)
    def duplicates(
        live: LiveDep,
        q: Annotated[str, Query(description="The question (title, then body).",
                                examples=["How do therapists deal with their mistakes?"])],
        k: Annotated[int | None, Query(ge=1, description="Most duplicates to return [default: 5].")] = None,
        threshold: Annotated[float | None, Query(ge=-1, le=1, description="Lowest question cosine "
                                                 "[default: the index's duplicate_threshold, or its "
                                                 "tiers once it is calibrated].")] = None,
    ) -> DuplicatesResponse:
        return duplicates_of(live, check_query(q), check_k(k, 5), threshold)

    @app.post("/v1/duplicates", response_model=DuplicatesResponse, summary="Likely duplicates of a draft",
              responses=_ERRORS)
    def duplicates_of_draft(live: LiveDep, draft: DraftQuestion) -> DuplicatesResponse:
        check_query(draft.title, "title")
        check_text(draft.body, "body")
        # a long draft is read up to QA_SEARCH_MAX_QUERY_CHARS characters (the model reads less)
        text = Thread("draft", draft.title, draft.body).question_text[: settings.max_query_chars]
        text = check_query(text, "the title and body")
        return duplicates_of(live, text, check_k(draft.k, 5), None)

    @app.post("/v1/threads", response_model=WriteResponse, summary="Add or replace threads",
              dependencies=[Depends(require_key)], responses=_ERRORS)
    def upsert(live: LiveDep, request: UpsertRequest) -> WriteResponse:
        if len(request.threads) > settings.max_batch_threads:
            raise HTTPException(
                413, f"at most {settings.max_batch_threads} threads per request: split the batch"
            )
        threads = []
        for i, t in enumerate(request.threads):
            try:
                # fields the request set, nulls included (an extra field may be null, as in a dump)
                threads.append(check_portable(thread_from_dict(t.model_dump(exclude_unset=True))))
            except ValueError as exc:
                raise HTTPException(422, f"threads[{i}]: {exc}") from None
        with _write_errors():
            entry = live.upsert(threads)
        return WriteResponse(seq=entry.seq, threads=len({t.id for t in threads}), generation=live.generation)

    @app.delete("/v1/threads/{thread_id:path}", response_model=WriteResponse, summary="Delete a thread",
                dependencies=[Depends(require_key)], responses={**_ERRORS, 404: {"model": Problem}})
    def delete(
        live: LiveDep,
        thread_id: Annotated[str, PathParam(min_length=1, description="The thread's id, percent-encoded "
                                            "(an id may hold '/').")],
    ) -> WriteResponse:
        thread_id = thread_id.strip()  # ids are stored trimmed
        with live.reading() as index:
            present = thread_id in index
        if not present:
            raise HTTPException(404, f"no thread with id {thread_id!r} in the index; nothing was deleted")
        with _write_errors():
            entry = live.delete([thread_id])
        return WriteResponse(seq=entry.seq, threads=1, generation=live.generation)

    return app

"""The outermost ASGI layer, before any routing: a query string that is not UTF-8 and a body over
the limit get a 4xx; an unexpected error gets a 500 logged without the request's text; every
request is timed for the metrics and says which worker process answered it."""

from __future__ import annotations

import logging
import os
import time
import traceback
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import problem
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("qa_search.service")

#: Methods counted under their own name in the metrics; any other (HTTP allows made-up ones)
#: is counted as "other", so a client cannot grow the label set without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Status recorded for a request whose client went away before its body arrived (nginx's 499).
CLIENT_GONE = 499
#: Methods whose body the guard reads (and bounds) before the app sees it.
_WITH_BODY = ("POST", "PUT", "PATCH", "DELETE")


class RequestGuard:
    """ASGI middleware over the whole app (see the module's docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: Message) -> None:
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
                await problem(500, "internal error; the request's text was not logged")(
                    scope, receive, send_status
                )
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"  # labels stay few
            self.metrics.observe(template, method, status["code"], time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, status: dict) -> None:
        try:
            unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            msg = "the query string is not valid UTF-8: percent-encode the text's UTF-8 bytes"
            await problem(400, msg)(scope, receive, send)
            return
        if scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_body_bytes
        too_big = f"the request body is over {limit} bytes: send fewer or shorter threads per request"
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            await problem(413, too_big)(scope, receive, send)
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
                await problem(413, too_big)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _log_error(self, scope: Scope, exc: Exception) -> None:
        if self.settings.log_queries:
            log.error("error on %s %s?%s", scope["method"], scope["path"],
                      scope.get("query_string", b"").decode("latin-1"), exc_info=exc)
        else:  # the type and the stack, but not the message: it may quote the user's text
            stack = "".join(traceback.format_tb(exc.__traceback__))
            log.error("error on %s %s: %s\n%s", scope["method"], scope["path"], type(exc).__name__, stack)

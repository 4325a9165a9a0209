"""The outermost ASGI layer, before any routing and before any body is read or parsed: a client
over its rate gets a 429, a write without the right key a 401 or 403, a query string that is not
UTF-8 a 400, a JSON route's body declared as something else a 415, a body over its route's limit
a 413 (reads have a smaller one than writes) and one that comes too slowly a 408; an unexpected error
gets a 500 logged without the request's text; every request is timed for the metrics and says
which worker process answered it.

:class:`HeaderTimeoutH11Protocol` is the server's side of the same: uvicorn's HTTP/1.1 protocol
with a deadline on a request's line and headers, which uvicorn does not have."""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import logging
import math
import os
import time
import traceback
from typing import Any
from urllib.parse import unquote_to_bytes

import h11
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import problem
from .metrics import Metrics
from .schemas import BATCH_LIMIT, read_body_limit
from .settings import Settings

log = logging.getLogger("qa_search.service")

#: Methods counted under their own name in the metrics; any other (HTTP allows made-up ones)
#: is counted as "other", so a client cannot grow the label set without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Status recorded for a request whose client went away before its body arrived (nginx's 499).
CLIENT_GONE = 499
#: Methods whose body the guard reads (and bounds) before the app sees it.
_WITH_BODY = ("POST", "PUT", "PATCH", "DELETE")
#: Routes under the read and the write rate, and those that need the API key (with a body method).
#: /metrics is a read: with a metrics key set, wrong keys are counted.
_READS = ("/v1/search", "/v1/duplicates", "/v1/moderation/duplicates", "/v1/moderation/duplicates.csv",
          "/metrics")
_WRITES = "/v1/threads"
#: Writes that authenticate by the signature on their body, not by the API key: the body limit
#: and the write rate apply, the key check does not.
_WEBHOOKS = "/v1/webhooks/"
#: Routes whose POST body is a JSON request model (the webhooks read their signed bytes as JSON
#: whatever they are declared as, as a forum may send them).
_JSON_BODIES = frozenset({"/v1/search", "/v1/duplicates", "/v1/threads"})
#: How to bring a read's body under its limit, by route (a write's: _FEWER_THREADS).
_SHORTER = {"/v1/search": "send a shorter query (q) or fewer filters",
            "/v1/duplicates": "send a shorter draft (only the first QA_SEARCH_MAX_QUERY_CHARS characters "
                              "of its title and body are read)"}
_FEWER_THREADS = "send fewer or shorter threads per request"


def key_refusal(settings: Settings, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
    """Why a write with these request headers is refused (status, detail), or None if its key is
    right: the same answers as ``deps.require_key``, given before the body is read."""
    if settings.api_key is None:
        return 403, "writes are disabled: set QA_SEARCH_API_KEY on the service to enable them"
    given = headers.get(b"x-api-key")
    if given is None:
        scheme, _, credentials = headers.get(b"authorization", b"").partition(b" ")
        given = credentials.strip() if scheme.lower() == b"bearer" else None
    if not given:
        return 401, "missing API key: send it in the X-API-Key header (or Authorization: Bearer)"
    # as deps.require_key sees it: the header decoded as latin-1 (Starlette's way), then UTF-8
    given = given.decode("latin-1").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, settings.api_key.get_secret_value().encode()):
        return 403, "wrong API key"
    return None


class RateLimits:
    """Requests per client address for reads and for writes, counted in this process's memory (a
    moving window): each worker counts its own, so N workers let a client make up to N times the
    rate."""

    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        # "10/second;300/minute" is several limits, all applied
        self._rates: dict[str, list[RateLimitItem]] = {
            "read": parse_many(settings.read_rate) if settings.read_rate else [],
            "write": parse_many(settings.write_rate) if settings.write_rate else [],
        }

    def retry_after(self, kind: str, client: str) -> int | None:
        """Seconds until ``client`` may make a ``kind`` request again, or None if it may now (the
        request is counted)."""
        over = [rate for rate in self._rates[kind] if not self._limiter.hit(rate, kind, client)]
        if not over:
            return None
        reset = max(self._limiter.get_window_stats(rate, kind, client).reset_time for rate in over)
        return max(1, math.ceil(reset - time.time()))


def rate_key(host: str) -> str:
    """What a client at ``host`` is counted as: its address, or for IPv6 its /64, since a
    subscriber is given a whole /64 and could otherwise take a new rate from each of 2**64
    addresses (an IPv4 address written as IPv6, ``::ffff:a.b.c.d``, is that IPv4 address)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # not an address: a test client's name, a Unix socket
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return host


def declares_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request with these headers has its body read as JSON by the app: FastAPI's rule
    (``application/json`` or ``application/*+json``; strictly, so no Content-Type is not JSON,
    which keeps a browser's form posts from passing as JSON), on the first Content-Type, as
    FastAPI reads it. Any other body reaches a request model as bytes, and its 422 would not say
    that the header is what to fix."""
    declared = next((value for name, value in headers if name == b"content-type"), b"")
    main, _, sub = declared.split(b";", 1)[0].strip().lower().partition(b"/")
    return main == b"application" and (sub == b"json" or sub.endswith(b"+json"))


def _rate_kind(scope: Scope) -> str | None:
    path = scope["path"]
    if path == _WRITES or path.startswith((_WRITES + "/", _WEBHOOKS)):
        return "write"
    if path in _READS:
        return "read"
    return None


class RequestGuard:
    """ASGI middleware over the whole app (see the module's docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.rates = RateLimits(settings)
        #: The body limit of every route but the writes: what the largest valid search or
        #: duplicate check needs, so that unfinished bodies to the unauthenticated routes (which
        #: the guard holds until they are whole) pin far less than writes' limit.
        self.read_limit = min(settings.max_body_bytes,
                              read_body_limit(settings.max_query_chars, settings.max_k))

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

        batch_limit = BATCH_LIMIT.set(self.settings.max_batch_threads)
        try:
            await self._guarded(scope, receive, send_status, status)
        except Exception as exc:
            self._log_error(scope, exc)
            if status["code"] == 500:  # nothing sent yet
                await problem(500, "internal error; the request's text was not logged")(
                    scope, receive, send_status
                )
        finally:
            BATCH_LIMIT.reset(batch_limit)
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"  # labels stay few
            self.metrics.observe(template, method, status["code"], time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, status: dict) -> None:
        kind = _rate_kind(scope)
        if kind is not None:
            client = rate_key(scope["client"][0]) if scope.get("client") else "unknown"
            wait = self.rates.retry_after(kind, client)
            if wait is not None:
                response = problem(429, f"too many requests from this address: retry in {wait} s")
                response.headers["Retry-After"] = str(wait)
                await response(scope, receive, send)
                return
        headers = dict(scope.get("headers") or [])
        if kind == "write" and scope["method"] in _WITH_BODY and not scope["path"].startswith(_WEBHOOKS):
            refused = key_refusal(self.settings, headers)
            if refused is not None:  # before a byte of the body is read
                response = problem(*refused)
                if refused[0] == 401:
                    response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        try:
            unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            msg = "the query string is not valid UTF-8: percent-encode the text's UTF-8 bytes"
            await problem(400, msg)(scope, receive, send)
            return
        if scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        if kind == "write":
            limit, advice = self.settings.max_body_bytes, _FEWER_THREADS
        else:
            limit, advice = self.read_limit, _SHORTER.get(scope["path"], "this route takes no such body")
        too_big = f"the request body is over {limit} bytes: {advice}"
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            await problem(413, too_big)(scope, receive, send)
            return
        chunks: list[bytes] = []
        try:  # wait_for, not asyncio.timeout: Python 3.10 has no asyncio.timeout
            refusal = await asyncio.wait_for(self._read_body(receive, chunks, limit, status),
                                             self.settings.body_timeout)
        except asyncio.TimeoutError:
            refusal = (408, f"the request body did not arrive within {self.settings.body_timeout:g} s")
        if refusal is not None:
            await problem(refusal[0], refusal[1] or too_big)(scope, receive, send)
            return
        if status["code"] == CLIENT_GONE:
            return
        # after the body, so that one over the limit is a 413 and a client gone is not answered, as
        # for any other body
        json_route = scope["method"] == "POST" and scope["path"] in _JSON_BODIES
        if json_route and not declares_json(scope["headers"]):
            response = problem(415, "the body must be JSON sent with the header Content-Type: "
                                    "application/json (curl's -d alone sends a form: add "
                                    "-H 'Content-Type: application/json')")
            response.headers["Accept-Post"] = "application/json"
            await response(scope, receive, send)
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _read_body(receive: Receive, chunks: list[bytes], limit: int,
                         status: dict) -> tuple[int, str] | None:
        """Read the body into ``chunks``, all of it (it is bounded), so a lying Content-Length
        cannot pass; (413, "") once it is over ``limit``."""
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                status["code"] = CLIENT_GONE  # nothing was sent: not a server error
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return 413, ""
            chunks.append(chunk)
            if not message.get("more_body", False):
                return None

    def _log_error(self, scope: Scope, exc: Exception) -> None:
        if self.settings.log_queries:
            log.error("error on %s %s?%s", scope["method"], scope["path"],
                      scope.get("query_string", b"").decode("latin-1"), exc_info=exc)
        else:  # the type and the stack, but not the message: it may quote the user's text
            stack = "".join(traceback.format_tb(exc.__traceback__))
            log.error("error on %s %s: %s\n%s", scope["method"], scope["path"], type(exc).__name__, stack)


_TIMEOUT_TEXT = b"the request's headers did not arrive in time\r\n"
_REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(_TIMEOUT_TEXT), _TIMEOUT_TEXT))


#: Most bytes a request's line and headers may take, however they arrive: h11 bounds only
#: headers still arriving (16 KB by default) and takes whole a block that arrives in one read.
#: 64 KB holds a GET search of QA_SEARCH_MAX_QUERY_CHARS' default 2,000 emoji, percent-encoded.
MAX_HEADER_BYTES = 64 * 1024


class _BoundedHeaders(h11.Connection):
    """An h11 connection that refuses a request whose line and headers pass MAX_HEADER_BYTES,
    however they arrived (in one read, or pipelined behind another request), as h11 refuses ones
    still arriving: uvicorn answers 400 and closes the connection."""

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            size = len(event.method) + len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
            if size > MAX_HEADER_BYTES:
                raise h11.RemoteProtocolError("request headers too large", error_status_hint=431)
        return event


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline, ``header_timeout`` seconds from a connection's
    opening (or from the first byte of a later request on it) until that request's headers are
    complete. A client that sends them slowly, or opens connections and sends nothing, would
    otherwise hold a connection (and a file descriptor) for as long as it likes. Past the deadline
    the connection gets a 408 (if it sent anything) and is closed."""

    def __init__(self, *args: Any, header_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _BoundedHeaders(h11.SERVER, MAX_HEADER_BYTES)
        self.header_timeout = header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None
        self._started = False  # bytes of the pending request have arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def data_received(self, data: bytes) -> None:
        waiting = self.conn.their_state is h11.IDLE
        if waiting and self._header_deadline is None:  # a new request on a kept-alive connection
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)
        self._started = self._started or (waiting and bool(data))
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request's line and headers are in
            self._clear_deadline()
            self._started = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        super().connection_lost(exc)

    def _clear_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._started:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The ``uvicorn.Config`` arguments that carry ``settings``' timeouts, connection cap and
    trusted proxies (``qa-search serve`` and the tests start uvicorn with these)."""
    # a partial, not a subclass made here: with several workers the config is pickled
    protocol = functools.partial(HeaderTimeoutH11Protocol, header_timeout=settings.header_timeout)
    return {
        "http": protocol,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "limit_concurrency": settings.max_connections,
        # uvicorn trusts 127.0.0.1's X-Forwarded-For unless told otherwise: only the proxies named
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": ",".join(settings.trusted_proxies) or "127.0.0.1",
    }

"""Errors translated to HTTP at the edge: the library's exceptions and invalid requests become
problem responses (``{"detail": ...}``) that never echo the user's text."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from qa_search import (
    NoRerankerError,
    ReadOnlyIndexError,
    SnapshotError,
    UnknownThreadError,
    WriteConflictError,
)

from .schemas import BATCH_TOO_BIG, Problem

log = logging.getLogger("qa_search.service")

#: The error responses every API route documents.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem}, 403: {"model": Problem}, 413: {"model": Problem}, 422: {},
}
#: What a route taking a JSON body may answer besides: a body declared as something else.
JSON_ERRORS: dict[int | str, dict[str, Any]] = {415: {"model": Problem}}
#: What a write may answer besides: the index's disk is full (507), writes are suspended (503).
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {507: {"model": Problem}, 503: {"model": Problem}}
#: A full disk, and a user's disk quota used up: the same to whoever sent the write.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


#: Most problems one 422 lists: a request with thousands of bad items gets a short answer.
MAX_PROBLEMS = 5


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 listing the first few problems, each with its place and message (and ``omitted``: how
    many more). FastAPI's own handler also echoes the offending input and the constraint's context,
    which fails to render (a 500) for a NaN, an infinity or a lone surrogate, and would put the
    user's text into a response that may end up in logs. A batch over the thread or answer cap is a 413."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    for e in errors:
        if e.get("type") == BATCH_TOO_BIG:
            return problem(413, str(e.get("msg")))
    problems = [_problem(e) for e in errors[:MAX_PROBLEMS]]
    body: dict[str, Any] = {"detail": problems}
    if len(errors) > MAX_PROBLEMS:
        body["omitted"] = len(errors) - MAX_PROBLEMS
    return JSONResponse(body, status_code=422)


def _problem(error: dict[str, Any]) -> dict[str, Any]:
    loc = [part for part in error.get("loc", ()) if not _union_member(part)]
    msg = str(error.get("msg", "invalid"))[:300]
    kind = str(error.get("type", "value_error"))
    if kind == EXTRA_FIELD and loc:
        # the place is the field's name, which is the client's text (a key built from what the
        # user typed, say): the object holding it is named instead
        loc, msg = loc[:-1], "holds an unknown field (its name is not repeated); see /docs for the fields"
    return {"loc": loc, "field": _field(loc), "msg": msg, "type": kind}


#: Pydantic's error type for a field a model does not take.
EXTRA_FIELD = "extra_forbidden"
#: How pydantic names the plain members of a union (``int``, ``constrained-str``) in an error's
#: place; other members it names by their validators (``list[...]``, ``function-after[...]``).
_UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "none", "constrained-str", "constrained-int",
                            "constrained-float"})


def _union_member(part: object) -> bool:
    """Whether a part of an error's place names a member of a union, not a field the client
    wrote: the field is named without it (the validators' names even hold memory addresses)."""
    return isinstance(part, str) and ("[" in part or part in _UNION_MEMBERS)


def _field(loc: tuple | list) -> str:
    """``("body", "threads", 3, "id")`` as ``threads[3].id``."""
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path") else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@contextmanager
def write_errors() -> Iterator[None]:
    """A write's refusals: a thread the library will not store (422), an unknown thread (404),
    a single snapshot served read-only (409), a damaged write-log line, which suspends
    writes (503, naming it) until an operator repairs it, a conditional write that kept meeting
    other writes to its thread (503 with ``Retry-After``: sent again, it reads them), and a full
    disk (507; nothing was stored: the log drops a part-written line). Searches go on through
    all of them.

    A failed write to disk is logged with its errno (the response names only the cause: paths
    stay in the log)."""
    try:
        yield
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        log.error("write not stored: %s (errno %s, %s)", exc.strerror or exc, code, exc.filename or "-")
        if exc.errno in NO_SPACE:
            raise HTTPException(507, "no space left on the index's disk: the write was not stored; "
                                     "free space (or raise the quota) and send it again") from None
        raise
    except ValueError as exc:  # the message names the thread and its field, not its text
        raise HTTPException(422, str(exc)) from None
    except UnknownThreadError as exc:
        raise HTTPException(404, f"{exc}; nothing was deleted") from None
    except ReadOnlyIndexError as exc:
        raise HTTPException(409, str(exc)) from None
    except SnapshotError as exc:
        raise HTTPException(503, f"writes are suspended: {exc}") from None
    except WriteConflictError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None


async def no_reranker(request: Request, exc: Exception) -> JSONResponse:
    """409: the request asked to rerank, and the index serving it has no reranker attached (a
    state of the index, not a fault of the request's form)."""
    return problem(409, str(exc))


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(NoRerankerError, no_reranker)

"""Writes: threads added, replaced or deleted while the service runs (they need the API key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam

from qa_search import Thread

from ..deps import LiveDep, SettingsDep, ThreadsToWrite, require_key
from ..errors import ERRORS, JSON_ERRORS, WRITE_ERRORS, write_errors
from ..schemas import Problem, WriteResponse

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses={**ERRORS, **WRITE_ERRORS})


def _chars(thread: Thread) -> int:
    return len(thread.title) + len(thread.body) + sum(len(a.body) for a in thread.answers)


def sized_threads(settings: SettingsDep, threads: ThreadsToWrite) -> list[Thread]:
    """The threads, if their text is within ``max_write_chars`` (else 413, before the model
    sees any of it: the size of one request bounds the work it can ask for)."""
    total = sum(_chars(t) for t in threads)
    if total > settings.max_write_chars:
        raise HTTPException(413, f"the threads hold {total} characters of text, over the limit of "
                                 f"{settings.max_write_chars} per request (QA_SEARCH_MAX_WRITE_CHARS): "
                                 "split the batch")
    return threads


@router.post("/threads", response_model=WriteResponse, summary="Add or replace threads",
             responses=JSON_ERRORS)
def upsert(live: LiveDep, threads: Annotated[list[Thread], Depends(sized_threads)]) -> WriteResponse:
    with write_errors():
        entry = live.upsert(threads)
    return WriteResponse.of(entry)


@router.delete("/threads/{thread_id:path}", response_model=WriteResponse, summary="Delete a thread",
               responses={404: {"model": Problem}})
def delete(
    live: LiveDep,
    thread_id: Annotated[str, PathParam(min_length=1, description="The thread's id, percent-encoded "
                                        "(an id may hold '/').")],
) -> WriteResponse:
    with write_errors():  # an unknown id is a 404, decided under the same lock as the delete
        entry = live.delete(thread_id, missing_ok=False)
    return WriteResponse.of(entry)

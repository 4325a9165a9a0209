"""Writes: threads added, replaced or deleted while the service runs (they need the API key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam

from ..deps import LiveDep, ThreadsToWrite, require_key
from ..errors import ERRORS, write_errors
from ..schemas import Problem, WriteResponse

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=ERRORS)


@router.post("/threads", response_model=WriteResponse, summary="Add or replace threads")
def upsert(live: LiveDep, threads: ThreadsToWrite) -> WriteResponse:
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

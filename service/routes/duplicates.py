"""Duplicate detection: questions already asked that a new one likely repeats."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import DraftDuplicates, DuplicatesInQuery, LiveDep
from ..errors import ERRORS
from ..schemas import DuplicatesResponse

router = APIRouter(prefix="/v1", responses=ERRORS)


@router.get("/duplicates", response_model=DuplicatesResponse, summary="Likely duplicates of a question")
def duplicates(live: LiveDep, query: DuplicatesInQuery) -> DuplicatesResponse:
    dups = live.find_duplicates(query.text, threshold=query.threshold, k=query.k)
    return DuplicatesResponse(duplicates=dups)


@router.post("/duplicates", response_model=DuplicatesResponse, summary="Likely duplicates of a draft")
def duplicates_of_draft(live: LiveDep, query: DraftDuplicates) -> DuplicatesResponse:
    dups = live.find_duplicates(query.text, threshold=query.threshold, k=query.k)
    return DuplicatesResponse(duplicates=dups)

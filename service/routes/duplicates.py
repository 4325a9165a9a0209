"""Duplicate detection: questions already asked that a new one likely repeats, among those the
caller may see."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import DraftDuplicates, DuplicatesInQuery, LiveDep, ViewerDep
from ..errors import ERRORS, JSON_ERRORS
from ..schemas import DuplicatesResponse

router = APIRouter(prefix="/v1", responses=ERRORS)


@router.get("/duplicates", response_model=DuplicatesResponse, summary="Likely duplicates of a question")
def duplicates(live: LiveDep, query: DuplicatesInQuery, viewer: ViewerDep) -> DuplicatesResponse:
    found = live.duplicate_verdicts(query.text, threshold=query.threshold, k=query.k, groups=viewer.groups)
    return DuplicatesResponse(duplicates=list(found.hits), scorer=found.scorer)


@router.post("/duplicates", response_model=DuplicatesResponse, summary="Likely duplicates of a draft",
             responses=JSON_ERRORS)
def duplicates_of_draft(live: LiveDep, query: DraftDuplicates, viewer: ViewerDep) -> DuplicatesResponse:
    found = live.duplicate_verdicts(query.text, threshold=query.threshold, k=query.k, groups=viewer.groups)
    return DuplicatesResponse(duplicates=list(found.hits), scorer=found.scorer)

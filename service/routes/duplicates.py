"""Duplicate detection: questions already asked that a new one likely repeats, among those the
caller may see."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import DraftDuplicates, DuplicatesInQuery, LiveDep, ViewerDep
from ..errors import ERRORS
from ..schemas import DuplicatesResponse

router = APIRouter(prefix="/v1", responses=ERRORS)


@router.get("/duplicates", response_model=DuplicatesResponse, summary="Likely duplicates of a question")
def duplicates(live: LiveDep, query: DuplicatesInQuery, viewer: ViewerDep) -> DuplicatesResponse:
    dups = live.find_duplicates(query.text, threshold=query.threshold, k=query.k, groups=viewer.groups)
    return DuplicatesResponse(duplicates=dups, scorer=_scorer(live))


@router.post("/duplicates", response_model=DuplicatesResponse, summary="Likely duplicates of a draft")
def duplicates_of_draft(live: LiveDep, query: DraftDuplicates, viewer: ViewerDep) -> DuplicatesResponse:
    dups = live.find_duplicates(query.text, threshold=query.threshold, k=query.k, groups=viewer.groups)
    return DuplicatesResponse(duplicates=dups, scorer=_scorer(live))


def _scorer(live: LiveDep) -> str:
    """Which scorer gave the verdicts (the reranker, loaded with the generation, where attached)."""
    return live.index.duplicate_cutoff(rerank=True)[1]

"""Typeahead search: threads similar to the text typed so far, among those the caller may see."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import LiveDep, SearchInBody, SearchInQuery, ViewerDep
from ..errors import ERRORS
from ..schemas import SearchResponse

router = APIRouter(prefix="/v1", responses=ERRORS)


@router.get("/search", response_model=SearchResponse, summary="Similar threads (typeahead)")
def search(live: LiveDep, query: SearchInQuery, viewer: ViewerDep) -> SearchResponse:
    return SearchResponse(hits=live.search(query.text, query.k, tags=query.tags, category=query.category,
                                           groups=viewer.groups))


@router.post("/search", response_model=SearchResponse, summary="Similar threads, the text in the body")
def search_posted(live: LiveDep, query: SearchInBody, viewer: ViewerDep) -> SearchResponse:
    """As GET, but the text stays out of URLs (and so out of the access logs of any proxy in front)."""
    return SearchResponse(hits=live.search(query.text, query.k, tags=query.tags, category=query.category,
                                           groups=viewer.groups))

"""Search: threads similar to the text typed so far (the ask page's typeahead) or to a search
page's query, among those the caller may see, a page at a time."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import LiveDep, SearchInBody, SearchInQuery, ViewerDep
from ..errors import ERRORS
from ..schemas import SearchResponse

router = APIRouter(prefix="/v1", responses=ERRORS)


@router.get("/search", response_model=SearchResponse, summary="Similar threads (typeahead, search pages)")
def search(live: LiveDep, query: SearchInQuery, viewer: ViewerDep) -> SearchResponse:
    """The best k threads after the first ``offset``; ``next_offset`` says where the next page starts."""
    # one more than the page: whether it exists says whether another page does
    hits = live.search(query.text, query.k + 1, groups=viewer.groups, **query.options())
    return SearchResponse.page(hits, query.offset, query.k)


@router.post("/search", response_model=SearchResponse, summary="Similar threads, the text in the body")
def search_posted(live: LiveDep, query: SearchInBody, viewer: ViewerDep) -> SearchResponse:
    """As GET, but the text stays out of URLs (and so out of the access logs of any proxy in front)."""
    hits = live.search(query.text, query.k + 1, groups=viewer.groups, **query.options())
    return SearchResponse.page(hits, query.offset, query.k)

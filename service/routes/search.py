"""Search: threads similar to the text typed so far (the ask page's typeahead) or to a search
page's query, among those the caller may see, a page at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..deps import LiveDep, SearchInBody, SearchInQuery, SearchQuery, ViewerDep
from ..errors import ERRORS, JSON_ERRORS
from ..schemas import MAX_OFFSET, SearchResponse
from ..tokens import Viewer

router = APIRouter(prefix="/v1", responses=ERRORS)


#: ``rerank``, a query parameter of GET and POST alike.
Rerank = Annotated[bool, Query(description=(
    "Put the first 20 hits in the order of the index's cross-encoder reranker (409 where the index has "
    "none). Slower: see the docs' HTTP API page for its latency."))]


@router.get("/search", response_model=SearchResponse, summary="Similar threads (typeahead, search pages)")
def search(live: LiveDep, query: SearchInQuery, viewer: ViewerDep, rerank: Rerank = False) -> SearchResponse:
    """The best k threads after the first ``offset``; ``next_offset`` says where the next page starts."""
    return _page(live, query, viewer, rerank)


@router.post("/search", response_model=SearchResponse, summary="Similar threads, the text in the body",
             responses=JSON_ERRORS)
def search_posted(
    live: LiveDep, query: SearchInBody, viewer: ViewerDep, rerank: Rerank = False
) -> SearchResponse:
    """As GET, but the text stays out of URLs (and so out of the access logs of any proxy in front)."""
    return _page(live, query, viewer, rerank)


def _page(live: LiveDep, query: SearchQuery, viewer: Viewer, rerank: bool) -> SearchResponse:
    # the index's own cut, where the request and the settings name none, comes from the generation
    # the hits come from (one read in the library), and applies to the page alone
    page = live.search_page(query.text, query.k, groups=viewer.groups, rerank=rerank, index_cut=True,
                            max_offset=MAX_OFFSET, **query.options())
    return SearchResponse(hits=list(page.hits), next_offset=page.next_offset)

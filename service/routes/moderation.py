"""The moderators' view: clusters of duplicate threads already in the forum, for merging, as a
page (/moderation) and as JSON or CSV, behind the moderator key.

Clustering reads the whole index (minutes at 100k+ threads), so its result is kept for as long
as the index is the same: the served generation and the number of log entries applied on top.
One computation runs at a time, in the threadpool (the routes are plain functions); it holds the
index's read lock, so writes wait for it."""

from __future__ import annotations

import csv
import io
import threading
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from qa_search import DuplicateCluster, ForumIndex, LiveIndex, find_duplicate_clusters

from ..deps import LiveDep, app_object, require_moderator
from ..errors import ERRORS
from .pages import STATIC

# the page loads only its own files; nothing inline, nothing from elsewhere, no framing
_PAGE_POLICY = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: Spreadsheets run a cell that starts with one of these as a formula: such titles get a quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

router = APIRouter(prefix="/v1/moderation", tags=["moderation"], responses=ERRORS,
                   dependencies=[Depends(require_moderator)])
page_router = APIRouter(include_in_schema=False)


class ClusterMember(BaseModel):
    thread_id: str
    title: str
    url: str | None = None
    created_at: str | None = None
    answers: int
    score: float | None = Field(None, description="Score with the canonical thread (None for itself).")
    probability: float | None = Field(None, description="Duplicate probability with the canonical "
                                      "thread; null while the index is uncalibrated.")


class Cluster(BaseModel):
    canonical: str = Field(description="The thread to keep: the most answered, then the most voted.")
    newest: str | None = Field(None, description="The newest member's created_at.")
    mean_score: float
    threads: list[ClusterMember] = Field(description="The canonical thread first, then the others.")


class ClustersPage(BaseModel):
    clusters: list[Cluster]
    total: int = Field(description="Clusters in all.")
    page: int
    per_page: int
    threads: int = Field(description="Threads in the index.")
    by: str = Field(description="What clusters were formed on: 'cosine' or 'probability'.")
    threshold: float
    generation: int | None = Field(description="The generation the clusters were computed on.")


@dataclass(frozen=True)
class _Computed:
    key: tuple[int | None, int]
    clusters: list[Cluster]
    threads: int
    by: str
    threshold: float


class ClusterCache:
    """The last clustering and the index state it was computed on; one computation at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: _Computed | None = None

    def get(self, live: LiveIndex) -> _Computed:
        with self._lock, live.reading() as index:
            key = (live.generation, live.applied)
            if self._last is None or self._last.key != key:
                result = find_duplicate_clusters(index)
                clusters = [_cluster(index, c) for c in result.clusters]
                # newest first; clusters without dates last, in the library's order (largest first)
                clusters.sort(key=lambda c: c.newest or "", reverse=True)
                self._last = _Computed(key, clusters, result.threads, result.by, result.threshold)
            return self._last


def _cluster(index: ForumIndex, found: DuplicateCluster) -> Cluster:
    with_canon = {(p.id2 if p.id1 == found.canonical else p.id1): p for p in found.pairs
                  if found.canonical in (p.id1, p.id2)}
    members = []
    for t in found.threads:
        pair = with_canon.get(t.thread_id)
        created = index.get(t.thread_id).created_at
        members.append(ClusterMember(
            thread_id=t.thread_id, title=t.title, url=t.url, created_at=created, answers=t.answers,
            score=pair.score if pair else None, probability=pair.probability if pair else None))
    dates = [m.created_at for m in members if m.created_at]
    return Cluster(canonical=found.canonical, newest=max(dates) if dates else None,
                   mean_score=round(found.mean_score, 6), threads=members)


def cluster_cache(request: Request) -> ClusterCache:
    return app_object(request, "cluster_cache", ClusterCache)


CacheDep = Annotated[ClusterCache, Depends(cluster_cache)]


def _csv(computed: _Computed) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["cluster", "canonical", "thread_id", "title", "url", "created_at", "answers", "score",
                     "probability"])
    for n, cluster in enumerate(computed.clusters, 1):
        for m in cluster.threads:
            title = "'" + m.title if m.title.startswith(_FORMULA_START) else m.title
            writer.writerow([n, cluster.canonical, m.thread_id, title, m.url or "", m.created_at or "",
                             m.answers, "" if m.score is None else m.score,
                             "" if m.probability is None else m.probability])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="duplicate-clusters.csv"',
                             "Cache-Control": "no-store"})


@router.get("/duplicates", response_model=ClustersPage, summary="Clusters of duplicate threads",
            responses={200: {"content": {"text/csv": {}}}})
def duplicates(
    live: LiveDep,
    cache: CacheDep,
    page: Annotated[int, Query(ge=1, description="Page, from 1.")] = 1,
    per_page: Annotated[int, Query(ge=1, le=200, description="Clusters per page.")] = 20,
    format: Annotated[Literal["json", "csv"], Query(description="csv: every cluster, one row per "
                                                    "thread (pages do not apply).")] = "json",
) -> ClustersPage | Response:
    computed = cache.get(live)
    if format == "csv":
        return _csv(computed)
    start = (page - 1) * per_page
    return ClustersPage(
        clusters=computed.clusters[start:start + per_page], total=len(computed.clusters), page=page,
        per_page=per_page, threads=computed.threads, by=computed.by, threshold=computed.threshold,
        generation=computed.key[0])


@router.get("/duplicates.csv", summary="Clusters of duplicate threads, as CSV",
            response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def duplicates_csv(live: LiveDep, cache: CacheDep) -> Response:
    return _csv(cache.get(live))


@page_router.get("/moderation")
def moderation_page() -> FileResponse:
    return FileResponse(STATIC / "moderation.html",
                        headers={"Content-Security-Policy": _PAGE_POLICY, "Cache-Control": "no-store"})

"""Probes and metrics for whoever runs the service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from ..deps import LiveDep, MetricsDep, metrics_scrape
from ..schemas import Health, Problem, Ready

router = APIRouter()


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> Health:
    return Health()


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", response_model=Ready, summary="Readiness: the index is loaded",
            responses={503: {"model": Problem}})
def readyz(live: LiveDep) -> Ready:
    return Ready(generation=live.generation, threads=len(live.index))


@router.get("/metrics", include_in_schema=False)
def metrics_page(metrics: MetricsDep, private: Annotated[bool, Depends(metrics_scrape)]) -> Response:
    return Response(metrics.render(private), media_type=metrics.content_type)

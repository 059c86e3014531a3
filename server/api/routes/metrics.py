"""Prometheus metrics of this app (its own registry)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from server.runtime import Service

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format (on a cluster: the ingress's and every session replica's, labelled by replica)."""
    service: Service | None = request.app.state.runtime
    text = request.app.state.metrics.render() if service is None else await service.metrics_text()
    return Response(text, media_type=CONTENT_TYPE_LATEST)

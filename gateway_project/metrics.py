"""`GET /metrics`: the gateway's Prometheus metrics (routing/metrics/), for a scraper with
the metrics token or from an allowed address (gateway_project/lib/metrics_access.py)."""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway_project.lib import errors
from gateway_project.lib.metrics_access import metrics_refusal
from routing.metrics import scrape

router = Router(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (the metrics token, or an address in GATEWAY_METRICS_ALLOWED_IPS)",
)
async def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.GATEWAY_METRICS_ENABLED:
        return errors.not_found("Metrics are switched off (GATEWAY_METRICS_ENABLED).").response()
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal.response()
    scraped = await scrape.gather()
    # Reading every worker's files is disk I/O: not on the event loop.
    body, content_type = await asyncio.to_thread(
        scrape.exposition, scraped, request.headers.get("Accept", "")
    )
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response

"""``/metrics`` in the Prometheus text format, behind a bearer token when one is configured."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consent.errors import InvalidTokenError
from kluis.api.auth import bearer_token
from kluis.observability import Metrics
from kluis.settings import Settings

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (no personal data in any label)",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}},
        401: {
            "description": "KLUIS_METRICS_TOKEN is set and the request does not carry it as a bearer token",
            "content": {"application/problem+json": {}},
        },
    },
)
def metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if settings.metrics_token is not None:
        _scheme, presented = bearer_token(request)  # InvalidTokenError("token_missing") without one
        expected = settings.metrics_token.get_secret_value()
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            raise InvalidTokenError("token_invalid")
    registry: Metrics = request.app.state.metrics
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)

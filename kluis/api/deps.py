"""FastAPI dependencies as ``Annotated`` aliases: the services, the trace context, the clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from pydantic import BeforeValidator

from audit.schemas import TraceContext
from kluis.wiring import Services, utcnow


def services_of(request: Request) -> Services:
    """The services, for code that is not itself a FastAPI dependency."""
    services: Services = request.app.state.services
    return services


# These are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in the thread pool,
# which for three trivial look-ups per request cost more than the rest of the read path.
async def get_services(request: Request) -> Services:
    return services_of(request)


def trace_of(request: Request) -> TraceContext:
    """The request's trace context, made once by ``KluisMiddleware`` (also in the log lines)."""
    trace = request.scope.get("kluis.trace")
    if isinstance(trace, TraceContext):
        return trace
    return TraceContext.from_traceparent(request.headers.get("traceparent"))


async def get_trace(request: Request) -> TraceContext:
    return trace_of(request)


async def get_now() -> datetime:
    return utcnow()


ServicesDep = Annotated[Services, Depends(get_services)]
TraceDep = Annotated[TraceContext, Depends(get_trace)]
NowDep = Annotated[datetime, Depends(get_now)]

MAX_INDEX = 2**62  # larger numbers cannot be stored anyway: refuse them as input, not at the database


def _iso_only(value: object) -> object:
    """Query timestamps must be ISO 8601 text: pydantic would also take '5' as a Unix time."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError("an ISO 8601 date-time is expected") from exc
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value
    raise ValueError("an ISO 8601 date-time is expected")


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only)]

"""FastAPI dependencies as ``Annotated`` aliases: the services, the trace context, the clock."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from audit.schemas import TraceContext
from kluis.wiring import Services, utcnow


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_trace(request: Request) -> TraceContext:
    return TraceContext.from_traceparent(request.headers.get("traceparent"))


def get_now() -> datetime:
    return utcnow()


ServicesDep = Annotated[Services, Depends(get_services)]
TraceDep = Annotated[TraceContext, Depends(get_trace)]
NowDep = Annotated[datetime, Depends(get_now)]

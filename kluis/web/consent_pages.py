"""Consent in the portal: pending requests (approve, approve narrower, deny) and grants (revoke).

Every decision goes through ``consent.ConsentService`` with the subject as principal and the viewer
as actor, so a representative's decision is audited "X on behalf of Y". Ids in the URLs are the
consent engine's random ids; the engine looks every one up together with the principal, so another
resident's id answers "not found".
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from consent import errors as consent_errors
from consent.requests import ConsentService
from consent.schemas import ResidentPrincipal
from kluis.api.deps import NowDep, ServicesDep
from kluis.web import labels
from kluis.web.csrf import require_csrf
from kluis.web.deps import Portal, PortalDep, Viewer, ViewerDep
from kluis.web.errors import PageNotFoundError
from kluis.web.i18n import TIMEZONE
from kluis.web.labels import N_
from kluis.wiring import Services

router = APIRouter(prefix="/portaal", include_in_schema=False)
Csrf = Depends(require_csrf)
IdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16,64}$")]


def consent_service(services: Services) -> ConsentService:
    return services.consent


def principal(viewer: Viewer) -> ResidentPrincipal:
    return ResidentPrincipal(tenant_id=viewer.tenant_id, resident_id=viewer.subject_id)


def _end_of(day: str) -> datetime:
    """The end of a chosen day on the municipality's clock (the date field has no time)."""
    return datetime.combine(date.fromisoformat(day), time(23, 59, 59), TIMEZONE)


@router.get("/verzoeken")
def requests_page(
    request: Request, viewer: ViewerDep, services: ServicesDep, portal: PortalDep, now: NowDep
) -> Response:
    consent = consent_service(services)
    with services.db.read_session() as session:
        pending = consent.requests(session, principal(viewer), now, status="pending").items
        everything = consent.requests(session, principal(viewer), now).items
    past = [r for r in everything if r.status != "pending"]
    done = request.query_params.get("klaar")
    return portal.templates.render(
        request,
        "requests.html",
        viewer=viewer,
        pending=pending,
        past=past,
        labels=labels,
        done=done if done in ("approved", "denied") else None,
    )


@router.get("/verzoeken/{request_id}")
def request_page(
    request: Request,
    request_id: IdPath,
    viewer: ViewerDep,
    services: ServicesDep,
    portal: PortalDep,
    now: NowDep,
) -> Response:
    return _request_page(request, request_id, viewer, services, portal, now)


def _request_page(
    request: Request,
    request_id: str,
    viewer: Viewer,
    services: Services,
    portal: Portal,
    now: datetime,
    error: str | None = None,
) -> Response:
    """The request page; ``error``, a message id of the catalogues (never a value from the request:
    the template translates it, and a translation is trusted HTML), after a refused decision."""
    consent = consent_service(services)
    with services.db.read_session() as session:
        try:
            view = consent.request(session, principal(viewer), request_id, now)
        except consent_errors.NotFoundError:
            raise PageNotFoundError from None
    latest = (now + timedelta(days=view.duration_days)).astimezone(TIMEZONE).date()
    return portal.templates.render(
        request,
        "request.html",
        viewer=viewer,
        item=view,
        labels=labels,
        latest=latest.isoformat(),
        today=now.astimezone(TIMEZONE).date().isoformat(),
        error=error,
        status=400 if error else 200,
    )


@router.post("/verzoeken/{request_id}/goedkeuren", dependencies=[Csrf])
def approve(
    request: Request,
    request_id: IdPath,
    viewer: ViewerDep,
    services: ServicesDep,
    portal: PortalDep,
    now: NowDep,
    until: Annotated[str, Form(max_length=10)] = "",
    categories: Annotated[list[str] | None, Form()] = None,
) -> Response:
    viewer.require_decide()
    consent = consent_service(services)
    with services.db.session() as session:
        try:
            view = consent.request(session, principal(viewer), request_id, now)
            latest = now + timedelta(days=view.duration_days)
            # The chosen day, but never later than asked: "until the last day" means exactly that.
            valid_until = min(_end_of(until), latest) if until else latest
            consent.approve(
                session,
                viewer.context(request, now),
                principal(viewer),
                request_id,
                categories=(categories or [])[:50],
                valid_until=valid_until,
            )
        except consent_errors.NotFoundError:
            raise PageNotFoundError from None
        except (consent_errors.InvalidInputError, consent_errors.ConflictError, ValueError):
            message = N_("Choose at least one kind of data and an end date that is not later than asked.")
            return _request_page(request, request_id, viewer, services, portal, now, error=message)
    return RedirectResponse("/portaal/toestemmingen?klaar=approved", status_code=303)


@router.post("/verzoeken/{request_id}/weigeren", dependencies=[Csrf])
def deny(
    request: Request, request_id: IdPath, viewer: ViewerDep, services: ServicesDep, now: NowDep
) -> Response:
    viewer.require_decide()
    consent = consent_service(services)
    with services.db.session() as session:
        try:
            consent.deny(session, viewer.context(request, now), principal(viewer), request_id)
        except consent_errors.NotFoundError:
            raise PageNotFoundError from None
        except consent_errors.ConflictError:
            pass  # already decided or expired: the list shows how it ended
    return RedirectResponse("/portaal/verzoeken?klaar=denied", status_code=303)


@router.get("/toestemmingen")
def grants_page(
    request: Request, viewer: ViewerDep, services: ServicesDep, portal: PortalDep, now: NowDep
) -> Response:
    consent = consent_service(services)
    with services.db.read_session() as session:
        grants = consent.grants(session, principal(viewer), now).items
    done = request.query_params.get("klaar")
    return portal.templates.render(
        request,
        "grants.html",
        viewer=viewer,
        active=[g for g in grants if g.status == "active"],
        past=[g for g in grants if g.status != "active"],
        labels=labels,
        done=done if done in ("approved", "revoked") else None,
    )


@router.get("/toestemmingen/{grant_id}/intrekken")
def revoke_confirmation(
    request: Request,
    grant_id: IdPath,
    viewer: ViewerDep,
    services: ServicesDep,
    portal: PortalDep,
    now: NowDep,
) -> Response:
    """The confirmation step: what stops when the resident revokes."""
    viewer.require_decide()
    consent = consent_service(services)
    with services.db.read_session() as session:
        try:
            view = consent.grant(session, principal(viewer), grant_id, now)
        except consent_errors.NotFoundError:
            raise PageNotFoundError from None
    if view.status != "active":
        return RedirectResponse("/portaal/toestemmingen", status_code=303)
    return portal.templates.render(request, "revoke.html", viewer=viewer, item=view, labels=labels)


@router.post("/toestemmingen/{grant_id}/intrekken", dependencies=[Csrf])
def revoke(
    request: Request, grant_id: IdPath, viewer: ViewerDep, services: ServicesDep, now: NowDep
) -> Response:
    viewer.require_decide()
    consent = consent_service(services)
    with services.db.session() as session:
        try:
            consent.revoke(session, viewer.context(request, now), principal(viewer), grant_id)
        except consent_errors.NotFoundError:
            raise PageNotFoundError from None
    return RedirectResponse("/portaal/toestemmingen?klaar=revoked", status_code=303)

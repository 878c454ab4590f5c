"""Representatives: appoint one (by BSN, for a scope and a period), see and revoke them; accept or
decline an invitation to represent someone else.

Only the resident themself manages their representatives. The page never shows the
representative's name: that would be someone else's data; the resident knows whom they chose.
Appointing answers the same whether or not the BSN has a vault here: the mandate is an invitation
until the person with that BSN logs in and accepts it (``kluis.web.mandates``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from kluis.api.deps import NowDep, ServicesDep
from kluis.web.csrf import require_csrf
from kluis.web.deps import PortalDep, Viewer, ViewerDep
from kluis.web.errors import PageNotFoundError
from kluis.web.i18n import TIMEZONE
from kluis.web.labels import N_
from kluis.web.mandates import MandateError
from kluis.web.models import Mandate
from vault.errors import NotFoundError
from vault.models import Resident
from vault.services import Context

router = APIRouter(prefix="/portaal", include_in_schema=False)
Csrf = Depends(require_csrf)
IdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
PAGE = "/portaal/gemachtigden"
DONE = ("added", "revoked", "accepted", "declined", "withdrawn")


def _render(
    request: Request,
    viewer: Viewer,
    services: ServicesDep,
    portal: PortalDep,
    now: datetime,
    *,
    error: str | None = None,
    done: str | None = None,
    status: int = 200,
) -> Response:
    with services.db.read_session() as session:
        me = viewer.me(session, services.vault)
        given = portal.mandates.given(session, me, now)
        invitations = [
            (mandate, portal.mandates.principal_name(session, mandate))
            for mandate in portal.mandates.invitations(session, me, now)
        ]
        represented = [
            (mandate, portal.mandates.principal_name(session, mandate))
            for mandate in portal.mandates.received(session, me, now)
        ]
        # Rendered inside the unit of work: the rows are only readable while it is open.
        return portal.templates.render(
            request,
            "representatives.html",
            viewer=viewer,
            given=given,
            invitations=invitations,
            represented=represented,
            error=error,
            done=done,
            status=status,
            min_date=now.astimezone(TIMEZONE).date().isoformat(),
        )


@router.get("/gemachtigden")
def representatives(
    request: Request, viewer: ViewerDep, services: ServicesDep, portal: PortalDep, now: NowDep
) -> Response:
    viewer.require_self()
    done = request.query_params.get("klaar")
    return _render(request, viewer, services, portal, now, done=done if done in DONE else None)


@router.post("/gemachtigden", dependencies=[Csrf])
def appoint(
    request: Request,
    viewer: ViewerDep,
    services: ServicesDep,
    portal: PortalDep,
    now: NowDep,
    bsn: Annotated[str, Form(max_length=20)],
    scope: Annotated[str, Form(max_length=10)],
    until: Annotated[str, Form(max_length=10)],
) -> Response:
    viewer.require_self()
    try:
        # The mandate ends at the end of the chosen day, on the municipality's clock.
        valid_until = datetime.combine(date.fromisoformat(until), time(23, 59, 59), TIMEZONE)
    except ValueError:
        return _render(
            request, viewer, services, portal, now, error=N_("Choose a valid end date."), status=400
        )
    with services.db.session() as session:
        try:
            portal.mandates.appoint(
                session,
                viewer.context(request, now),
                viewer.me(session, services.vault),
                bsn.strip(),
                may_decide=scope == "decide",
                valid_until=valid_until,
            )
        except MandateError as exc:
            return _render(request, viewer, services, portal, now, error=str(exc), status=400)
    return RedirectResponse(PAGE + "?klaar=added", status_code=303)


def _change(
    request: Request,
    viewer: Viewer,
    services: ServicesDep,
    now: datetime,
    change: Callable[[Session, Context, Resident], object],
    done: str,
) -> Response:
    """Change one of the resident's own mandates or invitations; "not found" for any other id."""
    viewer.require_self()
    with services.db.session() as session:
        try:
            change(session, viewer.context(request, now), viewer.me(session, services.vault))
        except NotFoundError:
            raise PageNotFoundError from None
    return RedirectResponse(f"{PAGE}?klaar={done}", status_code=303)


@router.post("/gemachtigden/{mandate_id}/intrekken", dependencies=[Csrf])
def revoke(
    request: Request,
    mandate_id: IdPath,
    viewer: ViewerDep,
    services: ServicesDep,
    portal: PortalDep,
    now: NowDep,
) -> Response:
    def stop(session: Session, ctx: Context, me: Resident) -> None:
        portal.mandates.revoke(session, ctx, me, mandate_id)

    return _change(request, viewer, services, now, stop, "revoked")


@router.post("/gemachtigden/namens/{mandate_id}/stoppen", dependencies=[Csrf])
def withdraw(
    request: Request,
    mandate_id: IdPath,
    viewer: ViewerDep,
    services: ServicesDep,
    portal: PortalDep,
    now: NowDep,
) -> Response:
    """The representative stops representing someone (the principal sees it in their history)."""

    def stop(session: Session, ctx: Context, me: Resident) -> None:
        portal.mandates.withdraw(session, ctx, me, mandate_id)

    return _change(request, viewer, services, now, stop, "withdrawn")


@router.post("/gemachtigden/uitnodigingen/{mandate_id}/{answer}", dependencies=[Csrf])
def answer_invitation(
    request: Request,
    mandate_id: IdPath,
    answer: Annotated[str, Path(pattern=r"^(aanvaarden|weigeren)$")],
    viewer: ViewerDep,
    services: ServicesDep,
    portal: PortalDep,
    now: NowDep,
) -> Response:
    """Accept (``aanvaarden``) or decline (``weigeren``) an invitation to represent someone."""
    accept = answer == "aanvaarden"

    def change(session: Session, ctx: Context, me: Resident) -> Mandate:
        return portal.mandates.answer_invitation(session, ctx, me, mandate_id, accept=accept)

    return _change(request, viewer, services, now, change, "accepted" if accept else "declined")

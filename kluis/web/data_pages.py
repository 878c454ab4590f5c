""" "Mijn gegevens": the overview of categories, one category's data, download (art. 20), erase (art. 17)."""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from audit import tags
from audit.schemas import Actor
from kluis.api.deps import NowDep, ServicesDep, trace_of
from kluis.web import labels
from kluis.web.csrf import require_csrf
from kluis.web.deps import PortalDep, StateDep, ViewerDep
from kluis.web.errors import CsrfError, PageNotFoundError
from kluis.web.export import build_export, pending_count
from kluis.web.mandates import end_mandates_of
from vault.errors import NotFoundError, ResidentErasedError
from vault.services import Context

router = APIRouter(prefix="/portaal", include_in_schema=False)
Csrf = Depends(require_csrf)
CategoryPath = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$", max_length=64)]


def rows(data: Any, prefix: str = "") -> list[tuple[str, str | bool]]:
    """A record as (label, value) rows for a definition list; nested objects become "a / b".
    Booleans stay booleans: the template says "yes" or "no" in the reader's language."""
    out: list[tuple[str, str | bool]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            label = key.replace("_", " ").capitalize()
            out.extend(rows(value, f"{prefix} / {label}" if prefix else label))
    elif isinstance(data, list):
        for position, item in enumerate(data, start=1):
            out.extend(rows(item, f"{prefix} {position}"))
    elif data is not None:
        out.append((prefix, data if isinstance(data, bool) else str(data)))
    return out


@router.get("/gegevens")
def overview(
    request: Request, viewer: ViewerDep, services: ServicesDep, portal: PortalDep, now: NowDep
) -> Response:
    with services.db.read_session() as session:
        subject = viewer.subject(session, services.vault)
        summaries = services.vault.summaries(session, subject)
        principals = portal.mandates.principals(session, subject, now) if viewer.is_self else []
        invited = len(portal.mandates.invitations(session, subject, now)) if viewer.is_self else 0
        return portal.templates.render(
            request,
            "overview.html",
            viewer=viewer,
            summaries=summaries,
            labels=labels,
            principals=principals,
            invited=invited,
            pending=pending_count(session, services, viewer, now),
        )


@router.get("/gegevens/{category}")
def category_page(
    request: Request,
    category: CategoryPath,
    viewer: ViewerDep,
    services: ServicesDep,
    portal: PortalDep,
    now: NowDep,
) -> Response:
    with services.db.session() as session:
        try:
            # Audited like every read: the resident (or their representative) looked at it.
            subject = viewer.subject(session, services.vault)
            content = services.vault.get_record(session, viewer.context(request, now), subject, category)
            versions = services.vault.history(session, subject, category)
        except (NotFoundError, ResidentErasedError):
            raise PageNotFoundError from None
    return portal.templates.render(
        request,
        "category.html",
        viewer=viewer,
        content=content,
        rows=rows(content.data),
        versions=versions,
        labels=labels,
    )


@router.get("/downloaden")
def export_page(request: Request, viewer: ViewerDep, portal: PortalDep) -> Response:
    viewer.require_self()
    return portal.templates.render(request, "export.html", viewer=viewer)


@router.post("/downloaden", dependencies=[Csrf])
def export_download(request: Request, viewer: ViewerDep, services: ServicesDep, now: NowDep) -> Response:
    viewer.require_self()
    with services.db.session() as session:
        me = viewer.me(session, services.vault)
        document = build_export(session, services, me, now)
        services.vault.audit(
            session, viewer.context(request, now), viewer.tenant_id, tags.RESIDENT_EXPORTED, resident=me
        )
        session.commit()
    body = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True)
    filename = f"kluis-export-{now.date().isoformat()}.json"
    return Response(
        body,
        media_type="application/json",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/wissen")
def erase_page(request: Request, viewer: ViewerDep, portal: PortalDep) -> Response:
    viewer.require_self()
    return portal.templates.render(request, "erase.html", viewer=viewer, step=1, missing=False)


@router.post("/wissen", dependencies=[Csrf])
def erase_first_confirmation(
    request: Request,
    viewer: ViewerDep,
    portal: PortalDep,
    state: StateDep,
    understood: Annotated[str | None, Form()] = None,
) -> Response:
    """First confirmation; the second one needs a one-time code only this step hands out."""
    viewer.require_self()
    if understood != "yes":
        return portal.templates.render(request, "erase.html", viewer=viewer, step=1, missing=True, status=400)
    state.data["erase_code"] = secrets.token_urlsafe(16)
    return portal.templates.render(
        request, "erase.html", viewer=viewer, step=2, code=state.data["erase_code"]
    )


@router.post("/wissen/bevestigen", dependencies=[Csrf])
def erase_final(
    request: Request,
    viewer: ViewerDep,
    services: ServicesDep,
    portal: PortalDep,
    state: StateDep,
    now: NowDep,
    code: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    viewer.require_self()
    expected = state.data.pop("erase_code", None)
    if not isinstance(expected, str) or not secrets.compare_digest(expected, code):
        raise CsrfError
    with services.db.session() as session:
        me = viewer.me(session, services.vault)
        ctx = viewer.context(request, now)
        end_mandates_of(session, services.vault, ctx, me)  # committed with the erasure, or not at all
        services.vault.erase_resident(session, ctx, me)
    portal.store.end_sessions_of(viewer.me_id)
    state.logout()
    return portal.templates.render(request, "erased.html")


@router.post("/namens", dependencies=[Csrf])
def act_for(
    request: Request,
    viewer: ViewerDep,
    services: ServicesDep,
    portal: PortalDep,
    state: StateDep,
    now: NowDep,
    principal: Annotated[str, Form(max_length=80)],
) -> RedirectResponse:
    """Start acting for someone the resident may represent (checked again on every request).

    Audited in the principal's trail before the session changes: from here on every page shows the
    principal's name (from their ``brp.persoon``) in the banner, and the principal sees in their
    history when someone started acting for them (the pages read after that are audited each)."""
    basis, _, principal_id = principal.partition(":")
    with services.db.session() as session:
        me = viewer.me(session, services.vault)
        found = portal.mandates.authority(session, me, principal_id, basis, now)
        if found is None:
            raise PageNotFoundError
        subject, authority = found
        services.vault.audit(
            session,
            Context(
                actor=Actor(
                    type="representative", id=me.audit_pseudonym, on_behalf_of=subject.audit_pseudonym
                ),
                trace=trace_of(request),
                now=now,
            ),
            subject.tenant_id,
            tags.REPRESENTATIVE_ACTING,
            resident=subject,
            details={"basis": authority.basis, "mandate": authority.mandate_id},
        )
        session.commit()
    state.data["acting_for"] = {"id": principal_id, "basis": basis}
    return RedirectResponse("/portaal/gegevens", status_code=303)


@router.post("/namens/stoppen", dependencies=[Csrf])
def stop_acting(state: StateDep) -> RedirectResponse:
    state.data.pop("acting_for", None)
    return RedirectResponse("/portaal/gegevens", status_code=303)

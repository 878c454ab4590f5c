"""Dependencies of the portal pages: the portal's parts, the session, and who is looking at whose data.

``ViewerDep`` is the only way a page learns whose data it shows: the logged-in resident, or the
principal they chose to act for, re-checked against the mandate or gezag on every request. Page
code never takes a resident id from the URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from audit.schemas import Actor
from kluis.api.deps import NowDep, ServicesDep, trace_of
from kluis.web.errors import LoginRequiredError, NotAllowedError
from kluis.web.mandates import SELF, Authority, MandateService
from kluis.web.render import Templates
from kluis.web.sessions import SessionState, SessionStore
from vault.errors import NotFoundError
from vault.models import Resident
from vault.services import Context, VaultService


@dataclass
class Portal:
    """The portal's own parts, built once in ``kluis.web.install``."""

    templates: Templates
    store: SessionStore
    mandates: MandateService


@dataclass(frozen=True)
class Viewer:
    """The logged-in resident (``me``) and whose data the page is about (``subject``).

    Plain values only (ORM rows do not outlive their unit of work): a page loads the ``Resident``
    rows it needs inside its own unit of work, by these ids.
    """

    tenant_id: str
    me_id: str
    me_pseudonym: str
    subject_id: str
    subject_pseudonym: str
    authority: Authority
    subject_name: str | None = None  # shown in the "you act on behalf of" banner, never stored

    @property
    def is_self(self) -> bool:
        return self.me_id == self.subject_id

    @property
    def actor(self) -> Actor:
        """Who acts, for the audit log: opaque pseudonyms only, "X on behalf of Y" when representing."""
        if self.is_self:
            return Actor(type="resident", id=self.me_pseudonym)
        return Actor(type="representative", id=self.me_pseudonym, on_behalf_of=self.subject_pseudonym)

    def context(self, request: Request, now: datetime) -> Context:
        return Context(actor=self.actor, trace=trace_of(request), now=now)

    def subject(self, session: Session, vault: VaultService) -> Resident:
        """The subject's row, in the caller's unit of work."""
        return vault.resident(session, self.tenant_id, self.subject_id)

    def me(self, session: Session, vault: VaultService) -> Resident:
        return vault.resident(session, self.tenant_id, self.me_id)

    def require_decide(self) -> None:
        if not self.authority.may_decide:
            raise NotAllowedError

    def require_self(self) -> None:
        """Export, erasure and appointing representatives: only the resident themself."""
        if not self.is_self:
            raise NotAllowedError


def get_portal(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def get_state(request: Request) -> SessionState:
    state: SessionState = request.scope["kluis.portal"]
    return state


PortalDep = Annotated[Portal, Depends(get_portal)]
StateDep = Annotated[SessionState, Depends(get_state)]


def get_viewer(services: ServicesDep, portal: PortalDep, state: StateDep, now: NowDep) -> Viewer:
    if state.tenant_id is None or state.resident_id is None:
        raise LoginRequiredError
    with services.db.read_session() as session:
        try:
            me = services.vault.resident(session, state.tenant_id, state.resident_id)
        except NotFoundError:
            me = None
        if me is None or me.erased_at is not None:
            state.logout()
            raise LoginRequiredError
        own = Viewer(me.tenant_id, me.id, me.audit_pseudonym, me.id, me.audit_pseudonym, SELF)
        acting = state.data.get("acting_for")
        if not isinstance(acting, dict):
            return own
        found = portal.mandates.authority(session, me, str(acting.get("id")), str(acting.get("basis")), now)
        if found is None:
            # The mandate ended or was revoked, or the gezag is gone: back to the resident's own data.
            state.data.pop("acting_for", None)
            return own
        subject, authority = found
        return Viewer(
            me.tenant_id,
            me.id,
            me.audit_pseudonym,
            subject.id,
            subject.audit_pseudonym,
            authority,
            portal.mandates.display_name(session, subject),
        )


ViewerDep = Annotated[Viewer, Depends(get_viewer)]

"""Representatives (gemachtigden): who may act for whom, and how far.

Two sources of authority, both checked live on every request:

- a *mandate* a resident gave another resident (by BSN) for a scope and a period, stored in the
  ``mandate`` table and revocable;
- *gezag*: a parent or guardian with authority over a minor, as the BRP says it in the parent's own
  ``brp.persoon`` record (read through the connectors' ``gezag_relations``).

Every act of a representative is audited with actor ``representative`` and ``on_behalf_of`` the
principal; both see it in their history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, update
from sqlmodel import Session, col, select

from audit import tags
from connectors import adult_from, gezag_relations
from connectors.errors import ConnectorError
from kluis.web.i18n import TIMEZONE
from kluis.web.labels import N_
from kluis.web.models import Mandate
from vault.errors import InvalidInputError, NotFoundError, ResidentErasedError
from vault.models import Resident
from vault.services import DEPARTMENT_SOURCE, Context, VaultService, new_id

BRP_CATEGORY = "brp.persoon"
MAX_MANDATE = timedelta(days=5 * 366)
MAX_OPEN_INVITATIONS = 10
MAX_INVITATIONS_PER_DAY = 20


def _scope(mandate: Mandate) -> str:
    return "view,decide" if mandate.may_decide else "view"


class MandateError(InvalidInputError):
    """A mandate that cannot be given: the message is a catalogue message id, safe to show."""


@dataclass(frozen=True, slots=True)
class Authority:
    """What the logged-in resident may do for a principal, and on what basis."""

    basis: str  # "self" | "mandate" | "gezag"
    may_view: bool
    may_decide: bool
    mandate_id: str | None = None


SELF = Authority("self", may_view=True, may_decide=True)
GEZAG = Authority("gezag", may_view=True, may_decide=True)


@dataclass(frozen=True, slots=True)
class Principal:
    """Someone the logged-in resident may act for, as listed on the "act on behalf of" page."""

    resident: Resident
    authority: Authority
    name: str | None
    valid_until: datetime | None


def end_mandates_of(session: Session, vault: VaultService, ctx: Context, resident: Resident) -> None:
    """Before ``resident`` is erased, in the erasure's transaction, and without committing:

    - the mandates they gave stop;
    - the mandates they held stop, each with an entry in its principal's trail (reason
      ``representative_erased``), so the principal's history says why the representative is gone;
    - invitations naming them lose the BSN pseudonym but stay "waiting" until they end, exactly
      like an invitation to a BSN without a vault: the principal learns nothing from the erasure.

    No row keeps a BSN pseudonym of theirs, or of the people they chose."""
    tenant = col(Mandate.tenant_id) == resident.tenant_id
    held = _in_force(session, resident.tenant_id, ctx.now, col(Mandate.representative_id) == resident.id)
    for mandate in held:
        principal = session.get(Resident, mandate.principal_id)
        if principal is not None and principal.erased_at is None:
            vault.audit(
                session,
                ctx,
                resident.tenant_id,
                tags.REPRESENTATIVE_REVOKED,
                resident=principal,
                reason="representative_erased",
                details={"mandate": mandate.id},
            )
    gave_or_held = or_(
        col(Mandate.principal_id) == resident.id, col(Mandate.representative_id) == resident.id
    )
    session.execute(
        update(Mandate)
        .where(tenant, gave_or_held, col(Mandate.revoked_at).is_(None))
        .values(revoked_at=ctx.now)
    )
    forgotten = gave_or_held
    if resident.bsn_pseudonym is not None:
        forgotten = or_(gave_or_held, col(Mandate.representative_pseudonym) == resident.bsn_pseudonym)
    session.execute(update(Mandate).where(tenant, forgotten).values(representative_pseudonym=None))


def _in_force(
    session: Session, tenant_id: str, now: datetime, *conditions: ColumnElement[bool]
) -> list[Mandate]:
    """The tenant's mandates neither stopped nor ended at ``now`` that meet ``conditions``, oldest
    first."""
    return list(
        session.exec(
            select(Mandate)
            .where(
                col(Mandate.tenant_id) == tenant_id,
                col(Mandate.revoked_at).is_(None),
                col(Mandate.valid_until) > now,
                *conditions,
            )
            .order_by(col(Mandate.created_at))
        )
    )


class MandateService:
    def __init__(self, vault: VaultService) -> None:
        self.vault = vault

    # -- mandates ---------------------------------------------------------------------------------
    def appoint(
        self,
        session: Session,
        ctx: Context,
        principal: Resident,
        representative_bsn: str,
        *,
        may_decide: bool,
        valid_until: datetime,
    ) -> Mandate:
        if valid_until <= ctx.now or valid_until > ctx.now + MAX_MANDATE:
            raise MandateError(N_("Choose an end date in the future, at most five years from now."))
        try:
            pseudonym = self.vault.bsn_pseudonym(principal.tenant_id, representative_bsn)
        except InvalidInputError:
            raise MandateError(N_("This is not a valid BSN. Check the number.")) from None
        if pseudonym == principal.bsn_pseudonym:
            raise MandateError(N_("You cannot be your own representative."))
        # Each invitation shows the principal's name to whoever holds that BSN: a cap keeps the form
        # from being a way to reach (or pester) many people.
        waiting = [m for m in self.given(session, principal, ctx.now) if m.accepted_at is None]
        if len(waiting) >= MAX_OPEN_INVITATIONS:
            raise MandateError(
                N_("Too many of your invitations are still waiting. Stop one before you invite someone else.")
            )
        # ... and a day's count bounds how many people stopping and inviting again reaches.
        today = session.exec(
            select(func.count())
            .select_from(Mandate)
            .where(
                col(Mandate.tenant_id) == principal.tenant_id,
                col(Mandate.principal_id) == principal.id,
                col(Mandate.created_at) > ctx.now - timedelta(days=1),
            )
        ).one()
        if today >= MAX_INVITATIONS_PER_DAY:
            raise MandateError(N_("You have invited many people today. Try again tomorrow."))
        # No look-up of the BSN: the answer is the same whether or not it has a vault here. The
        # person it belongs to sees the invitation when they log in, and accepts or declines it.
        mandate = Mandate(
            id=new_id(),
            tenant_id=principal.tenant_id,
            principal_id=principal.id,
            representative_pseudonym=pseudonym,
            may_view=True,  # deciding on requests without seeing them is not a thing
            may_decide=may_decide,
            valid_from=ctx.now,
            valid_until=valid_until,
            created_at=ctx.now,
        )
        session.add(mandate)
        session.flush()
        self.vault.audit(
            session,
            ctx,
            principal.tenant_id,
            tags.REPRESENTATIVE_APPOINTED,
            resident=principal,
            details={"mandate": mandate.id, "scope": _scope(mandate)},
        )
        session.commit()
        return mandate

    def invitations(self, session: Session, me: Resident, now: datetime) -> list[Mandate]:
        """Mandates naming ``me``'s BSN that ``me`` has not accepted or declined yet."""
        if me.bsn_pseudonym is None or me.erased_at is not None:
            return []
        rows = _in_force(
            session,
            me.tenant_id,
            now,
            col(Mandate.representative_pseudonym) == me.bsn_pseudonym,
            col(Mandate.accepted_at).is_(None),
            col(Mandate.principal_id) != me.id,
        )
        out: list[Mandate] = []
        for mandate in rows:
            principal = session.get(Resident, mandate.principal_id)
            if principal is not None and principal.erased_at is None:
                out.append(mandate)
        return out

    def answer_invitation(
        self, session: Session, ctx: Context, me: Resident, mandate_id: str, *, accept: bool
    ) -> Mandate:
        """``me`` accepts or declines an invitation; the principal sees it in their history."""
        mandate = next((m for m in self.invitations(session, me, ctx.now) if m.id == mandate_id), None)
        if mandate is None:
            raise NotFoundError("no such invitation")
        principal = session.get(Resident, mandate.principal_id)
        assert principal is not None  # invitations() only lists those of a principal with a vault
        # Compare and set: of an accept and a decline at the same moment (two tabs, two nodes),
        # one wins and the other finds no invitation, never both.
        answered = session.execute(
            update(Mandate)
            .where(
                col(Mandate.id) == mandate.id,
                col(Mandate.representative_pseudonym) == me.bsn_pseudonym,
                col(Mandate.accepted_at).is_(None),
                col(Mandate.revoked_at).is_(None),
                col(Mandate.valid_until) > ctx.now,
            )
            .values(
                {"accepted_at": ctx.now, "representative_id": me.id} if accept else {"revoked_at": ctx.now}
            )
        )
        if getattr(answered, "rowcount", 0) != 1:
            session.rollback()
            raise NotFoundError("no such invitation")
        session.refresh(mandate)
        self.vault.audit(
            session,
            ctx,
            principal.tenant_id,
            tags.REPRESENTATIVE_ACCEPTED if accept else tags.REPRESENTATIVE_DECLINED,
            resident=principal,
            details={
                "mandate": mandate.id,
                "representative": me.audit_pseudonym,
                "scope": _scope(mandate),
            },
        )
        session.commit()
        return mandate

    def revoke(self, session: Session, ctx: Context, principal: Resident, mandate_id: str) -> None:
        """The principal stops a mandate (or a waiting invitation) of theirs."""
        mandate = session.get(Mandate, mandate_id)
        if (
            mandate is None
            or mandate.principal_id != principal.id
            or mandate.tenant_id != principal.tenant_id
        ):
            raise NotFoundError("no such mandate")
        self._stop(session, ctx, mandate, principal, details={"mandate": mandate.id})

    def withdraw(self, session: Session, ctx: Context, representative: Resident, mandate_id: str) -> None:
        """The representative stops acting for the principal (their agreement is theirs to take
        back), in the principal's trail with reason ``representative_withdrew``."""
        mandate = next(
            (m for m in self.received(session, representative, ctx.now) if m.id == mandate_id), None
        )
        principal = session.get(Resident, mandate.principal_id) if mandate is not None else None
        if mandate is None or principal is None:
            raise NotFoundError("no such mandate")
        details: dict[str, str | int | bool | None] = {
            "mandate": mandate.id,
            "representative": representative.audit_pseudonym,
        }
        self._stop(session, ctx, mandate, principal, reason="representative_withdrew", details=details)

    def _stop(
        self,
        session: Session,
        ctx: Context,
        mandate: Mandate,
        principal: Resident,
        *,
        details: dict[str, str | int | bool | None],
        reason: str | None = None,
    ) -> None:
        """End ``mandate`` with its entry in the principal's trail, committed. A compare and set:
        of a principal's revoke and a representative's withdrawal that cross, one ends it and
        the other finds no such mandate."""
        stopped = session.execute(
            update(Mandate)
            .where(col(Mandate.id) == mandate.id, col(Mandate.revoked_at).is_(None))
            .values(revoked_at=ctx.now)
        )
        if getattr(stopped, "rowcount", 0) != 1:
            session.rollback()
            raise NotFoundError("no such mandate")
        self.vault.audit(
            session,
            ctx,
            principal.tenant_id,
            tags.REPRESENTATIVE_REVOKED,
            resident=principal,
            reason=reason,
            details=details,
        )
        session.commit()

    def given(self, session: Session, principal: Resident, now: datetime) -> list[Mandate]:
        """The principal's mandates still in force, accepted or not yet."""
        return _in_force(session, principal.tenant_id, now, col(Mandate.principal_id) == principal.id)

    def received(self, session: Session, representative: Resident, now: datetime) -> list[Mandate]:
        """The accepted mandates ``representative`` may act on now."""
        return _in_force(
            session,
            representative.tenant_id,
            now,
            col(Mandate.representative_id) == representative.id,
            col(Mandate.accepted_at).is_not(None),
            col(Mandate.valid_from) <= now,
        )

    # -- gezag --------------------------------------------------------------------------------------
    def own_brp(self, session: Session, resident: Resident) -> dict[str, Any] | None:
        """The resident's own ``brp.persoon`` record, for the portal's own use (not audited as a
        read: the data goes to no one but the resident it is about)."""
        content = self.vault.own_record(session, resident, BRP_CATEGORY)
        return None if content is None else content.data

    def _registry_brp(self, session: Session, resident: Resident) -> dict[str, Any] | None:
        """``resident``'s ``brp.persoon`` if its current version came from the registry (an import,
        the operator, the demo), never a department's: the one rule for what authority and age
        are read from."""
        content = self.vault.own_record(session, resident, BRP_CATEGORY)
        if content is None or content.source.startswith(DEPARTMENT_SOURCE):
            return None
        return content.data

    def children_with_gezag(self, session: Session, parent: Resident, now: datetime) -> list[Principal]:
        """The minors over whom the BRP says ``parent`` holds authority and who have a vault.

        A child stops being one on their eighteenth birthday, by the earlier of the birth dates in
        the parent's ``kinderen`` and the child's own registry record, not at the next import from
        the BRP that drops the relation.

        Only a version that came from the registry counts (an import, the operator, the demo): a
        department with a write grant on ``brp.persoon`` could otherwise write a gezag relation
        over anyone into a resident's record and so give them that person's vault. A department's
        version gives no authority until the next import from the BRP replaces it."""
        record = self._registry_brp(session, parent)
        if record is None:
            return []
        try:
            relations = gezag_relations(record)
            parent_bsn = self.vault.reveal_bsn(parent)
        except (ConnectorError, ResidentErasedError):
            return []
        children = [k for k in record.get("kinderen", ()) if k.get("bsn")]
        names = {k["bsn"]: _name(k.get("naam")) for k in children}
        born = {k["bsn"]: k.get("geboortedatum") for k in children}
        today = now.astimezone(TIMEZONE).date()
        out: list[Principal] = []
        for relation in relations:
            child_bsn = relation.minderjarige_bsn
            if child_bsn is None or not relation.grants_authority_to(parent_bsn):
                continue
            try:
                child = self.vault.resident_by_bsn(session, parent.tenant_id, child_bsn)
            except (InvalidInputError, NotFoundError):
                continue
            if child.erased_at is not None or child.id == parent.id:
                continue
            # The earliest day either registry record lets the child be of age: the parent's
            # ``kinderen`` (absent for a guardian or a third party with gezag) or the child's own
            # (read, and decrypted, only when the parent's record does not settle it already).
            of_age = adult_from(born.get(child_bsn))
            if of_age is not None and today >= of_age:
                continue
            own = adult_from(self._registry_birth_date(session, child))
            if own is not None and today >= own:
                continue
            out.append(Principal(child, GEZAG, names.get(child_bsn), None))
        return out

    def _registry_birth_date(self, session: Session, resident: Resident) -> str | None:
        """The birth date in ``resident``'s own ``brp.persoon``, if the registry gave that version (a
        department's write could otherwise make an adult a minor again)."""
        geboorte = (self._registry_brp(session, resident) or {}).get("geboorte")
        datum = geboorte.get("datum") if isinstance(geboorte, dict) else None
        return datum if isinstance(datum, str) else None

    def principal_name(self, session: Session, mandate: Mandate) -> str | None:
        """Whose invitation this is: the representative must know whom they would act for."""
        principal = session.get(Resident, mandate.principal_id)
        return None if principal is None else self.display_name(session, principal)

    def display_name(self, session: Session, resident: Resident) -> str | None:
        return _name((self.own_brp(session, resident) or {}).get("naam"))

    # -- the live check ---------------------------------------------------------------------------
    def principals(self, session: Session, me: Resident, now: datetime) -> list[Principal]:
        """Everyone ``me`` may act for now: mandates first, then children with gezag."""
        out: list[Principal] = []
        for mandate in self.received(session, me, now):
            principal = session.get(Resident, mandate.principal_id)
            if principal is None or principal.erased_at is not None:
                continue
            authority = Authority("mandate", mandate.may_view, mandate.may_decide, mandate.id)
            name = self.display_name(session, principal)
            out.append(Principal(principal, authority, name, mandate.valid_until))
        out.extend(self.children_with_gezag(session, me, now))
        return out

    def authority(
        self, session: Session, me: Resident, principal_id: str, basis: str, now: datetime
    ) -> tuple[Resident, Authority] | None:
        """Whether ``me`` may still act for ``principal_id`` on ``basis``; None when not (any more)."""
        if basis == "mandate":
            for mandate in self.received(session, me, now):
                if mandate.principal_id == principal_id:
                    principal = session.get(Resident, principal_id)
                    if principal is not None and principal.erased_at is None:
                        return principal, Authority(
                            "mandate", mandate.may_view, mandate.may_decide, mandate.id
                        )
            return None
        if basis == "gezag":
            for child in self.children_with_gezag(session, me, now):
                if child.resident.id == principal_id:
                    return child.resident, GEZAG
        return None


def _name(naam: Any) -> str | None:
    if not isinstance(naam, dict):
        return None
    parts = [naam.get("voornamen"), naam.get("voorvoegsel"), naam.get("geslachtsnaam")]
    text = " ".join(str(p) for p in parts if p)
    return text or None

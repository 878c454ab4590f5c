"""The processing-activity register of a tenant (GDPR art. 30): every request names one of these.

A purpose says in plain Dutch and English what the data is for, on which legal basis (GDPR
art. 6(1)), which categories it may need (and may write), and for how long at most.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlmodel import Session, col, select

from audit import tags
from consent import auditing
from consent.errors import DuplicatePurposeError, InvalidPurposeError, PurposeNotFoundError
from consent.models import Purpose
from consent.schemas import LEGAL_BASES
from vault.models import Category, Tenant
from vault.services import Context

PURPOSE_CODE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MAX_DAYS = 5 * 366  # a consent for longer than five years is no longer a considered choice


class PurposeService:
    def add(
        self,
        session: Session,
        ctx: Context,
        tenant: Tenant,
        code: str,
        *,
        description_nl: str,
        description_en: str,
        legal_basis: str,
        categories: Iterable[str],
        max_days: int,
        writable_categories: Iterable[str] = (),
        statute: str | None = None,
    ) -> Purpose:
        if not PURPOSE_CODE.match(code):
            raise InvalidPurposeError("a purpose code is lower-case letters, digits, '.', '-' and '_'")
        texts = {"Dutch": description_nl.strip(), "English": description_en.strip()}
        for language, text in texts.items():
            if not text or len(text) > 2000:
                raise InvalidPurposeError(f"the {language} description needs 1 to 2000 characters")
        if legal_basis not in LEGAL_BASES:
            raise InvalidPurposeError("the legal basis is one of " + ", ".join(LEGAL_BASES))
        statute = (statute or "").strip() or None
        if legal_basis != "consent" and statute is None:
            raise InvalidPurposeError("a legal basis other than consent needs the statute that requires it")
        if statute is not None and len(statute) > 500:
            raise InvalidPurposeError("the statute reference is at most 500 characters")
        wanted = sorted({c.strip() for c in categories if c.strip()})
        writable = sorted({c.strip() for c in writable_categories if c.strip()})
        if not wanted:
            raise InvalidPurposeError("a purpose needs at least one category")
        known = set(session.exec(select(Category.code).where(col(Category.tenant_id) == tenant.id)).all())
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise InvalidPurposeError("unknown categories: " + ", ".join(unknown[:10]))
        if not set(writable) <= set(wanted):
            raise InvalidPurposeError("writable categories must be among the purpose's categories")
        if not 1 <= max_days <= MAX_DAYS:
            raise InvalidPurposeError(f"the maximum duration is 1 to {MAX_DAYS} days")
        if session.get(Purpose, (tenant.id, code)) is not None:
            raise DuplicatePurposeError
        purpose = Purpose(
            tenant_id=tenant.id,
            code=code,
            description_nl=texts["Dutch"],
            description_en=texts["English"],
            legal_basis=legal_basis,
            statute=statute,
            categories=wanted,
            writable_categories=writable,
            max_days=max_days,
            created_at=ctx.now,
        )
        session.add(purpose)
        session.flush()
        auditing.record(
            session,
            ctx,
            tenant.id,
            tags.PURPOSE_ADDED,
            purpose=code,
            legal_basis=legal_basis,
            categories=wanted,
            details={"max_days": max_days, "writable": ",".join(writable) or None},
        )
        session.commit()
        return purpose

    def get(self, session: Session, tenant_id: str, code: str) -> Purpose:
        purpose = session.get(Purpose, (tenant_id, code))
        if purpose is None:
            raise PurposeNotFoundError
        return purpose

    def list(self, session: Session, tenant_id: str) -> list[Purpose]:
        stmt = select(Purpose).where(Purpose.tenant_id == tenant_id).order_by(col(Purpose.code))
        return list(session.exec(stmt))

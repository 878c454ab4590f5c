"""The vault's services: tenants, residents, records, erasure and key rotation.

Every act that matters appends its audit entry in the caller's session and then commits that
session: the act and its entry land together or not at all. Time is always an argument.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from audit import services as audit_log
from audit import tags
from audit.schemas import Actor, AuditEvent, TraceContext
from vault import crypto
from vault.bsn import is_valid_bsn
from vault.categories import default_categories, fed_by_registry
from vault.errors import (
    AccessDeniedError,
    CategoryNotFoundError,
    DuplicateResidentError,
    DuplicateTenantError,
    InvalidBsnError,
    InvalidInputError,
    InvalidRecordError,
    InvalidSlugError,
    NotFoundError,
    RecordNotFoundError,
    ResidentErasedError,
    ResidentNotFoundError,
    TenantNotFoundError,
    VaultError,
)
from vault.keys import KeyProvider
from vault.models import Category, KeyVersion, Record, RecordVersion, Resident, Tenant
from vault.schemas import AccessGrant, RecordContent, RecordSummary

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
CATEGORY_CODE = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*$")
MAX_RECORD_BYTES = 256 * 1024


def new_id() -> str:
    """An opaque, unguessable identifier (128 bits, hex)."""
    return secrets.token_hex(16)


def log_origin(slug: str) -> str:
    return f"kluis/{slug}"


@dataclass(frozen=True, slots=True)
class ReadOutcome:
    """A decided read: the audit event to make durable first, then the content or the error."""

    event: AuditEvent
    content: RecordContent | None
    error: VaultError | None

    def result(self) -> RecordContent:
        if self.error is not None:
            raise self.error
        assert self.content is not None
        return self.content


# The source of a record version a department wrote through the data API (``department:<code>``).
DEPARTMENT_SOURCE = "department:"


@dataclass(frozen=True, slots=True)
class Context:
    """Who acts, in which trace, at what time: passed to every service call that is audited."""

    actor: Actor
    trace: TraceContext
    now: datetime


class VaultService:
    """The protected store. Holds no state but its key provider."""

    def __init__(self, keys: KeyProvider) -> None:
        self.keys = keys
        self._validators: dict[tuple[str, str], Draft202012Validator] = {}

    # -- audit ------------------------------------------------------------------------------------
    def audit(
        self,
        session: Session,
        ctx: Context,
        tenant_id: str,
        name: str,
        *,
        resident: Resident | None = None,
        decision: str | None = None,
        reason: str | None = None,
        categories: Iterable[str] = (),
        grant: AccessGrant | None = None,
        status: str = "ok",
        details: dict[str, str | int | bool | None] | None = None,
    ) -> None:
        audit_log.append(
            session,
            self.event(
                ctx,
                tenant_id,
                name,
                resident=resident,
                decision=decision,
                reason=reason,
                categories=categories,
                grant=grant,
                status=status,
                details=details,
            ),
        )

    @staticmethod
    def event(
        ctx: Context,
        tenant_id: str,
        name: str,
        *,
        resident: Resident | None = None,
        decision: str | None = None,
        reason: str | None = None,
        categories: Iterable[str] = (),
        grant: AccessGrant | None = None,
        status: str = "ok",
        details: dict[str, str | int | bool | None] | None = None,
    ) -> AuditEvent:
        """The audit event of an act: opaque ids and codes only, never values."""
        return AuditEvent(
            tenant=tenant_id,
            name=name,
            actor=ctx.actor,
            trace=ctx.trace,
            start_time=ctx.now,
            end_time=ctx.now,
            status="ok" if status == "ok" else "error",
            decision="allow" if decision == "allow" else ("deny" if decision == "deny" else None),
            reason=reason,
            data_subject_id=resident.audit_pseudonym if resident is not None else None,
            processing_activity_id=grant.purpose if grant else None,
            legal_basis=grant.legal_basis if grant else None,
            grant_id=grant.grant_id if grant else None,
            department=grant.department if grant else None,
            client_id=grant.client_id if grant else None,
            categories=tuple(sorted(categories)),
            details=details or {},
        )

    # -- tenants ----------------------------------------------------------------------------------
    def create_tenant(self, session: Session, ctx: Context, slug: str, name: str) -> Tenant:
        if not SLUG.match(slug):
            raise InvalidSlugError("a municipality slug is lower-case letters, digits and dashes")
        if not name.strip() or len(name) > 200:
            raise InvalidSlugError("a municipality needs a name of at most 200 characters")
        if session.exec(select(Tenant).where(Tenant.slug == slug)).first() is not None:
            raise DuplicateTenantError
        tenant = Tenant(id=new_id(), slug=slug, name=name.strip(), current_kek_version=1, created_at=ctx.now)
        session.add(tenant)
        session.flush()  # the tenant row first: key versions and categories refer to it
        self.keys.create_kek(tenant.id, 1)
        session.add(KeyVersion(tenant_id=tenant.id, version=1, provider=self.keys.name, created_at=ctx.now))
        for code, schema in default_categories().items():
            self._add_category(session, tenant, code, schema, ctx.now)
        session.flush()
        audit_log.ensure_log(session, tenant.id, log_origin(slug))
        self.audit(session, ctx, tenant.id, tags.TENANT_CREATED, details={"slug": slug})
        session.commit()
        return tenant

    def tenant(self, session: Session, slug: str) -> Tenant:
        tenant = session.exec(select(Tenant).where(Tenant.slug == slug)).first()
        if tenant is None:
            raise TenantNotFoundError
        return tenant

    def tenants(self, session: Session) -> list[Tenant]:
        return list(session.exec(select(Tenant).order_by(col(Tenant.slug))))

    # -- categories -------------------------------------------------------------------------------
    def _add_category(
        self, session: Session, tenant: Tenant, code: str, schema: dict[str, Any], now: datetime
    ) -> Category:
        if not CATEGORY_CODE.match(code) or len(code) > 64:
            raise InvalidRecordError("a category code is lower-case words separated by dots")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise InvalidRecordError("the category schema is not a valid JSON Schema") from exc
        category = Category(
            tenant_id=tenant.id,
            code=code,
            title=str(schema.get("title", code))[:200],
            json_schema=json.dumps(schema, sort_keys=True),
            special=bool(schema.get("x-kluis-special", False)),
            created_at=now,
        )
        session.add(category)
        return category

    def register_category(
        self, session: Session, ctx: Context, tenant: Tenant, code: str, schema: dict[str, Any]
    ) -> Category:
        if session.get(Category, (tenant.id, code)) is not None:
            raise InvalidRecordError("this category already exists")
        category = self._add_category(session, tenant, code, schema, ctx.now)
        self.audit(session, ctx, tenant.id, tags.CATEGORY_REGISTERED, categories=[code])
        session.commit()
        return category

    def categories(self, session: Session, tenant_id: str) -> list[Category]:
        stmt = select(Category).where(Category.tenant_id == tenant_id).order_by(col(Category.code))
        return list(session.exec(stmt))

    def category(self, session: Session, tenant_id: str, code: str) -> Category:
        category = session.get(Category, (tenant_id, code))
        if category is None:
            raise CategoryNotFoundError
        return category

    def validate(self, category: Category, data: Any) -> dict[str, Any]:
        """Check ``data`` against the category's schema; the error names the place, not the value."""
        if not isinstance(data, dict):
            raise InvalidRecordError("a record must be a JSON object")
        key = (category.tenant_id, category.code)
        validator = self._validators.get(key)
        if validator is None:
            validator = Draft202012Validator(
                json.loads(category.json_schema), format_checker=Draft202012Validator.FORMAT_CHECKER
            )
            self._validators[key] = validator
        error = next(iter(sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))), None)
        if error is not None:
            where = "/" + "/".join(str(p) for p in error.absolute_path)
            raise InvalidRecordError(
                f"the record does not match the {category.code} schema at {where}: "
                f"{error.validator} rule failed"
            )
        return data

    # -- residents --------------------------------------------------------------------------------
    def bsn_pseudonym(self, tenant_id: str, bsn: str) -> bytes:
        if not is_valid_bsn(bsn):
            raise InvalidBsnError
        return self.keys.pseudonym(tenant_id, b"bsn:" + bsn.encode())

    def add_resident(self, session: Session, ctx: Context, tenant: Tenant, bsn: str) -> Resident:
        pseudonym = self.bsn_pseudonym(tenant.id, bsn)
        if session.exec(
            select(Resident.id).where(Resident.tenant_id == tenant.id, Resident.bsn_pseudonym == pseudonym)
        ).first():
            raise DuplicateResidentError
        resident_id = new_id()
        data_key = crypto.new_key()
        version = tenant.current_kek_version
        resident = Resident(
            id=resident_id,
            tenant_id=tenant.id,
            bsn_pseudonym=pseudonym,
            bsn_ciphertext=crypto.seal(data_key, bsn.encode(), crypto.bsn_aad(tenant.id, resident_id)),
            wrapped_data_key=self.keys.wrap(
                tenant.id, version, data_key, crypto.data_key_aad(tenant.id, resident_id, version)
            ),
            kek_version=version,
            audit_pseudonym=secrets.token_hex(16),
            created_at=ctx.now,
        )
        session.add(resident)
        session.flush()
        self.audit(session, ctx, tenant.id, tags.RESIDENT_ADDED, resident=resident)
        session.commit()
        return resident

    def resident_by_bsn(self, session: Session, tenant_id: str, bsn: str) -> Resident:
        pseudonym = self.bsn_pseudonym(tenant_id, bsn)
        resident = session.exec(
            select(Resident).where(Resident.tenant_id == tenant_id, Resident.bsn_pseudonym == pseudonym)
        ).first()
        if resident is None:
            raise ResidentNotFoundError
        return resident

    def resident(self, session: Session, tenant_id: str, resident_id: str) -> Resident:
        resident = session.get(Resident, resident_id)
        if resident is None or resident.tenant_id != tenant_id:
            raise ResidentNotFoundError
        return resident

    def data_key(self, resident: Resident) -> bytes:
        if (
            resident.erased_at is not None
            or resident.wrapped_data_key is None
            or resident.kek_version is None
        ):
            raise ResidentErasedError
        aad = crypto.data_key_aad(resident.tenant_id, resident.id, resident.kek_version)
        return self.keys.unwrap(resident.tenant_id, resident.kek_version, resident.wrapped_data_key, aad)

    def reveal_bsn(self, resident: Resident) -> str:
        """The BSN in clear, for the resident's own export and for connectors; never for logs."""
        if resident.bsn_ciphertext is None:
            raise ResidentErasedError
        aad = crypto.bsn_aad(resident.tenant_id, resident.id)
        return crypto.open_sealed(self.data_key(resident), resident.bsn_ciphertext, aad).decode()

    def erase_resident(self, session: Session, ctx: Context, resident: Resident) -> None:
        """Crypto-shred: destroy the data key and the BSN; delete the ciphertexts too.

        The resident row stays as a tombstone (``erased_at``) so that grants, tokens and the audit
        trail (which holds only the random audit pseudonym) resolve to "erased", not "unknown".
        """
        if resident.erased_at is not None:
            raise ResidentErasedError
        record_ids = select(Record.id).where(
            Record.tenant_id == resident.tenant_id, Record.resident_id == resident.id
        )
        versions = session.exec(
            select(func.count())
            .select_from(RecordVersion)
            .where(col(RecordVersion.record_id).in_(record_ids))
        ).one()
        session.execute(delete(RecordVersion).where(col(RecordVersion.record_id).in_(record_ids)))
        session.execute(
            delete(Record).where(
                col(Record.resident_id) == resident.id, col(Record.tenant_id) == resident.tenant_id
            )
        )
        resident.wrapped_data_key = None
        resident.bsn_ciphertext = None
        resident.bsn_pseudonym = None
        resident.kek_version = None
        resident.erased_at = ctx.now
        session.add(resident)
        self.audit(
            session,
            ctx,
            resident.tenant_id,
            tags.RESIDENT_ERASED,
            resident=resident,
            details={"record_versions_destroyed": int(versions)},
        )
        session.commit()

    # -- records ----------------------------------------------------------------------------------
    def put_record(
        self,
        session: Session,
        ctx: Context,
        resident: Resident,
        category_code: str,
        data: Any,
        *,
        source: str,
        grant: AccessGrant | None = None,
        event_name: str = tags.RECORD_WRITTEN,
    ) -> RecordSummary:
        # The caller's Resident may be stale: re-read it under a row lock (SQLite: the write unit of
        # work already holds the database lock) so a record never lands after an erasure.
        locked = session.exec(select(Resident).where(Resident.id == resident.id).with_for_update()).one()
        if locked.erased_at is not None:
            raise ResidentErasedError
        resident = locked
        category = self.category(session, resident.tenant_id, category_code)
        document = self.validate(category, data)
        plaintext = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        if len(plaintext) > MAX_RECORD_BYTES:
            raise InvalidRecordError("the record is too large")
        data_key = self.data_key(resident)
        record = session.exec(
            select(Record).where(
                Record.tenant_id == resident.tenant_id,
                Record.resident_id == resident.id,
                Record.category == category_code,
            )
        ).first()
        if record is None:
            record = Record(
                id=new_id(),
                tenant_id=resident.tenant_id,
                resident_id=resident.id,
                category=category_code,
                current_version=1,
                created_at=ctx.now,
                updated_at=ctx.now,
            )
        else:
            record.current_version += 1
            record.updated_at = ctx.now
        session.add(record)
        aad = crypto.record_aad(
            resident.tenant_id, resident.id, record.id, record.current_version, category_code
        )
        session.add(
            RecordVersion(
                record_id=record.id,
                version=record.current_version,
                tenant_id=resident.tenant_id,
                source=source[:64],
                created_at=ctx.now,
                ciphertext=crypto.seal(data_key, plaintext, aad),
            )
        )
        session.flush()
        self.audit(
            session,
            ctx,
            resident.tenant_id,
            event_name,
            resident=resident,
            decision="allow",
            categories=[category_code],
            grant=grant,
            details={"version": record.current_version, "source": source[:64]},
        )
        session.commit()
        return RecordSummary(category_code, record.current_version, ctx.now, source[:64])

    def _record(self, session: Session, resident: Resident, category: str) -> Record:
        record = session.exec(
            select(Record).where(
                Record.tenant_id == resident.tenant_id,
                Record.resident_id == resident.id,
                Record.category == category,
            )
        ).first()
        if record is None:
            raise RecordNotFoundError
        return record

    def decrypt(self, resident: Resident, record: Record, version: RecordVersion) -> RecordContent:
        aad = crypto.record_aad(resident.tenant_id, resident.id, record.id, version.version, record.category)
        plaintext = crypto.open_sealed(self.data_key(resident), version.ciphertext, aad)
        return RecordContent(
            category=record.category,
            version=version.version,
            updated_at=version.created_at,
            source=version.source,
            data=json.loads(plaintext),
        )

    def get_record(
        self, session: Session, ctx: Context, resident: Resident, category: str, version: int | None = None
    ) -> RecordContent:
        """The operator's read (CLI): audited like any other read."""
        if resident.erased_at is not None:
            raise ResidentErasedError
        record = self._record(session, resident, category)
        wanted = version if version is not None else record.current_version
        row = session.get(RecordVersion, (record.id, wanted))
        if row is None:
            raise RecordNotFoundError
        content = self.decrypt(resident, record, row)
        self.audit(
            session,
            ctx,
            resident.tenant_id,
            tags.RECORD_READ,
            resident=resident,
            decision="allow",
            categories=[category],
            details={"version": wanted},
        )
        session.commit()
        return content

    def summaries(self, session: Session, resident: Resident) -> list[RecordSummary]:
        rows = session.exec(
            select(Record, RecordVersion)
            .join(
                RecordVersion,
                (col(RecordVersion.record_id) == col(Record.id))
                & (col(RecordVersion.version) == col(Record.current_version)),
            )
            .where(Record.tenant_id == resident.tenant_id, Record.resident_id == resident.id)
            .order_by(col(Record.category))
        ).all()
        return [RecordSummary(r.category, r.current_version, v.created_at, v.source) for r, v in rows]

    def history(self, session: Session, resident: Resident, category: str) -> list[RecordSummary]:
        record = self._record(session, resident, category)
        rows = session.exec(
            select(RecordVersion)
            .where(RecordVersion.record_id == record.id)
            .order_by(col(RecordVersion.version))
        )
        return [RecordSummary(category, v.version, v.created_at, v.source) for v in rows]

    def own_record(self, session: Session, resident: Resident, category: str) -> RecordContent | None:
        """The resident's current record of ``category``, decrypted (only that one), or None: for
        the portal's own use on the resident's behalf, not a department's read."""
        if resident.erased_at is not None:
            return None
        try:
            record = self._record(session, resident, category)
        except RecordNotFoundError:
            return None
        row = session.get(RecordVersion, (record.id, record.current_version))
        return None if row is None else self.decrypt(resident, record, row)

    def all_records(self, session: Session, resident: Resident) -> list[RecordContent]:
        """Every current record, decrypted: for the resident's own export (art. 15/20)."""
        out = []
        for summary in self.summaries(session, resident):
            record = self._record(session, resident, summary.category)
            row = session.get(RecordVersion, (record.id, record.current_version))
            assert row is not None
            out.append(self.decrypt(resident, record, row))
        return out

    # -- department access (through an AccessGrant) ----------------------------------------------
    def granted_resident(self, session: Session, grant: AccessGrant) -> Resident:
        resident = session.get(Resident, grant.resident_id)
        if resident is None or resident.tenant_id != grant.tenant_id:
            raise AccessDeniedError("resident_unknown")
        if resident.erased_at is not None:
            raise AccessDeniedError("resident_erased")
        return resident

    def deny(
        self,
        session: Session,
        ctx: Context,
        grant: AccessGrant,
        name: str,
        reason: str,
        categories: Iterable[str] = (),
        resident: Resident | None = None,
    ) -> AccessDeniedError:
        """Audit a refused attempt, commit it, and return the error for the caller to raise."""
        session.rollback()
        if resident is None:
            resident = session.get(Resident, grant.resident_id)
            if resident is not None and resident.tenant_id != grant.tenant_id:
                resident = None
        self.audit(
            session,
            ctx,
            grant.tenant_id,
            name,
            resident=resident,
            decision="deny",
            reason=reason,
            categories=categories,
            grant=grant,
        )
        session.commit()
        return AccessDeniedError(reason)

    # -- key rotation -----------------------------------------------------------------------------
    def begin_rotation(self, session: Session, tenant: Tenant, now: datetime) -> int:
        """Create the next KEK version and make it current: new data keys are wrapped by it at once."""
        latest = session.exec(
            select(func.max(KeyVersion.version)).where(KeyVersion.tenant_id == tenant.id)
        ).one()
        version = int(latest or 0) + 1
        self.keys.create_kek(tenant.id, version)
        session.add(KeyVersion(tenant_id=tenant.id, version=version, provider=self.keys.name, created_at=now))
        session.execute(update(Tenant).where(col(Tenant.id) == tenant.id).values(current_kek_version=version))
        session.commit()
        return version

    def rewrap_batch(self, session: Session, tenant_id: str, version: int, limit: int = 500) -> int:
        """Rewrap up to ``limit`` data keys still under an older KEK. Records are never decrypted:
        only the 32-byte data keys pass through memory. Returns how many were rewrapped."""
        residents = session.exec(
            select(Resident)
            .where(
                Resident.tenant_id == tenant_id,
                col(Resident.kek_version).is_not(None),
                Resident.kek_version != version,
            )
            .limit(limit)
        ).all()
        for resident in residents:
            data_key = self.data_key(resident)
            resident.wrapped_data_key = self.keys.wrap(
                tenant_id, version, data_key, crypto.data_key_aad(tenant_id, resident.id, version)
            )
            resident.kek_version = version
            session.add(resident)
        session.commit()
        return len(residents)

    def finish_rotation(
        self, session: Session, ctx: Context, tenant: Tenant, version: int, *, destroy_old: bool
    ) -> list[int]:
        """Retire every older KEK version no data key uses any more; optionally destroy it."""
        in_use = set(
            session.exec(
                select(Resident.kek_version)
                .where(Resident.tenant_id == tenant.id, col(Resident.kek_version).is_not(None))
                .distinct()
            ).all()
        )
        retired: list[int] = []
        for row in session.exec(
            select(KeyVersion).where(KeyVersion.tenant_id == tenant.id, KeyVersion.version < version)
        ):
            if row.version in in_use:
                continue
            if row.retired_at is None:
                row.retired_at = ctx.now
                session.add(row)
            retired.append(row.version)
        self.audit(
            session,
            ctx,
            tenant.id,
            tags.KEY_ROTATED,
            details={
                "kek_version": version,
                "retired": ",".join(map(str, retired)),
                "destroyed": destroy_old,
            },
        )
        session.commit()
        if destroy_old:
            # Only after the commit: a failed rotation must never lose a KEK still in use.
            for old in retired:
                self.keys.destroy_kek(tenant.id, old)
        return retired

    # -- the department data path -----------------------------------------------------------------
    def check_grant(
        self,
        session: Session,
        grant: AccessGrant,
        category: str | None,
        now: datetime,
        *,
        write: bool = False,
    ) -> tuple[Resident | None, str | None]:
        """The live checks every department request passes: the resident and ``None``, or a reason."""
        resident = session.get(Resident, grant.resident_id)
        return resident, self.refusal(grant, category, resident, now, write=write)

    @staticmethod
    def refusal(
        grant: AccessGrant,
        category: str | None,
        resident: Resident | None,
        now: datetime,
        *,
        write: bool = False,
    ) -> str | None:
        """Why ``grant`` does not cover this act on ``resident`` at ``now`` (``None``: it does)."""
        if category is None:
            reason = "grant_expired" if now >= grant.valid_until else None
        else:
            reason = grant.covers(category, now)
        if reason is None and write and category not in grant.may_write:
            reason = "write_not_granted"
        if resident is None or resident.tenant_id != grant.tenant_id:
            return reason or "resident_unknown"
        if resident.erased_at is not None:
            return reason or "resident_erased"
        return reason

    def _granted(
        self,
        session: Session,
        ctx: Context,
        grant: AccessGrant,
        name: str,
        category: str | None,
        *,
        write: bool = False,
    ) -> Resident:
        """``check_grant``, with a refusal audited and committed before it is raised."""
        resident, reason = self.check_grant(session, grant, category, ctx.now, write=write)
        if reason is not None:
            raise self.deny(session, ctx, grant, name, reason, [category] if category else [], resident)
        assert resident is not None
        return resident

    def list_granted(self, session: Session, ctx: Context, grant: AccessGrant) -> list[RecordSummary]:
        resident = self._granted(session, ctx, grant, tags.RECORDS_LISTED, None)
        summaries = [s for s in self.summaries(session, resident) if s.category in grant.categories]
        self.audit(
            session,
            ctx,
            grant.tenant_id,
            tags.RECORDS_LISTED,
            resident=resident,
            decision="allow",
            categories=[s.category for s in summaries],
            grant=grant,
        )
        session.commit()
        return summaries

    def prepare_read(
        self,
        session: Session,
        ctx: Context,
        grant: AccessGrant,
        category: str,
        *,
        version: int | None = None,
        fields: tuple[str, ...] | None = None,
    ) -> ReadOutcome:
        """Decide and decrypt a department's read without writing anything.

        The caller must make ``outcome.event`` durable *before* it hands out ``outcome.content`` —
        in the same transaction (``read_granted``) or through the group committer of the hot path.
        """
        resident = session.get(Resident, grant.resident_id)
        record = session.exec(
            select(Record).where(
                Record.tenant_id == grant.tenant_id,
                Record.resident_id == grant.resident_id,
                Record.category == category,
            )
        ).first()
        wanted = version if version is not None else (record.current_version if record else 0)
        row = session.get(RecordVersion, (record.id, wanted)) if record is not None else None
        return self.decide_read(ctx, grant, category, resident, record, row, fields=fields)

    def decide_read(
        self,
        ctx: Context,
        grant: AccessGrant,
        category: str,
        resident: Resident | None,
        record: Record | None,
        row: RecordVersion | None,
        *,
        fields: tuple[str, ...] | None = None,
    ) -> ReadOutcome:
        """The read decision on rows however they were fetched (the hot path reads them leanly)."""
        reason = self.refusal(grant, category, resident, ctx.now)
        if reason is not None:
            resident = resident if resident is not None and resident.tenant_id == grant.tenant_id else None
            return ReadOutcome(
                self.event(
                    ctx,
                    grant.tenant_id,
                    tags.RECORD_READ,
                    resident=resident,
                    decision="deny",
                    reason=reason,
                    categories=[category],
                    grant=grant,
                ),
                None,
                AccessDeniedError(reason),
            )
        assert resident is not None
        if record is None or row is None:
            return ReadOutcome(
                self.event(
                    ctx,
                    grant.tenant_id,
                    tags.RECORD_READ,
                    resident=resident,
                    decision="allow",
                    status="error",
                    reason="record_not_found",
                    categories=[category],
                    grant=grant,
                ),
                None,
                RecordNotFoundError(),
            )
        content = self.decrypt(resident, record, row)
        if fields is not None:
            content = RecordContent(
                content.category,
                content.version,
                content.updated_at,
                content.source,
                {k: v for k, v in content.data.items() if k in fields},
            )
        event = self.event(
            ctx,
            grant.tenant_id,
            tags.RECORD_READ,
            resident=resident,
            decision="allow",
            categories=[category],
            grant=grant,
            details={"version": row.version, "fields": ",".join(fields) if fields is not None else None},
        )
        return ReadOutcome(event, content, None)

    def read_granted(
        self,
        session: Session,
        ctx: Context,
        grant: AccessGrant,
        category: str,
        *,
        version: int | None = None,
        fields: tuple[str, ...] | None = None,
    ) -> RecordContent:
        """A department's read: live checks, decrypt, audit entry committed, then the data."""
        outcome = self.prepare_read(session, ctx, grant, category, version=version, fields=fields)
        session.rollback()  # end the reading transaction; the entry goes into a write transaction
        audit_log.append(session, outcome.event)
        session.commit()  # the entry is durable before any decrypted byte leaves
        return outcome.result()

    def history_granted(
        self, session: Session, ctx: Context, grant: AccessGrant, category: str
    ) -> list[RecordSummary]:
        resident = self._granted(session, ctx, grant, tags.RECORD_READ, category)
        if not grant.may_read_history:
            raise self.deny(
                session, ctx, grant, tags.RECORD_READ, "history_not_granted", [category], resident
            )
        try:
            versions = self.history(session, resident, category)
        except RecordNotFoundError:
            versions = []
        self.audit(
            session,
            ctx,
            grant.tenant_id,
            tags.RECORD_READ,
            resident=resident,
            decision="allow",
            categories=[category],
            grant=grant,
            details={"history": True},
        )
        session.commit()
        if not versions:
            raise RecordNotFoundError
        return versions

    def write_granted(
        self, session: Session, ctx: Context, grant: AccessGrant, category: str, data: Any
    ) -> RecordSummary:
        resident = self._granted(session, ctx, grant, tags.RECORD_WRITTEN, category, write=True)
        stored = session.get(Category, (grant.tenant_id, category))
        if fed_by_registry(category, stored.json_schema if stored is not None else None):
            # A base registry's copy (the BRP) is written by its imports only, whatever a purpose
            # says: a department's version would stand beside the registry's word as if it were it.
            raise self.deny(
                session, ctx, grant, tags.RECORD_WRITTEN, "category_from_registry", [category], resident
            )
        try:
            return self.put_record(
                session,
                ctx,
                resident,
                category,
                data,
                source=DEPARTMENT_SOURCE + grant.department,
                grant=grant,
            )
        except (InvalidInputError, NotFoundError) as exc:
            # The attempt is audited too; the refused document itself is not kept anywhere.
            session.rollback()
            self.audit(
                session,
                ctx,
                grant.tenant_id,
                tags.RECORD_WRITTEN,
                resident=resident,
                decision="allow",
                status="error",
                reason=type(exc).__name__,
                categories=[category],
                grant=grant,
            )
            session.commit()
            raise

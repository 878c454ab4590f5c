"""The privacy officer's console: search, overview, anomaly findings and their review, verification
runs, reports. Every query is scoped by the officer's tenant.

The trail itself is read only through the audit package (search, summary, proofs, checkpoints,
export, verification); this module adds the console's own tables (``kluis.console.models``) and
writes an audit entry for every act of the officer (``audit:log:searched``, ``audit:log:exported``,
``audit:finding:reviewed``, ``audit:log:verified``) in the same unit of work as the act. Services
commit explicitly; the caller gives the session and the time.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from audit import leaf, merkle, tags
from audit import services as audit_log
from audit.checkpoints import CheckpointVerifier
from audit.errors import CheckpointSignatureError, ProofError
from audit.queries import encode_cursor, iter_events
from audit.schemas import Actor, AuditEvent, AuditQuery, Checkpoint, DaySummary, LoggedEvent, TraceContext
from audit.verify import Damage, VerifyResult, verify_log
from consent.errors import PurposeNotFoundError
from consent.purposes import PurposeService
from kluis.console import anomalies, stats
from kluis.console.anomalies import Event, Finding, Period, RuleSet, SpecialCategorySettings
from kluis.console.errors import InvalidSearchError, NotFoundError
from kluis.console.models import ConsoleFinding, ConsoleRules, ConsoleVerification
from kluis.console.schemas import (
    AnalysisResult,
    CheckpointView,
    EntryDetail,
    EntryPage,
    FindingView,
    GrantFacts,
    Overview,
    ProofView,
    PurposeCounts,
    PurposeFacts,
    Report,
    SearchFilters,
    VerificationView,
)
from vault.errors import InvalidInputError
from vault.errors import NotFoundError as VaultNotFoundError
from vault.services import Context, VaultService, new_id
from vault.signing import SigningKeyService

READ_NAMES = (tags.RECORD_READ, tags.RECORDS_LISTED)
SCAN_LIMIT = 5000  # entries looked at per page when filtering on category
TRACE_LIMIT = 200
GRANT_SCAN_LIMIT = 5000
GRANT_LOOKBACK = timedelta(days=366)  # how far back analysis looks for grant approvals
CONTEXT_NAMES = (tags.REQUEST_CREATED, tags.REQUEST_APPROVED, tags.GRANT_REVOKED)
FINDINGS_PAGE = 50
FINDING_COLUMNS = (
    "id",
    "rule",
    "status",
    "first_at",
    "last_at",
    "count",
    "client_id",
    "department",
    "reason",
    "reviewed_at",
    "reviewed_by",
    "review_note",
    "entries",
)


def local_period(since: date, until: date, zone: ZoneInfo) -> Period:
    """The local days ``since`` to ``until`` (both included) as a UTC ``[since, until)``."""
    return Period(
        datetime.combine(since, time(0), zone).astimezone(UTC),
        datetime.combine(until + timedelta(days=1), time(0), zone).astimezone(UTC),
    )


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


@dataclass
class ConsoleService:
    vault: VaultService
    purposes: PurposeService
    signing: SigningKeyService

    # -- recording the officer's acts -------------------------------------------------------------
    @staticmethod
    def record(
        session: Session,
        ctx: Context,
        tenant_id: str,
        name: str,
        *,
        subject: str | None = None,
        details: dict[str, str | int | bool | None] | None = None,
    ) -> None:
        """Append the audit entry of an officer's act (in the caller's unit of work; no commit)."""
        audit_log.append(
            session,
            AuditEvent(
                tenant=tenant_id,
                name=name,
                actor=ctx.actor,
                trace=ctx.trace,
                start_time=ctx.now,
                end_time=ctx.now,
                decision="allow",
                data_subject_id=subject,
                details={k: v for k, v in (details or {}).items() if v is not None},
            ),
        )

    def log_login(self, session: Session, ctx: Context, tenant_id: str, method: str) -> None:
        """Audit an officer's login to the tenant's trail (``audit:officer:logged_in``) and commit:
        who could read the whole trail, and since when, is part of that trail."""
        self.record(session, ctx, tenant_id, tags.OFFICER_LOGGED_IN, details={"method": method})
        session.commit()

    # -- the data subject -------------------------------------------------------------------------
    def subject_of(self, session: Session, tenant_id: str, bsn: str) -> str | None:
        """The audit pseudonym of the resident with ``bsn``, or None if there is none.

        Raises ``InvalidSearchError`` when ``bsn`` fails the 11-proef. The BSN is used for this
        look-up only and never stored, shown or logged.
        """
        try:
            resident = self.vault.resident_by_bsn(session, tenant_id, bsn)
        except InvalidInputError:
            raise InvalidSearchError("bsn") from None
        except VaultNotFoundError:
            return None
        return resident.audit_pseudonym

    # -- search -----------------------------------------------------------------------------------
    def log_search(
        self, session: Session, ctx: Context, tenant_id: str, filters: SearchFilters, *, page: bool
    ) -> None:
        """Audit a search (``audit:log:searched``) and commit: before any entry is read."""
        self.record(
            session,
            ctx,
            tenant_id,
            tags.LOG_SEARCHED,
            subject=filters.subject,
            details={**filters.used(), "page": page},
        )
        session.commit()

    def search(
        self,
        session: Session,
        tenant_id: str,
        filters: SearchFilters,
        *,
        cursor: str | None = None,
        limit: int = 50,
    ) -> EntryPage:
        """One page of matching entries, newest first (call ``log_search`` first)."""
        if filters.finds_nothing:
            return EntryPage([], None)
        query = filters.query()
        if filters.category is None:
            page = audit_log.search(session, tenant_id, query, limit=limit, cursor=cursor)
            return EntryPage(page.entries, page.next_cursor)
        # The audit package has no category filter: page through its results and keep the matches.
        found: list[LoggedEvent] = []
        scanned = 0
        while True:
            page = audit_log.search(session, tenant_id, query, limit=500, cursor=cursor)
            for item in page.entries:
                scanned += 1
                if filters.category in item.event.categories:
                    found.append(item)
                    if len(found) > limit:
                        return EntryPage(found[:limit], encode_cursor(found[limit - 1].seq))
            if page.next_cursor is None:
                return EntryPage(found, None)
            if scanned >= SCAN_LIMIT:
                return EntryPage(found, page.next_cursor)  # go on looking on the next page
            cursor = page.next_cursor

    def entry(self, session: Session, tenant_id: str, seq: int) -> EntryDetail:
        """One entry with its trace, its grant and purpose as the trail records them, and its
        inclusion proof against the latest signed checkpoint (call ``log_view`` before showing it)."""
        item = self._logged(session, tenant_id, seq)
        if item is None:
            raise NotFoundError
        event = item.event
        trace = audit_log.search(
            session,
            tenant_id,
            AuditQuery(trace_id=event.trace.trace_id, newest_first=False),
            limit=TRACE_LIMIT,
        ).entries
        grant = self.grant_facts(session, tenant_id, item) if event.grant_id else None
        code = event.processing_activity_id or (grant.purpose if grant else None)
        return EntryDetail(
            entry=item,
            trace=trace,
            grant=grant,
            purpose=self.purpose(session, tenant_id, code) if code else None,
            proof=self.proof(session, tenant_id, seq),
        )

    def log_view(self, session: Session, ctx: Context, tenant_id: str, item: LoggedEvent) -> None:
        """Audit that the officer opened one entry (as a search of it) and commit."""
        self.record(
            session,
            ctx,
            tenant_id,
            tags.LOG_SEARCHED,
            subject=item.event.data_subject_id,
            details={"entry": item.seq},
        )
        session.commit()

    @staticmethod
    def _logged(session: Session, tenant_id: str, seq: int) -> LoggedEvent | None:
        stored = audit_log.get_entry(session, tenant_id, seq) if seq >= 0 else None
        if stored is None:
            return None
        return LoggedEvent(seq=seq, event=leaf.decode_leaf(stored.leaf_bytes)[1])

    def grant_facts(self, session: Session, tenant_id: str, item: LoggedEvent) -> GrantFacts:
        """The approval and revocation entries of the entry's grant (found among the data subject's
        or else the client's entries)."""
        event = item.event
        grant_id = event.grant_id
        assert grant_id is not None
        if event.data_subject_id is not None:
            base = AuditQuery(data_subject_id=event.data_subject_id)
        else:
            base = AuditQuery(client_id=event.client_id)
        facts = GrantFacts(grant_id=grant_id)
        for name in (tags.REQUEST_APPROVED, tags.GRANT_REVOKED):
            for n, found in enumerate(iter_events(session, tenant_id, replace(base, name=name))):
                if n >= GRANT_SCAN_LIMIT:
                    break
                if found.event.grant_id != grant_id:
                    continue
                e = found.event
                if name == tags.REQUEST_APPROVED:
                    until = e.details.get("valid_until")
                    facts = replace(
                        facts,
                        approved_at=e.start_time,
                        approved_seq=found.seq,
                        valid_until=datetime.fromisoformat(until) if isinstance(until, str) else None,
                        categories=tuple(e.categories),
                        purpose=e.processing_activity_id,
                        legal_basis=e.legal_basis,
                        department=e.department,
                        client_id=e.client_id,
                    )
                else:
                    facts = replace(facts, revoked_at=e.start_time, revoked_seq=found.seq)
                break
        return facts

    def purpose(self, session: Session, tenant_id: str, code: str) -> PurposeFacts | None:
        try:
            p = self.purposes.get(session, tenant_id, code)
        except PurposeNotFoundError:
            return None
        return PurposeFacts(
            code=p.code,
            description_nl=p.description_nl,
            description_en=p.description_en,
            legal_basis=p.legal_basis,
            statute=p.statute,
            categories=tuple(p.categories),
        )

    # -- integrity: checkpoints, proofs, verification ---------------------------------------------
    def checkpoint(self, session: Session, tenant_id: str) -> CheckpointView | None:
        """The latest signed checkpoint, its signature checked against the published keys."""
        latest = audit_log.latest_checkpoint(session, tenant_id)
        if latest is None:
            return None
        return CheckpointView(latest, self._signature_valid(session, latest))

    def _signature_valid(self, session: Session, checkpoint: Checkpoint) -> bool:
        try:
            verifier = CheckpointVerifier(self.signing.public_jwks(session, "checkpoint"))
            payload = verifier.verify(checkpoint.jws).payload
        except (CheckpointSignatureError, ValueError):
            return False
        return payload.tree_size == checkpoint.tree_size and payload.root_hash == checkpoint.root_hash

    def proof(self, session: Session, tenant_id: str, seq: int) -> ProofView | None:
        """The inclusion proof of entry ``seq`` in the latest checkpoint (None until one covers it)."""
        view = self.checkpoint(session, tenant_id)
        if view is None or seq >= view.checkpoint.tree_size:
            return None
        stored = audit_log.get_entry(session, tenant_id, seq)
        if stored is None:
            return None
        proof = audit_log.inclusion_proof(session, tenant_id, seq, view.checkpoint.tree_size)
        try:
            merkle.verify_inclusion(
                seq,
                proof.tree_size,
                merkle.leaf_hash(stored.leaf_bytes),
                proof.audit_path,
                view.checkpoint.root_hash,
            )
            included = True
        except ProofError:
            included = False
        return ProofView(view, proof, stored.leaf_hash, included)

    def latest_verification(self, session: Session, tenant_id: str) -> VerificationView | None:
        row = session.exec(
            select(ConsoleVerification)
            .where(ConsoleVerification.tenant_id == tenant_id)
            .order_by(col(ConsoleVerification.started_at).desc())
            .limit(1)
        ).first()
        return _verification_view(row) if row else None

    def latest_full_verification(self, session: Session, tenant_id: str) -> VerificationView | None:
        """The latest run that walked the whole log, whatever it found."""
        row = session.exec(
            select(ConsoleVerification)
            .where(ConsoleVerification.tenant_id == tenant_id, ConsoleVerification.since_size == 0)
            .order_by(col(ConsoleVerification.started_at).desc())
            .limit(1)
        ).first()
        return _verification_view(row) if row else None

    def verifications(self, session: Session, tenant_id: str, limit: int = 20) -> list[VerificationView]:
        rows = session.exec(
            select(ConsoleVerification)
            .where(ConsoleVerification.tenant_id == tenant_id)
            .order_by(col(ConsoleVerification.started_at).desc())
            .limit(limit)
        )
        return [_verification_view(row) for row in rows]

    # -- overview ---------------------------------------------------------------------------------
    def overview(
        self, session: Session, tenant_id: str, since: date, until: date, zone: ZoneInfo
    ) -> Overview:
        period = local_period(since, until, zone)
        days: dict[tuple[date, str | None], DaySummary] = {}
        for name in READ_NAMES:
            query = AuditQuery(since=period.since, until=period.until, name=name)
            for row in audit_log.summary(session, tenant_id, query):
                key = (row.day, row.department)
                seen = days.get(key)
                days[key] = (
                    row
                    if seen is None
                    else DaySummary(
                        row.day,
                        row.department,
                        seen.total + row.total,
                        seen.allowed + row.allowed,
                        seen.denied + row.denied,
                    )
                )
        reads = (
            stats.event_of(item)
            for name in READ_NAMES
            for item in iter_events(
                session, tenant_id, AuditQuery(since=period.since, until=period.until, name=name)
            )
        )
        summary = sorted(days.values(), key=lambda s: (s.day, s.department or ""))
        open_findings = session.exec(
            select(func.count())
            .select_from(ConsoleFinding)
            .where(ConsoleFinding.tenant_id == tenant_id, ConsoleFinding.status == "open")
        ).one()
        return Overview(
            since=since,
            until=until,
            days=summary,
            categories=stats.per_category(reads),
            allowed=sum(s.allowed for s in summary),
            denied=sum(s.denied for s in summary),
            log_size=audit_log.log_head(session, tenant_id).tree_size,
            checkpoint=self.checkpoint(session, tenant_id),
            verification=self.latest_verification(session, tenant_id),
            open_findings=int(open_findings),
        )

    # -- anomaly rules and findings ---------------------------------------------------------------
    def rules(self, session: Session, tenant_id: str) -> RuleSet:
        """The tenant's rule settings; until they are saved, the defaults with the tenant's special
        categories (as registered in the vault) for the special-category rule."""
        row = session.get(ConsoleRules, tenant_id)
        if row is not None:
            return RuleSet.model_validate_json(row.settings)
        special = tuple(c.code for c in self.vault.categories(session, tenant_id) if c.special)
        if not special:
            return RuleSet()
        return RuleSet(special_category=SpecialCategorySettings(categories=special))

    def save_rules(self, session: Session, ctx: Context, tenant_id: str, rules: RuleSet) -> None:
        row = session.get(ConsoleRules, tenant_id) or ConsoleRules(
            tenant_id=tenant_id, updated_at=ctx.now, updated_by=ctx.actor.id
        )
        row.settings = rules.model_dump_json()
        row.updated_at, row.updated_by = ctx.now, ctx.actor.id
        session.add(row)
        enabled = ",".join(name for name in anomalies.RULES if getattr(rules, name).enabled)
        self.record(session, ctx, tenant_id, tags.RULES_CONFIGURED, details={"enabled": enabled or "-"})
        session.commit()

    def _events(self, session: Session, tenant_id: str, query: AuditQuery) -> Iterator[Event]:
        for item in iter_events(session, tenant_id, replace(query, newest_first=False)):
            yield stats.event_of(item)

    def detect(self, session: Session, tenant_id: str, period: Period) -> list[Finding]:
        """Run the tenant's rules over ``period`` (reads only; store with ``store_findings``).

        Context for the rules: every entry from the baseline before the period, and the request,
        approval and revocation entries from further back (request history, grants' ends).
        """
        rules = self.rules(session, tenant_id)
        start = period.since - timedelta(days=rules.volume_spike.baseline_days)
        events = list(self._events(session, tenant_id, AuditQuery(since=start, until=period.until)))
        context_start = period.since - max(rules.lookback(), GRANT_LOOKBACK)
        for name in CONTEXT_NAMES:
            events += self._events(
                session, tenant_id, AuditQuery(since=context_start, until=start, name=name)
            )
        return anomalies.detect(events, rules, period)

    def store_findings(
        self, session: Session, tenant_id: str, findings: list[Finding], now: datetime
    ) -> AnalysisResult:
        """Add new findings; reopen those that gained entries since they were stored (commits)."""
        new = updated = 0
        for finding in findings:
            row = session.exec(
                select(ConsoleFinding).where(
                    ConsoleFinding.tenant_id == tenant_id, ConsoleFinding.key == finding.key
                )
            ).first()
            if row is None:
                session.add(
                    ConsoleFinding(
                        id=new_id(),
                        tenant_id=tenant_id,
                        rule=finding.rule,
                        key=finding.key,
                        message=finding.message,
                        params=dict(finding.params),
                        client_id=finding.client_id,
                        department=finding.department,
                        first_at=finding.first_at,
                        last_at=finding.last_at,
                        count=finding.count,
                        sequences=list(finding.sequences),
                        detected_at=now,
                        updated_at=now,
                        status="open",
                    )
                )
                new += 1
            elif set(finding.sequences) - set(row.sequences) or finding.count > row.count:
                # New entries since the finding was made (or reviewed): it needs a look again.
                row.message, row.params = finding.message, dict(finding.params)
                row.first_at, row.last_at = finding.first_at, finding.last_at
                row.count, row.sequences = finding.count, list(finding.sequences)
                row.updated_at, row.status = now, "open"
                session.add(row)
                updated += 1
        session.commit()
        return AnalysisResult(new=new, updated=updated, total=len(findings))

    def findings(
        self,
        session: Session,
        tenant_id: str,
        *,
        status: str | None = None,
        rule: str | None = None,
        cursor: str | None = None,
        limit: int = FINDINGS_PAGE,
    ) -> tuple[list[FindingView], str | None]:
        """Findings, newest first (keyset pagination on first_at and id)."""
        stmt = select(ConsoleFinding).where(ConsoleFinding.tenant_id == tenant_id)
        if status is not None:
            stmt = stmt.where(ConsoleFinding.status == status)
        if rule is not None:
            stmt = stmt.where(ConsoleFinding.rule == rule)
        if cursor is not None:
            at, last_id = _decode_cursor(cursor)
            stmt = stmt.where(
                or_(
                    col(ConsoleFinding.first_at) < at,
                    (col(ConsoleFinding.first_at) == at) & (col(ConsoleFinding.id) < last_id),
                )
            )
        limit = max(1, min(limit, 200))
        rows = list(
            session.exec(
                stmt.order_by(col(ConsoleFinding.first_at).desc(), col(ConsoleFinding.id).desc()).limit(
                    limit + 1
                )
            )
        )
        views = [_finding_view(row) for row in rows[:limit]]
        next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return views, next_cursor

    def finding(self, session: Session, tenant_id: str, finding_id: str) -> FindingView:
        return _finding_view(self._finding_row(session, tenant_id, finding_id))

    def _finding_row(self, session: Session, tenant_id: str, finding_id: str) -> ConsoleFinding:
        row = session.get(ConsoleFinding, finding_id)
        if row is None or row.tenant_id != tenant_id:
            raise NotFoundError
        return row

    def finding_entries(
        self, session: Session, tenant_id: str, finding: FindingView, limit: int = 100
    ) -> list[LoggedEvent]:
        """The first ``limit`` entries a finding links to."""
        found = (self._logged(session, tenant_id, seq) for seq in sorted(finding.sequences)[:limit])
        return [item for item in found if item is not None]

    def log_finding_view(self, session: Session, ctx: Context, tenant_id: str, finding: FindingView) -> None:
        """Audit that the officer opened a finding's entries (as a search of them) and commit:
        they are shown like a search's results, so they are recorded like one."""
        details: dict[str, str | int | bool | None] = {
            "finding": finding.id,
            "entries": len(finding.sequences),
        }
        self.record(session, ctx, tenant_id, tags.LOG_SEARCHED, details=details)
        session.commit()

    def review(
        self, session: Session, ctx: Context, tenant_id: str, finding_id: str, note: str
    ) -> FindingView:
        """Mark a finding reviewed with a note; audited (``audit:finding:reviewed``), committed.
        The note stays in the console's table: the audit entry holds codes only."""
        note = note.strip()
        if not note or len(note) > 2000:
            raise InvalidSearchError("note")
        row = self._finding_row(session, tenant_id, finding_id)
        row.status, row.reviewed_at, row.reviewed_by, row.review_note = (
            "reviewed",
            ctx.now,
            ctx.actor.id,
            note,
        )
        session.add(row)
        self.record(
            session, ctx, tenant_id, tags.FINDING_REVIEWED, details={"finding": row.id, "rule": row.rule}
        )
        session.commit()
        return _finding_view(row)

    # -- reports ----------------------------------------------------------------------------------
    def log_export(
        self, session: Session, ctx: Context, tenant_id: str, what: str, fmt: str, period: Period
    ) -> None:
        """Audit an export (``audit:log:exported``) and commit: before anything is read."""
        self.record(
            session,
            ctx,
            tenant_id,
            tags.LOG_EXPORTED,
            details={
                "what": what,
                "format": fmt,
                "since": period.since.isoformat(),
                "until": period.until.isoformat(),
            },
        )
        session.commit()

    def export_entries(self, session: Session, tenant_id: str, period: Period, fmt: str, out: TextIO) -> int:
        """A period's entries, oldest first, as CSV or JSON lines (the audit package's exports)."""
        query = AuditQuery(since=period.since, until=period.until, newest_first=False)
        if fmt == "csv":
            return audit_log.export_csv(session, tenant_id, query, out)
        return audit_log.export_jsonl(session, tenant_id, query, out)

    def export_findings(self, session: Session, tenant_id: str, period: Period, fmt: str, out: TextIO) -> int:
        """The findings whose entries fall in a period, as CSV or a JSON array."""
        rows = session.exec(
            select(ConsoleFinding)
            .where(
                ConsoleFinding.tenant_id == tenant_id,
                col(ConsoleFinding.last_at) >= period.since,
                col(ConsoleFinding.first_at) < period.until,
            )
            .order_by(col(ConsoleFinding.first_at), col(ConsoleFinding.id))
        ).all()
        documents = [_finding_view(row).public().model_dump(mode="json") for row in rows]
        if fmt == "json":
            json.dump(documents, out, ensure_ascii=False, indent=2, sort_keys=True)
            return len(documents)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FINDING_COLUMNS)
        for doc in documents:
            doc["entries"] = " ".join(str(seq) for seq in doc["entries"])
            writer.writerow([_cell(doc[c]) for c in FINDING_COLUMNS])
        return len(documents)

    def report(self, session: Session, tenant_id: str, period: Period, now: datetime) -> Report:
        """The facts of the art. 30 report for a period: processing per purpose with counts,
        findings per rule, the log's integrity (call ``log_export`` first)."""
        counted: list[PurposeCounts] = stats.per_purpose(
            self._events(session, tenant_id, AuditQuery(since=period.since, until=period.until))
        )
        findings: dict[str, tuple[int, int]] = {}
        rows = session.exec(
            select(ConsoleFinding.rule, ConsoleFinding.status, func.count())
            .where(
                ConsoleFinding.tenant_id == tenant_id,
                col(ConsoleFinding.last_at) >= period.since,
                col(ConsoleFinding.first_at) < period.until,
            )
            .group_by(col(ConsoleFinding.rule), col(ConsoleFinding.status))
        ).all()
        for rule, status, count in rows:
            open_, reviewed = findings.get(rule, (0, 0))
            findings[rule] = (open_ + count, reviewed) if status == "open" else (open_, reviewed + count)
        tenant = next((t for t in self.vault.tenants(session) if t.id == tenant_id), None)
        return Report(
            tenant_name=tenant.name if tenant is not None else tenant_id,
            period=period,
            generated_at=now,
            purposes=[(c, self.purpose(session, tenant_id, c.purpose)) for c in counted],
            findings=findings,
            log_size=audit_log.log_head(session, tenant_id).tree_size,
            checkpoint=self.checkpoint(session, tenant_id),
            verification=self.latest_verification(session, tenant_id),
        )

    # -- verification -----------------------------------------------------------------------------
    def verify(self, session: Session, tenant_id: str, *, since: int = 0) -> VerifyResult:
        """Verify the tenant's log and its checkpoints (``audit.verify``): the whole log, or with
        ``since`` incrementally from a signed checkpoint at or below that size; in a read-only unit
        of work. On PostgreSQL the walk runs in REPEATABLE READ for a stable picture."""
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        try:
            verifier = CheckpointVerifier(self.signing.public_jwks(session, "checkpoint"))
        except ValueError:
            head = audit_log.log_head(session, tenant_id)
            damage = Damage("bad_signature", "checkpoint", None, "no checkpoint key is published")
            return VerifyResult(tenant_id, head.origin, 0, head.root_hash, 0, None, damage)
        return verify_log(session, tenant_id, verifier, since=since)

    def store_verification(
        self,
        session: Session,
        ctx: Context,
        tenant_id: str,
        result: VerifyResult,
        *,
        trigger: str,
        started_at: datetime,
    ) -> VerificationView:
        """Keep a verification's result for every node to show; audited (``audit:log:verified``)."""
        damage = result.damage
        row = ConsoleVerification(
            id=new_id(),
            tenant_id=tenant_id,
            trigger=trigger,
            actor=ctx.actor.id,
            started_at=started_at,
            finished_at=ctx.now,
            ok=result.ok,
            tree_size=result.entries,
            checkpoints=result.checkpoints,
            first_bad_seq=damage.seq if damage else None,
            problem=damage.describe()[:200] if damage else None,
            since_size=result.since,
        )
        session.add(row)
        self.record(
            session,
            ctx,
            tenant_id,
            tags.LOG_VERIFIED,
            details={
                "ok": result.ok,
                "entries": result.entries,
                "checkpoints": result.checkpoints,
                "first_bad_seq": damage.seq if damage else None,
                "damage": damage.kind if damage else None,
                "trigger": trigger,
                "since": result.since,
            },
        )
        session.commit()
        return _verification_view(row)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet runs cells that start like a formula; quote them (OWASP CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _encode_cursor(row: ConsoleFinding) -> str:
    raw = f"{row.first_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        at, _, finding_id = raw.partition("|")
        moment = datetime.fromisoformat(at)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidSearchError("cursor") from None
    if moment.tzinfo is None or not finding_id:
        raise InvalidSearchError("cursor")
    return moment, finding_id


def _finding_view(row: ConsoleFinding) -> FindingView:
    return FindingView(
        id=row.id,
        rule=row.rule,
        message=row.message,
        params=dict(row.params),
        client_id=row.client_id,
        department=row.department,
        first_at=row.first_at,
        last_at=row.last_at,
        count=row.count,
        sequences=tuple(row.sequences),
        detected_at=row.detected_at,
        status="reviewed" if row.status == "reviewed" else "open",
        reviewed_at=row.reviewed_at,
        reviewed_by=row.reviewed_by,
        review_note=row.review_note,
    )


def _verification_view(row: ConsoleVerification) -> VerificationView:
    return VerificationView(
        id=row.id,
        trigger=row.trigger,
        actor=row.actor,
        started_at=row.started_at,
        finished_at=row.finished_at,
        ok=row.ok,
        tree_size=row.tree_size,
        checkpoints=row.checkpoints,
        first_bad_seq=row.first_bad_seq,
        problem=row.problem,
        since=row.since_size,
    )


def system_context(now: datetime) -> Context:
    """The scheduled job's context: the system acts."""
    return Context(actor=Actor(type="system", id="kluis:console"), trace=TraceContext.new(), now=now)

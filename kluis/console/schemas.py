"""Values of the privacy officer's console: who is looking, what they search for, what they see.

Plain frozen dataclasses between the service and the pages; pydantic models (``XPublic``) for the
JSON API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from audit.schemas import Actor, AuditQuery, Checkpoint, DaySummary, InclusionProof, LoggedEvent
from kluis.console.anomalies import Period

ROLE = "privacy_officer"
Decision = Literal["allow", "deny"]
FindingStatus = Literal["open", "reviewed"]


@dataclass(frozen=True, slots=True)
class Officer:
    """A logged-in privacy officer (FG) of one tenant."""

    tenant_id: str
    subject: str
    tenant_name: str = ""

    @property
    def actor(self) -> Actor:
        return Actor(type="privacy_officer", id=self.subject)


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """A search of the trail. ``subject`` is the data subject's audit pseudonym, found from the BSN
    the officer typed (the BSN itself is never kept); ``subject_given`` says a BSN was typed, so a
    BSN of nobody finds nothing rather than everything."""

    since: datetime | None = None
    until: datetime | None = None
    department: str | None = None
    client_id: str | None = None
    purpose: str | None = None
    category: str | None = None
    decision: Decision | None = None
    subject: str | None = None
    subject_given: bool = False

    def query(self) -> AuditQuery:
        return AuditQuery(
            since=self.since,
            until=self.until,
            department=self.department,
            client_id=self.client_id,
            purpose=self.purpose,
            decision=self.decision,
            data_subject_id=self.subject,
        )

    @property
    def finds_nothing(self) -> bool:
        return self.subject_given and self.subject is None

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "department": self.department,
            "client_id": self.client_id,
            "purpose": self.purpose,
            "category": self.category,
            "decision": self.decision,
            "subject": self.subject,
            "subject_given": self.subject_given,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchFilters:
        def moment(value: object) -> datetime | None:
            return datetime.fromisoformat(value) if isinstance(value, str) else None

        def text(value: object) -> str | None:
            return value if isinstance(value, str) and value else None

        decision = data.get("decision")
        return cls(
            since=moment(data.get("since")),
            until=moment(data.get("until")),
            department=text(data.get("department")),
            client_id=text(data.get("client_id")),
            purpose=text(data.get("purpose")),
            category=text(data.get("category")),
            decision=decision if decision in ("allow", "deny") else None,
            subject=text(data.get("subject")),
            subject_given=bool(data.get("subject_given")),
        )

    def used(self) -> dict[str, str | int | bool | None]:
        """Which filters were used, for the audit entry of the search (codes only, no values that
        name a person: the data subject goes into the entry's own ``data_subject_id``)."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "department": self.department,
            "client": self.client_id,
            "purpose": self.purpose,
            "category": self.category,
            "decision": self.decision,
            "by_subject": self.subject_given,
        }


@dataclass(frozen=True, slots=True)
class EntryPage:
    entries: list[LoggedEvent]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class GrantFacts:
    """A grant as the trail records it: its approval and, if so, its revocation."""

    grant_id: str
    approved_at: datetime | None = None
    approved_seq: int | None = None
    valid_until: datetime | None = None
    revoked_at: datetime | None = None
    revoked_seq: int | None = None
    categories: tuple[str, ...] = ()
    purpose: str | None = None
    legal_basis: str | None = None
    department: str | None = None
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class PurposeFacts:
    """A processing activity of the tenant's purpose register (GDPR art. 30)."""

    code: str
    description_nl: str
    description_en: str
    legal_basis: str
    statute: str | None
    categories: tuple[str, ...]

    def description(self, lang: str) -> str:
        return self.description_nl if lang == "nl" else self.description_en


@dataclass(frozen=True, slots=True)
class CheckpointView:
    checkpoint: Checkpoint
    signature_valid: bool


@dataclass(frozen=True, slots=True)
class ProofView:
    """An entry's inclusion proof against the latest signed checkpoint, checked here."""

    checkpoint: CheckpointView
    proof: InclusionProof
    leaf_hash: bytes
    included: bool


@dataclass(frozen=True, slots=True)
class EntryDetail:
    entry: LoggedEvent
    trace: list[LoggedEvent]
    grant: GrantFacts | None
    purpose: PurposeFacts | None
    proof: ProofView | None


@dataclass(frozen=True, slots=True)
class VerificationView:
    """The stored result of one verification run."""

    id: str
    trigger: str
    actor: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    tree_size: int
    checkpoints: int
    first_bad_seq: int | None
    problem: str | None
    since: int = 0  # 0: the whole log was walked; else from the signed checkpoint of this size

    @property
    def full(self) -> bool:
        return self.since == 0


@dataclass(frozen=True, slots=True)
class Overview:
    since: date
    until: date  # inclusive, local days
    days: list[DaySummary]
    categories: dict[str, int]
    allowed: int
    denied: int
    log_size: int
    checkpoint: CheckpointView | None
    verification: VerificationView | None
    open_findings: int


@dataclass(frozen=True, slots=True)
class FindingView:
    id: str
    rule: str
    message: str
    params: dict[str, Any]
    client_id: str | None
    department: str | None
    first_at: datetime
    last_at: datetime
    count: int
    sequences: tuple[int, ...]
    detected_at: datetime
    status: FindingStatus
    reviewed_at: datetime | None
    reviewed_by: str | None
    review_note: str | None

    @property
    def reason(self) -> str:
        return self.message % self.params

    def public(self) -> FindingPublic:
        return FindingPublic(
            id=self.id,
            rule=self.rule,
            reason=self.reason,
            params=self.params,
            client_id=self.client_id,
            department=self.department,
            first_at=self.first_at,
            last_at=self.last_at,
            count=self.count,
            entries=list(self.sequences),
            detected_at=self.detected_at,
            status=self.status,
            reviewed_at=self.reviewed_at,
            reviewed_by=self.reviewed_by,
            review_note=self.review_note,
        )


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    new: int
    updated: int
    total: int


@dataclass(frozen=True, slots=True)
class PurposeCounts:
    """What the trail says about one processing activity in a period (the art. 30 report)."""

    purpose: str
    reads_allowed: int = 0
    reads_denied: int = 0
    residents: int = 0
    requests: int = 0
    approvals: int = 0
    refusals: int = 0
    revocations: int = 0
    departments: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    legal_bases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Report:
    tenant_name: str
    period: Period
    generated_at: datetime
    purposes: list[tuple[PurposeCounts, PurposeFacts | None]]
    findings: dict[str, tuple[int, int]] = field(default_factory=dict)  # rule -> (open, reviewed)
    log_size: int = 0
    checkpoint: CheckpointView | None = None
    verification: VerificationView | None = None


# -- the JSON API ---------------------------------------------------------------------------------
class FindingPublic(BaseModel):
    id: str
    rule: str
    reason: str = Field(description="Why the rule fired, in English.")
    params: dict[str, Any]
    client_id: str | None
    department: str | None
    first_at: datetime
    last_at: datetime
    count: int = Field(description="How many entries show it.")
    entries: list[int] = Field(description="Sequence numbers of the entries (at most 1000).")
    detected_at: datetime
    status: FindingStatus
    reviewed_at: datetime | None
    reviewed_by: str | None
    review_note: str | None


class FindingList(BaseModel):
    items: list[FindingPublic]
    next_cursor: str | None


class ReviewCreate(BaseModel):
    note: str = Field(min_length=1, max_length=2000)

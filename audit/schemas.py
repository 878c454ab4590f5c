"""The shape of one audit event, after the Dutch *Logboek Dataverwerkingen* standard.

Everything here is an opaque identifier or a code: no record values, no names, no BSN, no raw
tokens. ``audit`` imports no sibling package, so actors and data subjects are plain strings.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

ActorType = Literal[
    "client", "department", "resident", "representative", "privacy_officer", "operator", "system"
]
Decision = Literal["allow", "deny"]
Status = Literal["ok", "error"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a type and an opaque id; ``on_behalf_of`` for a representative's acts."""

    type: ActorType
    id: str
    on_behalf_of: str | None = None


@dataclass(frozen=True, slots=True)
class TraceContext:
    """W3C trace context of the request that caused the event."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None

    @classmethod
    def new(cls) -> TraceContext:
        return cls(trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8))

    @classmethod
    def from_traceparent(cls, header: str | None) -> TraceContext:
        """Continue the caller's trace (``00-<trace>-<parent span>-<flags>``), or start a new one."""
        if header:
            parts = header.strip().split("-")
            if (
                len(parts) == 4
                and parts[0] == "00"
                and len(parts[1]) == 32
                and len(parts[2]) == 16
                and _is_lower_hex(parts[1])
                and _is_lower_hex(parts[2])
                and parts[1] != "0" * 32
                and parts[2] != "0" * 16
            ):
                return cls(trace_id=parts[1], span_id=secrets.token_hex(8), parent_span_id=parts[2])
        return cls.new()

    def child(self) -> TraceContext:
        return TraceContext(self.trace_id, secrets.token_hex(8), self.span_id)


def _is_lower_hex(value: str) -> bool:
    return all(c in "0123456789abcdef" for c in value)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One event to append. ``tenant`` is the tenant's opaque id; ``name`` a past-tense tag."""

    tenant: str
    name: str
    actor: Actor
    trace: TraceContext
    start_time: datetime
    end_time: datetime
    status: Status = "ok"
    decision: Decision | None = None
    reason: str | None = None
    data_subject_id: str | None = None
    processing_activity_id: str | None = None
    legal_basis: str | None = None
    grant_id: str | None = None
    department: str | None = None
    client_id: str | None = None
    categories: tuple[str, ...] = ()
    # Small, non-personal extras (field selection, record version, key version...): codes only.
    details: dict[str, str | int | bool | None] = field(default_factory=dict)

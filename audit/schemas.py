"""The shape of one audit event, after the Dutch *Logboek Dataverwerkingen* standard.

Everything here is an opaque identifier or a code: no record values, no names, no BSN, no raw
tokens. ``audit`` imports no sibling package, so actors and data subjects are plain strings.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

ActorType = Literal[
    "client", "department", "resident", "representative", "privacy_officer", "operator", "system"
]
Decision = Literal["allow", "deny"]

# Trace and span ids correlate log lines; they guard nothing, so they need to be unique, not
# unpredictable. A per-process generator seeded from the OS (``random.Random()`` does that) avoids a
# ``getrandom`` system call per id, which on the hot path gives up the GIL to the audit writer
# thread and waits to get it back (docs/performance.md).
_ids = random.Random()  # noqa: S311 - ids, not secrets (see above)


def random_hex_id(nbytes: int) -> str:
    """A non-zero random id of ``nbytes`` bytes as lower-case hex (W3C trace context format)."""
    return f"{_ids.getrandbits(8 * nbytes) or 1:0{2 * nbytes}x}"


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
        return cls(trace_id=random_hex_id(16), span_id=random_hex_id(8))

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
                return cls(trace_id=parts[1], span_id=random_hex_id(8), parent_span_id=parts[2])
        return cls.new()

    def child(self) -> TraceContext:
        return TraceContext(self.trace_id, random_hex_id(8), self.span_id)


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


# -- what the log hands back ----------------------------------------------------------------------
# Binary values are bytes here; ``to_json`` renders them as standard base64, the way the RFC 6962
# log API does.


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


@dataclass(frozen=True, slots=True)
class AppendedEntry:
    """The position an appended event got, and the hash its leaf entered the tree with."""

    seq: int
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class LogHead:
    """The tree as it stands now (unsigned): use a ``Checkpoint`` for anything shown to others."""

    tenant_id: str
    origin: str
    tree_size: int
    root_hash: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: ``jws`` signs (origin, tree size, root hash, timestamp)."""

    origin: str
    tree_size: int
    root_hash: bytes
    timestamp: datetime
    kid: str
    jws: str

    def to_json(self) -> dict[str, object]:
        return {
            "tree_size": self.tree_size,
            "root_hash": b64(self.root_hash),
            "jws": self.jws,
            "origin": self.origin,
            "timestamp": self.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "kid": self.kid,
        }


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One stored entry: its position, its leaf bytes exactly as hashed, and the leaf hash."""

    seq: int
    leaf_bytes: bytes
    leaf_hash: bytes

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "leaf_bytes": b64(self.leaf_bytes), "leaf_hash": b64(self.leaf_hash)}


@dataclass(frozen=True, slots=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    audit_path: tuple[bytes, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "audit_path": [b64(h) for h in self.audit_path],
        }


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    first: int
    second: int
    consistency: tuple[bytes, ...]

    def to_json(self) -> dict[str, object]:
        return {"first": self.first, "second": self.second, "consistency": [b64(h) for h in self.consistency]}


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """A search result: an entry's position and the event its leaf records (times in ms)."""

    seq: int
    event: AuditEvent


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A privacy officer's filter. Every field narrows; ``involving`` matches the data subject, the
    actor or the person an actor acted for (a resident's "who saw my data" view)."""

    since: datetime | None = None  # inclusive, on start_time
    until: datetime | None = None  # exclusive
    name: str | None = None
    decision: Decision | None = None
    department: str | None = None
    client_id: str | None = None
    data_subject_id: str | None = None
    actor_id: str | None = None
    involving: str | None = None
    purpose: str | None = None
    trace_id: str | None = None
    newest_first: bool = True


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[LoggedEvent]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class DaySummary:
    """Counts of one department (``None``: events without one) on one UTC day."""

    day: date
    department: str | None
    total: int
    allowed: int
    denied: int

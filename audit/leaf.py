"""Leaf bytes: what is hashed into the tree, stored exactly as hashed.

::

    leaf_bytes = 0x01 || JCS(entry)        0x01: the leaf format version; JCS: RFC 8785, UTF-8

``entry`` is a JSON object with a fixed set of members (``LEAF_KEYS``) that includes its own ``seq``,
so a leaf moved to another position no longer matches its place. Times are integer milliseconds
since the Unix epoch (UTC), as the Logboek Dataverwerkingen standard has them.

Canonical JSON without the cost: RFC 8785 and ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` give identical bytes for the values we allow (ASCII member names, strings
without lone surrogates, integers within ±2^53, no floats). ``validate`` guarantees that domain,
and the tests check the two against the ``rfc8785`` package on generated events; the stdlib encoder
is five times faster, and this runs on every audited request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, get_args

from audit.errors import InvalidEventError, LeafFormatError
from audit.schemas import Actor, ActorType, AuditEvent, TraceContext

LEAF_VERSION: Final = 1
PREFIX: Final = bytes([LEAF_VERSION])
MAX_SAFE_INTEGER: Final = 2**53 - 1
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

LEAF_KEYS: Final = frozenset(
    {
        "seq",
        "tenant",
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        "status",
        "start_time",
        "end_time",
        "actor",
        "data_subject_id",
        "processing_activity_id",
        "legal_basis",
        "grant_id",
        "department",
        "client_id",
        "categories",
        "decision",
        "reason",
        "details",
    }
)
ACTOR_KEYS: Final = frozenset({"type", "id", "on_behalf_of"})

# The indexed search columns of an entry row, in this order; verification recomputes them from the
# leaf, so a database administrator cannot change a column nobody hashes.
COLUMNS: Final = (
    "time_ms",
    "name",
    "status",
    "decision",
    "actor_type",
    "actor_id",
    "on_behalf_of",
    "data_subject_id",
    "department",
    "client_id",
    "purpose",
    "grant_id",
    "trace_id",
)

TAG = re.compile(r"[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*")
TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}")
DETAIL_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")
ACTOR_TYPES: Final = frozenset(get_args(ActorType))
MAX_ID = 128
MAX_DETAIL_TEXT = 512
MAX_CATEGORIES = 64
MAX_DETAILS = 32


def to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise InvalidEventError("audit times must be timezone-aware")
    return (value - EPOCH) // _MS


def from_ms(value: int) -> datetime:
    return EPOCH + timedelta(milliseconds=value)


def _text(value: object, field: str, limit: int = MAX_ID, *, empty: bool = False) -> str:
    # isprintable() refuses control and format characters and lone surrogates: nothing that could
    # break a CSV export, a terminal or the canonical encoding.
    if (
        not isinstance(value, str)
        or not (0 if empty else 1) <= len(value) <= limit
        or not value.isprintable()
    ):
        raise InvalidEventError(f"audit field {field} is not a short printable text")
    return value


def _optional(value: object, field: str, limit: int = MAX_ID) -> str | None:
    return None if value is None else _text(value, field, limit)


def _detail(value: object) -> str | int | bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InvalidEventError("audit detail integers must fit in a JSON number exactly")
        return value
    return _text(value, "details", MAX_DETAIL_TEXT, empty=True)  # e.g. an empty field selection


def leaf_object(seq: int, event: AuditEvent) -> dict[str, Any]:
    """The validated entry object of ``event`` at position ``seq``. Raises ``InvalidEventError``."""
    if not isinstance(event.tenant, str) or not TENANT.fullmatch(event.tenant):
        raise InvalidEventError("audit tenant must be an opaque id")
    if not isinstance(event.name, str) or len(event.name) > 100 or not TAG.fullmatch(event.name):
        raise InvalidEventError("audit event names are source:subject:action tags")
    trace = event.trace
    if not HEX32.fullmatch(trace.trace_id) or trace.trace_id == "0" * 32:
        raise InvalidEventError("trace_id must be 16 bytes of lower-case hex")
    if not HEX16.fullmatch(trace.span_id) or (
        trace.parent_span_id is not None and not HEX16.fullmatch(trace.parent_span_id)
    ):
        raise InvalidEventError("span ids must be 8 bytes of lower-case hex")
    if event.status not in ("ok", "error") or event.decision not in (None, "allow", "deny"):
        raise InvalidEventError("audit status is ok/error and decision allow/deny")
    if event.actor.type not in ACTOR_TYPES:
        raise InvalidEventError("unknown audit actor type")
    if len(event.categories) > MAX_CATEGORIES or len(event.details) > MAX_DETAILS:
        raise InvalidEventError("too many audit categories or details")
    details = {}
    for key, value in event.details.items():
        if not isinstance(key, str) or not DETAIL_KEY.fullmatch(key):
            raise InvalidEventError("audit detail keys are lower-case codes")
        details[key] = _detail(value)
    if not 0 <= seq <= MAX_SAFE_INTEGER:
        raise InvalidEventError("sequence number out of range")
    start, end = to_ms(event.start_time), to_ms(event.end_time)
    if not 0 <= start <= MAX_SAFE_INTEGER or not 0 <= end <= MAX_SAFE_INTEGER:
        raise InvalidEventError("audit times must lie after 1970")
    return {
        "seq": seq,
        "tenant": event.tenant,
        "trace_id": trace.trace_id,
        "span_id": trace.span_id,
        "parent_span_id": trace.parent_span_id,
        "name": event.name,
        "status": event.status,
        "start_time": start,
        "end_time": end,
        "actor": {
            "type": event.actor.type,
            "id": _text(event.actor.id, "actor.id"),
            "on_behalf_of": _optional(event.actor.on_behalf_of, "actor.on_behalf_of"),
        },
        "data_subject_id": _optional(event.data_subject_id, "data_subject_id"),
        "processing_activity_id": _optional(event.processing_activity_id, "processing_activity_id"),
        "legal_basis": _optional(event.legal_basis, "legal_basis"),
        "grant_id": _optional(event.grant_id, "grant_id"),
        "department": _optional(event.department, "department"),
        "client_id": _optional(event.client_id, "client_id"),
        "categories": [_text(c, "categories", 64) for c in event.categories],
        "decision": event.decision,
        "reason": _optional(event.reason, "reason"),
        "details": details,
    }


def canonical(obj: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of a validated object (see the module docstring for why this is exact)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def encode(obj: Mapping[str, Any]) -> bytes:
    return PREFIX + canonical(obj)


def encode_leaf(seq: int, event: AuditEvent) -> bytes:
    return encode(leaf_object(seq, event))


def parse(data: bytes) -> dict[str, Any]:
    """The entry object of ``data`` with its members checked; raises ``LeafFormatError``."""
    if data[:1] != PREFIX:
        raise LeafFormatError("unknown leaf format version")
    try:
        obj = json.loads(data[1:].decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise LeafFormatError from exc
    if (
        not isinstance(obj, dict)
        or obj.keys() != LEAF_KEYS
        or not isinstance(obj["actor"], dict)
        or obj["actor"].keys() != ACTOR_KEYS
        or type(obj["seq"]) is not int
        or not isinstance(obj["categories"], list)
        or not isinstance(obj["details"], dict)
    ):
        raise LeafFormatError
    return obj


def columns(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    """The search columns (in ``COLUMNS`` order) an entry row must carry for this entry object."""
    actor = obj["actor"]
    return (
        obj["start_time"],
        obj["name"],
        obj["status"],
        obj["decision"],
        actor["type"],
        actor["id"],
        actor["on_behalf_of"],
        obj["data_subject_id"],
        obj["department"],
        obj["client_id"],
        obj["processing_activity_id"],
        obj["grant_id"],
        obj["trace_id"],
    )


def to_event(obj: Mapping[str, Any]) -> AuditEvent:
    """The event an entry object records (times at millisecond precision)."""
    try:
        actor = obj["actor"]
        return AuditEvent(
            tenant=obj["tenant"],
            name=obj["name"],
            actor=Actor(type=actor["type"], id=actor["id"], on_behalf_of=actor["on_behalf_of"]),
            trace=TraceContext(obj["trace_id"], obj["span_id"], obj["parent_span_id"]),
            start_time=from_ms(obj["start_time"]),
            end_time=from_ms(obj["end_time"]),
            status=obj["status"],
            decision=obj["decision"],
            reason=obj["reason"],
            data_subject_id=obj["data_subject_id"],
            processing_activity_id=obj["processing_activity_id"],
            legal_basis=obj["legal_basis"],
            grant_id=obj["grant_id"],
            department=obj["department"],
            client_id=obj["client_id"],
            categories=tuple(obj["categories"]),
            details=dict(obj["details"]),
        )
    except (KeyError, TypeError, OverflowError) as exc:
        raise LeafFormatError from exc


def decode_leaf(data: bytes) -> tuple[int, AuditEvent]:
    """``(seq, event)`` of stored leaf bytes; raises ``LeafFormatError``."""
    obj = parse(data)
    return obj["seq"], to_event(obj)

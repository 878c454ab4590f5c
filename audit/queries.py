"""The privacy officer's view of the log: search with cursor pagination, daily counts, CSV and JSON.

Searches filter on the indexed columns but return what the *leaf bytes* say (the columns are
copies; verification checks that they match). Every query is scoped to one tenant.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any, TextIO

from sqlalchemy import ColumnElement, case, func, or_, select
from sqlalchemy.orm import Session

from audit import leaf
from audit.errors import InvalidCursorError
from audit.models import ENTRY
from audit.schemas import AuditEvent, AuditPage, AuditQuery, DaySummary, LoggedEvent

MAX_PAGE = 500
DAY_MS = 86_400_000
_CURSOR_PREFIX = "kluis-audit-cursor:"
CSV_COLUMNS = (
    "seq",
    "start_time",
    "end_time",
    "name",
    "status",
    "decision",
    "reason",
    "actor_type",
    "actor_id",
    "on_behalf_of",
    "data_subject_id",
    "department",
    "client_id",
    "processing_activity_id",
    "legal_basis",
    "grant_id",
    "categories",
    "trace_id",
    "span_id",
    "parent_span_id",
    "details",
)


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursorError from exc
    number = text.removeprefix(_CURSOR_PREFIX)
    if number == text or not number.isdigit() or len(number) > 16:
        raise InvalidCursorError
    return int(number)


def _filters(tenant_id: str, query: AuditQuery) -> list[ColumnElement[bool]]:
    c = ENTRY.c
    filters: list[ColumnElement[bool]] = [c.tenant_id == tenant_id]
    if query.since is not None:
        filters.append(c.time_ms >= leaf.to_ms(query.since))
    if query.until is not None:
        filters.append(c.time_ms < leaf.to_ms(query.until))
    equal = {
        c.name: query.name,
        c.decision: query.decision,
        c.department: query.department,
        c.client_id: query.client_id,
        c.data_subject_id: query.data_subject_id,
        c.actor_id: query.actor_id,
        c.purpose: query.purpose,
        c.trace_id: query.trace_id,
    }
    filters.extend(column == value for column, value in equal.items() if value is not None)
    if query.involving is not None:
        filters.append(
            or_(
                c.data_subject_id == query.involving,
                c.actor_id == query.involving,
                c.on_behalf_of == query.involving,
            )
        )
    return filters


def search(
    session: Session, tenant_id: str, query: AuditQuery, *, limit: int = 50, cursor: str | None = None
) -> AuditPage:
    """One page of the tenant's entries matching ``query``, ordered by sequence number.

    Pass ``next_cursor`` back to get the following page; it is ``None`` on the last page.
    """
    limit = max(1, min(limit, MAX_PAGE))
    stmt = select(ENTRY.c.seq, ENTRY.c.leaf_bytes).where(*_filters(tenant_id, query))
    if cursor is not None:
        after = decode_cursor(cursor)
        stmt = stmt.where(ENTRY.c.seq < after if query.newest_first else ENTRY.c.seq > after)
    order = ENTRY.c.seq.desc() if query.newest_first else ENTRY.c.seq.asc()
    rows = session.connection().execute(stmt.order_by(order).limit(limit + 1)).all()
    entries = [LoggedEvent(seq=r.seq, event=leaf.decode_leaf(r.leaf_bytes)[1]) for r in rows[:limit]]
    next_cursor = encode_cursor(entries[-1].seq) if len(rows) > limit else None
    return AuditPage(entries=entries, next_cursor=next_cursor)


def iter_events(
    session: Session, tenant_id: str, query: AuditQuery, *, page: int = MAX_PAGE
) -> Iterator[LoggedEvent]:
    """Every matching entry, page by page (constant memory)."""
    cursor: str | None = None
    while True:
        result = search(session, tenant_id, query, limit=page, cursor=cursor)
        yield from result.entries
        if result.next_cursor is None:
            return
        cursor = result.next_cursor


def summary(session: Session, tenant_id: str, query: AuditQuery | None = None) -> list[DaySummary]:
    """Entries per UTC day and department (with allowed/denied counts), for the filter ``query``."""
    c = ENTRY.c
    day = (c.time_ms // DAY_MS).label("day")
    stmt = (
        select(
            day,
            c.department,
            func.count().label("total"),
            func.sum(case((c.decision == "allow", 1), else_=0)).label("allowed"),
            func.sum(case((c.decision == "deny", 1), else_=0)).label("denied"),
        )
        .where(*_filters(tenant_id, query or AuditQuery()))
        .group_by(day, c.department)
    )
    rows = session.connection().execute(stmt).all()
    result = [
        DaySummary(
            day=date(1970, 1, 1) + timedelta(days=int(r.day)),
            department=r.department,
            total=int(r.total),
            allowed=int(r.allowed or 0),
            denied=int(r.denied or 0),
        )
        for r in rows
    ]
    return sorted(result, key=lambda s: (s.day, s.department or ""))


def _iso(ms: int) -> str:
    return leaf.from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_json(seq: int, event: AuditEvent) -> dict[str, Any]:
    """One entry as a privacy officer's JSON document (times as ISO 8601 UTC)."""
    return {
        "seq": seq,
        "tenant": event.tenant,
        "name": event.name,
        "status": event.status,
        "start_time": _iso(leaf.to_ms(event.start_time)),
        "end_time": _iso(leaf.to_ms(event.end_time)),
        "trace_id": event.trace.trace_id,
        "span_id": event.trace.span_id,
        "parent_span_id": event.trace.parent_span_id,
        "actor": {
            "type": event.actor.type,
            "id": event.actor.id,
            "on_behalf_of": event.actor.on_behalf_of,
        },
        "data_subject_id": event.data_subject_id,
        "processing_activity_id": event.processing_activity_id,
        "legal_basis": event.legal_basis,
        "grant_id": event.grant_id,
        "department": event.department,
        "client_id": event.client_id,
        "categories": list(event.categories),
        "decision": event.decision,
        "reason": event.reason,
        "details": dict(event.details),
    }


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet runs cells that start like a formula; quote them (OWASP CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_csv(session: Session, tenant_id: str, query: AuditQuery, out: TextIO) -> int:
    """Write the matching entries as CSV (header row first); return how many."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for item in iter_events(session, tenant_id, query):
        doc = event_json(item.seq, item.event)
        actor = doc.pop("actor")
        doc.update(actor_type=actor["type"], actor_id=actor["id"], on_behalf_of=actor["on_behalf_of"])
        doc["categories"] = ";".join(doc["categories"])
        doc["details"] = (
            json.dumps(doc["details"], sort_keys=True, separators=(",", ":")) if doc["details"] else ""
        )
        writer.writerow([_cell(doc[column]) for column in CSV_COLUMNS])
        count += 1
    return count


def export_jsonl(session: Session, tenant_id: str, query: AuditQuery, out: TextIO) -> int:
    """Write the matching entries as JSON lines; return how many."""
    count = 0
    for item in iter_events(session, tenant_id, query):
        out.write(json.dumps(event_json(item.seq, item.event), ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
    return count

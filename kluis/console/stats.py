"""Counts over audit entries for the overview and the art. 30 report: pure functions over ``Event``.

The audit package counts entries per department per day itself (``audit.services.summary``); what
it does not count (per category, per processing activity) is counted here from the entries.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from audit import tags
from audit.schemas import LoggedEvent
from kluis.console.anomalies import Event
from kluis.console.schemas import PurposeCounts

# Consent events counted per purpose, by the ``PurposeCounts`` field they add to.
DECISIONS = {
    tags.REQUEST_CREATED: "requests",
    tags.REQUEST_APPROVED: "approvals",
    tags.REQUEST_DENIED: "refusals",
    tags.GRANT_REVOKED: "revocations",
}
COUNTED = ("reads_allowed", "reads_denied", *DECISIONS.values())


def event_of(item: LoggedEvent) -> Event:
    """The rules' view of one logged entry."""
    e = item.event
    return Event(
        sequence=item.seq,
        time=e.start_time,
        name=e.name,
        actor_type=e.actor.type,
        actor_id=e.actor.id,
        decision=e.decision,
        client_id=e.client_id,
        department=e.department,
        subject=e.data_subject_id,
        categories=tuple(e.categories),
        purpose=e.processing_activity_id,
        legal_basis=e.legal_basis,
        grant_id=e.grant_id,
        details=dict(e.details),
    )


def per_category(events: Iterable[Event]) -> dict[str, int]:
    """Reads per category (a read of two categories counts for both), largest first."""
    counts: Counter[str] = Counter()
    for event in events:
        if event.is_read:
            counts.update(event.categories or ("-",))
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def per_purpose(events: Iterable[Event]) -> list[PurposeCounts]:
    """What happened under each processing activity: reads, residents, requests and decisions."""
    counters: dict[str, Counter[str]] = {field: Counter() for field in COUNTED}
    residents: dict[str, set[str]] = defaultdict(set)
    departments: dict[str, set[str]] = defaultdict(set)
    categories: dict[str, set[str]] = defaultdict(set)
    bases: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.purpose is None:
            continue
        purpose = event.purpose
        if event.is_read:
            counted = "reads_denied" if event.decision == "deny" else "reads_allowed"
            if counted == "reads_allowed":
                if event.subject is not None:
                    residents[purpose].add(event.subject)
                categories[purpose].update(event.categories)
        elif event.name in DECISIONS:
            counted = DECISIONS[event.name]
        else:
            continue
        counters[counted][purpose] += 1
        if event.department is not None:
            departments[purpose].add(event.department)
        if event.legal_basis is not None:
            bases[purpose].add(event.legal_basis)
    purposes = sorted(set().union(*(set(counter) for counter in counters.values())))
    return [
        PurposeCounts(
            purpose=purpose,
            **{field: counters[field][purpose] for field in COUNTED},
            residents=len(residents[purpose]),
            departments=tuple(sorted(departments[purpose])),
            categories=tuple(sorted(categories[purpose])),
            legal_bases=tuple(sorted(bases[purpose])),
        )
        for purpose in purposes
    ]

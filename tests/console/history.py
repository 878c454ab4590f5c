"""Generated audit histories for the anomaly rules: a normal municipality, and ways to disturb it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from audit import tags
from kluis.console.anomalies import Event, Period

ZONE = ZoneInfo("Europe/Amsterdam")
START = date(2026, 2, 2)  # a Monday
DAYS = 35
# The last week is the period the rules report on; the four weeks before are context.
PERIOD = Period(
    datetime.combine(START + timedelta(days=DAYS - 7), time(0), ZONE).astimezone(UTC),
    datetime.combine(START + timedelta(days=DAYS), time(0), ZONE).astimezone(UTC),
)


def local(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), ZONE).astimezone(UTC)


def period_day(n: int) -> date:
    """The n-th day (0-based) of the reported period."""
    return START + timedelta(days=DAYS - 7 + n)


@dataclass
class History:
    events: list[Event] = field(default_factory=list)

    def add(self, when: datetime, name: str, **kwargs: object) -> Event:
        event = Event(sequence=len(self.events), time=when, name=name, **kwargs)  # type: ignore[arg-type]
        self.events.append(event)
        return event

    def read(
        self,
        when: datetime,
        *,
        client: str = "client-inkomen",
        department: str = "inkomen",
        subject: str = "s-0",
        categories: tuple[str, ...] = ("inkomen",),
        decision: str = "allow",
        grant: str | None = "g-inkomen",
        legal_basis: str = "consent",
        name: str = tags.RECORD_READ,
    ) -> Event:
        return self.add(
            when,
            name,
            actor_type="client",
            actor_id=client,
            client_id=client,
            department=department,
            subject=subject,
            categories=categories,
            decision=decision,
            grant_id=grant,
            legal_basis=legal_basis,
            purpose="purpose-" + department,
        )

    def request(
        self, when: datetime, *, subject: str, categories: tuple[str, ...], department: str, client: str
    ) -> Event:
        return self.add(
            when,
            tags.REQUEST_CREATED,
            actor_type="client",
            actor_id=client,
            client_id=client,
            department=department,
            subject=subject,
            categories=categories,
        )

    def approve(
        self,
        when: datetime,
        *,
        grant: str,
        subject: str,
        categories: tuple[str, ...],
        department: str,
        client: str,
        until: datetime,
    ) -> Event:
        return self.add(
            when,
            tags.REQUEST_APPROVED,
            actor_type="resident",
            actor_id=subject,
            client_id=client,
            department=department,
            subject=subject,
            categories=categories,
            grant_id=grant,
            decision="allow",
            details={"valid_until": until.isoformat()},
        )

    def revoke(self, when: datetime, *, grant: str, subject: str) -> Event:
        return self.add(
            when, tags.GRANT_REVOKED, actor_type="resident", actor_id=subject, subject=subject, grant_id=grant
        )

    def resident_reads_own(self, when: datetime, subject: str) -> Event:
        return self.add(when, tags.RECORD_READ, actor_type="resident", actor_id=subject, subject=subject)

    def sorted(self) -> list[Event]:
        """Entries in time order, renumbered densely (as the log assigns sequence numbers)."""
        ordered = sorted(self.events, key=lambda e: (e.time, e.sequence))
        return [
            Event(**{**{f: getattr(e, f) for f in Event.__dataclass_fields__}, "sequence": n})
            for n, e in enumerate(ordered)
        ]


def normal_history(seed: int) -> History:
    """Five weeks of an ordinary municipality, varied by ``seed``:

    - Werk en inkomen reads 8-12 residents' income each working day, 09:00-16:00, under consent,
      with grants that run well beyond the five weeks;
    - Jeugdzorg reads youth care files of 3-5 children a day, each after a request and approval;
    - Belastingen reads 20-40 times a day under a legal obligation (limit 100);
    - now and then a client is refused (at most 2 a day), and residents look at their own data at
      any hour (which is not the rules' business).
    """
    rng = random.Random(seed)
    history = History()
    far = local(START + timedelta(days=200), 12)
    children = [f"child-{n}" for n in range(40)]
    first = local(START - timedelta(days=5), 10)
    for n, child in enumerate(children):
        grant = f"g-jeugd-{n}"
        history.request(
            first,
            subject=child,
            categories=("jeugdzorg.dossier",),
            department="jeugdzorg",
            client="client-jeugd",
        )
        history.approve(
            first + timedelta(hours=1),
            grant=grant,
            subject=child,
            categories=("jeugdzorg.dossier",),
            department="jeugdzorg",
            client="client-jeugd",
            until=far,
        )
    history.approve(
        first,
        grant="g-inkomen",
        subject="s-0",
        categories=("inkomen",),
        department="inkomen",
        client="client-inkomen",
        until=far,
    )
    for offset in range(DAYS):
        day = START + timedelta(days=offset)
        if day.weekday() >= 5:
            continue

        def office() -> datetime:
            return local(day, rng.randint(9, 15), rng.randint(0, 59), rng.randint(0, 59))  # noqa: B023

        for number in rng.sample(range(500), rng.randint(8, 12)):
            history.read(office(), subject=f"s-{number}")
        for index in rng.sample(range(len(children)), rng.randint(3, 5)):
            history.read(
                office(),
                client="client-jeugd",
                department="jeugdzorg",
                subject=children[index],
                categories=("jeugdzorg.dossier",),
                grant=f"g-jeugd-{index}",
            )
        for _ in range(rng.randint(20, 40)):
            history.read(
                office(),
                client="client-belasting",
                department="belastingen",
                subject=f"t-{rng.randint(0, 5000)}",
                categories=("brp.persoon",),
                grant="g-belasting",
                legal_basis="legal_obligation",
            )
        for _ in range(rng.randint(0, 2)):
            history.read(office(), decision="deny", subject=f"s-{rng.randint(0, 500)}")
        history.resident_reads_own(local(day, rng.choice([1, 6, 22, 23]), rng.randint(0, 59)), "s-7")
    return history

"""Anomaly rules over one tenant's audit entries: pure functions, no database, no web framework.

Each rule takes the entries (oldest first, as ``Event`` values), its settings and the period to
report on, and returns candidate ``Finding`` values: what looks wrong, why (a message id of the
catalogues with its parameters) and the sequence numbers of the entries that show it. Entries
before the period are context only (the usual daily volume, the request history, a grant's
approval); only entries inside the period make findings.

``detect`` runs every enabled rule of a tenant's ``RuleSet``. A finding's ``key`` is stable, so
running the rules again over the same period yields the same findings, not new ones.

The rules (each one can be switched off and tuned per tenant, see ``RuleSet``):

- ``off_hours``: a read by a client or staff outside the office hours (local time);
- ``volume_spike``: a client reads at least the minimum number of distinct residents on one day,
  and more than ``factor`` times its usual daily volume;
- ``repeated_denials``: at least ``threshold`` refusals of one client within a sliding window;
- ``grant_end``: a read within the margin before or after its grant's expiry or revocation;
- ``special_category``: an allowed read of a special category (``jeugdzorg.dossier``) without a
  consent request for that resident and category in the look-back;
- ``legal_basis_volume``: more reads per department per day under a legal basis other than
  consent than the limit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from audit import tags

RuleName = Literal[
    "off_hours", "volume_spike", "repeated_denials", "grant_end", "special_category", "legal_basis_volume"
]
RULES: tuple[RuleName, ...] = (
    "off_hours",
    "volume_spike",
    "repeated_denials",
    "grant_end",
    "special_category",
    "legal_basis_volume",
)
READS = frozenset({tags.RECORD_READ, tags.RECORDS_LISTED})
# Requests that open a history for a resident and category (the special-category rule).
REQUEST_EVENTS = frozenset({tags.REQUEST_CREATED, tags.REQUEST_APPROVED})
# People acting for themselves or for a relative are not the subject of these rules.
CITIZENS = frozenset({"resident", "representative"})
MAX_SEQUENCES = 1000  # a finding links to at most this many entries (its count says how many there were)


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "mark, translate later"
    return message


RULE_TITLES: dict[RuleName, str] = {
    "off_hours": N_("Reads outside office hours"),
    "volume_spike": N_("Many more residents than usual"),
    "repeated_denials": N_("Repeated refusals"),
    "grant_end": N_("Reads close to the end of a permission"),
    "special_category": N_("Special category without a request"),
    "legal_basis_volume": N_("Volume under a legal basis"),
}
MESSAGES = {
    "off_hours": N_(
        "%(who)s made %(count)s reads outside office hours (%(start)s to %(end)s) on %(day)s, "
        "the first at %(time)s."
    ),
    "volume_spike": N_(
        "%(who)s read the data of %(count)s residents on %(day)s; its usual daily volume is %(usual)s."
    ),
    "repeated_denials": N_("%(who)s was refused %(count)s times within %(minutes)s minutes on %(day)s."),
    "grant_expiry": N_(
        "%(who)s made %(count)s reads within %(minutes)s minutes of the expiry of permission "
        "%(grant)s (%(end)s)."
    ),
    "grant_revocation": N_(
        "%(who)s made %(count)s reads within %(minutes)s minutes of the revocation of permission "
        "%(grant)s (%(end)s)."
    ),
    "special_category": N_(
        "%(who)s read %(category)s of one resident %(count)s times on %(day)s without a request "
        "for it in the %(days)s days before."
    ),
    "legal_basis_volume": N_(
        "Department %(department)s made %(count)s reads under legal basis %(basis)s on %(day)s; "
        "the limit is %(limit)s."
    ),
}


# -- entries and findings -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Event:
    """What the rules need of one audit entry: codes and opaque ids only."""

    sequence: int
    time: datetime
    name: str
    actor_type: str
    actor_id: str
    decision: str | None = None
    client_id: str | None = None
    department: str | None = None
    subject: str | None = None  # the data subject's audit pseudonym
    categories: tuple[str, ...] = ()
    purpose: str | None = None
    legal_basis: str | None = None
    grant_id: str | None = None
    details: Mapping[str, str | int | bool | None] = field(default_factory=dict, hash=False)

    @property
    def who(self) -> str:
        """The acting client, or the actor when no client acted (an operator, the system)."""
        return self.client_id or f"{self.actor_type}:{self.actor_id}"

    @property
    def by_staff(self) -> bool:
        """Done by a client, the operator or the system: not by a resident or a representative."""
        return self.actor_type not in CITIZENS

    @property
    def is_read(self) -> bool:
        return self.name in READS and self.by_staff


@dataclass(frozen=True, slots=True)
class Finding:
    """Something that looks wrong: ``message`` is a message id, ``params`` fill it in."""

    rule: RuleName
    key: str
    message: str
    params: Mapping[str, str | int]
    first_at: datetime
    last_at: datetime
    count: int
    sequences: tuple[int, ...]
    client_id: str | None = None
    department: str | None = None

    @property
    def reason(self) -> str:
        """The reason in English (the pages translate ``message`` instead)."""
        return self.message % dict(self.params)


def _finding(
    rule: RuleName, key: str, message: str, params: Mapping[str, str | int], events: Sequence[Event]
) -> Finding:
    ordered = sorted(events, key=lambda e: e.sequence)
    first = ordered[0]
    return Finding(
        rule=rule,
        key=key,
        message=message,
        params=dict(params),
        first_at=min(e.time for e in ordered),
        last_at=max(e.time for e in ordered),
        count=len(ordered),
        sequences=tuple(e.sequence for e in ordered[:MAX_SEQUENCES]),
        client_id=first.client_id,
        department=first.department,
    )


# -- settings -------------------------------------------------------------------------------------
class RuleSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True


class OffHoursSettings(RuleSettings):
    start: time = time(7, 0)
    end: time = time(19, 0)
    workdays: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday is 0

    @field_validator("workdays")
    @classmethod
    def _days(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(day not in range(7) for day in value):
            raise ValueError("workdays are 0 (Monday) to 6 (Sunday)")
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.start >= self.end:
            raise ValueError("office hours must start before they end")
        return self


class VolumeSpikeSettings(RuleSettings):
    factor: float = Field(default=3.0, ge=1.0, le=100.0)
    min_residents: int = Field(default=20, ge=1, le=1_000_000)
    baseline_days: int = Field(default=28, ge=1, le=366)


class RepeatedDenialsSettings(RuleSettings):
    threshold: int = Field(default=5, ge=2, le=10_000)
    window_minutes: int = Field(default=60, ge=1, le=1440)


class GrantEndSettings(RuleSettings):
    margin_minutes: int = Field(default=15, ge=1, le=1440)


class SpecialCategorySettings(RuleSettings):
    categories: tuple[str, ...] = ("jeugdzorg.dossier",)
    lookback_days: int = Field(default=90, ge=1, le=3660)


class LegalBasisVolumeSettings(RuleSettings):
    max_reads_per_day: int = Field(default=100, ge=1, le=10_000_000)
    bases: tuple[str, ...] = (
        "contract",
        "legal_obligation",
        "vital_interests",
        "public_task",
        "legitimate_interests",
    )


class RuleSet(BaseModel):
    """A tenant's rule configuration (stored as JSON; every field has a sensible default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = "Europe/Amsterdam"
    off_hours: OffHoursSettings = OffHoursSettings()
    volume_spike: VolumeSpikeSettings = VolumeSpikeSettings()
    repeated_denials: RepeatedDenialsSettings = RepeatedDenialsSettings()
    grant_end: GrantEndSettings = GrantEndSettings()
    special_category: SpecialCategorySettings = SpecialCategorySettings()
    legal_basis_volume: LegalBasisVolumeSettings = LegalBasisVolumeSettings()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def lookback(self) -> timedelta:
        """How far before a period the rules need context (baseline, request history)."""
        days = max(
            self.volume_spike.baseline_days if self.volume_spike.enabled else 0,
            self.special_category.lookback_days if self.special_category.enabled else 0,
        )
        return timedelta(days=days)


@dataclass(frozen=True, slots=True)
class Period:
    """``[since, until)``: only entries in it make findings."""

    since: datetime
    until: datetime

    def __contains__(self, moment: datetime) -> bool:
        return self.since <= moment < self.until


def _day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def _clock(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M")


# -- the rules ------------------------------------------------------------------------------------
def off_hours(
    events: Sequence[Event], settings: OffHoursSettings, period: Period, zone: ZoneInfo
) -> list[Finding]:
    """Reads by clients and staff outside the office hours, one finding per actor per day."""
    found: dict[tuple[str, date], list[Event]] = defaultdict(list)
    for event in events:
        if not event.is_read or event.time not in period:
            continue
        local = event.time.astimezone(zone)
        inside = local.weekday() in settings.workdays and settings.start <= local.time() < settings.end
        if not inside:
            found[(event.who, local.date())].append(event)
    return [
        _finding(
            "off_hours",
            f"off_hours:{who}:{day.isoformat()}",
            MESSAGES["off_hours"],
            {
                "who": who,
                "count": len(reads),
                "start": settings.start.strftime("%H:%M"),
                "end": settings.end.strftime("%H:%M"),
                "day": day.isoformat(),
                "time": _clock(min(e.time for e in reads), zone),
            },
            reads,
        )
        for (who, day), reads in sorted(found.items())
    ]


def volume_spike(
    events: Sequence[Event], settings: VolumeSpikeSettings, period: Period, zone: ZoneInfo
) -> list[Finding]:
    """A client reading many more residents on one day than on its usual day.

    The usual daily volume is the average number of distinct residents on the days the client
    read anything in the ``baseline_days`` before (so quiet weekends do not lower it); a client
    without such days has a usual volume of 0, and then only the minimum applies.
    """
    residents: dict[tuple[str, date], set[str]] = defaultdict(set)
    reads: dict[tuple[str, date], list[Event]] = defaultdict(list)
    for event in events:
        if not event.is_read or event.decision != "allow" or event.subject is None:
            continue
        day = _day(event.time, zone)
        residents[(event.who, day)].add(event.subject)
        if event.time in period:
            reads[(event.who, day)].append(event)
    findings = []
    for (who, day), day_reads in sorted(reads.items()):
        count = len(residents[(who, day)])
        before = [
            len(found)
            for n in range(1, settings.baseline_days + 1)
            if (found := residents.get((who, day - timedelta(days=n))))
        ]
        usual = sum(before) / len(before) if before else 0.0
        if count >= settings.min_residents and count > settings.factor * usual:
            findings.append(
                _finding(
                    "volume_spike",
                    f"volume_spike:{who}:{day.isoformat()}",
                    MESSAGES["volume_spike"],
                    {"who": who, "count": count, "day": day.isoformat(), "usual": f"{usual:.1f}"},
                    day_reads,
                )
            )
    return findings


def repeated_denials(
    events: Sequence[Event], settings: RepeatedDenialsSettings, period: Period, zone: ZoneInfo
) -> list[Finding]:
    """At least ``threshold`` refusals of one client within ``window_minutes``; one finding per
    client per day, linking the densest window's refusals."""
    refused: dict[tuple[str, date], list[Event]] = defaultdict(list)
    for event in events:
        # A refused token whose signature did not verify (details.verified false) names a client
        # only because the token says so: anyone can make one, so it counts against no one.
        forged = event.details.get("verified") is False
        if event.decision == "deny" and event.by_staff and event.time in period and not forged:
            refused[(event.who, _day(event.time, zone))].append(event)
    window = timedelta(minutes=settings.window_minutes)
    findings = []
    for (who, day), denials in sorted(refused.items()):
        denials.sort(key=lambda e: (e.time, e.sequence))
        best: list[Event] = []
        start = 0
        for end, event in enumerate(denials):
            while event.time - denials[start].time > window:
                start += 1
            if end - start + 1 > len(best):
                best = denials[start : end + 1]
        if len(best) >= settings.threshold:
            findings.append(
                _finding(
                    "repeated_denials",
                    f"repeated_denials:{who}:{day.isoformat()}",
                    MESSAGES["repeated_denials"],
                    {
                        "who": who,
                        "count": len(best),
                        "minutes": settings.window_minutes,
                        "day": day.isoformat(),
                    },
                    best,
                )
            )
    return findings


@dataclass(frozen=True, slots=True)
class GrantEnd:
    """When a grant stopped or stops: its expiry, or its revocation if that came first."""

    at: datetime
    revoked: bool


def grant_ends(events: Iterable[Event]) -> dict[str, GrantEnd]:
    """Each grant's end, from its approval (``valid_until``) and revocation entries."""
    expiry: dict[str, datetime] = {}
    revoked: dict[str, datetime] = {}
    for event in events:
        if event.grant_id is None:
            continue
        if event.name == tags.REQUEST_APPROVED:
            until = event.details.get("valid_until")
            if isinstance(until, str):
                try:
                    parsed = datetime.fromisoformat(until)
                except ValueError:
                    continue
                expiry[event.grant_id] = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        elif event.name == tags.GRANT_REVOKED:
            revoked.setdefault(event.grant_id, event.time)
    ends = {grant: GrantEnd(at, revoked=False) for grant, at in expiry.items()}
    for grant, at in revoked.items():
        if grant not in expiry or at < expiry[grant]:
            ends[grant] = GrantEnd(at, revoked=True)
    return ends


def grant_end(
    events: Sequence[Event],
    settings: GrantEndSettings,
    period: Period,
    zone: ZoneInfo,
    ends: Mapping[str, GrantEnd] | None = None,
) -> list[Finding]:
    """Reads (allowed or refused) within ``margin_minutes`` before or after the end of their grant.

    ``ends`` adds grant ends known from elsewhere (for grants approved before the entries given).
    """
    known = dict(ends or {})
    known.update(grant_ends(events))
    margin = timedelta(minutes=settings.margin_minutes)
    close: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if not event.is_read or event.grant_id is None or event.time not in period:
            continue
        end = known.get(event.grant_id)
        if end is not None and abs(event.time - end.at) <= margin:
            close[event.grant_id].append(event)
    findings = []
    for grant, reads in sorted(close.items()):
        end = known[grant]
        message = MESSAGES["grant_revocation" if end.revoked else "grant_expiry"]
        local = end.at.astimezone(zone)
        findings.append(
            _finding(
                "grant_end",
                f"grant_end:{grant}",
                message,
                {
                    "who": reads[0].who,
                    "count": len(reads),
                    "minutes": settings.margin_minutes,
                    "grant": grant,
                    "end": f"{local.date().isoformat()} {local.strftime('%H:%M')}",
                },
                reads,
            )
        )
    return findings


def special_category(
    events: Sequence[Event], settings: SpecialCategorySettings, period: Period, zone: ZoneInfo
) -> list[Finding]:
    """Allowed reads of a special category for which the resident's history holds no consent
    request (asked or approved) for that category, from the same department, in the look-back."""
    special = set(settings.categories)
    lookback = timedelta(days=settings.lookback_days)
    # (subject, category) -> [(time, department)] of the requests that name them
    asked: dict[tuple[str, str], list[tuple[datetime, str | None]]] = defaultdict(list)
    for event in events:
        if event.name in REQUEST_EVENTS and event.subject is not None:
            for category in special.intersection(event.categories):
                asked[(event.subject, category)].append((event.time, event.department))

    def backed(event: Event, category: str) -> bool:
        assert event.subject is not None
        return any(
            event.time - lookback <= when <= event.time
            and (event.department is None or department in (None, event.department))
            for when, department in asked.get((event.subject, category), ())
        )

    found: dict[tuple[str, str, str, date], list[Event]] = defaultdict(list)
    for event in events:
        if (
            not event.is_read
            or event.decision != "allow"
            or event.subject is None
            or event.time not in period
        ):
            continue
        for category in sorted(special.intersection(event.categories)):
            if not backed(event, category):
                found[(event.who, event.subject, category, _day(event.time, zone))].append(event)
    return [
        _finding(
            "special_category",
            f"special_category:{who}:{subject}:{category}:{day.isoformat()}",
            MESSAGES["special_category"],
            {
                "who": who,
                "category": category,
                "count": len(reads),
                "day": day.isoformat(),
                "days": settings.lookback_days,
            },
            reads,
        )
        for (who, subject, category, day), reads in sorted(found.items())
    ]


def legal_basis_volume(
    events: Sequence[Event], settings: LegalBasisVolumeSettings, period: Period, zone: ZoneInfo
) -> list[Finding]:
    """More allowed reads under a legal basis other than consent than the daily limit, per
    department (or acting client) per day."""
    bases = set(settings.bases)
    counted: dict[tuple[str, str, date], list[Event]] = defaultdict(list)
    for event in events:
        if (
            event.is_read
            and event.decision == "allow"
            and event.legal_basis in bases
            and event.time in period
        ):
            assert event.legal_basis is not None
            counted[(event.department or event.who, event.legal_basis, _day(event.time, zone))].append(event)
    return [
        _finding(
            "legal_basis_volume",
            f"legal_basis_volume:{department}:{basis}:{day.isoformat()}",
            MESSAGES["legal_basis_volume"],
            {
                "department": department,
                "basis": basis,
                "count": len(reads),
                "day": day.isoformat(),
                "limit": settings.max_reads_per_day,
            },
            reads,
        )
        for (department, basis, day), reads in sorted(counted.items())
        if len(reads) > settings.max_reads_per_day
    ]


def detect(
    events: Sequence[Event],
    rules: RuleSet,
    period: Period,
    *,
    ends: Mapping[str, GrantEnd] | None = None,
) -> list[Finding]:
    """Every enabled rule of ``rules`` over ``events`` (context before ``period`` included)."""
    ordered = sorted(events, key=lambda e: e.sequence)
    zone = rules.zone
    findings: list[Finding] = []
    if rules.off_hours.enabled:
        findings += off_hours(ordered, rules.off_hours, period, zone)
    if rules.volume_spike.enabled:
        findings += volume_spike(ordered, rules.volume_spike, period, zone)
    if rules.repeated_denials.enabled:
        findings += repeated_denials(ordered, rules.repeated_denials, period, zone)
    if rules.grant_end.enabled:
        findings += grant_end(ordered, rules.grant_end, period, zone, ends)
    if rules.special_category.enabled:
        findings += special_category(ordered, rules.special_category, period, zone)
    if rules.legal_basis_volume.enabled:
        findings += legal_basis_volume(ordered, rules.legal_basis_volume, period, zone)
    return findings

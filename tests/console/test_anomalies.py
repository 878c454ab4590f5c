"""Each anomaly rule fires on a generated history that shows its pattern and stays silent on a
normal one (and on the near misses next to its threshold)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from audit import tags
from kluis.console import anomalies
from kluis.console.anomalies import Finding, GrantEnd, RuleSet
from tests.console.history import PERIOD, ZONE, History, local, normal_history, period_day

SEEDS = [1, 2, 3, 4, 5]


def run(history: History, rules: RuleSet | None = None) -> list[Finding]:
    return anomalies.detect(history.sorted(), rules or RuleSet(), PERIOD)


def only(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_normal_history_makes_no_finding(seed: int) -> None:
    history = normal_history(seed)
    assert len(history.events) > 1000
    assert run(history) == []


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_rerunning_finds_the_same_findings(seed: int) -> None:
    history = normal_history(seed)
    history.read(local(period_day(1), 23, 30))
    first, second = run(history), run(history)
    assert [f.key for f in first] == [f.key for f in second] and len(first) == 1


# -- off hours --------------------------------------------------------------------------------
def test_reads_at_night_and_at_the_weekend_are_found() -> None:
    history = normal_history(1)
    night = history.read(local(period_day(1), 23, 30), subject="s-night")
    weekend = history.read(local(period_day(5), 11, 0), client="client-jeugd", department="jeugdzorg")
    found = only(run(history), "off_hours")
    assert {f.key for f in found} == {
        f"off_hours:client-inkomen:{period_day(1).isoformat()}",
        f"off_hours:client-jeugd:{period_day(5).isoformat()}",
    }
    ordered = history.sorted()
    by_time = {e.time: e.sequence for e in ordered}
    assert {s for f in found for s in f.sequences} == {by_time[night.time], by_time[weekend.time]}
    night_finding = next(f for f in found if f.client_id == "client-inkomen")
    assert night_finding.params["time"] == "23:30" and night_finding.count == 1
    assert "outside office hours (07:00 to 19:00)" in night_finding.reason


def test_reads_on_the_edges_of_office_hours_are_not_found() -> None:
    history = normal_history(2)
    history.read(local(period_day(1), 7, 0))
    history.read(local(period_day(1), 18, 59, 59))
    assert run(history) == []


def test_office_hours_are_configurable() -> None:
    history = normal_history(3)
    history.read(local(period_day(1), 18, 30))
    assert run(history) == []
    late = RuleSet.model_validate({"off_hours": {"end": "18:00"}})
    assert len(only(run(history, late), "off_hours")) == 1


def test_residents_reading_their_own_data_at_night_are_no_concern() -> None:
    history = normal_history(4)
    history.resident_reads_own(local(period_day(2), 3, 0), "s-1")
    assert run(history) == []


def test_reads_before_the_period_only_count_as_context() -> None:
    history = normal_history(1)
    history.read(PERIOD.since - timedelta(hours=2))  # 22:00 the evening before the period
    assert run(history) == []


# -- volume spike ------------------------------------------------------------------------------
def test_a_client_reading_many_more_residents_than_usual_is_found() -> None:
    history = normal_history(1)
    day = period_day(2)
    for n in range(60):
        history.read(local(day, 10, n % 60), subject=f"spike-{n}")
    found = only(run(history), "volume_spike")
    assert [f.key for f in found] == [f"volume_spike:client-inkomen:{day.isoformat()}"]
    assert int(found[0].params["count"]) >= 60
    usual = float(found[0].params["usual"])
    assert 8 <= usual <= 12  # about 10 residents on working days (quiet weekends do not count)


def test_a_busier_day_within_the_factor_is_not_found() -> None:
    history = normal_history(1)
    for n in range(15):  # about 25 residents that day: more than usual, not three times as many
        history.read(local(period_day(2), 10, n), subject=f"busy-{n}")
    assert run(history) == []


def test_a_new_client_is_held_to_the_minimum() -> None:
    history = normal_history(2)
    for n in range(19):
        history.read(local(period_day(3), 11, n), client="client-new", department="wmo", subject=f"n-{n}")
    assert run(history) == []
    history.read(local(period_day(3), 11, 30), client="client-new", department="wmo", subject="n-19")
    assert [f.params["usual"] for f in only(run(history), "volume_spike")] == ["0.0"]


def test_repeated_reads_of_the_same_residents_are_not_a_spike() -> None:
    history = normal_history(3)
    for n in range(100):
        history.read(local(period_day(2), 10, n % 60), subject=f"s-{n % 5}")
    assert only(run(history), "volume_spike") == []


# -- repeated denials --------------------------------------------------------------------------
def test_repeated_refusals_within_the_window_are_found() -> None:
    history = normal_history(1)
    day = period_day(3)
    for n in range(5):
        history.read(local(day, 14, n * 7), decision="deny", client="client-x", department="x", grant=None)
    found = only(run(history), "repeated_denials")
    assert [f.key for f in found] == [f"repeated_denials:client-x:{day.isoformat()}"]
    assert found[0].count == 5 and found[0].params["minutes"] == 60


def test_refused_tokens_that_no_one_signed_count_against_no_client() -> None:
    # Anyone can make a token that names client-x; refused unverified, it is no sign of client-x.
    history = normal_history(1)
    day = period_day(3)

    def refusals_at(hour: int, *, verified: bool) -> None:
        for n in range(6):
            history.add(
                local(day, hour, n),
                tags.TOKEN_REFUSED,
                actor_type="client",
                actor_id="client-x",
                client_id="client-x",
                decision="deny",
                details={"verified": verified},
            )

    refusals_at(14, verified=False)
    assert only(run(history), "repeated_denials") == []
    refusals_at(15, verified=True)  # the same refusals of tokens that did verify are found
    assert len(only(run(history), "repeated_denials")) == 1


def test_four_refusals_or_refusals_spread_over_the_day_are_not_found() -> None:
    history = normal_history(2)
    for n in range(4):
        history.read(local(period_day(3), 14, n), decision="deny", client="client-x", grant=None)
    for n in range(6):
        history.read(local(period_day(4), 9 + n, 0), decision="deny", client="client-y", grant=None)
    assert run(history) == []


def test_the_denial_threshold_is_configurable() -> None:
    history = normal_history(3)
    for n in range(3):
        history.read(local(period_day(3), 14, n), decision="deny", client="client-x", grant=None)
    strict = RuleSet.model_validate({"repeated_denials": {"threshold": 3, "window_minutes": 5}})
    assert len(only(run(history, strict), "repeated_denials")) == 1


# -- grant end ---------------------------------------------------------------------------------
def _grant(history: History, *, grant: str, until_day: int, until_hour: int) -> None:
    history.approve(
        local(period_day(0), 9),
        grant=grant,
        subject="s-grant",
        categories=("inkomen",),
        department="inkomen",
        client="client-inkomen",
        until=local(period_day(until_day), until_hour),
    )


def test_reads_just_before_expiry_are_found() -> None:
    history = normal_history(1)
    _grant(history, grant="g-end", until_day=2, until_hour=12)
    before = history.read(local(period_day(2), 11, 50), grant="g-end", subject="s-grant")
    history.read(local(period_day(2), 12, 5), grant="g-end", subject="s-grant", decision="deny")
    found = only(run(history), "grant_end")
    assert [f.key for f in found] == ["grant_end:g-end"]
    assert found[0].count == 2 and found[0].message == anomalies.MESSAGES["grant_expiry"]
    assert found[0].first_at == before.time


def test_reads_right_after_revocation_are_found() -> None:
    history = normal_history(2)
    _grant(history, grant="g-rev", until_day=30, until_hour=12)
    history.revoke(local(period_day(3), 15), grant="g-rev", subject="s-grant")
    history.read(local(period_day(3), 15, 2), grant="g-rev", subject="s-grant", decision="deny")
    found = only(run(history), "grant_end")
    assert [f.message for f in found] == [anomalies.MESSAGES["grant_revocation"]]


def test_reads_well_before_the_end_are_not_found() -> None:
    history = normal_history(3)
    _grant(history, grant="g-end", until_day=2, until_hour=12)
    history.read(local(period_day(2), 11, 44), grant="g-end", subject="s-grant")
    history.read(local(period_day(1), 11, 55), grant="g-end", subject="s-grant")
    assert run(history) == []


def test_grant_ends_known_from_elsewhere_are_used() -> None:
    history = normal_history(4)
    history.read(local(period_day(2), 11, 58), grant="g-old", subject="s-grant")
    assert run(history) == []
    ends = {"g-old": GrantEnd(local(period_day(2), 12), revoked=False)}
    found = anomalies.detect(history.sorted(), RuleSet(), PERIOD, ends=ends)
    assert [f.key for f in found] == ["grant_end:g-old"]


# -- special categories ------------------------------------------------------------------------
def test_a_youth_care_read_without_a_request_is_found() -> None:
    history = normal_history(1)
    history.read(
        local(period_day(1), 10),
        client="client-jeugd",
        department="jeugdzorg",
        subject="child-unasked",
        categories=("jeugdzorg.dossier",),
        grant="g-unasked",
    )
    found = only(run(history), "special_category")
    assert [f.params["category"] for f in found] == ["jeugdzorg.dossier"]
    assert found[0].key.startswith("special_category:client-jeugd:child-unasked:jeugdzorg.dossier:")


def test_a_request_too_long_ago_or_from_another_department_does_not_count() -> None:
    for when, department in (
        (local(period_day(1), 9) - timedelta(days=91), "jeugdzorg"),
        (local(period_day(1), 9), "wmo"),
    ):
        history = normal_history(2)
        history.request(
            when, subject="child-x", categories=("jeugdzorg.dossier",), department=department, client="c"
        )
        history.read(
            local(period_day(1), 10),
            client="client-jeugd",
            department="jeugdzorg",
            subject="child-x",
            categories=("jeugdzorg.dossier",),
        )
        assert len(only(run(history), "special_category")) == 1, department


def test_a_recent_request_covers_the_read() -> None:
    history = normal_history(3)
    history.request(
        local(period_day(1), 9) - timedelta(days=89),
        subject="child-x",
        categories=("jeugdzorg.dossier",),
        department="jeugdzorg",
        client="client-jeugd",
    )
    history.read(
        local(period_day(1), 10),
        client="client-jeugd",
        department="jeugdzorg",
        subject="child-x",
        categories=("jeugdzorg.dossier",),
    )
    assert run(history) == []


def test_the_special_categories_are_configurable() -> None:
    history = normal_history(4)
    history.read(local(period_day(1), 10), subject="s-debt", categories=("schulden",))
    assert run(history) == []
    rules = RuleSet.model_validate({"special_category": {"categories": ["jeugdzorg.dossier", "schulden"]}})
    assert len(only(run(history, rules), "special_category")) == 1


# -- legal-basis volume ------------------------------------------------------------------------
def _tax_reads(history: History, count: int, basis: str = "public_task") -> None:
    for n in range(count):
        history.read(
            local(period_day(2), 9 + n % 8, n % 60),
            client="client-wmo",
            department="wmo",
            subject=f"w-{n}",
            categories=("wmo.indicatie",),
            grant="g-wmo",
            legal_basis=basis,
        )


def test_more_reads_under_a_legal_basis_than_the_limit_are_found() -> None:
    history = normal_history(1)
    _tax_reads(history, 101)
    found = only(run(history), "legal_basis_volume")
    assert [f.key for f in found] == [f"legal_basis_volume:wmo:public_task:{period_day(2).isoformat()}"]
    assert found[0].params["count"] == 101 and found[0].params["limit"] == 100


def test_reads_up_to_the_limit_or_under_consent_are_not_found() -> None:
    history = normal_history(2)
    _tax_reads(history, 100)
    assert only(run(history), "legal_basis_volume") == []
    history = normal_history(2)
    _tax_reads(history, 150, basis="consent")
    assert only(run(history), "legal_basis_volume") == []


# -- configuration -----------------------------------------------------------------------------
def test_a_disabled_rule_stays_silent() -> None:
    history = normal_history(1)
    history.read(local(period_day(1), 23, 30))
    rules = RuleSet.model_validate({"off_hours": {"enabled": False}})
    assert run(history, rules) == []


@pytest.mark.parametrize(
    "settings",
    [
        {"off_hours": {"start": "19:00", "end": "07:00"}},
        {"off_hours": {"workdays": [7]}},
        {"timezone": "Mars/Olympus"},
        {"volume_spike": {"factor": 0.5}},
        {"unknown_rule": {}},
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RuleSet.model_validate(settings)


def test_the_settings_round_trip_through_json() -> None:
    rules = RuleSet.model_validate({"off_hours": {"start": "08:30", "workdays": [0, 1, 2]}})
    again = RuleSet.model_validate_json(rules.model_dump_json())
    assert again == rules and again.zone == ZONE
    assert rules.lookback() == timedelta(days=90)

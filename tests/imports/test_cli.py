"""``kluis import`` as an operator runs it, against the stand-in BRP over loopback HTTP, on SQLite and
PostgreSQL: single imports, the bulk import of all 1,176 test persons from a BSN file (the one
invalid BSN reported by line number and skipped), resuming after an interruption or an outage
without duplicates, per-person failures, ``--all``, and never a BSN in what the CLI prints."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from audit import tags
from connectors import BRP_PERSOON_FIELDS, gezag_relations
from kluis import cli
from kluis.cli._common import CliError
from tests.imports.conftest import INVALID_BSN, TENANT, Kluis, bsns_in, operator
from tests.support.brp_standin import StandinServer
from vault.models import RecordVersion, Resident
from vault.services import VaultService

BSN = "999970616"
IMPORT = ("import", "--tenant", TENANT, "--source", "brp")


@pytest.fixture
def all_bsns(raw_personen: list[dict[str, Any]]) -> list[str]:
    return [p["burgerservicenummer"] for p in raw_personen]


def bsn_file(tmp_path: Path, bsns: list[str], name: str = "bsns.txt") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{b}\n" for b in bsns), encoding="utf-8")
    return path


def printed(result: Any) -> str:
    return str(result.stdout) + str(result.stderr)


def counts(kluis: Kluis) -> tuple[int, int]:
    """(residents, record versions) of the tenant."""
    with kluis.services.db.read_session() as s:
        residents = s.exec(
            select(func.count()).select_from(Resident).where(Resident.tenant_id == kluis.tenant.id)
        ).one()
        versions = s.exec(
            select(func.count()).select_from(RecordVersion).where(RecordVersion.tenant_id == kluis.tenant.id)
        ).one()
    return int(residents), int(versions)


class FailAfter:
    """Makes ``VaultService.put_record`` run ``n`` times, then calls ``then`` (to raise or to break
    the source) before the next one: the test's way to stop a bulk run in the middle of a window."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, n: int, then: Any) -> None:
        self.calls = 0
        original = VaultService.put_record

        def put_record(vault: VaultService, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == n + 1:
                then()
            return original(vault, *args, **kwargs)

        monkeypatch.setattr(VaultService, "put_record", put_record)


# -- one resident ---------------------------------------------------------------------------------


def test_single_import_with_and_without_create(kluis: Kluis, standin: StandinServer) -> None:
    refused = kluis.cli(*IMPORT, "--bsn", BSN, code=1)
    assert str(refused.exception) == "unknown resident"
    assert standin.state.recorded("personen") == []  # nobody is looked up who is not a resident

    first = kluis.cli(*IMPORT, "--bsn", BSN, "--create", "--json")
    created = json.loads(first.stdout)
    assert created["created"] is True and created["version"] == 1
    assert created["category"] == "brp.persoon" and created["source"] == "brp"

    second = kluis.cli(*IMPORT, "--bsn", BSN)
    assert second.stdout.strip() == (
        f"imported brp.persoon version 2 from brp for resident {created['resident_id']}"
    )
    for result in (refused, first, second):
        assert BSN not in printed(result)
    assert len(kluis.audit(tags.RECORD_IMPORTED)) == 2


@pytest.mark.parametrize(
    "args",
    [
        ("--bsn", BSN, "--all"),
        (),
        ("--all", "--create"),
        ("--bsn", BSN, "--resume"),
        ("--all", "--resume", "--restart"),
    ],
)
def test_the_options_must_make_sense_together(kluis: Kluis, args: tuple[str, ...]) -> None:
    result = kluis.cli(*IMPORT, *args, code=1)
    assert isinstance(result.exception, CliError)


def test_errors_are_one_line_without_traceback_or_bsn(
    kluis: Kluis, standin: StandinServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the real entry point (``kluis.cli.main``), as the shell runs it."""
    standin.state.inject("personen", 503, times=10, retry_after="0")
    monkeypatch.setattr(sys, "argv", ["kluis", *IMPORT, "--bsn", BSN, "--create"])

    with pytest.raises(SystemExit) as exited:
        cli.main()

    out, err = capsys.readouterr()
    assert exited.value.code == 1 and out == ""
    assert err.splitlines()[-1] == "kluis: error: the source is unavailable (http_503) after 2 attempt(s)"
    assert "Traceback" not in err and BSN not in err
    [failed] = kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert failed["reason"] == "source_unavailable"
    assert counts(kluis) == (0, 0)


# -- bulk -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bulk_import_of_all_persons_from_a_bsn_file(
    kluis: Kluis,
    standin: StandinServer,
    all_bsns: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All 1,176 persons on SQLite (a 200-person slice around the invalid BSN on PostgreSQL).

    SQLite runs with ``KLUIS_SQLITE_SYNCHRONOUS=NORMAL`` here only to keep the test within seconds:
    the durability mode changes how often SQLite syncs, not what is stored.
    """
    bsns = all_bsns if kluis.services.db.is_sqlite else all_bsns[1000:1200]
    monkeypatch.setenv("KLUIS_SQLITE_SYNCHRONOUS", "NORMAL")
    invalid_line = bsns.index(INVALID_BSN) + 1
    started = time.monotonic()

    result = kluis.cli(*IMPORT, "--bsn-file", str(bsn_file(tmp_path, bsns)), "--json")

    seconds = time.monotonic() - started
    summary = json.loads(result.stdout)
    valid = len(bsns) - 1
    assert summary["imported"] == summary["residents_added"] == valid
    assert summary["skipped_invalid"] == {"count": 1, "lines": [invalid_line]}
    assert summary["failed"] == {} and summary["stopped"] is None
    assert summary["completed"] is True and summary["processed"] == summary["total"] == len(bsns)
    assert summary["duplicates"] == {"count": 0, "lines": []}
    assert result.stderr == ""  # no progress bar with --json
    assert bsns_in(printed(result), set(bsns)) == set()
    assert counts(kluis) == (valid, valid)
    # Twenty persons per request, each asking exactly the category's fields; the invalid BSN never sent.
    requests = standin.state.recorded("personen")
    assert len(requests) == math.ceil(len(bsns) / 20)
    assert all(r.body["fields"] == list(BRP_PERSOON_FIELDS) for r in requests)
    assert INVALID_BSN not in {b for r in requests for b in r.body["burgerservicenummer"]}
    imported = kluis.audit(tags.RECORD_IMPORTED)
    assert len(imported) == valid and {e["details"]["source"] for e in imported} == {"brp"}
    assert not (kluis.data_dir / "imports" / f"{TENANT}-brp.json").exists()
    if kluis.services.db.is_sqlite:
        assert seconds < 90, seconds
        # Gezag relations came through for every person that has them (308 in the test data).
        with_gezag = 0
        with kluis.services.db.session() as s:
            vault = kluis.services.vault
            for resident in s.exec(select(Resident).where(Resident.tenant_id == kluis.tenant.id)).all():
                content = vault.get_record(s, operator(), resident, "brp.persoon")
                with_gezag += bool(gezag_relations(content.data))
        assert with_gezag == 308


def test_an_interrupted_bulk_run_resumes_without_duplicates(
    kluis: Kluis, standin: StandinServer, all_bsns: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bsns = all_bsns[1100:1160]  # the invalid BSN is on line 11
    path = str(bsn_file(tmp_path, bsns))

    def interrupt() -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        FailAfter(patch, 25, interrupt)  # Ctrl-C in the middle of the second window
        stopped = kluis.cli(*IMPORT, "--bsn-file", path, code=75)

    assert "imported 25 of 60" in stopped.stdout
    assert "skipped 1 invalid BSN(s): line 11" in stopped.stdout
    assert "stopped early (interrupted) at line 27; run the same command with --resume" in stopped.stdout
    cursor_file = kluis.data_dir / "imports" / f"{TENANT}-brp.json"
    state = json.loads(cursor_file.read_text(encoding="utf-8"))
    assert (state["cursor"], state["imported"], state["stopped"]) == (26, 25, "interrupted")
    assert bsns_in(cursor_file.read_text(encoding="utf-8"), set(bsns)) == set()
    assert oct(cursor_file.stat().st_mode & 0o777) == "0o600"

    again = kluis.cli(*IMPORT, "--bsn-file", path, code=1)
    assert "continue it with --resume" in str(again.exception)
    changed = kluis.cli(
        *IMPORT, "--bsn-file", str(bsn_file(tmp_path, bsns[:-1], "other.txt")), "--resume", code=1
    )
    assert "the input differs" in str(changed.exception)

    resumed = kluis.cli(*IMPORT, "--bsn-file", path, "--resume", "--json")

    summary = json.loads(resumed.stdout)
    assert summary["completed"] is True and summary["resumed_from"] == 27  # the line it stopped at
    assert summary["imported"] == 59 and summary["skipped_invalid"] == {"count": 1, "lines": [11]}
    # Every valid person exactly once: one resident and one record version each.
    assert counts(kluis) == (59, 59)
    assert len(kluis.audit(tags.RECORD_IMPORTED)) == 59
    assert not cursor_file.exists()
    nothing = kluis.cli(*IMPORT, "--bsn-file", path, "--resume", code=1)
    assert "no interrupted import" in str(nothing.exception)
    for result in (stopped, resumed):
        assert bsns_in(printed(result), set(bsns)) == set()


def test_a_source_outage_stops_the_run_which_resumes_once_the_source_is_back(
    kluis: Kluis, standin: StandinServer, all_bsns: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bsns = all_bsns[:50]
    path = str(bsn_file(tmp_path, bsns))

    def outage() -> None:
        standin.state.inject("personen", 503, times=1000, retry_after="0")

    with monkeypatch.context() as patch:
        FailAfter(patch, 30, outage)  # the BRP goes down while the second window is stored
        stopped = kluis.cli(*IMPORT, "--bsn-file", path, "--json", code=75)

    summary = json.loads(stopped.stdout)
    assert summary["imported"] == 40 and summary["processed"] == 40
    assert summary["stopped"] == {"reason": "source_unavailable", "at": 41}
    [failed] = kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert (failed["reason"], failed["data_subject_id"]) == ("source_unavailable", None)
    assert failed["details"] == {
        "source": "brp",
        "cause": "http_503",
        "attempts": 2,
        "bulk": True,
        "stopped_at": 40,
    }
    assert counts(kluis) == (40, 40)

    standin.state.clear_faults()
    resumed = kluis.cli(*IMPORT, "--bsn-file", path, "--resume", "--json")

    assert json.loads(resumed.stdout)["imported"] == 50
    assert counts(kluis) == (50, 50)


def test_persons_the_source_cannot_deliver_are_reported_audited_and_the_run_goes_on(
    kluis: Kluis, standin: StandinServer, unknown_bsn: str, tmp_path: Path
) -> None:
    tampered = "999970665"
    standin.state.tamper(tampered, lambda p: p | {"ouders": [{"ouderAanduiding": "3"}]})
    lines = ["# residents to refresh", BSN, unknown_bsn, "", "12345", tampered, BSN, "999970641"]

    result = kluis.cli(*IMPORT, "--bsn-file", str(bsn_file(tmp_path, lines)), code=1)

    text = result.stdout
    assert "imported 2 of 5 (brp.persoon from brp, 2 residents added" in text
    assert "skipped 1 invalid BSN(s): line 5" in text
    assert "ignored 1 repeated BSN(s): line 7" in text
    assert "failed 1 (invalid_answer): line 6" in text
    assert "failed 1 (person_not_found): line 3" in text
    assert bsns_in(printed(result), {BSN, unknown_bsn, tampered, "999970641"}) == set()
    assert "12345" not in printed(result)
    failed = kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert sorted(e["reason"] for e in failed) == ["invalid_answer", "person_not_found"]
    assert all(e["details"]["bulk"] is True for e in failed)
    assert counts(kluis) == (2, 2)  # neither failing person got a vault


def test_all_residents_of_the_municipality_with_a_progress_bar(
    kluis: Kluis, standin: StandinServer, all_bsns: list[str]
) -> None:
    with kluis.services.db.session() as s:
        residents = [kluis.services.vault.add_resident(s, operator(), kluis.tenant, b) for b in all_bsns[:30]]

    result = kluis.cli(*IMPORT, "--all")

    assert result.stdout.startswith("imported 30 of 30 (brp.persoon from brp, 0 residents added")
    assert "30/30" in result.stderr  # the progress bar, on standard error
    assert bsns_in(printed(result), set(all_bsns)) == set()
    assert counts(kluis) == (30, 30)
    subjects = {e["data_subject_id"] for e in kluis.audit(tags.RECORD_IMPORTED)}
    assert subjects == {r.audit_pseudonym for r in residents}


def test_failures_under_all_are_named_by_resident_id(
    kluis: Kluis, standin: StandinServer, unknown_bsn: str
) -> None:
    with kluis.services.db.session() as s:
        known = kluis.services.vault.add_resident(s, operator(), kluis.tenant, BSN)
        stranger = kluis.services.vault.add_resident(s, operator(), kluis.tenant, unknown_bsn)

    summary = json.loads(kluis.cli(*IMPORT, "--all", "--json", code=1).stdout)

    assert summary["imported"] == 1
    assert summary["failed"] == {"person_not_found": {"count": 1, "residents": [stranger.id]}}
    [failed] = kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert failed["data_subject_id"] == stranger.audit_pseudonym
    assert [e["data_subject_id"] for e in kluis.audit(tags.RECORD_IMPORTED)] == [known.audit_pseudonym]

"""Bulk import: all 1,176 persons of the test data through the stand-in, skipping, failing, resuming."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from connectors import (
    BRP_PERSOON,
    BrpPersonenConnector,
    BulkProgress,
    ConnectorError,
    FetchedRecord,
    InvalidAnswerError,
    JsonSourceConnector,
    PersonNotFoundError,
    SkippedBsn,
    SourceClient,
    SourceForbiddenError,
    SourceUnavailableError,
    gezag_relations,
    import_all,
)
from connectors.auth import ApiKeyAuth
from tests.connectors.test_json_source import INKOMEN_MAPPING, INKOMEN_SCHEMA
from tests.support.brp_standin import StandinServer

MakeBrp = Callable[..., BrpPersonenConnector]
INVALID_BSN = "999999245"


def test_bulk_import_of_all_persons_skips_the_invalid_bsn(
    make_brp: MakeBrp, standin: StandinServer, raw_personen: list[dict[str, Any]]
) -> None:
    bsns = [p["burgerservicenummer"] for p in raw_personen]
    records: dict[str, FetchedRecord] = {}
    failures: list[tuple[str, ConnectorError]] = []
    checkpoints: list[int] = []
    progress: list[BulkProgress] = []

    result = import_all(
        make_brp(),
        bsns,
        category=BRP_PERSOON,
        on_record=records.__setitem__,
        on_failure=lambda bsn, error: failures.append((bsn, error)),
        on_progress=progress.append,
        on_checkpoint=checkpoints.append,
    )

    assert len(bsns) == 1176
    assert result.imported == len(records) == len(bsns) - 1
    assert result.skipped == (SkippedBsn(bsns.index(INVALID_BSN), INVALID_BSN),)
    assert INVALID_BSN not in records
    assert INVALID_BSN not in repr(result)
    assert (result.failed, failures, result.aborted, result.cursor) == ((), [], None, 1176)
    assert checkpoints == sorted(checkpoints) and checkpoints[-1] == 1176
    assert progress[-1] == BulkProgress(processed=1176, total=1176, imported=1175, skipped=1, failed=0)
    # Twenty persons per request, as the specification allows.
    assert len(standin.state.recorded("personen")) == math.ceil(len(bsns) / 20)
    # Every person's gezag came through: 308 persons in the data carry gezag relations.
    with_gezag = {bsn for bsn, r in records.items() if gezag_relations(r.data)}
    assert with_gezag == {p["burgerservicenummer"] for p in raw_personen if p["gezag"]}
    assert len(with_gezag) == 308


def test_a_bulk_run_stopped_by_an_outage_resumes_from_its_cursor(
    make_brp: MakeBrp, standin: StandinServer, raw_personen: list[dict[str, Any]]
) -> None:
    bsns = [p["burgerservicenummer"] for p in raw_personen[:300]]
    connector = make_brp()
    seen: list[str] = []

    def checkpoint(cursor: int) -> None:
        if cursor == 100:
            standin.state.inject("personen", 503, times=1000)  # the BRP goes down

    first = import_all(
        connector,
        bsns,
        category=BRP_PERSOON,
        on_record=lambda b, _r: seen.append(b),
        on_checkpoint=checkpoint,
    )

    assert isinstance(first.aborted, SourceUnavailableError)
    assert not first.completed
    assert (first.cursor, first.imported) == (100, 100)

    standin.state.clear_faults()
    second = import_all(
        connector, bsns, category=BRP_PERSOON, on_record=lambda b, _r: seen.append(b), start_at=first.cursor
    )

    assert second.completed
    assert second.cursor == 300
    valid = [b for b in bsns if b != INVALID_BSN]
    assert seen == valid  # each person exactly once, in order


def test_persons_the_source_cannot_deliver_are_reported_and_the_run_goes_on(
    make_brp: MakeBrp, standin: StandinServer, unknown_bsn: str
) -> None:
    standin.state.tamper("999970665", lambda p: p | {"ouders": [{"ouderAanduiding": "3"}]})
    failures: list[tuple[str, type[ConnectorError]]] = []

    result = import_all(
        make_brp(),
        ["999970616", unknown_bsn, "999970665", "999970641"],
        category=BRP_PERSOON,
        on_record=lambda _b, _r: None,
        on_failure=lambda bsn, error: failures.append((bsn, type(error))),
    )

    assert result.imported == 2
    assert [(f.position, type(f.error)) for f in result.failed] == [
        (1, PersonNotFoundError),
        (2, InvalidAnswerError),
    ]
    assert failures == [(unknown_bsn, PersonNotFoundError), ("999970665", InvalidAnswerError)]
    assert result.completed


def test_refused_credentials_stop_the_run_at_once(make_brp: MakeBrp, standin: StandinServer) -> None:
    result = import_all(
        make_brp(auth=ApiKeyAuth("revoked")),
        ["999970616", "999970665"] * 30,
        category=BRP_PERSOON,
        on_record=lambda _b, _r: None,
    )

    assert isinstance(result.aborted, SourceForbiddenError)
    assert (result.imported, result.cursor) == (0, 0)
    assert len(standin.state.recorded("personen")) == 1


def test_a_connector_without_batches_is_asked_person_by_person(
    standin: StandinServer, make_client: Callable[..., SourceClient]
) -> None:
    connector = JsonSourceConnector(
        name="inkomen",
        category="inkomen",
        url_template=standin.base_url + "/bronnen/inkomen/{bsn}",
        client=make_client(name="inkomen"),
        schema=INKOMEN_SCHEMA,
        mapping=INKOMEN_MAPPING,
    )
    checkpoints: list[int] = []
    records: list[str] = []

    result = import_all(
        connector,
        ["999970616", INVALID_BSN, "999970665", "999970641"],
        category="inkomen",
        on_record=lambda bsn, _r: records.append(bsn),
        on_checkpoint=checkpoints.append,
    )

    assert records == ["999970616", "999970665", "999970641"]
    assert checkpoints == [1, 2, 3, 4]
    assert [s.position for s in result.skipped] == [1]
    assert len(standin.state.recorded("inkomen")) == 3

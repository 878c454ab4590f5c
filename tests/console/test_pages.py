"""The console over real HTTP: login (test login and OIDC with the role claim), the pages, search by
BSN without the BSN ever coming back, tenant isolation, the audit entries of the officer's acts."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from audit import tags
from kluis.app import sign_pending
from kluis.console.schemas import ROLE
from kluis.wiring import utcnow
from tests.console.conftest import (
    CHILD_A,
    ENTRY_LINK,
    RESIDENT_A,
    RESIDENT_B,
    ConsoleServer,
    csrf,
    officer_login,
)
from tests.portal.conftest import csrf_of, logged

PAGES = ["/fg/overzicht", "/fg/zoeken", "/fg/bevindingen", "/fg/controle", "/fg/rapportage", "/fg/regels"]


def test_every_page_needs_an_officer_login(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    client = console_server.client()
    clients.append(client)
    for path in [*PAGES, "/fg/logregels/1", "/fg/bevindingen/x"]:
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/fg/inloggen", path


def test_a_resident_session_is_no_officer_session(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    """The portal's resident login does not open the console (same session mechanism, other role)."""
    client = console_server.client()
    clients.append(client)
    page = client.get("/portaal/inloggen/test")
    client.post("/portaal/inloggen/test", data={"bsn": RESIDENT_A, "csrf_token": csrf_of(page.text)})
    assert client.get("/portaal/gegevens").status_code == 200
    assert client.get("/fg/overzicht").headers["location"] == "/fg/inloggen"


def test_an_officer_session_is_no_resident_session(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    client = officer_login(console_server, clients, console_server.a)
    assert client.get("/fg/overzicht").status_code == 200
    assert client.get("/portaal/gegevens").headers["location"] == "/portaal/inloggen"


def test_every_page_renders_in_dutch_and_english(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    client = officer_login(console_server, clients, console_server.a)
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert '<html lang="nl"' in page.text
    token = csrf(client, "/fg/overzicht")
    switched = client.post("/fg/taal", data={"lang": "en", "next": "/fg/regels", "csrf_token": token})
    assert switched.headers["location"] == "/fg/regels"
    english = client.get("/fg/overzicht")
    assert '<html lang="en"' in english.text and "Reads per day per department" in english.text
    evil = client.post("/fg/taal", data={"lang": "nl", "next": "https://evil.example/", "csrf_token": token})
    assert evil.headers["location"] == "/fg/overzicht"


def test_overview_shows_charts_with_a_table_the_log_and_its_checkpoint(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    client = officer_login(console_server, clients, console_server.a)
    page = client.get("/fg/overzicht").text
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="kluis-chart" role="img"') == 3
    assert '<title id="chart-departments-title">' in page and '<desc id="chart-departments-desc">' in page
    assert "Werk en inkomen" in page and "Nachtdienst" in page  # department names, in legend and table
    assert "Toon als tabel" in page
    assert "handtekening geldig" in page  # the checkpoint's signature was checked
    # Drawn on the server: no script, nothing loaded from elsewhere.
    assert "<script" not in page and "https://" not in page and 'src="http' not in page


def test_dev_login_refuses_an_unknown_municipality_and_a_bad_name(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    client = console_server.client()
    clients.append(client)
    token = csrf(client, "/fg/inloggen/test")
    for data in ({"tenant": "gemeente-x", "name": "fg"}, {"tenant": "gemeente-a", "name": "<script>"}):
        answer = client.post("/fg/inloggen/test", data={**data, "csrf_token": token})
        assert answer.status_code == 400
    assert client.post("/fg/inloggen/test", data={"tenant": "gemeente-a", "name": "fg"}).status_code == 403


# -- OpenID Connect with the role claim ----------------------------------------------------------------
def _oidc_login(
    server: ConsoleServer, clients: list[httpx.Client], sub: str
) -> tuple[httpx.Client, httpx.Response]:
    browser = server.client()
    clients.append(browser)
    start = browser.get("/fg/inloggen/oidc")
    assert start.status_code == 302
    authorize = start.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"]
    assert query["redirect_uri"] == [server.url("/fg/inloggen/terug")]
    with httpx.Client(timeout=10) as at_provider:
        back = at_provider.post(authorize, data={"sub": sub})
    assert back.status_code == 302
    return browser, browser.get(back.headers["location"].removeprefix(server.base_url))


@pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")
def test_oidc_login_with_the_privacy_officer_role(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    browser, done = _oidc_login(console_server, clients, "fg-anna")
    assert done.status_code == 303 and done.headers["location"] == "/fg/overzicht"
    page = browser.get("/fg/overzicht")
    assert page.status_code == 200 and "Gemeente A" in page.text
    logins = [
        e
        for e in console_server.entries(console_server.a, tags.OFFICER_LOGGED_IN)
        if e.actor.id == "oidc:fg-anna"
    ]
    assert logins and logins[0].actor.type == ROLE and logins[0].details == {"method": "oidc"}


@pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")
@pytest.mark.parametrize("sub", ["clerk-bob", "fg-elsewhere"])
def test_oidc_login_without_the_role_or_a_known_municipality_is_refused(
    console_server: ConsoleServer, clients: list[httpx.Client], sub: str
) -> None:
    with logged("kluis.console") as messages:
        browser, done = _oidc_login(console_server, clients, sub)
    assert done.status_code == 400
    assert browser.get("/fg/overzicht").headers["location"] == "/fg/inloggen"
    reason = "role_missing" if sub == "clerk-bob" else "unknown_municipality"
    assert messages == [f"console login refused: {reason}"]  # a code, not the account
    for town in (console_server.a, console_server.b):  # a refused login is no officer's login
        assert all(e.actor.id != "oidc:" + sub for e in console_server.entries(town, tags.OFFICER_LOGGED_IN))


def test_a_test_login_is_in_the_municipalitys_trail_before_the_console_opens(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    before = console_server.entries(console_server.b, tags.OFFICER_LOGGED_IN)
    client = officer_login(console_server, clients, console_server.b, name="fg-trail")
    after = console_server.entries(console_server.b, tags.OFFICER_LOGGED_IN)
    [new] = [e for e in after if e not in before]
    assert (new.actor.type, new.actor.id, new.details) == (ROLE, "dev:fg-trail", {"method": "test"})
    assert new.data_subject_id is None  # no resident's history shows it
    assert all(e.actor.id != "dev:fg-trail" for e in console_server.entries(console_server.a))
    assert client.get("/fg/overzicht").status_code == 200


def test_role_claims_as_list_or_string() -> None:
    from kluis.console.login import has_role

    assert has_role({"roles": [ROLE, "x"]}, "roles")
    assert has_role({"groups": f"x {ROLE}"}, "groups")
    assert not has_role({"roles": ["privacy_officer_assistant"]}, "roles")
    assert not has_role({"roles": "privacy_officer_assistant"}, "roles")
    assert not has_role({}, "roles")


# -- search -------------------------------------------------------------------------------------------
def _search(client: httpx.Client, **fields: str) -> httpx.Response:
    token = csrf(client, "/fg/zoeken")
    answer = client.post("/fg/zoeken", data={**fields, "csrf_token": token})
    assert answer.status_code == 303, answer.text[:300]
    return answer


def test_search_by_bsn_finds_the_residents_entries_and_never_shows_the_bsn(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    server = console_server
    client = officer_login(server, clients, server.a)
    answer = _search(client, bsn=CHILD_A)
    location = answer.headers["location"]
    assert CHILD_A not in location and location.startswith("/fg/zoeken?zoekopdracht=")
    page = client.get(location)
    assert page.status_code == 200
    assert CHILD_A not in page.text and server.a.pseudonyms[CHILD_A] not in page.text
    assert "jeugdzorg.dossier" in page.text and "bijstand" not in page.text.split("Resultaten", 1)[1]
    # The search itself is in the log, about that resident, with the filters used but no BSN.
    searched = [e for e in server.entries(server.a, tags.LOG_SEARCHED) if e.actor.id == "dev:test-fg"]
    assert searched and searched[0].data_subject_id == server.a.pseudonyms[CHILD_A]
    assert searched[0].details["by_subject"] is True and CHILD_A not in json.dumps(searched[0].details)


def test_a_bsn_of_another_municipality_finds_nothing(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    client = officer_login(console_server, clients, console_server.a)
    page = client.get(_search(client, bsn=RESIDENT_B).headers["location"])
    assert "Niets gevonden" in page.text and not ENTRY_LINK.search(page.text)


def test_an_invalid_bsn_is_refused_without_echoing_it(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    client = officer_login(console_server, clients, console_server.a)
    token = csrf(client, "/fg/zoeken")
    answer = client.post("/fg/zoeken", data={"bsn": "123456789", "csrf_token": token})
    assert answer.status_code == 400 and "123456789" not in answer.text and "11-proef" in answer.text


def test_search_refuses_codes_the_municipality_does_not_know(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    """A BSN typed into another field would otherwise end up in the clear in the search's audit entry."""
    server = console_server
    client = officer_login(server, clients, server.a, name="crafty")
    token = csrf(client, "/fg/zoeken")
    for field in ("afdeling", "client", "doel", "categorie"):
        answer = client.post("/fg/zoeken", data={field: RESIDENT_A, "csrf_token": token})
        assert answer.status_code == 400 and RESIDENT_A not in answer.text, field
    foreign = client.post("/fg/zoeken", data={"client": server.b.clients["inkomen"], "csrf_token": token})
    assert foreign.status_code == 400
    searched = [e for e in server.entries(server.a, tags.LOG_SEARCHED) if e.actor.id == "dev:crafty"]
    assert searched == []


def test_search_filters_and_pagination(console_server: ConsoleServer, clients: list[httpx.Client]) -> None:
    server = console_server
    client = officer_login(server, clients, server.a)
    page = client.get(_search(client, besluit="deny").headers["location"])
    assert "geweigerd" in page.text and len(set(ENTRY_LINK.findall(page.text))) == 1
    page = client.get(_search(client, categorie="inkomen", afdeling="inkomen").headers["location"])
    seqs = ENTRY_LINK.findall(page.text)
    # 36 ordinary reads, 2 around the grant's expiry, the request and its approval
    assert len(seqs) == 40 and "jeugdzorg.dossier" not in page.text.split("Resultaten", 1)[1]
    # A page size of 50: the whole log of A (more than 50 entries) needs a second page.
    first = client.get(_search(client).headers["location"])
    assert 'rel="next"' in first.text
    next_link = first.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = client.get(next_link)
    assert second.status_code == 200
    assert not set(ENTRY_LINK.findall(first.text)) & set(ENTRY_LINK.findall(second.text))


def test_an_unknown_or_foreign_search_id_is_not_found(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    server = console_server
    officer_a = officer_login(server, clients, server.a)
    location = _search(officer_a, bsn=RESIDENT_A).headers["location"]
    officer_b = officer_login(server, clients, server.b)
    assert officer_b.get(location).status_code == 404  # the search lives in A's session only
    assert officer_a.get("/fg/zoeken?zoekopdracht=nope").status_code == 404


# -- one entry ----------------------------------------------------------------------------------------
def test_entry_shows_trace_grant_purpose_and_a_checked_inclusion_proof(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    server = console_server
    client = officer_login(server, clients, server.a)
    from audit import services as audit_log
    from audit.schemas import AuditQuery

    with server.services.db.read_session() as session:
        query = AuditQuery(name=tags.RECORD_READ, client_id=server.a.clients["inkomen"], newest_first=False)
        seq = audit_log.search(session, server.a.tenant.id, query, limit=1).entries[0].seq  # one of a pair
    page = client.get(f"/fg/logregels/{seq}").text
    assert (
        "Alles in dezelfde trace" in page
        and len(set(ENTRY_LINK.findall(page.split("Alles in dezelfde trace")[1]))) >= 2
    )
    assert f"grant-{server.a.marker}" in page and "Aanvraag bijstand" in page
    assert "Geldig tot" in page and '">regel ' in page  # the approval, found in the trail
    assert "deel uit van het ondertekende logboek" in page  # the inclusion proof checked out
    opened = [e for e in server.entries(server.a, tags.LOG_SEARCHED) if e.details.get("entry") == int(seq)]
    assert opened, "opening an entry is audited"


def test_an_entry_of_the_same_number_in_another_municipality_stays_there(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    """Sequence numbers are per municipality: A's entry 20 is A's, whatever B's entry 20 says."""
    server = console_server
    client = officer_login(server, clients, server.a)
    page = client.get("/fg/logregels/20").text
    assert server.b.clients["inkomen"] not in page and "Gemeente B" not in page
    assert client.get("/fg/logregels/999999").status_code == 404


# -- findings and review ------------------------------------------------------------------------------
def _analyse(client: httpx.Client) -> None:
    token = csrf(client, "/fg/bevindingen")
    answer = client.post("/fg/bevindingen/analyseren", data={"csrf_token": token})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/fg/bevindingen?nieuw=")


def _finding_ids(html: str) -> list[str]:
    import re

    return re.findall(r'href="/fg/bevindingen/([A-Za-z0-9_-]{8,})"', html)


def test_analysis_finds_the_patterns_and_a_review_is_audited(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    server = console_server
    client = officer_login(server, clients, server.a, name="reviewer")
    _analyse(client)
    page = client.get("/fg/bevindingen?status=all").text
    for title in (
        "Lezen buiten kantooruren",
        "Lezen vlak bij het einde van een toestemming",
        "Bijzondere categorie zonder verzoek",
    ):
        assert title in page, title
    assert len(_finding_ids(page)) >= 3
    ids = _finding_ids(client.get("/fg/bevindingen").text)  # the open ones (other tests review some)
    assert ids
    finding = client.get(f"/fg/bevindingen/{ids[0]}")
    assert finding.status_code == 200 and ENTRY_LINK.search(finding.text)
    # Its entries were shown as a search's results, and recorded as one.
    opened = [e for e in server.entries(server.a, tags.LOG_SEARCHED) if e.details.get("finding") == ids[0]]
    assert opened and isinstance(opened[0].details["entries"], int)
    token = csrf_of(finding.text)
    empty = client.post(f"/fg/bevindingen/{ids[0]}/beoordelen", data={"note": "  ", "csrf_token": token})
    assert empty.headers["location"].endswith("?fout=1")
    done = client.post(
        f"/fg/bevindingen/{ids[0]}/beoordelen",
        data={"note": "Nachtdienst had een storing; besproken met de afdeling.", "csrf_token": token},
    )
    assert done.status_code == 303
    reviewed = client.get(f"/fg/bevindingen/{ids[0]}").text
    assert "besproken met de afdeling" in reviewed and "beoordeeld" in reviewed
    assert ids[0] not in _finding_ids(client.get("/fg/bevindingen").text)
    assert ids[0] in _finding_ids(client.get("/fg/bevindingen?status=reviewed").text)
    entries = [
        e for e in server.entries(server.a, tags.FINDING_REVIEWED) if e.details.get("finding") == ids[0]
    ]
    assert len(entries) == 1 and entries[0].actor.id == "dev:reviewer"
    assert "besproken" not in json.dumps(entries[0].details)  # the note stays out of the log


def test_officer_of_a_sees_nothing_of_b(console_server: ConsoleServer, clients: list[httpx.Client]) -> None:
    server = console_server
    officer_b = officer_login(server, clients, server.b)
    _analyse(officer_b)
    b_ids = _finding_ids(officer_b.get("/fg/bevindingen?status=all").text)
    assert b_ids
    officer_a = officer_login(server, clients, server.a)
    _analyse(officer_a)
    a_pages = [officer_a.get(p).text for p in ("/fg/overzicht", "/fg/bevindingen?status=all", "/fg/controle")]
    a_pages.append(officer_a.get(_search(officer_a).headers["location"]).text)
    assert "App Werk en inkomen A" in a_pages[-1]  # what A does see, named the same way
    for page in a_pages:
        assert server.b.clients["inkomen"] not in page and server.b.clients["night"] not in page
        assert "App Werk en inkomen B" not in page and "Gemeente B" not in page
        assert not set(b_ids) & set(_finding_ids(page))
    for finding in b_ids:
        assert officer_a.get(f"/fg/bevindingen/{finding}").status_code == 404
        token = csrf(officer_a, "/fg/bevindingen")
        answer = officer_a.post(
            f"/fg/bevindingen/{finding}/beoordelen", data={"note": "x", "csrf_token": token}
        )
        assert answer.status_code == 404
    # Over the JSON API too.
    token_a = server.officer_token(server.a)
    with server.client(headers={"authorization": f"Bearer {token_a}"}) as api:
        listed = api.get("/api/v1/audit/findings", params={"limit": 200}).json()["items"]
        assert listed and not {f["id"] for f in listed} & set(b_ids)
        assert all(f["client_id"] not in server.b.clients.values() for f in listed)
        for finding in b_ids:
            assert api.get(f"/api/v1/audit/findings/{finding}").status_code == 404
            review = api.post(f"/api/v1/audit/findings/{finding}/review", json={"note": "mine now"})
            assert review.status_code == 404
            assert review.headers["content-type"].startswith("application/problem+json")
    with server.client(headers={"authorization": f"Bearer {server.officer_token(server.b)}"}) as api_b:
        still = [
            f
            for f in api_b.get("/api/v1/audit/findings", params={"limit": 200}).json()["items"]
            if f["id"] in b_ids
        ]
        assert still and all(f["review_note"] != "mine now" for f in still)


def test_findings_api_lists_gets_and_reviews(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    server = console_server
    _analyse(officer_login(server, clients, server.a))
    token = server.officer_token(server.a, subject="api-anna")
    with server.client(headers={"authorization": f"Bearer {token}"}) as api:
        assert (
            api.get("/api/v1/audit/findings", headers={"authorization": "Bearer nonsense"}).status_code == 401
        )
        page = api.get("/api/v1/audit/findings", params={"limit": 1}).json()
        assert len(page["items"]) == 1 and page["next_cursor"]
        more = api.get("/api/v1/audit/findings", params={"limit": 1, "cursor": page["next_cursor"]}).json()
        assert more["items"][0]["id"] != page["items"][0]["id"]
        assert api.get("/api/v1/audit/findings", params={"cursor": "bm9wZQ"}).status_code == 400
        finding = api.get("/api/v1/audit/findings", params={"status": "open", "limit": 1}).json()["items"][0]
        assert finding["reason"] and finding["entries"] and finding["status"] == "open"
        assert api.get(f"/api/v1/audit/findings/{finding['id']}").json() == finding
        assert (
            api.post(f"/api/v1/audit/findings/{finding['id']}/review", json={"note": ""}).status_code == 400
        )
        done = api.post(f"/api/v1/audit/findings/{finding['id']}/review", json={"note": "checked by API"})
        assert done.status_code == 200
        assert done.json()["status"] == "reviewed" and done.json()["reviewed_by"] == "api-anna"
    reviewed = [
        e
        for e in server.entries(server.a, tags.FINDING_REVIEWED)
        if e.details.get("finding") == finding["id"]
    ]
    assert reviewed and reviewed[0].actor.type == "privacy_officer"


# -- verification -------------------------------------------------------------------------------------
def test_the_verify_button_verifies_keeps_the_result_and_is_audited(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    server = console_server
    client = officer_login(server, clients, server.b, name="verifier")
    token = csrf(client, "/fg/controle")
    answer = client.post("/fg/controle", data={"csrf_token": token})
    assert answer.status_code == 303
    page = client.get("/fg/controle").text
    assert "intact" in page and "verifier" in page
    verified = [e for e in server.entries(server.b, tags.LOG_VERIFIED) if e.actor.id == "dev:verifier"]
    assert verified and verified[0].details["ok"] is True
    assert isinstance(verified[0].details["checkpoints"], int) and verified[0].details["checkpoints"] >= 1
    assert verified[0].details["since"] == 0 and "het hele logboek" in page  # the button walks it all
    # A scheduled run from a signed checkpoint says where it started.
    from kluis.console import jobs
    from kluis.console.services import ConsoleService, system_context

    services = server.services
    sign_pending(services)
    console = ConsoleService(services.vault, services.purposes, services.signing)
    ctx = system_context(utcnow())
    tenant = server.b.tenant.id
    run = jobs.verify(services, console, ctx, tenant, trigger="schedule", clock=utcnow, since=10**9)
    assert run.ok and not run.full
    page = client.get("/fg/controle").text
    assert f"vanaf logregel {run.since}" in page and "na het ondertekende controlepunt" in page
    assert f"vanaf logregel {run.since}" in client.get("/fg/overzicht").text  # the overview says so too


# -- reports ------------------------------------------------------------------------------------------
def _download(client: httpx.Client, output: str, **period: str) -> httpx.Response:
    token = csrf(client, "/fg/rapportage")
    answer = client.post("/fg/rapportage", data={"uitvoer": output, "csrf_token": token, **period})
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["content-disposition"].startswith("attachment;")
    return answer


def test_exports_hold_only_the_municipalitys_entries_and_are_audited(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    server = console_server
    client = officer_login(server, clients, server.a, name="exporter")
    rows = list(csv.DictReader(io.StringIO(_download(client, "entries-csv").text)))
    assert rows and {r["client_id"] for r in rows if r["client_id"]} <= set(server.a.clients.values())
    assert any(r["name"] == tags.RECORD_READ for r in rows)
    lines = _download(client, "entries-json").text.splitlines()
    assert len(lines) >= len(rows) and all(json.loads(line)["tenant"] == server.a.tenant.id for line in lines)
    _analyse(client)
    findings = json.loads(_download(client, "findings-json").text)
    assert findings and all(f["client_id"] in (*server.a.clients.values(), None) for f in findings)
    table = list(csv.DictReader(io.StringIO(_download(client, "findings-csv").text)))
    assert {r["id"] for r in table} == {f["id"] for f in findings}
    exported = [e for e in server.entries(server.a, tags.LOG_EXPORTED) if e.actor.id == "dev:exporter"]
    assert {(e.details["what"], e.details["format"]) for e in exported} >= {
        ("entries", "csv"),
        ("entries", "jsonl"),
        ("findings", "json"),
        ("findings", "csv"),
    }


def test_the_pdf_report_counts_processing_per_purpose(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    from pypdf import PdfReader

    server = console_server
    client = officer_login(server, clients, server.a, name="reporter")
    answer = _download(client, "pdf")
    assert answer.headers["content-type"] == "application/pdf" and answer.content.startswith(b"%PDF")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(answer.content)).pages)
    assert "Overzicht verwerkingen (AVG art. 30)" in text and "Gemeente A" in text
    assert "bijstand" in text and "Aanvraag bijstand" in text and "jeugdhulp" in text
    assert "Gemeente B" not in text
    assert any(e.details.get("format") == "pdf" for e in server.entries(server.a, tags.LOG_EXPORTED))


# -- rules --------------------------------------------------------------------------------------------
def test_rules_are_saved_per_municipality_and_bad_values_refused(
    console_server: ConsoleServer, clients: list[httpx.Client]
) -> None:
    server = console_server
    client = officer_login(server, clients, server.b, name="ruler")
    page = client.get("/fg/regels").text
    assert 'name="off_hours.start" value="07:00"' in page
    form = {
        "csrf_token": csrf_of(page),
        "timezone": "Europe/Amsterdam",
        "off_hours.enabled": "on",
        "off_hours.start": "08:00",
        "off_hours.end": "18:00",
        "off_hours.workdays": ["0", "1", "2", "3"],
        "volume_spike.enabled": "on",
        "volume_spike.factor": "4",
        "volume_spike.min_residents": "10",
        "volume_spike.baseline_days": "28",
        "repeated_denials.threshold": "3",
        "repeated_denials.window_minutes": "30",
        "grant_end.enabled": "on",
        "grant_end.margin_minutes": "20",
        "special_category.enabled": "on",
        "special_category.categories": "jeugdzorg.dossier, schulden",
        "special_category.lookback_days": "60",
        "legal_basis_volume.enabled": "on",
        "legal_basis_volume.max_reads_per_day": "50",
        "legal_basis_volume.bases": "public_task",
    }
    saved = client.post("/fg/regels", data=form)
    assert saved.status_code == 303
    page = client.get("/fg/regels?opgeslagen=1").text
    assert 'name="off_hours.start" value="08:00"' in page and "jeugdzorg.dossier, schulden" in page
    assert 'id="repeated_denials.enabled" name="repeated_denials.enabled"' in page
    assert 'name="repeated_denials.enabled" checked' not in page
    bad = client.post("/fg/regels", data={**form, "off_hours.start": "20:00"})
    assert bad.status_code == 400 and "off_hours" in bad.text
    # A's rules did not change.
    officer_a = officer_login(server, clients, server.a)
    assert 'name="off_hours.start" value="07:00"' in officer_a.get("/fg/regels").text
    changed = [e for e in server.entries(server.b, "audit:rules:configured") if e.actor.id == "dev:ruler"]
    assert len(changed) == 1


def test_forms_need_the_csrf_token(console_server: ConsoleServer, clients: list[httpx.Client]) -> None:
    client = officer_login(console_server, clients, console_server.a)
    for path in ("/fg/zoeken", "/fg/controle", "/fg/bevindingen/analyseren", "/fg/regels", "/fg/uitloggen"):
        assert client.post(path, data={"csrf_token": "wrong"}).status_code == 403, path


def test_logout_ends_the_session(console_server: ConsoleServer, clients: list[httpx.Client]) -> None:
    client = officer_login(console_server, clients, console_server.a)
    token = csrf(client, "/fg/overzicht")
    assert (
        client.post("/fg/uitloggen", data={"csrf_token": token}).headers["location"]
        == "/fg/inloggen?uitgelogd=1"
    )
    assert client.get("/fg/overzicht").headers["location"] == "/fg/inloggen"

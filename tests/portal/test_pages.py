"""The portal over real HTTP: login, data pages, languages, sessions, CSRF, BOLA, download, erasure."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from sqlalchemy import text

from audit import leaf
from tests.portal.conftest import (
    ADULT,
    CHILD,
    ERASER,
    OTHER,
    LiveServer,
    csrf_of,
    logged,
    login,
    logins_of,
)


def test_overview_shows_categories_sources_and_dates(server: LiveServer, clients: list[httpx.Client]) -> None:
    client = login(server, clients, ADULT)
    page = client.get("/portaal/gegevens")
    assert page.status_code == 200
    assert '<html lang="nl"' in page.text
    assert "Inkomen" in page.text and "Laatst bijgewerkt" in page.text and "Voorbeeldgegevens" in page.text
    assert ADULT not in page.text  # the BSN is never shown on ordinary pages


def test_category_page_shows_the_data(server: LiveServer, clients: list[httpx.Client]) -> None:
    client = login(server, clients, ADULT)
    page = client.get("/portaal/gegevens/inkomen")
    assert page.status_code == 200
    assert "Bakkerij De Korrel" in page.text and "2150.0" in page.text


def test_english_by_accept_language_and_by_the_switch(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    anonymous = server.client(headers={"accept-language": "en-GB,en;q=0.9,nl;q=0.5"})
    clients.append(anonymous)
    assert '<html lang="en"' in anonymous.get("/portaal/inloggen").text
    client = login(server, clients, ADULT)
    page = client.get("/portaal/gegevens")
    switched = client.post(
        "/portaal/taal", data={"lang": "en", "next": "/portaal/gegevens", "csrf_token": csrf_of(page.text)}
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/portaal/gegevens"
    english = client.get("/portaal/gegevens")
    assert '<html lang="en"' in english.text and "Last updated" in english.text


def test_language_switch_never_redirects_off_site(server: LiveServer, clients: list[httpx.Client]) -> None:
    client = login(server, clients, ADULT)
    token = csrf_of(client.get("/portaal/gegevens").text)
    answer = client.post(
        "/portaal/taal", data={"lang": "nl", "next": "https://evil.example/", "csrf_token": token}
    )
    assert answer.headers["location"] == "/portaal/gegevens"


def test_session_cookie_is_httponly_samesite_and_holds_only_an_id(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    client = server.client()
    clients.append(client)
    page = client.get("/portaal/inloggen/test")
    first = page.headers["set-cookie"]
    assert "HttpOnly" in first and "SameSite=Lax" in first and "Path=/" in first
    answer = client.post("/portaal/inloggen/test", data={"bsn": ADULT, "csrf_token": csrf_of(page.text)})
    second = answer.headers["set-cookie"]
    # Logging in replaces the session id (no session fixation).
    assert second.split(";")[0] != first.split(";")[0]
    assert ADULT not in second


def test_a_login_is_in_the_residents_own_trail_before_the_session_is_bound(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    before = logins_of(server, OTHER)
    client = login(server, clients, OTHER)
    [new] = [e for e in logins_of(server, OTHER) if e not in before]
    # The resident themself, by pseudonym only: the BSN is nowhere in the entry.
    assert (new.actor.type, new.actor.id, new.data_subject_id) == (
        "resident",
        new.data_subject_id,
        new.data_subject_id,
    )
    assert new.details == {"method": "test"} and new.decision is None and OTHER not in repr(new)
    history = client.get("/portaal/inzage").text
    assert "U logde in op dit portaal op" in history
    # A refused login (unknown BSN) binds nothing and is a log line with a reason code only.
    anonymous = server.client()
    clients.append(anonymous)
    page = anonymous.get("/portaal/inloggen/test")
    with logged("kluis.web") as messages:
        refused = anonymous.post(
            "/portaal/inloggen/test", data={"bsn": "123456782", "csrf_token": csrf_of(page.text)}
        )
    assert refused.status_code == 400 and anonymous.get("/portaal/gegevens").status_code == 303
    assert messages == ["portal login refused: unknown_resident"]


def test_no_login_without_its_audit_entry(
    server: LiveServer, clients: list[httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kluis.web.errors import LoginFailedError

    def unavailable(*_args: object, **_kwargs: object) -> None:
        # A refusal the portal answers itself (its page passes the session middleware, which would
        # store a session bound before this point), raised where the entry would be written.
        raise LoginFailedError("audit_unavailable")

    monkeypatch.setattr(server.services.vault, "audit", unavailable)
    before = logins_of(server, OTHER)
    visitor = server.client()
    clients.append(visitor)
    page = visitor.get("/portaal/inloggen/test")
    answer = visitor.post("/portaal/inloggen/test", data={"bsn": OTHER, "csrf_token": csrf_of(page.text)})
    assert answer.status_code == 400
    assert visitor.get("/portaal/gegevens").status_code == 303  # not logged in
    assert logins_of(server, OTHER) == before


def test_pages_need_a_login(server: LiveServer, clients: list[httpx.Client]) -> None:
    client = server.client()
    clients.append(client)
    for path in (
        "/portaal/gegevens",
        "/portaal/gegevens/inkomen",
        "/portaal/toestemmingen",
        "/portaal/downloaden",
    ):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/portaal/inloggen", path


def test_logout_ends_the_session(server: LiveServer, clients: list[httpx.Client]) -> None:
    client = login(server, clients, ADULT)
    stolen = dict(client.cookies)
    token = csrf_of(client.get("/portaal/gegevens").text)
    assert client.post("/portaal/uitloggen", data={"csrf_token": token}).status_code == 303
    replay = server.client(cookies=stolen)
    clients.append(replay)
    assert replay.get("/portaal/gegevens").status_code == 303  # the old id is gone on the server


def test_a_form_post_without_or_with_a_wrong_csrf_token_is_refused(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    client = login(server, clients, ADULT)
    for data in ({}, {"csrf_token": "wrong"}, {"csrf_token": ""}):
        answer = client.post("/portaal/downloaden", data=data)
        assert answer.status_code == 403, data
        assert "application/json" not in answer.headers["content-type"]
    # The test login form is protected too (login CSRF).
    anonymous = server.client()
    clients.append(anonymous)
    assert anonymous.post("/portaal/inloggen/test", data={"bsn": ADULT}).status_code == 403


def test_a_resident_never_sees_another_residents_data_by_changing_urls(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    client = login(server, clients, ADULT)
    # OTHER has a debts record; ADULT has none. The URL names a category, never a person.
    assert client.get("/portaal/gegevens/schulden").status_code == 404
    other = login(server, clients, OTHER)
    assert other.get("/portaal/gegevens/schulden").status_code == 200
    # Acting for someone without a mandate or gezag is refused, whatever id is sent.
    token = csrf_of(client.get("/portaal/gegevens").text)
    with server.services.db.read_session() as session:
        other_id = server.services.vault.resident_by_bsn(session, server.tenant.id, OTHER).id
    for principal in (f"mandate:{other_id}", f"gezag:{other_id}", other_id):
        answer = client.post("/portaal/namens", data={"principal": principal, "csrf_token": token})
        assert answer.status_code == 404
    assert "Bakkerij" in client.get("/portaal/gegevens/inkomen").text
    assert client.get("/portaal/gegevens/schulden").status_code == 404


def test_the_test_login_is_refused_in_production(server: LiveServer) -> None:
    from kluis.settings import Settings

    assert Settings(env="production").dev_login_enabled is False
    assert Settings(env="development").dev_login_enabled is True


def test_download_my_data_is_json_with_records_grants_and_history(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    client = login(server, clients, ADULT)
    page = client.get("/portaal/downloaden")
    answer = client.post("/portaal/downloaden", data={"csrf_token": csrf_of(page.text)})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert "attachment" in answer.headers["content-disposition"]
    document = json.loads(answer.text)
    assert document["format"] == "urn:kluis:export:1"
    assert document["resident"]["bsn"] == ADULT
    assert [r["category"] for r in document["records"]] == ["inkomen"]
    assert document["records"][0]["data"]["werkgever"] == "Bakkerij De Korrel"
    assert isinstance(document["grants"], list) and isinstance(document["access_history"], list)
    assert document["access_history"], "the export lists the resident's own audit trail"
    assert all("seq" in e and "name" in e for e in document["access_history"])
    assert ADULT not in json.dumps(document["access_history"])


def test_erasure_needs_two_confirmations_and_ends_every_session(
    server: LiveServer, clients: list[httpx.Client]
) -> None:

    eraser_id = _resident_id(server, ERASER)
    client = login(server, clients, ERASER)
    second_device = login(server, clients, ERASER)
    page = client.get("/portaal/wissen")
    token = csrf_of(page.text)
    # Mandates: one the resident gave, one they were invited to, one they accepted.
    assert _appoint(client, token, NOBODY).status_code == 303
    inviter = login(server, clients, ADULT)
    assert _appoint(inviter, csrf_of(inviter.get("/portaal/gemachtigden").text), ERASER).status_code == 303
    [other_id] = _own_residents(server, "999990275")  # a principal of this test alone
    principal = login(server, clients, "999990275")
    assert (
        _appoint(principal, csrf_of(principal.get("/portaal/gemachtigden").text), ERASER).status_code == 303
    )
    invitations = client.get("/portaal/gemachtigden").text
    with server.services.db.read_session() as session:
        [from_other] = session.execute(
            text(
                "SELECT id FROM mandate WHERE principal_id = :p "
                "AND accepted_at IS NULL AND revoked_at IS NULL"
            ),
            {"p": other_id},
        ).scalars()
    accept = f"/portaal/gemachtigden/uitnodigingen/{from_other}/aanvaarden"
    assert client.post(accept, data={"csrf_token": csrf_of(invitations)}).status_code == 303
    # Without ticking "I understand" nothing happens.
    assert client.post("/portaal/wissen", data={"csrf_token": token}).status_code == 400
    # The final step without the code of the first step is refused.
    assert (
        client.post("/portaal/wissen/bevestigen", data={"csrf_token": token, "code": "guess"}).status_code
        == 403
    )
    step_two = client.post("/portaal/wissen", data={"csrf_token": token, "understood": "yes"})
    assert step_two.status_code == 200
    code = step_two.text.split('name="code" value="')[1].split('"')[0]
    done = client.post("/portaal/wissen/bevestigen", data={"csrf_token": token, "code": code})
    assert done.status_code == 200 and "gewist" in done.text
    with server.services.db.read_session() as session:
        resident = server.services.vault.resident(session, server.tenant.id, eraser_id)
        assert resident.erased_at is not None and resident.wrapped_data_key is None
        mandates = {
            principal_id: (revoked, pseudonym)
            for principal_id, revoked, pseudonym in session.execute(
                text(
                    "SELECT principal_id, revoked_at, representative_pseudonym FROM mandate "
                    "WHERE principal_id IN (:me, :inviter) OR id = :accepted"
                ),
                {"me": eraser_id, "inviter": _resident_id(server, ADULT), "accepted": from_other},
            )
        }
    assert len(mandates) == 3 and all(pseudonym is None for _, pseudonym in mandates.values())
    assert mandates[eraser_id][0] is not None and mandates[other_id][0] is not None  # stopped
    # An invitation to the erased resident stays "waiting", as one to a BSN without a vault does:
    # the inviter learns nothing from the erasure.
    assert mandates[_resident_id(server, ADULT)][0] is None
    assert "Wacht tot de persoon aanvaardt" in inviter.get("/portaal/gemachtigden").text
    # The principal whose representative was erased reads why in their history.
    assert "De kluis van een gemachtigde van u is op" in principal.get("/portaal/inzage").text
    assert second_device.get("/portaal/gegevens").status_code == 303


def _resident_id(server: LiveServer, bsn: str) -> str:
    ids: dict[str, str] = server.extras.setdefault("ids", {})
    if bsn not in ids:
        with server.services.db.read_session() as session:
            ids[bsn] = server.services.vault.resident_by_bsn(session, server.tenant.id, bsn).id
    return ids[bsn]


def test_a_parent_with_gezag_can_act_for_their_child(server: LiveServer, clients: list[httpx.Client]) -> None:
    from tests.portal.conftest import PARENT

    client = login(server, clients, PARENT)
    page = client.get("/portaal/gegevens")
    assert "Optreden namens uw kind Sem Jansen" in page.text
    child_id = _resident_id(server, CHILD)
    answer = client.post(
        "/portaal/namens", data={"principal": f"gezag:{child_id}", "csrf_token": csrf_of(page.text)}
    )
    assert answer.status_code == 303
    child_page = client.get("/portaal/gegevens")
    assert "U handelt namens uw kind" in child_page.text and "Jeugdzorgdossier" in child_page.text
    # Export and erasure stay the child's own (or a court's) business.
    assert client.get("/portaal/wissen").status_code == 403


INVITATION = re.compile(r"/portaal/gemachtigden/uitnodigingen/([0-9a-f]{32})/(aanvaarden|weigeren)")
NOBODY = "999990160"  # a valid BSN without a vault in the portal's municipality


def _own_residents(server: LiveServer, *bsns: str) -> list[str]:
    """Residents of one test alone (the session's server is shared, and other tests erase theirs)."""
    from tests.portal.conftest import operator

    with server.services.db.session() as session:
        return [server.services.vault.add_resident(session, operator(), server.tenant, b).id for b in bsns]


def _appoint(client: httpx.Client, token: str, bsn: str, scope: str = "view") -> httpx.Response:
    return client.post(
        "/portaal/gemachtigden",
        data={"bsn": bsn, "scope": scope, "until": "2027-12-31", "csrf_token": token},
    )


def test_a_resident_invites_a_representative_who_accepts_and_may_then_view_but_not_decide(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    from tests.portal.conftest import REPRESENTATIVE

    principal = login(server, clients, OTHER)
    token = csrf_of(principal.get("/portaal/gemachtigden").text)
    assert _appoint(principal, token, "123456789").status_code == 400  # fails the eleven test
    own = _appoint(principal, token, OTHER)
    assert own.status_code == 400 and "niet uw eigen gemachtigde" in own.text
    assert _appoint(principal, token, REPRESENTATIVE).status_code == 303
    assert "Wacht tot de persoon aanvaardt" in principal.get("/portaal/gemachtigden").text
    # An invitation is not a mandate: the representative cannot act for the principal yet.
    representative = login(server, clients, REPRESENTATIVE)
    overview = representative.get("/portaal/gegevens")
    assert "1 persoon vraagt u om gemachtigde te worden." in overview.text
    other_id = _resident_id(server, OTHER)
    act = {"principal": f"mandate:{other_id}", "csrf_token": csrf_of(overview.text)}
    assert representative.post("/portaal/namens", data=act).status_code == 404
    invitation_page = representative.get("/portaal/gemachtigden").text
    [invitation] = {m.group(1) for m in INVITATION.finditer(invitation_page)}
    # Only the person the BSN belongs to can answer it.
    outsider = login(server, clients, ADULT)
    outsider_token = csrf_of(outsider.get("/portaal/gegevens").text)
    stolen = f"/portaal/gemachtigden/uitnodigingen/{invitation}/aanvaarden"
    assert outsider.post(stolen, data={"csrf_token": outsider_token}).status_code == 404
    accepted = representative.post(stolen, data={"csrf_token": csrf_of(invitation_page)})
    assert accepted.status_code == 303 and accepted.headers["location"].endswith("klaar=accepted")
    assert "Aanvaard" in principal.get("/portaal/gemachtigden").text
    history = principal.get("/portaal/inzage").text
    assert "De persoon die u machtigde, aanvaardde op" in history
    own_history = representative.get("/portaal/inzage").text
    assert "U aanvaardde op" in own_history and "De persoon die u machtigde" not in own_history
    acted = representative.post("/portaal/namens", data=act)
    assert acted.status_code == 303
    # Acting begins with an entry in the principal's trail (the banner shows their name from now on).
    assert "Uw gemachtigde begon op" in principal.get("/portaal/inzage").text
    assert "U handelt namens" in representative.get("/portaal/gegevens").text
    assert representative.get("/portaal/gegevens/schulden").status_code == 200
    # "view" only: no deciding, no export, no erasure.
    assert representative.get("/portaal/downloaden").status_code == 403
    assert "U begon op" in representative.get("/portaal/inzage").text
    # The principal stops the mandate; the very next request of the representative is their own again.
    page = principal.get("/portaal/gemachtigden").text
    mandate_id = page.split("/portaal/gemachtigden/")[1].split("/")[0]
    stopped = principal.post(f"/portaal/gemachtigden/{mandate_id}/intrekken", data={"csrf_token": token})
    assert stopped.status_code == 303
    assert representative.get("/portaal/gegevens/schulden").status_code == 404


def test_appointing_does_not_tell_whether_a_bsn_has_a_vault(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    from tests.portal.conftest import PARENT
    from vault.bsn import is_valid_bsn
    from vault.errors import ResidentNotFoundError

    assert is_valid_bsn(NOBODY)
    with server.services.db.read_session() as session:
        tenant = server.services.vault.tenant(session, "demodam")
        with pytest.raises(ResidentNotFoundError):
            server.services.vault.resident_by_bsn(session, tenant.id, NOBODY)
    principal = login(server, clients, PARENT)
    token = csrf_of(principal.get("/portaal/gemachtigden").text)
    answers = [_appoint(principal, token, bsn) for bsn in (NOBODY, ADULT)]
    assert [(a.status_code, a.headers["location"]) for a in answers] == [
        (303, "/portaal/gemachtigden?klaar=added")
    ] * 2
    page = principal.get("/portaal/gemachtigden").text
    assert page.count("Wacht tot de persoon aanvaardt") == 2
    # The appointment's audit entries name no one: the pseudonym of a representative only comes
    # with their acceptance.
    with server.services.db.read_session() as session:
        rows = session.execute(
            text("SELECT leaf_bytes FROM audit_entry WHERE name = 'consent:representative:appointed'")
        ).all()
    assert len(rows) >= 2
    assert all("representative" not in leaf.parse(bytes(r[0]))["details"] for r in rows)
    # Ten invitations may wait at a time, whoever they are for.
    for _ in range(8):
        assert _appoint(principal, token, NOBODY).status_code == 303
    eleventh = _appoint(principal, token, NOBODY)
    assert eleventh.status_code == 400 and "Te veel van uw uitnodigingen wachten nog" in eleventh.text
    # Stopping them and inviting others again reaches at most twenty people a day.
    for mandate_id in re.findall(r"/portaal/gemachtigden/([0-9a-f]{32})/intrekken", eleventh.text):
        stop = f"/portaal/gemachtigden/{mandate_id}/intrekken"
        assert principal.post(stop, data={"csrf_token": token}).status_code == 303
    for _ in range(10):
        assert _appoint(principal, token, NOBODY).status_code == 303
        [mandate_id] = re.findall(
            r"/portaal/gemachtigden/([0-9a-f]{32})/intrekken", principal.get("/portaal/gemachtigden").text
        )
        assert (
            principal.post(
                f"/portaal/gemachtigden/{mandate_id}/intrekken", data={"csrf_token": token}
            ).status_code
            == 303
        )
    tomorrow = _appoint(principal, token, NOBODY)
    assert tomorrow.status_code == 400 and "vandaag al veel mensen uitgenodigd" in tomorrow.text


def test_a_declined_invitation_is_gone_and_the_principal_sees_it(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    _own_residents(server, "999990226", "999990238")
    principal = login(server, clients, "999990226")
    token = csrf_of(principal.get("/portaal/gemachtigden").text)
    assert _appoint(principal, token, "999990238", scope="decide").status_code == 303
    invited = login(server, clients, "999990238")
    page = invited.get("/portaal/gemachtigden").text
    assert "hun gegevens bekijken en beslissen over verzoeken" in page
    [invitation] = {m.group(1) for m in INVITATION.finditer(page)}
    declined = invited.post(
        f"/portaal/gemachtigden/uitnodigingen/{invitation}/weigeren", data={"csrf_token": csrf_of(page)}
    )
    assert declined.status_code == 303
    after = invited.get("/portaal/gemachtigden").text
    assert (
        invitation not in after
        and "U heeft het verzoek geweigerd." in invited.get(declined.headers["location"]).text
    )
    # Declined once is declined: it cannot be accepted afterwards.
    late = f"/portaal/gemachtigden/uitnodigingen/{invitation}/aanvaarden"
    assert invited.post(late, data={"csrf_token": csrf_of(after)}).status_code == 404
    assert "Wacht tot de persoon aanvaardt" not in principal.get("/portaal/gemachtigden").text
    assert "weigerde op" in principal.get("/portaal/inzage").text


def test_who_viewed_my_data_lists_reads_and_each_line_verifies(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    import re

    client = login(server, clients, ADULT)
    assert client.get("/portaal/gegevens/inkomen").status_code == 200  # an audited read
    history = client.get("/portaal/inzage")
    assert history.status_code == 200
    links = re.findall(r"/portaal/inzage/(\d+)/controleren", history.text)
    assert links, history.text
    assert ADULT not in history.text
    # The read may be newer than the latest checkpoint: the check signs one on demand.
    check = client.get(f"/portaal/inzage/{links[0]}/controleren")
    assert check.status_code == 200
    assert "Deze regel is echt" in check.text
    # An entry about someone else is "not found", never shown or checked.
    other = login(server, clients, OTHER)
    assert other.get(f"/portaal/inzage/{links[0]}/controleren").status_code == 404


def test_a_parent_approves_a_request_for_their_child_and_both_see_it_in_their_history(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    import re

    from tests.portal.conftest import PARENT, operator

    services = server.services
    with services.db.session() as session:
        tenant = services.vault.tenant(session, "demodam")
        services.purposes.add(
            session,
            operator(),
            tenant,
            "jeugdhulp.kind",
            description_nl="hulp voor het kind",
            description_en="help for the child",
            legal_basis="consent",
            categories=["jeugdzorg.dossier"],
            max_days=30,
        )
        client, secret = services.clients.create(session, operator(), tenant, "jeugdzorg", secret=True)
    assert secret is not None
    details = json.dumps(
        [{"type": "kluis:records", "categories": ["jeugdzorg.dossier"], "purpose": "jeugdhulp.kind"}]
    )
    asked = httpx.post(
        server.base_url + "/oauth/bc-authorize",
        auth=(client.id, secret),
        data={"login_hint": CHILD, "authorization_details": details},
    )
    assert asked.status_code == 200, asked.text

    child_self = login(server, clients, CHILD)  # the child's own login: theirs to see, not the parent's
    assert "U logde in op dit portaal op" in child_self.get("/portaal/inzage").text
    parent = login(server, clients, PARENT)
    page = parent.get("/portaal/gegevens")
    child_id = _resident_id(server, CHILD)
    parent.post("/portaal/namens", data={"principal": f"gezag:{child_id}", "csrf_token": csrf_of(page.text)})
    listing = parent.get("/portaal/verzoeken")
    [request_id] = re.findall(r'href="/portaal/verzoeken/([0-9a-f]+)"', listing.text)
    detail = parent.get(f"/portaal/verzoeken/{request_id}")
    # The page's error is the portal's own message, never one from the URL (a translation is HTML).
    injected = parent.get(
        f"/portaal/verzoeken/{request_id}", params={"error": "<a href=//evil.example>x</a>"}
    )
    assert injected.status_code == 200 and "evil.example" not in injected.text
    approved = parent.post(
        f"/portaal/verzoeken/{request_id}/goedkeuren",
        data={"csrf_token": csrf_of(detail.text), "categories": "jeugdzorg.dossier"},
    )
    assert approved.status_code == 303, approved.text
    # The child's history (seen by the parent acting for the child) names the representative's act.
    child_history = parent.get("/portaal/inzage").text
    assert "namens" in child_history.lower() or "vertegenwoordiger" in child_history.lower()
    assert "logde in" not in child_history
    # The audit trail says "parent on behalf of child", with pseudonyms only.
    with services.db.read_session() as session:
        child = services.vault.resident(session, tenant.id, child_id)
        parent_row = services.vault.resident_by_bsn(session, tenant.id, PARENT)
        from audit import services as audit_log
        from audit.schemas import AuditQuery

        page_ = audit_log.search(
            session, tenant.id, AuditQuery(name="consent:request:approved", involving=child.audit_pseudonym)
        )
    [entry] = page_.entries
    assert entry.event.actor.type == "representative"
    assert entry.event.actor.id == parent_row.audit_pseudonym
    assert entry.event.actor.on_behalf_of == child.audit_pseudonym
    # The parent's own history (back as themself) shows it too.
    own = parent.get("/portaal/gegevens")
    parent.post("/portaal/namens/stoppen", data={"csrf_token": csrf_of(own.text)})
    assert "namens" in parent.get("/portaal/inzage").text.lower()


def test_gezag_comes_only_from_the_registry_never_from_a_department_s_write(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    from kluis.web.mandates import MandateService
    from kluis.wiring import utcnow
    from tests.portal.conftest import brp_record, operator

    claimant_bsn = "999990135"  # a resident of this test alone (others erase theirs)
    services = server.services
    mandates = MandateService(services.vault)
    with services.db.session() as session:
        decider = services.vault.add_resident(session, operator(), server.tenant, claimant_bsn)
    record = brp_record("Claimant")
    # A gezag relation over OTHER (an adult with a vault) in the claimant's brp.persoon.
    record["gezag"] = [
        {
            "type": "EenhoofdigOuderlijkGezag",
            "minderjarige_bsn": OTHER,
            "meerderjarigen": [{"rol": "ouder", "bsn": claimant_bsn}],
        }
    ]
    other_id = _resident_id(server, OTHER)

    def children_after_a_version_from(source: str) -> list[str]:
        with services.db.session() as session:
            resident = services.vault.resident(session, server.tenant.id, decider.id)
            services.vault.put_record(session, operator(), resident, "brp.persoon", record, source=source)
        with services.db.read_session() as session:
            resident = services.vault.resident(session, server.tenant.id, decider.id)
            return [p.resident.id for p in mandates.children_with_gezag(session, resident, utcnow())]

    assert children_after_a_version_from("brp") == [other_id]  # the registry's word counts
    assert children_after_a_version_from("department:jeugdzorg") == []  # a department's does not
    client = login(server, clients, claimant_bsn)
    token = csrf_of(client.get("/portaal/gegevens").text)
    answer = client.post("/portaal/namens", data={"principal": f"gezag:{other_id}", "csrf_token": token})
    assert answer.status_code == 404


def test_gezag_ends_on_the_child_s_eighteenth_birthday_not_at_the_next_import(server: LiveServer) -> None:
    from datetime import datetime

    from kluis.web.i18n import TIMEZONE
    from kluis.web.mandates import MandateService
    from tests.portal.conftest import brp_record, operator

    parent_bsn = "999990147"  # a resident of this test alone
    services = server.services
    mandates = MandateService(services.vault)
    with services.db.session() as session:
        parent = services.vault.add_resident(session, operator(), server.tenant, parent_bsn)
        record = brp_record("Jarig", children=[(CHILD, "Sem")])
        record["gezag"][0]["meerderjarigen"] = [{"rol": "ouder", "bsn": parent_bsn}]
        child_id = _resident_id(server, CHILD)

        def children(on: datetime, born: str) -> list[str]:
            record["kinderen"][0]["geboortedatum"] = born
            services.vault.put_record(session, operator(), parent, "brp.persoon", record, source="brp")
            return [p.resident.id for p in mandates.children_with_gezag(session, parent, on)]

        eve = datetime(2026, 6, 14, 23, 59, tzinfo=TIMEZONE)
        birthday = datetime(2026, 6, 15, 0, 0, tzinfo=TIMEZONE)
        assert children(eve, "2008-06-15") == [child_id]
        assert children(birthday, "2008-06-15") == []
        # A partial birth date counts from the earliest day it allows.
        assert children(datetime(2025, 12, 31, 23, 0, tzinfo=TIMEZONE), "2008") == [child_id]
        assert children(datetime(2026, 1, 1, 0, 0, tzinfo=TIMEZONE), "2008") == []
        assert children(datetime(2026, 5, 31, 12, 0, tzinfo=TIMEZONE), "2008-06") == [child_id]
        assert children(datetime(2026, 6, 1, 0, 0, tzinfo=TIMEZONE), "2008-06") == []

        # A guardian (a third party with gezag) has no ``kinderen`` entry for the ward: the ward's
        # own registry record gives the date. A department's version of it does not count.
        ward_bsn = "999990172"
        ward = services.vault.add_resident(session, operator(), server.tenant, ward_bsn)
        record = brp_record("Voogd")
        record["gezag"] = [
            {
                "type": "Voogdij",
                "minderjarige_bsn": ward_bsn,
                "meerderjarigen": [{"rol": "derde", "bsn": parent_bsn}],
            }
        ]
        own = {**brp_record("Pupil"), "geboorte": {"datum": "2008-06-15"}}

        def wards(on: datetime, source: str) -> list[str]:
            services.vault.put_record(session, operator(), ward, "brp.persoon", own, source=source)
            services.vault.put_record(session, operator(), parent, "brp.persoon", record, source="brp")
            return [p.resident.id for p in mandates.children_with_gezag(session, parent, on)]

        assert wards(eve, "brp") == [ward.id]
        assert wards(birthday, "brp") == []
        # A department's version of the ward's record is not the registry's word: its date is not
        # read (the relation then lasts until the next import, as without a date).
        own["geboorte"] = {"datum": "2001-01-01"}
        assert wards(eve, "department:jeugdzorg") == [ward.id]


def test_a_representative_sees_what_was_done_with_the_subject_s_data_only() -> None:
    from audit import tags
    from audit.schemas import Actor, AuditEvent, TraceContext
    from kluis.web.history_pages import _about_the_subject
    from kluis.wiring import utcnow

    def entry(name: str, actor: Actor, subject: str | None) -> AuditEvent:
        now = utcnow()
        return AuditEvent("t", name, actor, TraceContext.new(), now, now, data_subject_id=subject)

    parent, child = "p-parent", "p-child"
    department = Actor(type="client", id="client-x")
    assert _about_the_subject(entry(tags.RECORD_READ, department, parent), parent)
    acting_for_parent = Actor(type="representative", id="p-rep", on_behalf_of=parent)
    assert _about_the_subject(entry(tags.REQUEST_APPROVED, acting_for_parent, parent), parent)
    # The parent's own acts for their child, and the parent's logins: not for the parent's representative.
    for_the_child = Actor(type="representative", id=parent, on_behalf_of=child)
    assert not _about_the_subject(entry(tags.REQUEST_APPROVED, for_the_child, child), parent)
    own_login = Actor(type="resident", id=parent)
    assert not _about_the_subject(entry(tags.RESIDENT_LOGGED_IN, own_login, parent), parent)


def test_an_invitation_is_answered_once_even_when_two_answers_cross(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from kluis.web.mandates import MandateService
    from kluis.wiring import utcnow
    from tests.portal.conftest import operator
    from vault.errors import NotFoundError

    services = server.services
    mandates = MandateService(services.vault)
    with services.db.session() as session:
        principal = services.vault.add_resident(session, operator(), server.tenant, "999990184")
        invited = services.vault.add_resident(session, operator(), server.tenant, "999990196")
        mandates.appoint(
            session,
            operator(),
            principal,
            "999990196",
            may_decide=False,
            valid_until=utcnow() + timedelta(days=9),
        )
    with services.db.session() as session:
        seen = mandates.invitations(session, invited, utcnow())  # what a second tab still shows
    assert len(seen) == 1
    with services.db.session() as session:
        mandates.answer_invitation(session, operator(), invited, seen[0].id, accept=True)
    # The decline that crossed it finds the invitation answered, even past the listing's check.
    monkeypatch.setattr(mandates, "invitations", lambda *_: seen)
    with services.db.session() as session, pytest.raises(NotFoundError):
        mandates.answer_invitation(session, operator(), invited, seen[0].id, accept=False)
    with services.db.read_session() as session:
        [row] = session.execute(
            text("SELECT accepted_at, revoked_at FROM mandate WHERE id = :m"), {"m": seen[0].id}
        ).all()
    assert row[0] is not None and row[1] is None


def test_a_representative_may_stop_representing_and_the_principal_reads_it(
    server: LiveServer, clients: list[httpx.Client]
) -> None:
    _own_residents(server, "999990202", "999990214")
    principal = login(server, clients, "999990202")
    assert (
        _appoint(principal, csrf_of(principal.get("/portaal/gemachtigden").text), "999990214").status_code
        == 303
    )
    representative = login(server, clients, "999990214")
    page = representative.get("/portaal/gemachtigden").text
    [invitation] = {m.group(1) for m in INVITATION.finditer(page)}
    accept = f"/portaal/gemachtigden/uitnodigingen/{invitation}/aanvaarden"
    assert representative.post(accept, data={"csrf_token": csrf_of(page)}).status_code == 303
    page = representative.get("/portaal/gemachtigden").text
    assert "Personen namens wie u optreedt" in page
    stop = f"/portaal/gemachtigden/namens/{invitation}/stoppen"
    # Only the representative can stop it this way: the principal, or another representative of
    # the same principal, gets "not found".
    _own_residents(server, "999990287")
    principal_page = principal.get("/portaal/gemachtigden").text
    assert _appoint(principal, csrf_of(principal_page), "999990287").status_code == 303
    other = login(server, clients, "999990287")
    other_page = other.get("/portaal/gemachtigden").text
    [theirs] = {m.group(1) for m in INVITATION.finditer(other_page)}
    accept_theirs = f"/portaal/gemachtigden/uitnodigingen/{theirs}/aanvaarden"
    assert other.post(accept_theirs, data={"csrf_token": csrf_of(other_page)}).status_code == 303
    other_token = csrf_of(other.get("/portaal/gemachtigden").text)
    assert other.post(stop, data={"csrf_token": other_token}).status_code == 404
    assert (
        principal.post(
            stop, data={"csrf_token": csrf_of(principal.get("/portaal/gegevens").text)}
        ).status_code
        == 404
    )
    stopped = representative.post(stop, data={"csrf_token": csrf_of(page)})
    assert stopped.status_code == 303 and stopped.headers["location"].endswith("klaar=withdrawn")
    overview = representative.get("/portaal/gegevens")
    act = {"principal": f"mandate:{_resident_id(server, '999990202')}", "csrf_token": csrf_of(overview.text)}
    assert representative.post("/portaal/namens", data=act).status_code == 404
    assert "Uw gemachtigde stopte op" in principal.get("/portaal/inzage").text
    assert "U stopte op" in representative.get("/portaal/inzage").text
    assert "Wacht tot de persoon aanvaardt" not in principal.get("/portaal/gemachtigden").text

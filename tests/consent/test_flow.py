"""The consent flow through the services, on SQLite and PostgreSQL: ask, decide, poll, use, revoke.

Every step is checked against the audit log too: each event is an entry, written with the act.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from consent.errors import (
    AuthorizationPendingError,
    InvalidAuthorizationDetailsError,
    InvalidCursorError,
    InvalidDecisionError,
    InvalidDpopProofError,
    InvalidGrantError,
    InvalidTokenError,
    RequestDeniedError,
    RequestExpiredError,
    RequestNotFoundError,
    RequestNotPendingError,
    SlowDownError,
)
from consent.resource import Refusal
from consent.schemas import AuthenticatedClient, ClientCredentials, ResidentPrincipal, TokenResponse
from consent.services import ConsentServices
from kluis.db import Database
from tests.conftest import Clock
from tests.consent.conftest import (
    BSN_A,
    BSN_B,
    BSN_UNKNOWN,
    Town,
    audit_names,
    audit_rows,
    client_ctx,
    records_request,
    resident_ctx,
)
from vault.errors import AccessDeniedError
from vault.schemas import AccessGrant

CIBA = "urn:openid:params:grant-type:ciba"


def ask(db: Database, consent: ConsentServices, clock: Clock, client: AuthenticatedClient, **kwargs) -> str:
    with db.session() as s:
        return consent.requests.backchannel(
            s, client_ctx(clock, client), client, records_request(**kwargs)
        ).auth_req_id


def poll(
    db: Database, consent: ConsentServices, clock: Clock, client: AuthenticatedClient, auth_req_id: str
) -> TokenResponse:
    with db.session() as s:
        return consent.oauth.token(
            s, client_ctx(clock, client), client, {"grant_type": [CIBA], "auth_req_id": [auth_req_id]}
        )


def refresh(
    db: Database, consent: ConsentServices, clock: Clock, client: AuthenticatedClient, token: str | None
) -> TokenResponse:
    assert token is not None
    with db.session() as s:
        return consent.oauth.token(
            s, client_ctx(clock, client), client, {"grant_type": ["refresh_token"], "refresh_token": [token]}
        )


def pending_id(db: Database, consent: ConsentServices, clock: Clock, principal: ResidentPrincipal) -> str:
    with db.read_session() as s:
        items = consent.requests.requests(s, principal, clock(), status="pending").items
    assert len(items) == 1
    return str(items[0].id)


def approve(db, consent, clock, principal, request_id, **kwargs):
    with db.session() as s:
        return consent.requests.approve(s, resident_ctx(clock), principal, request_id, **kwargs)


def check(db: Database, consent: ConsentServices, clock: Clock, token: str) -> AccessGrant | Refusal:
    with db.read_session() as s:
        return consent.guard.check(s, token, clock())


def approved_token(db, consent, clock, town: Town, **approval) -> TokenResponse:
    client = town.clients["inkomen"]
    auth_req_id = ask(db, consent, clock, client, categories=("inkomen", "schulden"))
    approve(
        db, consent, clock, town.principal(), pending_id(db, consent, clock, town.principal()), **approval
    )
    return poll(db, consent, clock, client, auth_req_id)


def test_request_approve_token_use_revoke(db: Database, consent: ConsentServices, clock: Clock, town: Town):
    client = town.clients["inkomen"]
    auth_req_id = ask(db, consent, clock, client, categories=("inkomen",), binding_message="Dossier 12")
    with pytest.raises(AuthorizationPendingError):
        poll(db, consent, clock, client, auth_req_id)

    principal = town.principal()
    with db.read_session() as s:
        [view] = consent.requests.requests(s, principal, clock()).items
    assert view.status == "pending" and view.categories == ("inkomen",) and view.department_code == "inkomen"
    assert view.purpose_description_nl == "Aanvraag bijstand" and view.binding_message == "Dossier 12"
    grant_view = approve(db, consent, clock, principal, view.id)
    assert grant_view.status == "active" and grant_view.valid_until == clock() + timedelta(days=90)

    clock.advance(seconds=2)
    response = poll(db, consent, clock, client, auth_req_id)
    assert response.token_type == "Bearer" and response.expires_in == 300
    [detail] = response.authorization_details
    assert detail["grant_id"] == grant_view.id and detail["categories"] == ["inkomen"]
    assert detail["purpose"] == "bijstand" and detail["resident_id"] == town.residents[BSN_A].id

    grant = check(db, consent, clock, response.access_token)
    assert isinstance(grant, AccessGrant)
    assert grant.tenant_id == town.tenant.id and grant.resident_id == town.residents[BSN_A].id
    assert grant.client_id == client.client_id and grant.department == "inkomen"
    assert grant.categories == {"inkomen"} and grant.purpose == "bijstand" and grant.legal_basis == "consent"
    assert grant.may_write == frozenset() and grant.token_hash and grant.dpop_jkt is None

    with db.session() as s:
        revoked = consent.requests.revoke(s, resident_ctx(clock), principal, grant_view.id)
    assert revoked.status == "revoked" and revoked.revoked_at == clock()
    refusal = check(db, consent, clock, response.access_token)
    assert isinstance(refusal, Refusal) and isinstance(refusal.error, AccessDeniedError)
    assert refusal.reason == "grant_revoked" and refusal.grant_id == grant_view.id
    with db.session() as s:
        consent.guard.record(s, client_ctx(clock, client), refusal)

    names = audit_names(db, town.tenant.id)
    tail = names[names.index("consent:request:created") :]
    assert tail == [
        "consent:request:created",
        "consent:request:approved",
        "consent:token:issued",
        "consent:grant:revoked",
        "consent:token:refused",
    ]
    rows = audit_rows(db, town.tenant.id)
    for row in rows:  # never the BSN, anywhere in the trail
        assert BSN_A not in str(row)


def test_revoking_twice_changes_nothing(db, consent, clock, town):
    response = approved_token(db, consent, clock, town)
    grant_id = response.authorization_details[0]["grant_id"]
    for _ in range(2):
        with db.session() as s:
            consent.requests.revoke(s, resident_ctx(clock), town.principal(), grant_id)
    assert audit_names(db, town.tenant.id).count("consent:grant:revoked") == 1


def test_deny(db, consent, clock, town):
    client = town.clients["inkomen"]
    auth_req_id = ask(db, consent, clock, client)
    request_id = pending_id(db, consent, clock, town.principal())
    with db.session() as s:
        view = consent.requests.deny(s, resident_ctx(clock), town.principal(), request_id)
    assert view.status == "denied"
    with pytest.raises(RequestDeniedError):
        poll(db, consent, clock, client, auth_req_id)
    with pytest.raises(RequestNotPendingError):
        approve(db, consent, clock, town.principal(), request_id)
    assert "consent:request:denied" in audit_names(db, town.tenant.id)


def test_expiry(db, consent, clock, town):
    client = town.clients["inkomen"]
    auth_req_id = ask(db, consent, clock, client, requested_expiry=120)
    request_id = pending_id(db, consent, clock, town.principal())
    clock.advance(seconds=121)
    with db.read_session() as s:
        assert consent.requests.request(s, town.principal(), request_id, clock()).status == "expired"
        assert consent.requests.requests(s, town.principal(), clock(), status="pending").items == []
    with pytest.raises(RequestExpiredError):
        poll(db, consent, clock, client, auth_req_id)
    clock.advance(seconds=5)
    with pytest.raises(RequestExpiredError):
        poll(db, consent, clock, client, auth_req_id)
    with pytest.raises(RequestNotPendingError):
        approve(db, consent, clock, town.principal(), request_id)
    assert audit_names(db, town.tenant.id).count("consent:request:expired") == 1


def test_approve_narrower_but_never_wider(db, consent, clock, town):
    client = town.clients["inkomen"]
    auth_req_id = ask(db, consent, clock, client, categories=("inkomen", "schulden"))
    principal = town.principal()
    request_id = pending_id(db, consent, clock, principal)
    wider_ones: list[dict[str, Any]] = [
        {"categories": ["inkomen", "jeugdzorg.dossier"]},
        {"categories": []},
        {"valid_until": clock() + timedelta(days=91)},
        {"valid_until": clock() - timedelta(seconds=1)},
        {"allow_write": ["schulden"]},  # the purpose allows writing inkomen only
        {"categories": ["schulden"], "allow_write": ["inkomen"]},
    ]
    for wider in wider_ones:
        with pytest.raises(InvalidDecisionError):
            approve(db, consent, clock, principal, request_id, **wider)
    until = clock() + timedelta(days=10)
    view = approve(
        db,
        consent,
        clock,
        principal,
        request_id,
        categories=["inkomen"],
        valid_until=until,
        allow_write=["inkomen"],
    )
    assert view.categories == ("inkomen",) and view.valid_until == until and view.may_write == ("inkomen",)
    clock.advance(seconds=3)
    response = poll(db, consent, clock, client, auth_req_id)
    grant = check(db, consent, clock, response.access_token)
    assert isinstance(grant, AccessGrant)
    assert grant.categories == {"inkomen"} and grant.may_write == {"inkomen"} and grant.valid_until == until
    approved = [r for r in audit_rows(db, town.tenant.id) if r["name"] == "consent:request:approved"]
    assert len(approved) == 1


def test_polling_faster_than_the_interval_is_slowed_down(db, consent, clock, town):
    client = town.clients["inkomen"]
    auth_req_id = ask(db, consent, clock, client)
    with pytest.raises(AuthorizationPendingError):
        poll(db, consent, clock, client, auth_req_id)
    clock.advance(seconds=1)
    with pytest.raises(SlowDownError):
        poll(db, consent, clock, client, auth_req_id)
    clock.advance(seconds=1)  # counted from the last poll, the refused one included
    with pytest.raises(SlowDownError):
        poll(db, consent, clock, client, auth_req_id)
    clock.advance(seconds=2)
    with pytest.raises(AuthorizationPendingError):
        poll(db, consent, clock, client, auth_req_id)


def test_an_auth_req_id_gives_one_token(db, consent, clock, town):
    client = town.clients["inkomen"]
    auth_req_id = ask(db, consent, clock, client)
    approve(db, consent, clock, town.principal(), pending_id(db, consent, clock, town.principal()))
    poll(db, consent, clock, client, auth_req_id)
    clock.advance(seconds=5)
    with pytest.raises(InvalidGrantError) as caught:
        poll(db, consent, clock, client, auth_req_id)
    assert caught.value.reason == "auth_req_id_used"


def test_an_approved_auth_req_id_expires_with_its_expires_in(db, consent, clock, town):
    client = town.clients["inkomen"]
    auth_req_id = ask(db, consent, clock, client, requested_expiry=120)
    clock.advance(seconds=119)  # approved in the request's last second: still fetched in time
    approve(db, consent, clock, town.principal(), pending_id(db, consent, clock, town.principal()))
    clock.advance(seconds=consent.config.poll_interval)  # the next poll lands after expires_in
    late = ask(db, consent, clock, client, requested_expiry=120)
    assert isinstance(
        check(db, consent, clock, poll(db, consent, clock, client, auth_req_id).access_token), AccessGrant
    )
    approve(db, consent, clock, town.principal(), pending_id(db, consent, clock, town.principal()))
    # An approved id nobody fetched within expires_in (and one interval) is refused, and audited.
    clock.advance(seconds=126)
    with pytest.raises(RequestExpiredError):
        poll(db, consent, clock, client, late)
    refused = [r for r in audit_rows(db, town.tenant.id) if r["name"] == "consent:token:refused"]
    assert [r["reason"] for r in refused] == ["auth_req_id_expired"]
    # Its grant, which nothing could ever use now, ends with it: by the system, audited.
    ended = [r for r in audit_rows(db, town.tenant.id) if r["name"] == "consent:grant:revoked"]
    assert [(r["reason"], r["actor"]["type"]) for r in ended] == [("auth_req_id_expired", "system")]
    with db.read_session() as s:
        views = consent.requests.grants(s, town.principal(), clock()).items
    assert sorted(v.status for v in views) == ["active", "revoked"]


def test_an_unknown_bsn_gets_the_same_answers_and_never_a_grant(db, consent, clock, town):
    client = town.clients["inkomen"]
    with db.session() as s:
        known = consent.requests.backchannel(s, client_ctx(clock, client), client, records_request(BSN_A))
        unknown = consent.requests.backchannel(
            s, client_ctx(clock, client), client, records_request(BSN_UNKNOWN)
        )
    assert (known.expires_in, known.interval) == (unknown.expires_in, unknown.interval)
    assert len(known.auth_req_id) == len(unknown.auth_req_id)
    with pytest.raises(AuthorizationPendingError):
        poll(db, consent, clock, client, unknown.auth_req_id)
    for bsn in (BSN_A, BSN_B):  # nobody sees it
        with db.read_session() as s:
            items = consent.requests.requests(s, town.principal(bsn), clock()).items
        assert all(v.id != unknown.auth_req_id for v in items) and len(items) == (1 if bsn == BSN_A else 0)
    clock.advance(seconds=3601)
    with pytest.raises(RequestExpiredError):
        poll(db, consent, clock, client, unknown.auth_req_id)
    created = [r for r in audit_rows(db, town.tenant.id) if r["name"] == "consent:request:created"]
    assert len(created) == 2


def test_a_client_of_one_town_cannot_reach_a_resident_of_another(db, consent, clock, make_town):
    town_a, town_b = make_town("gemeente-a"), make_town("gemeente-b")
    with db.session() as s:
        only_in_b = consent.requests.vault.add_resident(
            s, client_ctx(clock, town_b.clients["inkomen"]), town_b.tenant, BSN_UNKNOWN
        )
    client_a = town_a.clients["inkomen"]
    auth_req_id = ask(db, consent, clock, client_a, bsn=BSN_UNKNOWN)
    principal_b = ResidentPrincipal(town_b.tenant.id, only_in_b.id)
    with db.read_session() as s:
        assert consent.requests.requests(s, principal_b, clock()).items == []
    with pytest.raises(AuthorizationPendingError):
        poll(db, consent, clock, client_a, auth_req_id)
    # Same BSN in both towns: the resident of B never sees A's request, and cannot approve it.
    ask(db, consent, clock, client_a, bsn=BSN_A)
    request_a = pending_id(db, consent, clock, town_a.principal())
    with pytest.raises(RequestNotFoundError):
        approve(db, consent, clock, town_b.principal(), request_a)
    # A client of B cannot poll A's request.
    with pytest.raises(InvalidGrantError):
        poll(db, consent, clock, town_b.clients["inkomen"], auth_req_id)
    assert "consent:request:created" not in audit_names(db, town_b.tenant.id)


def test_another_department_cannot_use_a_grant(db, consent, clock, town):
    inkomen, jeugdzorg = town.clients["inkomen"], town.clients["jeugdzorg"]
    auth_req_id = ask(db, consent, clock, inkomen)
    approve(db, consent, clock, town.principal(), pending_id(db, consent, clock, town.principal()))
    with pytest.raises(InvalidGrantError):
        poll(db, consent, clock, jeugdzorg, auth_req_id)
    response = poll(db, consent, clock, inkomen, auth_req_id)
    assert response.refresh_token is not None
    with pytest.raises(InvalidGrantError):
        refresh(db, consent, clock, jeugdzorg, response.refresh_token)
    with db.session() as s:
        seen = consent.oauth.introspect(
            s, client_ctx(clock, jeugdzorg), jeugdzorg, {"token": [response.access_token]}
        )
        own = consent.oauth.introspect(
            s, client_ctx(clock, inkomen), inkomen, {"token": [response.access_token]}
        )
        consent.oauth.revoke(s, client_ctx(clock, jeugdzorg), jeugdzorg, {"token": [response.access_token]})
    assert seen == {"active": False} and own["active"] is True
    assert own["token_type"] == "Bearer" and "cnf" not in own  # a bearer token says nothing more
    assert isinstance(
        check(db, consent, clock, response.access_token), AccessGrant
    )  # not revoked by jeugdzorg
    refused = [r for r in audit_rows(db, town.tenant.id) if r["name"] == "consent:token:refused"]
    assert len(refused) == 2 and all(r["client_id"] == jeugdzorg.client_id for r in refused)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"purpose": "marketing"}, "purpose_not_registered"),
        ({"categories": ("inkomen", "jeugdzorg.dossier")}, "category_outside_purpose"),
        ({"categories": ("brp.persoon",), "purpose": "jeugdhulp"}, "category_outside_purpose"),
    ],
)
def test_requests_outside_the_register_are_refused_and_audited(db, consent, clock, town, kwargs, reason):
    with pytest.raises(InvalidAuthorizationDetailsError) as caught:
        ask(db, consent, clock, town.clients["inkomen"], **kwargs)
    assert caught.value.reason == reason and caught.value.error == "invalid_authorization_details"
    [row] = [r for r in audit_rows(db, town.tenant.id) if r["name"] == "consent:request:refused"]
    assert row["reason"] == reason
    with db.read_session() as s:
        assert consent.requests.requests(s, town.principal(), clock()).items == []


def test_refresh_rotates_and_a_reused_refresh_token_stops_everything(db, consent, clock, town):
    client = town.clients["inkomen"]
    first = approved_token(db, consent, clock, town)
    clock.advance(seconds=290)
    second = refresh(db, consent, clock, client, first.refresh_token)
    assert second.refresh_token != first.refresh_token and second.access_token != first.access_token
    assert isinstance(check(db, consent, clock, second.access_token), AccessGrant)
    clock.advance(seconds=1)
    with pytest.raises(InvalidGrantError) as caught:
        refresh(db, consent, clock, client, first.refresh_token)  # the old one again: a leak
    assert caught.value.reason == "refresh_token_reused"
    refusal = check(db, consent, clock, second.access_token)
    assert isinstance(refusal, Refusal) and refusal.reason == "token_revoked"
    assert isinstance(refusal.error, InvalidTokenError)
    with pytest.raises(InvalidGrantError):
        refresh(db, consent, clock, client, second.refresh_token)  # refreshing is off for the grant


def test_refresh_is_refused_after_revocation_and_expiry(db, consent, clock, town):
    client = town.clients["inkomen"]
    response = approved_token(db, consent, clock, town, valid_until=clock() + timedelta(hours=1))
    clock.advance(hours=1)
    with pytest.raises(InvalidGrantError) as caught:
        refresh(db, consent, clock, client, response.refresh_token)
    assert caught.value.reason == "grant_expired"
    assert isinstance(check(db, consent, clock, response.access_token), Refusal)


def test_the_access_token_never_outlives_the_grant(db, consent, clock, town):
    response = approved_token(db, consent, clock, town, valid_until=clock() + timedelta(seconds=100))
    assert response.expires_in == 100
    clock.advance(seconds=100)
    refusal = check(db, consent, clock, response.access_token)
    assert isinstance(refusal, Refusal) and refusal.reason == "token_expired"


def test_token_revocation_rfc7009(db, consent, clock, town):
    client = town.clients["inkomen"]
    response = approved_token(db, consent, clock, town)
    with db.session() as s:
        consent.oauth.revoke(s, client_ctx(clock, client), client, {"token": [response.access_token]})
    refusal = check(db, consent, clock, response.access_token)
    assert isinstance(refusal, Refusal) and refusal.reason == "token_revoked"
    with db.session() as s:
        assert consent.oauth.introspect(
            s, client_ctx(clock, client), client, {"token": [response.access_token]}
        ) == {"active": False}
    clock.advance(seconds=2)
    fresh = refresh(db, consent, clock, client, response.refresh_token)  # the grant itself still stands
    assert isinstance(check(db, consent, clock, fresh.access_token), AccessGrant)
    with db.session() as s:  # revoking the refresh token ends the access tokens of the grant too
        consent.oauth.revoke(
            s,
            client_ctx(clock, client),
            client,
            {"token": [fresh.refresh_token], "token_type_hint": ["refresh_token"]},
        )
        consent.oauth.revoke(s, client_ctx(clock, client), client, {"token": ["not-a-token"]})  # ignored
    assert isinstance(check(db, consent, clock, fresh.access_token), Refusal)
    assert audit_names(db, town.tenant.id).count("consent:token:revoked") == 2


def test_erasure_refuses_at_once(db, consent, clock, town):
    client = town.clients["inkomen"]
    response = approved_token(db, consent, clock, town)
    with db.session() as s:
        consent.requests.vault.erase_resident(s, client_ctx(clock, client), town.residents[BSN_A])
    refusal = check(db, consent, clock, response.access_token)
    assert isinstance(refusal, Refusal) and refusal.reason == "resident_erased"
    with db.session() as s:
        assert consent.oauth.introspect(
            s, client_ctx(clock, client), client, {"token": [response.access_token]}
        ) == {"active": False}
    # An erased resident's BSN is as unknown as any other: still the same answer, never a grant.
    ask(db, consent, clock, client)


def test_introspection_of_an_active_token(db, consent, clock, town):
    client = town.clients["inkomen"]
    response = approved_token(db, consent, clock, town)
    with db.session() as s:
        info = consent.oauth.introspect(
            s, client_ctx(clock, client), client, {"token": [response.access_token]}
        )
        refresh_info = consent.oauth.introspect(
            s, client_ctx(clock, client), client, {"token": [response.refresh_token]}
        )
    assert info["active"] is True and info["client_id"] == client.client_id and info["token_type"] == "Bearer"
    assert info["sub"] != town.residents[BSN_A].id and BSN_A not in str(info)
    assert info["authorization_details"][0]["categories"] == ["inkomen", "schulden"]
    assert refresh_info["active"] is True and refresh_info["token_type"] == "refresh_token"


def test_subjects_are_pairwise_per_department(db, consent, clock, town):
    a = consent.oauth.pairwise_subject(town.tenant.id, "dept-1", town.residents[BSN_A].id)
    b = consent.oauth.pairwise_subject(town.tenant.id, "dept-2", town.residents[BSN_A].id)
    c = consent.oauth.pairwise_subject(town.tenant.id, "dept-1", town.residents[BSN_B].id)
    assert len({a, b, c}) == 3 and a == consent.oauth.pairwise_subject(
        town.tenant.id, "dept-1", town.residents[BSN_A].id
    )


def test_lists_are_paginated_newest_first(db, consent, clock, town):
    client = town.clients["inkomen"]
    for _ in range(5):
        ask(db, consent, clock, client)
        clock.advance(seconds=1)
    seen: list[str] = []
    cursor = None
    with db.read_session() as s:
        while True:
            page = consent.requests.requests(s, town.principal(), clock(), cursor=cursor, limit=2)
            seen += [v.id for v in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        everything = consent.requests.requests(s, town.principal(), clock()).items
    assert seen == [v.id for v in everything] and len(seen) == 5
    assert [v.created_at for v in everything] == sorted((v.created_at for v in everything), reverse=True)
    with db.read_session() as s, pytest.raises(InvalidCursorError):
        consent.requests.requests(s, town.principal(), clock(), cursor="bm90LWpzb24")


def test_dpop_bound_clients_get_bound_tokens_only(db, consent, clock, town, ctx):
    with db.session() as s:
        row, secret = consent.clients.create(s, ctx(), town.tenant, "jeugdzorg", secret=True, dpop=True)
        client = consent.clients.authenticate(s, ctx(), ClientCredentials(basic=(row.id, secret or "")))
    assert client.dpop_bound
    with db.session() as s:
        auth_req_id = consent.requests.backchannel(
            s,
            client_ctx(clock, client),
            client,
            records_request(categories=("jeugdzorg.dossier",), purpose="jeugdhulp"),
        ).auth_req_id
    approve(db, consent, clock, town.principal(), pending_id(db, consent, clock, town.principal()))
    with pytest.raises(InvalidDpopProofError):
        poll(db, consent, clock, client, auth_req_id)
    with db.session() as s:
        form = {"grant_type": [CIBA], "auth_req_id": [auth_req_id]}
        response = consent.oauth.token(s, client_ctx(clock, client), client, form, dpop_jkt="thumbprint")
    assert response.token_type == "DPoP"
    grant = check(db, consent, clock, response.access_token)
    assert isinstance(grant, AccessGrant) and grant.dpop_jkt == "thumbprint"
    # Introspection says it is bound, and to which key (RFC 9449 §6.2).
    with db.session() as s:
        seen = consent.oauth.introspect(
            s, client_ctx(clock, client), client, {"token": [response.access_token]}
        )
    assert seen["active"] is True and seen["token_type"] == "DPoP" and seen["cnf"] == {"jkt": "thumbprint"}

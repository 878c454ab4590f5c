"""Authentication at a source: API key header and OAuth 2.0 client credentials (stand-in token endpoint)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connectors import (
    BRP_PERSOON_FIELDS,
    ApiKeyAuth,
    BrpPersonenConnector,
    ClientCredentialsAuth,
    SourceForbiddenError,
)
from tests.connectors.conftest import FakeTime
from tests.support.brp_standin import StandinServer

MakeBrp = Callable[..., BrpPersonenConnector]


def oauth(
    standin: StandinServer,
    fake_time: FakeTime,
    *,
    client_id: str = "kluis",
    client_secret: str = "kluis-secret",
    method: str = "client_secret_basic",
) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        token_url=standin.token_url,
        client_id=client_id,
        client_secret=client_secret,
        method=method,
        monotonic=fake_time.monotonic,
    )


def test_the_api_key_goes_in_the_x_api_key_header(make_brp: MakeBrp, standin: StandinServer) -> None:
    make_brp().fetch("999970616")

    assert [r.auth for r in standin.state.recorded("personen")] == ["api-key"]


def test_client_credentials_token_is_fetched_once_and_reused(
    make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime
) -> None:
    connector = make_brp(auth=oauth(standin, fake_time))

    for bsn in ("999970616", "999970665", "999970641"):
        connector.fetch(bsn)

    assert standin.state.token_requests == 1
    assert [r.auth for r in standin.state.recorded("personen")] == ["bearer"] * 3


def test_client_secret_post_works_too(make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime) -> None:
    connector = make_brp(auth=oauth(standin, fake_time, method="client_secret_post"))

    assert connector.fetch("999970616").data["naam"]["voornamen"] == "Kim"


def test_a_token_is_renewed_before_it_expires(
    make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime
) -> None:
    standin.state.token_lifetime = 60
    connector = make_brp(auth=oauth(standin, fake_time))  # renews 30 s before expiry
    connector.fetch("999970616")

    fake_time.advance(29)
    connector.fetch("999970616")
    assert standin.state.token_requests == 1

    fake_time.advance(1)
    connector.fetch("999970616")
    assert standin.state.token_requests == 2


def test_a_revoked_token_is_replaced_once_after_a_401(
    make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime
) -> None:
    connector = make_brp(auth=oauth(standin, fake_time))
    connector.fetch("999970616")
    standin.state.revoke_tokens()

    assert connector.fetch("999970616").data["naam"]["geslachtsnaam"] == "Kootwijk"
    assert standin.state.token_requests == 2
    assert len(standin.state.recorded("personen")) == 3  # ok, 401, ok


def test_a_wrong_client_secret_is_refused_without_asking_for_persons(
    make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime
) -> None:
    connector = make_brp(auth=oauth(standin, fake_time, client_secret="wrong"))

    with pytest.raises(SourceForbiddenError) as refused:
        connector.fetch("999970616")

    assert refused.value.status == 401
    assert standin.state.recorded("personen") == []
    assert "wrong" not in str(refused.value)


def test_a_token_endpoint_hiccup_is_retried(
    make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime
) -> None:
    standin.state.inject("token", 503)

    assert make_brp(auth=oauth(standin, fake_time)).fetch("999970616").data["naam"]["voornamen"] == "Kim"
    assert standin.state.token_requests == 2
    assert len(fake_time.sleeps) == 1


def test_a_client_not_authorised_for_the_fields_gets_403(
    make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime
) -> None:
    standin.state.oauth_clients["beperkt"] = ("geheim", frozenset(BRP_PERSOON_FIELDS[:5]))
    connector = make_brp(auth=oauth(standin, fake_time, client_id="beperkt", client_secret="geheim"))

    with pytest.raises(SourceForbiddenError) as refused:
        connector.fetch("999970616")

    assert refused.value.status == 403


def test_credentials_stay_out_of_repr() -> None:
    auth = ClientCredentialsAuth(
        token_url="https://idp.example/token", client_id="kluis", client_secret="s3cr3t"
    )

    assert "s3cr3t" not in repr(auth)
    assert "test-key" not in repr(ApiKeyAuth("test-key"))

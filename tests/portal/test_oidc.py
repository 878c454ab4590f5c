"""Login through a real OpenID Provider (oidc-provider-mock over loopback): code flow with PKCE."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.portal.conftest import ADULT, LiveServer, PkceEnforcingProvider, logins_of

# The mock provider (not Kluis) uses an authlib API that authlib deprecates; it warns in its thread.
pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")


def test_login_through_the_openid_provider_with_pkce(
    server: LiveServer, idp: tuple[str, PkceEnforcingProvider], clients: list[httpx.Client]
) -> None:
    issuer, provider = idp
    browser = server.client()
    clients.append(browser)
    before = logins_of(server, ADULT)
    start = browser.get("/portaal/inloggen/oidc")
    assert start.status_code == 302
    authorize = start.headers["location"]
    assert authorize.startswith(issuer + "/oauth2/authorize")
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
    assert query["response_type"] == ["code"] and "openid" in query["scope"][0].split()
    assert query["nonce"] and query["state"]
    # The user picks their account at the provider, which sends the browser back with a code.
    with httpx.Client(timeout=10) as at_provider:
        back = at_provider.post(authorize, data={"sub": "digid-user-1"})
    assert back.status_code == 302
    callback = back.headers["location"]
    assert callback.startswith(server.url("/portaal/inloggen/terug?"))
    done = browser.get(callback.removeprefix(server.base_url))
    assert done.status_code == 303 and done.headers["location"] == "/portaal/gegevens"
    assert provider.verified, "the token request did not pass the PKCE check"
    assert [e.details for e in logins_of(server, ADULT) if e not in before] == [{"method": "oidc"}]
    assert "Bakkerij De Korrel" in browser.get("/portaal/gegevens/inkomen").text


def test_a_callback_with_a_forged_state_is_refused(server: LiveServer, clients: list[httpx.Client]) -> None:
    browser = server.client()
    clients.append(browser)
    browser.get("/portaal/inloggen/oidc")
    answer = browser.get("/portaal/inloggen/terug", params={"code": "x", "state": "forged"})
    assert answer.status_code == 400
    assert browser.get("/portaal/gegevens").status_code == 303

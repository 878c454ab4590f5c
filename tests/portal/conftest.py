"""A real Kluis server over loopback (uvicorn in a thread) with a demo municipality, for the portal tests.

One server per test session: the tests share it, so each test works with its own residents where it
changes state (erasure, grants) and never depends on another test's leftovers.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
import werkzeug.serving

from audit import services as audit_log
from audit import tags
from audit.schemas import Actor, AuditEvent, AuditQuery, TraceContext
from kluis.app import create_app
from kluis.settings import Settings
from kluis.wiring import Services, build_services, initialise, utcnow
from vault.models import Tenant
from vault.services import Context

TENANT = "demodam"
# Fictitious BSNs that pass the 11-proef (BRP test data style).
ADULT = "999993653"
OTHER = "111222333"
PARENT = "999990019"
CHILD = "999990032"
REPRESENTATIVE = "999990044"
ERASER = "999990056"
GRANTOR = "999990068"
DECIDER = "999990081"


def operator() -> Context:
    return Context(actor=Actor(type="operator", id="cli:test"), trace=TraceContext.new(), now=utcnow())


def brp_record(surname: str, *, children: list[tuple[str, str]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """A minimal valid ``brp.persoon`` record; ``children`` are (bsn, first name) under sole gezag."""
    return {
        "naam": {"voornamen": "Test", "geslachtsnaam": surname},
        "nationaliteiten": [],
        "ouders": [],
        "kinderen": [
            {"bsn": bsn, "naam": {"voornamen": name, "geslachtsnaam": surname}} for bsn, name in children
        ],
        "partners": [],
        "gezag": [
            {
                "type": "EenhoofdigOuderlijkGezag",
                "minderjarige_bsn": bsn,
                "meerderjarigen": [{"rol": "ouder", "bsn": PARENT}],
            }
            for bsn, _ in children
        ],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    services: Services
    settings: Settings
    tenant: Tenant
    extras: dict[str, Any] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base_url + path

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, follow_redirects=False, timeout=10, **kwargs)


def seed(services: Services) -> Tenant:
    with services.db.session() as session:
        ctx = operator()
        tenant = services.vault.create_tenant(session, ctx, TENANT, "Gemeente Demodam")
        for code, name in {"jeugdzorg": "Afdeling Jeugdzorg", "inkomen": "Werk en inkomen"}.items():
            services.departments.create(session, ctx, tenant, code, name)
        residents = {}
        for bsn in (ADULT, OTHER, PARENT, CHILD, REPRESENTATIVE, ERASER, GRANTOR, DECIDER):
            residents[bsn] = services.vault.add_resident(session, ctx, tenant, bsn)
        income = {"maandinkomen": 2150.0, "periode": "2026-10", "werkgever": "Bakkerij De Korrel"}
        for bsn in (ADULT, OTHER, ERASER, GRANTOR, DECIDER):
            services.vault.put_record(session, ctx, residents[bsn], "inkomen", income, source="demo")
        services.vault.put_record(
            session, ctx, residents[OTHER], "schulden", {"totaal": 1200.0}, source="demo"
        )
        services.vault.put_record(
            session,
            ctx,
            residents[PARENT],
            "brp.persoon",
            brp_record("Jansen", children=[(CHILD, "Sem")]),
            source="brp",
        )
        services.vault.put_record(
            session, ctx, residents[CHILD], "brp.persoon", brp_record("Jansen"), source="brp"
        )
        services.vault.put_record(
            session, ctx, residents[CHILD], "jeugdzorg.dossier", {"status": "in_behandeling"}, source="demo"
        )
    return tenant


class PkceEnforcingProvider:
    """WSGI wrapper around oidc-provider-mock that enforces PKCE (RFC 7636, S256), which the mock
    itself does not: it remembers each code's challenge and refuses a token request whose
    ``code_verifier`` does not hash to it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.challenges: dict[str, tuple[str, str]] = {}
        self.verified: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/oauth2/authorize" and environ["REQUEST_METHOD"] == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            challenge = (query.get("code_challenge") or [""])[0]
            method = (query.get("code_challenge_method") or [""])[0]

            def remember(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
                for name, value in headers:
                    if name.lower() == "location":
                        code = (parse_qs(urlsplit(value).query).get("code") or [""])[0]
                        if code:
                            self.challenges[code] = (challenge, method)
                return start_response(status, headers, *args)

            return self.app(environ, remember)
        if path == "/oauth2/token":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            form = parse_qs(body.decode())
            environ["wsgi.input"] = io.BytesIO(body)
            if (form.get("grant_type") or [""])[0] == "authorization_code":
                code = (form.get("code") or [""])[0]
                verifier = (form.get("code_verifier") or [""])[0]
                challenge, method = self.challenges.pop(code, ("", ""))
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
                if method != "S256" or not verifier or digest.decode() != challenge:
                    start_response("400 Bad Request", [("content-type", "application/json")])
                    return [b'{"error": "invalid_grant", "error_description": "PKCE check failed"}']
                self.verified.append(code)
        return self.app(environ, start_response)


@pytest.fixture(scope="session")
def idp() -> Iterator[tuple[str, PkceEnforcingProvider]]:
    """A real OpenID Provider on loopback (oidc-provider-mock), with one user whose BSN claim is ADULT."""
    with warnings.catch_warnings():
        # The mock is written against older authlib APIs; its import warns about that.
        import authlib.deprecate

        warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
        import oidc_provider_mock  # type: ignore[import-untyped]
    provider = PkceEnforcingProvider(
        oidc_provider_mock.app(
            user_claims=[oidc_provider_mock.User(sub="digid-user-1", claims={"bsn": ADULT})]
        )
    )
    wsgi = werkzeug.serving.make_server("127.0.0.1", 0, provider, threaded=True)
    thread = threading.Thread(target=wsgi.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{wsgi.server_port}", provider
    finally:
        wsgi.shutdown()
        thread.join(5)
        wsgi.server_close()


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, idp: tuple[str, PkceEnforcingProvider]
) -> Iterator[LiveServer]:
    data_dir: Path = tmp_path_factory.mktemp("kluis")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        env="development",
        data_dir=data_dir,
        issuer=base,
        base_url=base,
        portal_tenant=TENANT,
        oidc_issuer=idp[0],
        oidc_client_id="kluis-portal",
        oidc_client_secret="test-secret",
        login_rate_limit_per_minute=100_000,  # every test logs in from 127.0.0.1
    )
    services = build_services(settings)
    initialise(services)
    tenant = seed(services)
    app = create_app(settings, services)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(base, services, settings, tenant)
    finally:
        uv.should_exit = True
        thread.join(10)


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


@pytest.fixture
def clients(server: LiveServer) -> Iterator[list[httpx.Client]]:
    """Every client a test opens, closed afterwards."""
    opened: list[httpx.Client] = []
    yield opened
    for client in opened:
        client.close()


def login(server: LiveServer, clients: list[httpx.Client], bsn: str) -> httpx.Client:
    """A client logged in through the test login, as a browser would do it."""
    client = server.client()
    clients.append(client)
    page = client.get("/portaal/inloggen/test")
    assert page.status_code == 200
    answer = client.post("/portaal/inloggen/test", data={"bsn": bsn, "csrf_token": csrf_of(page.text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/portaal/gegevens"
    return client


@contextmanager
def logged(name: str) -> Iterator[list[str]]:
    """The messages logged to logger ``name`` (and its children) meanwhile, from INFO up."""
    messages: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler, logger = Capture(logging.INFO), logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def logins_of(server: LiveServer, bsn: str) -> list[AuditEvent]:
    """The login entries (``vault:resident:logged_in``) in the trail of the resident with ``bsn``."""
    with server.services.db.read_session() as session:
        resident = server.services.vault.resident_by_bsn(session, server.tenant.id, bsn)
        query = AuditQuery(name=tags.RESIDENT_LOGGED_IN, data_subject_id=resident.audit_pseudonym)
        page = audit_log.search(session, server.tenant.id, query, limit=500)
    return [item.event for item in page.entries]


# -- the browser (Debian chromium through Playwright; never a downloaded browser) --------------
@pytest.fixture
def page_for(browser: Any, server: LiveServer) -> Iterator[Any]:
    contexts: list[Any] = []

    def make(*, locale: str = "nl-NL", width: int = 390) -> Any:
        context = browser.new_context(
            locale=locale,
            viewport={"width": width, "height": 800},
            base_url=server.base_url,
            accept_downloads=True,
        )
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def dev_login(page: Any, bsn: str) -> None:
    page.goto("/portaal/inloggen")
    page.get_by_role("link", name="test").first.click()
    page.locator("#bsn").fill(bsn)
    page.locator("form:has(#bsn) button[type=submit]").click()
    page.wait_for_url("**/portaal/gegevens")

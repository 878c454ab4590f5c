"""The consent commands of the operator CLI, as an operator types them (SQLite data directory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jwcrypto import jwk
from typer.testing import CliRunner

from kluis.cli import build_app
from kluis.cli._common import CliError
from kluis.settings import Settings
from kluis.wiring import build_services, utcnow

BSN = "999993653"


@pytest.fixture
def kluis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KLUIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KLUIS_ENV", "development")
    monkeypatch.delenv("KLUIS_DATABASE_URL", raising=False)
    runner = CliRunner()
    app = build_app()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(app, list(args))
        if ok:
            assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    run("init")
    run("tenant", "create", "clidam", "--name", "Clidam")
    run("department", "create", "--tenant", "clidam", "inkomen", "--name", "Werk en inkomen")
    return run


def test_purposes_clients_and_tokens(kluis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    kluis(
        "purpose", "add", "--tenant", "clidam", "bijstand",
        "--description-nl", "Aanvraag bijstand", "--description-en", "Social assistance",
        "--legal-basis", "consent", "--categories", "inkomen,schulden", "--max-days", "90",
        "--writable-categories", "inkomen",
    )  # fmt: skip
    [purpose] = json.loads(kluis("purpose", "list", "--tenant", "clidam", "--json").stdout)
    assert purpose["categories"] == ["inkomen", "schulden"] and purpose["writable_categories"] == ["inkomen"]
    bad = ["--description-nl", "a", "--description-en", "b", "--legal-basis", "consent"]
    refused_purpose = kluis(
        "purpose", "add", "--tenant", "clidam", "x", *bad, "--categories", "nope", "--max-days", "1", ok=False
    )
    assert refused_purpose.exit_code != 0

    secret_client = json.loads(
        kluis(
            "client", "create", "--tenant", "clidam", "--department", "inkomen", "--secret", "--json"
        ).stdout
    )
    assert set(secret_client) == {"client_id", "client_secret"} and len(secret_client["client_secret"]) >= 40

    keyfile = tmp_path / "jwks.json"
    key = jwk.JWK.generate(kty="EC", crv="P-256", kid="dept-1")
    keyfile.write_text(json.dumps({"keys": [json.loads(key.export_public())]}))
    jwt_client = json.loads(
        kluis(
            "client",
            "create",
            "--tenant",
            "clidam",
            "--department",
            "inkomen",
            "--jwks",
            str(keyfile),
            "--dpop",
            "--json",
        ).stdout
    )
    assert set(jwt_client) == {"client_id"}
    listed = json.loads(kluis("client", "list", "--tenant", "clidam", "--json").stdout)
    assert {c["auth_method"] for c in listed} == {"client_secret_basic", "private_key_jwt"}
    assert [c["dpop_bound"] for c in listed if c["client_id"] == jwt_client["client_id"]] == [True]
    assert secret_client["client_secret"] not in json.dumps(listed)

    kluis("resident", "add", "--tenant", "clidam", "--bsn", BSN)
    resident_token = kluis("dev-token", "--tenant", "clidam", "--bsn", BSN).stdout.splitlines()[-1]
    officer_token = kluis("dev-token", "--tenant", "clidam", "--privacy-officer").stdout.splitlines()[-1]
    assert BSN not in resident_token
    services = build_services(Settings())
    try:
        with services.db.read_session() as s:
            resident = services.oauth.guard.resident(s, resident_token, utcnow())
            officer = services.oauth.guard.privacy_officer(s, officer_token, utcnow())
            tenant = services.vault.tenant(s, "clidam")
            assert resident.tenant_id == officer.tenant_id == tenant.id
            assert resident.resident_id == services.vault.resident_by_bsn(s, tenant.id, BSN).id
    finally:
        services.close()

    refused = kluis("dev-token", "--tenant", "clidam", "--bsn", "123456789", ok=False)
    assert refused.exit_code != 0 and "123456789" not in refused.output
    monkeypatch.setenv("KLUIS_ENV", "production")
    in_production = kluis("dev-token", "--tenant", "clidam", "--privacy-officer", ok=False)
    assert isinstance(in_production.exception, CliError) and "production" in str(in_production.exception)


def test_rotate_signing(kluis):
    services = build_services(Settings())
    try:
        with services.db.read_session() as s:
            before = services.signing.active(s, "token")
            assert before is not None
            before_kid = before.kid
        rotated = json.loads(kluis("keys", "rotate-signing", "--json").stdout)
        with services.db.read_session() as s:
            after = services.signing.active(s, "token")
            assert after is not None
            after_kid = after.kid
            published = {k["kid"] for k in services.oauth.tokens.public_jwks(s, utcnow())["keys"]}
    finally:
        services.close()
    assert rotated["kid"] == after_kid != before_kid
    assert published == {before_kid, after_kid}

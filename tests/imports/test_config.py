"""The connector configuration of the shell: a JSON file, secrets only from ``KLUIS_CONNECTOR_SECRET_*``
environment variables, HTTPS in production, one tenant's mistakes not breaking another's imports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connectors import ConnectorConfigError
from kluis.imports import Connectors, import_one, read_config, resolve_secrets
from kluis.settings import Settings
from tests.imports.conftest import SECRET_ENV, TENANT, Kluis, brp_source, operator
from tests.support.brp_standin import StandinServer


def registry_error(kluis: Kluis, settings: Settings | None = None) -> str:
    connectors = Connectors(settings or Settings())
    try:
        with kluis.services.db.read_session() as s, pytest.raises(ConnectorConfigError) as raised:
            connectors.for_tenant(kluis.services.vault, s, kluis.tenant)
    finally:
        connectors.close()
    return str(raised.value)


def test_the_settings_read_connector_secrets_from_the_environment_only_with_the_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KLUIS_CONNECTOR_SECRET_INKOMEN", "s3cret")
    monkeypatch.setenv("KLUIS_SESSION_SECRET", "not-for-connectors")
    monkeypatch.setenv("KLUIS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KLUIS_CONNECTORS_FILE", raising=False)
    settings = Settings()

    assert settings.connector_secrets["KLUIS_CONNECTOR_SECRET_INKOMEN"].get_secret_value() == "s3cret"
    assert "KLUIS_SESSION_SECRET" not in settings.connector_secrets
    assert "s3cret" not in repr(settings)
    assert settings.resolved_connectors_file == tmp_path / "connectors.json"


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"type": "api_key", "key": "inline"}, "secrets do not belong in the configuration file"),
        ({"type": "api_key", "key_ref": "KLUIS_SESSION_SECRET"}, "must name an environment variable"),
        ({"type": "api_key", "key_ref": "KLUIS_CONNECTOR_SECRET_NOT_SET"}, "KLUIS_CONNECTOR_SECRET_NOT_SET"),
        (
            {
                "type": "oauth_client_credentials",
                "token_url": "http://127.0.0.1:9/token",
                "client_id": "kluis",
                "client_secret": "inline",
            },
            "use client_secret_ref",
        ),
    ],
)
def test_secrets_come_from_the_environment_never_from_the_file(auth: dict[str, Any], message: str) -> None:
    config = {"tenants": {TENANT: {"brp": {"kind": "haal-centraal-brp", "base_url": "x", "auth": auth}}}}
    available = {"KLUIS_SESSION_SECRET": SecretStr("session"), SECRET_ENV: SecretStr("test-key")}

    with pytest.raises(ConnectorConfigError) as raised:
        resolve_secrets(config, available)

    assert message in str(raised.value)
    assert "inline" not in str(raised.value) and "session" not in str(raised.value)


def test_a_missing_or_broken_file_is_named_with_the_setting_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ConnectorConfigError, match="KLUIS_CONNECTORS_FILE"):
        read_config(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"tenants": ', encoding="utf-8")
    with pytest.raises(ConnectorConfigError, match="not valid JSON"):
        read_config(broken)


def test_a_missing_configuration_fails_the_import_and_is_audited(
    kluis: Kluis, standin: StandinServer
) -> None:
    kluis.config_file.unlink()
    with kluis.services.db.session() as s:
        kluis.services.vault.add_resident(s, operator(), kluis.tenant, "999970616")

    with pytest.raises(ConnectorConfigError):
        import_one(kluis.services, TENANT, "999970616", "brp", operator(), create_resident=False)

    [failed] = kluis.audit("vault:record:import_failed")
    assert failed["reason"] == "config_invalid"
    assert standin.state.recorded("personen") == []


def test_production_refuses_plain_http_sources(kluis: Kluis) -> None:
    message = registry_error(kluis, Settings(env="production"))
    assert "HTTPS" in message


def test_another_tenants_mistake_does_not_break_this_tenants_imports(
    kluis: Kluis, standin: StandinServer
) -> None:
    broken: dict[str, Any] = {"kind": "haal-centraal-brp", "base_url": "http://127.0.0.1:9/brp"}
    broken["auth"] = {"type": "api_key", "key_ref": "KLUIS_CONNECTOR_SECRET_NOT_SET"}
    config = {"tenants": {TENANT: {"brp": brp_source(standin)}, "gemeente-b": {"brp": broken}}}
    kluis.config_file.write_text(json.dumps(config), encoding="utf-8")

    imported = import_one(kluis.services, TENANT, "999970616", "brp", operator(), create_resident=True)

    assert imported.summary.version == 1


def test_an_invalid_source_configuration_names_the_place_not_values(
    kluis: Kluis, standin: StandinServer
) -> None:
    kluis.configure({"brp": brp_source(standin, timeout=-1)})
    message = registry_error(kluis)
    assert "tenants.gemeente-a.brp" in message and "timeout" in message
    assert "test-key" not in message

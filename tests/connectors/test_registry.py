"""The registry of configured connectors, built from plain JSON config as the shell will load it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors import (
    BRP_PERSOON,
    BrpPersonenConnector,
    ConnectorConfigError,
    ConnectorRegistry,
    JsonSourceConnector,
    UnknownSourceError,
)
from tests.connectors.conftest import FakeTime
from tests.connectors.test_json_source import INKOMEN_MAPPING, INKOMEN_SCHEMA
from tests.support.brp_standin import StandinServer


def config_for(standin: StandinServer) -> dict[str, Any]:
    return {
        "tenants": {
            "gemeente-utrecht": {
                "brp": {
                    "kind": "haal-centraal-brp",
                    "base_url": standin.brp_url,
                    "auth": {"type": "api_key", "key_ref": "brp-utrecht"},
                    "timeout": 5,
                    "retry": {"max_attempts": 2, "base_delay": 0.1},
                    "circuit": {"failure_threshold": 3, "reset_timeout": 60},
                },
                "inkomen": {
                    "kind": "json",
                    "category": "inkomen",
                    "url": standin.base_url + "/bronnen/inkomen/{bsn}",
                    "mapping": INKOMEN_MAPPING,
                    "auth": {
                        "type": "oauth_client_credentials",
                        "token_url": standin.token_url,
                        "client_id": "kluis",
                        "client_secret_ref": "inkomen-secret",
                    },
                },
            },
            "gemeente-den-haag": {
                "brp": {
                    "kind": "haal-centraal-brp",
                    "base_url": standin.brp_url,
                    "gemeente_van_inschrijving": "0518",
                    "auth": {"type": "api_key", "key": "test-key"},
                }
            },
        }
    }


SECRETS = {"brp-utrecht": "test-key", "inkomen-secret": "kluis-secret"}


@pytest.fixture
def registry(
    standin: StandinServer, brp_schema: dict[str, Any], fake_time: FakeTime, http: httpx.Client
) -> Iterator[ConnectorRegistry]:
    with ConnectorRegistry.from_config(
        config_for(standin),
        schemas={BRP_PERSOON: brp_schema, "inkomen": INKOMEN_SCHEMA},
        secrets=SECRETS,
        client=http,
        sleep=fake_time.sleep,
        monotonic=fake_time.monotonic,
        wall_clock=fake_time.wall_clock,
    ) as built:
        yield built


def test_connectors_per_tenant_and_source(registry: ConnectorRegistry, fake_time: FakeTime) -> None:
    assert registry.tenants() == ("gemeente-utrecht", "gemeente-den-haag")
    assert registry.sources("gemeente-utrecht") == ("brp", "inkomen")
    assert isinstance(registry.get("gemeente-utrecht", "brp"), BrpPersonenConnector)
    assert isinstance(registry.for_category("gemeente-utrecht", "inkomen"), JsonSourceConnector)

    record = registry.for_category("gemeente-utrecht", BRP_PERSOON).fetch("999970616", BRP_PERSOON)
    assert (record.source, record.fetched_at) == ("brp", fake_time.wall)
    income = registry.get("gemeente-utrecht", "inkomen").fetch("999970616", "inkomen")
    assert income.data["jaar"] == 2025


def test_each_tenant_uses_its_own_configuration(registry: ConnectorRegistry, standin: StandinServer) -> None:
    registry.get("gemeente-den-haag", "brp").fetch("999970616", BRP_PERSOON)

    [request] = standin.state.recorded("personen")
    assert request.body["gemeenteVanInschrijving"] == "0518"


def test_unknown_tenant_source_or_category(registry: ConnectorRegistry) -> None:
    with pytest.raises(UnknownSourceError):
        registry.get("gemeente-amsterdam", "brp")
    with pytest.raises(UnknownSourceError):
        registry.get("gemeente-utrecht", "zaken")
    with pytest.raises(UnknownSourceError):
        registry.for_category("gemeente-den-haag", "inkomen")
    assert registry.sources("gemeente-amsterdam") == ()


def test_from_json_reads_a_config_file(standin: StandinServer, brp_schema: dict[str, Any]) -> None:
    text = json.dumps(config_for(standin))

    with ConnectorRegistry.from_json(
        text, schemas={BRP_PERSOON: brp_schema, "inkomen": INKOMEN_SCHEMA}, secrets=SECRETS
    ) as registry:
        assert (
            registry.get("gemeente-utrecht", "brp").fetch("999970616", BRP_PERSOON).data["naam"]["voornamen"]
            == "Kim"
        )


def _build(config: Any, *, schemas: dict[str, Any] | None = None, **kwargs: Any) -> ConnectorRegistry:
    return ConnectorRegistry.from_config(
        config, schemas=schemas or {BRP_PERSOON: {}, "inkomen": {}}, **kwargs
    )


def _brp(**overrides: Any) -> dict[str, Any]:
    source = {"kind": "haal-centraal-brp", "base_url": "https://brp.example/haalcentraal/api/brp"} | overrides
    return {"tenants": {"gemeente-utrecht": {"brp": source}}}


@pytest.mark.parametrize(
    ("config", "where"),
    [
        (_brp(kind="soap"), "kind"),
        (_brp(base_url="ftp://brp.example"), "base_url"),
        (_brp(auth={"type": "api_key"}), "auth"),
        (_brp(auth={"type": "api_key", "key": "k", "key_ref": "r"}), "auth"),
        (_brp(retry={"max_attempts": 0}), "retry.max_attempts"),
        (_brp(gemeente_van_inschrijving="Utrecht"), "gemeente_van_inschrijving"),
        (_brp(colour="blue"), "colour"),
        ({"tenants": {"Gemeente Utrecht": {}}}, "tenants"),
    ],
)
def test_invalid_configuration_says_where(config: dict[str, Any], where: str) -> None:
    with pytest.raises(ConnectorConfigError) as invalid:
        _build(config)

    assert where in str(invalid.value)


def test_secrets_never_appear_in_configuration_errors() -> None:
    config = _brp(auth={"type": "api_key", "key": "s3cr3t-key", "key_ref": "also"})

    with pytest.raises(ConnectorConfigError) as invalid:
        _build(config)

    assert "s3cr3t-key" not in str(invalid.value)


def test_a_missing_secret_or_schema_is_a_configuration_error(brp_schema: dict[str, Any]) -> None:
    with pytest.raises(ConnectorConfigError, match="secret reference 'nope'"):
        _build(_brp(auth={"type": "api_key", "key_ref": "nope"}), schemas={BRP_PERSOON: brp_schema})
    with pytest.raises(ConnectorConfigError, match="no schema"):
        _build(_brp(), schemas={"inkomen": INKOMEN_SCHEMA})
    with pytest.raises(ConnectorConfigError, match="not a valid JSON Schema"):
        _build(_brp(), schemas={BRP_PERSOON: {"type": "no-such-type"}})
    with pytest.raises(ConnectorConfigError, match="not valid JSON"):
        ConnectorRegistry.from_json("{", schemas={})


def test_https_can_be_required(brp_schema: dict[str, Any], standin: StandinServer) -> None:
    _build(_brp(), schemas={BRP_PERSOON: brp_schema}, require_https=True).close()
    with pytest.raises(ConnectorConfigError, match="HTTPS"):
        _build(_brp(base_url=standin.brp_url), schemas={BRP_PERSOON: brp_schema}, require_https=True)


def test_two_sources_for_one_category_are_refused(brp_schema: dict[str, Any]) -> None:
    source = {"kind": "haal-centraal-brp", "base_url": "https://brp.example/api"}
    config = {"tenants": {"gemeente-utrecht": {"brp": source, "brp-twee": source}}}

    with pytest.raises(ConnectorConfigError, match="two sources"):
        _build(config, schemas={BRP_PERSOON: brp_schema})

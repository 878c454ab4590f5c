"""The configured connectors: tenant slug → source name → connector.

Built once by the shell's composition root from a plain config (see :mod:`connectors.config`),
the category schemas the vault owns, and the secrets the shell holds. The clocks, ``sleep`` and
the HTTP transport are parameters so tests (and the demo) can run it without the network.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError

from connectors.auth import ApiKeyAuth, ClientCredentialsAuth, NoAuth, SourceAuth
from connectors.brp import BRP_PERSOON, BrpPersonenConnector
from connectors.client import SourceClient
from connectors.config import (
    ApiKeyConfig,
    AuthConfig,
    BrpSourceConfig,
    ClientCredentialsConfig,
    JsonSourceConfig,
    RegistryConfig,
)
from connectors.errors import ConnectorConfigError, UnknownSourceError
from connectors.interfaces import SourceConnector
from connectors.json_source import JsonSourceConnector
from connectors.resilience import (
    CircuitBreaker,
    Monotonic,
    Sleep,
    WallClock,
    system_monotonic,
    system_sleep,
    system_wall_clock,
)


class ConnectorRegistry:
    """Looks up the connector for a tenant's source or category; closes them all at the end."""

    def __init__(self, connectors: Mapping[str, Mapping[str, SourceConnector]]) -> None:
        self._connectors = MappingProxyType(
            {tenant: MappingProxyType(dict(sources)) for tenant, sources in connectors.items()}
        )
        self._by_category: dict[tuple[str, str], SourceConnector] = {}
        for tenant, sources in self._connectors.items():
            for connector in sources.values():
                for category in connector.categories:
                    if (tenant, category) in self._by_category:
                        raise ConnectorConfigError(
                            f"tenant {tenant!r} has two sources for category {category!r}"
                        )
                    self._by_category[tenant, category] = connector

    @classmethod
    def from_json(cls, text: str | bytes, **kwargs: Any) -> ConnectorRegistry:
        """:meth:`from_config` for JSON text (a config file's content)."""
        try:
            config = json.loads(text)
        except ValueError:
            raise ConnectorConfigError("the connector configuration is not valid JSON") from None
        return cls.from_config(config, **kwargs)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        schemas: Mapping[str, Mapping[str, Any]],
        secrets: Mapping[str, str] | None = None,
        require_https: bool = False,
        client: httpx.Client | None = None,
        sleep: Sleep = system_sleep,
        monotonic: Monotonic = system_monotonic,
        wall_clock: WallClock = system_wall_clock,
        rng: random.Random | None = None,
    ) -> ConnectorRegistry:
        """Build every configured connector.

        ``schemas`` maps a category to its JSON Schema; ``secrets`` resolves ``key_ref`` and
        ``client_secret_ref``; ``require_https`` refuses plain-HTTP sources (set it in production).
        ``client`` is the transport seam: one :class:`httpx.Client` shared by every connector (and
        not closed by them); by default each source gets its own connection pool.
        Raises :class:`ConnectorConfigError`, whose message names where the problem is, not values.
        """
        try:
            parsed = RegistryConfig.model_validate(config)
        except ValidationError as exc:
            where = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            raise ConnectorConfigError(f"invalid connector configuration: {where}") from None
        factory = _Factory(
            schemas=schemas,
            secrets=secrets or {},
            require_https=require_https,
            client=client,
            sleep=sleep,
            monotonic=monotonic,
            wall_clock=wall_clock,
            rng=rng,
        )
        built: dict[str, dict[str, SourceConnector]] = {}
        try:
            for tenant, sources in parsed.tenants.items():
                built[tenant] = {}
                for source, source_config in sources.items():
                    built[tenant][source] = factory.build(source, source_config)
            return cls(built)
        except BaseException:
            for sources_built in built.values():
                for connector in sources_built.values():
                    connector.close()
            raise

    def tenants(self) -> tuple[str, ...]:
        return tuple(self._connectors)

    def sources(self, tenant: str) -> tuple[str, ...]:
        return tuple(self._connectors.get(tenant, {}))

    def get(self, tenant: str, source: str) -> SourceConnector:
        try:
            return self._connectors[tenant][source]
        except KeyError:
            raise UnknownSourceError("no such source for this tenant") from None

    def for_category(self, tenant: str, category: str) -> SourceConnector:
        try:
            return self._by_category[tenant, category]
        except KeyError:
            raise UnknownSourceError("no source for this category and tenant") from None

    def close(self) -> None:
        for sources in self._connectors.values():
            for connector in sources.values():
                connector.close()

    def __enter__(self) -> ConnectorRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Factory:
    def __init__(
        self,
        *,
        schemas: Mapping[str, Mapping[str, Any]],
        secrets: Mapping[str, str],
        require_https: bool,
        client: httpx.Client | None,
        sleep: Sleep,
        monotonic: Monotonic,
        wall_clock: WallClock,
        rng: random.Random | None,
    ) -> None:
        self._schemas = schemas
        self._secrets = secrets
        self._require_https = require_https
        self._client = client
        self._sleep = sleep
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._rng = rng

    def build(self, name: str, config: BrpSourceConfig | JsonSourceConfig) -> SourceConnector:
        category = BRP_PERSOON if isinstance(config, BrpSourceConfig) else config.category
        schema = self._schemas.get(category)
        if schema is None:
            raise ConnectorConfigError(f"no schema for category {category!r}")
        self._check_url(config.base_url if isinstance(config, BrpSourceConfig) else config.url)
        client = SourceClient(
            name=name,
            auth=self._auth(config.auth),
            retry=config.retry.policy(),
            breaker=CircuitBreaker(
                failure_threshold=config.circuit.failure_threshold,
                reset_timeout=config.circuit.reset_timeout,
                monotonic=self._monotonic,
            ),
            timeout=config.timeout,
            client=self._client,
            sleep=self._sleep,
            wall_clock=self._wall_clock,
            rng=self._rng,
        )
        try:
            if isinstance(config, BrpSourceConfig):
                return BrpPersonenConnector(
                    name=name,
                    base_url=config.base_url,
                    client=client,
                    schema=schema,
                    gemeente_van_inschrijving=config.gemeente_van_inschrijving,
                    wall_clock=self._wall_clock,
                )
            return JsonSourceConnector(
                name=name,
                category=config.category,
                url_template=config.url,
                client=client,
                schema=schema,
                mapping=config.mapping,
                method=config.method,
                body_template=config.body,
                not_found_statuses=config.not_found_statuses,
                wall_clock=self._wall_clock,
            )
        except BaseException:
            client.close()
            raise

    def _auth(self, config: AuthConfig) -> SourceAuth:
        if isinstance(config, ApiKeyConfig):
            return ApiKeyAuth(self._secret(config.key, config.key_ref), header=config.header)
        if isinstance(config, ClientCredentialsConfig):
            self._check_url(config.token_url)
            return ClientCredentialsAuth(
                token_url=config.token_url,
                client_id=config.client_id,
                client_secret=self._secret(config.client_secret, config.client_secret_ref),
                scope=config.scope,
                method=config.method,
                monotonic=self._monotonic,
            )
        return NoAuth()

    def _secret(self, inline: SecretStr | None, ref: str | None) -> str:
        if inline is not None:
            return inline.get_secret_value()
        assert ref is not None  # the config model guarantees one of the two
        try:
            return self._secrets[ref]
        except KeyError:
            raise ConnectorConfigError(f"unknown secret reference {ref!r}") from None

    def _check_url(self, url: str) -> None:
        if self._require_https and not url.startswith("https://"):
            raise ConnectorConfigError("sources must be reached over HTTPS")

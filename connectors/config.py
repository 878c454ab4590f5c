"""The connector configuration: plain JSON, so the shell can keep it in a file or in settings.

    {"tenants": {"gemeente-utrecht": {
        "brp": {"kind": "haal-centraal-brp", "base_url": "https://…/haalcentraal/api/brp",
                "auth": {"type": "api_key", "key_ref": "brp-utrecht"}},
        "inkomen": {"kind": "json", "category": "inkomen", "method": "POST",
                    "url": "https://…/inkomen", "body": {"bsn": "{bsn}"},
                    "mapping": {"/jaar": "/data/jaar", "/regels": "/data/regels"},
                    "auth": {"type": "oauth_client_credentials", "token_url": "https://…/token",
                             "client_id": "kluis", "client_secret_ref": "inkomen-secret"}}}}}

Secrets may be written inline (``key``, ``client_secret``) but belong outside the file: a ``*_ref``
names an entry of the ``secrets`` mapping the shell passes in (from its settings or a vault).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.resilience import RetryPolicy

_HTTP_URL = r"^https?://[^\s/?#]+[^\s]*$"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RetryConfig(_Model):
    max_attempts: int = Field(default=4, ge=1, le=10)
    base_delay: float = Field(default=0.2, ge=0)
    max_delay: float = Field(default=5.0, ge=0)
    max_retry_after: float = Field(default=30.0, ge=0)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            max_retry_after=self.max_retry_after,
        )


class CircuitConfig(_Model):
    failure_threshold: int = Field(default=5, ge=1)
    reset_timeout: float = Field(default=30.0, ge=0)


class NoAuthConfig(_Model):
    type: Literal["none"] = "none"


class ApiKeyConfig(_Model):
    type: Literal["api_key"]
    header: str = Field(default="X-API-KEY", pattern=r"^[A-Za-z0-9-]{1,64}$")
    key: SecretStr | None = None
    key_ref: str | None = None

    @model_validator(mode="after")
    def _one_key(self) -> ApiKeyConfig:
        if (self.key is None) == (self.key_ref is None):
            raise ValueError("give exactly one of key and key_ref")
        return self


class ClientCredentialsConfig(_Model):
    type: Literal["oauth_client_credentials"]
    token_url: str = Field(pattern=_HTTP_URL)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_ref: str | None = None
    scope: str | None = None
    method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"

    @model_validator(mode="after")
    def _one_secret(self) -> ClientCredentialsConfig:
        if (self.client_secret is None) == (self.client_secret_ref is None):
            raise ValueError("give exactly one of client_secret and client_secret_ref")
        return self


AuthConfig = Annotated[NoAuthConfig | ApiKeyConfig | ClientCredentialsConfig, Field(discriminator="type")]


class _SourceConfig(_Model):
    auth: AuthConfig = NoAuthConfig()
    timeout: float = Field(default=10.0, gt=0, le=120)
    retry: RetryConfig = RetryConfig()
    circuit: CircuitConfig = CircuitConfig()


class BrpSourceConfig(_SourceConfig):
    kind: Literal["haal-centraal-brp"]
    base_url: str = Field(pattern=_HTTP_URL)
    gemeente_van_inschrijving: str | None = Field(default=None, pattern=r"^[0-9]{4}$")


class JsonSourceConfig(_SourceConfig):
    kind: Literal["json"]
    category: str = Field(min_length=1)
    url: str = Field(pattern=_HTTP_URL)
    method: Literal["GET", "POST"] = "GET"
    body: dict[str, Any] | None = None
    mapping: dict[str, str]
    not_found_statuses: tuple[int, ...] = (404,)


SourceConfig = Annotated[BrpSourceConfig | JsonSourceConfig, Field(discriminator="kind")]

_SLUG = r"^[a-z0-9]+(-[a-z0-9]+)*$"


class RegistryConfig(_Model):
    tenants: dict[
        Annotated[str, Field(pattern=_SLUG)],
        dict[Annotated[str, Field(pattern=_SLUG)], SourceConfig],
    ]

"""Configuration checks: ``kluis doctor`` prints them all; production refuses to start on any."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from consent.models import Client
from kluis.settings import Settings
from kluis.wiring import Services


def secret_clients(services: Services) -> list[str]:
    """Production refuses client_secret clients unless explicitly allowed (private_key_jwt instead)."""
    settings = services.settings
    if not settings.is_production or settings.allow_client_secret_in_production:
        return []
    try:
        with services.db.read_session() as session:
            count = session.exec(
                select(func.count()).select_from(Client).where(col(Client.auth_method) != "private_key_jwt")
            ).one()
    except SQLAlchemyError:
        return ["the database cannot be read (run `kluis init`, check KLUIS_DATABASE_URL)"]
    if count:
        return [
            f"{count} department client(s) authenticate with a client secret; re-register them with "
            "--jwks (private_key_jwt) or set KLUIS_ALLOW_CLIENT_SECRET_IN_PRODUCTION=true"
        ]
    return []


# PostgreSQL settings without which a commit is not durable: the data API answers only after its
# audit entry committed, which means nothing if the commit can be lost in a crash. The first two are
# the server's storage; a managed service with a storage layer of its own may report them off.
STORAGE_SETTINGS = {"fsync": {"on"}, "full_page_writes": {"on"}}
COMMIT_SETTINGS = {"synchronous_commit": {"on", "remote_apply", "remote_write", "local"}}


def durability(services: Services) -> list[str]:
    """Production refuses a database whose commits can be lost in a crash (power loss, a killed
    server): SQLite below ``synchronous=FULL``; PostgreSQL with ``synchronous_commit`` off, or with
    ``fsync`` or ``full_page_writes`` off unless ``KLUIS_POSTGRES_STORAGE_IS_DURABLE`` says the
    service's storage makes up for it; as the server, the database or the role sets them for Kluis's
    connections (``SHOW`` gives what a connection of Kluis gets)."""
    settings = services.settings
    if not settings.is_production:
        return []
    if services.db.is_sqlite:
        if settings.sqlite_synchronous != "FULL":
            return ["KLUIS_SQLITE_SYNCHRONOUS must be FULL in production: at NORMAL a commit can be lost"]
        return []
    required = dict(COMMIT_SETTINGS)
    if not settings.postgres_storage_is_durable:
        required.update(STORAGE_SETTINGS)
    problems: list[str] = []
    try:
        with services.db.read_session() as session:
            for name, durable in required.items():
                value = str(session.execute(text(f"SHOW {name}")).scalar_one())
                if value not in durable:
                    problems.append(
                        f"PostgreSQL {name} is {value} for Kluis's connections: a committed audit entry can "
                        f"be lost in a crash after its data has left; set {name} = on"
                        + (
                            ""
                            if name in COMMIT_SETTINGS
                            else " (or KLUIS_POSTGRES_STORAGE_IS_DURABLE=true "
                            "on a managed service whose storage makes commits durable)"
                        )
                    )
    except SQLAlchemyError as exc:
        return [f"PostgreSQL's durability settings cannot be read ({type(exc).__name__}): is it reachable?"]
    return problems


# Checks that need the database; others can be appended by other parts of the shell.
EXTRA_CHECKS: list[Callable[[Services], list[str]]] = [secret_clients, durability]


def settings_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    if not settings.is_production:
        return problems
    if settings.resolved_database_url.startswith("sqlite") and not settings.allow_sqlite_in_production:
        problems.append(
            "SQLite is a single-node database: set KLUIS_DATABASE_URL to PostgreSQL "
            "(or KLUIS_ALLOW_SQLITE_IN_PRODUCTION=true for a single-node install)"
        )
    if (
        not settings.session_secret
        or len(settings.session_secret) < 32
        or settings.session_secret in {"changeme", "change-me", "secret", "development"}
    ):
        problems.append("KLUIS_SESSION_SECRET must be set to a random value of at least 32 characters")
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if len(token) < 32 and not settings.allow_public_metrics_in_production:
        problems.append(
            "KLUIS_METRICS_TOKEN must be set to a random value of at least 32 characters (Prometheus "
            "sends it as a bearer token), or KLUIS_ALLOW_PUBLIC_METRICS_IN_PRODUCTION=true where "
            "/metrics is reachable from the internal network only"
        )
    if not settings.issuer.startswith("https://"):
        problems.append("KLUIS_ISSUER must be an https:// URL in production")
    if settings.public_base_url and not settings.public_base_url.startswith("https://"):
        problems.append("KLUIS_BASE_URL must be an https:// URL in production")
    return problems


def all_problems(services: Services) -> list[str]:
    problems = settings_problems(services.settings)
    key_problems = services.keys.check()
    problems.extend(key_problems)
    for check in EXTRA_CHECKS:
        problems.extend(check(services))
    return problems

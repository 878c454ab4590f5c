"""Database engines and units of work for SQLite (embedded default) and PostgreSQL (multi-node).

SQLite runs in WAL mode with foreign keys on. Python's sqlite3 module opens transactions lazily and
only before writes, which makes "read, then write" transactions fail with SQLITE_BUSY under
concurrency; we therefore take transaction control ourselves: write units of work start with
``BEGIN IMMEDIATE`` (the database write lock is taken up front, so sequence numbers assigned inside
are serialised), read units of work with a plain deferred ``BEGIN``. On PostgreSQL both kinds share
one engine; serialisation of the audit log is done by ``SELECT ... FOR UPDATE`` in ``audit``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session


def _sqlite_engine(url: str, *, begin: str, synchronous: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see module docstring
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


class Database:
    """The engines of one deployment and the units of work on them."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL", pool: bool = True) -> None:
        self.url = url
        self.sqlite_synchronous = sqlite_synchronous  # for a process that opens its own connection
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            path = make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.write_engine = _sqlite_engine(url, begin="BEGIN IMMEDIATE", synchronous=sqlite_synchronous)
            self.read_engine = _sqlite_engine(url, begin="BEGIN", synchronous=sqlite_synchronous)
        else:
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if not pool:
                kwargs = {"poolclass": NullPool}
            self.write_engine = create_engine(url, **kwargs)
            self.read_engine = self.write_engine

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def dedicated_connection(self, *, write: bool = False) -> Any:
        """A DB-API connection (sqlite3 or psycopg) of the caller's own, taken out of the pool for
        good, opened with the engine's connect hooks (SQLite's pragmas): for a caller that keeps
        one for its lifetime, where a pool check-out and its reset cost more than its statement
        (the data API's look-ups, the audit writer process). The caller closes it."""
        proxy = (self.write_engine if write else self.read_engine).raw_connection()
        connection = proxy.driver_connection
        proxy.detach()  # ours now; the pool opens another for itself
        return connection

    async def connect_async(self, *, autocommit: bool = False) -> Any:
        """A psycopg ``AsyncConnection`` to this PostgreSQL database, for work awaited on the event
        loop (the data API's look-up and group commit); it belongs to the loop that opened it."""
        import psycopg

        url = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        return await psycopg.AsyncConnection.connect(url, autocommit=autocommit)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write unit of work. Services commit explicitly; anything uncommitted is rolled back."""
        # Closing the session returns its connection with a rollback of anything uncommitted; unlike
        # session.rollback() it leaves loaded objects usable (detached, not expired) for the caller.
        with Session(self.write_engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read-only unit of work (never blocks writers on SQLite)."""
        with Session(self.read_engine, expire_on_commit=False) as session:
            yield session

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent).

        On SQLite, also gather the planner statistics once if there are none at all (a database
        from before this step): without them SQLite takes the search indexes for worse than a walk
        of the tenant's primary key. ``dispose`` keeps them current afterwards.
        """
        with self.write_engine.begin() as connection:
            config = alembic_config(self.url)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            if self.is_sqlite and not connection.exec_driver_sql(_SQLITE_STAT1).first():
                connection.exec_driver_sql("ANALYZE")

    def dispose(self) -> None:
        """Close every pooled connection. On SQLite, each runs ``PRAGMA optimize`` first, as SQLite
        advises for long-lived connections: it re-analyses the tables this connection's queries used
        whose statistics are missing or have fallen 25-fold behind the table (SQLite 3.40 looks at no
        others, so it has to be the connection that ran the queries). Usually a no-op; when not, a
        full ANALYZE of those tables (~2 s per million audit entries)."""
        if self.is_sqlite:
            for engine in (self.write_engine, self.read_engine):
                if not event.contains(engine, "close", _sqlite_optimize):
                    event.listen(engine, "close", _sqlite_optimize)
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


_SQLITE_STAT1 = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'"


def _sqlite_optimize(dbapi_connection: Any, _record: Any) -> None:
    # No analysis_limit: a partial ANALYZE reads only the first rows of each index, and the first
    # rows of ix_audit_entry_actor are one client's, so it would call an actor a whole tenant.
    # Best effort: a connection closed after an error, or a busy database, tries again next time.
    with suppress(sqlite3.Error):
        dbapi_connection.execute("PRAGMA optimize")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def close_now(connection: Any) -> None:
    """Close an ``AsyncConnection`` without a loop to await on (``close()`` properly awaits)."""
    if connection is not None and not connection.closed:
        connection.pgconn.finish()

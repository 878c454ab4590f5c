"""Plain SQL on the DBAPI connection under a SQLAlchemy ``Connection``, for the few hot statements.

Same connection, same transaction; none of SQLAlchemy's per-statement work (expression building,
compiled-cache look-up, events, row objects), which cost more than the statements themselves on
the append path, in proofs and in verification. Only table names, column names and parameter
marks are ever put into the SQL text; every value is a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection


def mark(conn: Connection) -> str:
    """The DBAPI parameter mark: ``%s`` for psycopg, ``?`` for sqlite3."""
    return "%s" if conn.dialect.name == "postgresql" else "?"


def cursor(conn: Connection) -> Any:
    dbapi_connection: Any = conn.connection.dbapi_connection
    return dbapi_connection.cursor()


def fetch_all(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    raw = cursor(conn)
    try:
        raw.execute(sql, params)
        return list(raw.fetchall())
    finally:
        raw.close()

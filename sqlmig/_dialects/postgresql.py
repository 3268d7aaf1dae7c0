"""PostgreSQL: a session advisory lock per history table, and a connection check.

The lock is held by the runner's server session, so the server frees a
killed runner's lock when that session ends. PostgreSQL 14+ is told to check
every second, even in the middle of a statement, whether the client is still
there, so the session of a killed runner ends (and frees the lock) within
seconds. DDL is transactional: a failed step leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from .._locking import MigrationLock
from .base import DialectProfile
from .sql_syntax import SqlSyntax

__all__ = ["POSTGRESQL", "AdvisoryLock", "PostgreSQLProfile"]


@dataclass(frozen=True, eq=False)
class PostgreSQLProfile(DialectProfile):
    """PostgreSQL's mechanics: sqlmig's own statements through libpq, where psycopg runs."""

    def send_own(self, conn: Connection, statement: str, *, first: bool = False) -> bool:
        """Send ``statement`` through psycopg's libpq connection itself (``PGconn.exec_``).

        The savepoint that watches each step is taken and released so, in a
        fraction of the client's time a cursor takes, and taken in the
        round trip that begins the transaction (psycopg would send its
        ``BEGIN`` alone first). Any other driver sends them as the base does.
        """
        dbapi: Any = conn.connection.dbapi_connection
        pgconn = getattr(dbapi, "pgconn", None)
        if pgconn is None or conn.dialect.is_async or pgconn.pipeline_status:
            return super().send_own(conn, statement, first=first)
        psycopg = conn.dialect.loaded_dbapi
        pq = psycopg.pq
        idle = pgconn.transaction_status == pq.TransactionStatus.IDLE
        if first and idle and not dbapi.autocommit:
            statement = f"{_begin_statement(dbapi, psycopg.IsolationLevel)}; {statement}"
        result = pgconn.exec_(statement.encode(dbapi.info.encoding))
        return result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)

    def send_own_each(
        self, conn: Connection, statements: Sequence[str]
    ) -> tuple[int, DBAPIError | None, int | None]:
        """See :meth:`DialectProfile.send_own_each`: through psycopg's libpq connection,
        all in one round trip (the server stops at the first error, and says which by
        the results it sends before it). Any other driver sends them as the base does.
        """
        dbapi: Any = conn.connection.dbapi_connection
        pgconn = getattr(dbapi, "pgconn", None)
        if pgconn is None or conn.dialect.is_async or pgconn.pipeline_status:
            return super().send_own_each(conn, statements)
        psycopg = conn.dialect.loaded_dbapi
        ok = (psycopg.pq.ExecStatus.COMMAND_OK, psycopg.pq.ExecStatus.TUPLES_OK)
        encoding = dbapi.info.encoding
        done = 0
        rows = None
        try:
            pgconn.send_query("; ".join(statements).encode(encoding))
            refused = None
            while (result := pgconn.get_result()) is not None:  # one per statement run
                if refused is None and result.status in ok:
                    done += 1
                    rows = result.command_tuples
                elif refused is None:
                    refused = result
            if refused is None:
                return done, None, rows
            raise psycopg.errors.error_from_result(refused, encoding=encoding)
        except psycopg.Error as exc:  # refused, or the connection is gone
            statement = statements[min(done, len(statements) - 1)]
            gone = conn.dialect.is_disconnect(exc, dbapi, None)
            wrapped = DBAPIError.instance(
                statement,
                None,
                exc,
                psycopg.Error,
                connection_invalidated=gone,
                dialect=conn.dialect,
            )
            assert isinstance(wrapped, DBAPIError)  # a driver's error always is
            if gone and done:  # after the mark's release: as SQLAlchemy does on a statement
                conn.invalidate(wrapped)
            return done, wrapped, None

    def own_literal(self, value: str | int | bool | None) -> str | None:
        """See :meth:`DialectProfile.own_literal`: an ``E''`` string, read alike whatever
        ``standard_conforming_strings`` a step has set; None for text that is not ASCII
        (sent with parameters, in the client's encoding) or holds a NUL."""
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, int):
            return str(value)
        if not value.isascii() or "\x00" in value:
            return None
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"

    def recover_aborted(self, conn: Connection, savepoint: str) -> bool:
        """See :meth:`DialectProfile.recover_aborted`: only in a transaction the
        driver reports failed (psycopg, psycopg2; asked of the server otherwise)."""
        dbapi: Any = conn.connection.dbapi_connection
        info = getattr(dbapi, "info", None)
        status = getattr(info, "transaction_status", None)  # psycopg
        if status is None and callable(getattr(dbapi, "get_transaction_status", None)):
            status = dbapi.get_transaction_status()  # psycopg2
        if status is not None and int(status) != _IN_ERROR:
            return False
        return super().recover_aborted(conn, savepoint)


#: libpq's PQTRANS_INERROR: inside a transaction that an error aborted.
_IN_ERROR = 3


def _begin_statement(dbapi: Any, levels: Any) -> str:
    """The ``BEGIN`` psycopg would send, with the connection's isolation level and modes."""
    parts = ["BEGIN"]
    if dbapi.isolation_level is not None:
        parts.append("ISOLATION LEVEL " + levels(dbapi.isolation_level).name.replace("_", " "))
    if dbapi.read_only is not None:
        parts.append("READ ONLY" if dbapi.read_only else "READ WRITE")
    if dbapi.deferrable is not None:
        parts.append("DEFERRABLE" if dbapi.deferrable else "NOT DEFERRABLE")
    return " ".join(parts)


class AdvisoryLock(MigrationLock):
    """PostgreSQL ``pg_try_advisory_lock`` on a 64-bit key."""

    @property
    def id(self) -> int:
        return int.from_bytes(self.key[:8], "big", signed=True)

    def try_acquire(self, conn: Connection, *, transaction_scoped: bool) -> bool:
        fn = "pg_try_advisory_xact_lock" if transaction_scoped else "pg_try_advisory_lock"
        return bool(conn.execute(text(f"SELECT {fn}(:k)"), {"k": self.id}).scalar())

    def release(self, conn: Connection) -> bool:
        return bool(conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.id}).scalar())

    def holder(self, conn: Connection) -> str | None:
        unsigned = self.id & 0xFFFFFFFFFFFFFFFF
        pid = conn.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"
            ),
            {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF},
        ).scalar()
        return f"PostgreSQL process {pid}" if pid is not None else None


POSTGRESQL = PostgreSQLProfile(
    "postgresql",
    title="PostgreSQL",
    transactional_ddl=True,
    sql_syntax=SqlSyntax(escape_strings=True, nested_comments=True, dollar_quotes=True),
    lock=AdvisoryLock,
    caller_transaction_ok=True,
    driver_extra="postgresql",
    identity="SELECT current_database(), current_schema(), current_setting('search_path')",
    # pg_catalog's own: a step may have put a set_config() of its own on the path; no
    # column, as the path's names may not exist in a client_encoding a step has set
    restore_scope="SELECT FROM pg_catalog.set_config('search_path', {escaped}, false)",
    errors_abort_transaction=True,
    history_timestamp_tz=True,
    compares_server_defaults=True,
    reflects_foreign_key_options=True,
    # now() is the transaction's start, the same for every step of a caller's transaction
    history_now_sql="clock_timestamp()",
    # a tenant's schema first on search_path; pg_settings holds the value from before
    enter_tenant_schema=(
        "SELECT setting, set_config('search_path', :value, false), "
        "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :schema) "
        "FROM pg_settings WHERE name = 'search_path'"
    ),
    leave_tenant_schema="SELECT set_config('search_path', :value, false)",
    create_tenant_schema="CREATE SCHEMA IF NOT EXISTS {name}",
    script_tenant_schema="SET search_path TO {name}",
    session_settings=(("client_connection_check_interval", "1s"),),
    # pg_settings reads every value before set_config() runs: the row has the old one
    set_setting=(
        "SELECT setting, set_config(name, :value, :local) FROM pg_settings WHERE name = :name"
    ),
)

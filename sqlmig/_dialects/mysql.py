"""MySQL and MariaDB: a ``GET_LOCK`` named lock per history table; DDL commits itself.

The named lock is held by the runner's server session, so the server frees a
killed runner's lock. A schema is a database here, so the lock's key names
the history table's own schema. DDL commits implicitly: a step cannot be
rolled back, and a caller's open transaction would not survive one, so
failed steps follow the failed-row protocol, and no savepoint can prove a
step kept its transaction: after each step the driver's own copy of the
server's status flags (no round trip) tells whether it turned autocommit on
behind sqlmig's back. Changing a column restates all
of it, and a foreign key leaves an index of its name behind: ``sqlmig.ops``
reads the one and drops the other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

from .._locking import MigrationLock
from .base import DialectProfile, run_own
from .sql_syntax import SqlSyntax

__all__ = ["MYSQL", "MySQLProfile", "NamedLock"]

#: The server's status flag "each statement commits itself" (the protocol's
#: ``SERVER_STATUS_AUTOCOMMIT``), which every OK packet carries.
SERVER_STATUS_AUTOCOMMIT = 2
#: "Table '...' was not locked with LOCK TABLES".
ER_TABLE_NOT_LOCKED = 1100


class NamedLock(MigrationLock):
    """MySQL/MariaDB ``GET_LOCK`` on a name derived from the key."""

    @property
    def name(self) -> str:
        return "sqlmig_" + self.key.hex()[:40]

    def try_acquire(self, conn: Connection, *, transaction_scoped: bool) -> bool:
        return conn.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": self.name}).scalar() == 1

    def release(self, conn: Connection) -> bool:
        return conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": self.name}).scalar() == 1

    def holder(self, conn: Connection) -> str | None:
        cid = conn.execute(text("SELECT IS_USED_LOCK(:n)"), {"n": self.name}).scalar()
        return f"MySQL connection {cid}" if cid is not None else None


class MySQLProfile(DialectProfile):
    """MySQL's ``DATETIME`` keeps no fractions of a second unless told; autocommit is watched."""

    def kept_transaction(self, conn: Connection) -> bool:
        """False when a step turned autocommit on (through the driver's private parts).

        PyMySQL keeps the server status flags of the last reply in
        ``server_status`` (mysqlclient answers ``get_autocommit()`` from its
        own copy): reading them costs no round trip. The connection is set
        back to autocommit off, so later statements are not each committed.
        DDL's implicit commit also ends the transaction here, so only the
        autocommit flag can tell a step that lost it.
        """
        dbapi: Any = conn.connection.dbapi_connection
        status = getattr(dbapi, "server_status", None)
        if isinstance(status, int):
            on = bool(status & SERVER_STATUS_AUTOCOMMIT)
        elif callable(getattr(dbapi, "get_autocommit", None)):
            on = bool(dbapi.get_autocommit())
        else:
            return True
        if on:
            dbapi.autocommit(False)
        return not on

    def left_tables_locked(self, exc: DBAPIError) -> bool:
        """``ER_TABLE_NOT_LOCKED``: the session holds ``LOCK TABLES`` without the table."""
        args: tuple[Any, ...] = getattr(exc.orig, "args", ())
        return bool(args) and args[0] == ER_TABLE_NOT_LOCKED

    def unlock_tables(self, conn: Connection) -> None:
        """``UNLOCK TABLES``, sent once the step's transaction is rolled back (it commits
        what is open), so that the connection goes back to its pool without them."""
        run_own(conn, "UNLOCK TABLES")

    def indexes_expressions(self, conn: Connection) -> bool:
        """MySQL 8.0.13 and later index expressions; MariaDB does not."""
        dialect: Any = conn.dialect
        if getattr(dialect, "is_mariadb", False):
            return False
        return tuple(dialect.server_version_info or (8, 0, 13)) >= (8, 0, 13)

    def history_timestamp_type(self) -> TypeEngine[datetime]:
        from sqlalchemy.dialects.mysql import DATETIME  # only where MySQL runs

        return DATETIME(fsp=6)


MYSQL = MySQLProfile(
    "mysql",
    transactional_ddl=False,
    lock=NamedLock,
    caller_transaction_ok=False,
    driver_extra="mysql",
    identity="SELECT DATABASE(), DATABASE(), DATABASE()",
    restore_scope="USE {name}",
    schema_is_database=True,
    script_begin="START TRANSACTION",
    script_delimiter="//",
    # the default sql_mode: backslash escapes, "..." strings (unless ANSI_QUOTES)
    sql_syntax=SqlSyntax(
        backslash_escapes=True,
        double_quoted_strings=True,
        hash_comments=True,
        dash_comment_needs_blank=True,
        backquotes=True,
        executable_comments=True,
        nested_blocks=True,
    ),
    history_now_sql="UTC_TIMESTAMP(6)",  # DATETIME(6) keeps UTC
    missing_schema_hint=(
        "database {schema!r} (the schema setting) does not exist: create it "
        "(CREATE DATABASE {schema}), or fix schema"
    ),
    alter_column_restates_column=True,
    foreign_key_leaves_index=True,
    foreign_key_options=frozenset(),
)

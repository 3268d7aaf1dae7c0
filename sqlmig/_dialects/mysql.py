"""MySQL and MariaDB: a ``GET_LOCK`` named lock per history table; DDL commits itself.

The named lock is held by the runner's server session, so the server frees a
killed runner's lock. A schema is a database here, so the lock's key names
the history table's own schema. DDL commits implicitly: a step cannot be
rolled back, and a caller's open transaction would not survive one, so
failed steps follow the failed-row protocol. Changing a column restates all
of it, and a foreign key leaves an index of its name behind: ``sqlmig.ops``
reads the one and drops the other.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from .._locking import MigrationLock
from .base import DialectProfile

__all__ = ["MYSQL", "MySQLProfile", "NamedLock"]


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
    """MySQL's ``DATETIME`` keeps no fractions of a second unless told."""

    def history_timestamp_type(self) -> TypeEngine[datetime]:
        from sqlalchemy.dialects.mysql import DATETIME  # only where MySQL runs

        return DATETIME(fsp=6)


MYSQL = MySQLProfile(
    "mysql",
    transactional_ddl=False,
    lock=NamedLock,
    caller_transaction_ok=False,
    driver_extra="mysql",
    identity="SELECT DATABASE(), DATABASE()",
    schema_is_database=True,
    script_begin="START TRANSACTION",
    history_now_sql="UTC_TIMESTAMP(6)",  # DATETIME(6) keeps UTC
    missing_schema_hint=(
        "database {schema!r} (the schema setting) does not exist: create it "
        "(CREATE DATABASE {schema}), or fix schema"
    ),
    alter_column_restates_column=True,
    foreign_key_leaves_index=True,
)

"""The history table: its definition, reading it, adopting older tables, writing rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    inspect,
    literal_column,
    select,
    true,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql import Select
from sqlalchemy.types import TypeDecorator

from .migration import AppliedMigration, Migration

__all__ = ["History", "HistoryStore", "history_table"]

COLUMNS = ("version", "name", "applied_at", "checksum", "execution_ms", "success")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the backend keeps.

    Backends without time zones (SQLite, MySQL ``DATETIME(6)``) store naive UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import DATETIME  # only where MySQL is loaded already

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # a legacy SQLite TIMESTAMP the driver did not parse
            value = datetime.fromisoformat(value)
        moment: datetime = value
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def history_table(metadata: MetaData, name: str = "migrations", schema: str | None = None) -> Table:
    """The history table as a SQLAlchemy ``Table``, for querying it yourself."""
    return Table(
        name,
        metadata,
        Column("version", String(32), primary_key=True),
        Column("name", String(255), nullable=False),
        Column("applied_at", UTCDateTime(), nullable=False),
        Column("checksum", String(64)),
        Column("execution_ms", Integer),
        Column("success", Boolean, nullable=False, server_default=true()),
        schema=schema,
    )


@dataclass(frozen=True)
class History:
    """The history as read: its rows and what the table itself lacks."""

    rows: list[AppliedMigration]
    exists: bool
    missing_columns: tuple[str, ...] = ()

    @property
    def needs_adopting(self) -> bool:
        return bool(self.missing_columns)

    @property
    def successful(self) -> list[AppliedMigration]:
        return [row for row in self.rows if row.success]

    @property
    def failed(self) -> list[AppliedMigration]:
        return [row for row in self.rows if not row.success]


class HistoryStore:
    """Reads and writes one history table on a given connection."""

    def __init__(self, table: str = "migrations", schema: str | None = None) -> None:
        self.table = history_table(MetaData(), table, schema)
        t = self.table
        # built once: executing the same statement object reuses its cache key
        self._select_all: Select[Any] = select(literal_column("*")).select_from(t)
        self._insert = t.insert()
        self._contains = select(t.c.version).where(t.c.version == bindparam("v"))
        self._delete = t.delete().where(t.c.version == bindparam("v"))
        self._utc = UTCDateTime()

    @property
    def qualified_name(self) -> str:
        return self.table.fullname

    def read(self, conn: Connection) -> History:
        """Every row, oldest first. Writes nothing; a missing table reads as empty.

        One ``SELECT *``: its column names say what an older table lacks, so no
        column reflection is needed.
        """
        if not inspect(conn).has_table(self.table.name, schema=self.table.schema):
            return History([], exists=False)
        result = conn.execute(self._select_all)
        present = set(result.keys())
        missing = tuple(c for c in COLUMNS if c not in present)
        when = self._utc.process_result_value
        epoch = datetime.fromtimestamp(0, UTC)
        dialect = conn.dialect
        rows = [
            AppliedMigration(
                version=str(record["version"]),
                name=record["name"],
                applied_at=when(record["applied_at"], dialect) or epoch,
                checksum=record.get("checksum"),
                execution_ms=record.get("execution_ms"),
                success=bool(record.get("success", True)),
            )
            for record in result.mappings()
        ]
        rows.sort(key=lambda r: (r.applied_at, r.number))
        return History(rows, exists=True, missing_columns=missing)

    def create_or_adopt(self, conn: Connection, history: History) -> None:
        """Create the table, or add the columns an older runner's table lacks."""
        if not history.exists:
            conn.execute(CreateTable(self.table, if_not_exists=True))
            return
        compiler = conn.dialect.ddl_compiler(conn.dialect, CreateTable(self.table))
        prefix = conn.dialect.identifier_preparer.format_table(self.table)
        for name in history.missing_columns:
            spec = compiler.get_column_specification(self.table.c[name])
            conn.exec_driver_sql(f"ALTER TABLE {prefix} ADD {spec}")

    def record(
        self,
        conn: Connection,
        migration: Migration,
        *,
        execution_ms: int | None,
        success: bool = True,
    ) -> None:
        conn.execute(
            self._insert,
            {
                "version": migration.version,
                "name": migration.name,
                "applied_at": datetime.now(UTC),
                "checksum": migration.checksum,
                "execution_ms": execution_ms,
                "success": success,
            },
        )

    def mark_done(self, conn: Connection, version: str, execution_ms: int) -> None:
        conn.execute(
            self.table.update()
            .where(self.table.c.version == version)
            .values(success=True, execution_ms=execution_ms, applied_at=datetime.now(UTC))
        )

    def mark_failed(self, conn: Connection, version: str) -> None:
        conn.execute(
            self.table.update().where(self.table.c.version == version).values(success=False)
        )

    def set_checksum(self, conn: Connection, version: str, value: str | None) -> None:
        conn.execute(
            self.table.update().where(self.table.c.version == version).values(checksum=value)
        )

    def contains(self, conn: Connection, version: str) -> bool:
        return conn.execute(self._contains, {"v": version}).first() is not None

    def delete(self, conn: Connection, version: str) -> None:
        conn.execute(self._delete, {"v": version})

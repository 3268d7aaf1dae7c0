"""The history table: its definition, reading it, adopting older tables, writing rows.

The module is long because the table is one thing to read and write: its
columns and their types (UTC timestamps from the server's clock), reading it
in full with checks on what is found there, adopting the tables older
runners left, and the few statements that write rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cached_property
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
    select,
    true,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql import Delete, Select
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from ._dialects import DialectProfile, profile_named
from ._driver_errors import missing_schema, not_a_history_table
from ._errors import DirtyDatabase
from ._migration import AppliedMigration, Migration

__all__ = ["History", "HistoryStore", "history_table"]

COLUMNS = ("version", "name", "applied_at", "checksum", "execution_ms", "success")
#: the columns a table must have to be read (and adopted) as a history table
REQUIRED = ("version", "name", "applied_at")
#: the columns a new row takes values for, in order (``applied_at`` is the server's clock)
RECORDED = ("version", "name", "checksum", "execution_ms", "success")
#: a value's place in a statement, for each DB-API paramstyle
_MARKERS = {
    "qmark": "?",
    "format": "%s",
    "numeric": ":{n}",
    "numeric_dollar": "${n}",
    "named": ":{name}",
    "pyformat": "%({name})s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the backend keeps.

    Backends without time zones (SQLite, MySQL ``DATETIME(6)``) store naive UTC.
    """

    impl = DateTime(timezone=True)  # each database's own: its profile's history_timestamp_type
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(profile_named(dialect.name).history_timestamp_type())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value
        if profile_named(dialect.name).history_timestamp_tz:
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return to_utc(value)


class ServerNow(FunctionElement[datetime]):
    """The database server's clock, UTC with microseconds: what ``applied_at`` records.

    Never the client's clock: replicas whose clocks disagree still agree on
    which step was applied last. Its SQL is each database's own (its
    profile's ``history_now_sql``).
    """

    type = UTCDateTime()
    inherit_cache = True
    name = "server_now"


@compiles(ServerNow)
def _server_now(element: ServerNow, compiler: Any, **kw: Any) -> str:
    return profile_named(compiler.dialect.name).history_now_sql


class UnreadableDate(Exception):
    """An ``applied_at`` that is no date (a history row written by hand on SQLite)."""

    def __init__(self, value: object) -> None:
        super().__init__(repr(value))
        self.value = value


def to_utc(value: Any) -> datetime | None:
    """An aware UTC datetime from what a driver returned for ``applied_at``."""
    if value is None:
        return None
    if value.__class__ is str:  # a SQLite TIMESTAMP the driver did not parse
        try:  # naive UTC text, as sqlmig writes it: one parse (replace() costs 10x more)
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:  # text with its own offset
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise UnreadableDate(value) from None
    if isinstance(value, int | float) and not isinstance(value, bool):  # Unix time (SQLite)
        return datetime.fromtimestamp(value, UTC)
    if not hasattr(value, "tzinfo"):
        raise UnreadableDate(value)
    zone = value.tzinfo
    if zone is None:
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
    return value if zone is UTC else value.astimezone(UTC)  # type: ignore[no-any-return]


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


class History:
    """The history as read: its rows and what the table itself lacks.

    ``unreadable`` holds the versions of rows that are not numbers (written by
    hand): they are left out of ``rows``, and only ``repair()`` reads past them.

    (A plain class: every start builds one, and a dataclass costs ~1 ms at import.)
    """

    __slots__ = ("exists", "missing_columns", "rows", "unreadable")

    def __init__(
        self,
        rows: list[AppliedMigration],
        exists: bool,
        missing_columns: tuple[str, ...] = (),
        unreadable: tuple[str, ...] = (),
    ) -> None:
        self.rows = rows
        self.exists = exists
        self.missing_columns = missing_columns
        self.unreadable = unreadable

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
    """Reads and writes one history table on a given connection.

    The ``Table`` and its statements are built on first use: the usual
    start-up only reads, with one ``SELECT *`` that needs neither.
    """

    def __init__(
        self, table: str = "migrations", schema: str | None = None, *, tenant: bool = False
    ) -> None:
        self.name = table
        self.schema = schema
        #: ``schema`` is a tenant's, made by its first upgrade: until then it reads as empty
        self.tenant = tenant
        #: the dialect the row's ``INSERT`` was last written for, the text, and its style
        self._inserts: tuple[Dialect, str, bool] | None = None
        #: the dialect :meth:`record_statement`'s head was written for, and the head
        self._own_insert: tuple[Dialect, str | None] | None = None

    @cached_property
    def table(self) -> Table:
        return history_table(MetaData(), self.name, self.schema)

    @cached_property
    def _contains(self) -> Select[Any]:
        t = self.table
        return select(t.c.version).where(t.c.version == bindparam("v"))

    @cached_property
    def _delete(self) -> Delete:
        t = self.table
        return t.delete().where(t.c.version == bindparam("v"))

    def exists(self, conn: Connection) -> bool:
        return inspect(conn).has_table(self.name, schema=self.schema)

    def read(self, conn: Connection, *, strict: bool = True) -> History:
        """Every row, oldest first. Writes nothing; a missing table reads as empty.

        Safe inside any transaction: it asks whether the table exists first.

        Raises:
            ConfigError: the table's schema does not exist, or the table is not
                a history table.
            DirtyDatabase: a row's version is not a number; with ``strict`` off,
                such rows are left out and listed in ``History.unreadable``.
        """
        if not self.exists(conn):
            if self.schema and not self.tenant and not inspect(conn).has_schema(self.schema):
                raise missing_schema(self.schema, conn.dialect.name)
            return History([], exists=False)
        return self.read_existing(conn, strict=strict)

    def read_existing(self, conn: Connection, *, strict: bool = True) -> History:
        """Every row, oldest first, with one ``SELECT *`` and nothing else.

        Its column names say what an older table lacks, so no column
        reflection is needed.

        Raises:
            sqlalchemy.exc.DBAPIError: the table does not exist (on PostgreSQL
                the transaction is then aborted: use :meth:`read` inside one
                that must go on).
            ConfigError: the table is not a history table (it lacks a column
                every history table has).
            DirtyDatabase: a row's version is not a number, unless ``strict``
                is off (then such rows are in ``History.unreadable``).
        """
        result = conn.exec_driver_sql(f"SELECT * FROM {self._source(conn)}")
        at = {name: i for i, name in enumerate(result.keys())}
        missing = tuple(c for c in COLUMNS if c not in at)
        lacking = [c for c in REQUIRED if c not in at]
        if lacking:
            result.close()
            columns = "column" if len(lacking) == 1 else "columns"
            raise not_a_history_table(self.label, f"it has no {', '.join(lacking)} {columns}")
        records = result.fetchall()
        unreadable: tuple[str, ...] = ()
        if strict:
            self._check_dates(records, at)
        try:
            rows = _rows(records, at)
        except ValueError:  # a version that is not a number (rare): sort those rows out
            column = at["version"]
            unreadable = tuple(str(r[column]) for r in records if not _numeric(r[column]))
            if not unreadable:  # another column's value: not a version problem
                raise
            if strict:
                raise self.unreadable_error(unreadable) from None
            rows = _rows([r for r in records if _numeric(r[column])], at)
        return History(rows, exists=True, missing_columns=missing, unreadable=unreadable)

    def _check_dates(self, records: Sequence[Any], at: dict[str, int]) -> None:
        """Raise ``DirtyDatabase`` naming the first row whose ``applied_at`` is no date."""
        version, when = at["version"], at["applied_at"]
        for record in records:
            try:
                to_utc(record[when])
            except UnreadableDate as bad:
                v = str(record[version])
                raise DirtyDatabase(
                    f"the history table {self.label} has a row ({v!r}) whose applied_at is no "
                    f"date ({bad.value!r}), written by hand: set it to one, such as UPDATE "
                    f"{self.label} SET applied_at = CURRENT_TIMESTAMP WHERE version = '{v}'",
                    versions=[v],
                ) from None

    @property
    def label(self) -> str:
        """The table's name as a person would write it: ``schema.table`` or ``table``."""
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def unreadable_error(self, versions: tuple[str, ...]) -> DirtyDatabase:
        """The error for rows whose version is not a number, with the ways out."""
        import shlex  # only on this rare path

        first = versions[0]
        rows = ", ".join(repr(v) for v in versions)
        return DirtyDatabase(
            f"the history table {self.label} has a row whose version is not a number "
            f"({rows}), written by hand: remove it with sqlmig unstamp {shlex.quote(first)} "
            "(or delete the row), or run sqlmig repair, which removes such rows",
            versions=list(versions),
        )

    def read_fingerprint(self, conn: Connection) -> dict[int, str | None] | None:
        """Each applied row's checksum by integer version: what a no-op start-up compares.

        One ``SELECT`` of the columns it needs, which fails as :meth:`read_existing`
        does on a missing table and also on a table that still needs adopting.
        ``None`` when the rows alone cannot settle a start-up: a failed row, or
        two rows with one version.

        Raises:
            sqlalchemy.exc.DBAPIError: no such table, or a column is missing.
        """
        records = conn.exec_driver_sql(
            f"SELECT version, checksum, success, execution_ms FROM {self._source(conn)}"
        ).fetchall()
        try:
            sums = {int(version): value for version, value, success, _ in records if success}
        except ValueError:  # a version that is not a number: read() reports it
            return None
        return sums if len(sums) == len(records) else None

    def _source(self, conn: Connection) -> str:
        """The table's quoted name, for a statement sent as text."""
        return self._source_for(conn.dialect)

    def _source_for(self, dialect: Dialect) -> str:
        preparer = dialect.identifier_preparer
        source = preparer.quote(self.name)
        if self.schema:
            source = f"{preparer.quote_schema(self.schema)}.{source}"
        return source

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
    ) -> bool:
        """Write ``migration``'s row; False when the database wrote none (a rule or
        trigger on the table swallowed it)."""
        sql, positional = self._insert_for(conn.dialect)
        values = (migration.version, migration.name, migration.checksum, execution_ms, success)
        result = conn.exec_driver_sql(
            sql, values if positional else dict(zip(RECORDED, values, strict=True))
        )
        return result.rowcount != 0

    def _insert_for(self, dialect: Dialect) -> tuple[str, bool]:
        """The ``INSERT`` of a row as the driver takes it, and whether its values are positional.

        Written once per dialect as text in the driver's own paramstyle: each
        step records a row, and a statement SQLAlchemy compiles (or finds in
        its cache, by a key it computes again each time) costs twice as much.
        """
        cached = self._inserts
        if cached is not None and cached[0] is dialect:
            return cached[1], cached[2]
        style = dialect.paramstyle
        marker = _MARKERS.get(style)
        if marker is None:
            raise ValueError(f"unknown paramstyle {style!r}")  # never met: PEP 249 lists these
        now = profile_named(dialect.name).history_now_sql
        if style in ("format", "pyformat"):
            now = now.replace("%", "%%")
        quote = dialect.identifier_preparer.quote
        values = [marker.format(n=i + 1, name=c) for i, c in enumerate(RECORDED)]
        values.insert(2, now)
        columns = ", ".join(quote(c) for c in (*RECORDED[:2], "applied_at", *RECORDED[2:]))
        sql = f"INSERT INTO {self._source_for(dialect)} ({columns}) VALUES ({', '.join(values)})"
        positional = style in ("qmark", "format", "numeric", "numeric_dollar")
        self._inserts = (dialect, sql, positional)
        return sql, positional

    def record_statement(
        self, dialect: Dialect, profile: DialectProfile, migration: Migration
    ) -> Callable[[int], str] | None:
        """:meth:`record` of an applied step as a statement of sqlmig's own, for its
        time in ms: its values written in by ``profile`` (``own_literal``), in ASCII.

        None where they cannot be written so: :meth:`record` sends them as parameters.
        """
        literal = profile.own_literal
        version = literal(migration.version)
        if version is None:
            return None
        name, checksum = literal(migration.name), literal(migration.checksum)
        head = self._own_head(dialect)
        if name is None or checksum is None or head is None:
            return None
        now, applied = profile.history_now_sql, literal(True)
        head = f"{head}{version}, {name}, {now}, {checksum}, "
        return lambda ms: f"{head}{literal(ms)}, {applied})"

    def _own_head(self, dialect: Dialect) -> str | None:
        """``INSERT INTO t (columns) VALUES (`` for :meth:`record_statement`; None when
        the table's name cannot go in a statement of sqlmig's own (:meth:`_own_source`)."""
        cached = self._own_insert
        if cached is not None and cached[0] is dialect:
            return cached[1]
        source = self._own_source(dialect)
        head = None
        if source is not None:
            quote = dialect.identifier_preparer.quote
            columns = ", ".join(quote(c) for c in (*RECORDED[:2], "applied_at", *RECORDED[2:]))
            head = f"INSERT INTO {source} ({columns}) VALUES ("
        self._own_insert = (dialect, head)
        return head

    def _own_source(self, dialect: Dialect) -> str | None:
        """The table's quoted name for a statement of sqlmig's own, sent without
        parameters: None when it is not ASCII, or holds a ``%`` (which a driver of the
        ``format`` styles has the name's quoting double)."""
        source = self._source_for(dialect)
        if not source.isascii() or "%" in source:
            return None
        return source

    def delete_statement(
        self, dialect: Dialect, profile: DialectProfile, version: str
    ) -> str | None:
        """:meth:`delete` as a statement of sqlmig's own (see :meth:`record_statement`)."""
        value = profile.own_literal(version)
        source = None if value is None else self._own_source(dialect)
        if value is None or source is None:
            return None
        column = dialect.identifier_preparer.quote("version")
        return f"DELETE FROM {source} WHERE {column} = {value}"

    def mark_done(self, conn: Connection, version: str, execution_ms: int) -> bool:
        """Set a failed row applied after its step finished; False when the row is gone."""
        result = conn.execute(
            self.table.update()
            .where(self.table.c.version == version)
            .values(success=True, execution_ms=execution_ms, applied_at=ServerNow())
        )
        return bool(result.rowcount)

    def mark_applied(self, conn: Connection, version: str) -> None:
        """Set a row back to applied (a ``down()`` that failed), keeping the rest of it."""
        conn.execute(
            self.table.update().where(self.table.c.version == version).values(success=True)
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

    def delete(self, conn: Connection, version: str) -> bool:
        """Remove a row; False when there was none."""
        return bool(conn.execute(self._delete, {"v": version}).rowcount)


def _numeric(version: object) -> bool:
    """Whether a history row's version reads as a number (as sqlmig compares them)."""
    try:
        int(str(version))
    except ValueError:
        return False
    return True


def _rows(records: Sequence[Any], at: dict[str, int]) -> list[AppliedMigration]:
    """History rows from ``SELECT *`` records, oldest first; ``at`` maps column to index.

    Raises:
        ValueError: a version is not a number.
    """
    version, title, when = at["version"], at["name"], at["applied_at"]
    checksum, ms, success = at.get("checksum"), at.get("execution_ms"), at.get("success")
    epoch = datetime.fromtimestamp(0, UTC)
    row = AppliedMigration

    def date(value: Any) -> datetime:
        try:
            return to_utc(value) or epoch
        except UnreadableDate:  # reported by a strict read; others take it as the oldest
            return epoch

    rows = [
        row(
            str(record[version]),
            record[title],
            date(record[when]),
            None if checksum is None else record[checksum],
            None if ms is None else record[ms],
            True if success is None else bool(record[success]),
        )
        for record in records
    ]
    rows.sort(key=lambda r: (r.applied_at, r.number))
    return rows

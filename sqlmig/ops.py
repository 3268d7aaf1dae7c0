"""Schema changes written once, run unchanged on SQLite, PostgreSQL and MySQL/MariaDB.

``ops(conn)`` wraps Alembic's ``Operations`` (the ``sqlmig[ops]`` extra) on a
step's own connection. Alembic only emits statements on it: inside the step's
transaction or savepoint it never begins, commits or rolls back (only in a
``transactional = False`` step, outside any transaction, does each change run
in a short transaction of its own). It never creates its ``alembic_version``
table and never configures logging. What it sends shows in
``MigrationRunner.dry_run()`` like any other statement; in a SQL script
(``MigrationRunner.sql_script()``) Alembic writes it in its offline mode.

Where a database cannot change a table in place (SQLite: a column's type,
nullability or constraints), the table is rebuilt inside the step's
transaction with Alembic's "batch" mode: new table, rows copied, old table
dropped, new one renamed, indexes recreated; what reflection alone would
lose (triggers, unnamed CHECKs, COLLATE, AUTOINCREMENT) is carried by
:mod:`sqlmig._sqlite_rebuild`. Elsewhere the same call is one
``ALTER TABLE``. On MySQL/MariaDB, whose ``MODIFY``/``CHANGE COLUMN`` restate
the whole column, the parts of a column that a change does not name (type,
nullability, default, auto-increment, comment) are read from the database
first, so they are kept.

Example::

    from sqlalchemy import Boolean, Column, false
    import sqlmig

    def up(conn):
        ops = sqlmig.ops(conn)
        ops.add_column("users", Column("verified", Boolean, nullable=False,
                                       server_default=false()))

    def down(conn):
        sqlmig.ops(conn).drop_column("users", "verified")

The module is long because it is the public API of the portable operations:
each method's docstring is its reference, and the few things each database
needs are asked of its profile, not branched on here.
"""

from __future__ import annotations

import copy
import logging
import re
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import (
    Column,
    Computed,
    DefaultClause,
    ForeignKey,
    ForeignKeyConstraint,
    Table,
)
from sqlalchemy.sql.elements import ClauseElement, ColumnElement, TextClause
from sqlalchemy.types import TypeEngine

from ._dialects import profile_for
from ._errors import UsageError
from ._reflected import skipping_expression_indexes
from ._sqlite_rebuild import TableKeeper

if TYPE_CHECKING:
    from alembic.operations import BatchOperations, Operations

__all__ = ["SchemaOps", "TableOps", "ops"]

log = logging.getLogger("sqlmig")

#: The options of a foreign key that some databases do not take (see ``foreign_key_options``).
_FOREIGN_KEY_OPTIONS = ("deferrable", "initially", "match")

#: ``alter_column(server_default=KEEP)``: leave the column's default as it is.
KEEP: Any = False

#: A SQLite ``ADD COLUMN`` default it takes in place: a number, a string, NULL.
_CONSTANT = re.compile(r"^\s*(-?\d+(\.\d+)?|'([^']|'')*'|NULL|TRUE|FALSE)\s*$", re.IGNORECASE)

#: Where Alembic logs its set-up: nothing a sqlmig step's reader needs.
_ALEMBIC_SETUP_LOGGERS = ("alembic.runtime.plugins", "alembic.runtime.migration")


class _ThisThread(logging.Filter):
    """Drops the records logged by one thread: Alembic's set-up lines, while sqlmig sets up."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread


@contextmanager
def _quiet_alembic_setup() -> Iterator[None]:
    """Keep Alembic's set-up lines out of the user's logs while ``ops()`` builds its context.

    Alembic logs "setup plugin ..." when first imported, and "Context impl" /
    "Will assume ... DDL" for every context; they describe Alembic's own
    runs, not a sqlmig step. Only this thread's records on those two loggers
    are dropped, and only meanwhile: the user's logging configuration and
    other threads' lines are left alone.
    """
    quiet = _ThisThread()
    loggers = [logging.getLogger(name) for name in _ALEMBIC_SETUP_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def ops(conn: Connection) -> SchemaOps:
    """Portable schema-change operations on a migration step's connection.

    Call it inside ``up(conn)`` / ``down(conn)``; every change runs in the
    step's transaction (or savepoint). Needs the ``sqlmig[ops]`` extra.

    Raises:
        UsageError: Alembic is not installed.
    """
    with _quiet_alembic_setup():
        try:
            from alembic.operations import Operations
            from alembic.runtime.migration import MigrationContext
        except ImportError as exc:
            raise UsageError(
                "sqlmig.ops() needs Alembic: install the extra with pip install 'sqlmig[ops]'"
            ) from exc
        # No begin_transaction(), no run_migrations(): the context is only a
        # statement emitter, so Alembic opens no transaction and never creates
        # or reads its version table. It is told the truth about transactions:
        # inside a step's transaction, DDL is rolled back with it where the
        # database can do that.
        transactional = profile_for(conn).transactional_ddl and conn.in_transaction()
        opts: dict[str, Any] = {
            "transactional_ddl": transactional,
            "transaction_per_migration": False,
        }
        # A step rendered as a SQL script (upgrade --sql) has a stand-in
        # connection with somewhere to write: Alembic then writes each
        # statement there (its offline mode) instead of executing it.
        output = getattr(conn, "sql_output", None)
        if output is not None:
            opts.update(as_sql=True, output_buffer=output, literal_binds=True)
            context = MigrationContext.configure(dialect=conn.dialect, opts=opts)
        else:
            context = MigrationContext.configure(connection=conn, opts=opts)
    return SchemaOps(conn, Operations(context))


class SchemaOps:
    """Table and column changes that run unchanged on every supported database.

    Each method is one change; to make several changes to one table with a
    single SQLite rebuild, use :meth:`batch`. ``alembic`` is the Alembic
    ``Operations`` object underneath, for anything not covered here (its
    calls may not be portable).
    """

    def __init__(self, conn: Connection, operations: Operations) -> None:
        self.conn = conn
        self.alembic = operations
        self._profile = profile_for(conn)
        #: writing a SQL script (``upgrade --sql``): nothing can be read
        self._script = getattr(conn, "sql_output", None) is not None

    @property
    def dialect_name(self) -> str:
        """``sqlite``, ``postgresql``, ``mysql`` (MariaDB too): for a step that must branch."""
        return self.conn.dialect.name

    # -- tables ------------------------------------------------------------

    def create_table(self, name: str, *columns: Any, **kw: Any) -> Table:
        """``CREATE TABLE name`` with columns, constraints and indexes; returns the Table.

        A foreign key's ``deferrable``, ``initially`` and ``match`` are kept where
        the database takes them, and left out on MySQL/MariaDB (which check
        each key at once), so the call runs unchanged there.
        """
        for item in columns:
            keys = item.foreign_keys if isinstance(item, Column) else [item]
            for key in keys:
                if isinstance(key, (ForeignKey, ForeignKeyConstraint)):
                    self._fit_options(key)
        table = self.alembic.create_table(name, *columns, **kw)
        assert table is not None
        return table

    def _fit_options(self, key: ForeignKey | ForeignKeyConstraint) -> None:
        """Leave out of ``key`` the options the database does not take (logged)."""
        kept = self._fitted(key.name, {o: getattr(key, o) for o in _FOREIGN_KEY_OPTIONS})
        for option in _FOREIGN_KEY_OPTIONS:
            if option not in kept:
                setattr(key, option, None)

    def _fitted(self, name: Any, options: dict[str, Any]) -> dict[str, Any]:
        """The foreign key ``options`` given (not None) that the database takes."""
        given = {option: value for option, value in options.items() if value is not None}
        kept = {o: v for o, v in given.items() if o in self._profile.foreign_key_options}
        if len(kept) < len(given):
            log.info(
                "foreign key %s: %s left out: %s checks each foreign key at once",
                name or "(unnamed)",
                ", ".join(o.upper() for o in given if o not in kept),
                self.dialect_name,
            )
        return kept

    def drop_table(self, name: str, *, schema: str | None = None) -> None:
        """``DROP TABLE name``."""
        self.alembic.drop_table(name, schema=schema)

    def rename_table(self, old: str, new: str, *, schema: str | None = None) -> None:
        """Rename a table; its indexes, constraints and rows go with it.

        On SQLite, foreign keys of other tables that point at it follow the
        new name.
        """
        self.alembic.rename_table(old, new, schema=schema)

    def create_table_comment(
        self,
        table: str,
        comment: str,
        *,
        existing_comment: str | None = None,
        schema: str | None = None,
    ) -> None:
        """Set a table's comment (``COMMENT ON TABLE``; MySQL/MariaDB ``ALTER TABLE ... COMMENT``).

        SQLite keeps no comments: there the call does nothing, so a step that
        sets one runs unchanged. ``existing_comment`` is what it replaces (for
        the record: nothing reads it).
        """
        if self.conn.dialect.supports_comments:
            self.alembic.create_table_comment(
                table, comment, existing_comment=existing_comment, schema=schema
            )

    def drop_table_comment(
        self, table: str, *, existing_comment: str | None = None, schema: str | None = None
    ) -> None:
        """Remove a table's comment; on SQLite, which keeps none, the call does nothing."""
        if self.conn.dialect.supports_comments:
            self.alembic.drop_table_comment(table, existing_comment=existing_comment, schema=schema)

    # -- columns -----------------------------------------------------------

    def add_column(self, table: str, column: Column[Any], *, schema: str | None = None) -> None:
        """Add a column; existing rows get its ``server_default``.

        A ``NOT NULL`` column needs a ``server_default`` when the table has
        rows. On SQLite a default that is not a constant (``func.now()``)
        rebuilds the table.
        """
        if self._sqlite_needs_rebuild_to_add(column):
            with self.batch(table, schema=schema) as t:
                t.add_column(column)
            return
        self.alembic.add_column(table, column, schema=schema)

    def drop_column(self, table: str, column: str, *, schema: str | None = None) -> None:
        """Drop a column and the indexes on it (those on an expression of it too).

        SQLite 3.35+ drops a plain column in place; a column in a key, an
        index, a unique or check constraint rebuilds the table. Drop a
        foreign key on the column first (MySQL refuses otherwise).
        """
        if self._sqlite_drops_in_place(table, column, schema):
            self.alembic.drop_column(table, column, schema=schema)
            return
        with self.batch(table, schema=schema) as t:
            t.drop_column(column)

    def alter_column(
        self,
        table: str,
        column: str,
        *,
        type_: TypeEngine[Any] | type[TypeEngine[Any]] | None = None,
        nullable: bool | None = None,
        server_default: Any = KEEP,
        new_column_name: str | None = None,
        schema: str | None = None,
        **kw: Any,
    ) -> None:
        """Change a column's type, nullability, default or name; what is not named is kept.

        ``server_default=None`` removes the default; a value or ``text(...)``
        sets it. Extra keywords go to Alembic (e.g. ``postgresql_using``,
        which is PostgreSQL-only). SQLite rebuilds the table, keeping rows,
        indexes and foreign keys.

        Raises:
            UsageError: SQLite with ``PRAGMA foreign_keys=ON`` and another
                table referencing this one (see :meth:`batch`).
        """
        with self.batch(table, schema=schema) as t:
            t.alter_column(
                column,
                type_=type_,
                nullable=nullable,
                server_default=server_default,
                new_column_name=new_column_name,
                **kw,
            )

    def rename_column(self, table: str, old: str, new: str, *, schema: str | None = None) -> None:
        """Rename a column in place (SQLite 3.25+, PostgreSQL, MySQL/MariaDB)."""
        self.alembic.alter_column(
            table, old, new_column_name=new, schema=schema, **self._existing(table, old, schema)
        )

    # -- indexes and constraints -------------------------------------------

    def create_index(
        self,
        name: str,
        table: str,
        columns: Sequence[str | TextClause | ColumnElement[Any]],
        *,
        unique: bool = False,
        schema: str | None = None,
        **kw: Any,
    ) -> None:
        """``CREATE [UNIQUE] INDEX name ON table (columns)``.

        A column may be an expression (``sa.literal_column("lower(name)")``, as
        autogenerate writes one). MariaDB (and MySQL before 8.0.13) has no index
        on an expression: there such an index is not created and a WARNING says
        so, so the step runs on; a unique one, which is a constraint, is refused.

        Raises:
            UsageError: a unique index on an expression, where the database has none.
        """
        expressions = [str(c) for c in columns if not isinstance(c, str)]
        if expressions and not self._profile.indexes_expressions(self.conn):
            if unique:
                raise UsageError(
                    f"cannot create the unique index {name} on {table}: "
                    f"{self._server_name} has no index on an expression "
                    f"({', '.join(expressions)}); enforce it another way there "
                    "(a generated column with a unique index, branching on ops.dialect_name)"
                )
            log.warning(
                "index %s on %s not created: %s has no index on an expression (%s); "
                "queries there run without it",
                name,
                table,
                self._server_name,
                ", ".join(expressions),
            )
            return
        self.alembic.create_index(name, table, list(columns), unique=unique, schema=schema, **kw)

    def drop_index(self, name: str, table: str, *, schema: str | None = None) -> None:
        """Drop an index (its table is needed: MySQL drops indexes per table).

        Where indexes on expressions are not created (see :meth:`create_index`),
        an index that is not there is taken for one of them: a WARNING says so
        and nothing is dropped. A SQL script, which cannot look, writes
        ``DROP INDEX IF EXISTS`` there: what its ``up()`` left out, it does not drop.
        """
        if not self._profile.indexes_expressions(self.conn):
            if self._script:
                self.alembic.drop_index(name, table_name=table, schema=schema, if_exists=True)
                return
            with skipping_expression_indexes():  # those are what is looked for here
                present = inspect(self.conn).get_indexes(table, schema=schema)
            if not any(index["name"] == name for index in present):
                log.warning(
                    "index %s on %s not dropped: it is not there (%s creates no index on "
                    "an expression)",
                    name,
                    table,
                    self._server_name,
                )
                return
        self.alembic.drop_index(name, table_name=table, schema=schema)

    @property
    def _server_name(self) -> str:
        return "MariaDB" if getattr(self.conn.dialect, "is_mariadb", False) else "MySQL"

    def create_foreign_key(
        self,
        name: str,
        table: str,
        referent_table: str,
        local_cols: Sequence[str],
        remote_cols: Sequence[str],
        *,
        ondelete: str | None = None,
        onupdate: str | None = None,
        deferrable: bool | None = None,
        initially: str | None = None,
        match: str | None = None,
        schema: str | None = None,
    ) -> None:
        """Add a named foreign key (SQLite: rebuilds the table). Name it to drop it later.

        ``deferrable``, ``initially`` (``"DEFERRED"``) and ``match`` (``"FULL"``)
        are kept where the database takes them (PostgreSQL, SQLite) and left
        out on MySQL/MariaDB, which check each key at once.
        """
        with self.batch(table, schema=schema) as t:
            t.create_foreign_key(
                name,
                referent_table,
                local_cols,
                remote_cols,
                ondelete=ondelete,
                onupdate=onupdate,
                deferrable=deferrable,
                initially=initially,
                match=match,
            )

    def drop_foreign_key(self, name: str, table: str, *, schema: str | None = None) -> None:
        """Drop a named foreign key (SQLite: rebuilds the table)."""
        with self.batch(table, schema=schema) as t:
            t.drop_foreign_key(name)

    def create_unique_constraint(
        self, name: str, table: str, columns: Sequence[str], *, schema: str | None = None
    ) -> None:
        """Add a named unique constraint (SQLite: rebuilds the table)."""
        with self.batch(table, schema=schema) as t:
            t.create_unique_constraint(name, columns)

    def drop_unique_constraint(self, name: str, table: str, *, schema: str | None = None) -> None:
        """Drop a named unique constraint (SQLite: rebuilds the table)."""
        with self.batch(table, schema=schema) as t:
            t.drop_unique_constraint(name)

    def execute(self, statement: str | ClauseElement) -> None:
        """Run a statement (a string is taken as ``text()``) on the step's connection."""
        self.conn.execute(text(statement) if isinstance(statement, str) else statement)  # type: ignore[call-overload]

    # -- several changes to one table --------------------------------------

    @contextmanager
    def batch(self, table: str, *, schema: str | None = None) -> Iterator[TableOps]:
        """Several changes to one table, applied together when the block ends.

        On SQLite, changes it cannot make in place rebuild the table once for
        the whole block; elsewhere each change is its own ``ALTER TABLE``.

        A SQLite rebuild keeps the table's triggers, views naming it, unnamed
        CHECK constraints, COLLATE and AUTOINCREMENT (see
        :class:`~sqlmig._sqlite_rebuild.TableKeeper`).

        Raises:
            UsageError: on SQLite with ``PRAGMA foreign_keys=ON``, when a
                rebuild is needed and another table has a foreign key to this
                one: dropping the old table would fail (SQLite cannot switch
                foreign keys off inside a transaction). Nothing is changed.
                Also when the table has what a rebuild cannot carry (an
                ``ON CONFLICT`` clause), or when the change breaks a view or
                trigger; the step's transaction undoes the rebuild.
        """
        queued = TableOps(self, table, schema)
        yield queued
        options: dict[str, Any] = {}
        guard: AbstractContextManager[None] = nullcontext()
        recreate: Literal["auto", "always", "never"] = "auto"
        if self._profile.rebuilds_tables_for_alter:
            # said outright, so the rebuild never happens without the keeper
            recreate = "always" if queued.rebuilds else "never"
            if queued.rebuilds:
                self._refuse_rebuild_under_foreign_keys(table)
                options = queued.keeper.batch_options(queued.renamed, queued.dropped_columns)
                guard = queued.keeper.rebuilding(
                    queued.dropped_indexes,
                    columns_go=bool(queued.dropped_columns or queued.renamed),
                )
        with (
            skipping_expression_indexes(),  # the keeper puts those back (_sqlite_rebuild)
            guard,
            self.alembic.batch_alter_table(
                table, schema=schema, recreate=recreate, **options
            ) as batch_op,
        ):
            for call in queued.calls:
                call(batch_op)

    # -- helpers -----------------------------------------------------------

    def _existing(self, table: str, column: str, schema: str | None) -> dict[str, Any]:
        """What the database says about a column, as Alembic's ``existing_*`` keywords.

        MySQL's ``MODIFY``/``CHANGE COLUMN`` restate the whole column, so a
        change that does not name a part would otherwise drop it. Elsewhere
        they only inform Alembic, so a SQL script (which cannot read the
        database) goes without them.
        """
        if self._script and not self._profile.alter_column_restates_column:
            return {}
        for info in inspect(self.conn).get_columns(table, schema=schema):
            if info["name"].lower() == column.lower():
                default = info.get("default")
                existing: dict[str, Any] = {
                    "existing_type": info["type"],
                    "existing_nullable": info["nullable"],
                    "existing_server_default": text(default) if default is not None else False,
                    "existing_comment": info.get("comment"),
                }
                if self._profile.alter_column_restates_column:
                    existing["existing_autoincrement"] = bool(info.get("autoincrement"))
                return existing
        raise UsageError(f"table {table!r} has no column {column!r}: check the names")

    def _sqlite_needs_rebuild_to_add(self, column: Column[Any]) -> bool:
        if not self._profile.rebuilds_tables_for_alter:
            return False
        default = column.server_default
        if not isinstance(default, DefaultClause) or not isinstance(default.arg, ClauseElement):
            return False
        compiled = str(default.arg.compile(dialect=self.conn.dialect))
        return not _CONSTANT.match(compiled)

    def _sqlite_drops_in_place(self, table: str, column: str, schema: str | None) -> bool:
        """SQLite can ``DROP COLUMN`` itself: 3.35+, and nothing but the column uses it."""
        if not self._profile.rebuilds_tables_for_alter or self.conn.dialect.dbapi is None:
            return False
        version = tuple(int(p) for p in self.conn.dialect.dbapi.sqlite_version.split("."))
        if version < (3, 35):
            return False
        insp = inspect(self.conn)
        name = column.lower()
        with skipping_expression_indexes():
            in_use = [
                *insp.get_pk_constraint(table, schema=schema)["constrained_columns"],
                *(c for i in insp.get_indexes(table, schema=schema) for c in i["column_names"]),
                *(
                    c
                    for u in insp.get_unique_constraints(table, schema=schema)
                    for c in u["column_names"]
                ),
                *(
                    c
                    for f in insp.get_foreign_keys(table, schema=schema)
                    for c in f["constrained_columns"]
                ),
            ]
        if any(str(c).lower() == name for c in in_use if c is not None):
            return False
        if TableKeeper.read(self.conn, table, schema).indexes_using(column):  # on expressions
            return False
        checks = insp.get_check_constraints(table, schema=schema)
        return not any(name in str(c["sqltext"]).lower() for c in checks)

    def _refuse_rebuild_under_foreign_keys(self, table: str) -> None:
        if not self.conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
            return
        referencing = (
            self.conn.exec_driver_sql(
                "SELECT DISTINCT m.name FROM sqlite_master AS m, "
                "pragma_foreign_key_list(m.name) AS f WHERE m.type = 'table' "
                'AND lower(f."table") = lower(?) AND lower(m.name) != lower(?)',
                (table, table),
            )
            .scalars()
            .all()
        )
        if referencing:
            raise UsageError(
                f"cannot rebuild SQLite table {table!r} with PRAGMA foreign_keys=ON: "
                f"{', '.join(sorted(referencing))} reference(s) it and SQLite cannot turn foreign "
                "keys off inside the step's transaction; run migrations on a connection with "
                "foreign_keys off (sqlmig's own engines are), or branch on conn.dialect.name"
            )


class TableOps:
    """Changes queued on one table inside :meth:`SchemaOps.batch`; no table argument."""

    def __init__(self, owner: SchemaOps, table: str, schema: str | None) -> None:
        self._owner = owner
        self._table = table
        self._schema = schema
        self._keeper: TableKeeper | None = None
        #: The queued changes, run on Alembic's batch when the block ends.
        self.calls: list[Callable[[BatchOperations], Any]] = []
        #: True once a queued change needs SQLite to rebuild the table.
        self.rebuilds = False
        #: Indexes dropped on purpose (a rebuild re-creates the others).
        self.dropped_indexes: list[str] = []
        #: Columns dropped, and renamed (lower-case old name -> new name).
        self.dropped_columns: list[str] = []
        self.renamed: dict[str, str] = {}

    @property
    def keeper(self) -> TableKeeper:
        """What a SQLite rebuild of this table must carry, read once on first use."""
        if self._keeper is None:
            self._keeper = TableKeeper.read(self._owner.conn, self._table, self._schema)
        return self._keeper

    def _queue(self, rebuilds: bool, call: Callable[[BatchOperations], Any]) -> None:
        self.rebuilds = self.rebuilds or rebuilds
        self.calls.append(call)

    def add_column(self, column: Column[Any]) -> None:
        """Add a column (see :meth:`SchemaOps.add_column`)."""
        default = column.server_default
        clause = isinstance(default, DefaultClause) and isinstance(default.arg, ClauseElement)
        stored = isinstance(default, Computed) and bool(default.persisted)
        self._queue(clause or stored, lambda b: b.add_column(column))

    def drop_column(self, column: str) -> None:
        """Drop a column and the indexes on it (as PostgreSQL does; SQLite needs it said).

        In a SQL script, where nothing can be read, it is one ``DROP COLUMN``
        (the database drops what depends on it: PostgreSQL the indexes on it,
        MySQL/MariaDB the column from its indexes); on SQLite, which may have to
        rebuild the table from its definition, it cannot be written.
        """
        owner = self._owner
        if owner._script and owner._profile.rebuilds_tables_for_alter:
            raise owner.conn.needs(  # type: ignore[attr-defined]
                f"drops column {column} of {self._table}: SQLite drops a column in place only "
                "when no key, index or constraint uses it, and otherwise rebuilds the table "
                "from its definition, both of which only the database can tell"
            )
        if owner._script:  # one ALTER TABLE; the database drops what depends on the column
            self.dropped_columns.append(column)
            self._queue(True, lambda b: b.drop_column(column))
            return
        with skipping_expression_indexes():  # the keeper puts those back (_sqlite_rebuild)
            indexes = inspect(owner.conn).get_indexes(self._table, schema=self._schema)
        using = [
            index["name"]
            for index in indexes
            if index["name"]
            and column.lower() in {str(c).lower() for c in index["column_names"] if c is not None}
        ]
        for name in using:
            self.drop_index(name)
        if owner._profile.rebuilds_tables_for_alter:  # on expressions: the rebuild leaves
            unreflected = [i for i in self.keeper.indexes_using(column) if i not in using]
            self.dropped_indexes += unreflected  # them out, and the keeper does not put them back
        self.dropped_columns.append(column)
        self._queue(True, lambda b: b.drop_column(column))

    def alter_column(
        self,
        column: str,
        *,
        type_: TypeEngine[Any] | type[TypeEngine[Any]] | None = None,
        nullable: bool | None = None,
        server_default: Any = KEEP,
        new_column_name: str | None = None,
        **kw: Any,
    ) -> None:
        """Change a column (see :meth:`SchemaOps.alter_column`)."""
        existing = self._owner._existing(self._table, column, self._schema)
        existing.update(kw)
        if type_ is not None and self._owner._profile.rebuilds_tables_for_alter:
            type_ = self._keep_collation(column, type_)
        if new_column_name is not None:
            self.renamed[column.lower()] = new_column_name
        self._queue(
            True,
            lambda b: b.alter_column(
                column,
                type_=type_,
                nullable=nullable,
                server_default=server_default,
                new_column_name=new_column_name,
                **existing,
            ),
        )

    def _keep_collation(
        self, column: str, type_: TypeEngine[Any] | type[TypeEngine[Any]]
    ) -> TypeEngine[Any]:
        """The new type, with the column's SQLite COLLATE unless it names its own."""
        new = type_() if isinstance(type_, type) else type_
        collation = self.keeper.collation(column)
        if collation is None or getattr(new, "collation", collation) is not None:
            return new
        new = copy.copy(new)
        new.collation = collation  # type: ignore[attr-defined]
        return new

    def rename_column(self, old: str, new: str) -> None:
        """Rename a column."""
        self.alter_column(old, new_column_name=new)

    def create_index(
        self, name: str, columns: Sequence[str], *, unique: bool = False, **kw: Any
    ) -> None:
        """Create an index on this table."""
        self._queue(False, lambda b: b.create_index(name, list(columns), unique=unique, **kw))

    def drop_index(self, name: str) -> None:
        """Drop an index of this table."""
        self.dropped_indexes.append(name)
        self._queue(False, lambda b: b.drop_index(name))

    def create_foreign_key(
        self,
        name: str,
        referent_table: str,
        local_cols: Sequence[str],
        remote_cols: Sequence[str],
        *,
        ondelete: str | None = None,
        onupdate: str | None = None,
        deferrable: bool | None = None,
        initially: str | None = None,
        match: str | None = None,
    ) -> None:
        """Add a named foreign key (its options as in :meth:`SchemaOps.create_foreign_key`)."""
        options = self._owner._fitted(
            name, {"deferrable": deferrable, "initially": initially, "match": match}
        )
        self._queue(
            True,
            lambda b: b.create_foreign_key(
                name,
                referent_table,
                list(local_cols),
                list(remote_cols),
                ondelete=ondelete,
                onupdate=onupdate,
                **options,
            ),
        )

    def drop_foreign_key(self, name: str) -> None:
        """Drop a named foreign key, and on MySQL the index it created under its name."""
        self._queue(True, lambda b: b.drop_constraint(name, type_="foreignkey"))
        if self._owner._profile.foreign_key_leaves_index:
            insp = inspect(self._owner.conn)
            if any(i["name"] == name for i in insp.get_indexes(self._table, schema=self._schema)):
                self.drop_index(name)

    def create_unique_constraint(self, name: str, columns: Sequence[str]) -> None:
        """Add a named unique constraint."""
        self._queue(True, lambda b: b.create_unique_constraint(name, list(columns)))

    def drop_unique_constraint(self, name: str) -> None:
        """Drop a named unique constraint."""
        self._queue(True, lambda b: b.drop_constraint(name, type_="unique"))


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`ops`.

    ``import sqlmig.ops`` (or ``from sqlmig.ops import ...``) binds the
    package's attribute ``ops`` to this module, in place of the function that
    ``sqlmig.ops`` names before then. Calling the module calls the function,
    so ``sqlmig.ops(conn)`` works however, and however often, it is reached.
    """

    def __call__(self, conn: Connection) -> SchemaOps:
        return ops(conn)


sys.modules[__name__].__class__ = _CallableModule

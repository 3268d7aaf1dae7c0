"""The :class:`DialectProfile` base: what a backend can do, as data, and default methods.

The defaults describe a database that needs nothing special: DDL commits
itself unless a field says otherwise, no session settings, no busy
timeout, no change counter. A backend whose mechanics differ overrides the
few methods concerned in its own module (see :mod:`sqlmig._dialects.sqlite`).

It is long because every capability a backend may have is a
field here, with its meaning beside it: one place to read what differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import URL, DateTime, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

from .._errors import LockTimeout
from .._locking import MigrationLock, ProgressMark, lock_key
from .sql_syntax import STANDARD_SQL, SqlSyntax

__all__ = ["DialectProfile", "run_own"]


def run_own(conn: Connection, statement: str) -> int:
    """Run one of sqlmig's own statements straight on the driver connection.

    It needs neither SQLAlchemy's events nor a result, and costs a fraction
    of a statement sent through SQLAlchemy. Its error is wrapped as
    SQLAlchemy wraps any statement's. Returns the driver's row count (-1
    where it has none).

    Raises:
        sqlalchemy.exc.DBAPIError: the database refused it.
    """
    dbapi_error = conn.dialect.loaded_dbapi.Error
    dbapi = conn.connection.dbapi_connection
    cursor = dbapi.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(statement)
        return int(cursor.rowcount)
    except dbapi_error as exc:
        gone = conn.dialect.is_disconnect(exc, dbapi, cursor)
        wrapped = DBAPIError.instance(
            statement, None, exc, dbapi_error, connection_invalidated=gone, dialect=conn.dialect
        )
        if gone:  # as SQLAlchemy does for its own statements: the connection is not reused
            conn.invalidate(wrapped)
        raise wrapped from exc
    finally:
        try:
            cursor.close()
        except dbapi_error:  # the connection is gone with it
            pass


def _unicode_escape(char: str) -> str:
    """``char`` as an ``E''`` string holds it in ASCII: itself, or its ``\\u`` escape."""
    point = ord(char)
    if point < 0x80:
        return char
    return f"\\u{point:04x}" if point <= 0xFFFF else f"\\U{point:08x}"


@dataclass(frozen=True, eq=False)
class DialectProfile:
    """How sqlmig runs on one kind of database.

    One profile per database, compared by identity (``eq=False``: forty fields
    compared field by field would never be asked for, and cost every import).
    """

    name: str
    #: DDL inside a transaction is rolled back with it (else: failed-row protocol).
    transactional_ddl: bool = False
    #: The lock class held for a whole run; ``None`` when there is none, or when
    #: each step's write transaction is the lock (SQLite).
    lock: Callable[[bytes], MigrationLock] | None = None
    #: A caller's open transaction survives DDL, so steps may run in savepoints.
    caller_transaction_ok: bool = False
    #: Seconds-to-wait setting tied to ``lock_timeout`` (SQLite ``busy_timeout``),
    #: read and set by :meth:`get_busy_timeout` / :meth:`set_busy_timeout`.
    busy_timeout_pragma: str | None = None
    #: A number that changes when another connection commits to the database
    #: (SQLite ``data_version``), for runners that hold no session lock; read
    #: by :meth:`changes_seen`.
    change_counter: str | None = None
    #: The driver's connect argument that sets, in seconds, how long each
    #: statement waits for a lock (sqlite3's ``timeout``, 5 s by default).
    connect_timeout_arg: str | None = None
    #: The database's name in messages.
    title: str = ""
    #: The sqlmig extra that installs its driver (``pip install 'sqlmig[...]'``).
    driver_extra: str = ""
    #: Query returning the current database, its default schema (the lock's key)
    #: and what a step may change of them (:attr:`restore_scope` puts it back).
    identity: str | None = None
    #: Statement giving the session back the third column of :attr:`identity`
    #: after a step that changed it (PostgreSQL ``search_path``, MySQL's current
    #: database), with the value in it as ``{escaped}`` (an ``E''`` string) or
    #: ``{name}`` (a quoted name): it has no parameters, so it can go to the
    #: driver as it is, with other statements of sqlmig's own.
    restore_scope: str | None = None
    #: A database error inside a transaction aborts it (PostgreSQL): every later
    #: statement fails until it is rolled back, whole or to a savepoint. A step
    #: that catches such an error and goes on cannot have its work kept
    #: (:meth:`recover_aborted`). Elsewhere the failed statement alone is undone.
    errors_abort_transaction: bool = False
    #: Schemas are databases (MySQL): the lock's key names the table's own schema.
    schema_is_database: bool = False
    #: Settings for the runner's connection while it holds the lock, each applied
    #: only where the server has it.
    session_settings: tuple[tuple[str, str], ...] = ()
    #: Query that applies one setting (``:name``, ``:value``, ``:local``) if the
    #: server has it, returning its previous value; no row if it has not.
    set_setting: str | None = None

    #: Query making a tenant's schema the session's scope for a run
    #: (:mod:`sqlmig._tenant_scope`): ``:value`` is its quoted name, ``:schema``
    #: its name; returns the scope the session had and whether the schema
    #: exists. None where a tenant is a database or a file, not a schema.
    enter_tenant_schema: str | None = None
    #: Statement giving the session back the scope :attr:`enter_tenant_schema`
    #: returned (``:value``), at the end of the run.
    leave_tenant_schema: str | None = None
    #: Statement creating a tenant's schema that is missing (``{name}``: quoted).
    create_tenant_schema: str | None = None

    #: How a SQL script (``upgrade --sql``) begins each step's transaction.
    script_begin: str = "BEGIN"
    #: How a SQL script makes a tenant's schema (``{name}``: quoted) the search
    #: path of the steps after it, as :attr:`enter_tenant_schema` does for a run.
    script_tenant_schema: str | None = None
    #: The client command line ends a statement at every ``;``: a statement that
    #: holds one (a procedure's body) is written between ``DELIMITER`` lines
    #: with this delimiter (the mysql client). None: the client reads bodies.
    script_delimiter: str | None = None
    #: How a ``.sql`` migration's text is split into statements (strings, quotes, comments).
    sql_syntax: SqlSyntax = STANDARD_SQL

    # -- the history table --------------------------------------------------

    #: Timestamps keep their time zone (PostgreSQL ``timestamptz``): sqlmig binds
    #: aware UTC datetimes. Elsewhere it binds naive UTC ones.
    history_timestamp_tz: bool = False
    #: SQL for the server's clock, UTC, with as many fractions of a second as
    #: the database keeps: what ``applied_at`` records.
    history_now_sql: str = "CURRENT_TIMESTAMP"
    #: The error message for a ``schema`` setting naming nothing (``{schema}``).
    missing_schema_hint: str = (
        "schema {schema!r} does not exist: create it (CREATE SCHEMA {schema}), "
        "or fix the schema setting"
    )
    #: Texts of the driver's message meaning "no such column", for a database
    #: that gives that error no code of its own (SQLite).
    missing_column_texts: tuple[str, ...] = ()

    # -- schema changes (sqlmig.ops) ----------------------------------------

    #: ``ALTER TABLE`` cannot change a column's type, nullability or
    #: constraints, nor add a column with an expression default: such changes
    #: rebuild the table (SQLite).
    rebuilds_tables_for_alter: bool = False
    #: Changing a column restates all of it (MySQL ``MODIFY``/``CHANGE COLUMN``):
    #: what a change does not name, auto-increment included, is read first.
    alter_column_restates_column: bool = False
    #: A foreign key creates an index under its own name that stays when the
    #: key is dropped (MySQL): dropping the key drops that index too.
    foreign_key_leaves_index: bool = False
    #: The options of a foreign key the database takes (``DEFERRABLE``,
    #: ``INITIALLY``, ``MATCH``); MySQL/MariaDB take none (each key is checked
    #: at once), so ``sqlmig.ops`` leaves them out there.
    foreign_key_options: frozenset[str] = frozenset({"deferrable", "initially", "match"})

    # -- comparing with models (``check``) ------------------------------------

    #: Alembic's comparison of server defaults is exact here (PostgreSQL asks the
    #: server to evaluate both sides); elsewhere it compares reflected text
    #: and reports differences that are none, so ``check`` leaves defaults out.
    compares_server_defaults: bool = False
    #: Reflection reports a foreign key's ``DEFERRABLE`` / ``INITIALLY``
    #: (PostgreSQL); elsewhere (SQLite keeps them but does not report them,
    #: MySQL/MariaDB take none) ``check`` compares foreign keys without them.
    reflects_foreign_key_options: bool = False

    def history_timestamp_type(self) -> TypeEngine[datetime]:
        """The column type of ``applied_at``, to the microsecond where the database can."""
        return DateTime(timezone=True)

    def in_memory(self, url: URL) -> bool:
        """Whether ``url`` names a database each connection gets afresh in its memory."""
        return False

    def database_file(self, url: URL) -> Path | None:
        """The file ``url``'s database lives in, for a database in a file of its own."""
        return None

    def busy(self, exc: BaseException) -> bool:
        """Whether ``exc`` (a driver error, or SQLAlchemy's wrapper of one) means "locked".

        Only a database whose own write lock stands in for the migration lock
        (SQLite) answers True; a session lock's wait is sqlmig's own.
        """
        return False

    def locked_out(self, timeout: float) -> LockTimeout:
        """The error for a wait on the database's own write lock that ran out."""
        return LockTimeout(
            f"the {self.title or self.name} database stayed locked by another connection for "
            f"more than {timeout:g} s: another runner is migrating; wait, or raise lock_timeout",
            timeout=timeout,
        )

    def lock_for(self, conn: Connection, table: str, schema: str | None) -> MigrationLock | None:
        """The lock guarding history table ``table`` on ``conn``'s database, if any.

        Its key names the database, the schema (the default one when ``None``)
        and the table, so two history tables never block each other. The
        names come from the server, never from how the URL is spelled
        (``/app``, ``?dbname=app`` and ``PGDATABASE=app`` take one lock).
        """
        return self.lock_and_scope(conn, table, schema)[0]

    def lock_and_scope(
        self, conn: Connection, table: str, schema: str | None
    ) -> tuple[MigrationLock | None, str | None]:
        """:meth:`lock_for`, and the session's scope the steps are to keep, in one query.

        The scope is what :attr:`restore_scope` gives back after each step
        (None where there is nothing to give back).
        """
        if self.lock is None:
            return None, None
        database, default_schema, scope = self._identity(conn)
        schema = schema or default_schema
        if self.schema_is_database:  # MySQL: the table's schema is its database
            database = schema
        return self.lock(lock_key(database, schema, table)), scope

    def _identity(self, conn: Connection) -> tuple[str | None, str | None, str | None]:
        """The current database, default schema and scope, as the server names them."""
        if self.identity is None:
            return conn.engine.url.database, conn.dialect.default_schema_name, None
        begun = nullcontext() if conn.in_transaction() else conn.begin()
        with begun:
            database, schema, scope = conn.exec_driver_sql(self.identity).one()
        return database, schema, scope

    def scope_statement(self, conn: Connection, scope: str | None) -> str | None:
        """The statement giving ``conn``'s session back ``scope``, or None where there is none.

        A step's ``SET search_path`` (PostgreSQL) or ``USE`` (MySQL) ends with
        the step, like a ``SET LOCAL``: the history row and the next step see
        the session as the run found it.
        """
        if self.restore_scope is None or scope is None:
            return None
        if "{name}" in self.restore_scope:
            return self.restore_scope.format(
                name=conn.dialect.identifier_preparer.quote_identifier(scope)
            )
        # {escaped}: an E'' literal, read alike whatever standard_conforming_strings says,
        # and in ASCII alone, sent alike whatever client_encoding a step has set
        escaped = scope.replace("\\", "\\\\").replace("'", "''")
        if not escaped.isascii():
            escaped = "".join(_unicode_escape(c) for c in escaped)
        return self.restore_scope.format(escaped=f"E'{escaped}'")

    def keep_scope(self, conn: Connection, scope: str | None) -> None:
        """After a step: give the session back the scope read at the start of the run.

        Raises:
            sqlalchemy.exc.DBAPIError: the database refused it.
        """
        statement = self.scope_statement(conn, scope)
        if statement is not None:
            run_own(conn, statement)

    def send_own(self, conn: Connection, statement: str, *, first: bool = False) -> bool:
        """Run sqlmig's own ``statement`` (see :func:`run_own`); False when the database refused it.

        ``first``: it may be the transaction's first statement, so the
        transaction begins first where the driver begins it itself.
        """
        try:
            run_own(conn, statement)
        except DBAPIError:
            return False
        return True

    def send_own_each(
        self, conn: Connection, statements: Sequence[str]
    ) -> tuple[int, DBAPIError | None, int | None]:
        """Run sqlmig's own ``statements`` in order, stopping at the first one refused.

        Returns how many ran, the refused one's error (None when all ran), and
        the rows the last one touched when all ran (None where unknown).
        Here each is sent in a call of its own; a profile whose driver runs
        several in one round trip, and tells where they stopped, sends them
        so (PostgreSQL through psycopg).
        """
        rows = None
        for done, statement in enumerate(statements):
            try:
                rows = run_own(conn, statement)
            except DBAPIError as exc:
                return done, exc, None
        return len(statements), None, None if rows is None or rows < 0 else rows

    def own_literal(self, value: str | int | bool | None) -> str | None:
        """``value`` written in one of sqlmig's own statements, in ASCII; None where it
        cannot be (then the statement is sent with parameters instead).

        Here none is: a profile that writes values so says how (PostgreSQL).
        """
        return None

    def recover_aborted(self, conn: Connection, savepoint: str) -> bool:
        """After a step whose ``savepoint`` could not be released: was its transaction
        aborted by a database error the step caught (True), not ended?

        Where an error aborts the transaction (:attr:`errors_abort_transaction`)
        and ``savepoint`` is still there, the transaction is rolled back to it:
        the step's work is undone and the transaction can go on (to be rolled
        back). False when the savepoint is gone with the transaction, so the
        step ended it; and always where errors abort no transaction.
        """
        if not self.errors_abort_transaction:
            return False
        return self.send_own(conn, f"ROLLBACK TO SAVEPOINT {savepoint}")

    def running_mark(self, conn: Connection, table: str) -> ProgressMark | None:
        """The mark of a step of history ``table`` running outside a transaction, if any.

        None where a session lock already keeps runners apart.
        """
        return None

    def tune_session(self, conn: Connection, *, local: bool) -> list[tuple[str, str]]:
        """Apply :attr:`session_settings` inside the current transaction.

        ``local`` settings end with the transaction; the others last for the
        session and are returned as ``(name, previous value)`` for
        :meth:`untune_session` (a pooled connection must not keep them).
        """
        if self.set_setting is None:
            return []
        previous = []
        for name, value in self.session_settings:
            row = conn.execute(
                text(self.set_setting), {"name": name, "value": value, "local": local}
            ).first()
            if row is not None and not local:
                previous.append((name, str(row[0])))
        return previous

    def untune_session(self, conn: Connection, previous: list[tuple[str, str]]) -> None:
        """Give settings changed by :meth:`tune_session` their previous values back."""
        if self.set_setting is None:
            return
        for name, value in previous:
            conn.execute(text(self.set_setting), {"name": name, "value": value, "local": False})

    def begin_step(self, conn: Connection, *, immediate: bool, timeout: float) -> None:
        """Make the transaction SQLAlchemy began real on the server, where needed.

        Drivers that begin their transactions themselves need nothing here.

        Raises:
            LockTimeout: the database stayed locked by another writer past ``timeout``.
        """

    def indexes_expressions(self, conn: Connection) -> bool:
        """Whether an index may be on an expression (``lower(name)``), not only columns."""
        return True

    def kept_transaction(self, conn: Connection) -> bool:
        """After a step in a transaction: the driver still runs its statements in one.

        For drivers that keep no transaction state sqlmig reads elsewhere
        (:func:`sqlmig._guard.driver_in_transaction`). A connection found
        otherwise is put back as sqlmig needs it for the statements that follow.
        """
        return True

    def left_tables_locked(self, exc: DBAPIError) -> bool:
        """Whether ``exc`` says the session holds table locks that exclude the history
        table (MySQL's ``LOCK TABLES``, left by a step)."""
        return False

    def unlock_tables(self, conn: Connection) -> None:
        """Free the table locks a step left on the session (see :meth:`left_tables_locked`)."""

    def connection_lost(self, conn: Connection) -> bool:
        """Whether the driver knows its connection to the server is gone (a session
        the server ended, a network error), without a round trip.

        psycopg says so in ``closed``, PyMySQL in ``open``; a driver that keeps no
        such state answers False until SQLAlchemy has seen the error itself.
        """
        dbapi = conn.connection.dbapi_connection
        if dbapi is None:
            return True
        if getattr(dbapi, "closed", False) is True:  # psycopg (psycopg2: a number)
            return True
        return getattr(dbapi, "open", True) is False  # PyMySQL, mysqlclient

    def get_busy_timeout(self, conn: Connection) -> int | None:
        """The connection's wait for the database's write lock, in ms; None if it has none."""
        return None

    def set_busy_timeout(self, conn: Connection, milliseconds: int) -> None:
        """Set the connection's wait for the database's write lock, where it has one."""

    def changes_seen(self, conn: Connection) -> int | None:
        """The counter of other connections' commits, where the database keeps one.

        Read inside a write transaction it is exact: no one else can commit
        until that transaction ends, and ``conn``'s own commits never move it.
        """
        return None

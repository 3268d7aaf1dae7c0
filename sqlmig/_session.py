"""The run context of one runner call: its connection, the lock, and SQLite's waits.

:func:`opened` gives a call its :class:`Session`: one connection (the runner's
own, or the caller's as it is), taken out of ``AUTOCOMMIT`` before anything is
written and given its settings back at the end, with driver errors from
sqlmig's own statements translated. The session reads the history, holds the
migration lock around the steps, and prepares the history table for writing.
The module is long because a call's context is one object: its connection's
state, the translation of its driver errors (the caller's own code apart), its
reads of the history and SQLite's waits all belong to the same session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ._database import Database, caller_began
from ._dialects import DialectProfile, profile_for, profile_named
from ._driver_errors import translated
from ._errors import UsageError
from ._history import History, HistoryStore
from ._migration import StepCallback

if TYPE_CHECKING:
    from ._execution import StepExecutor

__all__ = ["Session", "connect_args", "opened"]

log = logging.getLogger("sqlmig")

_T = TypeVar("_T")


def _autocommit(conn: Connection) -> bool:
    """Whether ``conn`` is in ``AUTOCOMMIT``, set on it, its engine, or ``create_engine``."""
    probe = getattr(conn, "_is_autocommit_isolation", None)  # SQLAlchemy 2.0 and later
    if probe is not None:
        return bool(probe())
    return conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def connect_args(db: Database, lock_timeout: float) -> dict[str, Any]:
    """For an engine built from the URL: each statement waits up to ``lock_timeout``."""
    name = profile_named(db.url.get_backend_name()).connect_timeout_arg
    return {name: lock_timeout} if name else {}


@contextmanager
def opened(
    db: Database,
    store: HistoryStore,
    lock_timeout: float,
    *,
    write: bool,
    tenant_schema: str | None = None,
    create_schema: bool = False,
) -> Iterator[Session]:
    """The session of one call on ``db``: one connection, closed after (unless given).

    ``create_schema``: the call records steps, so what it records them in is
    made when missing: a tenant's schema (``tenant_schema``: the session runs
    in it, :mod:`sqlmig._tenant_scope`), a SQLite file. Any other call on a
    SQLite file that does not exist works on an empty stand-in and creates no
    file.

    Raises:
        UsageError: a closed Connection, or one in a transaction the call cannot use.
        LockTimeout: a wait for SQLite's lock ran out, anywhere in the call.
    """
    given = db.given_connection
    if given is not None and given.closed:
        raise UsageError(
            "the Connection you passed is closed: pass an open Connection, "
            "or the Engine (sqlmig then opens and closes its own)"
        )
    callers: list[BaseException] = []  # raised by the caller's own code (Session.callers_code)
    errors = translated(
        url=db.display_url,
        table=store.name,
        schema=store.schema,
        backend=db.url.get_backend_name(),
        lock_timeout=lock_timeout,
        passes=callers,
    )
    # a SQLite file this call creates holds no history: nothing to read before writing
    new_file = create_schema and given is None and db.missing_file()
    with errors, db.engine(connect_args(db, lock_timeout), create_file=create_schema) as engine:
        conn = given if given is not None else db.connect(engine)
        profile = profile_for(conn)
        session: Session | None = None
        try:
            nested = given is not None and conn.in_transaction()
            if write and nested and not caller_began(conn):
                raise UsageError(
                    "the Connection you passed is in a transaction SQLAlchemy began on its "
                    "own (autobegin), which no one would commit: call conn.commit() first "
                    "(each step is then committed), or begin one yourself "
                    "(with conn.begin(): ...) and commit it after the call"
                )
            if write and nested and not profile.caller_transaction_ok:
                raise UsageError(
                    f"{profile.name} commits DDL implicitly, so it cannot migrate inside "
                    "the transaction you passed: pass an Engine, or a Connection "
                    "outside a transaction"
                )
            if nested:  # make sure the caller's transaction really began (SQLite)
                profile.begin_step(conn, immediate=False, timeout=lock_timeout)
            session = Session(engine, conn, profile, nested, store, lock_timeout, db.builds_engine)
            session.callers = callers
            try:
                with _scoped(session, tenant_schema, create_schema, own=given is None) as existed:
                    plain = store.schema is None or store.tenant  # no schema that must exist
                    session.new_database = plain and (new_file or not existed)
                    yield session
            finally:
                session.restore_busy_timeout()
        except DBAPIError as exc:
            caller_s = any(exc is own for own in callers)
            if profile.busy(exc) and not caller_s:  # a wait for SQLite's lock that ran out
                raise profile.locked_out(lock_timeout) from exc
            raise
        finally:
            if given is None:
                conn.close()
            elif session and session.left_autocommit and not conn.invalidated:
                conn.execution_options(isolation_level="AUTOCOMMIT")


def _scoped(
    s: Session, schema: str | None, create: bool, *, own: bool
) -> AbstractContextManager[bool]:
    """The tenant's schema as the session's scope, when it has one; gives whether it
    existed before the call (True without one)."""
    if schema is None:
        return nullcontext(True)
    from ._tenant_scope import in_tenant_schema

    return in_tenant_schema(s.conn, s.profile, schema, create=create, own=own)


class Session:
    """The connection and facts of one runner call."""

    __slots__ = (
        "builds_engine",
        "busy_before",
        "callers",
        "conn",
        "engine",
        "history_seen",
        "left_autocommit",
        "lock_timeout",
        "nested",
        "new_database",
        "profile",
        "scope",
        "store",
        "waited",
    )

    def __init__(
        self,
        engine: Engine,
        conn: Connection,
        profile: DialectProfile,
        nested: bool,
        store: HistoryStore,
        lock_timeout: float,
        builds_engine: bool,
    ) -> None:
        self.engine = engine
        self.conn = conn
        self.profile = profile
        #: a connection the caller handed in, inside its transaction
        self.nested = nested
        self.store = store
        self.lock_timeout = lock_timeout
        #: the engine was built for this call, with ``lock_timeout`` as its busy timeout
        self.builds_engine = builds_engine
        #: :meth:`transactional` took the connection out of ``AUTOCOMMIT``
        self.left_autocommit = False
        #: the caller's busy timeout, while the session uses ``lock_timeout`` instead
        self.busy_before: int | None = None
        #: this call waited for another runner (its lock, or its running step)
        self.waited = False
        #: errors raised by the caller's own code inside the session: never translated
        self.callers: list[BaseException] = []
        #: the session's scope read with the lock (``DialectProfile.lock_and_scope``),
        #: which each step gets back
        self.scope: str | None = None
        #: the database (a SQLite file, a tenant's schema) did not exist before this
        #: call: it has no history table until the call writes one
        self.new_database = False
        #: a read of this call found the history table, so the read under the lock
        #: need not ask whether it exists
        self.history_seen = False

    @contextmanager
    def callers_code(self) -> Iterator[None]:
        """Around the caller's own code (``runner.connect()``'s block): its errors stay its own.

        A driver error raised inside is not one of sqlmig's statements, so it
        escapes the session as it is, never as a :class:`~sqlmig.SqlmigError`.
        """
        try:
            yield
        except BaseException as exc:
            self.callers.append(exc)
            raise

    def transactional(self) -> None:
        """Make sure the connection's transactions are real before anything is written.

        An engine or connection in ``AUTOCOMMIT`` would commit each statement of
        a step as it runs, so a failing step could not be rolled back: for the
        run the connection uses the database's default isolation level (a pooled
        connection gets its own level back from the pool; a caller's connection
        gets it back at the end of the call).
        """
        if self.nested or self.left_autocommit or not _autocommit(self.conn):
            return
        self.left_autocommit = True
        self.conn.execution_options(isolation_level=self.conn.default_isolation_level)

    def executor(self, on_step: StepCallback | None = None) -> StepExecutor:
        """The step executor of the call (``on_step`` for one that runs steps)."""
        from ._execution import StepExecutor

        self.transactional()
        return StepExecutor(
            self.conn,
            self.profile,
            self.store,
            nested=self.nested,
            lock_timeout=self.lock_timeout,
            on_step=on_step,
            scope=self.scope,
        )

    # -- reading the history ------------------------------------------------

    def read(self) -> History:
        """The history, read in a transaction of its own (or the caller's).

        The usual case, an existing table, costs one ``SELECT``; only when it
        fails is the table looked up, in a new transaction (PostgreSQL aborts a
        failed one), and read again if it exists by then (another runner may
        have just created it; a table that cannot be read raises again). In a
        database the call itself created it costs nothing.
        """
        if self.nested:
            return self.store.read(self.conn)
        if self.new_database:  # nothing can be there yet: no statement
            return History([], exists=False)
        try:
            history = self.patiently(lambda: self.store.read_existing(self.conn))
        except DBAPIError as exc:
            if self.profile.busy(exc):
                raise
            with self.conn.begin():
                history = self.store.read(self.conn)
        self.history_seen = history.exists
        return history

    def history_exists(self) -> bool:
        """Whether the history table exists, asked in a transaction of its own."""
        if self.nested:
            return self.store.exists(self.conn)
        with self.conn.begin():
            return self.store.exists(self.conn)

    def up_to_date(self, files: dict[int, str]) -> bool:
        """True when every file is applied unchanged and nothing else is recorded.

        The usual start-up: one ``SELECT`` compared with the files' checksums,
        no objects built. Anything else is left to the full comparison.
        """
        if self.nested or self.new_database:
            return False
        try:
            return self.patiently(lambda: self.store.read_fingerprint(self.conn) == files)
        except DBAPIError as exc:  # no table yet, or one that cannot be read: read() tells
            if self.profile.busy(exc):
                raise
            return False

    def read_for_steps(self, executor: StepExecutor) -> History:
        """The history that the steps of this run are planned from.

        Where the steps can trust the database's change counter (SQLite), it
        is read inside a write transaction, so that they can rely on it while
        no one else writes. A failed row whose step another runner is still
        running (SQLite's running mark) is waited for, up to ``lock_timeout``,
        as :func:`sqlmig._edits.prepared` does: it is in progress, not dirty.

        Raises:
            LockTimeout: another runner's step still runs after ``lock_timeout``.
        """
        if not executor.uses_change_counter:
            return self.read()
        deadline = time.monotonic() + self.lock_timeout
        while True:
            if executor.wait_while_running(deadline):
                self.waited = True
            with executor.transaction():
                history = self.store.read(self.conn)
                if history.failed and executor.running_elsewhere():
                    self.waited = True
                    continue  # another runner's step in progress: wait for it, read again
                executor.history_read()
            return history

    # -- SQLite's busy timeout ----------------------------------------------

    def wait_fully(self) -> bool:
        """Make each statement wait up to ``lock_timeout`` for SQLite's lock; True if it changed.

        An engine built for the call has that from its connect arguments. A
        caller's engine keeps its own busy timeout until the session first
        meets the lock (so a start-up with nothing to do sends no extra
        statement); the session then sets ``lock_timeout`` and gives the engine
        its value back at the end.
        """
        profile = self.profile
        if (
            profile.busy_timeout_pragma is None
            or self.nested
            or self.builds_engine
            or self.busy_before is not None
        ):
            return False
        with self.conn.begin():
            self.busy_before = profile.get_busy_timeout(self.conn) or 0
            profile.set_busy_timeout(self.conn, int(self.lock_timeout * 1000))
        return True

    def restore_busy_timeout(self) -> None:
        """Give a caller's engine its own busy timeout back (see :meth:`wait_fully`)."""
        if self.busy_before is None or self.conn.invalidated:
            return
        if self.conn.in_transaction():
            self.conn.rollback()
        with self.conn.begin():
            self.profile.set_busy_timeout(self.conn, self.busy_before)
        self.busy_before = None

    def patiently(self, read: Callable[[], _T]) -> _T:
        """``read()`` in a transaction of its own; once more if it met SQLite's lock too soon."""
        try:
            with self.conn.begin():
                return read()
        except DBAPIError as exc:
            if not (self.profile.busy(exc) and self.wait_fully()):
                raise
        with self.conn.begin():
            return read()

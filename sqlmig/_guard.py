"""The guard on a step's connection: nothing a step does may end sqlmig's transaction.

While a step runs, its ``Connection`` refuses every way to commit, roll back or
close what sqlmig began: the ``Connection`` methods, the transaction objects it
hands out, the raw driver connection however it is reached (``conn.connection``,
``.dbapi_connection``, ``.driver_connection``, a cursor's ``.connection``), and
transaction-control SQL text sent through any of them (``COMMIT``, ``ROLLBACK``,
``END``, ``BEGIN``, ``START TRANSACTION``, ...). Each refusal happens before
anything reaches the database. What still slips past (a private attribute, a
driver call sqlmig does not know) is caught afterwards by
:func:`driver_in_transaction` and the step's savepoint (see ``StepExecutor``).

The module is long because each level a step can reach (the ``Connection``, its
transaction objects, the driver connection, a cursor) needs a wrapper of its own,
and all of them share one :class:`GuardState`; reading SQL text for
transaction control lives in ``_statements``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ._statements import OWN_SAVEPOINT, only_reads, savepoint_uses, transaction_control

__all__ = [
    "ForbiddenCall",
    "Guard",
    "GuardState",
    "StepMark",
    "driver_in_transaction",
]


class ForbiddenCall(Exception):
    """Raised inside a step that tried to end the transaction sqlmig owns."""

    def __init__(self, what: str, *, autocommit: bool = False) -> None:
        if autocommit:  # a transactional = False step: there is nothing to commit
            hint = (
                "a transactional = False step runs in autocommit, so each statement is "
                "committed as it completes; remove it"
            )
        else:
            hint = (
                "sqlmig owns the step's transaction; remove it (each step is committed for "
                "you; mark a step that cannot run in a transaction transactional = False)"
            )
        super().__init__(f"migration {what}: {hint}")
        self.what = what


class GuardState:
    """What a guarded step tried: refused attempts, and statements that may have changed data."""

    __slots__ = ("autocommit", "changes", "savepoints", "tripped")

    def __init__(self, *, autocommit: bool = False) -> None:
        #: the step runs outside any transaction (``transactional = False``)
        self.autocommit = autocommit
        #: every refused attempt, so a step that swallowed the error is still caught
        self.tripped: list[str] = []
        #: statements that ran to the end and may have changed something (not
        #: reads), counted for a step that asked (``Guard.step(count=True)``)
        self.changes = 0
        #: the savepoints the step took itself (lower case): the only ones it may
        #: release or roll back to
        self.savepoints: set[str] = set()

    def count(self, sql: Any) -> None:
        if not isinstance(sql, str):
            self.changes += 1
            return
        if not only_reads(sql):
            self.changes += 1


def _forbid(what: str, tripped: GuardState) -> NoReturn:
    tripped.tripped.append(what)
    raise ForbiddenCall(what, autocommit=tripped.autocommit)


def _check_text(sql: Any, tripped: GuardState) -> None:
    if isinstance(sql, str):
        found = transaction_control(sql)
        if found is not None:
            _forbid(f"sent {found} as SQL", tripped)
        for verb, name in savepoint_uses(sql):
            if verb == "savepoint":
                tripped.savepoints.add(name)
            elif name not in tripped.savepoints:  # one around the step (sqlmig's, SQLAlchemy's)
                what = "released" if verb == "release" else "rolled back to"
                _forbid(f"{what} savepoint {name}, which it did not take", tripped)


# -- the raw driver ------------------------------------------------------------

#: Driver-connection methods and settings that end, begin or leave a transaction.
_RAW_FORBIDDEN = frozenset(
    {
        "commit",
        "rollback",
        "close",
        "begin",  # PyMySQL: BEGIN commits what is open
        "autocommit",  # PyMySQL method, psycopg and sqlite3 (3.12) setting
        "isolation_level",  # sqlite3: setting it commits
        "executescript",  # sqlite3: commits first
        "tpc_begin",
        "tpc_prepare",
        "tpc_commit",
        "tpc_rollback",
        "set_session",
        "set_isolation_level",
        "set_autocommit",
        "detach",
        "invalidate",
    }
)
_WRAPS_CONNECTION = frozenset({"dbapi_connection", "driver_connection", "connection"})
_EXECUTES = frozenset({"execute", "executemany"})
#: Driver-connection methods that send SQL text themselves (PyMySQL, mysqlclient).
_QUERIES = frozenset({"query"})


class _RawGuard:
    """A driver connection (or SQLAlchemy's pool proxy of it) minus what ends a transaction.

    Cursors it makes are guarded too, so ``cursor().connection.commit()`` is
    refused as well, and so is transaction-control text sent through them.
    """

    __slots__ = ("_raw", "_tripped")

    def __init__(self, raw: Any, tripped: GuardState) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_tripped", tripped)

    def __getattr__(self, name: str) -> Any:
        tripped = self._tripped
        if name in _RAW_FORBIDDEN:
            return lambda *a, **k: _forbid(f"called the driver connection's {name}()", tripped)
        value = getattr(self._raw, name)
        if name in _WRAPS_CONNECTION:
            return _RawGuard(value, tripped)
        if name == "cursor":
            return lambda *a, **k: _CursorGuard(value(*a, **k), tripped)
        if name in _QUERIES and callable(value):

            def query(sql: Any, *args: Any, **kwargs: Any) -> Any:
                text = sql.decode(errors="replace") if isinstance(sql, bytes) else sql
                _check_text(text, tripped)
                result = value(sql, *args, **kwargs)
                tripped.count(text)
                return result

            return query
        if name in _EXECUTES:  # sqlite3 and psycopg connections execute too

            def execute(sql: Any, *args: Any, **kwargs: Any) -> Any:
                _check_text(sql, tripped)
                result = _CursorGuard(value(sql, *args, **kwargs), tripped)
                tripped.count(sql)
                return result

            return execute
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _RAW_FORBIDDEN:
            _forbid(f"set the driver connection's {name}", self._tripped)
        setattr(self._raw, name, value)

    def __enter__(self) -> _RawGuard:
        return self

    def __exit__(self, *exc: object) -> None:  # sqlite3 and psycopg commit on exit
        _forbid("left a `with` block on the driver connection (it commits)", self._tripped)


class _CursorGuard:
    """A driver cursor whose ``execute`` refuses transaction-control text."""

    __slots__ = ("_cursor", "_tripped")

    def __init__(self, cursor: Any, tripped: GuardState) -> None:
        object.__setattr__(self, "_cursor", cursor)
        object.__setattr__(self, "_tripped", tripped)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._cursor, name)
        tripped = self._tripped
        if name in _WRAPS_CONNECTION:
            return _RawGuard(value, tripped)
        if name == "executescript":
            return lambda *a, **k: _forbid("called the cursor's executescript()", tripped)
        if name in _EXECUTES:

            def execute(sql: Any, *args: Any, **kwargs: Any) -> Any:
                _check_text(sql, tripped)
                result = value(sql, *args, **kwargs)
                tripped.count(sql)
                return self if result is self._cursor else result

            return execute
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._cursor, name, value)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def __enter__(self) -> _CursorGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()


class _TransactionGuard:
    """sqlmig's own ``Transaction`` as a step sees it: it cannot be ended."""

    __slots__ = ("_trans", "_tripped")

    def __init__(self, trans: Any, tripped: GuardState) -> None:
        self._trans = trans
        self._tripped = tripped

    def __getattr__(self, name: str) -> Any:
        if name in ("commit", "rollback", "close"):
            return lambda: _forbid(f"called {name}() on sqlmig's transaction", self._tripped)
        return getattr(self._trans, name)

    def __enter__(self) -> _TransactionGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        _forbid("ended sqlmig's transaction with a `with` block", self._tripped)


# -- the connection ------------------------------------------------------------


class _GuardedConnection(Connection):
    """The class a step's connection wears while the step runs."""

    _sqlmig_tripped: GuardState
    _sqlmig_own: tuple[object, ...]

    def _stop(self, method: str) -> NoReturn:
        _forbid(f"called conn.{method}()", self._sqlmig_tripped)

    def commit(self) -> None:
        self._stop("commit")

    def rollback(self) -> None:
        self._stop("rollback")

    def close(self) -> None:
        self._stop("close")

    def begin(self) -> Any:
        if self.in_transaction():
            self._stop("begin")
        return super().begin()  # autobegin on an AUTOCOMMIT connection

    def begin_twophase(self, xid: Any = None) -> Any:
        self._stop("begin_twophase")

    def commit_prepared(self, xid: Any, recover: bool = False) -> None:
        self._stop("commit_prepared")

    def rollback_prepared(self, xid: Any, recover: bool = False) -> None:
        self._stop("rollback_prepared")

    def detach(self) -> None:
        self._stop("detach")

    def invalidate(self, exception: BaseException | None = None) -> None:
        if isinstance(exception, self.dialect.loaded_dbapi.Error) and self._disconnected(exception):
            super().invalidate(exception)  # SQLAlchemy's own, after the server ended the session
            return
        self._stop("invalidate")

    def _disconnected(self, exception: BaseException) -> bool:
        """Whether ``exception`` says the server ended the session (nothing left to end)."""
        fairy = self._dbapi_connection
        raw = None if fairy is None else fairy.dbapi_connection
        if raw is None:  # the pool has already closed it
            return True
        return bool(self.dialect.is_disconnect(exception, raw, None))  # type: ignore[arg-type]

    def get_transaction(self) -> Any:
        return self._own(super().get_transaction())

    def get_nested_transaction(self) -> Any:
        return self._own(super().get_nested_transaction())

    def _own(self, trans: Any) -> Any:
        if trans is not None and any(trans is t for t in self._sqlmig_own):
            return _TransactionGuard(trans, self._sqlmig_tripped)
        return trans

    @property
    def connection(self) -> Any:
        fairy = Connection.connection.fget(self)  # type: ignore[attr-defined]
        return _RawGuard(fairy, self._sqlmig_tripped)


class Guard:
    """The guard on one connection, for as many steps as run on it.

    Its SQLAlchemy listeners (transaction-control text refused before it is
    sent; statements that may change something counted after, once a step
    asks for it) stay on the connection while :meth:`installed` is entered,
    and do nothing between steps: a run adds and removes them once instead
    of around every step.
    """

    __slots__ = ("_check", "_count", "_counting", "_depth", "conn", "state")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        #: what the running step tried; None between steps
        self.state: GuardState | None = None
        self._depth = 0
        self._counting = False

        def check(_c: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if self.state is not None:
                _check_text(statement, self.state)

        def count(_c: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if self.state is not None:
                self.state.count(statement)

        self._check = check
        self._count = count

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Keep the listeners on the connection while inside (re-entrant)."""
        if self._depth == 0:
            event.listen(self.conn, "before_cursor_execute", self._check)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                event.remove(self.conn, "before_cursor_execute", self._check)
                if self._counting:
                    event.remove(self.conn, "after_cursor_execute", self._count)
                    self._counting = False

    @contextmanager
    def step(self, *, autocommit: bool = False, count: bool = False) -> Iterator[GuardState]:
        """While inside, the connection refuses to commit, roll back or close, in every way.

        Yields what the step tried (see :class:`GuardState`). ``count``: the
        statements that complete are counted in it, for the message of a
        failure that no transaction takes back (the count's listener costs
        each statement of the run as much as the check, so it is added only
        then, and stays until the run ends).
        """
        conn = self.conn
        state = GuardState(autocommit=autocommit)
        own = tuple(t for t in (conn.get_transaction(), conn.get_nested_transaction()) if t)
        with self.installed():
            if count and not self._counting:
                event.listen(conn, "after_cursor_execute", self._count)
                self._counting = True
            original = conn.__class__
            conn.__class__ = _GuardedConnection
            conn._sqlmig_tripped = state  # type: ignore[attr-defined]
            conn._sqlmig_own = own  # type: ignore[attr-defined]
            self.state = state
            try:
                yield state
            finally:
                self.state = None
                conn.__class__ = original
                del conn._sqlmig_tripped  # type: ignore[attr-defined]
                del conn._sqlmig_own  # type: ignore[attr-defined]


def driver_in_transaction(dbapi: Any) -> bool | None:
    """Whether the driver connection is inside a transaction; None when it cannot tell.

    sqlite3 (and adapters that mirror it) say so in ``in_transaction``; psycopg
    in ``info.transaction_status`` (2 in a transaction, 3 in a failed one),
    psycopg2 in ``get_transaction_status()``. PyMySQL keeps no such state.
    """
    flag = getattr(dbapi, "in_transaction", None)
    if isinstance(flag, bool):
        return flag
    info = getattr(dbapi, "info", None)
    status = getattr(info, "transaction_status", None)
    if status is None and callable(getattr(dbapi, "get_transaction_status", None)):
        status = dbapi.get_transaction_status()
    if status is None:
        return None
    return int(status) in (2, 3)


class StepMark:
    """The savepoint a watched step runs under: gone afterwards, the step ended its transaction.

    A commit or rollback ends the transaction and every savepoint in it, even
    when the driver has begun a new transaction since, so releasing the mark
    after the step proves the transaction is still the one sqlmig began. Both
    statements go straight to the driver connection: they are sqlmig's own,
    and need neither SQLAlchemy's events nor its results.

    Its name is drawn anew for each runner call: a step that could name it
    could roll back to it (undoing its own work, with its history row still
    written after) or release it and take another of that name. The guard also
    refuses text naming any savepoint that begins as sqlmig's do.
    """

    def __init__(
        self,
        send: Callable[..., bool],
        send_each: Callable[[Connection, Sequence[str]], tuple[int, DBAPIError | None, int | None]],
    ) -> None:
        #: the savepoint's name, unknown to the steps
        self.name = f"{OWN_SAVEPOINT}_{os.urandom(8).hex()}"
        #: runs one statement on the driver connection, False when refused
        #: (``DialectProfile.send_own``: the dialect's cheapest way)
        self.send = send
        #: runs statements in order up to the first refused (``DialectProfile.send_own_each``)
        self.send_each = send_each

    def take(self, conn: Connection) -> None:
        """Take the mark inside ``conn``'s transaction, before the step runs.

        Raises:
            sqlalchemy.exc.DBAPIError: the database refused it.
        """
        statement = f"SAVEPOINT {self.name}"
        if not self.send(conn, statement, first=True):
            conn.exec_driver_sql(statement)  # again, to raise SQLAlchemy's error (and clean up)

    def release(
        self, conn: Connection, succeeded: bool, *, then: Sequence[str] = ()
    ) -> tuple[bool, DBAPIError | None, int | None]:
        """After the step: release the mark (roll back to it after a failure).

        ``then``: statements of sqlmig's own run after it, only if the mark was
        there, and in the same round trip where the driver can (see
        ``DialectProfile.send_own_each``).

        Returns whether the mark was there (False: the step's transaction was
        ended), the error of a statement of ``then`` the database refused, and the
        rows the last statement of ``then`` touched (None where unknown).
        """
        verb = "RELEASE SAVEPOINT" if succeeded else "ROLLBACK TO SAVEPOINT"
        if not then:
            return self.send(conn, f"{verb} {self.name}"), None, None
        done, error, rows = self.send_each(conn, (f"{verb} {self.name}", *then))
        return done > 0, error, rows

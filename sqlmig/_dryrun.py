"""Trying pending steps inside a transaction that is always rolled back."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection

from ._errors import MigrationFailed
from ._execution import StepExecutor, TransactionLost
from ._migration import PlannedStep

__all__ = ["changes_something", "parameters_shown", "try_plan"]

log = logging.getLogger("sqlmig")

#: How much of a statement's parameters a plan keeps: enough to recognise them.
PARAMETERS_SHOWN = 200

#: Statements that only read: queries, and the catalogue lookups of reflection
#: (SQLite ``PRAGMA table_info(...)``; a ``PRAGMA name = value`` sets something).
_READ = re.compile(
    r"^\s*(?:SELECT\b|SHOW\b|DESCRIBE\b|EXPLAIN\b|PRAGMA\s+[\w.]+\s*(?:\(.*\))?\s*;?\s*$)",
    re.IGNORECASE | re.DOTALL,
)


def changes_something(statement: str) -> bool:
    """False for a statement that only reads (a query, a ``PRAGMA`` lookup, ``SHOW``),
    or that a SQLite table rebuild sends only to set itself up or check its work.

    >>> changes_something("PRAGMA table_info('users')"), changes_something("DROP TABLE t")
    (False, True)
    """
    from ._sqlite_rebuild import SCAFFOLDING  # only the command line asks, after the run

    return _READ.match(statement) is None and SCAFFOLDING.search(statement) is None


def _bounded(value: object) -> str:
    text = repr(value)
    return text if len(text) <= PARAMETERS_SHOWN else text[:PARAMETERS_SHOWN] + " ..."


def parameters_shown(parameters: Any, executemany: bool) -> str:
    """A statement's parameters in a line of bounded length.

    One set is shown (cut short when long); several (``executemany``) as
    their number and the first of them, however many there are.

    >>> parameters_shown([{"id": 1}, {"id": 2}], executemany=True)
    "2 parameter sets, first: {'id': 1}"
    """
    if executemany and isinstance(parameters, (list, tuple)):
        first = _bounded(parameters[0]) if parameters else "none"
        return f"{len(parameters)} parameter sets, first: {first}"
    return _bounded(parameters)


@contextmanager
def capture(conn: Connection) -> Iterator[list[str]]:
    """Every statement ``conn`` sends while inside, with a bounded summary of its parameters.

    A bulk insert of many rows costs one short line, not a copy of its rows.
    """
    statements: list[str] = []

    def record(
        _c: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, executemany: bool
    ) -> None:
        if parameters:
            statement = f"{statement}  -- {parameters_shown(parameters, executemany)}"
        statements.append(statement)

    event.listen(conn, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(conn, "before_cursor_execute", record)


@contextmanager
def other_connections(conn: Connection) -> Iterator[list[int]]:
    """Count the connections taken from ``conn``'s engine by this thread while inside.

    A step that opens one (``conn.engine.connect()``) writes outside the dry
    run's transaction: what it writes there is committed. Connections of the
    engine taken by other threads (an application sharing it) are not counted.
    """
    opened: list[int] = []
    thread = threading.get_ident()

    def checkout(*_: Any) -> None:
        if threading.get_ident() == thread:
            opened.append(thread)

    engine = conn.engine
    event.listen(engine, "checkout", checkout)
    try:
        yield opened
    finally:
        event.remove(engine, "checkout", checkout)


def try_plan(executor: StepExecutor, plan: list[PlannedStep]) -> None:
    """Run the steps of ``plan`` and record their SQL; roll all of it back.

    Trying stops at the first ``transactional = False`` step: it and every step
    after it are planned only. Each tried step is watched (see
    ``StepExecutor.call``): one that ended the transaction, so that what it
    did may be committed, stops the dry run with ``MigrationFailed`` instead
    of a plan that claims nothing changed. A step that opens another
    connection of the engine is logged as a WARNING: what it writes through
    that one is committed, as no transaction of sqlmig's holds it.

    Raises:
        MigrationFailed: a step failed (nothing is kept either way), or ended
            the dry run's transaction (its work may be committed).
    """
    conn = executor.conn
    outer = conn.begin_nested() if executor.nested else conn.begin()
    try:
        if not executor.nested:
            executor.profile.begin_step(conn, immediate=False, timeout=executor.lock_timeout)
        for step in plan:
            if not step.migration.transactional:
                log.info(
                    "dry run: %s is transactional = False, so it and the steps after it "
                    "(which may need what it creates) are planned only",
                    step.migration.label,
                )
                break
            with capture(conn) as statements, other_connections(conn) as opened:
                try:
                    executor.call(step.migration, step.migration.up, "up (dry run)", watch=True)
                except TransactionLost as lost:
                    failure = lost.failure
                    raise MigrationFailed(
                        f"{failure.message.split('; its transaction was ended')[0]}; it ended "
                        "the dry run's transaction, so its work may be committed: check the "
                        "database by hand before you upgrade",
                        version=failure.version,
                        path=failure.path,
                        line=failure.line,
                    ) from failure.__cause__
            if opened:
                log.warning(
                    "dry run: %s opened another connection to the database; what it wrote "
                    "through that one is not part of the dry run's transaction, so it was "
                    "committed: check the database",
                    step.migration.label,
                )
            step.statements = statements
            step.tried = True
    finally:
        executor.discard(outer)

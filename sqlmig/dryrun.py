"""Trying pending steps inside a transaction that is always rolled back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection

from .errors import MigrationFailed
from .execution import MARK, StepExecutor, TransactionLost
from .migration import PlannedStep

__all__ = ["try_plan"]

log = logging.getLogger("sqlmig")


@contextmanager
def capture(conn: Connection) -> Iterator[list[str]]:
    """Every statement ``conn`` sends while inside, with its parameters."""
    statements: list[str] = []

    own = {f"{verb} {MARK}" for verb in ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")}

    def record(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement in own:  # sqlmig's watch on the step, not the step's SQL
            return
        statements.append(f"{statement}  -- {parameters!r}" if parameters else statement)

    event.listen(conn, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(conn, "before_cursor_execute", record)


def try_plan(executor: StepExecutor, plan: list[PlannedStep]) -> None:
    """Run the steps of ``plan`` and record their SQL; roll all of it back.

    Trying stops at the first ``transactional = False`` step: it and every step
    after it are planned only. Each tried step is watched (see
    ``StepExecutor.call``): one that ended the transaction, so that what it
    did may be committed, stops the dry run with ``MigrationFailed`` instead
    of a plan that claims nothing changed.

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
            with capture(conn) as statements:
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
            step.statements = statements
            step.tried = True
    finally:
        executor.discard(outer)

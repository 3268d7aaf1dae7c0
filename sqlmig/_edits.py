"""The history as sqlmig writes it outside the steps.

:func:`prepared` makes the table ready (created, adopted, checksums filled in)
in the write transaction that decides what to do; the edits a person asks for
(``baseline``, ``repair``, ``stamp``, ``unstamp``) run no step and each write
in one such transaction, under the migration lock the caller holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ._alembic_adoption import adoptable, may_adopt, to_adopt
from ._errors import DirtyDatabase, UsageError
from ._execution import StepExecutor
from ._history import History
from ._migration import AppliedMigration, Migration
from ._planning import compare
from ._session import Session

__all__ = ["baseline", "prepared", "repair", "stamp", "unstamp", "version_number"]

log = logging.getLogger("sqlmig")


def version_number(version: str | int, command: str) -> int:
    """The integer value of a version given to ``command``.

    Raises:
        UsageError: it is not a version (digits).
    """
    text = str(version).strip()
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"cannot {command} {text!r}: a version is digits, such as 002")
    return int(text)


@contextmanager
def prepared(
    s: Session, executor: StepExecutor, migrations: list[Migration], *, strict: bool = True
) -> Iterator[History]:
    """One write transaction: create or adopt the table, fill missing checksums.

    Yields the history read inside it, so what the caller decides from it
    and writes inside the block cannot race another runner (SQLite). A
    failed row whose step another runner is still running (SQLite, see
    ``RunningMark``) is waited for, up to ``lock_timeout``, so that no one
    reports it as dirty or repairs it away while it runs. ``strict=False``
    reads past rows whose version is not a number (``History.unreadable``)
    instead of raising ``DirtyDatabase``.
    """
    store = s.store
    deadline = time.monotonic() + s.lock_timeout
    while True:
        if executor.wait_while_running(deadline):
            s.waited = True
        with executor.transaction():
            history = _read_locked(s, migrations, strict)
            if history.failed and executor.running_elsewhere():
                s.waited = True
                continue  # another runner's step in progress: wait for it, read again
            # no row yet: Alembic's version table is adopted (a history sqlmig emptied
            # by undoing the chain has an empty version table: nothing adopted there)
            adopted = to_adopt(s.conn, migrations) if adoptable(history) else []
            if not history.exists or history.needs_adopting:
                store.create_or_adopt(s.conn, history)
                history = store.read(s.conn, strict=strict)
            for migration in adopted:  # Alembic's alembic_version, taken over in this transaction
                store.record(s.conn, migration, execution_ms=None)
            if adopted:
                history = store.read(s.conn, strict=strict)
            for row, migration in compare(migrations, history.rows).unfilled:
                store.set_checksum(s.conn, row.version, migration.checksum)
                log.info("recorded the checksum of %s", row.version)
            executor.history_read()
            yield history
        s.new_database, s.history_seen = False, True  # committed: the table is there now
        return


def _read_locked(s: Session, migrations: list[Migration], strict: bool) -> History:
    """The history read in the write transaction of :func:`prepared`, asking the least.

    A table this call has read already is read without asking whether it
    exists. In a database this call created (a SQLite file, a tenant's
    schema), it is created at once (``IF NOT EXISTS``: another runner may
    have made it meanwhile), then read, unless an Alembic history could be
    taken over, which must know whether the table was there before.
    """
    store, conn = s.store, s.conn
    if not s.nested and s.history_seen:
        return store.read_existing(conn, strict=strict)
    if not s.nested and s.new_database and not may_adopt(migrations):
        store.create_or_adopt(conn, History([], exists=False))
        return store.read_existing(conn, strict=strict)
    return store.read(conn, strict=strict)


def _settled(s: Session, failed: list[AppliedMigration], command: str) -> None:
    """Refuse to clear failed rows when this call waited for another runner.

    The failure may then be that runner's, left while this call waited
    (its step failed part-way), and no one has checked the database for it.

    Raises:
        DirtyDatabase: this call waited, and there are failed rows.
    """
    if not (s.waited and failed):
        return
    versions = [r.version for r in failed]
    raise DirtyDatabase(
        f"migration {', '.join(versions)} is failed, and this {command} waited for another "
        "runner, whose step may have failed just now: check the database by hand, then "
        f"run {command} again",
        versions=versions,
    )


def baseline(s: Session, migrations: list[Migration], number: int) -> list[Migration]:
    """Record every step up to ``number`` as applied; see ``MigrationRunner.baseline``."""
    marked = [m for m in migrations if m.number <= number]
    with prepared(s, s.executor(), migrations) as history:
        if history.rows:
            raise UsageError(
                f"cannot baseline: the history already has {len(history.rows)} row(s); "
                "baseline is only for a database sqlmig has never migrated"
            )
        for migration in marked:
            s.store.record(s.conn, migration, execution_ms=None)
    return marked


def repair(s: Session, migrations: list[Migration]) -> list[str]:
    """Accept edited files, forget failed and lost rows; see ``MigrationRunner.repair``."""
    store, conn = s.store, s.conn
    changes: list[str] = []
    if not s.history_exists():  # nothing recorded, nothing to repair: create nothing either
        log.info("repair: nothing to repair: there is no history table yet")
        return changes
    with prepared(s, s.executor(), migrations, strict=False) as history:
        _settled(s, history.failed, "repair")
        for version in history.unreadable:
            store.delete(conn, version)
            changes.append(f"removed the row {version!r}, whose version is not a number")
        comparison = compare(migrations, history.rows)
        files = comparison.by_number
        for row in comparison.changed:
            store.set_checksum(conn, row.version, files[row.number].checksum)
            changes.append(f"accepted the edited file of {row.version}")
        for row in comparison.failed:
            store.delete(conn, row.version)
            changes.append(f"removed the failed row of {row.version}")
        for row in comparison.missing:
            store.delete(conn, row.version)
            changes.append(f"removed {row.version}, whose file is gone")
    return changes


def stamp(s: Session, migrations: list[Migration], migration: Migration) -> str:
    """Record ``migration`` as applied without running it; see ``MigrationRunner.stamp``."""
    with prepared(s, s.executor(), migrations) as history:
        row = next((r for r in history.rows if r.number == migration.number), None)
        if row is not None and not row.success:
            _settled(s, [row], "stamp")
        if row is not None and row.success:
            raise UsageError(
                f"cannot stamp {migration.version}: it is already recorded as applied; "
                f"unstamp it first (sqlmig unstamp {migration.version}) to record it anew"
            )
        if row is not None:
            s.store.delete(s.conn, row.version)
        s.store.record(s.conn, migration, execution_ms=None)
    return f"recorded {migration.label} as applied without running it" + (
        " (replacing its failed row)" if row is not None else ""
    )


def unstamp(s: Session, migrations: list[Migration], version: str | int) -> str:
    """Remove one history row without running ``down()``; see ``MigrationRunner.unstamp``."""
    text = str(version).strip()
    number = int(text) if text.isascii() and text.isdigit() else None
    if not s.history_exists():  # nothing to remove: create nothing either
        raise UsageError(
            f"cannot unstamp {version!s}: the history has no row for it (there is "
            "no history table yet); sqlmig status lists the recorded steps"
        )
    with prepared(s, s.executor(), migrations, strict=False) as history:
        if number is None and text in history.unreadable:
            s.store.delete(s.conn, text)
            return f"removed the row {text!r}, whose version is not a number"
        if number is None:
            version_number(version, "unstamp")  # raises: not a version
        row = next((r for r in history.rows if r.number == number), None)
        if row is not None and not row.success:
            _settled(s, [row], "unstamp")
        if row is None:
            raise UsageError(
                f"cannot unstamp {version!s}: the history has no row for it; "
                "sqlmig status lists the recorded steps"
            )
        s.store.delete(s.conn, row.version)
    state = "applied" if row.success else "failed"
    return f"removed the {state} row of {row.version}_{row.name} without running down()"

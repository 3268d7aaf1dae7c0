"""Pure planning: from (migrations, history rows, target) to the steps to run.

Nothing here touches a database or runs a migration's module, so every rule is
testable on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ._errors import (
    ChecksumMismatch,
    DirtyDatabase,
    MissingMigration,
    OutOfOrderMigration,
    UsageError,
)
from ._migration import AppliedMigration, Migration, version_number

__all__ = ["BASE", "Comparison", "compare", "plan_downgrade", "plan_upgrade", "resolve_target"]

log = logging.getLogger("sqlmig")

BASE = "base"


class Comparison:
    """Files and history side by side.

    (A plain class: a dataclass's generated methods would add to every start's import.)
    """

    __slots__ = ("applied", "changed", "failed", "migrations", "missing", "pending", "unfilled")

    def __init__(
        self,
        migrations: list[Migration],
        applied: list[AppliedMigration],  # successful rows, oldest first
        pending: list[Migration],
        changed: list[AppliedMigration],
        missing: list[AppliedMigration],
        failed: list[AppliedMigration],
        unfilled: list[tuple[AppliedMigration, Migration]],  # applied rows without checksum
    ) -> None:
        self.migrations = migrations
        self.applied = applied
        self.pending = pending
        self.changed = changed
        self.missing = missing
        self.failed = failed
        self.unfilled = unfilled

    @property
    def by_number(self) -> dict[int, Migration]:
        return {m.number: m for m in self.migrations}

    @property
    def current(self) -> str | None:
        if not self.applied:
            return None
        return max(self.applied, key=lambda r: r.number).version


def compare(migrations: Sequence[Migration], rows: Sequence[AppliedMigration]) -> Comparison:
    """Match files to history rows by integer version."""
    files = {m.number: m for m in migrations}
    applied = [r for r in rows if r.success]
    failed = [r for r in rows if not r.success]
    done = {r.number for r in rows}
    changed, missing, unfilled = [], [], []
    for row in applied:
        migration = files.get(row.number)
        if migration is None:
            missing.append(row)
        elif row.checksum is None and migration.checksum is not None:
            unfilled.append((row, migration))
        elif None not in (row.checksum, migration.checksum) and row.checksum != migration.checksum:
            changed.append(row)
    pending = [m for m in migrations if m.number not in done]
    return Comparison(list(migrations), applied, pending, changed, missing, failed, unfilled)


def _versions(rows: Sequence[AppliedMigration | Migration]) -> str:
    return ", ".join(r.version for r in rows)


def check_history(comparison: Comparison) -> None:
    """Raise when the history needs a person before anything runs.

    Raises:
        DirtyDatabase: a row is marked failed.
        ChecksumMismatch: an applied file was edited.
        MissingMigration: an applied file is gone.
    """
    if comparison.failed:
        versions = [r.version for r in comparison.failed]
        one = versions[0] if len(versions) == 1 else None
        stamp = f"stamp({one!r}) (sqlmig stamp {one})" if one else "stamp(VERSION) for each"
        raise DirtyDatabase(
            f"migration {_versions(comparison.failed)} failed part-way (its DDL could not be "
            "rolled back): check the database by hand, then run repair() (sqlmig repair) "
            f"if none of its work is there, or {stamp} if all of it is (a down() "
            "that was stopped may have undone nothing)",
            versions=versions,
        )
    if comparison.changed:
        raise ChecksumMismatch(
            f"applied migration {_versions(comparison.changed)} was edited after it ran: "
            "restore the file and put the change in a new migration, or run repair() "
            "(sqlmig repair) to accept the edit",
            versions=[r.version for r in comparison.changed],
        )
    if comparison.missing:
        raise MissingMigration(
            f"applied migration {_versions(comparison.missing)} has no file any more: restore "
            "it, or run repair() (sqlmig repair) to forget it",
            versions=[r.version for r in comparison.missing],
        )


def resolve_target(target: str | int | None, comparison: Comparison) -> int | None:
    """The integer a target names, ``None`` for "everything", ``-1`` for base.

    Raises:
        UsageError: the target is neither a file's version nor an applied row's.
    """
    if target is None:
        return None
    text = str(target).strip()
    if text.lower() == BASE:
        return -1
    if text.isascii() and text.isdigit():
        number = version_number(text)
        known = {m.number for m in comparison.migrations} | {r.number for r in comparison.applied}
        if number in known:
            return number
    raise UsageError(
        f"unknown target {text!r}: give the version of a migration file or of an applied "
        "step, or 'base'"
    )


def plan_upgrade(
    comparison: Comparison, target: str | int | None, *, allow_out_of_order: bool
) -> list[Migration]:
    """The steps ``upgrade(target)`` applies, in order.

    Raises:
        DirtyDatabase, ChecksumMismatch, MissingMigration: see :func:`check_history`.
        UsageError: unknown target.
        OutOfOrderMigration: a late version, when that is refused.
    """
    check_history(comparison)
    limit = resolve_target(target, comparison)
    steps = [m for m in comparison.pending if limit is None or m.number <= limit]
    newest = max((r.number for r in comparison.applied), default=None)
    late = [m for m in steps if newest is not None and m.number < newest]
    if late and not allow_out_of_order:
        raise OutOfOrderMigration(
            f"migration {_versions(late)} is older than the newest applied one and "
            "allow_out_of_order is off: renumber it above the newest, or allow it",
            versions=[m.version for m in late],
        )
    for migration in late:
        log.warning(
            "applying %s out of order: version %s is below the newest applied one",
            migration.label,
            migration.version,
        )
    return steps


def most_recent_first(rows: Sequence[AppliedMigration]) -> list[AppliedMigration]:
    """Rows newest first: by ``applied_at``, ties by version descending."""
    return sorted(rows, key=lambda r: (r.applied_at, r.number), reverse=True)


def plan_downgrade(
    comparison: Comparison, target: str | int | None
) -> list[tuple[AppliedMigration, Migration]]:
    """The steps to undo to reach ``target``, most recently applied first.

    ``target=None`` means the single most recently applied step.

    Raises:
        DirtyDatabase: a row is marked failed.
        UsageError: unknown target.
        MissingMigration: a step to undo has no file.

    Whether each step has a ``down()`` is not asked here (it may take running
    the step's module): :func:`sqlmig._migration.check_reversible` does.
    """
    if comparison.failed:
        check_history(comparison)
    ordered = most_recent_first(comparison.applied)
    if target is None:
        rows = ordered[:1]
    else:
        limit = resolve_target(target, comparison)
        assert limit is not None
        rows = [r for r in ordered if r.number > limit]
    files = comparison.by_number
    gone = [r for r in rows if r.number not in files]
    if gone:
        raise MissingMigration(
            f"cannot undo {_versions(gone)}: its file is gone; restore the file first",
            versions=[r.version for r in gone],
        )
    return [(r, files[r.number]) for r in rows]

"""Checks for a project's migrations, to call from its test suite.

Example::

    from sqlmig import MigrationRunner
    from sqlmig.testing import check_history, check_stairway

    def test_every_down_undoes_its_up(tmp_path):
        check_stairway(MigrationRunner(f"sqlite:///{tmp_path}/t.db", "migrations"))

They (and :func:`check_models`) raise ``AssertionError`` with a message that
names what is wrong, so a failing check reads as a test failure, not as a
crash. :func:`begin` and
:func:`undoes_ddl` are for tests that roll back what they did.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, RootTransaction

from ._dialects import profile_for
from ._discovery import find_all
from ._errors import IrreversibleMigration, MigrationFailed, UsageError
from ._migration import AppliedMigration, Migration
from ._planning import BASE, compare
from ._runner import MigrationRunner
from ._schema_snapshot import Snapshot, differences, snapshot

__all__ = ["begin", "check_history", "check_models", "check_stairway", "undoes_ddl"]


def _take(runner: MigrationRunner) -> Snapshot:
    """The runner's schema (and its history table's schema), minus the history table."""
    with runner.connect() as conn:
        default = conn.dialect.default_schema_name
        extra = runner.schema if runner.schema not in (None, default) else None
        history = f"{extra}.{runner.table}" if extra else runner.table
        return snapshot(conn, (None, extra) if extra else (None,), ignore={history})


def _report(migration: Migration, problem: str, found: list[str]) -> AssertionError:
    return AssertionError(f"migration {migration.label}: {problem}: " + "; ".join(found))


def check_stairway(runner: MigrationRunner) -> list[Migration]:
    """Check that every step's ``down()`` undoes its ``up()``, step by step, in order.

    For each migration, lowest first: upgrade to it, snapshot the schema by
    reflection (tables, columns with types and nullability, primary keys,
    foreign keys, indexes, unique constraints, views; the history table left
    out), downgrade to the step before it (or base), compare with the schema
    from before the step, upgrade to it again and compare with the first
    snapshot. The runner's database must hold no applied step; it is left with
    every step applied. Returns the steps checked.

    Raises:
        AssertionError: naming the first step whose ``down()`` is missing,
            fails, or leaves a different schema, and what differs (e.g.
            ``index ix_users_email on users left behind``).
        UsageError: the database already has applied (or failed) steps.
        MigrationFailed: an ``up()`` failed the first time it ran.
    """
    __tracebackhide__ = True
    with runner.reusing_engine() as walker:  # one engine, one pool, for the whole walk
        return _walk(walker)


def _walk(runner: MigrationRunner) -> list[Migration]:
    __tracebackhide__ = True
    status = runner.status()
    if status.applied or status.failed:
        versions = ", ".join(r.version for r in status.applied + status.failed)
        raise UsageError(
            f"check_stairway needs a database with no applied step, and {runner.url} has "
            f"{versions}: point it at an empty database (a new SQLite file, or an empty "
            "test database)"
        )
    before = _take(runner)
    previous = BASE
    checked: list[Migration] = []
    for migration in runner.migrations():
        runner.upgrade(migration.version)
        after = _take(runner)
        try:
            runner.downgrade(previous)
        except IrreversibleMigration as exc:
            raise AssertionError(
                f"migration {migration.label} has no down(), so the stairway cannot undo it: "
                "add a down() that reverses up()"
            ) from exc
        except MigrationFailed as exc:
            raise AssertionError(f"migration {migration.label}: down() failed: {exc}") from exc
        found = differences(before, _take(runner))
        if found:
            raise _report(migration, "down() does not restore the schema", found)
        try:
            runner.upgrade(migration.version)
        except MigrationFailed as exc:
            raise AssertionError(
                f"migration {migration.label}: up() fails after its down() ran: {exc}"
            ) from exc
        found = differences(after, _take(runner))
        if found:
            raise _report(migration, "up() after down() gives another schema than before", found)
        before, previous = after, migration.version
        checked.append(migration)
    return checked


def _all_files(runner: MigrationRunner) -> list[Migration]:
    """Every migration of the source, duplicates included (``discover`` stops at one)."""
    return find_all(runner.migrations_source)


def _duplicates(items: list[Migration] | list[AppliedMigration]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = defaultdict(list)
    for item in items:
        path = getattr(item, "path", None)
        groups[item.number].append(Path(path).name if path else item.version)
    return {number: sorted(names) for number, names in groups.items() if len(names) > 1}


def check_history(runner: MigrationRunner) -> None:
    """Check files and history agree: no duplicate versions, no edited or lost step.

    Reads only. Pending steps are fine.

    Raises:
        AssertionError: naming every duplicate version (in the files or the
            history table), every applied step whose file was edited or is
            gone, and every step left failed part-way.
    """
    __tracebackhide__ = True
    files = _all_files(runner)
    rows = runner.history()
    problems = [
        f"version {number} is used by {len(names)} files: {', '.join(names)}"
        for number, names in sorted(_duplicates(files).items())
    ]
    problems += [
        f"the history records version {number} {len(names)} times: {', '.join(names)}"
        for number, names in sorted(_duplicates(rows).items())
    ]
    duplicated = set(_duplicates(files))
    unique = list({m.number: m for m in reversed(files)}.values())
    comparison = compare(unique, rows)
    problems += [
        f"applied migration {row.version}_{row.name} was edited after it ran (checksum differs)"
        for row in comparison.changed
        if row.number not in duplicated
    ]
    problems += [
        f"applied migration {row.version}_{row.name} has no file any more"
        for row in comparison.missing
    ]
    problems += [
        f"migration {row.version}_{row.name} failed part-way (its row has success = false)"
        for row in comparison.failed
    ]
    if problems:
        raise AssertionError(f"migration history of {runner.url}: " + "; ".join(problems))


def check_models(
    runner: MigrationRunner, metadata: MetaData | str | Sequence[MetaData | str]
) -> None:
    """Check that the migrations build the models: upgrade to head, then compare.

    The runner's database (an empty one: a new SQLite file, an empty test
    database) is upgraded to the newest step, then compared with ``metadata``
    (a MetaData, ``"module:attribute"``, or a list of them) as
    :meth:`~sqlmig.MigrationRunner.check` compares. Needs the ``sqlmig[ops]`` extra.

    Raises:
        AssertionError: listing every difference, one per line.
        MigrationFailed: a step failed on the way to the head.
        UsageError: Alembic is not installed.
        ConfigError: ``metadata`` names no module, attribute or MetaData.
    """
    __tracebackhide__ = True
    runner.upgrade()
    found = runner.check(metadata)
    if found:
        raise AssertionError(
            f"the migrations do not build the models on {runner.url} "
            f"({len(found)} difference(s)):\n" + "\n".join(f"  {line}" for line in found)
        )


def begin(conn: Connection, *, timeout: float = 60.0) -> RootTransaction:
    """``conn.begin()``, begun on the server at once: DDL that follows is inside it.

    Python's sqlite3 driver sends ``BEGIN`` only before the first change of
    data, so a ``CREATE TABLE`` before it would not be in the transaction;
    this sends it at once (waiting up to ``timeout`` seconds for another
    writer). Elsewhere it is ``conn.begin()``. Rolling the transaction back
    undoes everything done since, DDL included where :func:`undoes_ddl`.

    Raises:
        LockTimeout: SQLite stayed locked by another writer for ``timeout`` seconds.
    """
    transaction = conn.begin()
    profile_for(conn).begin_step(conn, immediate=False, timeout=timeout)
    return transaction


def undoes_ddl(conn: Connection) -> bool:
    """Whether a rolled-back transaction on ``conn``'s database undoes DDL too.

    True on SQLite and PostgreSQL: a :class:`~sqlmig.MigrationRunner` given a
    Connection inside your transaction runs its steps in savepoints, and your
    rollback undoes them. False on MySQL and MariaDB, which commit DDL
    implicitly (the runner refuses a transaction there; only data rolls back).
    """
    return profile_for(conn).caller_transaction_ok

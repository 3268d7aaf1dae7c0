"""``MigrationRunner``: the public entry point that ties the pieces together."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import URL

from . import _edits
from ._database import Database, DatabaseArgument
from ._discovery import Listing, discover
from ._dryrun import try_plan
from ._edits import prepared
from ._errors import UsageError
from ._execution import PlanItem
from ._held_lock import locked
from ._history import History, HistoryStore
from ._legacy import BotRunnerCalls, Report, printer
from ._locking import checked_lock_timeout
from ._migration import Migration, PlannedStep, Status, StepCallback, check_reversible
from ._planning import (
    Comparison,
    check_history,
    compare,
    plan_downgrade,
    plan_upgrade,
    resolve_target,
)
from ._runs import apply_steps, undo_steps
from ._session import Session, opened
from ._sources import MigrationsSource

__all__ = ["MigrationRunner"]

log = logging.getLogger("sqlmig")


class MigrationRunner(BotRunnerCalls):
    """Applies, undoes and reports migrations on one database.

    Example::

        runner = MigrationRunner("sqlite:///app.db", "migrations")
        runner.upgrade()          # every pending step, lowest version first

    ``db`` is a URL, a ``sqlalchemy.URL``, an ``Engine`` or a ``Connection``
    (a string must be a URL: a SQLite file is ``sqlite:///path``; the
    ``db_path=`` keyword takes a plain file path). ``migrations`` is a folder, an
    importable package name, or a list of :class:`Migration` objects.

    ``on_step(migration, phase, seconds)``, when given, is called as each step
    that ``upgrade``, ``downgrade`` or ``rollback_last`` runs starts
    (``"start"``, 0.0), after it is done and recorded (``"done"``, its
    duration) or when it fails (``"failed"``, before the error is raised): a
    progress display for long steps. What it raises is not caught.
    """

    def __init__(
        self,
        db: DatabaseArgument | None = None,
        migrations: MigrationsSource | None = None,
        *,
        table: str = "migrations",
        schema: str | None = None,
        lock_timeout: float = 60.0,
        allow_out_of_order: bool = True,
        db_path: str | Path | None = None,
        migrations_dir: str | Path | None = None,
        on_step: StepCallback | None = None,
    ) -> None:
        if db is None and db_path is not None:  # the bot runner's keyword: a plain file path
            text = str(db_path)
            db = text if "://" in text else URL.create("sqlite", database=text)
        migrations = migrations if migrations is not None else migrations_dir
        if db is None or migrations is None:
            raise UsageError(
                "MigrationRunner needs a database and a migrations source: "
                "MigrationRunner('sqlite:///app.db', 'migrations')"
            )
        for key, name in (("table", table), ("schema", schema)):
            if name is not None and not (isinstance(name, str) and name.strip()):
                raise UsageError(
                    f"{key}={name!r} names nothing: give the history table's "
                    f"{key} name, or leave {key}= out"
                )
        self.migrations_source: MigrationsSource = migrations
        self.table = table
        self.schema = schema
        self.lock_timeout = checked_lock_timeout(lock_timeout)
        self.allow_out_of_order = allow_out_of_order
        self._db = Database(db)
        self._store = HistoryStore(table, schema)
        self.on_step = on_step

    @classmethod
    def from_config(
        cls, env: str | None = None, path: str | Path | None = None, **overrides: Any
    ) -> MigrationRunner:
        """A runner configured from ``[tool.sqlmig]``.

        The file is ``path``, else the one ``SQLMIG_CONFIG`` names, else the
        nearest ``pyproject.toml`` with ``[tool.sqlmig]`` from the current
        directory upward; with none, ``SQLMIG_URL`` (or ``url=``) and
        ``migrations=`` are enough.

        Raises:
            ConfigError: no URL, unknown environment, unset ``${VAR}``, bad file.
        """
        from .config import runner_settings

        on_step = overrides.pop("on_step", None)
        return cls(**runner_settings(env=env, path=path, **overrides), on_step=on_step)

    @property
    def url(self) -> str:
        """The database URL with its password masked."""
        return self._db.display_url

    def migrations(self) -> list[Migration]:
        """Every migration of the source, lowest version first; imports nothing.

        Raises:
            MigrationSourceError: bad folder, file name or duplicate version.
        """
        return discover(self.migrations_source)

    def _session(self, *, write: bool) -> AbstractContextManager[Session]:
        """The run context of one call (see :func:`sqlmig._session.opened`)."""
        return opened(self._db, self._store, self.lock_timeout, write=write)

    # -- the public operations --------------------------------------------

    def upgrade(self, target: str | int | None = None) -> list[Migration]:
        """Apply every pending step up to ``target`` (all when None), lowest first.

        Each step runs in its own transaction with its history row. With
        nothing to do it returns ``[]`` at once, without taking the lock.

        Raises:
            MigrationSourceError: a bad file (found before any write).
            ChecksumMismatch, MissingMigration, DirtyDatabase: history and
                files disagree; nothing runs.
            OutOfOrderMigration, UsageError, LockTimeout, DatabaseUnavailable.
            MigrationFailed: a step failed; earlier steps stay applied.
        """
        return self._upgrade(target, None)

    def _upgrade(self, target: str | int | None, report: Report | None) -> list[Migration]:
        source = self.migrations_source
        listing = Listing(source) if isinstance(source, (str, Path)) else None
        quick = listing.fingerprint() if listing is not None and target is None else None
        migrations = discover(listing or source) if quick is None else []
        with self._session(write=True) as s:
            if quick is not None:
                if s.up_to_date(quick):
                    return []
                migrations = discover(listing or source)
            history = s.read()
            first = compare(migrations, history.rows)
            if first.failed:  # maybe another runner's step in progress: decide under the lock
                limit = resolve_target(target, first)
                steps = [m for m in first.pending if limit is None or m.number <= limit]
            else:
                steps = plan_upgrade(first, target, allow_out_of_order=self.allow_out_of_order)
                if not (steps or history.needs_adopting or first.unfilled):
                    return []
            for migration in steps:
                migration.load()  # every source error surfaces before the first write
            with locked(s):
                executor = s.executor(self.on_step, report)
                with prepared(s, executor, migrations) as history:
                    comparison = compare(migrations, history.rows)
                steps = plan_upgrade(comparison, target, allow_out_of_order=self.allow_out_of_order)

                def replan(history: History) -> list[PlanItem]:
                    now = compare(migrations, history.rows)
                    planned = plan_upgrade(now, target, allow_out_of_order=self.allow_out_of_order)
                    return [(None, m) for m in planned]

                executor.replan = replan
                with executor.watching():
                    return apply_steps(executor, steps)

    def downgrade(self, target: str | int) -> list[Migration]:
        """Undo every applied step above ``target`` (``"base"``: all), newest first.

        Raises:
            IrreversibleMigration: a step to undo has no ``down()``; nothing ran.
            UsageError: ``target`` is neither a file's version nor an applied row's.
            MigrationFailed: a ``down()`` failed; steps undone before it stay undone.
        """
        if target is None:
            raise UsageError("downgrade needs a target: a version, or 'base' to undo all")
        return self._undo(target, None)

    def rollback_last(self, verbose: bool = False) -> Migration | None:
        """Undo the most recently applied step; None when nothing is applied."""
        undone = self._undo(None, printer if verbose else None)
        if verbose and not undone:
            print("No migration to roll back")
        return undone[0] if undone else None

    def _undo(self, target: str | int | None, report: Report | None) -> list[Migration]:
        migrations = self.migrations()
        with self._session(write=True) as s, locked(s):
            executor = s.executor(self.on_step, report)
            comparison = compare(migrations, s.read_for_steps(executor).rows)
            queue: list[PlanItem] = list(plan_downgrade(comparison, target))
            check_reversible(m for _, m in queue)

            def replan(history: History) -> list[PlanItem]:
                planned = plan_downgrade(compare(migrations, history.rows), target)
                check_reversible(m for _, m in planned)
                return list(planned)

            executor.replan = replan
            with executor.watching():
                return undo_steps(executor, queue)

    def status(self) -> Status:
        """Applied, pending, changed, missing and failed steps. Writes nothing."""
        comparison = self._compare()
        return Status(
            applied=comparison.applied,
            pending=comparison.pending,
            changed=comparison.changed,
            missing=comparison.missing,
            failed=comparison.failed,
            current=comparison.current,
        )

    def _compare(self) -> Comparison:
        migrations = self.migrations()
        with self._session(write=False) as s:
            return compare(migrations, s.read().rows)

    def verify(self) -> None:
        """Raise if history and files disagree or a pending file does not compile.

        Pending steps alone are fine. Writes nothing, runs nothing.

        Raises:
            DirtyDatabase, ChecksumMismatch, MissingMigration, MigrationSourceError.
        """
        comparison = self._compare()
        check_history(comparison)
        for migration in comparison.pending:
            migration.compile()

    def baseline(self, version: str | int) -> list[Migration]:
        """Record every step up to ``version`` as applied without running it.

        Raises:
            UsageError: the history is not empty, or no file has ``version``.
        """
        migrations = self.migrations()
        wanted = str(version).strip()
        number = int(wanted) if wanted.isascii() and wanted.isdigit() else None
        if number is None or number not in {m.number for m in migrations}:
            raise UsageError(
                f"cannot baseline at {wanted!r}: no migration file has that version; "
                "give the version of the newest step the database already has"
            )
        with self._session(write=True) as s, locked(s):
            marked = _edits.baseline(s, migrations, number)
            log.info("baselined %d migration(s) up to %s", len(marked), wanted)
            return marked

    def repair(self) -> list[str]:
        """Accept edited files, forget failed rows and rows whose file is gone.

        Rows whose version is not a number (written by hand; no file can match
        them) are removed too.

        Returns one line per change made (each also logged).
        """
        migrations = self.migrations()
        with self._session(write=True) as s, locked(s):
            changes = _edits.repair(s, migrations)
        for change in changes:
            log.info("repair: %s", change)
        return changes

    def stamp(self, version: str | int) -> str:
        """Record one step as applied without running it, replacing its failed row if any.

        The way out after a step was completed by hand (a dirty MySQL step, a
        ``down()`` that failed part-way and was restored). Holds the lock; logs
        and returns one line saying what it did.

        Raises:
            UsageError: no file has ``version``, or it is already recorded as applied.
        """
        migrations = self.migrations()
        number = _edits.version_number(version, "stamp")
        migration = next((m for m in migrations if m.number == number), None)
        if migration is None:
            raise UsageError(
                f"cannot stamp {version!s}: no migration file has that version; "
                "give the version of a file (sqlmig status lists them)"
            )
        with self._session(write=True) as s, locked(s):
            change = _edits.stamp(s, migrations, migration)
        log.info("stamp: %s", change)
        return change

    def unstamp(self, version: str | int) -> str:
        """Remove one step's history row without running its ``down()``.

        The way out after a step was undone by hand; its file (if any) is then
        pending again. Holds the lock; logs and returns one line saying what it did.

        A row whose version is not a number (written by hand) is removed when
        ``version`` is exactly its text.

        Raises:
            UsageError: the history has no row for ``version``.
        """
        migrations = self.migrations()
        with self._session(write=True) as s, locked(s):
            change = _edits.unstamp(s, migrations, version)
        log.info("unstamp: %s", change)
        return change

    def dry_run(self, target: str | int | None = None) -> list[PlannedStep]:
        """What ``upgrade(target)`` would apply, with the SQL each step sends.

        Steps are tried inside one transaction that is rolled back; where DDL
        cannot be rolled back (MySQL, ``transactional = False``) they are only
        planned. The database is left exactly as it was.
        """
        migrations = self.migrations()
        with self._session(write=False) as s:
            comparison = compare(migrations, s.read().rows)
            steps = plan_upgrade(comparison, target, allow_out_of_order=self.allow_out_of_order)
            plan = [PlannedStep(m) for m in steps]
            for step in plan:
                step.migration.load()
            if not s.profile.transactional_ddl:
                log.info(
                    "dry run on %s shows the plan only: its DDL commits itself, so steps "
                    "cannot be tried in a rolled-back transaction",
                    s.profile.name,
                )
                return plan
            try_plan(s.executor(), plan)
            return plan

"""``MigrationRunner``: the public entry point that ties the pieces together.

Each public method is a short orchestration: the call's connection, lock and
waits are :mod:`sqlmig._session` and :mod:`sqlmig._held_lock`, the runs of
steps :mod:`sqlmig._runs`, the history edits :mod:`sqlmig._edits`, the seed
runners' calls :mod:`sqlmig._legacy`. The module is longer than most because
it is the whole public class: its docstrings are the API reference.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from sqlalchemy import URL, MetaData
from sqlalchemy.engine import Connection

from ._database import Database, DatabaseArgument
from ._dialects import profile_named
from ._discovery import Listing, discover
from ._errors import UsageError
from ._history import HistoryStore
from ._locking import checked_lock_timeout
from ._migration import (
    AppliedMigration,
    Migration,
    PlannedStep,
    Status,
    StepCallback,
    StepPhase,
    version_number,
)
from ._planning import (
    BASE,
    Comparison,
    check_history,
    compare,
    plan_upgrade,
)
from ._session import Session, connect_args, opened
from ._sources import MigrationsSource, is_folder

# What only some calls need is imported by the call: models and Alembic's
# comparison (check, autogenerate), dry runs, new files, the seed runners' calls,
# and what runs steps, takes the lock or edits the history (a start-up check with
# nothing to do needs none of it), Alembic's adoption, a tenant's schema.
if TYPE_CHECKING:
    from ._models import MetadataArgument, Models

__all__ = ["MigrationRunner", "refuse_unknown_target"]

log = logging.getLogger("sqlmig")


def _chained(first: StepCallback | None, then: StepCallback | None) -> StepCallback | None:
    """One ``on_step`` callback calling ``first``, then ``then`` (either may be None)."""
    if first is None or then is None:
        return first or then

    def both(migration: Migration, phase: StepPhase, seconds: float) -> None:
        first(migration, phase, seconds)
        then(migration, phase, seconds)

    return both


def refuse_unknown_target(target: str | int | None, migrations: list[Migration]) -> None:
    """Refuse, before anything connects, an upgrade target that no migration file has.

    An upgrade goes up to a step it can run, so its target is decided by the files
    alone (a downgrade's may be a row whose file is gone: that takes the history).

    Raises:
        UsageError: ``target`` is neither ``base`` nor a migration file's version.
    """
    if target is None:
        return
    text = str(target).strip()
    if text.lower() == BASE:
        return
    if text.isascii() and text.isdigit():
        number = version_number(text)
        if any(m.number == number for m in migrations):
            return
    newest = f"the newest is {migrations[-1].version}" if migrations else "there is none"
    raise UsageError(
        f"unknown target {text!r}: upgrade goes up to the version of a migration file "
        f"({newest}); give one, or none for all"
    )


class MigrationRunner:
    """Applies, undoes and reports migrations on one database.

    Example::

        runner = MigrationRunner("sqlite:///app.db", "migrations")
        runner.upgrade()          # every pending step, lowest version first

    ``db`` is a URL, a ``sqlalchemy.URL``, an ``Engine`` or a ``Connection``
    (a string must be a URL: a SQLite file is ``sqlite:///path``; the
    ``db_path=`` keyword takes a plain file path). ``migrations`` is a folder, an
    importable package name, an Alembic project (``"alembic:alembic.ini"``), or
    a list of :class:`Migration` objects and of such sources.
    ``metadata``, when given, is the models :meth:`check` compares the
    database with: a ``MetaData``, ``"module:attribute"`` (imported only when
    needed) or a list of them.

    ``on_step(migration, phase, seconds)``, when given, is called as each step
    that ``upgrade``, ``downgrade`` or ``rollback_last`` runs starts
    (``"start"``, 0.0), after it is done and recorded (``"done"``, its
    duration) or when it fails (``"failed"``, before the error is raised): a
    progress display for long steps (a :class:`StepCallback`). What it raises
    is not caught. Those three methods also take an ``on_step`` for one call,
    told after the runner's own.

    ``schema`` is where the history table lives; the steps run wherever the
    connection's default schema is. ``steps_in_schema=True`` (PostgreSQL; what
    each ``Target(url, schema=...)`` of :func:`sqlmig.upgrade_all` uses) makes
    ``schema`` a tenant's: the steps run with ``search_path`` set to it, an
    upgrade creates it when it is missing, and the connection's own
    ``search_path`` is given back at the end of each call.
    """

    @overload
    def __init__(
        self,
        db: DatabaseArgument,
        migrations: MigrationsSource,
        *,
        table: str = ...,
        schema: str | None = ...,
        lock_timeout: float = ...,
        allow_out_of_order: bool = ...,
        on_step: StepCallback | None = ...,
        metadata: MetadataArgument | None = ...,
        steps_in_schema: bool = ...,
    ) -> None: ...

    @overload
    def __init__(
        self,
        *,
        db_path: str | Path,
        migrations_dir: str | Path,
        table: str = ...,
        schema: str | None = ...,
        lock_timeout: float = ...,
        allow_out_of_order: bool = ...,
        on_step: StepCallback | None = ...,
        metadata: MetadataArgument | None = ...,
        steps_in_schema: bool = ...,
    ) -> None: ...

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
        metadata: MetadataArgument | None = None,
        steps_in_schema: bool = False,
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
        #: the steps run in ``schema`` too (a tenant's schema, PostgreSQL)
        self.steps_in_schema = bool(steps_in_schema)
        if self.steps_in_schema:
            if schema is None:
                raise UsageError(
                    "steps_in_schema=True needs schema=: the tenant's schema the steps run in"
                )
            from ._tenant_scope import refuse_without_schemas

            refuse_without_schemas(profile_named(self._db.url.get_backend_name()), schema)
        self._store = HistoryStore(table, schema, tenant=self.steps_in_schema)
        self.on_step = on_step
        self._models: Models | None = None
        if metadata is not None:
            from ._models import Models

            self._models = Models(metadata)

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
    def metadata(self) -> list[MetaData | str] | None:
        """The models ``check`` compares with: each a MetaData or a ``"module:attribute"``
        reference not yet imported; None when none was given."""
        return None if self._models is None else list(self._models.items)

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

    def _session(self, *, write: bool, create: bool = False) -> AbstractContextManager[Session]:
        """The run context of one call (see :func:`sqlmig._session.opened`); ``create``:
        the call records steps, so a tenant's schema or a SQLite file that is missing
        is created."""
        return opened(
            self._db,
            self._store,
            self.lock_timeout,
            write=write,
            tenant_schema=self.schema if self.steps_in_schema else None,
            create_schema=create,
        )

    # -- the public operations --------------------------------------------

    def upgrade(
        self, target: str | int | None = None, *, on_step: StepCallback | None = None
    ) -> list[Migration]:
        """Apply every pending step up to ``target`` (all when None), lowest first.

        Each step runs in its own transaction with its history row. With
        nothing to do it returns ``[]`` at once, without taking the lock.
        ``on_step`` is told of this call's steps, after the runner's own.
        Returns the steps this call applied, each listed once (one that another
        runner undid between two of its steps and that it applied again, where
        it applied it last).

        Raises:
            MigrationSourceError: a bad file (found before any write).
            ChecksumMismatch, MissingMigration, DirtyDatabase: history and
                files disagree; nothing runs.
            OutOfOrderMigration, UsageError, LockTimeout, DatabaseUnavailable.
            MigrationFailed: a step failed; earlier steps stay applied.
        """
        source = self.migrations_source
        listing = Listing(source) if is_folder(source) else None
        quick = listing.fingerprint() if listing is not None and target is None else None
        migrations = discover(listing or source) if quick is None else []
        refuse_unknown_target(target, migrations)  # before anything connects, or is created
        with self._session(write=True, create=True) as s:
            if quick is not None:
                if s.up_to_date(quick):
                    return []
                migrations = discover(listing or source)
            from ._runs import run_upgrade  # a start-up with nothing to do needs none of it

            return run_upgrade(
                s, migrations, target, self.allow_out_of_order, _chained(self.on_step, on_step)
            )

    def downgrade(
        self, target: str | int, *, on_step: StepCallback | None = None
    ) -> list[Migration]:
        """Undo every applied step above ``target`` (``"base"``: all), newest first.

        ``on_step`` is told of this call's steps, after the runner's own.

        Raises:
            IrreversibleMigration: a step to undo has no ``down()``; nothing ran.
            UsageError: ``target`` is neither a file's version nor an applied row's.
            MigrationFailed: a ``down()`` failed; steps undone before it stay undone.
        """
        if target is None:
            raise UsageError("downgrade needs a target: a version, or 'base' to undo all")
        return self._undo(target, on_step)

    def rollback_last(
        self, verbose: bool = False, *, on_step: StepCallback | None = None
    ) -> Migration | None:
        """Undo the most recently applied step; None when nothing is applied.

        ``verbose=True`` prints ``Undid migration 002_x (3 ms)``, or ``No
        migration to roll back`` (the bot runner's output). ``on_step`` is told
        of the step, after the runner's own.
        """
        if verbose:
            from ._legacy import rollback_last_verbosely

            return rollback_last_verbosely(self, on_step)
        undone = self._undo(None, on_step)
        return undone[0] if undone else None

    def _undo(self, target: str | int | None, on_step: StepCallback | None) -> list[Migration]:
        migrations = self.migrations()
        from ._held_lock import locked
        from ._runs import run_downgrade

        with self._session(write=True) as s, locked(s):
            return run_downgrade(s, migrations, target, _chained(self.on_step, on_step))

    def run_pending_migrations(self, verbose: bool = False) -> list[Migration]:
        """``upgrade()``, as the bot runner called it.

        ``verbose=True`` prints one line per step, ``Applied migration 001_x
        (2 ms)``, or ``No pending migrations``.
        """
        from ._legacy import run_pending_migrations

        return run_pending_migrations(self, verbose)

    def get_status(self) -> dict[str, Any]:
        """``status()`` as the bot runner's dict: ``total_applied``, ``total_pending``,
        ``applied`` (dicts of ``version``, ``name``, ``applied_at``) and ``pending``
        (dicts of ``version``, ``name``)."""
        from ._legacy import get_status

        return get_status(self)

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
            from ._alembic_adoption import as_adopted

            return compare(migrations, as_adopted(s, migrations, s.read()).rows)

    def verify(self) -> None:
        """Raise if history and files disagree or a pending file does not compile.

        Pending steps alone are fine. Writes nothing, runs nothing.

        Raises:
            DirtyDatabase, ChecksumMismatch, MissingMigration, MigrationSourceError.
        """
        migrations = self.migrations()
        with self._session(write=False) as s:
            comparison = compare(migrations, s.read().rows)
            dialect = s.conn.dialect.name
        check_history(comparison)
        for migration in comparison.pending:
            migration.compile(dialect)

    def check(self, metadata: MetadataArgument | None = None) -> list[str]:
        """How the database differs from the models; ``[]`` when it matches them.

        One readable line per difference: the history's first (a step failed
        part-way, an applied file edited or gone, then each pending step:
        ``002_add_orders: pending``), then each difference Alembic's comparison
        finds between the tables and ``metadata`` (``column orders.note: missing
        in the database``). ``metadata`` is a MetaData, a ``"module:attribute"``
        reference or a list of them; by default the runner's ``metadata=``. The
        history table is left out. Writes nothing. Needs the ``sqlmig[ops]`` extra.

        Raises:
            UsageError: no metadata given here nor to the runner, or Alembic
                is not installed.
            ConfigError: a reference names no module, no attribute or no MetaData.
        """
        from ._drift import schema_differences

        tables = self._tables("check", metadata)
        migrations = self.migrations()
        with self._session(write=False) as s:
            history = compare(migrations, s.read().rows)
            lines = [f"{r.version}_{r.name}: failed part-way" for r in history.failed]
            lines += [f"{r.version}_{r.name}: edited after it ran" for r in history.changed]
            lines += [f"{r.version}_{r.name}: applied, its file is gone" for r in history.missing]
            lines += [f"{m.label}: pending" for m in history.pending]
            return lines + schema_differences(s.conn, tables, self.table)

    def _tables(self, command: str, metadata: MetadataArgument | None) -> list[MetaData]:
        """The models ``command`` compares with: ``metadata``, else the runner's.

        Raises:
            UsageError: neither is given.
        """
        from ._models import Models

        models = self._models if metadata is None else Models(metadata)
        if models is None:
            raise UsageError(
                f"{command} needs the models to compare with: pass metadata= (a MetaData or "
                "'module:attribute'), or set metadata in [tool.sqlmig]"
            )
        return models.resolve()

    def autogenerate(self, name: str, metadata: MetadataArgument | None = None) -> Path | None:
        """Write the next migration file making the database match the models; its path.

        Alembic's comparison (the one :meth:`check` makes) is written as a step
        of ``sqlmig.ops(conn)`` calls in ``up()`` and ``down()``, named and
        numbered as ``sqlmig new`` does. Returns None, writing nothing, when
        the database already matches. Review the file before applying it.
        Needs the ``sqlmig[ops]`` extra.

        Raises:
            UsageError: steps are pending (upgrade first), no metadata given,
                Alembic is not installed, a column's type cannot be written,
                or a bad ``name``.
            DirtyDatabase, ChecksumMismatch, MissingMigration: the history needs care first.
            ConfigError: a reference names no module, no attribute or no MetaData.
        """
        from ._autogenerate import render_changes

        tables = self._tables("autogenerate", metadata)
        source = self.migrations_source
        if isinstance(source, Path) or (
            isinstance(source, str) and ("/" in source or os.sep in source)
        ):
            # a folder not made yet: the first step creates it, as sqlmig new does
            migrations = self.migrations() if Path(source).exists() else []
        else:
            migrations = self.migrations()
        with self._session(write=False) as s:
            history = compare(migrations, s.read().rows)
            check_history(history)
            if history.pending:
                labels = ", ".join(m.label for m in history.pending)
                raise UsageError(
                    f"cannot autogenerate while steps are pending ({labels}): the comparison "
                    "would count them as missing; upgrade first (sqlmig upgrade)"
                )
            template = render_changes(s.conn, tables, self.table)
        if template is None:
            return None
        if not isinstance(source, (str, Path)):
            raise UsageError(
                "autogenerate writes into a folder or package: this runner's migrations are "
                "a list built in code; pass migrations= a folder"
            )
        from ._scaffold import new_migration

        return new_migration(source, name, template)

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
        from . import _edits
        from ._held_lock import locked

        with self._session(write=True, create=True) as s, locked(s):
            marked = _edits.baseline(s, migrations, number)
            log.info("baselined %d migration(s) up to %s", len(marked), wanted)
            return marked

    def repair(self) -> list[str]:
        """Accept edited files, forget failed rows and rows whose file is gone.

        Rows whose version is not a number (written by hand; no file can match
        them) are removed too.

        Returns one line per change made (each also logged). On a database with
        no history table it changes nothing, creates nothing, and returns ``[]``.
        """
        migrations = self.migrations()
        from . import _edits
        from ._held_lock import locked

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
        from . import _edits
        from ._held_lock import locked

        migrations = self.migrations()
        number = _edits.version_number(version, "stamp")
        migration = next((m for m in migrations if m.number == number), None)
        if migration is None:
            raise UsageError(
                f"cannot stamp {version!s}: no migration file has that version; "
                "give the version of a file (sqlmig status lists them)"
            )
        with self._session(write=True, create=True) as s, locked(s):
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
        from . import _edits
        from ._held_lock import locked

        with self._session(write=True) as s, locked(s):
            change = _edits.unstamp(s, migrations, version)
        log.info("unstamp: %s", change)
        return change

    # -- for checks and tests ----------------------------------------------

    def history(self) -> list[AppliedMigration]:
        """Every row of the history table as read (``[]`` when there is no table). Writes nothing.

        Unlike :meth:`status`, rows are not matched with the files: a version
        recorded twice (a table edited by hand) is there twice.

        Raises:
            DirtyDatabase: a row's version is not a number.
        """
        with self._session(write=False) as s:
            return s.read().rows

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection on the runner's database for the block, to read what the steps made.

        One of the runner's Engine (built from the URL for the block), or the
        Connection it was given, as it is; a transaction the block began on a
        given Connection is rolled back at its end. A SQLite file that does not
        exist is not created: the block sees an empty database. An error of the
        block's own statements is raised as it is (it is not sqlmig's).
        """
        with self._session(write=False) as s:
            outside = not s.conn.in_transaction()
            try:
                with s.callers_code():  # the block's errors are its own, not sqlmig's
                    yield s.conn
            finally:
                if outside and s.conn.in_transaction():
                    s.conn.rollback()

    def with_database(self, db: DatabaseArgument) -> MigrationRunner:
        """A runner with this one's migrations and settings (``on_step`` too), on ``db``."""
        return MigrationRunner(
            db,
            self.migrations_source,
            table=self.table,
            schema=self.schema,
            lock_timeout=self.lock_timeout,
            allow_out_of_order=self.allow_out_of_order,
            on_step=self.on_step,
            metadata=self.metadata,
            steps_in_schema=self.steps_in_schema,
        )

    @contextmanager
    def reusing_engine(self) -> Iterator[MigrationRunner]:
        """For many calls in a row: a runner like this one whose calls share one Engine.

        A runner given a URL builds an Engine for each call and disposes of it
        after; the runner yielded uses one for the whole block, disposed at its
        end. A runner given an Engine or a Connection yields itself.
        """
        if not self._db.builds_engine:
            yield self
            return
        with self._db.engine(connect_args(self._db, self.lock_timeout)) as engine:
            yield self.with_database(engine)

    def sql_script(
        self,
        target: str | int | None = None,
        *,
        downgrade: bool = False,
        from_version: str | int | None = None,
        dialect: str | None = None,
    ) -> str:
        """The SQL that ``upgrade(target)`` (or ``downgrade(target)``) would run, as a script.

        Nothing connects to the database: each step's ``up()`` (``down()``)
        runs against a stand-in connection that writes its statements for the
        dialect, with their values as literals. The script has one
        transaction per step, with the step's history row (an ``INSERT``, or
        for a downgrade a ``DELETE``) before its ``COMMIT``. ``from_version``
        is the version taken as applied (every step up to it); None takes
        none as applied, and the script creates the history table first.
        ``dialect`` (``sqlite``, ``postgresql``, ``mysql``, ``mariadb``)
        writes for that database instead of the runner's URL's.

        Raises:
            UsageError: an unknown dialect, target or ``from_version``, a
                downgrade with nothing applied, or a step that needs data from
                the database (it reads rows or reflects the schema): the error
                names it and its line; use :meth:`dry_run` on a database instead.
            IrreversibleMigration: a step to undo has no ``down()``.
            MigrationFailed: a step raised while its SQL was written.
        """
        from ._sql_script import render_script  # only this call needs it

        return render_script(
            self.migrations(),
            dialect or self._db.url.get_backend_name(),
            target,
            downgrade=downgrade,
            from_version=from_version,
            table=self.table,
            schema=self.schema,
            tenant=self.steps_in_schema,
        )

    def dry_run(self, target: str | int | None = None) -> list[PlannedStep]:
        """What ``upgrade(target)`` would apply, with the SQL each step sends.

        Steps are tried inside one transaction that is rolled back; where DDL
        cannot be rolled back (MySQL, ``transactional = False``) they are only
        planned. The database is left exactly as it was.
        """
        migrations = self.migrations()
        refuse_unknown_target(target, migrations)
        with self._session(write=False) as s:
            from ._alembic_adoption import as_adopted

            comparison = compare(migrations, as_adopted(s, migrations, s.read()).rows)
            steps = plan_upgrade(comparison, target, allow_out_of_order=self.allow_out_of_order)
            plan = [PlannedStep(m) for m in steps]
            for step in plan:
                step.migration.load(s.conn.dialect.name)
            if not s.profile.transactional_ddl:
                log.info(
                    "dry run on %s shows the plan only: its DDL commits itself, so steps "
                    "cannot be tried in a rolled-back transaction",
                    s.profile.name,
                )
                return plan
            from ._dryrun import try_plan

            try_plan(s.executor(), plan)
            return plan

"""``MigrationRunner``: the public entry point that ties the pieces together."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import URL
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ._database import Database, DatabaseArgument, caller_began
from ._dialects import DialectProfile, profile_for, profile_named
from ._discovery import Listing, discover
from ._driver_errors import translated
from ._dryrun import try_plan
from ._errors import DirtyDatabase, LockTimeout, MigrationFailed, UsageError
from ._execution import PlanItem, StepExecutor
from ._history import History, HistoryStore
from ._legacy import BotRunnerCalls, Report, printer
from ._locking import MigrationLock, checked_lock_timeout
from ._migration import (
    AppliedMigration,
    Migration,
    PlannedStep,
    Status,
    StepCallback,
    check_reversible,
)
from ._planning import (
    Comparison,
    check_history,
    compare,
    plan_downgrade,
    plan_upgrade,
    resolve_target,
)
from ._sources import MigrationsSource

__all__ = ["MigrationRunner"]

log = logging.getLogger("sqlmig")

_T = TypeVar("_T")


def _autocommit(conn: Connection) -> bool:
    """Whether ``conn`` is in ``AUTOCOMMIT``, set on it, its engine, or ``create_engine``."""
    probe = getattr(conn, "_is_autocommit_isolation", None)  # SQLAlchemy 2.0 and later
    if probe is not None:
        return bool(probe())
    return conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def _version(version: str | int, command: str) -> int:
    """The integer value of a version given to ``command``.

    Raises:
        UsageError: it is not a version (digits).
    """
    text = str(version).strip()
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"cannot {command} {text!r}: a version is digits, such as 002")
    return int(text)


class _Session:
    """The connections and facts of one runner call."""

    __slots__ = ("busy_before", "conn", "engine", "left_autocommit", "nested", "profile", "waited")

    def __init__(
        self, engine: Engine, conn: Connection, profile: DialectProfile, nested: bool
    ) -> None:
        self.engine = engine
        self.conn = conn
        self.profile = profile
        #: a connection the caller handed in, inside its transaction
        self.nested = nested
        #: :meth:`transactional` took the connection out of ``AUTOCOMMIT``
        self.left_autocommit = False
        #: the caller's busy timeout, while the session uses ``lock_timeout`` instead
        self.busy_before: int | None = None
        #: this call waited for another runner (its lock, or its running step)
        self.waited = False

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

    # -- sessions, history, lock ------------------------------------------

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[_Session]:
        given = self._db.given_connection
        if given is not None and given.closed:
            raise UsageError(
                "the Connection you passed is closed: pass an open Connection, "
                "or the Engine (sqlmig then opens and closes its own)"
            )
        with self._translated(), self._db.engine(self._connect_args(), write=write) as engine:
            conn = given if given is not None else self._db.connect(engine)
            profile = profile_for(conn)
            session: _Session | None = None
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
                    profile.begin_step(conn, immediate=False, timeout=self.lock_timeout)
                session = _Session(engine, conn, profile, nested)
                try:
                    yield session
                finally:
                    self._restore_busy_timeout(session)
            except DBAPIError as exc:
                if profile.busy(exc):  # a wait for SQLite's lock that ran out, anywhere
                    raise profile.locked_out(self.lock_timeout) from exc
                raise
            finally:
                if given is None:
                    conn.close()
                elif session and session.left_autocommit and not conn.invalidated:
                    conn.execution_options(isolation_level="AUTOCOMMIT")

    def _translated(self) -> AbstractContextManager[None]:
        """A driver error from sqlmig's own statements becomes a :class:`SqlmigError`
        naming what sqlmig was doing (a step's own errors are ``MigrationFailed``)."""
        return translated(
            url=self._db.display_url,
            table=self.table,
            schema=self.schema,
            backend=self._db.url.get_backend_name(),
            lock_timeout=self.lock_timeout,
        )

    def _connect_args(self) -> dict[str, Any]:
        """For an engine built from the URL: each statement waits up to ``lock_timeout``."""
        name = profile_named(self._db.url.get_backend_name()).connect_timeout_arg
        return {name: self.lock_timeout} if name else {}

    def _read(self, s: _Session) -> History:
        """The history, read in a transaction of its own (or the caller's).

        The usual case, an existing table, costs one ``SELECT``; only when it
        fails is the table looked up, in a new transaction (PostgreSQL aborts a
        failed one), and read again if it exists by then (another runner may
        have just created it; a table that cannot be read raises again).
        """
        if s.nested:
            return self._store.read(s.conn)
        try:
            return self._patiently(s, lambda: self._store.read_existing(s.conn))
        except DBAPIError as exc:
            if s.profile.busy(exc):
                raise
            with s.conn.begin():
                return self._store.read(s.conn)

    @staticmethod
    def _settled(s: _Session, failed: list[AppliedMigration], command: str) -> None:
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

    def _history_exists(self, s: _Session) -> bool:
        """Whether the history table exists, asked in a transaction of its own."""
        if s.nested:
            return self._store.exists(s.conn)
        with s.conn.begin():
            return self._store.exists(s.conn)

    def _up_to_date(self, s: _Session, files: dict[int, str]) -> bool:
        """True when every file is applied unchanged and nothing else is recorded.

        The usual start-up: one ``SELECT`` compared with the files' checksums,
        no objects built. Anything else is left to the full comparison.
        """
        if s.nested:
            return False
        try:
            return self._patiently(s, lambda: self._store.read_fingerprint(s.conn) == files)
        except DBAPIError as exc:  # no table yet, or one that cannot be read: _read() tells
            if s.profile.busy(exc):
                raise
            return False

    @contextmanager
    def _locked(self, s: _Session) -> Iterator[None]:
        """Hold the migration lock for the block.

        A session lock is held by the runner's own connection, the one its steps
        run on: taken and freed in short transactions of their own, so the
        connection never sits idle inside a transaction and PostgreSQL sees no
        other session (one commit per step). Inside the caller's transaction the
        lock is transaction-scoped. Without a session lock (SQLite) each step's
        write transaction is the lock: the wait for it is tied to ``lock_timeout``.
        """
        lock = s.profile.lock_for(s.conn, self.table, self.schema)
        if lock is None:  # each step's write transaction is the lock: wait for it fully
            self._wait_fully(s)
            yield
            return
        if s.nested:
            s.profile.tune_session(s.conn, local=True)
            s.waited = lock.acquire(s.conn, self.lock_timeout, transaction_scoped=True)
            yield
            return
        tuned: list[tuple[str, str]] = []
        try:
            with s.conn.begin():
                tuned = s.profile.tune_session(s.conn, local=False)
            s.waited = lock.acquire(s.conn, self.lock_timeout)
        except LockTimeout:
            self._untune(s, tuned)
            raise
        except BaseException:
            s.conn.invalidate()  # ending the session frees a lock we may hold
            raise
        try:
            yield
        finally:
            self._unlock(lock, s.conn)
            self._untune(s, tuned)

    @staticmethod
    def _untune(s: _Session, tuned: list[tuple[str, str]]) -> None:
        """Give the connection its own settings back, before it returns to a pool."""
        if not tuned or s.conn.invalidated:
            return
        try:
            if s.conn.in_transaction():
                s.conn.rollback()
            with s.conn.begin():
                s.profile.untune_session(s.conn, tuned)
        except Exception as exc:
            s.conn.invalidate()  # a new session starts with the server's defaults
            log.warning("could not restore the connection's settings (%s); closed it", exc)

    @staticmethod
    def _unlock(lock: MigrationLock, conn: Connection) -> None:
        try:
            if conn.in_transaction():
                conn.rollback()
            held = lock.free(conn)
        except Exception as exc:
            conn.invalidate()  # ending the session frees the lock
            log.warning("could not free the migration lock (%s); closed its connection", exc)
            return
        except BaseException:
            conn.invalidate()
            raise
        if not held:
            log.warning(
                "the migration lock was no longer held at the end of the run: "
                "a step released it (pg_advisory_unlock_all, DISCARD ALL, RELEASE_ALL_LOCKS); "
                "remove that from the step"
            )

    def _executor(
        self, s: _Session, report: Report | None = None, *, steps: bool = False
    ) -> StepExecutor:
        """The step executor of a call; ``steps``: one that runs steps for real (``on_step``)."""
        s.transactional()
        return StepExecutor(
            s.conn,
            s.profile,
            self._store,
            nested=s.nested,
            lock_timeout=self.lock_timeout,
            report=report,
            on_step=self.on_step if steps else None,
        )

    def _wait_fully(self, s: _Session) -> bool:
        """Make each statement wait up to ``lock_timeout`` for SQLite's lock; True if it changed.

        An engine built here has that from its connect arguments. A caller's
        engine keeps its own busy timeout until the session first meets the
        lock (so a start-up with nothing to do sends no extra statement); the
        session then sets ``lock_timeout`` and gives the engine its value back
        at the end.
        """
        if (
            s.profile.busy_timeout_pragma is None
            or s.nested
            or self._db.builds_engine
            or s.busy_before is not None
        ):
            return False
        with s.conn.begin():
            s.busy_before = s.profile.get_busy_timeout(s.conn) or 0
            s.profile.set_busy_timeout(s.conn, int(self.lock_timeout * 1000))
        return True

    @staticmethod
    def _restore_busy_timeout(s: _Session) -> None:
        if s.busy_before is None or s.conn.invalidated:
            return
        if s.conn.in_transaction():
            s.conn.rollback()
        with s.conn.begin():
            s.profile.set_busy_timeout(s.conn, s.busy_before)
        s.busy_before = None

    def _patiently(self, s: _Session, read: Callable[[], _T]) -> _T:
        """``read()`` in a transaction of its own; once more if it met SQLite's lock too soon."""
        try:
            with s.conn.begin():
                return read()
        except DBAPIError as exc:
            if not (s.profile.busy(exc) and self._wait_fully(s)):
                raise
        with s.conn.begin():
            return read()

    @contextmanager
    def _prepared(
        self,
        executor: StepExecutor,
        migrations: list[Migration],
        *,
        strict: bool = True,
        session: _Session | None = None,
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
        deadline = time.monotonic() + self.lock_timeout
        while True:
            if executor.wait_while_running(deadline) and session is not None:
                session.waited = True
            with executor.transaction():
                history = self._store.read(executor.conn, strict=strict)
                if history.failed and executor.running_elsewhere():
                    if session is not None:
                        session.waited = True
                    continue  # another runner's step in progress: wait for it, read again
                if not history.exists or history.needs_adopting:
                    self._store.create_or_adopt(executor.conn, history)
                    history = self._store.read(executor.conn, strict=strict)
                for row, migration in compare(migrations, history.rows).unfilled:
                    self._store.set_checksum(executor.conn, row.version, migration.checksum)
                    log.info("recorded the checksum of %s", row.version)
                executor.history_read()
                yield history
                return

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
                if self._up_to_date(s, quick):
                    return []
                migrations = discover(listing or source)
            history = self._read(s)
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
            with self._locked(s):
                executor = self._executor(s, report, steps=True)
                with self._prepared(executor, migrations) as history:
                    comparison = compare(migrations, history.rows)
                steps = plan_upgrade(comparison, target, allow_out_of_order=self.allow_out_of_order)

                def replan(history: History) -> list[PlanItem]:
                    now = compare(migrations, history.rows)
                    planned = plan_upgrade(now, target, allow_out_of_order=self.allow_out_of_order)
                    return [(None, m) for m in planned]

                executor.replan = replan
                with executor.watching():
                    return self._apply(executor, steps)

    def _apply(self, executor: StepExecutor, steps: list[Migration]) -> list[Migration]:
        """Apply ``steps`` in order, following the plan made again if others wrote meanwhile."""
        for migration in steps:
            migration.load()
        applied: list[Migration] = []
        queue = list(steps)
        while queue:
            migration = queue.pop(0)
            migration.load()
            try:
                done = executor.apply(migration)
            except MigrationFailed as exc:
                exc.applied = list(applied)
                raise
            if done:
                applied.append(migration)
            again = executor.take_replanned()
            if again is not None:
                queue = [m for _, m in again[1 if done else 0 :]]
        return applied

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
        with self._session(write=True) as s, self._locked(s):
            executor = self._executor(s, report, steps=True)
            comparison = compare(migrations, self._read_for_steps(s, executor).rows)
            queue: list[PlanItem] = list(plan_downgrade(comparison, target))
            check_reversible(m for _, m in queue)

            def replan(history: History) -> list[PlanItem]:
                planned = plan_downgrade(compare(migrations, history.rows), target)
                check_reversible(m for _, m in planned)
                return list(planned)

            executor.replan = replan
            undone: list[Migration] = []
            with executor.watching():
                while queue:
                    row, migration = queue.pop(0)
                    assert row is not None
                    done = executor.undo(row, migration)
                    if done:
                        undone.append(migration)
                    again = executor.take_replanned()
                    if again is not None:
                        queue = again[1 if done else 0 :]
            return undone

    def _read_for_steps(self, s: _Session, executor: StepExecutor) -> History:
        """The history that the steps of this run are planned from.

        Where the steps can trust the database's change counter (SQLite), it
        is read inside a write transaction, so that they can rely on it while
        no one else writes.
        """
        if not executor.uses_change_counter:
            return self._read(s)
        with executor.transaction():
            history = self._store.read(s.conn)
            executor.history_read()
        return history

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
            return compare(migrations, self._read(s).rows)

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
        with self._session(write=True) as s, self._locked(s):
            marked = [m for m in migrations if m.number <= number]
            with self._prepared(self._executor(s), migrations) as history:
                if history.rows:
                    raise UsageError(
                        f"cannot baseline: the history already has {len(history.rows)} row(s); "
                        "baseline is only for a database sqlmig has never migrated"
                    )
                for migration in marked:
                    self._store.record(s.conn, migration, execution_ms=None)
            log.info("baselined %d migration(s) up to %s", len(marked), wanted)
            return marked

    def repair(self) -> list[str]:
        """Accept edited files, forget failed rows and rows whose file is gone.

        Rows whose version is not a number (written by hand; no file can match
        them) are removed too.

        Returns one line per change made (each also logged).
        """
        migrations = self.migrations()
        changes: list[str] = []
        with self._session(write=True) as s, self._locked(s):
            with self._prepared(self._executor(s), migrations, strict=False, session=s) as history:
                self._settled(s, history.failed, "repair")
                for version in history.unreadable:
                    self._store.delete(s.conn, version)
                    changes.append(f"removed the row {version!r}, whose version is not a number")
                comparison = compare(migrations, history.rows)
                files = comparison.by_number
                for row in comparison.changed:
                    self._store.set_checksum(s.conn, row.version, files[row.number].checksum)
                    changes.append(f"accepted the edited file of {row.version}")
                for row in comparison.failed:
                    self._store.delete(s.conn, row.version)
                    changes.append(f"removed the failed row of {row.version}")
                for row in comparison.missing:
                    self._store.delete(s.conn, row.version)
                    changes.append(f"removed {row.version}, whose file is gone")
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
        number = _version(version, "stamp")
        migration = next((m for m in migrations if m.number == number), None)
        if migration is None:
            raise UsageError(
                f"cannot stamp {version!s}: no migration file has that version; "
                "give the version of a file (sqlmig status lists them)"
            )
        with self._session(write=True) as s, self._locked(s):
            with self._prepared(self._executor(s), migrations, session=s) as history:
                row = next((r for r in history.rows if r.number == number), None)
                if row is not None and not row.success:
                    self._settled(s, [row], "stamp")
                if row is not None and row.success:
                    raise UsageError(
                        f"cannot stamp {migration.version}: it is already recorded as applied; "
                        f"unstamp it first (sqlmig unstamp {migration.version}) to record it anew"
                    )
                if row is not None:
                    self._store.delete(s.conn, row.version)
                self._store.record(s.conn, migration, execution_ms=None)
        change = f"recorded {migration.label} as applied without running it" + (
            " (replacing its failed row)" if row is not None else ""
        )
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
        text = str(version).strip()
        number = int(text) if text.isascii() and text.isdigit() else None
        with self._session(write=True) as s, self._locked(s):
            if not self._history_exists(s):  # nothing to remove: create nothing either
                raise UsageError(
                    f"cannot unstamp {version!s}: the history has no row for it (there is "
                    "no history table yet); sqlmig status lists the recorded steps"
                )
            with self._prepared(self._executor(s), migrations, strict=False, session=s) as history:
                if number is None and text in history.unreadable:
                    self._store.delete(s.conn, text)
                    change = f"removed the row {text!r}, whose version is not a number"
                    log.info("unstamp: %s", change)
                    return change
                if number is None:
                    _version(version, "unstamp")  # raises: not a version
                row = next((r for r in history.rows if r.number == number), None)
                if row is not None and not row.success:
                    self._settled(s, [row], "unstamp")
                if row is None:
                    raise UsageError(
                        f"cannot unstamp {version!s}: the history has no row for it; "
                        "sqlmig status lists the recorded steps"
                    )
                self._store.delete(s.conn, row.version)
        state = "applied" if row.success else "failed"
        change = f"removed the {state} row of {row.version}_{row.name} without running down()"
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
            comparison = compare(migrations, self._read(s).rows)
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
            try_plan(self._executor(s), plan)
            return plan

"""Many databases at once: ``upgrade_all``, ``status_all``, ``downgrade_all``.

The targets are checked first (:mod:`sqlmig._targets`) and the migrations
found once, shared by every target: a module is imported at most once per
call, whatever the number of targets. Then at most ``jobs`` worker threads
each take the next target and run one :class:`~sqlmig.MigrationRunner` call
on it: its own engine (built and disposed of around the call, unless the
target is an Engine) with its own connection and lock. So memory and
connections are bounded by ``jobs``, not by the number of targets.

One target's failure is its result's ``error``; the others go on (with
``fail_fast``, no new target starts and those running finish). ``processes=True``
runs the same per-target call on worker processes instead
(:mod:`sqlmig._fleet_processes`). Ctrl-C (a
``KeyboardInterrupt`` in the calling thread) stops new targets from
starting; a running target ends after the step it is running (which
finishes, or fails and rolls back), before its next; then
:class:`TargetsInterrupted` is raised with every target's result: done,
interrupted, or never started.

The module is long because a run over many targets is one object: its
workers, its stop signals, and the results that leave it in order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import URL, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ._database import Database
from ._discovery import discover
from ._errors import MigrationFailed, SqlmigError, UsageError
from ._migration import Migration, Status, StepCallback, StepPhase
from ._runner import MigrationRunner, refuse_unknown_target
from ._session import connect_args
from ._sources import MigrationsSource
from ._targets import Target, TargetArgument, checked_targets
from ._urls import to_url

__all__ = [
    "TargetResult",
    "TargetsInterrupted",
    "downgrade_all",
    "status_all",
    "upgrade_all",
]

log = logging.getLogger("sqlmig")

Kind = Literal["upgrade", "downgrade", "status"]
ResultCallback = Callable[["TargetResult"], None]
#: the keywords of ``MigrationRunner`` that a run over many targets passes on
RUNNER_OPTIONS = frozenset({"table", "schema", "lock_timeout", "allow_out_of_order"})
#: The name of a worker thread while it runs a target is this, then the target's name.
THREAD_PREFIX = "sqlmig target "
DONE = {"upgrade": ("upgraded", "up to date"), "downgrade": ("downgraded", "nothing to undo")}


@dataclass
class TargetResult:
    """What one target's call did.

    ``state`` is one of ``"upgraded"``, ``"up to date"``, ``"downgraded"``,
    ``"nothing to undo"``, ``"pending"`` (``status_all``: steps to apply),
    ``"needs repair"`` (``status_all``: a failed row, an edited or a missing
    file: see :meth:`MigrationRunner.repair`),
    ``"failed"`` (``error`` says why), ``"interrupted"`` (Ctrl-C stopped it
    between two steps) or ``"not started"``. ``applied`` is the steps
    applied (``downgrade_all``: undone) on this target, also when it then
    failed or was interrupted; ``status`` the target's :class:`Status`
    (``status_all`` only); ``seconds`` the call's duration.
    """

    target: Target
    state: str
    applied: list[Migration] = field(default_factory=list)
    error: SqlmigError | None = None
    status: Status | None = None
    seconds: float = 0.0

    @property
    def name(self) -> str:
        """The target's name: its ``name``, else its schema, else its masked URL."""
        assert self.target.name is not None  # checked targets are all named
        return self.target.name

    @property
    def ok(self) -> bool:
        """True when the call on this target ran to its end without an error."""
        return self.state not in ("failed", "interrupted", "not started")


class TargetsInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run over many targets; ``results`` says where each one stands.

    A ``KeyboardInterrupt``, so code that stops on Ctrl-C still does.
    """

    def __init__(self, results: list[TargetResult]) -> None:
        done = sum(1 for r in results if r.state not in ("interrupted", "not started"))
        super().__init__(
            f"interrupted: {done} of {len(results)} target(s) done, "
            f"{sum(r.state == 'interrupted' for r in results)} stopped between steps, "
            f"{sum(r.state == 'not started' for r in results)} not started"
        )
        self.results = results


class _Stopped(BaseException):
    """Raised from ``on_step`` when a step is about to start after Ctrl-C: it never runs."""


def _checked_jobs(jobs: object) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(
            f"jobs={jobs!r}: give how many targets may run at once, a whole number of 1 or "
            "more (each running target holds one connection)"
        )
    return jobs


def _checked_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - RUNNER_OPTIONS)
    if unknown:
        raise UsageError(
            f"unknown option {', '.join(unknown)}: a run over many targets takes "
            f"{', '.join(sorted(RUNNER_OPTIONS))}"
        )
    return options


class RunSpec:
    """What a run over many targets does to each target: its kind, steps and options."""

    def __init__(
        self,
        kind: Kind,
        migrations: list[Migration],
        version: str | int | None,
        options: dict[str, Any],
    ) -> None:
        self.kind = kind
        self.migrations = migrations
        self.version = version
        self.options = options


class _Run(RunSpec):
    """One call over many targets: its workers, its stop signals, its results."""

    def __init__(
        self,
        kind: Kind,
        targets: list[Target],
        migrations: list[Migration],
        version: str | int | None,
        jobs: int,
        fail_fast: bool,
        on_result: ResultCallback | None,
        options: dict[str, Any],
    ) -> None:
        super().__init__(kind, migrations, version, options)
        self.targets = targets
        self.jobs = jobs
        self.fail_fast = fail_fast
        self.on_result = on_result
        self.results: list[TargetResult | None] = [None] * len(targets)
        #: no target starts once set (fail_fast, Ctrl-C)
        self.no_new = threading.Event()
        #: running targets stop before their next step once set (Ctrl-C)
        self.interrupt = threading.Event()
        self._next = 0
        self._take = threading.Lock()
        #: schemas of one database share its engine (and its pooled connections)
        self._engines = SharedEngines(targets, jobs, options.get("lock_timeout", 60.0))
        self._finished: queue.SimpleQueue[TargetResult | None] = queue.SimpleQueue()

    def run(self) -> list[TargetResult]:
        workers = [
            threading.Thread(target=self._work, name=f"sqlmig-{i}", daemon=True)
            for i in range(min(self.jobs, len(self.targets)))
        ]
        for worker in workers:
            worker.start()
        try:
            self._collect(len(workers))
            self._engines.close()
        except BaseException as exc:
            self.no_new.set()
            self.interrupt.set()
            interrupted = isinstance(exc, KeyboardInterrupt)
            if interrupted:
                log.warning("interrupted: no new target starts; running ones stop after their step")
            try:
                for worker in workers:  # a second Ctrl-C stops waiting
                    while worker.is_alive():
                        worker.join(0.1)
            finally:
                self._drain()
                self._engines.close()
            if interrupted:
                raise TargetsInterrupted(self._all()) from None
            raise
        return self._all()

    def _collect(self, workers: int) -> None:
        """Tell ``on_result`` of each finished target in the calling thread, until all end."""
        ended = 0
        while ended < workers:
            try:
                result = self._finished.get(timeout=0.2)  # a wait Ctrl-C can end
            except queue.Empty:
                continue
            if result is None:
                ended += 1
                continue
            self._tell(result)

    def _drain(self) -> None:
        while True:
            try:
                result = self._finished.get_nowait()
            except queue.Empty:
                return
            if result is not None:
                try:
                    self._tell(result)
                except BaseException as exc:  # reporting must not hide the interruption
                    log.warning("on_result raised %r", exc)

    def _tell(self, result: TargetResult) -> None:
        if self.on_result is not None:
            self.on_result(result)

    def _all(self) -> list[TargetResult]:
        return [
            r if r is not None else TargetResult(t, "not started")
            for r, t in zip(self.results, self.targets, strict=True)
        ]

    def _work(self) -> None:
        try:
            while not self.no_new.is_set():
                with self._take:
                    index, self._next = self._next, self._next + 1
                if index >= len(self.targets):
                    return
                target = self.targets[index]
                # what the steps log names their tenant: %(threadName)s in a log format
                threading.current_thread().name = f"{THREAD_PREFIX}{target.name}"
                result = self._one(target)
                self.results[index] = result
                if result.state == "failed" and self.fail_fast:
                    self.no_new.set()
                self._finished.put(result)
        finally:
            self._finished.put(None)

    def _one(self, target: Target) -> TargetResult:
        """The call on one target; whatever it raises becomes its result."""
        with self._engines.engine_for(target) as db:
            return run_target(self, target, db, self.interrupt.is_set)


def run_target(
    spec: RunSpec,
    target: Target,
    db: str | URL | Engine,
    stopping: Callable[[], bool],
    on_step: StepCallback | None = None,
) -> TargetResult:
    """The call on one target (on ``db``, its URL or engine); whatever it raises becomes its
    result. A step about to start once ``stopping()`` is true never runs: the result is
    ``interrupted``. ``on_step`` hears of each step too."""
    started = time.perf_counter()
    steps: list[Migration] = []
    result = TargetResult(target, "failed", steps)
    running: list[Migration] = []  # the step that started and did not end well

    def step(migration: Migration, phase: StepPhase, seconds: float) -> None:
        if phase == "start" and stopping():
            raise _Stopped
        if phase != "failed":
            running[:] = [migration] if phase == "start" else []
        if phase == "done":
            steps.append(migration)
        if on_step is not None:
            on_step(migration, phase, seconds)

    try:
        options = dict(spec.options)
        if target.schema is not None:  # a tenant's schema: the history and the steps there
            options.update(schema=target.schema, steps_in_schema=True)
        runner = MigrationRunner(db, spec.migrations, on_step=step, **options)
        _call(spec, runner, result)
    except _Stopped:
        result.state = "interrupted"
    except SqlmigError as exc:
        result.error = exc
    except Exception as exc:  # not sqlmig's: still this target's alone
        result.error = SqlmigError(f"{type(exc).__name__}: {exc}")
        result.error.__cause__ = exc
    except BaseException as exc:  # a step's sys.exit() or KeyboardInterrupt: this target's too
        result.error = _ended(target, running[0] if running else None, exc)
    result.seconds = time.perf_counter() - started
    _log(result)
    return result


def _ended(target: Target, migration: Migration | None, exc: BaseException) -> SqlmigError:
    """The failure of a target whose step raised what ends a program (``SystemExit``,
    ``KeyboardInterrupt``), which a worker, thread or process, must not end with."""
    raised = f"{type(exc).__name__}({', '.join(map(repr, exc.args))})"
    if migration is None:
        error = SqlmigError(f"{target.name}: the run raised {raised}; see the log, then run again")
    else:
        error = MigrationFailed(
            f"{target.name}: migration {migration.version} ({migration.name}) raised {raised}, "
            "which ends a program, not a step: raise an exception in the step instead; it "
            "failed as any failing step does (status shows where the target stands)",
            version=migration.version,
            path=migration.path,
            line=None,
        )
    error.__cause__ = exc
    return error


def _call(spec: RunSpec, runner: MigrationRunner, result: TargetResult) -> None:
    """The run's runner call on one target; its outcome written into ``result``."""
    if spec.kind == "status":
        status = result.status = runner.status()
        troubled = status.failed or status.changed or status.missing
        result.state = "needs repair" if troubled else "pending" if status.pending else "up to date"
        return
    if spec.kind == "upgrade":
        runner.upgrade(spec.version)
    else:
        assert spec.version is not None
        runner.downgrade(spec.version)
    result.state = DONE[spec.kind][0 if result.applied else 1]


class SharedEngines:
    """One engine for the schemas of one database, disposed of after its last schema.

    A target given as a URL otherwise gets an engine of its own (the runner
    builds it and disposes of it after the call). Schemas of one database
    share an engine, so each schema costs no new connection, only the
    ``search_path`` that the session sets and gives back; at most ``jobs`` of
    its connections are in use at once, and it is disposed of once its last
    schema is done, so idle connections never pile up.
    """

    def __init__(self, targets: list[Target], jobs: int, lock_timeout: float) -> None:
        self.jobs = jobs
        self.lock_timeout = lock_timeout
        self._lock = threading.Lock()
        self._left: Counter[str] = Counter(
            k for k in (self._key(t) for t in targets) if k is not None
        )
        self._engines: dict[str, Engine] = {}

    @staticmethod
    def _key(target: Target) -> str | None:
        if target.schema is None or isinstance(target.url, Engine):
            return None
        return to_url(target.url).render_as_string(hide_password=False)

    @contextmanager
    def engine_for(self, target: Target) -> Iterator[str | URL | Engine]:
        """The target's engine (built on first use) while it runs; its URL when it has none."""
        key = self._key(target)
        if key is None or (self._left[key] < 2 and key not in self._engines):
            if key is not None:
                self._done(key)
            yield target.url
            return
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._build(target)
                if engine is not None:
                    self._engines[key] = engine
        try:
            yield target.url if engine is None else engine
        finally:
            self._done(key)

    def _build(self, target: Target) -> Engine | None:
        return build_engine(target, self.jobs, self.lock_timeout)

    def close(self) -> None:
        """Dispose of the engines left (those of targets that never started)."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.dispose()

    def _done(self, key: str) -> None:
        with self._lock:
            self._left[key] -= 1
            if self._left[key] <= 0:
                engine = self._engines.pop(key, None)
                if engine is not None:
                    engine.dispose()


def build_engine(target: Target, pool_size: int, lock_timeout: float) -> Engine | None:
    """An engine with ``pool_size`` connections for the schemas of the target's database;
    None when the URL cannot make one (a driver missing, a bad option): the runner then
    says why, for this target."""
    db = Database(target.url)
    try:
        return create_engine(
            db.url, connect_args=connect_args(db, lock_timeout), pool_size=pool_size
        )
    except (SQLAlchemyError, ImportError, ValueError, TypeError):
        return None


def _log(result: TargetResult) -> None:
    """One record per finished target; it carries ``record.target``, the target's name."""
    extra = {"target": result.name}
    if result.error is not None:
        log.warning("%s: failed: %s", result.name, result.error, extra=extra)
        return
    log.info(
        "%s: %s (%d step(s), %.0f ms)",
        result.name,
        result.state,
        len(result.applied),
        result.seconds * 1000,
        extra=extra,
    )


def _run(
    kind: Kind,
    targets: Iterable[TargetArgument],
    migrations: MigrationsSource,
    version: str | int | None,
    jobs: int,
    fail_fast: bool,
    on_result: ResultCallback | None,
    processes: bool,
    options: dict[str, Any],
) -> list[TargetResult]:
    jobs = _checked_jobs(jobs)
    options = _checked_options(options)
    if not isinstance(processes, bool):
        raise UsageError(
            f"processes={processes!r}: give True (worker processes) or False (threads)"
        )
    checked = checked_targets(targets)
    if processes:
        from ._fleet_processes import refuse_for_processes

        context = refuse_for_processes(checked)
    shared = discover(migrations)  # each step loads once, under its own lock, for all
    if kind == "upgrade":
        refuse_unknown_target(version, shared)  # one refusal, not one per target
    if processes:
        from ._fleet_processes import ProcessRun

        spec = RunSpec(kind, shared, version, options)
        return ProcessRun(spec, checked, jobs, fail_fast, on_result, context).run()
    return _Run(kind, checked, shared, version, jobs, fail_fast, on_result, options).run()


def upgrade_all(
    targets: Iterable[TargetArgument],
    migrations: MigrationsSource,
    *,
    to: str | int | None = None,
    jobs: int = 4,
    fail_fast: bool = False,
    on_result: ResultCallback | None = None,
    processes: bool = False,
    **runner_options: Any,
) -> list[TargetResult]:
    """Upgrade every target (up to ``to``; all pending steps when None); one result each.

    Example::

        results = upgrade_all(tenant_urls, "migrations", jobs=8)
        failed = [r for r in results if r.error]

    ``targets`` are URLs, ``sqlalchemy.URL``\\ s, Engines or :class:`Target`\\ s
    (``Target(url, schema="tenant_a")`` for a schema per tenant on
    PostgreSQL). At most ``jobs`` targets run at once, each on its own
    connection with its own lock; the results come back in the order of
    ``targets``. One target's failure is its result's ``error`` and stops no
    other; with ``fail_fast`` no new target starts after a failure (those
    running finish). ``on_result`` is called with each result as its target
    finishes, in the calling thread. Each target runs in a worker thread
    named ``sqlmig target NAME`` while it runs, so a log format with
    ``%(threadName)s`` tells which tenant each record is about. ``runner_options`` are
    :class:`MigrationRunner`'s ``table``, ``schema`` (where the history table
    lives on targets without a schema of their own), ``lock_timeout`` and
    ``allow_out_of_order``. Each migration module is imported at most once.

    ``processes=True`` runs the targets on ``jobs`` worker processes instead
    of threads, so they use as many cores (the client's own Python work, which
    threads of one process share one core for): forked where the platform has
    ``fork`` (else :class:`UsageError`), so the migrations and the code already
    imported are shared as they are (each worker imports a migration module it
    runs at most once). The results, ``on_result`` (still called in the
    calling thread), ``fail_fast`` and Ctrl-C are as with threads; what the
    workers log is handled by this process's loggers, its thread name
    ``sqlmig target NAME``. Targets must be URLs (an Engine cannot move to
    another process: :class:`UsageError`). A worker that dies fails its
    target with :class:`WorkerDied`; the others go on. Workers whose caller
    is killed stop before their next step.

    Raises:
        UsageError: no targets, one given twice, a bad ``jobs``, a schema on a
            database other than PostgreSQL, an unknown option, a ``to`` that no
            migration file has; with ``processes``, no ``fork`` or an Engine
            target (before anything runs).
        ConfigError: a string that is not a database URL (before anything runs).
        MigrationSourceError: a bad migrations folder or file name (before anything runs).
        TargetsInterrupted: Ctrl-C; its ``results`` say which targets were
            done, interrupted between two steps, or never started.
    """
    return _run(
        "upgrade", targets, migrations, to, jobs, fail_fast, on_result, processes, runner_options
    )


def downgrade_all(
    targets: Iterable[TargetArgument],
    migrations: MigrationsSource,
    to: str | int,
    *,
    jobs: int = 4,
    fail_fast: bool = False,
    on_result: ResultCallback | None = None,
    processes: bool = False,
    **runner_options: Any,
) -> list[TargetResult]:
    """Undo every step above ``to`` (``"base"``: all) on every target; one result each.

    As :func:`upgrade_all` otherwise; a target on which ``to`` is unknown or a
    step has no ``down()`` fails alone, with nothing undone on it.

    Raises:
        As :func:`upgrade_all`.
    """
    if to is None:
        raise UsageError("downgrade_all needs to=: a version, or 'base' to undo all")
    return _run(
        "downgrade", targets, migrations, to, jobs, fail_fast, on_result, processes, runner_options
    )


def status_all(
    targets: Iterable[TargetArgument],
    migrations: MigrationsSource,
    *,
    jobs: int = 4,
    on_result: ResultCallback | None = None,
    processes: bool = False,
    **runner_options: Any,
) -> list[TargetResult]:
    """The :class:`Status` of every target (each result's ``status``). Writes nothing.

    A tenant's schema that does not exist yet reads as everything pending.

    Raises:
        As :func:`upgrade_all`.
    """
    return _run(
        "status", targets, migrations, None, jobs, False, on_result, processes, runner_options
    )

"""``processes=True``: the targets of a run over many targets on worker processes.

A tenant's run is mostly the client's own Python, which one process runs on
one core at a time; ``jobs`` forked worker processes run that many targets on
as many cores. Forking shares what the caller already has (the migrations
found, the code imported, steps built in code) without pickling anything.

The parent gives each worker one target at a time over a pipe of its own and
reads back, as plain data, each step's start and end (indices into the shared
migration list), the result (the error pickled: :class:`SqlmigError` pickles
by value) and every log record the worker emits, re-dispatched to the
parent's loggers. A pipe per worker, not a shared queue: a worker killed while
writing breaks its own pipe, never the others' (a shared queue's lock would
stay taken). Likewise the stop flag is a byte of shared memory with no lock.

- Ctrl-C: workers ignore SIGINT; the parent sets the stop flag, which each
  worker reads as a step is about to start, and gives out no new target.
- A worker whose parent is gone (``os.getppid()`` changed) stops before its
  next step and exits: no orphan goes on with the targets.
- A worker that dies fails its target with :class:`WorkerDied` and a new
  worker takes its place while targets are left.
- The parent creates no engine before forking; a worker keeps one engine (a
  pool of one) for the schemas of one database, so no more than ``jobs``
  connections are open at once.

The module is long because both ends live here: the parent's dispatch and
bookkeeping, the worker's loop, and the plain data that crosses between them.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import logging.handlers
import mmap
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from typing import Any

from sqlalchemy import URL
from sqlalchemy.engine import Engine

from ._dialects import profile_named
from ._errors import SqlmigError, UsageError, WorkerDied
from ._fleet import (
    THREAD_PREFIX,
    RunSpec,
    TargetResult,
    TargetsInterrupted,
    build_engine,
    run_target,
)
from ._migration import Migration, Status, StepPhase
from ._targets import Target
from ._urls import to_url

__all__ = ["ProcessRun", "refuse_for_processes"]

log = logging.getLogger("sqlmig")

#: How long the parent and an idle worker wait before they look again (Ctrl-C, a dead parent).
TICK = 0.2
#: How long a worker may take to leave once told to (then it is killed).
LEAVE = 5.0


def fork_context() -> BaseContext:
    """The ``fork`` start method.

    Raises:
        UsageError: the platform has no ``fork`` (Windows; macOS allows it).
    """
    try:
        return multiprocessing.get_context("fork")
    except ValueError:
        raise UsageError(
            "processes=True needs the 'fork' start method, which this platform lacks: "
            "leave processes out to run the targets on threads"
        ) from None


def refuse_for_processes(targets: list[Target]) -> BaseContext:
    """The fork context, once the targets can move to a worker process.

    Raises:
        UsageError: no ``fork`` here, or a target given as an Engine.
    """
    context = fork_context()
    for i, target in enumerate(targets):
        if isinstance(target.url, Engine):
            raise UsageError(
                f"target #{i + 1} ({target.name}) is an Engine, which cannot move to a worker "
                "process: give its URL (engine.url.render_as_string(hide_password=False)), or "
                "leave processes out"
            )
    return context


class _Worker:
    """The parent's handle on one worker process: its pipe and the target it runs."""

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        #: the target it runs, and the step of it that started and did not end
        self.index: int | None = None
        #: the worker said it took ``index``: from then on it may have written to the target
        self.took = False
        #: when it was given ``index`` (it must take it within LEAVE seconds)
        self.given = 0.0
        self.step: int | None = None
        #: the step of it that last failed (a step raising SystemExit fails, then ends the worker)
        self.failed: int | None = None
        self.applied: list[int] = []
        self.alive = True


class ProcessRun:
    """One call over many targets on ``jobs`` forked worker processes."""

    def __init__(
        self,
        spec: RunSpec,
        targets: list[Target],
        jobs: int,
        fail_fast: bool,
        on_result: Callable[[TargetResult], None] | None,
        context: BaseContext,
    ) -> None:
        self.spec = spec
        self.targets = targets
        self.jobs = jobs
        self.fail_fast = fail_fast
        self.on_result = on_result
        self.context = context
        self.results: list[TargetResult | None] = [None] * len(targets)
        self.left: deque[int] = deque(range(len(targets)))
        self.no_new = False
        #: set (1) once running targets must stop before their next step
        self.stop = mmap.mmap(-1, 1)  # shared with the forked workers; no lock to leave taken
        self.workers: list[_Worker] = []
        #: targets given back once, their worker dead before it took them (not twice)
        self.retried: set[int] = set()
        self.parent = os.getpid()
        self.steps = {m.version: i for i, m in enumerate(spec.migrations)}
        self.ctrl_c = _CtrlC()
        #: which workers' warnings were shown, as a module's ``__warningregistry__``
        self.shown: dict[Any, Any] = {}

    # -- the parent ----------------------------------------------------------------------

    def run(self) -> list[TargetResult]:
        try:
            with self.ctrl_c:
                return self._run()
        finally:
            self.stop.close()

    def _run(self) -> list[TargetResult]:
        try:
            self._warm()
            for _ in range(min(self.jobs, len(self.targets))):
                self._start_worker()
            while self._busy() or (self.left and not self.no_new):
                if not self._alive():
                    self._start_worker()
                self._give_out()
                self._wait(TICK)
            with self.ctrl_c.allowed():  # a Ctrl-C held till the last result: interrupted
                pass
        except BaseException as exc:
            self.no_new = True
            self.stop[0] = 1
            interrupted = isinstance(exc, KeyboardInterrupt)
            if interrupted:
                log.warning("interrupted: no new target starts; running ones stop after their step")
            try:
                while self._busy():  # a second Ctrl-C stops waiting: the workers are killed
                    self._wait(TICK, quiet=True)
            finally:
                self._end_workers()
            if interrupted:
                raise TargetsInterrupted(self._all()) from None
            raise
        self._end_workers()
        return self._all()

    def _all(self) -> list[TargetResult]:
        return [
            r if r is not None else TargetResult(t, "not started")
            for r, t in zip(self.results, self.targets, strict=True)
        ]

    def _busy(self) -> bool:
        return any(w.index is not None for w in self.workers)

    def _warm(self) -> None:
        """Import in this process, once, what each worker would import for itself: the code
        of a run and each backend's dialect and driver (no engine, no connection)."""
        for module in ("._runs", "._held_lock", "._alembic_adoption", "._tenant_scope"):
            importlib.import_module(module, __package__)
        seen: set[str] = set()
        for target in self.targets:
            assert not isinstance(target.url, Engine)
            url = to_url(target.url)
            if url.drivername in seen:
                continue
            seen.add(url.drivername)
            profile_named(url.get_backend_name())
            try:
                url.get_dialect().import_dbapi()
            except Exception:  # a missing driver: each of its targets says so, as on threads
                continue

    def _start_worker(self) -> None:
        mine, theirs = self.context.Pipe()
        others = [w.conn for w in self.workers]
        process = self.context.Process(  # type: ignore[attr-defined]
            target=_work,
            args=(self.spec, self.targets, theirs, mine, others, self.stop, self.parent),
            name=f"sqlmig-worker-{len(self.workers)}",
        )
        worker = _Worker(process, mine)
        self.workers.append(worker)  # before it exists: a Ctrl-C now still ends it
        # SIGINT waits while the child starts: it ignores it before it can take any
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            process.start()
        except BaseException:
            self.workers.remove(worker)
            mine.close()
            raise
        finally:
            theirs.close()
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _give_out(self) -> None:
        """The next target to each idle worker; a worker with nothing left is let go."""
        for worker in self.workers:
            if not worker.alive or worker.index is not None:
                continue
            if not self.left or self.no_new:
                self._let_go(worker)
                continue
            index = self.left.popleft()
            worker.index, worker.took, worker.step, worker.applied = index, False, None, []
            worker.failed = None
            worker.given = time.monotonic()
            try:
                worker.conn.send(index)
            except OSError:  # it died meanwhile: its death says so
                pass

    def _let_go(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.conn.send(None)
        worker.alive = False

    def _wait(self, timeout: float, *, quiet: bool = False) -> None:
        """Read what the workers sent within ``timeout``; a worker that died fails its target."""
        running = [w for w in self.workers if w.index is not None]
        # an idle worker's pipe too: a thread its last step left behind may still log
        by_conn = {id(w.conn): w for w in self.workers}
        by_sentinel = {w.process.sentinel: w for w in running}
        with self.ctrl_c.allowed():
            ready = wait([w.conn for w in self.workers] + list(by_sentinel), timeout)
        dead: list[_Worker] = []
        for item in ready:
            if isinstance(item, int):
                dead.append(by_sentinel[item])
                continue
            worker = by_conn[id(item)]
            if not self._read(worker, quiet):
                dead.append(worker)
        for worker in dict.fromkeys(dead):
            self._read(worker, quiet)  # what it sent before it died
            self._buried(worker, quiet)
        now = time.monotonic()
        for worker in running:
            if worker.took or not worker.alive or now - worker.given <= LEAVE:
                continue
            if worker in self.workers and self._read(worker, quiet) and worker.took:
                continue  # it had taken it: its word came while on_result ran
            if not worker.took:
                # stuck before it took its target (a C library's lock held by a thread of the
                # caller at the fork): killed, its target goes to another worker
                with contextlib.suppress(ValueError, OSError):
                    worker.process.kill()

    def _read(self, worker: _Worker, quiet: bool) -> bool:
        """Handle every message waiting on the worker's pipe; False once it is broken."""
        try:
            while worker.conn.poll():
                self._handle(worker, worker.conn.recv(), quiet)
        except (EOFError, OSError):
            return False
        return True

    def _handle(self, worker: _Worker, message: tuple[Any, ...], quiet: bool) -> None:
        kind = message[0]
        if kind == "log":
            _dispatch(message[1], self.spec.migrations)
        elif kind == "warning":
            _, text, where, filename, lineno = message
            warnings.warn_explicit(text, _category(where), filename, lineno, registry=self.shown)
        elif kind == "took":
            worker.took = True
        elif kind == "step":
            _, step, phase = message
            worker.step = step if phase == "start" else None
            if phase == "done":
                worker.applied.append(step)
            elif phase == "failed":
                worker.failed = step
        elif kind == "result":
            _, index, plain = message
            result = self.results[index] = self._result(index, plain)
            worker.index = None
            self._finish(index, result, quiet)

    def _buried(self, worker: _Worker, quiet: bool) -> None:
        """A worker died (or broke its pipe): its target fails; another takes its place."""
        worker.process.join(LEAVE)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(LEAVE)
        worker.alive = False
        exitcode = worker.process.exitcode
        worker.conn.close()
        self.workers.remove(worker)
        with contextlib.suppress(ValueError):  # reaped by someone else (SIGCHLD ignored)
            worker.process.close()
        if worker.index is not None:
            index, worker.index = worker.index, None
            if worker.took or index in self.retried:
                self._finish(index, self._died(index, worker, exitcode), quiet)
            else:  # it died before it took the target: the target is untouched
                self.retried.add(index)
                self.left.appendleft(index)
        if self.left and not self.no_new and len(self._alive()) < self.jobs:
            self._start_worker()

    def _alive(self) -> list[_Worker]:
        return [w for w in self.workers if w.alive]

    def _died(self, index: int, worker: _Worker, exitcode: int | None) -> TargetResult:
        target = self.targets[index]
        how = (
            f"killed by signal {-exitcode}"
            if exitcode is not None and exitcode < 0
            else f"exit code {exitcode}"
        )
        step = None if worker.step is None else self.spec.migrations[worker.step]
        failed = None if worker.failed is None else self.spec.migrations[worker.failed]
        if step is not None:
            where = (
                f"during step {step.version} ({step.name}), which the database rolled back as for "
                "any ended session (on MySQL/MariaDB its DDL stays and its row is failed)"
            )
        elif failed is not None:  # the step raised SystemExit, KeyboardInterrupt or the like
            step = failed
            where = (
                f"as step {step.version} ({step.name}) failed, ending the process (SystemExit, "
                "KeyboardInterrupt or another BaseException); its work was rolled back as for "
                "any failed step"
            )
        else:
            where = "between two steps"
        error = WorkerDied(
            f"{target.name}: the worker process running this target died ({how}) {where}; "
            "find what killed it, then run again (status shows where the target stands)",
            version=None if step is None else step.version,
            exitcode=exitcode,
        )
        applied = [self.spec.migrations[i] for i in worker.applied]
        return TargetResult(target, "failed", applied, error)

    def _finish(self, index: int, result: TargetResult, quiet: bool) -> None:
        self.results[index] = result
        if result.state == "failed" and self.fail_fast:
            self.no_new = True
        if self.on_result is None:
            return
        if not quiet:
            with self.ctrl_c.allowed():  # the caller's code: Ctrl-C as anywhere else
                self.on_result(result)
            return
        try:
            with self.ctrl_c.allowed():
                self.on_result(result)
        except BaseException as exc:  # reporting must not hide the interruption
            log.warning("on_result raised %r", exc)

    def _result(self, index: int, plain: dict[str, Any]) -> TargetResult:
        """A worker's plain result as the caller's: its steps the shared Migration objects."""
        steps = self.spec.migrations
        status = None
        if plain["status"] is not None:
            fields = dict(plain["status"])
            fields["pending"] = [steps[i] for i in fields["pending"]]
            status = Status(**fields)
        return TargetResult(
            self.targets[index],
            plain["state"],
            [steps[i] for i in plain["applied"]],
            _error_from(plain["error"], steps),
            status,
            plain["seconds"],
        )

    def _end_workers(self) -> None:
        """Let every worker go; kill any that has not left within a bounded time."""
        for worker in self.workers:
            if worker.index is not None:  # still running a target: a second Ctrl-C
                worker.process.kill()
            else:
                self._let_go(worker)
        deadline = time.monotonic() + LEAVE
        for worker in self.workers:
            # read what it still sends (a thread a step left behind logs on) while it leaves:
            # a worker blocked on its full pipe would never leave
            while worker.process.is_alive() and time.monotonic() < deadline:
                left = max(0.0, deadline - time.monotonic())
                if worker.conn in wait([worker.conn, worker.process.sentinel], left):
                    if not self._read(worker, quiet=True):
                        break
            worker.process.join(max(0.0, deadline - time.monotonic()))
            self._read(worker, quiet=True)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(LEAVE)
            worker.conn.close()
            with contextlib.suppress(ValueError):
                worker.process.close()
        self.workers = []


class _CtrlC:
    """Ctrl-C raises KeyboardInterrupt only where the parent waits (or runs ``on_result``).

    Elsewhere it is held until the next wait: an interrupt raised half way
    through reading a message would leave the rest of it in the pipe, read
    next as a message of its own (a hang or garbage), or leave a target given
    out that no worker heard of. Only in the main thread, where Python runs
    signal handlers; the caller's own SIGINT handler still decides what a
    Ctrl-C does.
    """

    def __init__(self) -> None:
        self.previous: Any = None
        self.installed = False
        self.open = False
        self.held: tuple[int, Any] | None = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self.previous = previous
                signal.signal(signal.SIGINT, self._handler)
                self.installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self.previous)
            self.installed = False
        self.held = None  # an interrupt held while ending: the run is over (or interrupted)

    def _handler(self, signum: int, frame: Any) -> None:
        if self.open:
            self.previous(signum, frame)
        else:
            self.held = (signum, frame)

    @contextlib.contextmanager
    def allowed(self) -> Any:
        """A Ctrl-C held till now is raised here; another, while inside, at once."""
        self.open = True
        try:
            if self.held is not None:
                held, self.held = self.held, None
                self.previous(*held)
            yield
        finally:
            self.open = False


# -- plain data across the pipe ------------------------------------------------------------


class _Step:
    """A Migration in a pickled error: its index in the shared migration list."""

    def __init__(self, index: int) -> None:
        self.index = index


def _error_to(error: SqlmigError | None, steps: dict[str, int]) -> bytes | str | None:
    """The error pickled (its Migration attributes as indices), else its message."""
    if error is None:
        return None

    def plain(value: object) -> object:
        if isinstance(value, Migration) and value.version in steps:
            return _Step(steps[value.version])
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    state = {key: plain(value) for key, value in vars(error).items()}
    try:
        copy = type(error).__new__(type(error))
        Exception.__init__(copy, error.message)
        copy.__dict__.update(state)
        return pickle.dumps(copy)
    except Exception:
        return error.message


def _error_from(sent: bytes | str | None, steps: list[Migration]) -> SqlmigError | None:
    if sent is None:
        return None
    if isinstance(sent, str):
        return SqlmigError(sent)
    try:
        error = pickle.loads(sent)
    except Exception:  # a class the caller cannot rebuild: its message still says it all
        return SqlmigError("the worker process's error could not be read back")
    if not isinstance(error, SqlmigError):
        return SqlmigError(str(error))

    def restored(value: object) -> object:
        if isinstance(value, _Step):
            return steps[value.index]
        if isinstance(value, list):
            return [restored(v) for v in value]
        return value

    for key, value in list(vars(error).items()):
        setattr(error, key, restored(value))
    return error


def _plain(result: TargetResult, steps: dict[str, int]) -> dict[str, Any]:
    status = None
    if result.status is not None:
        s = result.status
        status = {
            "applied": s.applied,
            "pending": [steps[m.version] for m in s.pending],
            "changed": s.changed,
            "missing": s.missing,
            "failed": s.failed,
            "current": s.current,
        }
    return {
        "state": result.state,
        "applied": [steps[m.version] for m in result.applied],
        "error": _error_to(result.error, steps),
        "status": status,
        "seconds": result.seconds,
    }


def _dispatch(fields: dict[str, Any], steps: list[Migration]) -> None:
    """A worker's log record handled by the parent's logger of its name, as if emitted here."""
    for key, value in fields.items():
        if isinstance(value, _Step):
            fields[key] = steps[value.index]
    record = logging.makeLogRecord(fields)
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


# -- the worker ----------------------------------------------------------------------------


class _Pipe:
    """The worker's end of its pipe: one writer at a time; silent once the parent is gone."""

    def __init__(self, conn: Connection, steps: dict[str, int]) -> None:
        self.conn = conn
        self.steps = steps
        self.lock = threading.RLock()
        self.broken = False
        #: messages a thread made while it was sending one (a record logged as a value was
        #: pickled, or by a ``__del__``): sent after it, never inside it (nor waiting on itself)
        self.later: list[object] = []
        self.sending = False
        #: a process a step forks shares the pipe: only the worker writes (else messages mix)
        self.pid = os.getpid()

    def send(self, message: object) -> None:
        if os.getpid() != self.pid:
            return
        with self.lock:
            if self.broken:
                return
            if self.sending:
                self.later.append(message)
                return
            self.sending = True
            try:
                waiting = [message]
                while waiting and not self.broken:
                    try:
                        self.conn.send(waiting.pop(0))
                    except (OSError, ValueError):
                        self.broken = True
                    waiting += self.later
                    self.later.clear()
            finally:
                self.sending = False

    def put_nowait(self, record: logging.LogRecord) -> None:
        """A QueueHandler's queue: the record as a dict of plain values."""
        fields: dict[str, object] = {}
        for key, value in vars(record).items():
            if isinstance(value, Migration) and value.version in self.steps:
                value = _Step(self.steps[value.version])  # the caller's own object, back there
            else:
                try:
                    pickle.dumps(value)
                except Exception:
                    value = repr(value)
            fields[key] = value
        self.send(("log", fields))


class _Forward(logging.handlers.QueueHandler):
    """Sends each record once to the parent, whichever logger's handlers reach it first."""

    def handle(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_sqlmig_sent", False):
            return False
        record.__dict__["_sqlmig_sent"] = True
        return super().handle(record)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        prepared: logging.LogRecord = super().prepare(record)
        prepared.__dict__.pop("_sqlmig_sent", None)
        return prepared


def _category(where: tuple[str, str]) -> type[Warning]:
    """A worker's warning category, found here by module and name (else UserWarning)."""
    found: object = sys.modules.get(where[0])
    for part in where[1].split("."):
        found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, Warning):
        return found
    return UserWarning


def _forward_warnings(pipe: _Pipe) -> None:
    """Each warning a worker would show is shown by the caller instead (its filters, its
    ``catch_warnings``, its ``showwarning``), as if warned in the caller's process."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: object = None,
        line: str | None = None,
    ) -> None:
        where = (category.__module__, category.__qualname__)
        pipe.send(("warning", str(message), where, filename, lineno))

    warnings.showwarning = show


def _forward_logging(pipe: _Pipe) -> None:
    """Every handler of this process replaced by one that sends records to the parent."""
    handler = _Forward(pipe)  # type: ignore[arg-type]
    root = logging.getLogger()
    loggers = [root] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        if logger.handlers or logger is root:
            logger.handlers = [handler]


class _OneEngine:
    """A worker's engine for the schemas of one database (a pool of one connection)."""

    def __init__(self, lock_timeout: float) -> None:
        self.lock_timeout = lock_timeout
        self.key: str | None = None
        self.engine: Engine | None = None

    def db_for(self, target: Target) -> str | URL | Engine:
        if target.schema is None or isinstance(target.url, Engine):
            return target.url
        key = (
            target.url
            if isinstance(target.url, str)
            else target.url.render_as_string(hide_password=False)
        )
        if key != self.key:
            self.close()
            self.key, self.engine = key, build_engine(target, 1, self.lock_timeout)
        return target.url if self.engine is None else self.engine

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        self.key = self.engine = None


def _probe_libraries() -> None:
    """Use, once, the C libraries whose global locks a thread of the caller may have held
    at the fork (SQLite's): a worker stuck here never takes a target, and the parent, seeing
    it take none, kills it and gives the target to another."""
    if "_sqlite3" in sys.modules:
        import sqlite3

        sqlite3.connect(":memory:").close()


def _work(
    spec: RunSpec,
    targets: list[Target],
    conn: Connection,
    parents_end: Connection,
    others: list[Connection],
    stop: mmap.mmap,
    parent: int,
) -> None:
    """A worker process: run each target the parent gives, until told to leave or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C does
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    for inherited in [parents_end, *others]:  # so a dead parent's pipes read as closed
        inherited.close()
    _probe_libraries()
    steps = {m.version: i for i, m in enumerate(spec.migrations)}
    pipe = _Pipe(conn, steps)
    _forward_logging(pipe)
    _forward_warnings(pipe)
    engines = _OneEngine(spec.options.get("lock_timeout", 60.0))

    def orphaned() -> bool:
        return os.getppid() != parent

    def stopping() -> bool:
        return bool(stop[0]) or orphaned()

    def on_step(migration: Migration, phase: StepPhase, seconds: float) -> None:
        index = steps.get(migration.version)
        if index is not None:
            pipe.send(("step", index, phase))

    try:
        while not orphaned() and not pipe.broken:
            try:
                if not conn.poll(TICK):
                    continue
                index = conn.recv()
            except (EOFError, OSError):
                return
            if index is None:
                return
            pipe.send(("took", index))
            target = targets[index]
            threading.current_thread().name = f"{THREAD_PREFIX}{target.name}"
            result = run_target(spec, target, engines.db_for(target), stopping, on_step)
            try:
                plain = _plain(result, steps)
                pickle.dumps(plain)
            except Exception as exc:  # what cannot cross: the target's failure, said plainly
                result = TargetResult(
                    target,
                    "failed",
                    result.applied,
                    SqlmigError(
                        f"{target.name}: its result could not be sent back from the worker process "
                        f"({type(exc).__name__}: {exc}); run it again without processes"
                    ),
                )
                plain = _plain(result, steps)
            pipe.send(("result", index, plain))
    finally:
        engines.close()

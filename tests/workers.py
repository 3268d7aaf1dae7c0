"""Real OS processes for the concurrency tests.

Spawned processes import their target by name, so the targets live here at
module level. :class:`Crew` keeps a few spawned processes alive for a whole
test module (spawning one costs a fresh interpreter and every import) and
hands each of them one runner call per round; a shared barrier releases them
at the same moment. Every wait is bounded: a crew that does not answer in time
is killed, and the test fails.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

SPAWN: SpawnContext = multiprocessing.get_context("spawn")

#: How long anything in these tests may wait before it counts as hung.
BOUND = 60.0


@dataclass(frozen=True)
class Job:
    """One call on a fresh ``MigrationRunner(url, folder, **options)``."""

    op: str  # a MigrationRunner method name, or "idle"
    url: str = ""
    folder: str = ""
    args: tuple[Any, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What one process's call returned or raised."""

    index: int  # which crew member (0 for a one-off process)
    pid: int
    ok: bool
    value: list[str] | None = None  # versions returned, or repair()'s change lines
    error: str | None = None  # the exception's class name
    message: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"pid {self.pid}: {self.value}"
        return f"pid {self.pid}: {self.error}: {self.message}"


def call(job: Job, index: int = 0) -> Outcome:
    """Run ``job`` in this process; any exception becomes an :class:`Outcome`."""
    if job.op == "idle":
        return Outcome(index, os.getpid(), ok=True, value=[])
    from sqlmig import Migration, MigrationRunner

    try:
        runner = MigrationRunner(job.url, job.folder, **job.options)
        result = getattr(runner, job.op)(*job.args)
        return Outcome(index, os.getpid(), ok=True, value=_versions(result, Migration))
    except BaseException as exc:  # the test wants to see KeyboardInterrupt too
        return Outcome(index, os.getpid(), ok=False, error=type(exc).__name__, message=str(exc))


def _versions(result: Any, migration: type) -> list[str]:
    """A call's result as text: the versions of returned migrations, or the lines returned."""
    if result is None:
        return []
    if isinstance(result, migration):
        return [result.version]
    if isinstance(result, list):
        return [m.version if isinstance(m, migration) else str(m) for m in result]
    return [repr(result)]


def serve(index: int, inbox: Any, outbox: Any, barrier: Barrier) -> None:
    """A crew member: take a job, wait for the others at the barrier, run it, report."""
    while True:
        job = inbox.get()
        if job is None:
            return
        barrier.wait(BOUND)
        outbox.put(call(job, index))


def upgrade_once(url: str, folder: str, options: dict[str, Any], results: Any) -> None:
    """A one-off process that calls ``upgrade()`` once and reports (or is killed)."""
    results.put(call(Job("upgrade", url, folder, options=options)))


def downgrade_dying(url: str, folder: str, results: Any) -> None:
    """A one-off ``downgrade("001")`` whose steps see ``SQLMIG_TEST_DIE_IN_DOWN`` set."""
    os.environ["SQLMIG_TEST_DIE_IN_DOWN"] = "1"
    results.put(call(Job("downgrade", url, folder, args=("001",))))


class CrewError(AssertionError):
    """The crew did not answer in time; it has been killed."""


class Crew:
    """``size`` spawned processes that run one job each per round, all at once."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.barrier = SPAWN.Barrier(size)
        self.outbox: Any = SPAWN.Queue()
        self.inboxes: list[Any] = [SPAWN.Queue() for _ in range(size)]
        self.processes: list[SpawnProcess] = [
            SPAWN.Process(target=serve, args=(i, inbox, self.outbox, self.barrier), daemon=True)
            for i, inbox in enumerate(self.inboxes)
        ]
        self.pending = 0
        self.given = 0
        self.broken = False
        for process in self.processes:
            process.start()

    def submit(self, jobs: list[Job]) -> None:
        """Hand out one round: ``jobs`` to the first members, the rest stay idle."""
        assert not self.pending and len(jobs) <= self.size and not self.broken
        for inbox, job in zip(self.inboxes, jobs + [Job("idle")] * self.size, strict=False):
            inbox.put(job)
        self.pending = self.size
        self.given = len(jobs)

    def collect(self, timeout: float = BOUND) -> list[Outcome]:
        """The outcomes of the jobs of the round, in the order they were given.

        Raises:
            CrewError: not all answered within ``timeout``; the crew is killed.
        """
        deadline = time.monotonic() + timeout
        outcomes: list[Outcome] = []
        while self.pending:
            try:
                outcome = self.outbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise CrewError(
                    f"{self.pending} of {self.size} processes did not finish within "
                    f"{timeout:g} s; killed them"
                ) from None
            self.pending -= 1
            outcomes.append(outcome)
        return sorted((o for o in outcomes if o.index < self.given), key=lambda o: o.index)

    def run(self, jobs: list[Job], timeout: float = BOUND) -> list[Outcome]:
        """Submit one round and wait for it (see :meth:`collect`)."""
        self.submit(jobs)
        return self.collect(timeout)

    def kill(self) -> None:
        """Stop every member now (SIGKILL), waiting a bounded time for each."""
        self.broken = True
        for process in self.processes:
            if process.is_alive():
                process.kill()
        for process in self.processes:
            process.join(BOUND)

    def close(self) -> None:
        """Let idle members leave; kill any that do not."""
        if not self.broken:
            for inbox in self.inboxes:
                inbox.put(None)
            for process in self.processes:
                process.join(10)
        self.kill()


def wait_for_file(path: Path, process: SpawnProcess | None = None, timeout: float = BOUND) -> None:
    """Wait until ``path`` exists (a step's "I am running" mark).

    Raises:
        AssertionError: not there within ``timeout``, or ``process`` died first.
    """
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process is not None and not process.is_alive():
            raise AssertionError(f"process {process.pid} ended before {path.name} appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout:g} s")
        time.sleep(0.02)


def hold_sqlite_lock(path: str, seconds: float, ready: str) -> None:
    """Hold SQLite's exclusive lock on ``path`` for ``seconds``: even readers wait.

    What a replica's long step holds once its changes outgrow the page cache
    (or while it commits).
    """
    import sqlite3

    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("BEGIN EXCLUSIVE")
        Path(ready).touch()
        time.sleep(seconds)
        raw.execute("ROLLBACK")
    finally:
        raw.close()

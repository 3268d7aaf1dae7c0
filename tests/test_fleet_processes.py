"""``processes=True``: the targets of ``upgrade_all`` & co. on forked worker processes.

Real processes over real databases: SQLite files, PostgreSQL schemas of one
database and PostgreSQL databases, MariaDB databases. The results, histories,
``on_result`` and logging are those of threads; Ctrl-C, a worker killed with
SIGKILL and the parent killed with SIGKILL each leave every target whole, and
no test waits longer than its bound.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from tenants import COUNTED_STEPS, hits, tenant_databases

from backends import Backend, fresh_database
from conftest import MakeMigrations
from sqlmig import (
    MigrationFailed,
    MigrationRunner,
    Target,
    TargetResult,
    UsageError,
    WorkerDied,
    downgrade_all,
    status_all,
    upgrade_all,
)

ROOT = Path(__file__).resolve().parent.parent
BOUND = 60.0
KINDS = ["sqlite", "postgresql-schemas", "postgresql", "mysql"]

#: Step 002 of these waits while the file ``hold`` exists, once it said it runs
#: (``running-PID``): a test can kill a process inside a step.
HELD_STEPS = {
    **COUNTED_STEPS,
    "002_step2.py": """\
        import os, pathlib, time

        HOLD = pathlib.Path({hold!r})

        def up(conn):
            conn.exec_driver_sql("INSERT INTO hits (version) VALUES ('002')")
            if HOLD.exists():
                (HOLD.parent / f"running-{{os.getpid()}}").touch()
                deadline = time.monotonic() + 60
                while HOLD.exists() and time.monotonic() < deadline:
                    time.sleep(0.02)

        def down(conn):
            conn.exec_driver_sql("DELETE FROM hits WHERE version = '002'")
        """,
}


class Fleet:
    """A few fresh targets of one kind: their ``Target``s and how to read them back."""

    def __init__(self, kind: str, backends: list[Backend], targets: list[Target]) -> None:
        self.kind = kind
        self.backends = backends
        self.targets = targets

    @property
    def transactional_ddl(self) -> bool:
        return self.backends[0].profile.transactional_ddl

    def hits(self, target: Target) -> list[str]:
        return hits(target.url, target.schema)

    def current(self, target: Target, folder: Path) -> list[str]:
        """The versions the target's history records as applied."""
        return [r.version for r in self.runner(target, folder).status().applied]

    def runner(self, target: Target, folder: Path) -> MigrationRunner:
        if target.schema is None:
            return MigrationRunner(target.url, folder)  # type: ignore[arg-type]
        return MigrationRunner(target.url, folder, schema=target.schema, steps_in_schema=True)  # type: ignore[arg-type]

    def lines(self) -> list[str]:
        """The targets as lines of a targets file."""
        return [str(t.url) + (f"#{t.schema}" if t.schema else "") for t in self.targets]


@contextmanager
def fleet_of(kind: str, tmp_path: Path, count: int) -> Iterator[Fleet]:
    if kind == "postgresql-schemas":
        with fresh_database("postgresql", tmp_path) as pg:
            url = pg.url_string
            yield Fleet(kind, [pg], [Target(url, schema=f"tenant_{i}") for i in range(count)])
        return
    with tenant_databases(kind, tmp_path, count) as found:
        yield Fleet(kind, found, [Target(b.url_string) for b in found])


@pytest.fixture(params=KINDS)
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    with fleet_of(request.param, tmp_path, 4) as found:
        yield found


def test_processes_give_the_results_and_histories_of_threads(
    fleet: Fleet, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(COUNTED_STEPS)
    told: list[tuple[str, str]] = []

    def on_result(result: TargetResult) -> None:
        told.append((result.name, threading.current_thread().name))

    results = upgrade_all(fleet.targets, folder, jobs=3, processes=True, on_result=on_result)

    assert [r.state for r in results] == ["upgraded"] * 4, [r.error for r in results]
    assert [(r.target.url, r.target.schema) for r in results] == [
        (t.url, t.schema) for t in fleet.targets
    ]
    assert [[m.version for m in r.applied] for r in results] == [["001", "002", "003"]] * 4
    assert all(r.error is None and r.seconds > 0 for r in results)
    assert sorted(n for n, _ in told) == sorted(r.name for r in results)
    assert {thread for _, thread in told} == {threading.current_thread().name}
    assert [fleet.hits(t) for t in fleet.targets] == [["001", "002", "003"]] * 4

    statuses = status_all(fleet.targets, folder, jobs=2, processes=True)
    assert [(r.state, r.status and r.status.current) for r in statuses] == [
        ("up to date", "003")
    ] * 4
    assert [r.state for r in upgrade_all(fleet.targets, folder, processes=True)] == [
        "up to date"
    ] * 4

    undone = downgrade_all(fleet.targets, folder, "001", jobs=4, processes=True)
    assert [[m.version for m in r.applied] for r in undone] == [["003", "002"]] * 4
    assert [fleet.hits(t) for t in fleet.targets] == [["001"]] * 4
    pending = status_all(fleet.targets, folder, processes=True)
    assert [r.state for r in pending] == ["pending"] * 4
    assert [[m.version for m in r.status.pending] for r in pending if r.status] == [
        ["002", "003"]
    ] * 4


def test_the_steps_applied_are_the_caller_s_migration_objects(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(COUNTED_STEPS)
    steps = MigrationRunner(f"sqlite:///{tmp_path / 'x.db'}", folder).migrations()
    files = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(3)]

    results = upgrade_all(files, steps, jobs=2, processes=True)
    pending = status_all(files, steps, processes=True)

    assert all(a is b for r in results for a, b in zip(r.applied, steps, strict=True))
    assert [r.state for r in pending] == ["up to date"] * 3


def test_a_failing_tenant_among_many_fails_alone_with_its_error(
    fleet: Fleet, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            **COUNTED_STEPS,
            "004_fails_where_poisoned.py": """\
                def up(conn):
                    if conn.exec_driver_sql("SELECT COUNT(*) FROM hits").scalar() > 3:
                        raise RuntimeError("this tenant is poisoned")
                """,
        }
    )
    poisoned = fleet.targets[2]
    fleet.runner(poisoned, folder).upgrade("001")
    engine_url, schema = poisoned.url, poisoned.schema
    from sqlalchemy import create_engine, text

    engine = create_engine(engine_url)  # type: ignore[arg-type]
    with engine.begin() as conn:
        table = f"{schema}.hits" if schema else "hits"
        conn.execute(text(f"INSERT INTO {table} (version) VALUES ('x')"))
    engine.dispose()

    results = upgrade_all(fleet.targets, folder, jobs=2, processes=True)

    assert [r.state for r in results] == ["upgraded", "upgraded", "failed", "upgraded"]
    error = results[2].error
    assert isinstance(error, MigrationFailed) and error.version == "004"
    assert "this tenant is poisoned" in str(error)
    assert [m.version for m in results[2].applied] == ["002", "003"]
    assert [m.version for m in error.applied] == ["002", "003"]
    assert fleet.current(poisoned, folder) == ["001", "002", "003"]
    assert [fleet.current(t, folder) for t in fleet.targets[:2]] == [
        ["001", "002", "003", "004"]
    ] * 2


def test_fail_fast_starts_nothing_after_a_failure(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(COUNTED_STEPS)
    files = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(3)]
    unreachable = "postgresql+psycopg://app:pw@127.0.0.1:1/nowhere"

    results = upgrade_all([unreachable, *files], folder, jobs=1, fail_fast=True, processes=True)

    assert [r.state for r in results] == ["failed", "not started", "not started", "not started"]
    assert "127.0.0.1" in str(results[0].error)
    assert not any((tmp_path / f"{i}.db").exists() for i in range(3))


@pytest.mark.parametrize(
    ("targets", "options", "says"),
    [
        ("engine", {}, "is an Engine, which cannot move to a worker process"),
        ("url", {"processes": "yes"}, "processes='yes'"),
    ],
)
def test_what_cannot_run_on_processes_is_refused_up_front(
    tmp_path: Path,
    make_migrations: MakeMigrations,
    targets: str,
    options: dict[str, object],
    says: str,
) -> None:
    from sqlalchemy import create_engine

    folder = make_migrations(COUNTED_STEPS)
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    given = [f"sqlite:///{tmp_path / 'b.db'}", engine if targets == "engine" else "sqlite://x.db"]

    with pytest.raises(UsageError, match=says):
        upgrade_all(given, folder, **{"processes": True, **options})  # type: ignore[arg-type]

    assert not list(tmp_path.glob("*.db"))


def test_without_fork_processes_are_refused_up_front(
    tmp_path: Path, make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    def no_fork(method: str | None = None) -> object:
        raise ValueError(f"cannot find context for {method!r}")

    monkeypatch.setattr(multiprocessing, "get_context", no_fork)

    with pytest.raises(UsageError, match=r"needs the 'fork' start method.*leave processes out"):
        upgrade_all(
            [f"sqlite:///{tmp_path / 'a.db'}"], make_migrations(COUNTED_STEPS), processes=True
        )

    assert not (tmp_path / "a.db").exists()


def test_what_workers_log_reaches_the_caller_s_handlers_naming_the_target(
    tmp_path: Path, make_migrations: MakeMigrations, caplog: pytest.LogCaptureFixture
) -> None:
    folder = make_migrations(
        {
            **COUNTED_STEPS,
            "004_logs.py": "import logging\n\ndef up(conn):\n"
            "    logging.getLogger('app.backfill').info('backfilled %d rows', 7)\n"
            "    logging.getLogger('app.backfill').debug('not shown')\n",
        }
    )
    files = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(3)]
    caplog.set_level(logging.INFO)

    results = upgrade_all(files, folder, jobs=2, processes=True)

    names = [r.name for r in results]
    steps = [r for r in caplog.records if r.name == "app.backfill"]
    assert sorted(r.threadName for r in steps) == sorted(f"sqlmig target {n}" for n in names)
    assert {r.getMessage() for r in steps} == {"backfilled 7 rows"}
    assert all(r.process != os.getpid() for r in steps)
    applied = [r for r in caplog.records if hasattr(r, "migration")]
    assert len(applied) == 3 * 4
    steps = {m.version: m for m in results[0].applied}
    assert all(r.migration is steps[r.migration.version] for r in applied)  # type: ignore[attr-defined]
    ends = [r for r in caplog.records if hasattr(r, "target")]
    assert sorted(r.target for r in ends) == sorted(names)  # type: ignore[attr-defined]


def wait_for(predicate: object, what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.02)


def running(where: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in where.glob("running-*"))


def gone(pid: int) -> bool:
    """The process ended (a zombie not yet reaped by its parent counts: it runs nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


def held_steps(make_migrations: MakeMigrations, where: Path) -> tuple[Path, Path]:
    """The held steps' folder, and the file whose removal lets their step 002 end."""
    hold = where / "hold"
    hold.touch()
    steps = {
        k: v.format(hold=str(hold)) if k.startswith("002") else v for k, v in HELD_STEPS.items()
    }
    return hold, make_migrations(steps)


def test_a_worker_killed_mid_step_fails_its_target_alone(
    fleet: Fleet, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    hold, folder = held_steps(make_migrations, tmp_path)
    killed: list[int] = []

    def kill_the_first() -> None:
        wait_for(lambda: running(tmp_path), "a worker inside step 002")
        killed.append(running(tmp_path)[0])
        os.kill(killed[0], signal.SIGKILL)
        time.sleep(0.3)
        hold.unlink()

    killer = threading.Thread(target=kill_the_first)
    killer.start()
    started = time.monotonic()
    results = upgrade_all(fleet.targets, folder, jobs=2, processes=True)
    killer.join(BOUND)

    assert time.monotonic() - started < BOUND
    failed = [r for r in results if r.state == "failed"]
    assert len(failed) == 1 and [r.state for r in results].count("upgraded") == 3
    error = failed[0].error
    assert isinstance(error, WorkerDied)
    assert (error.version, error.exitcode) == ("002", -signal.SIGKILL)
    assert "worker process running this target died (killed by signal 9)" in str(error)
    assert "rolled back" in str(error) and "\n" not in str(error)
    assert [m.version for m in failed[0].applied] == ["001"]
    at = [r.state for r in results].index("failed")
    for i, target in enumerate(fleet.targets):
        if i != at:
            assert fleet.hits(target) == ["001", "002", "003"]
    dead = fleet.targets[at]
    if fleet.transactional_ddl:  # the killed step left nothing
        assert fleet.hits(dead) == fleet.current(dead, folder) == ["001"]
        assert [r.state for r in upgrade_all([dead], folder, processes=True)] == ["upgraded"]


def run_child(code: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


CHILD = """\
    import json, sys
    from sqlmig import Target, TargetsInterrupted, upgrade_all

    targets = [Target(u, s or None) for u, s in json.loads({targets!r})]
    try:
        results = upgrade_all(targets, {folder!r}, jobs=2, processes=True)
        code = 0
    except TargetsInterrupted as stop:
        results, code = stop.results, 130
    print(json.dumps([[r.state, [m.version for m in r.applied]] for r in results]))
    sys.exit(code)
    """


def child_code(fleet: Fleet, folder: Path) -> str:
    pairs = [[str(t.url), t.schema or ""] for t in fleet.targets]
    return CHILD.format(targets=json.dumps(pairs), folder=str(folder))


def test_ctrl_c_stops_each_running_target_after_its_step(
    fleet: Fleet, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    hold, folder = held_steps(make_migrations, tmp_path)
    child = run_child(child_code(fleet, folder))
    try:
        wait_for(lambda: len(running(tmp_path)) == 2, "two workers inside step 002")
        workers = running(tmp_path)
        child.send_signal(signal.SIGINT)  # the parent only: workers ignore it anyway
        for pid in workers:
            os.kill(pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the whole group
        time.sleep(0.3)
        hold.unlink()
        out, err = child.communicate(timeout=BOUND)
    finally:
        child.kill()

    assert child.returncode == 130, err
    assert "Traceback" not in err
    states = json.loads(out)
    assert [s for s, _ in states] == ["interrupted", "interrupted", "not started", "not started"]
    assert [a for _, a in states[:2]] == [["001", "002"]] * 2  # 002 finished; 003 never began
    for target in fleet.targets[:2]:
        assert fleet.hits(target) == fleet.current(target, folder) == ["001", "002"]
    for target in fleet.targets[2:]:
        assert fleet.hits(target) == []
    wait_for(lambda: all(gone(p) for p in workers), "the workers leave", 10)


def test_the_parent_killed_leaves_no_worker_running_and_every_target_whole(
    fleet: Fleet, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    hold, folder = held_steps(make_migrations, tmp_path)
    child = run_child(child_code(fleet, folder))
    try:
        wait_for(lambda: len(running(tmp_path)) == 2, "two workers inside step 002")
        workers = running(tmp_path)
        child.kill()
        child.wait(BOUND)
        hold.unlink()
        wait_for(lambda: all(gone(p) for p in workers), "the orphaned workers leave", 10)
    finally:
        child.kill()
        child.communicate(timeout=BOUND)

    for target in fleet.targets:  # each step's work and row together; none after 002
        assert fleet.hits(target) == fleet.current(target, folder)
        assert fleet.hits(target) in ([], ["001", "002"])
    results = upgrade_all(fleet.targets, folder, processes=True)
    assert [r.state for r in results] == ["upgraded"] * 4
    assert [fleet.hits(t) for t in fleet.targets] == [["001", "002", "003"]] * 4


def test_two_cli_runs_with_processes_racing_apply_each_step_once(
    fleet: Fleet, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations(COUNTED_STEPS)
    (tmp_path / "targets.txt").write_text("\n".join(fleet.lines()) + "\n")
    (tmp_path / "pyproject.toml").write_text(f"[tool.sqlmig]\nmigrations = {str(folder)!r}\n")
    command = [sys.executable, "-m", "sqlmig", "upgrade", "--all", "--processes", "--jobs", "2"]
    racers = [
        subprocess.Popen(
            [*command, "--targets", "targets.txt"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(2)
    ]
    outputs = []
    with ExitStack() as stack:
        for racer in racers:
            stack.callback(racer.kill)
        outputs = [racer.communicate(timeout=BOUND) for racer in racers]

    assert [r.returncode for r in racers] == [0, 0], outputs
    summaries = sorted(out.splitlines()[-1] for out, _ in outputs)
    assert all(s.endswith(("upgraded", "up to date")) for s in summaries), summaries
    assert [fleet.hits(t) for t in fleet.targets] == [["001", "002", "003"]] * 4


def test_an_engine_from_a_configured_callable_is_refused_with_processes(tmp_path: Path) -> None:
    (tmp_path / "registry.py").write_text(
        "from sqlalchemy import create_engine\n\n"
        f"def targets():\n    return [create_engine('sqlite:///{tmp_path}/a.db')]\n"
    )
    (tmp_path / "migrations").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sqlmig]\nmigrations = "migrations"\ntargets = "registry:targets"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "sqlmig", "upgrade", "--all", "--processes"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=BOUND,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    assert proc.returncode == 2, proc.stderr
    assert "is an Engine, which cannot move to a worker process" in proc.stderr
    assert not (tmp_path / "a.db").exists()


def test_many_targets_leak_no_descriptor_and_leave_no_process(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_t.py": "def up(conn):\n    pass\n"})
    files = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(200)]
    import multiprocessing

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    warm = [f"sqlite:///{tmp_path / f'warm{i}.db'}" for i in range(2)]
    upgrade_all(warm, folder, jobs=2, processes=True)  # what the first use keeps
    before = fds()
    most = [0]

    def count(result: TargetResult) -> None:
        most[0] = max(most[0], fds())

    results = upgrade_all(files, folder, jobs=8, processes=True, on_result=count)

    assert [r.state for r in results] == ["upgraded"] * 200
    assert fds() == before
    assert most[0] - before <= 8 * 3  # a pipe and a sentinel per worker
    assert multiprocessing.active_children() == []


def test_a_worker_killed_between_two_targets_costs_no_target(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    """It died before it took the next target: a new worker runs that target."""
    import multiprocessing

    folder = make_migrations(COUNTED_STEPS)
    files = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(3)]
    killed: list[int] = []

    def kill_the_idle_worker(result: TargetResult) -> None:
        if not killed:  # it sent this result; stopped, it cannot read the next target
            (worker,) = multiprocessing.active_children()
            assert worker.pid is not None
            os.kill(worker.pid, signal.SIGSTOP)
            killed.append(worker.pid)
            # killed once it has been given the next target, which it never read
            threading.Timer(0.5, os.kill, (worker.pid, signal.SIGKILL)).start()

    results = upgrade_all(files, folder, jobs=1, processes=True, on_result=kill_the_idle_worker)

    assert killed and [r.state for r in results] == ["upgraded"] * 3, [r.error for r in results]
    assert [hits(f) for f in files] == [["001", "002", "003"]] * 3


def test_forking_while_the_caller_has_busy_threads(tmp_path: Path) -> None:
    """Another thread of the caller logs and uses SQLite while the workers are forked:
    no lock it held at the fork leaves a worker stuck."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "001_t.py").write_text(
        "import logging\n\ndef up(conn):\n    logging.getLogger('app').warning('up')\n"
        "    conn.exec_driver_sql('CREATE TABLE t (n INTEGER)')\n"
    )
    code = f"""\
        import io, logging, sqlite3, threading
        from sqlmig import upgrade_all

        logging.basicConfig(stream=io.StringIO(), level=logging.DEBUG)
        done = threading.Event()

        def busy():
            db = sqlite3.connect({str(tmp_path / "busy.db")!r}, check_same_thread=False)
            while not done.is_set():
                logging.getLogger("app.busy").debug("busy")
                db.execute("SELECT 1").fetchall()

        thread = threading.Thread(target=busy)
        thread.start()
        try:
            for round in range(5):
                urls = [f"sqlite:///{tmp_path}/{{round}}-{{i}}.db" for i in range(30)]
                results = upgrade_all(urls, {str(tmp_path / "m")!r}, jobs=8, processes=True)
                assert [r.state for r in results] == ["upgraded"] * 30, results
        finally:
            done.set()
            thread.join()
        print("ok")
        """
    child = run_child(code)
    try:
        out, err = child.communicate(timeout=BOUND)
    finally:
        child.kill()

    assert (child.returncode, out.strip()) == (0, "ok"), err[-2000:]

"""``upgrade_all``, ``status_all``, ``downgrade_all``: every tenant, each on its own.

Each test runs over a few fresh databases of one backend (SQLite files,
PostgreSQL and MariaDB databases); one tenant's trouble (an unreachable
server, a failing step, a dirty history, a held lock) is its result alone and
every other tenant ends migrated.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from holding import held_lock
from sqlalchemy import text
from tenants import COUNTED_STEPS, hits, tenant_databases

from backends import Backend
from conftest import MakeMigrations
from sqlmig import (
    ConfigError,
    DatabaseUnavailable,
    DirtyDatabase,
    LockTimeout,
    MigrationFailed,
    MigrationRunner,
    MigrationSourceError,
    Target,
    TargetResult,
    TargetsInterrupted,
    UsageError,
    downgrade_all,
    status_all,
    upgrade_all,
)

UNREACHABLE = "postgresql+psycopg://app:s3cr%40t%25pw@127.0.0.1:1/nowhere"


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def three(request: pytest.FixtureRequest, tmp_path: Path) -> list[Backend]:
    with tenant_databases(request.param, tmp_path, 3) as found:
        yield found  # type: ignore[misc]


def urls(backends: list[Backend]) -> list[str]:
    return [b.url_string for b in backends]


def test_every_tenant_is_upgraded_reported_and_downgraded(
    three: list[Backend], make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(COUNTED_STEPS)

    results = upgrade_all(urls(three), folder, jobs=2)

    assert [r.state for r in results] == ["upgraded"] * 3
    assert [[m.version for m in r.applied] for r in results] == [["001", "002", "003"]] * 3
    assert all(r.error is None and r.ok and r.seconds > 0 for r in results)
    assert [hits(u) for u in urls(three)] == [["001", "002", "003"]] * 3
    assert [r.name for r in results] == [MigrationRunner(u, folder).url for u in urls(three)]

    assert [r.state for r in upgrade_all(urls(three), folder)] == ["up to date"] * 3
    statuses = status_all(urls(three), folder)
    assert [(r.state, r.status and r.status.current) for r in statuses] == [
        ("up to date", "003")
    ] * 3

    undone = downgrade_all(urls(three), folder, "001", jobs=3)
    assert [r.state for r in undone] == ["downgraded"] * 3
    assert [[m.version for m in r.applied] for r in undone] == [["003", "002"]] * 3
    assert [hits(u) for u in urls(three)] == [["001"]] * 3
    assert [r.state for r in status_all(urls(three), folder)] == ["pending"] * 3


def poison_the_second(three: list[Backend]) -> None:
    """A ``poison`` table in each tenant, holding 1 in the second only."""
    for i, backend in enumerate(three):
        engine = backend.engine()
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE poison (n INTEGER)"))
            conn.execute(text(f"INSERT INTO poison (n) VALUES ({int(i == 1)})"))
        engine.dispose()


def test_one_tenant_s_failure_stops_no_other(
    three: list[Backend], make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            **COUNTED_STEPS,
            "004_fails_where_poisoned.py": """\
                def up(conn):
                    if conn.exec_driver_sql("SELECT MAX(n) FROM poison").scalar():
                        raise RuntimeError("this tenant is poisoned")
                """,
        }
    )
    poison_the_second(three)

    results = upgrade_all([*urls(three), UNREACHABLE], folder, jobs=4)

    assert [r.state for r in results] == ["upgraded", "failed", "upgraded", "failed"]
    failing = results[1]
    assert isinstance(failing.error, MigrationFailed)
    assert failing.error.version == "004"
    assert [m.version for m in failing.applied] == ["001", "002", "003"]
    assert isinstance(results[3].error, DatabaseUnavailable)
    assert "s3cr" not in str(results[3].error) and "s3cr" not in results[3].name
    assert [hits(u) for u in urls(three)] == [["001", "002", "003"]] * 3
    assert [MigrationRunner(u, folder).status().current for u in urls(three)] == [
        "004",
        "003",
        "004",
    ]


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
@pytest.mark.parametrize("ending", ["sys.exit(4)", "raise KeyboardInterrupt"])
def test_a_step_that_ends_the_program_fails_its_tenant_alone(
    three: list[Backend], make_migrations: MakeMigrations, processes: bool, ending: str
) -> None:
    """``sys.exit()`` in a step ends no worker, thread or process: the tenant fails at that
    step, what it applied before is said, the others go on."""
    folder = make_migrations(
        {
            **COUNTED_STEPS,
            "004_ends_where_poisoned.py": f"""\
                import sys

                def up(conn):
                    if conn.exec_driver_sql("SELECT MAX(n) FROM poison").scalar():
                        {ending}
                """,
        }
    )
    poison_the_second(three)

    results = upgrade_all(urls(three), folder, jobs=2, processes=processes)

    assert [r.state for r in results] == ["upgraded", "failed", "upgraded"]
    error = results[1].error
    assert isinstance(error, MigrationFailed), error
    assert error.version == "004"
    assert "migration 004 (ends_where_poisoned) raised" in str(error)
    assert [m.version for m in results[1].applied] == ["001", "002", "003"]
    assert [hits(u) for u in urls(three)] == [["001", "002", "003"]] * 3


def test_a_dirty_tenant_fails_alone(three: list[Backend], make_migrations: MakeMigrations) -> None:
    folder = make_migrations(COUNTED_STEPS)
    dirty = three[0]
    MigrationRunner(dirty.url, folder).upgrade("001")
    engine = dirty.engine()
    with engine.begin() as conn:
        conn.execute(text("UPDATE migrations SET success = :f"), {"f": False})
    engine.dispose()

    results = upgrade_all(urls(three), folder)

    assert [r.state for r in results] == ["failed", "upgraded", "upgraded"]
    assert isinstance(results[0].error, DirtyDatabase)
    assert hits(dirty.url_string) == ["001"]
    statuses = status_all(urls(three), folder)
    assert [r.state for r in statuses] == ["needs repair", "up to date", "up to date"]
    assert all(r.ok for r in statuses)


def test_a_tenant_whose_lock_is_held_times_out_alone(
    three: list[Backend], make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(COUNTED_STEPS)
    MigrationRunner(three[2].url, folder).upgrade("001")  # the table exists to be locked

    with held_lock(three[2]):
        results = upgrade_all(urls(three), folder, lock_timeout=0.5)

    assert [r.state for r in results] == ["upgraded", "upgraded", "failed"]
    assert isinstance(results[2].error, LockTimeout)
    assert hits(three[2].url_string) == ["001"]


def test_fail_fast_starts_nothing_after_a_failure(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(COUNTED_STEPS)
    files = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(3)]

    results = upgrade_all([UNREACHABLE, *files], folder, jobs=1, fail_fast=True)

    assert [r.state for r in results] == ["failed", "not started", "not started", "not started"]
    assert not any((tmp_path / f"{i}.db").exists() for i in range(3))


def test_ctrl_c_lets_the_running_step_finish_and_starts_nothing_new(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    """A KeyboardInterrupt in the calling thread (here from ``on_result``, as Ctrl-C would)."""
    started = tmp_path / "started"
    folder = make_migrations(
        {
            **COUNTED_STEPS,
            "004_slow.py": f"""\
                import pathlib, time

                def up(conn):
                    pathlib.Path({str(started)!r}).touch()
                    time.sleep(0.5)
                """,
            "005_after.py": "def up(conn):\n    pass\n",
        }
    )
    files = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(4)]
    MigrationRunner(files[0], folder).upgrade()  # up to date: it finishes at once
    MigrationRunner(files[1], folder).upgrade("003")
    started.unlink()  # the set-up's own run of 004 left it

    def interrupt(result: TargetResult) -> None:
        if result.name == MigrationRunner(files[0], folder).url:
            while not started.exists():  # the second tenant's slow step runs
                threading.Event().wait(0.01)
            raise KeyboardInterrupt

    with pytest.raises(TargetsInterrupted) as stop:
        upgrade_all(files, folder, jobs=2, on_result=interrupt)

    states = {r.target.url: r.state for r in stop.value.results}
    assert states[files[0]] == "up to date"
    assert states[files[1]] == "interrupted"
    stopped = next(r for r in stop.value.results if r.target.url == files[1])
    assert [m.version for m in stopped.applied] == ["004"]  # it finished; 005 never began
    assert MigrationRunner(files[1], folder).status().current == "004"
    assert isinstance(stop.value, KeyboardInterrupt)
    # the third tenant started with the second, or never: either way it ended cleanly
    assert {states[files[2]], states[files[3]]} <= {"interrupted", "not started", "upgraded"}


def test_each_migration_module_is_imported_once_for_all_tenants(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    marker = tmp_path / "imports.log"
    folder = make_migrations(
        {
            "001_marked.py": f"""\
                import pathlib
                with pathlib.Path({str(marker)!r}).open("a") as log:
                    log.write("imported\\n")

                def up(conn):
                    conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
                """
        }
    )
    files = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(6)]

    assert [r.state for r in status_all(files, folder)] == ["pending"] * 6
    assert not marker.exists()  # reading imports nothing
    assert [r.state for r in upgrade_all(files, folder, jobs=3)] == ["upgraded"] * 6
    assert marker.read_text().splitlines() == ["imported"]
    assert [r.state for r in upgrade_all(files, folder, jobs=3)] == ["up to date"] * 6
    assert marker.read_text().splitlines() == ["imported"]


@pytest.mark.parametrize("form", ["folder", "list", "migrations"])
def test_a_slow_module_shared_by_workers_starting_together_runs_once(
    tmp_path: Path, make_migrations: MakeMigrations, form: str
) -> None:
    """Four workers reach the steps at once; each module's body runs once, and all of it."""
    runs = tmp_path / "runs.log"
    slow = """\
        import pathlib, time
        with pathlib.Path({runs!r}).open("a") as log:
            log.write("{table}\\n")
        time.sleep(0.3)  # the other workers reach this step meanwhile
        TABLE = "{table}"

        def up(conn):
            conn.exec_driver_sql(f"CREATE TABLE {{TABLE}} (n INTEGER)")
        """
    folder = make_migrations(
        {f"00{i}_{t}.py": slow.format(runs=str(runs), table=t) for i, t in ((1, "a"), (2, "b"))}
    )
    files = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(4)]
    source: object = {
        "folder": folder,
        "list": [str(folder)],
        "migrations": MigrationRunner(files[0], folder).migrations(),  # imports nothing
    }[form]

    results = upgrade_all(files, source, jobs=4)  # type: ignore[arg-type]

    assert [r.state for r in results] == ["upgraded"] * 4, [r.error for r in results]
    assert sorted(runs.read_text().splitlines()) == ["a", "b"]


@pytest.mark.parametrize(
    ("targets", "options", "error", "says"),
    [
        ([], {}, UsageError, "no targets"),
        (["sqlite:///a.db", "sqlite:///./a.db"], {}, UsageError, "target #2 (sqlite:///./a.db)"),
        (
            ["postgresql://u:one@h/db", "postgresql+psycopg://u:two@h/db"],
            {},
            UsageError,
            "is target #1 again",
        ),
        (
            [Target("sqlite:///a.db", name="x"), Target("sqlite:///b.db", name="x")],
            {},
            UsageError,
            "named 'x'",
        ),
        (["staging"], {}, ConfigError, "target #1: 'staging' is not a database URL"),
        ([42], {}, UsageError, "target #1 is a int"),
        ([Target("sqlite:///a.db", schema="tenant")], {}, UsageError, "needs PostgreSQL"),
        (["sqlite:///a.db"], {"jobs": 0}, UsageError, "jobs=0"),
        (["sqlite:///a.db"], {"jobs": -3}, UsageError, "jobs=-3"),
        (["sqlite:///a.db"], {"jobs": True}, UsageError, "jobs=True"),
        (["sqlite:///a.db"], {"metadata": "x:y"}, UsageError, "unknown option metadata"),
        (["sqlite:///a.db"], {"to": "999"}, UsageError, "unknown target '999'"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(
    tmp_path: Path,
    make_migrations: MakeMigrations,
    monkeypatch: pytest.MonkeyPatch,
    targets: list[object],
    options: dict[str, object],
    error: type[Exception],
    says: str,
) -> None:
    folder = make_migrations(COUNTED_STEPS)
    monkeypatch.chdir(tmp_path)

    with pytest.raises(error) as raised:
        upgrade_all(targets, folder, **options)  # type: ignore[arg-type]

    assert says in str(raised.value)
    assert not list(tmp_path.glob("*.db"))


def test_a_bad_migrations_folder_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "1st_step.py").write_text("def up(conn):\n    pass\n")

    with pytest.raises(MigrationSourceError):
        upgrade_all([f"sqlite:///{tmp_path / 'a.db'}"], tmp_path / "migrations")

    assert not (tmp_path / "a.db").exists()


def test_downgrade_all_needs_a_version(tmp_path: Path, make_migrations: MakeMigrations) -> None:
    with pytest.raises(UsageError, match="needs to="):
        downgrade_all(["sqlite:///a.db"], make_migrations(COUNTED_STEPS), None)  # type: ignore[arg-type]


def test_thousands_of_targets_hold_no_more_connections_than_jobs(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    """Each running target's engine is disposed of when it ends: open files stay few."""
    import os

    folder = make_migrations({"001_t.py": "def up(conn):\n    pass\n"})
    files = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(300)]
    opened: list[int] = []

    def count(result: TargetResult) -> None:
        opened.append(len(os.listdir("/proc/self/fd")))

    results = upgrade_all(files, folder, jobs=4, on_result=count)

    assert [r.state for r in results] == ["upgraded"] * 300
    assert max(opened) - min(opened) <= 4 * 3  # a db file, its journal, a spare: per job

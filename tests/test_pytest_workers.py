"""The plugin under pytest-xdist: each worker's own migrated database, on every backend.

An inner pytest runs with ``-n 2`` on a small project (``pytester``). SQLite
runs use the plugin's default; PostgreSQL and MariaDB runs name the test's own
fresh database with ``--sqlmig-url``, on whose server the workers' databases
are made.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from backends import Backend
from sqlmig._pytest_runs import SERVERS, Run, folder

USERS = """\
    '''Users.'''
    import sqlalchemy as sa

    users = sa.Table(
        "users", sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(100), nullable=False),
    )

    def up(conn):
        users.create(conn)

    def down(conn):
        users.drop(conn)
    """

OWN_ROWS = """\
    import os
    import time
    from pathlib import Path

    import pytest
    from sqlalchemy import text

    @pytest.mark.parametrize("i", range(6))
    def test_each_worker_sees_only_its_own_rows(sqlmig_migrated, i):
        worker = os.environ["PYTEST_XDIST_WORKER"]
        with sqlmig_migrated.begin() as conn:  # committed: the next test of the worker sees it
            conn.execute(text("INSERT INTO users (email) VALUES (:w)"), {{"w": worker}})
        with sqlmig_migrated.connect() as conn:
            assert set(conn.execute(text("SELECT email FROM users")).scalars()) == {{worker}}
        Path({seen!r}, worker).write_text(str(sqlmig_migrated.url.database))
        time.sleep(0.2)  # long enough that both workers get tests
    """

HANGS = """\
    import os
    import time
    from pathlib import Path

    import pytest

    @pytest.mark.parametrize("i", range(2))
    def test_hangs(sqlmig_migrated, i):
        worker = os.environ["PYTEST_XDIST_WORKER"]
        Path({seen!r}, worker).write_text(str(sqlmig_migrated.url.database))
        time.sleep(60)  # killed before then
    """


def project(pytester: pytest.Pytester, tests: str) -> Path:
    """A project with one migration; returns the folder its tests note databases in."""
    (pytester.path / "migrations").mkdir()
    (pytester.path / "migrations" / "001_users.py").write_text(textwrap.dedent(USERS))
    pytester.makepyprojecttoml("")
    seen = pytester.path / "seen"
    seen.mkdir()
    pytester.makepyfile(test_app=textwrap.dedent(tests.format(seen=str(seen))))
    return seen


def url_args(backend: Backend) -> list[str]:
    """SQLite is the plugin's own default; the servers are named by the test's database."""
    return [] if backend.name == "sqlite" else ["--sqlmig-url", backend.url_string]


@pytest.fixture
def no_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQLMIG_TEST_URL", raising=False)


def noted(seen: Path) -> dict[str, str]:
    """The database each worker's tests noted, by worker id."""
    return {path.name: path.read_text() for path in seen.iterdir()}


def left_of(backend: Backend, prefix: str) -> list[str]:
    """The databases and files of a run (by its names' prefix) that still exist."""
    found = [p.name for p in folder().glob(f"{prefix}*")]
    if backend.name != "sqlite":
        engine = create_engine(backend.url)
        try:
            with engine.connect() as conn:
                names = conn.execute(text(SERVERS[backend.name].databases)).scalars()
                found += [n for n in names if n.startswith(prefix)]
        finally:
            engine.dispose()
    return found


def prefix_of(database: str) -> str:
    run = Run.of(Path(database).name)
    assert run is not None, database
    return run.prefix


def test_each_worker_gets_a_database_of_its_own_dropped_at_the_end(
    pytester: pytest.Pytester, backend: Backend, no_url: None
) -> None:
    seen = project(pytester, OWN_ROWS)

    result = pytester.runpytest("-n", "2", "-p", "no:cacheprovider", *url_args(backend))

    result.assert_outcomes(passed=6)
    databases = noted(seen)
    assert sorted(databases) == ["gw0", "gw1"]
    assert len(set(databases.values())) == 2
    assert all(Path(name).name.startswith("sqlmig_test_") for name in databases.values())
    assert left_of(backend, prefix_of(databases["gw0"])) == []  # template and lock too


@pytest.fixture
def killed_run(pytester: pytest.Pytester, backend: Backend) -> Iterator[subprocess.Popen[bytes]]:
    """An inner ``pytest -n 2`` started in a session of its own (so it can be killed whole)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("SQLMIG_TEST_URL", None)
    command = [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider"]
    command += ["--basetemp", str(pytester.path / "killed-tmp"), *url_args(backend)]
    proc = subprocess.Popen(
        command,
        cwd=pytester.path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_killed_runs_databases_are_dropped_by_the_next_run(
    pytester: pytest.Pytester,
    backend: Backend,
    killed_run: subprocess.Popen[bytes],
    no_url: None,
) -> None:
    seen = project(pytester, HANGS)
    deadline = time.monotonic() + 60
    while len(noted(seen)) < 2 and time.monotonic() < deadline and killed_run.poll() is None:
        time.sleep(0.1)
    databases = noted(seen)
    assert sorted(databases) == ["gw0", "gw1"], "the run to kill did not get going"
    os.killpg(killed_run.pid, signal.SIGKILL)
    killed_run.wait(timeout=30)
    prefix = prefix_of(databases["gw0"])
    assert left_of(backend, prefix), "nothing left behind to clean up"
    (pytester.path / "test_app.py").write_text("def test_quick(sqlmig_migrated):\n    pass\n")

    result = pytester.runpytest("-n", "2", "-p", "no:cacheprovider", *url_args(backend))

    result.assert_outcomes(passed=1)
    assert left_of(backend, prefix) == []


@pytest.fixture
def unprivileged(backend: Backend) -> Iterator[Backend]:
    """The backend's database, through a user who may use it but not create databases."""
    if backend.name == "sqlite":
        pytest.skip("SQLite has no users: its workers' files are made in the temporary folder")
    user = f"sqlmig_nc_{uuid.uuid4().hex[:8]}"
    database = backend.url.database
    admin = create_engine(backend.url, isolation_level="AUTOCOMMIT")
    grants = {
        "postgresql": (
            [f"CREATE ROLE {user} LOGIN"],  # it may connect (PUBLIC may), not create
            [f"DROP ROLE IF EXISTS {user}"],
        ),
        "mysql": (
            [
                f"CREATE USER '{user}'@'%'",
                f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'%'",
            ],
            [f"DROP USER IF EXISTS '{user}'@'%'"],
        ),
    }
    make, drop = grants[backend.name]
    with admin.connect() as conn:
        for statement in make:
            conn.execute(text(statement))
    try:
        yield Backend(backend.name, backend.url.set(username=user, password=None))
    finally:
        with admin.connect() as conn:
            for statement in drop:
                conn.execute(text(statement))
        admin.dispose()


def test_a_user_who_may_not_create_databases_is_told_the_privilege(
    pytester: pytest.Pytester, unprivileged: Backend
) -> None:
    project(pytester, "def test_migrated(sqlmig_migrated):\n    pass\n")

    result = pytester.runpytest("-n", "2", "-p", "no:cacheprovider", *url_args(unprivileged))

    result.assert_outcomes(errors=1)
    privilege = SERVERS[unprivileged.name].privilege
    result.stdout.fnmatch_lines(
        [f"*user sqlmig_nc_* may not create databases (it lacks the {privilege} privilege)*"]
    )


def test_the_ready_made_checks_pass_with_workers(
    pytester: pytest.Pytester, backend: Backend, no_url: None
) -> None:
    project(pytester, OWN_ROWS)
    pytester.makepyprojecttoml(
        "[tool.pytest.ini_options]\nsqlmig_stairway = true\nsqlmig_history = true\n"
    )

    result = pytester.runpytest("-n", "2", "-p", "no:cacheprovider", *url_args(backend))

    result.assert_outcomes(passed=8)  # the stairway ran on its worker's still empty database

"""The ``sqlmig`` command, in a temporary project.

Every command runs on SQLite, PostgreSQL and MariaDB (the ``backend`` fixture),
in this process through ``main(argv)``; a few tests run a real process, for
what only a process shows: the ``sqlmig`` script and ``python -m sqlmig``
handing the exit code to the shell, Ctrl-C, a terminal. Errors are one line on
stderr with the documented exit code; no password is ever printed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import URL, inspect

from backends import Backend, fresh_database
from conftest import tables
from sqlmig._cli import main
from sqlmig._dialects import profile_for

TIMEOUT = 120  # seconds; a bound, never an assertion

STEPS = {
    "001_create_customers.py": '''\
        """Create the customers table."""
        from sqlalchemy import Column, Integer, MetaData, String, Table

        meta = MetaData()
        customers = Table("customers", meta, Column("id", Integer, primary_key=True),
                          Column("name", String(50), nullable=False))

        def up(conn):
            customers.create(conn)

        def down(conn):
            customers.drop(conn)
        ''',
    "002_create_orders.py": '''\
        """Create the orders table."""
        from sqlalchemy import Column, Integer, MetaData, Table

        meta = MetaData()
        orders = Table("orders", meta, Column("id", Integer, primary_key=True),
                       Column("customer_id", Integer, nullable=False))

        def up(conn):
            orders.create(conn)

        def down(conn):
            orders.drop(conn)
        ''',
    "003_seed_customers.py": '''\
        """Two first customers."""
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("INSERT INTO customers (id, name) VALUES (1, 'Ada'), (2, 'Bob')"))

        def down(conn):
            conn.execute(text("DELETE FROM customers"))
        ''',
    "004_index_orders.py": '''\
        """Index orders by customer."""
        from sqlalchemy import Column, Index, Integer, MetaData, Table

        meta = MetaData()
        orders = Table("orders", meta, Column("customer_id", Integer))
        index = Index("ix_orders_customer_id", orders.c.customer_id)

        def up(conn):
            index.create(conn)

        def down(conn):
            index.drop(conn)
        ''',
    "005_create_invoices.py": '''\
        """Create the invoices table."""
        from sqlalchemy import Column, Integer, MetaData, Table

        meta = MetaData()
        invoices = Table("invoices", meta, Column("id", Integer, primary_key=True))

        def up(conn):
            invoices.create(conn)

        def down(conn):
            invoices.drop(conn)
        ''',
    "006_create_refunds.py": '''\
        """Create the refunds table."""
        from sqlalchemy import Column, Integer, MetaData, Table

        meta = MetaData()
        refunds = Table("refunds", meta, Column("id", Integer, primary_key=True))

        def up(conn):
            refunds.create(conn)

        def down(conn):
            refunds.drop(conn)
        ''',
}
TABLES = {"customers", "orders", "invoices", "refunds"}
PASSWORD = "Tr0ub4dor-pw-7731"


@dataclass
class Result:
    """What one run of the command gave: its exit code and its output."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class Project:
    """A folder with pyproject.toml and migrations/, and a way to run sqlmig in it."""

    root: Path
    backend: Backend | None = None

    @property
    def migrations(self) -> Path:
        return self.root / "migrations"

    def config(self, text: str) -> None:
        (self.root / "pyproject.toml").write_text(textwrap.dedent(text))

    def write(self, name: str, source: str | None) -> None:
        self.migrations.mkdir(exist_ok=True)
        if source is None:
            (self.migrations / name).unlink()
        else:
            (self.migrations / name).write_text(textwrap.dedent(source))

    def run(self, *args: str, **env: str) -> Result:
        """``sqlmig *args`` run here by ``main``, with no ``SQLMIG_`` variable but ``env``'s."""
        logger = logging.getLogger("sqlmig")
        before = (list(logger.handlers), logger.level, list(sys.path))
        stdout, stderr = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(self.root)
            for name in [k for k in os.environ if k.startswith("SQLMIG_")]:
                patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            with redirect_stdout(stdout), redirect_stderr(stderr):
                code = main(list(args))
        # each call leaves the process as it found it: the next one starts afresh
        assert (list(logger.handlers), logger.level, list(sys.path)) == before
        return Result(code, stdout.getvalue(), stderr.getvalue())

    def spawn(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``python -m sqlmig *args`` run here in a process of its own."""
        return subprocess.run(
            [sys.executable, "-m", "sqlmig", *args],
            cwd=self.root,
            env=environment(**env),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    def tables(self) -> set[str]:
        assert self.backend is not None
        engine = self.backend.engine()
        try:
            return set(inspect(engine).get_table_names()) - {"migrations"}
        finally:
            engine.dispose()

    def states(self) -> dict[str, str]:
        result = self.run("status", "--json")
        assert result.returncode == 0, result.stderr
        return {m["version"]: m["state"] for m in json.loads(result.stdout)["migrations"]}


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLMIG_")}
    env.update(extra)
    return env


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def new_project(root: Path, backend: Backend | None) -> Project:
    root.mkdir()
    project = Project(root, backend)
    for name, source in STEPS.items():
        project.write(name, source)
    url = backend.url_string if backend else "sqlite:///app.db"
    project.config(f'[tool.sqlmig]\nurl = {toml_string(url)}\nmigrations = "migrations"\n')
    return project


@pytest.fixture
def project(backend: Backend, tmp_path: Path) -> Project:
    """A project whose [tool.sqlmig] url is the backend's fresh database."""
    return new_project(tmp_path / "project", backend)


@pytest.fixture
def sqlite_project(sqlite_backend: Backend, tmp_path: Path) -> Project:
    return new_project(tmp_path / "project", sqlite_backend)


@pytest.fixture(params=["postgresql", "mysql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh database on each server backend, for URLs with a password."""
    with fresh_database(request.param, tmp_path) as db:
        yield db


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("sqlmig: error: ")
    return lines[0]


# -- every command on every backend -------------------------------------------


def test_upgrade_prints_one_line_per_step_with_its_time(project: Project) -> None:
    result = project.run("upgrade")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for line, name in zip(lines, STEPS, strict=False):
        assert line.startswith(f"applied {name.removesuffix('.py')} in ")
        assert line.endswith(" ms") and line.split()[-2].isdigit()
    assert lines[-1].startswith("Applied 6 migration(s) to ")
    assert len(lines) == 7
    assert result.stderr == ""
    assert project.tables() == TABLES


def test_upgrade_downgrade_rollback_walk_the_history(project: Project) -> None:
    result = project.run("upgrade", "005")
    assert result.returncode == 0, result.stderr
    assert "applied 005_create_invoices" in result.stdout
    assert "006_" not in result.stdout  # the database's random name may hold "006"
    assert project.states() == {v: "applied" for v in ("001", "002", "003", "004", "005")} | {
        "006": "pending"
    }

    result = project.run("downgrade", "003")
    assert result.returncode == 0, result.stderr
    assert [line.split()[:2] for line in result.stdout.splitlines()[:2]] == [
        ["undid", "005_create_invoices"],
        ["undid", "004_index_orders"],
    ]
    assert "Undid 2 migration(s) above 003" in result.stdout

    result = project.run("rollback")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("Rolled back 003_seed_customers on ")

    result = project.run("downgrade", "base")
    assert result.returncode == 0, result.stderr
    assert "Undid 2 migration(s) above base" in result.stdout
    assert project.tables() == set()

    result = project.run("rollback")
    assert (result.returncode, result.stdout.split(":")[0]) == (0, "Nothing to roll back")
    result = project.run("upgrade")
    assert result.returncode == 0 and project.tables() == TABLES
    result = project.run("upgrade")
    assert result.stdout.startswith("Nothing to upgrade: ")


def test_status_prints_a_readable_table(project: Project) -> None:
    assert project.run("upgrade", "002").returncode == 0
    result = project.run("status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Database:") and "Current:    002" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("version"))
    assert lines[header].split() == ["version", "name", "applied", "at", "(UTC)", "state"]
    rows = [line.split() for line in lines[header + 2 : header + 8]]
    assert [(r[0], r[1], r[-1]) for r in rows] == [
        ("001", "create_customers", "applied"),
        ("002", "create_orders", "applied"),
        ("003", "seed_customers", "pending"),
        ("004", "index_orders", "pending"),
        ("005", "create_invoices", "pending"),
        ("006", "create_refunds", "pending"),
    ]
    assert datetime.strptime(f"{rows[0][2]} {rows[0][3]}", "%Y-%m-%d %H:%M:%S")
    assert lines[-1] == "2 applied, 4 pending"


def test_status_json_has_the_spec_shape_and_every_state(project: Project) -> None:
    assert project.run("upgrade", "003").returncode == 0
    project.write(
        "004_index_orders.py",
        """\
        from sqlalchemy import text
        transactional = False

        def up(conn):
            conn.execute(text("SELECT * FROM no_such_table"))
        """,
    )
    assert project.run("upgrade", "004").returncode == 1  # leaves a failed row
    project.write("002_create_orders.py", STEPS["002_create_orders.py"] + "# edited\n")
    project.write("003_seed_customers.py", None)

    result = project.run("status", "--json")

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"current", "migrations"}
    assert data["current"] == "003"
    entries = data["migrations"]
    assert all(
        set(e) == {"version", "name", "state", "applied_at", "execution_ms"} for e in entries
    )
    assert [(e["version"], e["name"], e["state"]) for e in entries] == [
        ("001", "create_customers", "applied"),
        ("002", "create_orders", "changed"),
        ("003", "seed_customers", "missing"),
        ("004", "index_orders", "failed"),
        ("005", "create_invoices", "pending"),
        ("006", "create_refunds", "pending"),
    ]
    for entry in entries[:4]:
        applied_at = datetime.fromisoformat(entry["applied_at"])
        assert applied_at.utcoffset() is not None and applied_at.utcoffset().total_seconds() == 0
        assert abs((datetime.now(UTC) - applied_at).total_seconds()) < 3600
    assert all(isinstance(e["execution_ms"], int) for e in entries[:3])
    assert [(e["applied_at"], e["execution_ms"]) for e in entries[4:]] == [(None, None)] * 2

    table = project.run("status").stdout
    assert table.splitlines()[-1] == "3 applied, 2 pending, 1 changed, 1 missing, 1 failed"


def test_status_json_of_an_empty_database(project: Project) -> None:
    result = project.run("status", "--json")
    data = json.loads(result.stdout)
    assert data["current"] is None
    assert {e["state"] for e in data["migrations"]} == {"pending"}
    assert project.tables() == set()


def test_verify_passes_then_fails_with_exit_3_on_an_edited_file(project: Project) -> None:
    assert project.run("upgrade", "004").returncode == 0
    result = project.run("verify")
    assert result.returncode == 0
    assert result.stdout == "OK: history and files agree (4 applied, 2 pending)\n"

    project.write("002_create_orders.py", STEPS["002_create_orders.py"] + "# edited\n")
    result = project.run("verify")
    assert result.returncode == 3
    assert "applied migration 002 was edited" in one_line(result.stderr)


def test_verify_reports_a_syntax_error_in_a_pending_file_with_exit_2(project: Project) -> None:
    project.write("007_broken.py", "def up(conn)\n    pass\n")
    result = project.run("verify")
    assert result.returncode == 2
    assert "007_broken.py:1: syntax error" in one_line(result.stderr)


def test_repair_accepts_edits_and_clears_failed_rows(project: Project) -> None:
    assert project.run("upgrade", "002").returncode == 0
    project.write("002_create_orders.py", STEPS["002_create_orders.py"] + "# edited\n")
    project.write(
        "003_seed_customers.py",
        """\
        transactional = False

        def up(conn):
            raise RuntimeError("boom")
        """,
    )
    assert project.run("upgrade").returncode == 3  # the edit stops it first

    result = project.run("repair")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Repaired: accepted the edited file of 002\n"
    assert project.run("upgrade").returncode == 1  # 003 raises, leaving a failed row
    assert project.run("upgrade").returncode == 3  # dirty
    result = project.run("repair")
    assert result.stdout == "Repaired: removed the failed row of 003\n"
    assert project.run("repair").stdout == "Nothing to repair: history and files agree\n"
    assert project.run("verify").returncode == 0


def test_repair_before_any_upgrade_says_there_is_nothing_to_repair(project: Project) -> None:
    result = project.run("repair")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Nothing to repair: no step is recorded yet\n"
    assert project.backend is not None and tables(project.backend) == set()


def test_baseline_marks_steps_applied_without_running_them(project: Project) -> None:
    result = project.run("baseline", "004")
    assert result.returncode == 0, result.stderr
    assert "at 004: 4 migration(s) marked applied without running them" in result.stdout
    assert project.tables() == set()  # nothing ran
    assert project.states() == {
        "001": "applied",
        "002": "applied",
        "003": "applied",
        "004": "applied",
        "005": "pending",
        "006": "pending",
    }
    result = project.run("baseline", "004")
    assert result.returncode == 2
    assert "baseline is only for a database sqlmig has never migrated" in one_line(result.stderr)


def test_upgrade_dry_run_shows_the_plan_and_changes_nothing(project: Project) -> None:
    assert project.run("upgrade", "001").returncode == 0
    result = project.run("upgrade", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Dry run on ") and "5 migration(s) would be applied" in out
    for name in list(STEPS)[1:]:
        assert f"\n{name.removesuffix('.py')}: " in out
    if project.backend and not project.backend.profile.transactional_ddl:
        assert "DDL there cannot be tried in a rolled-back transaction" in out
        assert "CREATE TABLE" not in out
    else:
        assert "CREATE TABLE orders" in out and "INSERT INTO customers" in out
        assert "CREATE INDEX ix_orders_customer_id" in out
    assert "applied " not in out
    assert project.tables() == {"customers"}
    assert set(project.states().values()) == {"applied", "pending"}
    assert list(project.states().values()).count("applied") == 1


def test_upgrade_dry_run_plans_a_non_transactional_step_and_those_after_it(
    project: Project,
) -> None:
    project.write(
        "004_index_orders.py",
        """\
        transactional = False

        def up(conn):
            raise RuntimeError("a dry run must not run this")
        """,
    )
    result = project.run("upgrade", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    plan_only = project.backend is not None and not project.backend.profile.transactional_ddl
    assert ("DDL there cannot be tried" in out) == plan_only
    assert ("CREATE TABLE customers" in out) != plan_only
    assert "004_index_orders\n    -- transactional = False: planned only, not tried\n" in out
    after = "    -- planned only: it comes after a step that was not tried\n"
    assert (f"005_create_invoices: Create the invoices table.\n{after}" in out) != plan_only
    assert "CREATE TABLE invoices" not in out
    assert project.tables() == set()


def test_upgrade_dry_run_to_a_target(project: Project) -> None:
    result = project.run("upgrade", "002", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "2 migration(s) would be applied" in result.stdout
    assert "003_seed_customers" not in result.stdout
    assert project.tables() == set()


def test_new_numbers_after_the_files_there(project: Project) -> None:
    result = project.run("new", "add_orders")
    assert (result.returncode, result.stdout) == (0, "Created migrations/007_add_orders.py\n")
    upgrade = project.run("upgrade")
    assert upgrade.returncode == 0 and "applied 007_add_orders in" in upgrade.stdout
    assert project.run("rollback").stdout.splitlines()[0].startswith("undid 007_add_orders")


def test_new_sql_writes_a_sql_migration_every_command_then_runs(project: Project) -> None:
    result = project.run("new", "add_returns", "--sql")
    assert (result.returncode, result.stdout) == (0, "Created migrations/007_add_returns.sql\n")
    project.write(
        "007_add_returns.sql",
        "-- migrate:up\nCREATE TABLE returns (id INT);\n-- migrate:down\nDROP TABLE returns;\n",
    )
    assert project.run("verify").returncode == 0
    assert "CREATE TABLE returns (id INT);" in project.run("upgrade", "--sql").stdout
    upgrade = project.run("upgrade")
    assert upgrade.returncode == 0 and "applied 007_add_returns in" in upgrade.stdout
    assert "007      add_returns" in project.run("status").stdout
    assert project.run("rollback").stdout.splitlines()[0].startswith("undid 007_add_returns")
    assert project.run("new", "x", "--sql", "--autogenerate").returncode == 2


# -- exit codes ---------------------------------------------------------------


def test_a_failing_step_exits_1_naming_file_and_line(project: Project) -> None:
    project.write(
        "003_seed_customers.py",
        """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("INSERT INTO customers (id, name) VALUES (1, 'Ada')"))
            conn.execute(text("INSERT INTO nowhere VALUES (1)"))
        """,
    )
    result = project.run("upgrade")
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "migration 003 (up) failed at " in line
    assert "003_seed_customers.py:5" in line
    assert "applied 002_create_orders" in result.stdout  # the steps before it stay applied
    assert project.states()["002"] == "applied"


def test_a_step_without_down_exits_1(project: Project) -> None:
    project.write("002_create_orders.py", "def up(conn):\n    pass\n")
    assert project.run("upgrade", "002").returncode == 0
    result = project.run("downgrade", "base")
    assert result.returncode == 1
    assert "migration 002 has no down()" in one_line(result.stderr)
    assert project.tables() == {"customers"}  # nothing was undone


def test_history_and_files_disagreeing_exits_3(project: Project) -> None:
    assert project.run("upgrade", "002").returncode == 0
    project.write("002_create_orders.py", STEPS["002_create_orders.py"] + "# edited\n")
    result = project.run("upgrade")
    assert result.returncode == 3
    assert "ChecksumMismatch" not in result.stderr and "002 was edited" in one_line(result.stderr)
    project.write("002_create_orders.py", STEPS["002_create_orders.py"])
    project.write("001_create_customers.py", None)
    result = project.run("upgrade")
    assert result.returncode == 3
    assert "001 has no file any more" in one_line(result.stderr)
    assert project.tables() == {"customers", "orders"}


def test_a_late_version_refused_by_the_config_exits_3(project: Project) -> None:
    project.write("003_seed_customers.py", None)
    assert project.run("upgrade").returncode == 0
    project.write("003_seed_customers.py", STEPS["003_seed_customers.py"])
    (project.root / "pyproject.toml").write_text(
        (project.root / "pyproject.toml").read_text() + "allow_out_of_order = false\n"
    )
    result = project.run("upgrade")
    assert result.returncode == 3
    assert "003 is older than the newest applied one" in one_line(result.stderr)


def test_a_late_version_is_applied_with_a_warning_on_stderr(project: Project) -> None:
    project.write("003_seed_customers.py", None)
    assert project.run("upgrade").returncode == 0
    project.write("003_seed_customers.py", STEPS["003_seed_customers.py"])
    result = project.run("upgrade")
    assert result.returncode == 0
    assert result.stdout.startswith("applied 003_seed_customers in ")
    assert result.stderr.startswith("warning: applying 003_seed_customers out of order")


def test_a_held_lock_exits_4(project: Project) -> None:
    assert project.backend is not None
    engine = project.backend.engine()
    try:
        with engine.connect() as conn:
            lock = profile_for(conn).lock_for(conn, "migrations", None)
            if lock is None:  # SQLite: a writer's transaction is the lock
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                lock.acquire(conn, 5)
            result = project.run("--lock-timeout", "0.5", "upgrade")
    finally:
        engine.dispose()
    assert result.returncode == 4, result.stderr
    assert "lock" in one_line(result.stderr)
    assert project.tables() == set()


def test_an_unknown_target_exits_2(project: Project) -> None:
    result = project.run("upgrade", "042")
    assert result.returncode == 2
    assert "unknown target '042'" in one_line(result.stderr)


@pytest.mark.parametrize("dry_run", [False, True], ids=["upgrade", "dry-run"])
def test_an_unknown_upgrade_target_exits_2_before_anything_connects(
    project: Project, dry_run: bool
) -> None:
    assert project.backend is not None
    url = project.backend.url
    if project.backend.profile.database_file(url) is None:
        url = url.set(host="127.0.0.1", port=9)  # nothing listens: connecting would show
    args = ["--url", url.render_as_string(hide_password=False), "upgrade", "042"]

    result = project.run(*args, *(["--dry-run"] if dry_run else []))

    assert result.returncode == 2
    assert "unknown target '042'" in one_line(result.stderr)
    if project.backend.profile.database_file(url) is not None:
        assert not Path(str(url.database)).exists()  # no empty database file made


def test_an_unreachable_database_exits_5_with_the_password_masked(tmp_path: Path) -> None:
    project = new_project(tmp_path / "p", None)
    url = f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:1/app"
    for args in (("--url", url, "status"), ("-v", "--url", url, "upgrade")):
        result = project.run(*args)
        assert result.returncode == 5
        assert "cannot connect to postgresql+psycopg://app:***@127.0.0.1:1/app" in result.stderr
        assert PASSWORD not in result.stdout + result.stderr
    assert "Traceback" in result.stderr  # -v


def test_refused_credentials_exit_5_with_the_password_masked(
    server: Backend, tmp_path: Path
) -> None:
    project = new_project(tmp_path / "p", server)
    wrong = server.url.set(username="nobody_here", password=PASSWORD)
    result = project.run("--url", wrong.render_as_string(hide_password=False), "status")
    assert result.returncode == 5, result.stderr
    assert "nobody_here:***@" in one_line(result.stderr)
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("config", "args", "message"),
    [
        ("[tool.sqlmig]\n", ("status",), "no database URL"),
        (
            '[tool.sqlmig]\nurl = "sqlite:///a.db"\n[tool.sqlmig.env.prod]\n',
            ("--env", "qa", "status"),
            "unknown environment 'qa'",
        ),
        (
            '[tool.sqlmig.env.prod]\nurl = "sqlite:///${NOT_SET_ANYWHERE}"\n',
            ("--env", "prod", "status"),
            "tool.sqlmig.env.prod.url uses ${NOT_SET_ANYWHERE}",
        ),
        ('[tool.sqlmig]\nurl = "sqlite:///a.db\n', ("status",), "not valid TOML"),
        (
            '[tool.sqlmig]\nurl = "sqlite:///a.db"\n',
            ("--config", "missing.toml", "status"),
            "config file missing.toml does not exist",
        ),
        ('[tool.sqlmig]\nurl = "sqlite:///a.db"\n', ("bogus",), "invalid choice: 'bogus'"),
        (
            '[tool.sqlmig]\nurl = "sqlite:///a.db"\n',
            ("--lock-timeout", "-1", "status"),
            "is not a number of seconds",
        ),
    ],
)
def test_configuration_and_usage_errors_exit_2(
    tmp_path: Path, config: str, args: tuple[str, ...], message: str
) -> None:
    project = new_project(tmp_path / "p", None)
    project.config(config)
    result = project.run(*args)
    assert result.returncode == 2
    line = result.stderr.splitlines()
    assert len(line) == 1 and message in line[0], result.stderr
    assert result.stdout == ""


def test_a_misnamed_file_exits_2_before_connecting(tmp_path: Path) -> None:
    project = new_project(tmp_path / "p", None)
    project.write("4_oops-name.py", "def up(conn): pass\n")
    unreachable = f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:1/app"
    result = project.run("--url", unreachable, "upgrade")
    assert result.returncode == 2
    assert "4_oops-name.py: file name does not match NNN_name.py" in one_line(result.stderr)


def test_a_traceback_only_with_v(sqlite_project: Project) -> None:
    sqlite_project.write("002_create_orders.py", "def up(conn):\n    1 / 0\n")
    quiet = sqlite_project.run("upgrade")
    loud = sqlite_project.run("-v", "upgrade")
    assert quiet.returncode == loud.returncode == 1
    assert "Traceback" not in quiet.stderr and len(quiet.stderr.splitlines()) == 1
    assert "Traceback" in loud.stderr and "ZeroDivisionError" in loud.stderr
    assert loud.stderr.splitlines()[-1].startswith("sqlmig: error: migration 002 (up) failed")


def ctrl_c_as_on_a_terminal() -> None:
    """In the child: Ctrl-C stops it, even when the suite runs as a background job.

    A shell starts a background job with SIGINT ignored, and a child inherits
    that; Python then installs no KeyboardInterrupt handler of its own.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_exits_130(sqlite_project: Project) -> None:
    marker = sqlite_project.root / "started"
    sqlite_project.write(
        "002_create_orders.py",
        f"""\
        import pathlib, time

        def up(conn):
            pathlib.Path({str(marker)!r}).write_text("")
            time.sleep(60)
        """,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "sqlmig", "upgrade"],
        cwd=sqlite_project.root,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_on_a_terminal,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == 130
    assert err.splitlines() == ["sqlmig: interrupted: run 'sqlmig status' to see what was applied"]
    assert "applied 001_create_customers" in out
    assert sqlite_project.states()["002"] == "pending"
    assert sqlite_project.tables() == {"customers"}


def test_ctrl_c_while_waiting_for_sqlite_s_lock_exits_at_once(sqlite_project: Project) -> None:
    assert sqlite_project.backend is not None
    holder = sqlite3.connect(sqlite_project.backend.url.database or "", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's lock
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "sqlmig", "--lock-timeout", "20", "upgrade"],
            cwd=sqlite_project.root,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=ctrl_c_as_on_a_terminal,
        )
        try:
            database = sqlite_project.backend.url.database or ""
            assert opened(process, database, within=TIMEOUT), "it never opened the database"
            time.sleep(1)  # from its first read to its wait for the lock
            assert process.poll() is None
            process.send_signal(signal.SIGINT)
            sent = time.monotonic()
            _, err = process.communicate(timeout=TIMEOUT)
            took = time.monotonic() - sent
        finally:
            process.kill()
    finally:
        holder.close()
    assert process.returncode == 130, err
    assert took < 5  # not at the end of the 20 s wait
    assert "interrupted" in err


def opened(process: subprocess.Popen[str], path: str, *, within: float) -> bool:
    """Wait until ``process`` has file ``path`` open (Linux's /proc; elsewhere, 3 s)."""
    fds = Path(f"/proc/{process.pid}/fd")
    if not fds.exists():
        time.sleep(3)
        return True
    target = os.path.realpath(path)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if any(os.path.realpath(fd) == target for fd in fds.iterdir()):
                return True
        except OSError:  # a descriptor closed while read
            pass
        time.sleep(0.05)
    return False


# -- environments and passwords -----------------------------------------------


def prod_config(server: Backend) -> str:
    url = server.url
    template = (
        URL.create(url.drivername, url.username, "PLACEHOLDER", url.host, url.port, url.database)
        .render_as_string(hide_password=False)
        .replace("PLACEHOLDER", "${DB_PASSWORD}")
    )
    return f"""\
        [tool.sqlmig]
        url = "sqlite:///app.db"
        migrations = "migrations"

        [tool.sqlmig.env.staging]
        url = "sqlite:///staging.db"

        [tool.sqlmig.env.prod]
        url = {toml_string(template)}
        """


def test_env_prod_reads_the_password_from_the_environment_and_never_prints_it(
    server: Backend, tmp_path: Path
) -> None:
    project = new_project(tmp_path / "p", server)
    project.config(prod_config(server))
    outputs = []
    if server.name == "postgresql":  # trust authentication: any password gets in
        for args in (
            ("upgrade", "003"),
            ("status",),
            ("status", "--json"),
            ("verify",),
            ("-v", "upgrade", "--dry-run"),
            ("-v", "upgrade", "042"),
        ):
            result = project.run("--env", "prod", *args, DB_PASSWORD=PASSWORD)
            assert result.returncode == (2 if "042" in args else 0), result.stderr
            outputs.append(result.stdout + result.stderr)
        assert project.tables() == {"customers", "orders"}
        assert "postgres:***@" in outputs[1]
        with_env_var = project.run("status", "--json", DB_PASSWORD=PASSWORD, SQLMIG_ENV="prod")
        assert json.loads(with_env_var.stdout)["current"] == "003"
    else:  # MariaDB refuses the password: exit 5, masked, also with -v
        for args in (("status",), ("-v", "upgrade")):
            result = project.run("--env", "prod", *args, DB_PASSWORD=PASSWORD)
            assert result.returncode == 5
            assert "root:***@" in result.stderr
            outputs.append(result.stdout + result.stderr)
    assert not (project.root / "app.db").exists()  # the default URL was not used
    assert all(PASSWORD not in output for output in outputs)


def test_sqlmig_url_overrides_every_file_url(backend: Backend, tmp_path: Path) -> None:
    project = new_project(tmp_path / "p", None)  # the file says sqlite:///app.db
    result = project.run("upgrade", "001", SQLMIG_URL=backend.url_string)
    assert result.returncode == 0, result.stderr
    project.backend = backend
    assert project.tables() == {"customers"}
    assert not (project.root / "app.db").exists()


def test_sqlmig_env_chooses_the_environment(tmp_path: Path) -> None:
    project = new_project(tmp_path / "p", None)
    project.config(
        '[tool.sqlmig]\nurl = "sqlite:///app.db"\n'
        '[tool.sqlmig.env.staging]\nurl = "sqlite:///staging.db"\n'
    )
    assert project.run("upgrade", "001", SQLMIG_ENV="staging").returncode == 0
    assert (project.root / "staging.db").exists() and not (project.root / "app.db").exists()
    result = project.run("--env", "nope", "status", SQLMIG_URL="sqlite:///x.db")
    assert result.returncode == 2 and "(environments defined: staging)" in result.stderr


# -- the command itself -------------------------------------------------------


def test_progress_counter_on_a_terminal(tmp_path: Path) -> None:
    project = new_project(tmp_path / "p", None)

    def on_a_terminal(*args: str) -> list[str]:
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "sqlmig", *args],
            cwd=project.root,
            env=environment(),
            stdout=follower,
            stderr=subprocess.PIPE,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the process is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        assert process.wait(timeout=TIMEOUT) == 0
        # what the terminal shows: each line as left after its last carriage return
        shown = b"".join(chunks).decode().replace("\r\n", "\n").split("\n")
        return [line.split("\r")[-1].rstrip() for line in shown]

    few = on_a_terminal("upgrade", "003")
    assert few[0].startswith("applied 001_create_customers in ")  # 3 pending: no counter
    many = on_a_terminal("downgrade", "base")
    assert many[0].startswith("undid 003_seed_customers in ")
    lines = on_a_terminal("upgrade")
    assert [line.split()[0] for line in lines[:6]] == [f"[{i}/6]" for i in range(1, 7)]
    assert lines[0].startswith("[1/6] applied 001_create_customers in ")


def test_new_without_any_url_or_migrations(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    project = Project(root)
    result = project.run("new", "create users")
    assert (result.returncode, result.stdout) == (0, "Created migrations/001_create_users.py\n")
    result = project.run("--dir", "db", "new", "first")
    assert result.stdout == "Created db/001_first.py\n"
    for version in range(2, 10):
        project.write(f"migration_{version:03d}_step.py", "def up(conn): pass\n")
    result = project.run("new", "add_orders")
    assert result.stdout == "Created migrations/migration_010_add_orders.py\n"


def test_options_may_follow_the_command(sqlite_project: Project) -> None:
    result = sqlite_project.run("upgrade", "--dry-run", "--url", "sqlite:///other.db")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Dry run on sqlite:///other.db: 6 migration(s)")


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = Project(tmp_path).run("--help")
    assert result.returncode == 0
    for command in (
        "upgrade",
        "downgrade",
        "rollback",
        "status",
        "verify",
        "repair",
        "baseline",
        "stamp",
        "unstamp",
        "new",
    ):
        assert f"    {command}" in result.stdout


def test_the_sqlmig_script_is_installed_and_hands_its_exit_code_to_the_shell(
    tmp_path: Path,
) -> None:
    script = Path(sys.executable).with_name("sqlmig")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args], capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path
        )

    result = run("--version")
    assert (result.returncode, result.stdout) == (0, "sqlmig 0.1.0\n")
    result = run("--config", "missing.toml", "status")
    assert result.returncode == 2
    assert "config file missing.toml does not exist" in one_line(result.stderr)


def test_python_m_sqlmig_runs_the_command_and_hands_its_exit_code_to_the_shell(
    sqlite_project: Project,
) -> None:
    result = sqlite_project.spawn("upgrade", "002")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.splitlines()[-1].startswith("Applied 2 migration(s) to sqlite:///")
    assert sqlite_project.tables() == {"customers", "orders"}

    sqlite_project.write("002_create_orders.py", STEPS["002_create_orders.py"] + "# edited\n")
    result = sqlite_project.spawn("verify")
    assert result.returncode == 3
    assert "applied migration 002 was edited" in one_line(result.stderr)


def test_main_returns_the_code_and_leaves_logging_as_it_was(
    sqlite_project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(sqlite_project.root)
    logger = logging.getLogger("sqlmig")
    before = (list(logger.handlers), logger.level)
    assert main(["upgrade", "001"]) == 0
    assert main(["downgrade", "042"]) == 2
    assert (list(logger.handlers), logger.level) == before
    out, err = capsys.readouterr()
    assert "applied 001_create_customers in " in out
    assert err.startswith("sqlmig: error: unknown target '042'")


def test_stamp_and_unstamp_say_what_they_did(sqlite_project: Project) -> None:
    result = sqlite_project.run("stamp", "002")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(": recorded 002_create_orders as applied without running it\n")
    assert sqlite_project.tables() == set()
    assert sqlite_project.run("stamp", "002").returncode == 2
    result = sqlite_project.run("unstamp", "002")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(
        ": removed the applied row of 002_create_orders without running down()\n"
    )
    result = sqlite_project.run("unstamp", "002")
    assert result.returncode == 2 and "the history has no row for it" in result.stderr


# -- secrets in every output, run in-process ----------------------------------

SECRET_KINDS = ("query", "at and colon", "short")


def with_password(url: URL, kind: str) -> URL:
    """``url`` with a password of one kind: in the query, holding '@' and ':', or short."""
    if kind == "query":
        return url.update_query_dict({"password": "Qu3ry-Secret-9"})
    return url.set(password="p@ss:w0rd@x" if kind == "at and colon" else "p")


def assert_hidden(kind: str, text: str) -> None:
    if kind == "query":
        assert "Qu3ry-Secret-9" not in text
    elif kind == "at and colon":
        assert "w0rd" not in text and "p%40ss" not in text
    else:  # nothing garbled: a short password is never replaced as a substring
        assert ":p@" not in text and "password=p" not in text
        assert "*ort" not in text and "a***lied" not in text and "a******lied" not in text


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("kind", SECRET_KINDS)
def test_no_output_or_log_shows_a_password_of_any_kind(
    server: Backend,
    tmp_path: Path,
    kind: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = new_project(tmp_path / "p", None)
    monkeypatch.chdir(project.root)
    url = with_password(server.url, kind).render_as_string(hide_password=False)
    outputs = []
    with caplog.at_level(logging.DEBUG, logger="sqlmig"):
        if server.name == "postgresql":  # trust authentication: any password gets in
            for args, code in (
                (("upgrade", "002"), 0),
                (("status",), 0),
                (("upgrade",), 0),
                (("-v", "downgrade", "001"), 0),
                (("-v", "upgrade", "--dry-run"), 0),
                (("-v", "upgrade", "042"), 2),
                (("status", "--json"), 0),
            ):
                result, output = run_main(capsys, "--url", url, *args)
                assert result == code, output
                outputs.append(output)
            assert "Applied 2 migration(s) to postgresql+psycopg://postgres" in outputs[0]
            assert ("password=***" if kind == "query" else ":***@") in outputs[1]
            assert "Traceback" in outputs[5]
            assert "applied" in outputs[1] and "pending" in outputs[1]
        else:  # MariaDB refuses the password
            for args in (("status",), ("-v", "upgrade")):
                result, output = run_main(capsys, "--url", url, *args)
                assert result == 5, output
                assert "(using password: YES)" in output
                outputs.append(output)
            assert "Traceback" in outputs[1]
    for output in [*outputs, caplog.text]:
        assert_hidden(kind, output)


@pytest.mark.parametrize("kind", SECRET_KINDS)
def test_a_refused_connection_with_v_shows_no_password(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = new_project(tmp_path / "p", None)
    monkeypatch.chdir(project.root)
    url = with_password(URL.create("postgresql+psycopg", "app", None, "127.0.0.1", 1, "app"), kind)
    result, output = run_main(capsys, "-v", "--url", url.render_as_string(False), "status")
    assert result == 5
    assert "Traceback" in output and "port 1 failed: Connection refused" in output
    assert ("password=***" if kind == "query" else ":***@127.0.0.1:1/app") in output
    assert_hidden(kind, output)


def test_a_query_password_from_a_variable_is_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = new_project(tmp_path / "p", None)
    project.config(
        '[tool.sqlmig]\nurl = "postgresql+psycopg://app@127.0.0.1:1/app?password=${DB_PASSWORD}"\n'
    )
    monkeypatch.chdir(project.root)
    monkeypatch.setenv("DB_PASSWORD", "Qu3ry-Secret-9")
    monkeypatch.delenv("SQLMIG_URL", raising=False)
    result, output = run_main(capsys, "-v", "status")
    assert result == 5 and "app@127.0.0.1:1/app?password=***" in output
    assert_hidden("query", output)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--url", "staging", "upgrade"), "--url 'staging' is not a database URL"),
        (("--url", "not a url", "status"), "--url 'not a url' is not a database URL"),
        (("--url", "sqlite:/x.db", "status"), "sqlite:///path"),
        (("--url", "postgress://app@db/app", "status"), "unknown database kind 'postgress'"),
        (
            ("--url", "postgresql+psycopg://app:Tail@Leak3d@127.0.0.1:1/app", "status"),
            "unencoded '@'",
        ),
        (("--lock-timeout", "inf", "status"), "'inf' is not a number of seconds"),
        (("--lock-timeout", "nan", "status"), "'nan' is not a number of seconds"),
    ],
)
def test_a_url_that_is_no_url_exits_2_and_creates_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    message: str,
) -> None:
    project = new_project(tmp_path / "p", None)
    monkeypatch.chdir(project.root)
    before = set(project.root.iterdir())
    result, output = run_main(capsys, *args)
    assert result == 2 and message in output, output
    assert len(output.strip().splitlines()) == 1 and "Leak3d" not in output
    assert set(project.root.iterdir()) == before


@pytest.mark.parametrize(
    ("config", "args", "env"),
    [
        (None, ("--url", "staging", "status"), {}),
        (None, ("status",), {"SQLMIG_URL": "staging"}),
        ('url = "app:Sekr3tPw@db/app"', ("status",), {}),
    ],
)
def test_the_url_hint_reads_as_written_while_the_users_password_stays_hidden(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config: str | None,
    args: tuple[str, ...],
    env: dict[str, str],
) -> None:
    project = new_project(tmp_path / "p", None)
    if config is not None:
        project.config(f"[tool.sqlmig]\n{config}\n")
    monkeypatch.chdir(project.root)
    monkeypatch.delenv("SQLMIG_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result, output = run_main(capsys, *args)
    assert result == 2, output
    assert "write it as dialect+driver://user:password@host/database" in output, output
    assert "Sekr3tPw" not in output


def test_read_only_commands_create_no_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = new_project(tmp_path / "p", None)  # url = sqlite:///app.db, not there yet
    monkeypatch.chdir(project.root)
    for args in (("status",), ("status", "--json"), ("verify",), ("upgrade", "--dry-run")):
        result, output = run_main(capsys, *args)
        assert result == 0, output
    assert "6 pending" in run_main(capsys, "status")[1]
    assert not (project.root / "app.db").exists()


def test_a_masked_url_keeps_the_punctuation_after_it(tmp_path: Path) -> None:
    project = new_project(tmp_path / "p", None)
    url = f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:1/app"
    result = project.run("--url", url, "status")
    assert result.returncode == 5
    assert "cannot connect to postgresql+psycopg://app:***@127.0.0.1:1/app: " in result.stderr
    assert "%3A" not in result.stderr


def test_with_v_each_step_shows_once_not_also_as_its_log_record(
    sqlite_project: Project,
) -> None:
    result = sqlite_project.run("-v", "upgrade")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    steps = [line for line in lines if line.startswith("applied ")]
    assert [line.split(" in ")[0] for line in steps] == [
        f"applied {name.removesuffix('.py')}" for name in sorted(STEPS)
    ]

    result = sqlite_project.run("-v", "downgrade", "base")
    undone = [line for line in result.stdout.splitlines() if line.startswith("undid ")]
    assert len(undone) == len(STEPS)

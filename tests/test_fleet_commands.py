"""``sqlmig upgrade --all``, ``status --all``, ``downgrade --all``, in a temporary project.

The targets come from ``[tool.sqlmig] targets`` (a list with ``${VAR}``, or
``module:callable``) or ``--targets FILE`` / ``-``. One line per target, a
summary, the failures at the end on stderr, exit 1 when any failed; no
password is ever printed. Two ``upgrade --all`` processes racing over the same
targets apply each step once per target.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from tenants import COUNTED_STEPS, hits, tenant_databases
from workers import BOUND, SPAWN

from backends import fresh_database
from sqlmig import MigrationRunner
from sqlmig._cli import main

SECRET = "p@ss%w0rd"  # written %-encoded in URLs: p%40ss%25w0rd


@dataclass
class Result:
    code: int
    out: str
    err: str


class Project:
    """A folder with pyproject.toml and the counted steps; ``run`` is ``sqlmig`` in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "migrations").mkdir(parents=True)
        for name, source in COUNTED_STEPS.items():
            (root / "migrations" / name).write_text(textwrap.dedent(source))

    def config(self, text: str) -> None:
        (self.root / "pyproject.toml").write_text(textwrap.dedent(text))

    def run(self, *args: str, stdin: str = "", **env: str) -> Result:
        logger = logging.getLogger("sqlmig")
        before = (list(logger.handlers), logger.level, list(sys.path))
        stdout, stderr = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(self.root)
            for name in [k for k in os.environ if k.startswith("SQLMIG_")]:
                patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            patch.setattr(sys, "stdin", io.StringIO(stdin))
            with redirect_stdout(stdout), redirect_stderr(stderr):
                code = main(list(args))
        assert (list(logger.handlers), logger.level, list(sys.path)) == before
        return Result(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


@pytest.mark.parametrize("name", ["sqlite", "postgresql", "mysql"])
def test_upgrade_all_over_the_configured_targets(
    name: str, project: Project, tmp_path: Path
) -> None:
    with tenant_databases(name, tmp_path, 3) as found:
        urls = [b.url_string for b in found]
        project.config(f"[tool.sqlmig]\ntargets = {toml_list(urls)}\n")

        result = project.run("upgrade", "--all", "--jobs", "2")

        assert result.code == 0, result.err
        lines = result.out.splitlines()
        shown = [MigrationRunner(u, project.root / "migrations").url for u in urls]
        assert sorted(
            line.split(": upgraded: 3 migration(s) applied in ")[0] for line in lines[:3]
        ) == sorted(shown)
        assert lines[3] == "3 upgraded"
        assert [hits(u) for u in urls] == [["001", "002", "003"]] * 3

        again = project.run("status", "--all", "--json")
        assert again.code == 0
        report = json.loads(again.out)
        assert [(t["target"], t["current"], t["error"]) for t in report] == [
            (s, "003", None) for s in shown
        ]
        assert [m["state"] for m in report[0]["migrations"]] == ["applied"] * 3
        assert again.err.strip() == "3 up to date"

        down = project.run("downgrade", "001", "--all")
        assert down.code == 0
        assert down.out.splitlines()[-1] == "3 downgraded"
        assert [hits(u) for u in urls] == [["001"]] * 3


def test_a_failing_target_is_listed_at_the_end_and_exits_1(
    project: Project, tmp_path: Path
) -> None:
    with fresh_database("postgresql", tmp_path) as pg:
        good = pg.url.set(password=SECRET).render_as_string(hide_password=False)
        bad = pg.url.set(password=SECRET, database="sqlmig_no_such_db").render_as_string(
            hide_password=False
        )
        assert "p%40ss%25w0rd" in good
        (project.root / "targets.txt").write_text(
            f"# the tenants\n{good}#tenant_a\n\n{bad}\n{good}#Tenant-B\n"
        )
        project.config("[tool.sqlmig]\n")

        result = project.run("upgrade", "--all", "--targets", "targets.txt")

        assert result.code == 1
        assert result.out.splitlines()[-1] == "2 upgraded, 1 failed"
        assert sorted(result.out.splitlines()[:3])[0].startswith("Tenant-B: upgraded")
        failures = result.err.splitlines()
        assert len(failures) == 1
        assert failures[0].startswith("failed: postgresql+psycopg://postgres:***@")
        assert "sqlmig_no_such_db" in failures[0]
        for text in (result.out, result.err):
            assert SECRET not in text and "p%40ss" not in text and "w0rd" not in text
        assert (
            hits(pg.url_string, "tenant_a")
            == hits(pg.url_string, "Tenant-B")
            == [
                "001",
                "002",
                "003",
            ]
        )


def test_targets_from_standard_input_and_variables_in_the_config(
    project: Project, tmp_path: Path
) -> None:
    files = [tmp_path / f"{i}.db" for i in range(3)]
    project.config(
        f"""\
        [tool.sqlmig]
        targets = ["sqlite:///{files[0]}", "sqlite:///${{TENANT_DIR}}/1.db"]
        """
    )

    configured = project.run("upgrade", "--all", TENANT_DIR=str(tmp_path))
    piped = project.run("upgrade", "--all", "--targets", "-", stdin=f"sqlite:///{files[2]}\n")

    assert (configured.code, piped.code) == (0, 0)
    assert configured.out.splitlines()[-1] == "2 upgraded"
    assert piped.out.splitlines() == [
        f"sqlite:///{files[2]}: " + piped.out.splitlines()[0].split(": ", 1)[1],
        "1 upgraded",
    ]
    assert [hits(f"sqlite:///{f}") for f in files] == [["001", "002", "003"]] * 3


def test_an_environment_has_targets_of_its_own(project: Project, tmp_path: Path) -> None:
    project.config(
        f"""\
        [tool.sqlmig]
        targets = ["sqlite:///{tmp_path}/dev.db"]

        [tool.sqlmig.env.prod]
        targets = ["sqlite:///{tmp_path}/prod-1.db", "sqlite:///{tmp_path}/prod-2.db"]
        """
    )

    result = project.run("upgrade", "--all", "--env", "prod")

    assert result.out.splitlines()[-1] == "2 upgraded"
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["prod-1.db", "prod-2.db"]


def test_targets_from_a_callable(project: Project, tmp_path: Path) -> None:
    (project.root / "tenant_registry.py").write_text(
        textwrap.dedent(
            f"""\
            def urls():
                return ["sqlite:///{tmp_path}/a.db", "sqlite:///{tmp_path}/b.db"]

            def broken():
                raise RuntimeError("the tenant registry is down")

            def not_urls():
                return [42]
            """
        )
    )
    project.config('[tool.sqlmig]\ntargets = "tenant_registry:urls"\n')
    assert project.run("upgrade", "--all").out.splitlines()[-1] == "2 upgraded"

    project.config('[tool.sqlmig]\ntargets = "tenant_registry:broken"\n')
    broken = project.run("upgrade", "--all")
    assert broken.code == 2
    assert broken.err.strip() == (
        "sqlmig: error: targets 'tenant_registry:broken' raised RuntimeError: the tenant registry "
        "is down; fix it"
    )

    project.config('[tool.sqlmig]\ntargets = "tenant_registry:not_urls"\n')
    not_urls = project.run("upgrade", "--all")
    assert not_urls.code == 2
    assert "item #1 is a int, not a database URL" in not_urls.err


@pytest.mark.parametrize(
    ("config", "args", "says"),
    [
        ("targets = []", ("upgrade", "--all"), "targets names no database"),
        ('targets = ["staging"]', ("upgrade", "--all"), "is not a database URL"),
        ('targets = ["sqlite:///a.db", "sqlite:///a.db"]', ("upgrade", "--all"), "again"),
        ('targets = ["sqlite:///a.db#t"]', ("upgrade", "--all"), "needs PostgreSQL"),
        ('targets = "nowhere:urls"', ("upgrade", "--all"), "cannot import it"),
        ("", ("upgrade", "--all"), "--all needs targets"),
        (
            'targets = ["sqlite:///a.db"]',
            ("upgrade", "--targets", "x"),
            "--targets goes with --all",
        ),
        ('targets = ["sqlite:///a.db"]', ("status", "--jobs", "2"), "--jobs goes with --all"),
        (
            'targets = ["sqlite:///a.db"]',
            ("upgrade", "--processes"),
            "--processes goes with --all",
        ),
        ('targets = ["sqlite:///a.db"]', ("upgrade", "--all", "--url", "sqlite:///b.db"), "--url"),
        ('targets = ["sqlite:///a.db"]', ("upgrade", "--all", "--dry-run"), "--dry-run"),
        ('targets = ["sqlite:///a.db"]', ("upgrade", "--all", "--jobs", "0"), "--jobs: '0'"),
        ('targets = ["sqlite:///a.db"]', ("upgrade", "--all", "--jobs", "-2"), "--jobs: '-2'"),
        ('targets = ["sqlite:///a.db"]', ("upgrade", "--all", "--targets", "none.txt"), "none.txt"),
        ("targets = [3]", ("upgrade", "--all"), "targets[0] must be a URL string"),
        (
            'targets = ["postgresql://u:${SQLMIG_NOPE}@h/db#t"]',
            ("upgrade", "--all"),
            "tool.sqlmig.targets[0] uses ${SQLMIG_NOPE}, which is not set",
        ),
        (
            'targets = ["sqlite:///a.db"]',
            ("upgrade", "--all", "--env", "nope"),
            "unknown environment",
        ),
    ],
)
def test_bad_targets_are_refused_up_front_with_exit_2(
    project: Project, config: str, args: tuple[str, ...], says: str
) -> None:
    project.config(f"[tool.sqlmig]\n{config}\n")

    result = project.run(*args)

    assert result.code == 2
    assert says in result.err
    assert len(result.err.splitlines()) == 1
    assert not list(project.root.glob("*.db"))


def test_a_password_with_a_bare_at_sign_in_a_targets_file_is_refused_masked(
    project: Project,
) -> None:
    (project.root / "targets.txt").write_text(
        "sqlite:///a.db\npostgresql+psycopg://app:p@ss%w0rd@db/app#tenant\n"
    )
    project.config("[tool.sqlmig]\n")

    result = project.run("upgrade", "--all", "--targets", "targets.txt")

    assert result.code == 2
    assert result.err.startswith("sqlmig: error: targets.txt:2: postgresql+psycopg://***@db/app")
    assert "write '@' as %40" in result.err
    assert "ss%w0rd" not in result.err and "p@ss" not in result.err
    assert not (project.root / "a.db").exists()


def test_ctrl_c_reports_done_interrupted_and_not_started(project: Project, tmp_path: Path) -> None:
    started = tmp_path / "started"
    (project.root / "migrations" / "004_slow.py").write_text(
        f"import pathlib, time\n\ndef up(conn):\n"
        f"    pathlib.Path({str(started)!r}).touch()\n    time.sleep(1)\n"
    )
    (project.root / "migrations" / "005_then.py").write_text("def up(conn):\n    pass\n")
    files = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(4)]
    project.config(f"[tool.sqlmig]\ntargets = {toml_list(files)}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLMIG_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "sqlmig", "upgrade", "--all", "--jobs", "1"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + BOUND
        while not started.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=BOUND)
    finally:
        process.kill()

    assert process.returncode == 130, err
    assert out.splitlines()[-1] == "1 interrupted, 3 not started"
    assert "sqlmig: interrupted:" in err and "(not started)" in err
    assert MigrationRunner(files[0], project.root / "migrations").status().current == "004"
    assert not (tmp_path / "1.db").exists()


def race(root: str, targets: str, gate: object, codes: object) -> None:
    """In a spawned process: ``sqlmig upgrade --all --targets FILE`` once the gate opens."""
    os.chdir(root)
    gate.wait(BOUND)  # type: ignore[attr-defined]
    codes.put(main(["upgrade", "--all", "--jobs", "3", "--targets", targets]))  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["sqlite", "postgresql", "mysql"])
def test_two_upgrade_all_runs_racing_apply_each_step_once_per_target(
    name: str, project: Project, tmp_path: Path
) -> None:
    with tenant_databases(name, tmp_path, 4) as found:
        urls = [b.url_string for b in found]
        if name == "postgresql":  # two schemas in the first database too
            urls += [f"{urls[0]}#tenant_x", f"{urls[0]}#Tenant-Y"]
        (project.root / "targets.txt").write_text("\n".join(urls) + "\n")
        project.config("[tool.sqlmig]\n")
        gate = SPAWN.Barrier(2)
        codes = SPAWN.Queue()
        racers = [
            SPAWN.Process(target=race, args=(str(project.root), "targets.txt", gate, codes))
            for _ in range(2)
        ]
        for racer in racers:
            racer.start()
        try:
            outcome = sorted(codes.get(timeout=BOUND) for _ in racers)
        finally:
            for racer in racers:
                racer.join(BOUND)
                racer.kill()

        assert outcome == [0, 0]
        for line in urls:
            url, _, schema = line.partition("#")
            assert hits(url, schema or None) == ["001", "002", "003"], line


def test_thousands_of_targets_from_a_file(project: Project, tmp_path: Path) -> None:
    files = [f"sqlite:///{tmp_path / 'never' / f'{i}.db'}" for i in range(2000)]
    (project.root / "targets.txt").write_text("\n".join(files) + "\n")
    project.config("[tool.sqlmig]\n")

    result = project.run("status", "--all", "--jobs", "8", "--targets", "targets.txt")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 2001 and lines[-1] == "2000 pending"
    assert not (tmp_path / "never").exists()  # status creates no file


def upgrade_all_in(root: str, targets: str, *command: str) -> None:
    """In a spawned process: ``sqlmig COMMAND --all --targets FILE``; exits with its code."""
    os.chdir(root)
    sys.exit(main([*command, "--all", "--jobs", "2", "--targets", targets]))


def versions(line: str, folder: Path) -> tuple[list[str], list[str]]:
    """The versions a target's history records, and those its ``hits`` table holds."""
    url, _, schema = line.partition("#")
    tenant = {"schema": schema, "steps_in_schema": True} if schema else {}
    runner = MigrationRunner(url, folder, **tenant)  # type: ignore[arg-type]
    return [r.version for r in runner.status().applied], hits(url, schema or None)


@pytest.mark.parametrize("name", ["sqlite", "postgresql", "mysql"])
def test_a_run_killed_in_the_middle_leaves_each_target_whole(
    name: str, project: Project, tmp_path: Path
) -> None:
    slow = tmp_path / "slow"
    slow.touch()
    (project.root / "migrations" / "002_step2.py").write_text(
        textwrap.dedent(
            f"""\
            import os, pathlib, time

            def up(conn):
                conn.exec_driver_sql("INSERT INTO hits (version) VALUES ('002')")
                if pathlib.Path({str(slow)!r}).exists():
                    pathlib.Path({str(tmp_path)!r}, f"running-{{os.getpid()}}-{{id(conn)}}").touch()
                    time.sleep(60)

            def down(conn):
                conn.exec_driver_sql("DELETE FROM hits WHERE version = '002'")
            """
        )
    )
    with tenant_databases(name, tmp_path, 3) as found:
        lines = [b.url_string for b in found]
        if name == "postgresql":
            lines[1:] = [f'{lines[0]}#we"ird.na me', f"{lines[0]}#Tenant-B"]
        (project.root / "targets.txt").write_text("\n".join(lines) + "\n")
        project.config("[tool.sqlmig]\n")
        killed = SPAWN.Process(
            target=upgrade_all_in, args=(str(project.root), "targets.txt", "upgrade")
        )
        killed.start()
        try:
            deadline = time.monotonic() + BOUND
            while len(list(tmp_path.glob("running-*"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(list(tmp_path.glob("running-*"))) == 2  # two targets inside step 002
            killed.kill()
            killed.join(BOUND)
        finally:
            killed.kill()
        slow.unlink()
        time.sleep(2)  # PostgreSQL notices the killed sessions (and frees their locks)

        again = project.run("upgrade", "--all", "--targets", "targets.txt")

        folder = project.root / "migrations"
        if found[0].profile.transactional_ddl:  # nothing of the killed steps remains
            assert again.code == 0, again.err
            for line in lines:
                assert versions(line, folder) == (["001", "002", "003"],) * 2, line
        else:  # the failed-row protocol: a killed step's row stays failed, its tenant dirty
            assert again.code == 1
            assert again.out.splitlines()[-1] == "1 upgraded, 2 failed"
            assert again.err.count("failed: ") == 2 and "repair" in again.err


@pytest.mark.parametrize("name", ["sqlite", "postgresql", "mysql"])
def test_two_upgrade_all_runs_and_a_downgrade_all_racing_leave_histories_true(
    name: str, project: Project, tmp_path: Path
) -> None:
    with tenant_databases(name, tmp_path, 3) as found:
        lines = [b.url_string for b in found]
        if name == "postgresql":
            lines[1:] = [f"{lines[0]}#tenant_b", f"{lines[0]}#tenant_c"]
        (project.root / "targets.txt").write_text("\n".join(lines) + "\n")
        project.config("[tool.sqlmig]\n")
        project.run("upgrade", "002", "--all", "--targets", "targets.txt")
        commands = [("upgrade",), ("upgrade",), ("downgrade", "base")]
        racers = [
            SPAWN.Process(target=upgrade_all_in, args=(str(project.root), "targets.txt", *c))
            for c in commands
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(BOUND)
            racer.kill()

        assert [r.exitcode for r in racers] == [0, 0, 0]
        folder = project.root / "migrations"
        for line in lines:  # whichever order they took: each step's work and row together
            recorded, made = versions(line, folder)
            assert recorded == made, line
        final = project.run("upgrade", "--all", "--targets", "targets.txt")
        assert final.code == 0
        for line in lines:
            assert versions(line, folder) == (["001", "002", "003"],) * 2, line


def test_a_secret_with_at_percent_and_hash_from_a_variable_is_never_shown(
    project: Project, tmp_path: Path
) -> None:
    with fresh_database("postgresql", tmp_path) as pg:

        def entry(database: str) -> str:
            url = pg.url.set(password="PLACEHOLDER", database=database)
            return url.render_as_string(hide_password=False).replace("PLACEHOLDER", "${TENANT_PW}")

        tenants = [entry(str(pg.url.database)) + "#acme", entry("sqlmig_missing_db")]
        project.config(f"[tool.sqlmig]\ntargets = {toml_list(tenants)}\n")
        secret = "p@ss%w0rd#x"

        result = project.run("upgrade", "--all", "-v", TENANT_PW=secret)

        assert result.code == 1
        assert result.out.splitlines()[-1] == "1 upgraded, 1 failed"
        assert "sqlmig_missing_db" in result.err
        for text in (result.out, result.err):
            assert secret not in text and "w0rd" not in text
        assert hits(pg.url_string, "acme") == ["001", "002", "003"]


@pytest.mark.parametrize("on", [(), ("--processes",)], ids=["threads", "processes"])
def test_what_a_step_logs_names_its_target(
    project: Project, tmp_path: Path, on: tuple[str, ...]
) -> None:
    (project.root / "migrations" / "004_logs.py").write_text(
        "import logging\n\ndef up(conn):\n"
        "    logging.getLogger('sqlmig.migrations').info('backfilled %d rows', 7)\n"
    )
    files = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(3)]
    project.config(f"[tool.sqlmig]\ntargets = {toml_list(files)}\n")

    result = project.run("upgrade", "--all", "--jobs", "3", *on)

    assert result.code == 0
    assert result.out.splitlines()[-1] == "3 upgraded"
    assert sorted(line for line in result.out.splitlines() if "backfilled" in line) == [
        f"{f}: backfilled 7 rows" for f in files
    ]

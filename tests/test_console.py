"""What the command shows while it works: step lines, durations, a reader that went away."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from backends import Backend
from conftest import MakeMigrations
from sqlmig import Migration, MigrationFailed, MigrationRunner, StepCallback, StepPhase
from sqlmig._cli import main
from sqlmig._console import human_duration

EXAMPLES = Path(__file__).resolve().parent.parent / "migrations"
TIMEOUT = 60  # seconds; a bound, never an assertion

STEPS = {
    "001_create_items.py": """\
        '''Create the items table.'''
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY)"))

        def down(conn):
            conn.execute(text("DROP TABLE items"))
        """,
    "002_fill_items.py": """\
        '''Fill items, reporting progress the way steps do.'''
        import logging
        from sqlalchemy import text

        log = logging.getLogger("sqlmig.migrations")

        def up(conn):
            conn.execute(text("INSERT INTO items (id) VALUES (1)"))
            log.info("filled 1 of 2 batches")
            conn.execute(text("INSERT INTO items (id) VALUES (2)"))

        def down(conn):
            conn.execute(text("DELETE FROM items"))
        """,
}


def cli(backend: Backend, folder: Path, *args: str) -> int:
    return main(["--url", backend.url_string, "--dir", str(folder), *args])


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder: no pyproject.toml of the project is read."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- durations --------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 ms"),
        (0.012, "12 ms"),
        (0.9994, "999 ms"),
        (0.9996, "1.0 s"),
        (4.0, "4.0 s"),
        (59.94, "59.9 s"),
        (59.96, "1 min 0 s"),
        (125, "2 min 5 s"),
        (7380, "2 h 3 min"),
    ],
)
def test_durations_in_human_units(seconds: float, shown: str) -> None:
    assert human_duration(seconds) == shown


# -- step lines ---------------------------------------------------------------


def test_on_step_tells_each_step_starting_done_and_failing(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(STEPS)
    seen: list[tuple[str, StepPhase, float]] = []

    def on_step(migration: Migration, phase: StepPhase, seconds: float) -> None:
        seen.append((migration.version, phase, seconds))

    runner = MigrationRunner(backend.url, folder, on_step=on_step)
    runner.upgrade()
    runner.downgrade("base")
    assert [(v, p) for v, p, _ in seen] == [
        ("001", "start"),
        ("001", "done"),
        ("002", "start"),
        ("002", "done"),
        ("002", "start"),
        ("002", "done"),
        ("001", "start"),
        ("001", "done"),
    ]
    assert all(s == 0.0 for _, p, s in seen if p == "start")
    assert all(s >= 0 for _, _, s in seen)

    seen.clear()
    assert len(runner.dry_run()) == 2  # a dry run tries the steps but applies none
    assert seen == []

    make_migrations({"003_broken.py": "def up(conn):\n    raise RuntimeError('boom')\n"})
    with pytest.raises(MigrationFailed):
        runner.upgrade()
    assert [(v, p) for v, p, _ in seen] == [
        ("001", "start"),
        ("001", "done"),
        ("002", "start"),
        ("002", "done"),
        ("003", "start"),
        ("003", "failed"),
    ]


def test_on_a_terminal_the_running_step_shows_then_gets_its_time(
    sqlite_backend: Backend,
    make_migrations: MakeMigrations,
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = make_migrations(STEPS)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)

    assert cli(sqlite_backend, folder, "upgrade") == 0

    out = capsys.readouterr().out
    # shown at once, completed in place when it is done
    assert out.startswith("applying 001_create_items ...\rapplied 001_create_items in ")
    # a line the step logs ends the running line; the step's line follows it
    assert "applying 002_fill_items ...\nfilled 1 of 2 batches\napplied 002_fill_items in " in out
    shown = [line.split("\r")[-1].rstrip() for line in out.split("\n")]
    assert shown[0].startswith("applied 001_create_items in ") and shown[0].endswith(" ms")
    assert shown[-2].startswith("Applied 2 migration(s) to sqlite:///")


def test_off_a_terminal_one_line_per_step_when_it_is_done(
    sqlite_backend: Backend,
    make_migrations: MakeMigrations,
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = make_migrations(STEPS)

    assert cli(sqlite_backend, folder, "upgrade") == 0
    assert cli(sqlite_backend, folder, "rollback") == 0

    lines = capsys.readouterr().out.splitlines()
    assert "\r" not in "".join(lines) and "applying" not in "".join(lines)
    assert lines[0].startswith("applied 001_create_items in ")
    assert lines[1] == "filled 1 of 2 batches"
    assert lines[2].startswith("applied 002_fill_items in ")
    assert lines[4].startswith("undid 002_fill_items in ")


def test_a_failing_step_ends_its_terminal_line_before_the_error(
    sqlite_backend: Backend,
    make_migrations: MakeMigrations,
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = make_migrations({"001_broken.py": "def up(conn):\n    raise RuntimeError('boom')\n"})
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)

    assert cli(sqlite_backend, folder, "upgrade") == 1

    out, err = capsys.readouterr()
    assert out.startswith("applying 001_broken ...\rapplying 001_broken ... failed after ")
    assert out.endswith("\n")
    assert err.startswith("sqlmig: error: migration 001 (up) failed")


def test_the_examples_backfill_progress_shows_at_the_default_level(
    backend: Backend, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(backend, EXAMPLES, "upgrade") == 0

    lines = capsys.readouterr().out.splitlines()
    backfill = lines.index("backfilled users.verified for 1 rows")
    assert lines[backfill + 1].startswith("applied 004_add_users_verified in ")


# -- a reader that goes away --------------------------------------------------


def test_status_into_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for version in range(1, 2001):  # far more output than a pipe holds
        (folder / f"{version:04d}_step_number_{version}.py").write_text("def up(conn): pass\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLMIG_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sqlmig",
            "--url",
            "sqlite:///app.db",
            "--dir",
            str(folder),
            "status",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    head = [process.stdout.readline() for _ in range(2)]  # sqlmig status | head -2
    process.stdout.close()
    err = process.stderr.read()
    code = process.wait(timeout=TIMEOUT)

    assert head[0].startswith(b"Database:   sqlite:///app.db")
    assert (code, err) == (0, b"")


class _ClosingPipe(io.StringIO):
    """Standard output whose reader goes away after the first line."""

    def __init__(self, gone: OSError | None = None) -> None:
        super().__init__()
        self.gone = gone or BrokenPipeError(32, "Broken pipe")

    def write(self, text: str) -> int:
        if self.getvalue().count("\n") >= 1:
            raise self.gone
        return super().write(text)


@pytest.mark.parametrize(
    "gone",
    [BrokenPipeError(32, "Broken pipe"), OSError(5, "Input/output error")],  # a pipe, a terminal
    ids=["pipe", "terminal"],
)
def test_a_reader_gone_mid_upgrade_does_not_cut_the_upgrade_short(
    sqlite_backend: Backend,
    make_migrations: MakeMigrations,
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    gone: OSError,
) -> None:
    folder = make_migrations(STEPS)
    monkeypatch.setattr(sys, "stdout", _ClosingPipe(gone))

    assert cli(sqlite_backend, folder, "upgrade") == 0

    assert MigrationRunner(sqlite_backend.url, folder).status().total_applied == 2
    assert capsys.readouterr().err == ""


WARNING_STEPS = {
    "001_warns.py": """\
        '''Warns, as a step may, while it runs.'''
        import logging

        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY)"))
            logging.getLogger("sqlmig.migrations").warning("items left unindexed")
        """,
    "002_more.py": """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE more_items (id INTEGER PRIMARY KEY)"))
        """,
}


class _ClosedStream(io.StringIO):
    """A stream closed under the command (``ValueError: I/O operation on closed file``)."""

    def __init__(self) -> None:
        super().__init__()
        self.close()


@pytest.mark.parametrize(
    "stderr",
    [lambda: _ClosingPipe(), lambda: _ClosingPipe(OSError(5, "EIO")), _ClosedStream, lambda: None],
    ids=["pipe", "terminal", "closed", "none"],
)
def test_warnings_and_errors_with_stderr_gone_do_not_cut_the_command_short(
    backend: Backend,
    make_migrations: MakeMigrations,
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stderr: Callable[[], object],
) -> None:
    folder = make_migrations(WARNING_STEPS)
    gone = stderr()
    if isinstance(gone, _ClosingPipe):
        gone.write("an earlier line\n")  # the reader is gone from now on
    monkeypatch.setattr(sys, "stderr", gone)

    assert cli(backend, folder, "upgrade") == 0  # the step's warning went nowhere
    assert MigrationRunner(backend.url, folder).status().total_applied == 2
    assert cli(backend, folder, "--url", "staging", "status") == 2  # its error too
    assert "unindexed" not in capsys.readouterr().out  # never moved to standard output


@pytest.mark.parametrize("closed", ["2>&-", "1>&- 2>&-"])
def test_a_command_run_with_its_output_closed_exits_with_its_own_code(
    tmp_path: Path, make_migrations: MakeMigrations, closed: str
) -> None:
    folder = make_migrations(WARNING_STEPS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLMIG_")}
    command = f"{sys.executable} -m sqlmig --url sqlite:///app.db --dir {folder}"
    run = [f"{command} upgrade {closed}", f"{command} --url staging status {closed}"]
    codes = [
        subprocess.run(["sh", "-c", line], cwd=tmp_path, env=env, timeout=TIMEOUT).returncode
        for line in run
    ]
    assert codes == [0, 2]
    assert MigrationRunner(f"sqlite:///{tmp_path / 'app.db'}", folder).status().total_applied == 2


def test_text_the_output_encoding_lacks_is_shown_escaped_not_dropped(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_first.py": '"""Café au lait."""\ndef up(conn):\n    pass\n',
            "002_second.py": '"""Plain."""\ndef up(conn):\n    pass\n',
        }
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLMIG_")}
    env["PYTHONIOENCODING"] = "ascii"
    command = [sys.executable, "-m", "sqlmig", "--url", "sqlite:///app.db", "--dir", str(folder)]
    run = subprocess.run(
        [*command, "upgrade", "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0
    assert "001_first: Caf\\xe9 au lait." in run.stdout.decode()
    assert "002_second: Plain." in run.stdout.decode()


def test_an_on_step_given_to_a_call_is_told_after_the_runners_own(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(STEPS)
    seen: list[tuple[str, str, str]] = []
    runner = MigrationRunner(
        backend.url, folder, on_step=lambda m, phase, s: seen.append(("runner", m.version, phase))
    )

    def call(name: str) -> StepCallback:
        return lambda m, phase, s: seen.append((name, m.version, phase))

    runner.upgrade("001", on_step=call("upgrade"))
    runner.downgrade("base", on_step=call("downgrade"))
    runner.upgrade()
    runner.rollback_last(on_step=call("rollback"))
    assert seen == [
        ("runner", "001", "start"),
        ("upgrade", "001", "start"),
        ("runner", "001", "done"),
        ("upgrade", "001", "done"),
        ("runner", "001", "start"),
        ("downgrade", "001", "start"),
        ("runner", "001", "done"),
        ("downgrade", "001", "done"),
        ("runner", "001", "start"),
        ("runner", "001", "done"),
        ("runner", "002", "start"),
        ("runner", "002", "done"),
        ("runner", "002", "start"),
        ("rollback", "002", "start"),
        ("runner", "002", "done"),
        ("rollback", "002", "done"),
    ]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # trusts any password
@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_an_error_quoting_a_modules_text_never_shows_the_password(
    backend: Backend,
    make_migrations: MakeMigrations,
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    verbose: list[str],
) -> None:
    password = "Sekr3tPw"
    folder = make_migrations({"001_leaky.py": f"raise RuntimeError('auth {password} refused')\n"})
    url = backend.url.set(password=password).render_as_string(hide_password=False)

    assert main([*verbose, "--url", url, "--dir", str(folder), "upgrade"]) == 2

    out, err = capsys.readouterr()
    assert password not in out + err
    assert err.splitlines()[-1].startswith("sqlmig: error: ")
    assert "001_leaky.py:1: importing the migration raised RuntimeError: (message withheld" in err


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # trusts any password
def test_a_password_that_is_a_common_word_withholds_no_message_of_sqlmig_s_own(
    backend: Backend,
    make_migrations: MakeMigrations,
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    steps = {
        "001_ok.py": "import logging\n\ndef up(conn):\n"
        "    logging.getLogger('sqlmig.migrations').info('copied 3 rows')\n",
        "002_fails.py": "def up(conn):\n    raise RuntimeError('boom')\n",
    }
    url = backend.url.set(username="postgres", password="postgres")  # as many a dev set-up has
    shown = url.render_as_string(hide_password=False)

    assert main(["-v", "--url", shown, "--dir", str(make_migrations(steps)), "upgrade"]) == 1

    out, err = capsys.readouterr()
    assert "copied 3 rows" in out
    assert err.splitlines()[-1].startswith("sqlmig: error: migration 002 (up) failed at ")
    assert "withheld" not in err.splitlines()[-1]

    nowhere = url.set(database="sqlmig_no_such_database").render_as_string(hide_password=False)
    assert main(["--url", nowhere, "--dir", str(make_migrations(steps)), "status"]) == 5
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("sqlmig: error: cannot connect to postgresql+psycopg://postgres:***@")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # trusts any password
def test_a_steps_log_record_holding_the_password_is_withheld(
    backend: Backend,
    make_migrations: MakeMigrations,
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    password = "Sekr3tPw"
    step = f"""\
        import logging

        log = logging.getLogger("sqlmig.migrations")

        def up(conn):
            log.info("copying with host=replica password={password} user=app")
            log.warning("retrying: auth {password} refused")
            log.info("copied 3 rows")
        """
    url = backend.url.set(password=password).render_as_string(hide_password=False)

    folder = make_migrations({"001_copy.py": step})
    assert main(["--url", url, "--dir", str(folder), "upgrade"]) == 0

    out, err = capsys.readouterr()
    assert password not in out + err
    assert "copied 3 rows" in out and "password=***" in out

"""The pytest plugin, run on small projects with ``pytester``, on every backend.

SQLite runs use the plugin's default (a temporary SQLite file); PostgreSQL and
MariaDB runs name a fresh database with ``--sqlmig-url``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from backends import Backend

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

INDEX = """\
    '''Index users by email.'''
    import sqlalchemy as sa

    users = sa.Table("users", sa.MetaData(), sa.Column("email", sa.String(100)))
    index = sa.Index("ix_users_email", users.c.email)

    def up(conn):
        index.create(conn)

    def down(conn):
        {down}
    """

USES_USERS = """\
    from sqlalchemy import text

    def test_users_table_is_there(sqlmig_connection):
        assert sqlmig_connection.execute(text("SELECT count(*) FROM users")).scalar() == 0
    """


def project(
    pytester: pytest.Pytester,
    *,
    down: str = "index.drop(conn)",
    ini: str = "",
    tests: str = USES_USERS,
    folder: str = "migrations",
    extra: dict[str, str] | None = None,
) -> Path:
    """A project with two migrations (``down`` is the index step's down body)."""
    where = pytester.path / folder
    where.mkdir(parents=True, exist_ok=True)
    files = {"001_users.py": USERS, "002_index_email.py": INDEX.format(down=down), **(extra or {})}
    for name, source in files.items():
        (where / name).write_text(textwrap.dedent(source))
    pytester.makepyprojecttoml(textwrap.dedent(ini))
    pytester.makepyfile(test_app=textwrap.dedent(tests))
    return where


def run(pytester: pytest.Pytester, backend: Backend, *args: str) -> pytest.RunResult:
    """Run the project's tests on the backend: SQLite is the plugin's own default."""
    if backend.name != "sqlite":
        args = ("--sqlmig-url", backend.url_string, *args)
    return pytester.runpytest("-v", "-p", "no:cacheprovider", *args)


STAIRWAY_AND_HISTORY = """\
    [tool.pytest.ini_options]
    sqlmig_stairway = true
    sqlmig_history = true
    """


def test_a_broken_down_fails_the_stairway_test_with_a_readable_message(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    project(pytester, down="pass", ini=STAIRWAY_AND_HISTORY)

    result = run(pytester, backend)

    result.stdout.fnmatch_lines(
        [
            "*sqlmig_stairway FAILED*",
            "E   AssertionError: migration 002_index_email: down() does not restore the schema: "
            "index ix_users_email on users left behind",
            "FAILED ::sqlmig_stairway - AssertionError: migration 002_index_email: down()*",
        ]
    )
    assert "testing.py" not in result.stdout.str()  # the message, not the helper's insides
    if not backend.profile.transactional_ddl:
        # DDL commits itself there: the failed walk leaves the index behind, so
        # the session's upgrade fails, and the history test finds its failed row.
        result.assert_outcomes(failed=2, errors=1)
        result.stdout.fnmatch_lines(["*migration 002_index_email failed part-way*"])
    else:  # the walk ran in a rolled-back transaction: the session database is intact
        result.assert_outcomes(failed=1, passed=2)


def test_a_correct_project_passes_the_stairway_and_history_tests(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    project(pytester, ini=STAIRWAY_AND_HISTORY)

    result = run(pytester, backend)

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [  # the walk runs first, on the still empty database
            "*sqlmig_stairway PASSED*",
            "*test_app.py::test_users_table_is_there PASSED*",
            "*sqlmig_history PASSED*",
        ]
    )


def test_the_history_test_names_duplicate_versions(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        ini=STAIRWAY_AND_HISTORY,
        tests="def test_nothing():\n    pass\n",
        extra={"2_index_again.py": "def up(conn):\n    pass\n"},
    )

    result = pytester.runpytest("-p", "no:cacheprovider")

    result.stdout.fnmatch_lines(
        [
            "E   AssertionError: migration history of *: "
            "version 2 is used by 2 files: 002_index_email.py, 2_index_again.py"
        ]
    )


def test_the_checks_are_deselected_like_any_test(pytester: pytest.Pytester) -> None:
    project(pytester, ini=STAIRWAY_AND_HISTORY, down="pass")

    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "not sqlmig_stairway")

    result.assert_outcomes(passed=2, deselected=1)


def test_without_the_flags_the_plugin_adds_no_test(pytester: pytest.Pytester) -> None:
    project(pytester, down="pass", tests="def test_nothing():\n    pass\n")

    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)


ISOLATION = """\
    from sqlalchemy import inspect, text

    DDL = {ddl}

    def work(conn):
        conn.execute(text("INSERT INTO users (id, email) VALUES (1, 'same@example.org')"))
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 1
        if DDL:
            conn.execute(text("CREATE TABLE scratch (id INTEGER)"))
            conn.execute(text("INSERT INTO scratch (id) VALUES (1)"))

    def test_first(sqlmig_connection):
        work(sqlmig_connection)

    def test_second(sqlmig_connection):
        work(sqlmig_connection)

    def test_nothing_is_left(sqlmig_migrated):
        with sqlmig_migrated.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 0
            assert "scratch" not in inspect(conn).get_table_names()
    """


def test_the_rollback_fixture_isolates_two_tests_that_insert_the_same_row(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    project(pytester, tests=ISOLATION.format(ddl=False))

    result = run(pytester, backend)

    result.assert_outcomes(passed=3)


def test_the_rollback_fixture_rolls_back_ddl_too(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    if not backend.profile.transactional_ddl:
        pytest.skip(
            "MariaDB/MySQL commit DDL implicitly: sqlmig_connection rolls back only "
            "data there (documented)"
        )
    project(pytester, tests=ISOLATION.format(ddl=True))

    result = run(pytester, backend)

    result.assert_outcomes(passed=3)


def test_committing_the_rollback_connection_fails_the_test(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    project(
        pytester,
        tests="""\
        def test_commits(sqlmig_connection):
            sqlmig_connection.commit()
        """,
    )

    result = run(pytester, backend)

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the test ended sqlmig_connection's transaction*"])


def test_the_database_is_a_temporary_sqlite_file_never_the_configured_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(
        pytester,
        folder="db/steps",
        ini="""\
        [tool.sqlmig]
        url = "postgresql+psycopg://app@db.invalid/production"
        migrations = "db/steps"
        table = "schema_history"
        """,
        tests="""\
        from pathlib import Path
        from sqlalchemy import inspect

        def test_where(sqlmig_migrated, sqlmig_runner, tmp_path_factory):
            assert sqlmig_migrated.url.get_backend_name() == "sqlite"
            database = Path(sqlmig_migrated.url.database)
            assert database.is_relative_to(tmp_path_factory.getbasetemp())
            assert Path(sqlmig_runner.migrations_source).parts[-2:] == ("db", "steps")
            assert {"users", "schema_history"} <= set(inspect(sqlmig_migrated).get_table_names())
        """,
    )
    monkeypatch.delenv("SQLMIG_TEST_URL", raising=False)

    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)


WHERE = """\
    def test_where(sqlmig_migrated):
        print("DATABASE", sqlmig_migrated.url.database)
    """


def test_the_url_option_wins_over_the_environment_variable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project(pytester, tests=WHERE)
    from_env, from_option = tmp_path / "env.db", tmp_path / "option.db"
    monkeypatch.setenv("SQLMIG_TEST_URL", f"sqlite:///{from_env}")

    pytester.runpytest("-p", "no:cacheprovider", "-s").assert_outcomes(passed=1)
    assert from_env.exists()
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-s", "--sqlmig-url", f"sqlite:///{from_option}"
    )

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*DATABASE {from_option}"])
    engine = create_engine(f"sqlite:///{from_option}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM migrations")).scalar() == 2
    finally:
        engine.dispose()


def test_the_ini_option_names_the_migrations_relative_to_the_ini_file(
    pytester: pytest.Pytester,
) -> None:
    project(
        pytester,
        folder="elsewhere",
        ini="""\
        [tool.sqlmig]
        migrations = "not_here"

        [tool.pytest.ini_options]
        sqlmig_migrations = "elsewhere"
        """,
        tests="""\
        def test_where(sqlmig_runner):
            assert sqlmig_runner.migrations_source.name == "elsewhere"
            assert [m.version for m in sqlmig_runner.upgrade()] == ["001", "002"]
        """,
    )

    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_stairway_test_says_when_the_database_is_not_empty(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    project(pytester, ini=STAIRWAY_AND_HISTORY)
    used = f"sqlite:///{tmp_path / 'used.db'}"
    pytester.runpytest("-p", "no:cacheprovider", "--sqlmig-url", used).assert_outcomes(passed=3)

    result = pytester.runpytest("-p", "no:cacheprovider", "--sqlmig-url", used)

    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(["*check_stairway needs a database with no applied step*"])


def test_the_fixtures_can_be_overridden(pytester: pytest.Pytester, tmp_path: Path) -> None:
    mine = tmp_path / "mine.db"
    project(
        pytester,
        tests=f"""\
        import pytest
        from sqlalchemy import create_engine

        @pytest.fixture(scope="session")
        def sqlmig_engine():
            engine = create_engine("sqlite:///{mine}")
            yield engine
            engine.dispose()

        def test_uses_mine(sqlmig_connection):
            assert sqlmig_connection.engine.url.database == "{mine}"
        """,
    )

    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    engine = create_engine(f"sqlite:///{mine}")
    try:
        assert "users" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_loading_the_plugin_imports_nothing_beyond_sqlmig_itself() -> None:
    code = (
        "import sys, pytest, sqlmig; before = set(sys.modules); import sqlmig._pytest_plugin; "
        "print(sorted(m for m in set(sys.modules) - before if not m.startswith('_')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

    assert out.strip() == "['sqlmig._pytest_plugin']"


def test_the_ini_option_may_name_an_importable_package(pytester: pytest.Pytester) -> None:
    where = project(
        pytester,
        folder="myapp/migrations",
        ini="""\
        [tool.pytest.ini_options]
        sqlmig_migrations = "myapp.migrations"
        pythonpath = ["."]
        """,
        tests="""\
        def test_where(sqlmig_runner, sqlmig_migrated):
            assert sqlmig_runner.migrations_source == "myapp.migrations"
            assert sqlmig_runner.status().current == "002"
        """,
    )
    (where / "__init__.py").write_text("")
    (where.parent / "__init__.py").write_text("")

    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


MODELS = """\
    import sqlalchemy as sa

    metadata = sa.MetaData()
    users = sa.Table(
        "users", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(100), nullable=False),
        sa.Index("ix_users_email", "email"),
    )
    """

METADATA_INI = """\
    [tool.pytest.ini_options]
    pythonpath = ["."]
    sqlmig_stairway = true
    sqlmig_metadata = "appmodels:metadata"
    sqlmig_history = true
    """


def test_the_models_test_passes_when_the_migrations_build_the_models(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    project(pytester, ini=METADATA_INI)
    pytester.makepyfile(appmodels=textwrap.dedent(MODELS))

    result = run(pytester, backend)

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*sqlmig_stairway PASSED*",
            "*test_app.py::test_users_table_is_there PASSED*",
            "*sqlmig_models PASSED*",
            "*sqlmig_history PASSED*",
        ]
    )


def test_the_models_test_lists_every_difference(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    project(pytester, ini=METADATA_INI)
    models = textwrap.dedent(MODELS).replace("sa.String(100)", "sa.String(200)")
    models += 'audit = sa.Table("audit", metadata, sa.Column("id", sa.Integer, primary_key=True))\n'
    (pytester.path / "appmodels.py").write_text(models)

    result = run(pytester, backend)

    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*sqlmig_models FAILED*",
            "E   AssertionError: the migrations do not build the models on * (2 difference(s)):",
            "E     table audit: missing in the database",
            "E     column users.email: type VARCHAR(100) in the database, String(200) in the*",
        ]
    )


def test_the_models_module_is_found_beside_the_project_file_without_pythonpath(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    ini = METADATA_INI.replace('pythonpath = ["."]\n', "")
    project(pytester, ini=ini)
    (pytester.path / "test_app.py").unlink()  # the tests live in tests/, no package
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_app.py").write_text(textwrap.dedent(USES_USERS))
    (pytester.path / "appmodels.py").write_text(textwrap.dedent(MODELS))

    result = run(pytester, backend, "tests", "--import-mode=importlib")

    result.stdout.fnmatch_lines(["*sqlmig_models PASSED*"])

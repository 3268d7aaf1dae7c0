"""``--sqlmig-reset``: a second run on the same test database, on every backend."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sqlalchemy import inspect

from backends import Backend
from sqlmig._pytest_reset import empty

USERS = """\
    '''Users, their posts (a foreign key) and a view.'''
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(100))"))
        conn.execute(text(
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, "
            "user_id INTEGER NOT NULL REFERENCES users (id))"
        ))
        conn.execute(text("CREATE VIEW emails AS SELECT email FROM users"))

    def down(conn):
        conn.execute(text("DROP VIEW emails"))
        conn.execute(text("DROP TABLE posts"))
        conn.execute(text("DROP TABLE users"))
    """

SCHEMA = [
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(100))",
    "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id))",
    "CREATE VIEW emails AS SELECT email FROM users",
]

TESTS = """\
    from sqlalchemy import text

    def test_rows_of_a_run_stay(sqlmig_migrated):
        with sqlmig_migrated.begin() as conn:  # committed: a run without reset would see it
            conn.execute(text("INSERT INTO users (id, email) VALUES (1, 'a@example.org')"))
            conn.execute(text("INSERT INTO posts (id, user_id) VALUES (1, 1)"))
    """

STAIRWAY = """\
    [tool.pytest.ini_options]
    sqlmig_stairway = true
    {reset}
    """


def project(pytester: pytest.Pytester, reset_in_ini: bool = False) -> None:
    (pytester.path / "migrations").mkdir()
    (pytester.path / "migrations" / "001_users.py").write_text(textwrap.dedent(USERS))
    reset = "sqlmig_reset = true" if reset_in_ini else ""
    pytester.makepyprojecttoml(textwrap.dedent(STAIRWAY.format(reset=reset)))
    pytester.makepyfile(test_app=textwrap.dedent(TESTS))


def run(pytester: pytest.Pytester, backend: Backend, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--sqlmig-url", backend.url_string, *args)


@pytest.mark.parametrize("how", ["option", "ini"])
def test_reset_lets_a_second_run_use_the_same_database(
    pytester: pytest.Pytester, backend: Backend, how: str
) -> None:
    project(pytester, reset_in_ini=how == "ini")
    flag = ["--sqlmig-reset"] if how == "option" else []

    run(pytester, backend, *flag).assert_outcomes(passed=2)
    second = run(pytester, backend, *flag)

    second.assert_outcomes(passed=2)  # the stairway found the database empty again


def test_without_reset_the_second_run_finds_the_database_used(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    project(pytester)
    run(pytester, backend).assert_outcomes(passed=2)

    second = run(pytester, backend)

    second.assert_outcomes(failed=2)  # the stairway, and the row already there
    second.stdout.fnmatch_lines(["*check_stairway needs a database with no applied step*"])


def test_reset_refuses_a_database_the_project_chose_itself(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    project(pytester)
    pytester.makeconftest(
        f"""\
        import pytest
        from sqlalchemy import create_engine

        @pytest.fixture(scope="session")
        def sqlmig_engine():
            engine = create_engine("sqlite:///{tmp_path / "mine.db"}")
            yield engine
            engine.dispose()
        """
    )

    result = pytester.runpytest("-p", "no:cacheprovider", "--sqlmig-reset")

    result.stdout.fnmatch_lines(
        ["*UsageError: --sqlmig-reset empties only the database of --sqlmig-url or*"]
    )
    result.assert_outcomes(errors=2)  # the stairway, the test: neither touched it


def test_empty_drops_tables_views_and_sequences(backend: Backend) -> None:
    engine = backend.engine()
    try:
        with engine.begin() as conn:
            for statement in SCHEMA:
                conn.exec_driver_sql(statement)
            if backend.name == "postgresql":
                conn.exec_driver_sql("CREATE SEQUENCE counter")
                conn.exec_driver_sql("CREATE TYPE mood AS ENUM ('ok', 'not ok')")

        dropped = empty(engine)

        assert {"table users", "table posts", "view emails"} <= set(dropped)
        found = inspect(engine)
        assert found.get_table_names() == [] and found.get_view_names() == []
        if backend.name == "postgresql":
            assert found.get_sequence_names() == []
            assert {"sequence counter", "type mood"} <= set(dropped)
    finally:
        engine.dispose()

"""sqlmig.testing: the stairway and history checks, on every backend."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)

import backends
from backends import Backend
from conftest import MakeMigrations, tables
from sqlmig import Migration, MigrationRunner, UsageError, history_table
from sqlmig._schema_snapshot import Snapshot, TableShape, differences, snapshot
from sqlmig.testing import check_history, check_stairway

USERS = """\
    '''Users, with a unique email.'''
    import sqlalchemy as sa

    users = sa.Table(
        "users", sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(100), nullable=False),
        sa.Column("name", sa.String(50)),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )

    def up(conn):
        users.create(conn)

    def down(conn):
        users.drop(conn)
    """

ORDERS = """\
    '''Orders, each belonging to a user.'''
    import sqlalchemy as sa

    meta = sa.MetaData()
    sa.Table("users", meta, sa.Column("id", sa.Integer, primary_key=True))
    orders = sa.Table(
        "orders", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_orders_user"),
    )

    def up(conn):
        orders.create(conn)

    def down(conn):
        orders.drop(conn)
    """

INDEX = """\
    '''Index users by name.'''
    import sqlalchemy as sa

    users = sa.Table("users", sa.MetaData(), sa.Column("name", sa.String(50)))
    index = sa.Index("ix_users_name", users.c.name)

    def up(conn):
        index.create(conn)

    def down(conn):
        {down}
    """

AGE = """\
    '''Add users.age.'''
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("ALTER TABLE users ADD COLUMN age INTEGER"))

    def down(conn):
        {down}
    """

DROP_INDEX = "index.drop(conn)"
DROP_AGE = 'conn.execute(text("ALTER TABLE users DROP COLUMN age"))'


def files(index_down: str = DROP_INDEX, age_down: str = DROP_AGE) -> dict[str, str]:
    return {
        "001_users.py": USERS,
        "002_orders.py": ORDERS,
        "003_index_names.py": INDEX.format(down=index_down),
        "004_add_age.py": AGE.format(down=age_down),
    }


# -- check_stairway --------------------------------------------------------------


def test_stairway_passes_when_every_down_undoes_its_up(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(files()))

    checked = check_stairway(runner)

    assert [m.version for m in checked] == ["001", "002", "003", "004"]
    status = runner.status()  # left with every step applied
    assert status.current == "004" and status.total_pending == 0
    assert {"users", "orders"} <= tables(backend)


def test_stairway_names_the_first_step_whose_down_forgets_an_index(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(
        backend.url, make_migrations(files(index_down="pass", age_down="pass"))
    )

    with pytest.raises(AssertionError) as caught:
        check_stairway(runner)

    assert str(caught.value) == (
        "migration 003_index_names: down() does not restore the schema: "
        "index ix_users_name on users left behind"
    )


def test_stairway_names_a_column_left_behind(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(files(age_down="pass")))

    with pytest.raises(
        AssertionError,
        match=r"^migration 004_add_age: down\(\) does not "
        r"restore the schema: column users\.age left behind$",
    ):
        check_stairway(runner)


def test_stairway_names_what_a_down_drops_too_much(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    greedy = DROP_AGE + "\n        " + 'conn.execute(text("DROP TABLE orders"))'
    runner = MigrationRunner(backend.url, make_migrations(files(age_down=greedy)))

    with pytest.raises(AssertionError) as caught:
        check_stairway(runner)

    assert str(caught.value) == (
        "migration 004_add_age: down() does not restore the schema: "
        "table orders missing (it existed before the step)"
    )


def test_stairway_fails_on_a_step_without_down(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    source = files()
    source["002_orders.py"] = source["002_orders.py"].split("    def down")[0]
    runner = MigrationRunner(backend.url, make_migrations(source))

    with pytest.raises(AssertionError, match=r"002_orders has no down\(\)"):
        check_stairway(runner)


def test_stairway_fails_when_up_cannot_run_again_after_down(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    # down() leaves the seeded row: the schema is restored, but up() cannot run again.
    seed = """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("INSERT INTO users (id, email) VALUES (1, 'a@example.org')"))

        def down(conn):
            pass
        """
    runner = MigrationRunner(
        backend.url, make_migrations({"001_users.py": USERS, "002_seed.py": seed})
    )

    with pytest.raises(
        AssertionError,
        match=r"^migration 002_seed: up\(\) fails after its "
        r"down\(\) ran: migration 002 \(up\) failed",
    ):
        check_stairway(runner)


def test_stairway_refuses_a_database_with_applied_steps(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(files()))
    runner.upgrade("001")

    with pytest.raises(UsageError, match=r"needs a database with no applied step.* has 001"):
        check_stairway(runner)


def test_stairway_inside_a_callers_transaction_leaves_nothing(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(files())
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            trans = conn.begin()
            runner = MigrationRunner(conn, folder)
            if not backend.profile.caller_transaction_ok:  # DDL would commit it
                with pytest.raises(UsageError, match="commits DDL implicitly"):
                    check_stairway(runner)
            else:
                assert len(check_stairway(runner)) == 4
            trans.rollback()
    finally:
        engine.dispose()
    assert tables(backend) == set()


def test_stairway_checks_steps_built_in_code(backend: Backend) -> None:
    def up(conn: object) -> None:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))  # type: ignore[attr-defined]

    def down(conn: object) -> None:
        pass

    runner = MigrationRunner(backend.url, [Migration("1", "make_t", up=up, down=down)])

    with pytest.raises(AssertionError, match=r"^migration 1_make_t: .*table t left behind$"):
        check_stairway(runner)


# -- the schema snapshot ------------------------------------------------------------


def test_snapshot_reflects_keys_indexes_uniques_and_ignores_the_given_tables(
    backend: Backend,
) -> None:
    meta = MetaData()
    Table(
        "parent",
        meta,
        Column("id", Integer, primary_key=True),
        Column("code", String(20), nullable=False),
        UniqueConstraint("code", name="uq_code"),
    )
    Table(
        "child",
        meta,
        Column("a", Integer, primary_key=True),
        Column("b", Integer, primary_key=True),
        Column("parent_id", Integer),
        ForeignKeyConstraint(["parent_id"], ["parent.id"], name="fk_child_parent"),
        Index("ix_child_b", "b"),
    )
    history_table(meta)
    engine = backend.engine()
    try:
        with engine.begin() as conn:
            meta.create_all(conn)
        with engine.connect() as conn:
            shot = snapshot(conn, ignore={"migrations"})
    finally:
        engine.dispose()

    assert set(shot.tables) == {"parent", "child"}
    parent, child = shot.tables["parent"], shot.tables["child"]
    assert parent.primary_key == ("id",)
    assert parent.columns["code"][1] is False and "20" in parent.columns["code"][0]
    assert child.columns["parent_id"][1] is True
    assert child.primary_key == ("a", "b")
    assert list(parent.unique_constraints.values()) == ["(code)"]
    assert child.foreign_keys["fk_child_parent"] == "(parent_id) -> parent(id)"
    assert child.indexes["ix_child_b"] == "(b)"


def _shape(**kw: object) -> TableShape:
    base: dict[str, object] = {"columns": {"id": ("INTEGER", False)}, "primary_key": ("id",)}
    base.update(kw)
    return TableShape(**base)  # type: ignore[arg-type]


def test_differences_say_what_changed_for_each_kind_of_object() -> None:
    before = Snapshot(
        {
            "t": _shape(
                columns={"id": ("INTEGER", False), "c": ("VARCHAR(20)", True)},
                foreign_keys={"fk_t_u": "(c) -> u(id)"},
                unique_constraints={"uq_t_c": "(c)"},
            )
        },
        views=frozenset({"v_old"}),
    )
    after = Snapshot(
        {
            "t": _shape(
                columns={"id": ("INTEGER", True), "c": ("VARCHAR(10)", True)},
                primary_key=(),
                indexes={"ix_t_c": "UNIQUE (c)"},
            )
        },
        views=frozenset({"v_new"}),
    )

    assert differences(before, after) == [
        "column t.c is VARCHAR(10), was VARCHAR(20) before the step",
        "column t.id is nullable, was NOT NULL before the step",
        "primary key of t is (), was (id) before the step",
        "foreign key fk_t_u on t missing (it existed before the step)",
        "index ix_t_c on t left behind",
        "unique constraint uq_t_c on t missing (it existed before the step)",
        "view v_new left behind",
        "view v_old missing (it existed before the step)",
    ]
    assert differences(before, before) == []


# -- check_history ------------------------------------------------------------------


def test_history_check_passes_on_a_clean_history_with_pending_steps(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(files()))
    check_history(runner)  # nothing applied, no table yet
    runner.upgrade("002")

    check_history(runner)


def test_history_check_names_every_duplicate_version(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    body = "def up(conn):\n    pass\n"
    folder = make_migrations(
        {
            "001_a.py": body,
            "1_b.py": body,
            "002_c.py": body,
            "migration_02_d.py": body,
            "003_e.py": body,
        }
    )

    with pytest.raises(AssertionError) as caught:
        check_history(MigrationRunner(sqlite_backend.url, folder))

    message = str(caught.value)
    assert "version 1 is used by 2 files: 001_a.py, 1_b.py" in message
    assert "version 2 is used by 2 files: 002_c.py, migration_02_d.py" in message
    assert "version 3" not in message


def test_history_check_names_duplicates_among_steps_built_in_code(
    sqlite_backend: Backend,
) -> None:
    def up(conn: object) -> None:
        pass

    steps = [Migration("1", "a", up=up), Migration("01", "b", up=up)]

    with pytest.raises(AssertionError, match="version 1 is used by 2 files: 01, 1"):
        check_history(MigrationRunner(sqlite_backend.url, steps))


def test_history_check_names_every_edited_and_every_lost_step(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(files())
    runner = MigrationRunner(backend.url, folder)
    runner.upgrade()
    make_migrations(
        {
            "001_users.py": USERS + "# edited\n",
            "002_orders.py": ORDERS + "# too\n",
            "004_add_age.py": None,
        }
    )

    with pytest.raises(AssertionError) as caught:
        check_history(runner)

    assert str(caught.value) == (
        f"migration history of {runner.url}: "
        "applied migration 001_users was edited after it ran (checksum differs); "
        "applied migration 002_orders was edited after it ran (checksum differs); "
        "applied migration 004_add_age has no file any more"
    )


def test_history_check_names_failed_rows_and_versions_recorded_twice(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(files()))
    runner.upgrade("001")
    table = history_table(MetaData())
    engine = backend.engine()
    try:
        with engine.begin() as conn:
            now = datetime.now(UTC)
            conn.execute(
                table.insert(),
                [
                    {"version": "1", "name": "users", "applied_at": now, "success": True},
                    {"version": "002", "name": "orders", "applied_at": now, "success": False},
                ],
            )
    finally:
        engine.dispose()

    with pytest.raises(AssertionError) as caught:
        check_history(runner)

    message = str(caught.value)
    assert "the history records version 1 2 times: 001, 1" in message
    assert "migration 002_orders failed part-way (its row has success = false)" in message


# -- the test suite's own databases ------------------------------------------------------


def test_no_container_without_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("testcontainers", reason="the testcontainers extra is not installed")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")

    assert backends.container_url.__wrapped__("postgresql") is None
    assert backends.container_url.__wrapped__("mysql") is None


def test_no_container_without_testcontainers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "testcontainers", None)  # import fails

    assert backends.container_url.__wrapped__("postgresql") is None


def test_backends_skip_with_one_reason_without_url_or_docker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("""
        from backends import fresh_database

        def test_needs_postgres(tmp_path):
            with fresh_database("postgresql", tmp_path):
                pass
        """)
    for name in ("SQLMIG_TEST_POSTGRES_URL", "SQLMIG_REQUIRE_BACKENDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("PYTHONPATH", str(Path(backends.__file__).parent))

    result = pytester.runpytest_subprocess("-rs")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*postgresql: SQLMIG_TEST_POSTGRES_URL is not set and no container could be started*"]
    )


def test_the_worked_examples_pass_the_stairway_and_history_checks(backend: Backend) -> None:
    runner = MigrationRunner(backend.url, Path(__file__).parent.parent / "migrations")

    assert check_stairway(runner) == runner.migrations()
    assert runner.status().total_pending == 0
    check_history(runner)


# -- begin and undoes_ddl: a transaction that rolls back what the test did -----


def test_begin_puts_ddl_inside_the_transaction_where_the_database_can_undo_it(
    backend: Backend,
) -> None:
    from sqlmig.testing import begin, undoes_ddl

    engine = backend.engine()
    try:
        with engine.connect() as conn:
            transaction = begin(conn)
            conn.execute(text("CREATE TABLE scratch (id INTEGER)"))
            transaction.rollback()
            assert undoes_ddl(conn) is backend.profile.transactional_ddl
    finally:
        engine.dispose()
    assert ("scratch" in tables(backend)) is not backend.profile.transactional_ddl


def test_stairway_reads_an_expression_index_without_a_warning(backend: Backend) -> None:
    """SQLite's reflection skips an index on an expression with a warning: the snapshot
    leaves it out without one; where it is reported, its expression is compared."""
    import warnings

    from sqlalchemy import func
    from sqlalchemy.engine import Connection

    meta = MetaData()
    users = Table(
        "users", meta, Column("id", Integer, primary_key=True), Column("name", String(50))
    )
    index = Index("ix_lower_name", func.lower(users.c.name))

    def up(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(50))")
        if backend.profile.indexes_expressions(conn):
            index.create(conn)

    def down(conn: Connection) -> None:
        conn.exec_driver_sql("DROP TABLE users")

    runner = MigrationRunner(backend.url, [Migration("001", "users", up=up, down=down)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [m.version for m in check_stairway(runner)] == ["001"]
        engine = backend.engine()
        try:
            with engine.connect() as conn:
                indexes = snapshot(conn).tables["users"].indexes
        finally:
            engine.dispose()
    assert indexes.get("ix_lower_name", "lower(name)").lower().count("lower(") == 1

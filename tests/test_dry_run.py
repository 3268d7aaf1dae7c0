"""``MigrationRunner.dry_run()``: the plan with its SQL, and a database left exactly as it was."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import MetaData, inspect, select, text

from backends import Backend
from conftest import MakeMigrations
from sqlmig import MigrationFailed, MigrationRunner

ITEMS = {
    "001_create_items.py": '''\
        """Create the items table."""
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50))"))

        def down(conn):
            conn.execute(text("DROP TABLE items"))
        ''',
    "002_seed_items.py": '''\
        """Two first items."""
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("INSERT INTO items (id, name) VALUES (1, 'pen'), (2, 'ink')"))

        def down(conn):
            conn.execute(text("DELETE FROM items"))
        ''',
    "003_index_items.py": """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE INDEX ix_items_name ON items (name)"))

        def down(conn):
            conn.execute(text("DROP INDEX ix_items_name ON items")
                         if conn.dialect.name == "mysql" else text("DROP INDEX ix_items_name"))
        """,
}

NOT_TRIED = "cannot be tried in a rolled-back transaction"


def snapshot(backend: Backend) -> dict[str, Any]:
    """Every table with its columns and indexes, and every row, by reflection."""
    engine = backend.engine()
    try:
        meta = MetaData()
        meta.reflect(engine)
        inspector = inspect(engine)
        with engine.connect() as conn:
            return {
                name: {
                    "columns": [c["name"] for c in inspector.get_columns(name)],
                    "indexes": sorted(i["name"] or "" for i in inspector.get_indexes(name)),
                    "rows": sorted(map(tuple, conn.execute(select(table)).all()), key=repr),
                }
                for name, table in meta.tables.items()
            }
    finally:
        engine.dispose()


def runner_for(backend: Backend, folder: Any) -> MigrationRunner:
    return MigrationRunner(backend.url_string, folder)


def test_the_plan_lists_every_pending_step_with_its_sql(
    backend: Backend, make_migrations: MakeMigrations, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sqlmig")
    runner = runner_for(backend, make_migrations(ITEMS))

    plan = runner.dry_run()

    assert [step.migration.label for step in plan] == [
        "001_create_items",
        "002_seed_items",
        "003_index_items",
    ]
    if not backend.profile.transactional_ddl:
        assert [step.tried for step in plan] == [False, False, False]
        assert all(step.statements == [] for step in plan)
        assert any(NOT_TRIED in r.getMessage() for r in caplog.records if r.name == "sqlmig")
    else:
        assert [step.tried for step in plan] == [True, True, True]
        assert "CREATE TABLE items" in plan[0].statements[0]
        assert "INSERT INTO items" in plan[1].statements[0]
        assert "CREATE INDEX ix_items_name" in plan[2].statements[0]


def test_a_dry_run_on_a_fresh_database_leaves_it_empty(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = runner_for(backend, make_migrations(ITEMS))
    runner.dry_run()
    assert snapshot(backend) == {}  # no items table, not even the history table
    assert runner.status().total_pending == 3


def test_a_dry_run_after_some_steps_changes_neither_tables_nor_history(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = runner_for(backend, make_migrations(ITEMS))
    runner.upgrade("002")
    before = snapshot(backend)
    assert before["items"]["rows"] == [(1, "pen"), (2, "ink")]

    plan = runner.dry_run()

    assert [step.migration.version for step in plan] == ["003"]
    assert snapshot(backend) == before


def test_a_dry_run_stops_at_the_target(backend: Backend, make_migrations: MakeMigrations) -> None:
    runner = runner_for(backend, make_migrations(ITEMS))
    assert [step.migration.version for step in runner.dry_run("2")] == ["001", "002"]
    assert snapshot(backend) == {}


def test_a_dry_run_with_nothing_pending_is_empty(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = runner_for(backend, make_migrations(ITEMS))
    runner.upgrade()
    before = snapshot(backend)
    assert runner.dry_run() == []
    assert snapshot(backend) == before


def test_upgrade_after_a_dry_run_applies_everything(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = runner_for(backend, make_migrations(ITEMS))
    runner.dry_run()
    assert [m.version for m in runner.upgrade()] == ["001", "002", "003"]
    assert snapshot(backend)["items"]["indexes"] == ["ix_items_name"]


def test_transactional_false_steps_are_planned_only(
    backend: Backend, make_migrations: MakeMigrations, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sqlmig")
    folder = make_migrations(
        {
            **ITEMS,
            "004_outside.py": """\
            from sqlalchemy import text
            transactional = False

            def up(conn):
                conn.execute(text("CREATE TABLE outside (id INTEGER PRIMARY KEY)"))
            """,
        }
    )
    runner = runner_for(backend, folder)
    runner.upgrade("003")
    before = snapshot(backend)

    [step] = runner.dry_run()

    assert step.migration.version == "004"
    assert (step.tried, step.statements) == (False, [])
    messages = [r.getMessage() for r in caplog.records if r.name == "sqlmig"]
    if not backend.profile.transactional_ddl:
        assert any(NOT_TRIED in m for m in messages)
    else:
        assert any("004_outside is transactional = False" in m for m in messages)
    assert snapshot(backend) == before


def test_a_step_that_fails_in_a_dry_run_is_reported_and_nothing_changes(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            **ITEMS,
            "002_seed_items.py": """\
            from sqlalchemy import text

            def up(conn):
                conn.execute(text("INSERT INTO no_such_table VALUES (1)"))
            """,
        }
    )
    runner = runner_for(backend, folder)
    if not backend.profile.transactional_ddl:  # nothing is tried there, so nothing fails
        assert [step.tried for step in runner.dry_run()] == [False, False, False]
    else:
        with pytest.raises(MigrationFailed, match=r"migration 002 \(up \(dry run\)\)") as caught:
            runner.dry_run()
        assert caught.value.version == "002"
    assert snapshot(backend) == {}


def test_a_dry_run_inside_the_callers_transaction_leaves_it_open_and_unchanged(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(ITEMS)
    MigrationRunner(backend.url_string, folder).upgrade("001")
    before = snapshot(backend)
    engine = backend.engine()
    try:
        with engine.connect() as conn, conn.begin() as outer:
            plan = MigrationRunner(conn, folder).dry_run()
            assert [step.migration.version for step in plan] == ["002", "003"]
            assert conn.in_transaction() and outer.is_active
            assert conn.execute(text("SELECT COUNT(*) FROM items")).scalar() == 0
    finally:
        engine.dispose()
    assert snapshot(backend) == before


def test_steps_after_a_planned_only_step_are_planned_only_too(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_outside.py": """\
            from sqlalchemy import text
            transactional = False

            def up(conn):
                conn.execute(text("CREATE TABLE outside (id INTEGER PRIMARY KEY)"))
            """,
            "002_fill.py": """\
            from sqlalchemy import text

            def up(conn):  # needs the table 001 would create
                conn.execute(text("INSERT INTO outside (id) VALUES (1)"))
            """,
        }
    )
    plan = runner_for(backend, folder).dry_run()
    assert [(s.migration.version, s.tried) for s in plan] == [("001", False), ("002", False)]
    assert snapshot(backend) == {}


def test_steps_before_a_planned_only_step_are_tried(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            **ITEMS,
            "004_outside.py": """\
            transactional = False

            def up(conn):
                pass
            """,
            "005_more.py": "def up(conn):\n    pass\n",
        }
    )
    plan = runner_for(backend, folder).dry_run()
    tried = backend.profile.transactional_ddl
    assert [s.tried for s in plan] == [tried, tried, tried, False, False]


#: A step writing through a second connection of the engine: no transaction of sqlmig's.
SECOND_CONNECTION = {
    "001_notes.py": """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY)"))
        """,
    "002_aside.py": """\
        from sqlalchemy import text

        def up(conn):
            with conn.engine.connect() as aside:
                aside.execute(text("INSERT INTO notes (id) VALUES (1)"))
                aside.commit()
            conn.execute(text("INSERT INTO notes (id) VALUES (2)"))
        """,
}


def test_a_dry_run_warns_of_a_step_writing_through_a_second_connection(
    backend: Backend, make_migrations: MakeMigrations, caplog: pytest.LogCaptureFixture
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(SECOND_CONNECTION))
    runner.upgrade("001")
    caplog.set_level(logging.INFO, logger="sqlmig")

    plan = runner.dry_run()

    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    with runner.connect() as conn:
        kept = conn.execute(text("SELECT id FROM notes")).scalars().all()
    if plan[0].tried:  # the write of the second connection is committed: the warning says so
        assert warned == [
            "dry run: 002_aside opened another connection to the database; what it wrote "
            "through that one is not part of the dry run's transaction, so it was committed: "
            "check the database"
        ]
        assert kept == [1]
    else:  # MySQL/MariaDB: nothing is tried
        assert (warned, kept) == ([], [])
    assert runner.status().total_pending == 1


def test_a_dry_run_does_not_count_connections_other_threads_take(
    backend: Backend, make_migrations: MakeMigrations, caplog: pytest.LogCaptureFixture
) -> None:
    shared = """\
        import threading

        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY)"))
            # the application's own work on the engine it shares, in a thread of its own
            thread = threading.Thread(target=lambda: conn.engine.connect().close())
            thread.start()
            thread.join(timeout=30)
        """
    runner = MigrationRunner(backend.url, make_migrations({"001_shared.py": shared}))
    caplog.set_level(logging.INFO, logger="sqlmig")
    plan = runner.dry_run()
    assert len(plan) == 1
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]

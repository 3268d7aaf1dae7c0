"""``upgrade --sql`` / ``MigrationRunner.sql_script()``: a reviewable script, no connection."""

from __future__ import annotations

import io
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from scripts import apply, apply_with_client, statements
from sqlalchemy import (
    JSON,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    create_engine,
    inspect,
    select,
)
from tenants import COUNTED_STEPS, hits

from backends import Backend, fresh_database
from conftest import MakeMigrations
from sqlmig import IrreversibleMigration, MigrationFailed, MigrationRunner, UsageError
from sqlmig._cli import main
from sqlmig._sql_script import DIALECTS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "migrations"

#: A URL whose server is not there: any attempt to connect fails at once.
CLOSED = {
    "sqlite": "sqlite:////nonexistent-folder/app.db",
    "postgresql": "postgresql+psycopg://app:secret@127.0.0.1:1/app",
    "mysql": "mysql+pymysql://app:secret@127.0.0.1:1/app",
    "mariadb": "mariadb+pymysql://app:secret@127.0.0.1:1/app",
}

SAMPLES = {
    "001_create_items.py": '''\
        """Create the items table and its index."""
        from sqlalchemy import Column, Integer, String

        from sqlmig.ops import ops


        def up(conn):
            o = ops(conn)
            o.create_table(
                "items",
                Column("id", Integer, primary_key=True, autoincrement=False),
                Column("name", String(50), nullable=False),
            )
            o.create_index("ix_items_name", "items", ["name"])


        def down(conn):
            o = ops(conn)
            o.drop_index("ix_items_name", "items")
            o.drop_table("items")
        ''',
    "002_seed_items.py": '''\
        """Seed items, with text() and a Core insert."""
        from sqlalchemy import Column, Integer, MetaData, String, Table, text

        items = Table(
            "items", MetaData(), Column("id", Integer, primary_key=True), Column("name", String(50))
        )


        def up(conn):
            conn.execute(
                text("INSERT INTO items (id, name) VALUES (:id, :name)"),
                [{"id": 1, "name": "pen"}, {"id": 2, "name": "it's"}],
            )
            conn.execute(items.insert(), {"id": 3, "name": "ink"})


        def down(conn):
            conn.execute(items.delete().where(items.c.id.in_([1, 2, 3])))
        ''',
    "003_add_price.py": '''\
        """Add items.price."""
        from sqlalchemy import Column, Integer, text

        from sqlmig.ops import ops


        def up(conn):
            ops(conn).add_column("items", Column("price", Integer, server_default="0"))
            update = text("UPDATE items SET price = :p WHERE name = :n")
            conn.execute(update.bindparams(p=5, n="pen"))


        def down(conn):
            conn.execute(text("ALTER TABLE items DROP COLUMN price"))
        ''',
}


def schema(backend: Backend) -> dict[str, Any]:
    """Each table's columns (name, type, nullability) and indexes, by reflection."""
    engine = backend.engine()
    try:
        insp = inspect(engine)
        return {
            table: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
                sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(table)),
            )
            for table in sorted(insp.get_table_names())
        }
    finally:
        engine.dispose()


def contents(backend: Backend, runner: MigrationRunner) -> tuple[Any, ...]:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            items = conn.exec_driver_sql("SELECT id, name, price FROM items ORDER BY id").all()
    finally:
        engine.dispose()
    rows = [(r.version, r.name, r.checksum, r.success) for r in runner.history()]
    return [tuple(i) for i in items], rows


# -- the script --------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_sample_steps_render_as_one_transaction_each(
    make_migrations: MakeMigrations, dialect: str
) -> None:
    folder = make_migrations(SAMPLES)
    script = MigrationRunner(CLOSED[dialect], folder).sql_script()
    begin = "START TRANSACTION;" if dialect in ("mysql", "mariadb") else "BEGIN;"
    assert script.count(begin) == 4 and script.count("COMMIT;") == 4  # history table + 3 steps
    assert "CREATE TABLE IF NOT EXISTS migrations" in script
    assert "CREATE INDEX ix_items_name ON items (name);" in script
    # text() parameters and a Core insert's values, written as literals
    assert "INSERT INTO items (id, name) VALUES (1, 'pen');" in script
    assert "INSERT INTO items (id, name) VALUES (2, 'it''s');" in script
    assert "INSERT INTO items (id, name) VALUES (3, 'ink');" in script
    assert "UPDATE items SET price = 5 WHERE name = 'pen';" in script
    assert re.search(r"ALTER TABLE items ADD (COLUMN )?price INTEGER DEFAULT '0';", script)
    for version in ("001", "002", "003"):
        assert re.search(rf"INSERT INTO migrations \(.*\) VALUES \('{version}', ", script)
    # each step's history row comes before its COMMIT
    step = script.split("-- 002_seed_items (up)")[1].split("COMMIT;")[0]
    assert "VALUES ('002', 'seed_items'" in step
    assert ("commits each DDL statement itself" in script) == (dialect in ("mysql", "mariadb"))
    assert "\t" not in script


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_bundled_examples_render_up_to_the_backfill_that_reads_rows(dialect: str) -> None:
    runner = MigrationRunner(CLOSED[dialect], EXAMPLES)
    script = runner.sql_script("003")
    for made in ("CREATE TABLE users", "CREATE TABLE settings", "CREATE TABLE user_preferences"):
        assert made in script
    assert "VALUES ('app_name', 'My Bot');" in script
    assert script.count("COMMIT;") == 4
    with pytest.raises(UsageError) as caught:
        runner.sql_script()
    source = (EXAMPLES / "004_add_users_verified.py").read_text().splitlines()
    line = next(n for n, text in enumerate(source, 1) if ".scalars()" in text)
    message = caught.value.message
    assert f"004_add_users_verified.py:{line}" in message
    assert "004_add_users_verified (up) needs data from the database" in message
    assert "it reads the rows of 'SELECT users.id FROM users" in message
    assert "use sqlmig upgrade --dry-run against a database instead" in message
    assert "the steps before it render with sqlmig upgrade 003 --sql" in message


def test_the_script_applied_by_a_client_gives_what_upgrade_gives(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations(SAMPLES)
    scripted = MigrationRunner(backend.url_string, folder)
    apply(backend, scripted.sql_script())
    other = tmp_path / "other"
    other.mkdir()
    with fresh_database(backend.name, other) as upgraded:
        runner = MigrationRunner(upgraded.url_string, folder)
        assert len(runner.upgrade()) == 3
        assert schema(backend) == schema(upgraded)
        assert contents(backend, scripted) == contents(upgraded, runner)
    # sqlmig reads the script's history as its own: nothing pending, nothing changed
    status = scripted.status()
    assert [r.version for r in status.applied] == ["001", "002", "003"]
    assert status.pending == [] and status.changed == [] and status.failed == []
    scripted.verify()
    assert scripted.upgrade() == []


def test_the_examples_script_applied_matches_upgrade(backend: Backend, tmp_path: Path) -> None:
    """The bundled examples up to 003, then 004 by upgrade(): the rows agree."""
    scripted = MigrationRunner(backend.url_string, EXAMPLES)
    apply(backend, scripted.sql_script("003"))
    assert [m.version for m in scripted.upgrade()] == ["004"]
    assert [r.version for r in scripted.history()] == ["001", "002", "003", "004"]
    scripted.verify()


def test_a_downgrade_script_undoes_and_deletes_the_rows(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(SAMPLES)
    runner = MigrationRunner(backend.url_string, folder)
    runner.upgrade()
    script = runner.sql_script("001", downgrade=True, from_version="003")
    assert script.index("-- 003_add_price (down)") < script.index("-- 002_seed_items (down)")
    assert "001_create_items" not in script
    assert "CREATE TABLE IF NOT EXISTS" not in script
    assert "DELETE FROM migrations WHERE migrations.version = '003';" in script
    apply(backend, script)
    assert [r.version for r in runner.history()] == ["001"]
    assert runner.status().pending == [m for m in runner.migrations() if m.version != "001"]
    assert runner.upgrade() != []  # and they apply again


# -- --from and targets --------------------------------------------------------------


def test_from_takes_steps_as_applied(make_migrations: MakeMigrations) -> None:
    runner = MigrationRunner(CLOSED["postgresql"], make_migrations(SAMPLES))
    script = runner.sql_script(from_version="001")
    assert "-- taken as applied: 001" in script
    assert "CREATE TABLE IF NOT EXISTS migrations" not in script
    assert "001_create_items" not in script
    assert "-- 002_seed_items (up)" in script and "-- 003_add_price (up)" in script
    only = runner.sql_script("002", from_version="001")
    assert "003_add_price" not in only
    assert "-- nothing to apply" in runner.sql_script(from_version="003")


def test_bad_versions_dialects_and_downgrades_are_usage_errors(
    make_migrations: MakeMigrations,
) -> None:
    runner = MigrationRunner(CLOSED["sqlite"], make_migrations(SAMPLES))
    with pytest.raises(UsageError, match="sqlite, postgresql, mysql, mariadb"):
        runner.sql_script(dialect="oracle")
    with pytest.raises(UsageError, match="cannot take '9' as applied"):
        runner.sql_script(from_version="9")
    with pytest.raises(UsageError, match="unknown target '7'"):
        runner.sql_script("7")
    with pytest.raises(UsageError, match="--from VERSION"):
        runner.sql_script("001", downgrade=True)
    with pytest.raises(UsageError, match="needs a target"):
        runner.sql_script(downgrade=True, from_version="003")


def test_a_step_without_down_cannot_be_scripted_down(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_a.py": "def up(conn):\n    pass\n"})
    with pytest.raises(IrreversibleMigration):
        MigrationRunner(CLOSED["sqlite"], folder).sql_script("base", downgrade=True, from_version=1)


def test_dialect_chooses_what_the_script_is_written_for(make_migrations: MakeMigrations) -> None:
    runner = MigrationRunner(CLOSED["sqlite"], make_migrations(SAMPLES))
    assert "START TRANSACTION;" in runner.sql_script(dialect="mariadb")
    assert "START TRANSACTION;" not in runner.sql_script()


# -- what cannot be rendered ------------------------------------------------------


READERS = {
    "a scalar": "conn.execute(text('SELECT count(*) FROM items')).scalar()",
    "rows": "list(conn.execute(text('SELECT id FROM items')))",
    "a row count": "conn.execute(text('DELETE FROM items')).rowcount",
    "reflection": "inspect(conn).get_columns('items')",
    "the dialect's reflection": "conn.dialect.has_table(conn, 'items')",
    "conn.scalar": "conn.scalar(text('SELECT 1'))",
    "what a stand-in has not": "conn.get_execution_options()",
}


@pytest.mark.parametrize("reads", READERS)
def test_a_step_that_reads_stops_the_script_naming_its_line(
    make_migrations: MakeMigrations, reads: str
) -> None:
    folder = make_migrations(
        {
            "001_first.py": "def up(conn):\n    pass\n",
            "002_reads.py": (
                "from sqlalchemy import inspect, text\n\n\ndef up(conn):\n"
                f"    conn.execute(text('DELETE FROM items WHERE id = 0'))\n    {READERS[reads]}\n"
            ),
        }
    )
    with pytest.raises(UsageError) as caught:
        MigrationRunner(CLOSED["postgresql"], folder).sql_script()
    message = caught.value.message
    assert f"{folder / '002_reads.py'}:6" in message
    assert "002_reads (up) needs data from the database" in message
    if reads == "what a stand-in has not":
        assert "it uses conn.get_execution_options, which only a database" in message
    assert "sqlmig upgrade --dry-run" in message
    assert "sqlmig upgrade 001 --sql" in message


def test_a_step_that_swallows_the_error_still_stops(make_migrations: MakeMigrations) -> None:
    folder = make_migrations(
        {
            "001_reads.py": """\
                from sqlalchemy import text

                def up(conn):
                    try:
                        n = conn.execute(text("SELECT count(*) FROM t")).scalar()
                    except Exception:
                        n = 0
                """
        }
    )
    with pytest.raises(UsageError, match="needs data from the database"):
        MigrationRunner(CLOSED["sqlite"], folder).sql_script()


def test_a_step_that_commits_fails_like_online(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_commits.py": "def up(conn):\n    conn.commit()\n"})
    with pytest.raises(MigrationFailed, match=r"001_commits.py:2: it commits inside the step"):
        MigrationRunner(CLOSED["sqlite"], folder).sql_script()


# -- no connection ------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "mariadb"])
def test_nothing_connects(
    make_migrations: MakeMigrations, dialect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL whose port is closed, and no Engine may be built: the script needs neither."""
    import sqlmig._database

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("sql_script() built an engine")

    monkeypatch.setattr(sqlmig._database, "create_engine", refuse)
    script = MigrationRunner(CLOSED[dialect], make_migrations(SAMPLES)).sql_script()
    assert "COMMIT;" in script


def test_a_given_engine_is_not_connected(make_migrations: MakeMigrations) -> None:
    engine = create_engine(CLOSED["postgresql"])
    try:
        script = MigrationRunner(engine, make_migrations(SAMPLES)).sql_script()
        assert "clock_timestamp()" in script
        assert engine.pool.checkedout() == 0 and engine.pool.checkedin() == 0
    finally:
        engine.dispose()


def test_savepoints_are_written_in(make_migrations: MakeMigrations) -> None:
    folder = make_migrations(
        {
            "001_nested.py": """\
                from sqlalchemy import text

                def up(conn):
                    with conn.begin_nested():
                        conn.execute(text("DELETE FROM t"))
                """
        }
    )
    script = MigrationRunner(CLOSED["postgresql"], folder).sql_script()
    assert "SAVEPOINT sqlmig_sp_1;\nDELETE FROM t;\nRELEASE SAVEPOINT sqlmig_sp_1;" in script


def test_a_savepoint_the_step_ends_itself_is_written_as_it_ends(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(
        {
            "001_nested.py": """\
                from sqlalchemy import text

                def up(conn):
                    with conn.begin_nested() as savepoint:
                        conn.execute(text("DELETE FROM t"))
                        savepoint.rollback()
                    kept = conn.begin_nested()
                    conn.execute(text("DELETE FROM u"))
                    assert conn.in_nested_transaction()
                    kept.commit()
                    assert not conn.in_nested_transaction()
                """
        }
    )
    script = MigrationRunner(CLOSED["mysql"], folder).sql_script()
    assert (
        "SAVEPOINT sqlmig_sp_1;\nDELETE FROM t;\nROLLBACK TO SAVEPOINT sqlmig_sp_1;\n"
        "SAVEPOINT sqlmig_sp_1;\nDELETE FROM u;\nRELEASE SAVEPOINT sqlmig_sp_1;\n"
    ) in script


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_examples_backfill_is_undone_by_script_where_no_rebuild_may_be_needed(
    dialect: str,
) -> None:
    """004's down() drops its column with sqlmig.ops: one ALTER TABLE, except on SQLite,
    whose drop may rebuild the table from its definition."""
    runner = MigrationRunner(CLOSED[dialect], EXAMPLES)
    if dialect != "sqlite":
        script = runner.sql_script("003", downgrade=True, from_version="004")
        assert "ALTER TABLE users DROP COLUMN verified;" in script
        return
    with pytest.raises(UsageError) as caught:
        runner.sql_script("003", downgrade=True, from_version="004")
    message = caught.value.message
    assert "004_add_users_verified (down) needs data from the database" in message
    assert "004_add_users_verified.py:41: it drops column verified of users: SQLite" in message
    assert "run the downgrade against a database instead" in message


# -- the command line ---------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SQLMIG_URL", "SQLMIG_ENV", "SQLMIG_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(EXAMPLES, tmp_path / "migrations")
    return tmp_path


def test_the_command_prints_the_script(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["upgrade", "003", "--sql", "--dialect", "postgresql"]) == 0
    out = capsys.readouterr().out
    runner = MigrationRunner(CLOSED["postgresql"], "migrations")
    assert out == runner.sql_script("003")
    assert main(["--url", CLOSED["mysql"], "downgrade", "001", "--sql", "--from", "003"]) == 0
    out = capsys.readouterr().out
    assert "START TRANSACTION;" in out and "DROP TABLE user_preferences;" in out


def test_the_command_stops_at_the_step_that_reads(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--url", CLOSED["postgresql"], "upgrade", "--sql"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "004_add_users_verified (up) needs data from the database" in captured.err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["upgrade", "--sql", "--dialect", "oracle"], "sqlite, postgresql, mysql, mariadb"),
        (["upgrade", "--sql"], "give --dialect NAME"),
        (["upgrade", "--from", "001"], "--from goes with --sql"),
        (["upgrade", "--sql", "--dry-run", "--dialect", "sqlite"], "choose one"),
        (
            ["--url", CLOSED["postgresql"], "upgrade", "--sql", "--dialect", "sqlite"],
            "disagrees with the database URL",
        ),
    ],
)
def test_the_command_refuses_what_it_cannot_do(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert main(argv) == 2
    assert says in capsys.readouterr().err


def test_a_non_transactional_step_has_no_transaction(make_migrations: MakeMigrations) -> None:
    folder = make_migrations(
        {
            "001_index.py": """\
                from sqlalchemy import text

                transactional = False

                def up(conn):
                    conn.execute(text("CREATE INDEX CONCURRENTLY ix_t ON t (a)"))
                """
        }
    )
    script = MigrationRunner(CLOSED["postgresql"], folder).sql_script(from_version="base")
    step = script.split("-- 001_index (up)")[1]
    assert "transactional = False: it runs outside a transaction" in step
    assert "BEGIN;" not in step and "COMMIT;" not in step
    assert "CREATE INDEX CONCURRENTLY ix_t ON t (a);\nINSERT INTO migrations" in step


@pytest.mark.parametrize(
    ("sql", "parameters"),
    [
        ("INSERT INTO t (a, b) VALUES (?, ?)", (1, "o'k")),
        ("INSERT INTO t (a, b) VALUES (%s, %s)", (1, "o'k")),
        ("INSERT INTO t (a, b) VALUES (%(a)s, %(b)s)", {"a": 1, "b": "o'k"}),
        ("INSERT INTO t (a, b) VALUES (:a, :b)", {"a": 1, "b": "o'k"}),
        ("INSERT INTO t (a, b) VALUES (?, ?)", [(1, "o'k"), (2, "x")]),
    ],
)
def test_driver_sql_parameters_are_written_in(
    make_migrations: MakeMigrations, sql: str, parameters: Any
) -> None:
    folder = make_migrations(
        {"001_raw.py": f"def up(conn):\n    conn.exec_driver_sql({sql!r}, {parameters!r})\n"}
    )
    script = MigrationRunner(CLOSED["sqlite"], folder).sql_script()
    assert "INSERT INTO t (a, b) VALUES (1, 'o''k');" in script


def test_driver_sql_keeps_what_is_no_parameter(make_migrations: MakeMigrations) -> None:
    folder = make_migrations(
        {
            "001_raw.py": (
                "def up(conn):\n    conn.exec_driver_sql("
                "\"UPDATE t SET at = '12:30', v = x::text WHERE a = :a\", {'a': 1})\n"
            )
        }
    )
    script = MigrationRunner(CLOSED["postgresql"], folder).sql_script()
    assert "UPDATE t SET at = '12:30', v = x::text WHERE a = 1;" in script


def test_what_steps_log_stays_out_of_the_script(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "migrations" / "005_logs.py").write_text(
        "import logging\n\ndef up(conn):\n"
        "    logging.getLogger('sqlmig.migrations').info('making t')\n"
        "    conn.exec_driver_sql('CREATE TABLE t (a INTEGER)')\n"
    )
    assert main(["upgrade", "005", "--sql", "--dialect", "sqlite", "--from", "004"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("-- sqlmig upgrade script for sqlite\n")
    assert "making t" not in captured.out and "making t" in captured.err


RENAME = {
    **SAMPLES,
    "004_rename.py": """\
        from sqlmig.ops import ops


        def up(conn):
            ops(conn).rename_column("items", "name", "title")


        def down(conn):
            ops(conn).rename_column("items", "title", "name")
        """,
}


def test_a_column_renamed_with_ops_is_written_where_nothing_must_be_read(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations(RENAME)
    scripted = MigrationRunner(backend.url_string, folder)
    if backend.profile.alter_column_restates_column:  # CHANGE COLUMN restates the column
        with pytest.raises(UsageError, match=r"004_rename\.py:5: it reflects the schema"):
            scripted.sql_script()
        return
    apply(backend, scripted.sql_script())
    other = tmp_path / "other"
    other.mkdir()
    with fresh_database(backend.name, other) as upgraded:
        runner = MigrationRunner(upgraded.url_string, folder)
        runner.upgrade()
        assert schema(backend) == schema(upgraded)
        assert [c[0] for c in schema(backend)["items"][0]] == ["id", "title", "price"]
    scripted.verify()
    assert scripted.status().pending == []


def test_a_column_altered_with_ops_is_written_for_postgresql(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(
        {
            **SAMPLES,
            "004_widen.py": """\
                from sqlalchemy import String

                from sqlmig.ops import ops


                def up(conn):
                    ops(conn).alter_column("items", "name", type_=String(80), nullable=True)
                """,
        }
    )
    script = MigrationRunner(CLOSED["postgresql"], folder).sql_script(from_version="003")
    assert "ALTER TABLE items ALTER COLUMN name TYPE VARCHAR(80);" in script
    assert "ALTER TABLE items ALTER COLUMN name DROP NOT NULL;" in script
    with pytest.raises(UsageError, match=r"004_widen\.py:7: it "):
        MigrationRunner(CLOSED["mysql"], folder).sql_script(from_version="003")


#: Driver SQL with ``?`` and ``%`` in its literals, as each driver wants it written
#: (psycopg and PyMySQL read ``%%`` as ``%``), and a column dropped with ``sqlmig.ops``.
LITERALS = {
    "001_notes.py": """\
        from sqlalchemy import Column, Integer, String, column, table, text

        from sqlmig.ops import ops

        notes = table("notes", column("id"), column("body"))


        def up(conn):
            o = ops(conn)
            o.create_table(
                "notes",
                Column("id", Integer, primary_key=True, autoincrement=False),
                Column("body", String(40)),
                Column("draft", Integer),
            )
            if conn.dialect.name != "sqlite":  # SQLite: see the test of its refusal
                o.drop_column("notes", "draft")
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql(
                    "INSERT INTO notes (id, body) VALUES (?, 'why? 50% :x')", (1,)
                )
                conn.exec_driver_sql("INSERT INTO notes (id, body) VALUES (2, '10%')")
            else:
                conn.exec_driver_sql(
                    "INSERT INTO notes (id, body) VALUES (%s, 'why? 50%% :x')", (1,)
                )
                conn.exec_driver_sql("INSERT INTO notes (id, body) VALUES (2, '10%%')")
            conn.execute(text("INSERT INTO notes (id, body) VALUES (3, '5% off')"))
            conn.execute(notes.insert().values(id=4, body="9% ? %s"))
        """,
}


def apply_raw(backend: Backend, script: str) -> None:
    """Run the script's statements through the driver's own cursor, with no parameters,
    as a SQL client sends them (so a ``%`` is a ``%``)."""
    engine = create_engine(backend.url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            cursor = conn.connection.cursor()
            for statement in statements(script):
                cursor.execute(statement)
            cursor.close()
    finally:
        engine.dispose()


def notes_rows(backend: Backend) -> list[tuple[Any, ...]]:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            return [
                tuple(r) for r in conn.exec_driver_sql("SELECT id, body FROM notes ORDER BY id")
            ]
    finally:
        engine.dispose()


def test_literals_with_question_marks_and_percents_reach_the_database_as_upgrade_sends_them(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations(LITERALS)
    scripted = MigrationRunner(backend.url_string, folder)
    apply_raw(backend, scripted.sql_script())
    other = tmp_path / "other"
    other.mkdir()
    with fresh_database(backend.name, other) as upgraded:
        assert len(MigrationRunner(upgraded.url_string, folder).upgrade()) == 1
        expected = [(1, "why? 50% :x"), (2, "10%"), (3, "5% off"), (4, "9% ? %s")]
        assert notes_rows(upgraded) == expected
        assert notes_rows(backend) == expected
        assert schema(backend) == schema(upgraded)  # draft dropped by the script too


def test_a_dropped_column_is_one_alter_table_where_the_database_drops_it_in_place(
    make_migrations: MakeMigrations,
) -> None:
    step = """\
        from sqlmig.ops import ops

        def up(conn):
            ops(conn).drop_column("notes", "draft")
        """
    folder = make_migrations({"001_drop.py": step})
    for dialect in ("postgresql", "mysql", "mariadb"):
        script = MigrationRunner(CLOSED[dialect], folder).sql_script(from_version="base")
        assert "ALTER TABLE notes DROP COLUMN draft;" in script
    with pytest.raises(UsageError, match="it drops column draft of notes: SQLite drops a column"):
        MigrationRunner(CLOSED["sqlite"], folder).sql_script(from_version="base")


#: Driver SQL that psycopg and PyMySQL fail on (or send as something else) when the step
#: runs: a ``%`` that starts no placeholder, a placeholder without its value.
PERCENT_REFUSED = [
    ("SELECT '10%'", None, "a % that starts no placeholder (...SELECT '10%'...)"),
    ("UPDATE t SET b = '%s'", None, "the placeholder %s and no value for it"),
    ("UPDATE t SET b = 'a' WHERE c = %(c)s", {"d": 1}, "the placeholder %(c)s and no value"),
]


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "mariadb"])
@pytest.mark.parametrize(("sql", "parameters", "said"), PERCENT_REFUSED)
def test_driver_sql_its_driver_refuses_stops_the_script(
    make_migrations: MakeMigrations, dialect: str, sql: str, parameters: Any, said: str
) -> None:
    call = f"conn.exec_driver_sql({sql!r}, {parameters!r})"
    folder = make_migrations({"001_raw.py": f"def up(conn):\n    {call}\n"})
    with pytest.raises(MigrationFailed, match=re.escape(said)) as info:
        MigrationRunner(CLOSED[dialect], folder).sql_script(from_version="base")
    assert "001_raw.py:2: it sends driver SQL with " in str(info.value)
    assert "write %% for a %" in str(info.value)
    sqlite = MigrationRunner(CLOSED["sqlite"], folder).sql_script(from_version="base")
    assert sql in sqlite  # SQLite's driver reads no %


@pytest.mark.parametrize(
    ("dialect", "sql", "parameters", "written"),
    [
        (
            "sqlite",
            "UPDATE t SET b = 'why?' WHERE a = ?",
            (1,),
            "UPDATE t SET b = 'why?' WHERE a = 1",
        ),
        (
            "sqlite",
            "UPDATE t SET b = '50%' WHERE a = :a",
            {"a": 1},
            "UPDATE t SET b = '50%' WHERE a = 1",
        ),
        (
            "sqlite",
            "UPDATE t SET b = 'x' -- why?\nWHERE a = ?",
            (1,),
            "UPDATE t SET b = 'x' -- why?\nWHERE a = 1",
        ),
        (
            "postgresql",
            "SELECT data ? 'k' FROM t WHERE a = %s",
            (1,),
            "SELECT data ? 'k' FROM t WHERE a = 1",
        ),
        ("postgresql", "UPDATE t SET b = '50%%'", None, "UPDATE t SET b = '50%'"),
        (
            "mysql",
            "UPDATE t SET b = '%s%%' WHERE a = %s",
            ("x", 1),
            "UPDATE t SET b = ''x'%' WHERE a = 1",
        ),
    ],
)
def test_driver_sql_is_written_as_its_driver_reads_it(
    make_migrations: MakeMigrations, dialect: str, sql: str, parameters: Any, written: str
) -> None:
    call = (
        f"conn.exec_driver_sql({sql!r}, {parameters!r})"
        if parameters
        else f"conn.exec_driver_sql({sql!r})"
    )
    folder = make_migrations({"001_raw.py": f"def up(conn):\n    {call}\n"})
    script = MigrationRunner(CLOSED[dialect], folder).sql_script(from_version="base")
    assert written + ";" in script


# -- text(): what SQLAlchemy takes for a bind parameter ------------------------------

#: A ``:x`` inside a string literal of a ``text()``: SQLAlchemy binds it there too.
BIND_IN_LITERAL = """\
    from sqlalchemy import text


    def up(conn):
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(40))"))
        conn.execute(text("INSERT INTO notes (id, body) VALUES (1, ':x')"){parameters})
    """


@pytest.mark.parametrize("parameters", ["", ", {'x': 'v'}"], ids=["no value", "a value"])
def test_a_bind_parameter_inside_quotes_stops_the_script_as_it_fails_the_step(
    backend: Backend, make_migrations: MakeMigrations, parameters: str
) -> None:
    """The database never receives ':x' (SQLite and PyMySQL fail, psycopg sends $1 or
    fails): the script says so at the step's line instead of writing NULL or 'v'."""
    folder = make_migrations({"001_notes.py": BIND_IN_LITERAL.format(parameters=parameters)})
    runner = MigrationRunner(backend.url_string, folder)
    with pytest.raises(MigrationFailed):
        runner.upgrade()
    with pytest.raises(MigrationFailed) as info:
        runner.sql_script()
    message = str(info.value)
    assert "migration 001 (up) cannot be written as SQL at " in message
    assert "001_notes.py:6: it writes :x inside the quoted text \"':x'\" of a text()" in message
    assert "write \\:x for the characters themselves" in message


#: Literals that reach the database as written: ``\\:x`` is ``:x``, ``%`` stays ``%``
#: (SQLAlchemy doubles it for psycopg and PyMySQL, which read ``%%`` as ``%``).
TEXT_LITERALS = r"""
    from sqlalchemy import text


    def up(conn):
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(40))"))
        insert = "INSERT INTO notes (id, body) VALUES "
        conn.execute(text(insert + r"(1, '\:x and it''s \:y')"))
        conn.execute(text(insert + "(2, '50% and 50%%')"))
        conn.execute(text(insert + "(3, 'a::b')"))
        conn.execute(text(insert + "(:id, :body)"), {"id": 4, "body": ":z 10%"})
        if conn.dialect.name == "postgresql":
            conn.execute(text(insert + "(5, 'x'::text || CAST(:n AS text))"), {"n": 7})
            conn.exec_driver_sql(insert + "(6, 'y'::text || '%%')")
        else:
            conn.execute(text(insert + "(5, 'x7')"))
            percent = "%" if conn.dialect.name == "sqlite" else "%%"
            conn.exec_driver_sql(insert + f"(6, 'y{percent}')")
    """


def test_text_literals_reach_the_database_as_upgrade_sends_them(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations({"001_notes.py": TEXT_LITERALS})
    script = MigrationRunner(backend.url_string, folder).sql_script()
    apply_raw(backend, script)
    expected = [
        (1, ":x and it's :y"),
        (2, "50% and 50%%"),
        (3, "a::b"),
        (4, ":z 10%"),
        (5, "x7"),
        (6, "y%"),
    ]
    assert notes_rows(backend) == expected
    other = tmp_path / "other"
    other.mkdir()
    with fresh_database(backend.name, other) as upgraded:
        MigrationRunner(upgraded.url_string, folder).upgrade()
        assert notes_rows(upgraded) == expected


@pytest.mark.parametrize(
    ("dialect", "sql", "parameters", "written"),
    [
        ("postgresql", "SELECT a::int, 'x'::text FROM t WHERE b = :b", {"b": 1}, "b = 1"),
        ("postgresql", "SELECT 1 -- see :ref", None, "it writes :ref inside the comment"),
        ("postgresql", "DO $$ BEGIN PERFORM ':x'; END $$", None, "inside the quoted text"),
        ("postgresql", r"SELECT E'\' :x'", None, "inside the quoted text \"E'\\\\' :x'\""),
        ("postgresql", "SELECT 'a\\' :x", {"x": 1}, "SELECT 'a\\' 1"),
        ("mysql", r"SELECT 'it\'s :x'", None, "inside the quoted text"),
        ("mysql", 'SELECT "it\'s :x"', None, "inside the quoted text"),
        ("mysql", "SELECT 1 # :x", None, "inside the comment"),
        ("mysql", "SELECT 1 /*!50000 + :a */", {"a": 1}, "SELECT 1 /*!50000 + 1 */"),
        ("sqlite", "SELECT `:x`", None, "inside the quoted text"),
        ("sqlite", "SELECT :a", None, "it has no value for the bind parameter :a"),
        ("sqlite", "SELECT :a", {"a": None}, "SELECT NULL"),
    ],
)
def test_a_text_bind_parameter_is_written_in_or_refused_where_it_stands(
    make_migrations: MakeMigrations,
    dialect: str,
    sql: str,
    parameters: dict[str, Any] | None,
    written: str,
) -> None:
    call = f"conn.execute(text({sql!r}), {parameters!r})"
    step = f"from sqlalchemy import text\n\ndef up(conn):\n    {call}\n"
    folder = make_migrations({"001_raw.py": step})
    runner = MigrationRunner(CLOSED[dialect], folder)
    if written.startswith("it ") or written.startswith("inside"):
        with pytest.raises(MigrationFailed, match=re.escape(written)) as info:
            runner.sql_script(from_version="base")
        assert "001_raw.py:4: it " in str(info.value)
    else:
        assert written in runner.sql_script(from_version="base")


#: Values SQLAlchemy writes no literal of: bytes, JSON (and JSON's null for None).
BLOBS = r"""
    import sqlalchemy as sa

    blobs = sa.Table(
        "blobs",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary),
        sa.Column("doc", sa.JSON),
    )


    def up(conn):
        blobs.create(conn)
        conn.execute(
            blobs.insert(),
            [
                {"id": 1, "data": b"\x00\xff'\\", "doc": {"k": ["x'y", 1.5, None], "é": True}},
                {"id": 2, "data": None, "doc": None},
            ],
        )
        conn.execute(blobs.update().where(blobs.c.id == 2).values(data=b"", doc=[1, "%"]))
        conn.execute(blobs.insert().values(id=3, doc=sa.null()))
        conn.execute(blobs.insert().values(id=4, doc=None))
    """


def test_bytes_and_json_are_written_as_the_driver_receives_them(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations({"001_blobs.py": BLOBS})
    apply_raw(backend, MigrationRunner(backend.url_string, folder).sql_script())
    other = tmp_path / "other"
    other.mkdir()
    with fresh_database(backend.name, other) as upgraded:
        MigrationRunner(upgraded.url_string, folder).upgrade()
        expected = blob_rows(upgraded)
        assert expected[0] == (1, b"\x00\xff'\\", {"k": ["x'y", 1.5, None], "é": True})
        assert expected[1] == (2, b"", [1, "%"])
        assert blob_rows(backend) == expected


def blob_rows(backend: Backend) -> list[tuple[Any, ...]]:
    """The rows of ``blobs``, JSON decoded, and whether ``doc`` is SQL NULL."""
    meta = MetaData()
    blobs = Table(
        "blobs", meta, Column("id", Integer), Column("data", LargeBinary), Column("doc", JSON)
    )
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(blobs.c.id, blobs.c.data, blobs.c.doc, blobs.c.doc.is_(None)).order_by(
                    blobs.c.id
                )
            ).all()
    finally:
        engine.dispose()
    return [(r[0], r[1], r[2]) if r[0] < 3 else (r[0], r[3]) for r in rows]


def test_a_script_the_output_cannot_encode_is_refused_not_dropped(
    make_migrations: MakeMigrations,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = make_migrations(
        {
            "001_cafe.py": "from sqlalchemy import text\n\ndef up(conn):\n"
            "    conn.execute(text(\"INSERT INTO t VALUES ('café')\"))\n"
        }
    )
    monkeypatch.chdir(folder.parent)
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    code = main(["--dir", str(folder), "upgrade", "--sql", "--dialect", "sqlite"])
    stdout.flush()
    assert code == 2 and stdout.buffer.getvalue() == b""  # type: ignore[attr-defined]
    error = capsys.readouterr().err
    assert "standard output's encoding (ascii) has no 'é'" in error
    assert "set PYTHONIOENCODING=utf-8" in error


#: Statements a client reads as it reads any script: a comment at the end of one,
#: a body with ``;`` in it (a MySQL trigger, a PostgreSQL dollar quote).
CLIENT_READS = r"""
    from sqlalchemy import text


    def up(conn):
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(40)) -- notes"))
        conn.exec_driver_sql("INSERT INTO notes (id, body) VALUES (1, 'a -- b') -- the first")
        conn.execute(text("INSERT INTO notes (id, body) VALUES (:id, :body) -- the second"),
                     {"id": 2, "body": "x; y"})
        if conn.dialect.name == "mysql":
            conn.exec_driver_sql(
                "CREATE TRIGGER notes_body BEFORE INSERT ON notes FOR EACH ROW "
                "BEGIN SET NEW.body = CONCAT(NEW.body, '!'); -- marked\nEND"
            )
        elif conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION mark() RETURNS trigger AS $$ BEGIN "
                "NEW.body := NEW.body || '!'; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER notes_body BEFORE INSERT ON notes "
                "FOR EACH ROW EXECUTE FUNCTION mark() -- marked"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER notes_body AFTER INSERT ON notes BEGIN "
                "UPDATE notes SET body = body || '!' WHERE id = NEW.id; END -- marked"
            )
        conn.exec_driver_sql("INSERT INTO notes (id, body) VALUES (3, 'é')")
    """


def test_the_script_runs_in_the_database_client(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations({"001_notes.py": CLIENT_READS})
    scripted = MigrationRunner(backend.url_string, folder)
    apply_with_client(backend, scripted.sql_script())
    expected = [(1, "a -- b"), (2, "x; y"), (3, "é!")]
    assert notes_rows(backend) == expected
    assert [r.version for r in scripted.history()] == ["001"]
    other = tmp_path / "other"
    other.mkdir()
    with fresh_database(backend.name, other) as upgraded:
        MigrationRunner(upgraded.url_string, folder).upgrade()
        assert notes_rows(upgraded) == expected


#: SQL files as each database's own client must read them back from a script.
SQL_FILES = {
    "postgresql": """\
        -- migrate:up
        CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(40));
        CREATE FUNCTION mark() RETURNS trigger AS $body$
        BEGIN
            NEW.body := NEW.body || '!'; -- marked; see http://example.com
            RETURN NEW;
        END
        $body$ LANGUAGE plpgsql;
        CREATE TRIGGER notes_body BEFORE INSERT ON notes FOR EACH ROW EXECUTE FUNCTION mark();
        INSERT INTO notes VALUES (1, 'a;b // c $$ d'), (2, E'it\\'s'), (3, '50% :x ?');
        """,
    "mysql": """\
        -- migrate:up
        CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(40));
        CREATE TRIGGER notes_body BEFORE INSERT ON notes FOR EACH ROW
        BEGIN
            -- marked; see http://example.com
            SET NEW.body = CONCAT(NEW.body, '!'); # a // b
        END;
        INSERT INTO notes VALUES (1, 'a;b // c $$ d'), (2, 'it\\'s'), (3, '50% :x ?');
        """,
    "sqlite": """\
        -- migrate:up
        CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(40));
        CREATE TRIGGER notes_body AFTER INSERT ON notes BEGIN
            UPDATE notes SET body = body || '!' WHERE id = NEW.id; -- see http://example.com
        END;
        INSERT INTO notes VALUES (1, 'a;b // c $$ d'), (2, 'it''s'), (3, '50% :x ?');
        """,
}


def test_sql_files_run_in_the_database_client(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_notes.sql": SQL_FILES[backend.name]})
    scripted = MigrationRunner(backend.url_string, folder)
    apply_with_client(backend, scripted.sql_script())
    assert notes_rows(backend) == [(1, "a;b // c $$ d!"), (2, "it's!"), (3, "50% :x ?!")]
    assert [r.version for r in scripted.history()] == ["001"]
    scripted.verify()


def test_a_value_sqlalchemy_cannot_write_stops_the_script_saying_so(
    make_migrations: MakeMigrations,
) -> None:
    step = (
        "from sqlalchemy import text\n\ndef up(conn):\n"
        "    conn.execute(text('UPDATE t SET tags = :tags'), {'tags': ['a', 'b']})\n"
    )
    folder = make_migrations({"001_tags.py": step})
    with pytest.raises(UsageError) as info:
        MigrationRunner(CLOSED["postgresql"], folder).sql_script()
    message = info.value.message
    assert "migration 001_tags (up) cannot be written as SQL at " in message
    assert "001_tags.py:4: it sends a value SQLAlchemy cannot write as SQL (" in message
    assert "needs data" not in message


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_tenants_script_creates_its_schema_and_runs_the_steps_in_it(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(COUNTED_STEPS)
    runner = MigrationRunner(backend.url_string, folder, schema="Tenant-A", steps_in_schema=True)
    script = runner.sql_script()
    assert 'CREATE SCHEMA IF NOT EXISTS "Tenant-A";\nSET search_path TO "Tenant-A";' in script

    apply(backend, script)

    assert hits(backend.url, "Tenant-A") == ["001", "002", "003"]
    assert hits(backend.url) == []  # nothing in the default schema
    status = runner.status()  # the tenant's history, read where a run keeps it
    assert [r.version for r in status.applied] == ["001", "002", "003"] and not status.pending
    assert runner.upgrade() == []
    with pytest.raises(UsageError, match=r"a schema per tenant .* is PostgreSQL's"):
        runner.sql_script(dialect="mysql")

"""What a dry run shows: bounded parameters, and the statements that change something."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends import Backend
from conftest import MakeMigrations
from sqlmig import MigrationRunner
from sqlmig._cli import main
from sqlmig._dryrun import changes_something, parameters_shown

ROWS = 20_000

ITEMS = """\
    '''Create the items table.'''
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50))"))

    def down(conn):
        conn.execute(text("DROP TABLE items"))
    """

BULK = f"""\
    '''Many rows at once, as a text statement and as a Core insert.'''
    from sqlalchemy import column, insert, table, text

    items = table("items", column("id"), column("name"))

    def up(conn):
        rows = [{{"id": i, "name": f"item {{i}}"}} for i in range({ROWS})]
        conn.execute(text("INSERT INTO items (id, name) VALUES (:id, :name)"), rows)
        conn.execute(insert(items), [{{"id": {ROWS} + r["id"], "name": r["name"]}} for r in rows])
    """

#: A column change that SQLite makes by rebuilding the table (reflection first).
ALTER = """\
    '''Make items.name longer and required.'''
    from sqlalchemy import String

    from sqlmig.ops import ops

    def up(conn):
        ops(conn).alter_column("items", "name", type_=String(200), nullable=False)
    """


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_bulk_insert_shows_a_bounded_summary_of_its_parameters(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations({"001_items.py": ITEMS}))
    runner.upgrade()
    make_migrations({"002_bulk.py": BULK})

    (step,) = runner.dry_run()

    assert step.tried and step.statements
    assert all(len(statement) < 2_000 for statement in step.statements)
    first = step.statements[0]
    assert first.startswith("INSERT INTO items (id, name) VALUES (")
    summary = first.split("  -- ")[1]  # the driver's own form: a tuple or a dict
    assert summary.startswith(f"{ROWS} parameter sets, first: ") and "'item 0'" in summary
    assert sum(len(s) for s in step.statements) < 100_000  # not a copy of the rows


def test_parameters_shown_are_cut_short() -> None:
    assert parameters_shown({"blob": "x" * 10_000}, executemany=False).endswith("xx ...")
    assert len(parameters_shown({"blob": "x" * 10_000}, executemany=False)) < 300
    assert parameters_shown([], executemany=True) == "0 parameter sets, first: none"
    assert parameters_shown((1, "a"), executemany=False) == "(1, 'a')"


@pytest.mark.parametrize(
    ("statement", "changes"),
    [
        ('PRAGMA main.table_info("items")', False),
        ("PRAGMA foreign_keys", False),
        ("pragma index_list('items')", False),
        ("SELECT name FROM sqlite_master", False),
        ("  select 1", False),
        ("SHOW CREATE TABLE items", False),
        ("PRAGMA foreign_keys=OFF", True),
        ("PRAGMA foreign_keys = ON", True),
        ("CREATE TABLE _alembic_tmp_items (id INTEGER)", True),
        ("INSERT INTO t (a) SELECT a FROM u", True),
        ("DROP TABLE items", True),
        ("WITH x AS (SELECT 1) DELETE FROM t", True),
    ],
)
def test_which_statements_change_something(statement: str, changes: bool) -> None:
    assert changes_something(statement) is changes


def test_a_sqlite_rebuild_shows_its_changes_and_hides_its_reflection_unless_verbose(
    sqlite_backend: Backend,
    make_migrations: MakeMigrations,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("alembic")
    monkeypatch.chdir(tmp_path)
    folder = make_migrations({"001_items.py": ITEMS})
    MigrationRunner(sqlite_backend.url, folder).upgrade()
    make_migrations({"002_alter.py": ALTER})
    args = ["--url", sqlite_backend.url_string, "--dir", str(folder), "upgrade", "--dry-run"]

    assert main(args) == 0
    out = capsys.readouterr().out

    assert "PRAGMA" not in out and "SELECT name FROM" not in out.upper()
    assert "CREATE TABLE _alembic_tmp_items" in out
    assert "ALTER TABLE _alembic_tmp_items RENAME TO items" in out
    hidden = [line for line in out.splitlines() if "that only read" in line]
    assert len(hidden) == 1 and "-v shows them" in hidden[0]

    assert main(["-v", *args]) == 0
    verbose = capsys.readouterr().out
    assert "PRAGMA" in verbose and "that only read" not in verbose

"""``sqlmig new``: the next file, numbered and named like its neighbours."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import MakeMigrations
from sqlmig import MigrationRunner, MigrationSourceError, SqlFileError, UsageError
from sqlmig._discovery import discover
from sqlmig._scaffold import new_migration, next_file_name


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ([], "001_add_orders.py"),
        (["001_a.py"], "002_add_orders.py"),
        (["008_a.py", "009_b.py"], "010_add_orders.py"),
        (["1_a.py", "2_b.py"], "3_add_orders.py"),
        (["9_a.py"], "10_add_orders.py"),
        (["0001_a.py", "0099_b.py"], "0100_add_orders.py"),
        (["999_a.py"], "1000_add_orders.py"),
        (["migration_001_a.py", "migration_002_b.py"], "migration_003_add_orders.py"),
        (["001_a.py", "migration_002_b.py"], "migration_003_add_orders.py"),
        (["migration_001_a.py", "002_b.py"], "003_add_orders.py"),
        (["001_a.py", "__init__.py", "notes.txt"], "002_add_orders.py"),
        (["003_a.py", "010_b.py", "004_c.py"], "011_add_orders.py"),
    ],
)
def test_next_file_name(existing: list[str], expected: str) -> None:
    assert next_file_name(existing, "add_orders") == expected


@pytest.mark.parametrize(
    ("name", "slug"),
    [("add orders", "add_orders"), ("add-orders!", "add_orders"), ("  AddOrders ", "AddOrders")],
)
def test_a_name_becomes_a_valid_file_name(name: str, slug: str) -> None:
    assert next_file_name([], name) == f"001_{slug}.py"


def test_a_name_without_letters_or_digits_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="letters, digits"):
        next_file_name([], "--")


def test_the_first_migration_creates_the_folder(tmp_path: Path) -> None:
    path = new_migration(tmp_path / "migrations", "create_users")
    assert path == tmp_path / "migrations" / "001_create_users.py"
    source = path.read_text()
    assert source.startswith('"""Create users.\n')
    assert "def up(conn: Connection) -> None:" in source
    assert "def down(conn: Connection) -> None:" in source


def test_the_written_file_is_a_valid_migration(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    new_migration(folder, "create_users")
    [migration] = discover(folder)
    assert (migration.version, migration.name) == ("001", "create_users")
    assert migration.description == "Create users."
    assert migration.up is not None and migration.down is not None
    runner = MigrationRunner(f"sqlite:///{tmp_path / 'app.db'}", folder)
    assert [m.version for m in runner.upgrade()] == ["001"]
    assert runner.rollback_last() == migration


def test_new_keeps_the_width_and_prefix_of_the_files_there(make_migrations: MakeMigrations) -> None:
    folder = make_migrations(
        {
            "migration_008_a.py": "def up(conn): pass\n",
            "migration_009_b.py": "def up(conn): pass\n",
        }
    )
    assert new_migration(folder, "add_orders").name == "migration_010_add_orders.py"
    assert new_migration(folder, "add_items").name == "migration_011_add_items.py"


def test_new_refuses_a_folder_with_a_misnamed_file(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_a.py": "def up(conn): pass\n", "oops.py": ""})
    with pytest.raises(MigrationSourceError, match=r"oops\.py"):
        new_migration(folder, "add_orders")


def test_new_refuses_a_file_where_the_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "migrations").write_text("")
    with pytest.raises(MigrationSourceError, match="is a file"):
        new_migration(tmp_path / "migrations", "add_orders")


@pytest.mark.parametrize(
    ("name", "example"),
    [
        ("\u00fcmlaut", "umlaut"),
        ("add \u00fcber col", "add_uber_col"),
        ("\u65e5\u672c", "add_orders"),
    ],
)
def test_a_name_with_letters_outside_ascii_is_refused_not_cut(name: str, example: str) -> None:
    with pytest.raises(UsageError) as caught:
        next_file_name([], name)
    message = str(caught.value)
    assert message.startswith(f"cannot name a migration {name!r}: file names take ASCII")
    assert message.endswith(f"spell it in ASCII, e.g. {example}")


def test_a_name_too_long_for_a_file_name_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="with 300 characters: keep the name to 100 or fewer"):
        new_migration(tmp_path / "migrations", "x" * 300)
    assert not (tmp_path / "migrations").exists()
    assert new_migration(tmp_path / "migrations", "x" * 100).name == f"001_{'x' * 100}.py"


def test_a_folder_that_cannot_be_made_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(MigrationSourceError, match=r"cannot write .*001_a\.py: Not a directory"):
        new_migration(tmp_path / "notes.txt" / "migrations", "a")


def test_a_sql_migration_is_numbered_among_python_ones(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"004_a.py": "def up(conn): pass\n"})

    path = new_migration(folder, "add orders", sql=True)

    assert path.name == "005_add_orders.sql"
    text = path.read_text()
    assert text.startswith("-- Add orders.\n")
    assert "\n-- migrate:up\n" in text and "\n-- migrate:down\n" in text
    assert new_migration(folder, "more").name == "006_more.py"


def test_a_new_sql_migration_is_refused_until_its_up_section_holds_sql(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations({})
    path = new_migration(folder, "add orders", sql=True)
    runner = MigrationRunner(f"sqlite:///{tmp_path / 'app.db'}", folder)
    assert runner.migrations()[0].description == "Add orders."

    with pytest.raises(SqlFileError, match="the up section holds no statement"):
        runner.upgrade()

    path.write_text(path.read_text().replace("-- migrate:up\n", "-- migrate:up\nSELECT 1;\n"))
    assert [m.label for m in runner.upgrade()] == ["001_add_orders"]

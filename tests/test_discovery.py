"""Finding migration files: names, versions, lazy imports, packages."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from sqlalchemy import inspect

from backends import Backend
from conftest import MakeMigrations
from sqlmig import Migration, MigrationRunner, MigrationSourceError
from sqlmig._checksums import checksum
from sqlmig._discovery import discover, find_all, fingerprint

UP = "def up(conn):\n    pass\n"


def test_files_sort_by_integer_version_and_ignore_what_is_not_a_migration(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(
        {
            "010_ten.py": UP,
            "9_nine.py": UP,
            "migration_002_add_user_preferences.py": UP,
            "__init__.py": "",
            "_helpers.py": "",
            ".hidden.py": "",
            "README.md": "notes",
        }
    )
    (folder / "__pycache__").mkdir()

    found = discover(folder)

    assert [(m.version, m.name) for m in found] == [
        ("002", "add_user_preferences"),
        ("9", "nine"),
        ("010", "ten"),
    ]


def test_a_python_file_with_a_bad_name_is_an_error(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_ok.py": UP, "add_users.py": UP})

    with pytest.raises(MigrationSourceError, match=r"add_users\.py: file name does not match"):
        discover(folder)


def test_the_same_version_twice_is_an_error(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_a.py": UP, "1_b.py": UP})

    with pytest.raises(MigrationSourceError, match="same version 1: renumber") as info:
        discover(folder)
    assert "001_a.py" in str(info.value) and "1_b.py" in str(info.value)


def test_find_all_keeps_both_files_of_one_version(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_a.py": UP, "1_b.py": UP, "002_c.py": UP})

    assert sorted(m.name for m in find_all(folder)) == ["a", "b", "c"]


def test_the_fingerprint_is_each_files_checksum_by_integer_version(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({"001_a.py": UP, "010_b.py": UP + "# b\n"})

    assert fingerprint(folder) == {m.number: m.checksum for m in discover(folder)}
    assert set(fingerprint(str(folder)) or ()) == {1, 10}


def test_the_fingerprint_leaves_to_discover_what_it_cannot_tell_cheaply(
    make_migrations: MakeMigrations,
) -> None:
    assert fingerprint([Migration("001", "a", up=print)]) is None
    assert fingerprint(make_migrations({"001_a.py": UP, "1_b.py": UP})) is None
    with pytest.raises(MigrationSourceError, match=r"add_users\.py: file name does not match"):
        fingerprint(make_migrations({"add_users.py": UP}))


def test_discovery_reads_bytes_and_imports_nothing(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_loud.py": '"""Loud step."""\nraise SystemExit("imported!")\n'})

    (migration,) = discover(folder)

    assert migration.checksum == checksum((folder / "001_loud.py").read_bytes())
    assert migration.description == "Loud step."  # read from the source, not by importing
    assert not migration.loaded


def test_a_list_of_migration_objects_is_validated() -> None:
    def up(conn: object) -> None:
        pass

    steps = [Migration("2", "b", up=up), Migration("001", "a", up=up)]
    assert [m.version for m in discover(steps)] == ["001", "2"]
    with pytest.raises(MigrationSourceError, match="same version"):
        discover([Migration("1", "a", up=up), Migration("01", "b", up=up)])
    with pytest.raises(MigrationSourceError, match="not a number"):
        Migration("v1", "a", up=up)
    with pytest.raises(MigrationSourceError, match="has no up"):
        Migration("1", "a")


def test_migrations_inside_a_zipped_package_are_found_and_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "shipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipapp_pkg/__init__.py", "")
        zf.writestr("zipapp_pkg/migrations/__init__.py", "")
        zf.writestr("zipapp_pkg/migrations/_helpers.py", "TABLE = 'zipped'\n")
        zf.writestr(
            "zipapp_pkg/migrations/001_create.py",
            '"""From a zip."""\nfrom sqlalchemy import text\nfrom ._helpers import TABLE\n'
            "def up(conn):\n    conn.execute(text(f'CREATE TABLE {TABLE} (id INTEGER)'))\n",
        )
    monkeypatch.syspath_prepend(str(archive))

    (migration,) = discover("zipapp_pkg.migrations")

    assert migration.version == "001" and migration.description == "From a zip."
    assert migration.up.__globals__["TABLE"] == "zipped"  # relative import resolved


# -- versions: ASCII digits that fit the history --------------------------------


#: ARABIC-INDIC DIGIT TWO, ZERO ZERO ONE, and FULLWIDTH DIGIT ONE: str.isdigit() says yes to each.
@pytest.mark.parametrize(
    "name", ["\u0662_b.py", "migration_\u0660\u0660\u0661_b.py", "\uff11_fullwidth.py"]
)
def test_digits_of_other_scripts_are_not_versions(
    make_migrations: MakeMigrations, name: str
) -> None:
    folder = make_migrations({"001_a.py": "def up(conn): pass\n", name: "def up(conn): pass\n"})
    with pytest.raises(MigrationSourceError, match=rf"{name}: file name does not match"):
        discover(folder)


def test_a_version_in_other_digits_built_in_code_is_refused() -> None:
    with pytest.raises(MigrationSourceError, match="'\u0662' is not a number: use the digits 0-9"):
        Migration("\u0662", "b", up=lambda conn: None)


def test_a_version_longer_than_the_history_column_is_refused_naming_the_file(
    make_migrations: MakeMigrations,
) -> None:
    long = "1" * 40
    folder = make_migrations({f"{long}_b.py": "def up(conn): pass\n"})
    with pytest.raises(MigrationSourceError) as caught:
        discover(folder)
    assert caught.value.path == str(folder / f"{long}_b.py")
    assert str(caught.value).startswith(f"{folder / long}_b.py: version {long} has 40 digits")
    assert "\n" not in str(caught.value)
    with pytest.raises(MigrationSourceError, match="has 33 digits, more than the 32"):
        Migration("1" * 33, "b", up=lambda conn: None)
    assert Migration("1" * 32, "b", up=lambda conn: None).number == int("1" * 32)


def test_the_longest_version_is_what_the_history_column_holds() -> None:
    from sqlalchemy import MetaData

    from sqlmig import history_table
    from sqlmig._migration import MAX_VERSION_LENGTH

    column = history_table(MetaData()).c.version
    assert column.type.length == MAX_VERSION_LENGTH  # type: ignore[attr-defined]


def test_a_too_long_version_stops_the_upgrade_before_any_write(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_a.py": "def up(conn): pass\n",
            f"{'2' * 40}_b.py": "def up(conn): pass\n",
        }
    )
    runner = MigrationRunner(backend.url, folder)
    for call in (runner.upgrade, runner.status, runner.dry_run):
        with pytest.raises(MigrationSourceError, match="has 40 digits"):
            call()
    engine = backend.engine()
    try:
        assert inspect(engine).get_table_names() == []  # not even the history table
    finally:
        engine.dispose()


def test_a_target_in_other_digits_is_unknown(make_migrations: MakeMigrations) -> None:
    from sqlmig import UsageError

    folder = make_migrations({"002_b.py": "def up(conn): pass\n"})
    runner = MigrationRunner(f"sqlite:///{folder.parent / 'app.db'}", folder)
    with pytest.raises(UsageError, match="unknown target '\u0662'"):
        runner.upgrade("\u0662")
    with pytest.raises(UsageError, match="cannot baseline at '\u0662'"):
        runner.baseline("\u0662")
    assert runner.status().total_applied == 0

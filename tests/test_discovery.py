"""Finding migration files: names, versions, lazy imports, packages."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from conftest import MakeMigrations
from sqlmig import Migration, MigrationSourceError
from sqlmig.discovery import checksum, discover, find_all, fingerprint

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


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationSourceError, match="does not exist"):
        discover(tmp_path / "nowhere")


def test_discovery_reads_bytes_and_imports_nothing(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_loud.py": '"""Loud step."""\nraise SystemExit("imported!")\n'})

    (migration,) = discover(folder)

    assert migration.checksum == checksum((folder / "001_loud.py").read_bytes())
    assert migration.description == "Loud step."  # read from the source, not by importing
    assert not migration.loaded


def test_checksums_ignore_line_endings() -> None:
    assert checksum(b"a\r\nb\r\n") == checksum(b"a\nb\n") == checksum(b"a\rb\r")
    assert checksum(b"a\nb\n") != checksum(b"a\nc\n")


def test_modules_load_under_private_names_without_touching_sys_path(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    source = '"""First."""\nNAME = __name__\ndef up(conn):\n    pass\n'
    one = discover(make_migrations({"001_same.py": source}, tmp_path / "one"))[0]
    two = discover(make_migrations({"001_same.py": source}, tmp_path / "two"))[0]
    path_before = list(sys.path)

    one.load()
    two.load()

    names = {m.up.__globals__["NAME"] for m in (one, two)}
    assert len(names) == 2 and all(n.startswith("sqlmig._loaded_") for n in names)
    assert sys.path == path_before
    assert not any(n in sys.modules for n in names)
    assert one.description == "First."


def test_module_errors_name_the_file_and_line(make_migrations: MakeMigrations) -> None:
    folder = make_migrations(
        {
            "001_syntax.py": "def up(conn):\n    return (\n",
            "002_imports.py": "import not_a_module_anywhere\ndef up(conn):\n    pass\n",
            "003_no_up.py": "def down(conn):\n    pass\n",
        }
    )
    syntax, imports, no_up = discover(folder)

    with pytest.raises(MigrationSourceError, match=r"001_syntax\.py:2: syntax error") as info:
        syntax.load()
    assert info.value.line == 2
    with pytest.raises(MigrationSourceError, match=r"002_imports\.py:1: .*ModuleNotFoundError"):
        imports.load()
    with pytest.raises(MigrationSourceError, match=r"003_no_up\.py: defines no up\(conn\)"):
        no_up.load()


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

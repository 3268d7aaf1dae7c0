"""What a migrations source names: folder, package or list, decided in one place."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import MakeMigrations
from sqlmig import Migration, MigrationSourceError
from sqlmig._sources import FileSource, from_setting, migrations_folder, resolve

UP = "def up(conn):\n    pass\n"


def up(conn: object) -> None:
    pass


def test_a_folder_is_its_files(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_a.py": UP})

    for given in (folder, str(folder)):
        found = resolve(given)
        assert isinstance(found, FileSource)
        assert found.root == folder and found.package is None


def test_a_list_is_its_migrations_and_holds_nothing_else() -> None:
    steps = [Migration("2", "b", up=up), Migration("001", "a", up=up)]

    assert resolve(steps) == steps
    assert resolve(tuple(steps)) == steps
    with pytest.raises(MigrationSourceError, match=r"holds 42, not a sqlmig\.Migration nor"):
        resolve([*steps, 42])  # type: ignore[list-item]


def test_a_list_may_hold_sources_whose_steps_it_joins(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"003_c.py": UP})
    steps = [Migration("2", "b", up=up)]

    assert [m.label for m in resolve([*steps, str(folder)])] == ["2_b", "003_c"]
    with pytest.raises(MigrationSourceError, match="does not exist"):
        resolve([*steps, str(folder / "nowhere")])


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationSourceError, match="does not exist"):
        resolve(tmp_path / "nowhere")


def test_a_file_is_no_folder(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_a.py": UP})

    with pytest.raises(MigrationSourceError, match="is a file, not a folder"):
        resolve(folder / "001_a.py")


def test_a_dotted_name_that_is_neither_package_nor_folder_says_so() -> None:
    with pytest.raises(
        MigrationSourceError,
        match=r"'nosuchpkg_x\.migrations' is neither an importable package nor a folder",
    ):
        resolve("nosuchpkg_x.migrations")


def test_a_dotted_name_that_is_a_module_says_it_is_not_a_package() -> None:
    with pytest.raises(MigrationSourceError, match=r"'sqlmig\.config' is a module, not a package"):
        resolve("sqlmig.config")


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable package ``srcpkg_<n>.migrations`` with one file, under ``tmp_path/lib``."""
    name = f"srcpkg_{len(sys.modules)}"
    folder = tmp_path / "lib" / name / "migrations"
    folder.mkdir(parents=True)
    (folder.parent / "__init__.py").write_text("")
    (folder / "__init__.py").write_text("")
    (folder / "001_a.py").write_text(UP)
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    return f"{name}.migrations"


def test_a_dotted_name_is_a_package_before_a_folder(
    package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / package).mkdir()  # a folder of the same name in the current directory

    found = resolve(package)

    assert isinstance(found, FileSource) and found.package == package
    assert migrations_folder(package) == tmp_path / "lib" / package.replace(".", "/")


def test_a_setting_is_a_folder_relative_to_its_file_or_a_package(
    package: str, tmp_path: Path
) -> None:
    base = tmp_path / "project"
    (base / "db").mkdir(parents=True)

    assert from_setting("db", base) == str(base / "db")
    assert from_setting("missing", base) == str(base / "missing")
    assert from_setting(str(tmp_path), base) == str(tmp_path)
    assert from_setting(package, base) == package
    assert from_setting("no_such.package", base) == "no_such.package"
    (base / "local.migrations").mkdir()
    assert from_setting("local.migrations", base) == str(base / "local.migrations")

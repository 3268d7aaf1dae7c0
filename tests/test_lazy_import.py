"""status() and an upgrade with nothing pending never import a migration module."""

from __future__ import annotations

from pathlib import Path

from backends import Backend
from conftest import MakeMigrations
from sqlmig import MigrationRunner
from sqlmig._dialects import MODULES

RECORDS_ITS_IMPORT = """\
    '''A step that leaves a mark whenever its module is imported.'''
    from pathlib import Path

    Path({marker!r}).open("a").write("imported\\n")

    def up(conn):
        pass
    """


def imports(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def test_reading_and_no_op_upgrades_import_nothing(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    marker = tmp_path / "imports.log"
    folder = make_migrations({"001_marked.py": RECORDS_ITS_IMPORT.format(marker=str(marker))})
    runner = MigrationRunner(backend.url, folder)

    assert (
        runner.status().pending[0].description
        == "A step that leaves a mark whenever its module is imported."
    )
    runner.verify()
    assert imports(marker) == 0

    runner.upgrade()
    assert imports(marker) == 1

    assert runner.upgrade() == []
    assert runner.status().total_applied == 1
    runner.verify()
    assert imports(marker) == 1


def test_models_are_imported_only_by_a_comparison(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    """A runner given models runs every other call without importing them, or Alembic."""
    import subprocess
    import sys

    (tmp_path / "lazymodels.py").write_text("import sqlalchemy\nmetadata = sqlalchemy.MetaData()\n")
    folder = make_migrations({"001_nothing.py": "def up(conn):\n    pass\n"})
    probe = (
        "import sys; from sqlmig import MigrationRunner; "
        f"r = MigrationRunner({backend.url_string!r}, {str(folder)!r}, "
        "metadata='lazymodels:metadata'); r.upgrade(); r.status(); r.verify(); "
        "print(sorted(m for m in ('alembic', 'lazymodels') if m in sys.modules)); "
        "r.check(); print(sorted(m for m in ('alembic', 'lazymodels') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.split("\n")
    assert out[:2] == ["[]", "['alembic', 'lazymodels']"]


def test_a_run_imports_its_own_dialect_and_no_sql_file_reader(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    """Python steps on one database: the other databases' profiles, and the reader
    of ``.sql`` steps, stay unimported until a run needs them."""
    import subprocess
    import sys

    folder = make_migrations({"001_nothing.py": "def up(conn):\n    pass\n"})
    probe = (
        "import sys; from sqlmig import MigrationRunner; "
        f"MigrationRunner({backend.url_string!r}, {str(folder)!r}).upgrade(); "
        "print(sorted(m for m in sys.modules if m.startswith('sqlmig._dialects.') "
        "or m.startswith('sqlmig._sql_')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.strip()
    own = "sqlmig._dialects" + MODULES[backend.name][0]
    assert out == str(sorted(["sqlmig._dialects.base", own, "sqlmig._dialects.sql_syntax"]))


def test_a_start_up_with_nothing_to_do_imports_nothing_that_runs_steps(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    """What runs steps, takes the lock and edits the history is imported by the
    first run that has steps to run, not by ``import sqlmig`` or a no-op start-up."""
    import subprocess
    import sys

    folder = make_migrations({"001_nothing.py": "def up(conn):\n    pass\n"})
    MigrationRunner(backend.url, folder).upgrade()
    running = ["sqlmig._execution", "sqlmig._guard", "sqlmig._runs", "sqlmig._edits"]
    probe = (
        "import sys; from sqlmig import MigrationRunner; "
        f"assert MigrationRunner({backend.url_string!r}, {str(folder)!r}).upgrade() == []; "
        f"print([m for m in {running!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.strip()
    assert out == "[]"

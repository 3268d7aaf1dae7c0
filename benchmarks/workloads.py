"""The benchmark's workload: N steps, each creating a small table and inserting a row.

The same statements are written once per tool: sqlmig migration files, Alembic
revision files (a linear chain), yoyo-migrations step files. The floor (plain
SQLAlchemy) lists sqlmig's folder and builds the statements from the versions.
Standard library only: the measured child processes import this module.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

__all__ = [
    "FILE_NAME",
    "TOOLS",
    "downgrade_statement",
    "statements",
    "table_name",
    "width",
    "write_workload",
]

#: sqlmig's file-name rule, for the floor's own file listing.
FILE_NAME = re.compile(r"^(?:migration_)?(?P<version>\d+)_(?P<name>[A-Za-z0-9_]+)\.py$")

#: Every tool the benchmark knows, the floor first.
TOOLS = ("floor", "sqlmig", "alembic", "yoyo")


def width(n: int) -> int:
    """Digits in a version number for a run of ``n`` steps."""
    return max(4, len(str(n)))


def table_name(number: int) -> str:
    return f"bench_{number:06d}"


def statements(number: int) -> tuple[str, str]:
    """The two statements of step ``number``: create its table, insert its row."""
    table = table_name(number)
    return (
        f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, label VARCHAR(40) NOT NULL)",
        f"INSERT INTO {table} (id, label) VALUES (1, 'step {number}')",
    )


def downgrade_statement(number: int) -> str:
    return f"DROP TABLE {table_name(number)}"


def _padding(kib: int) -> str:
    """Comment lines adding about ``kib`` KiB to a file (never executed)."""
    if kib <= 0:
        return ""
    line = "# " + "padding " * 12 + "\n"
    return line * (kib * 1024 // len(line) + 1)


def _sqlmig_file(number: int, pad: str) -> str:
    create, insert = statements(number)
    return (
        textwrap.dedent(f'''\
        """Benchmark step {number}: create {table_name(number)} and insert one row."""

        def up(conn):
            conn.exec_driver_sql("{create}")
            conn.exec_driver_sql("{insert}")


        def down(conn):
            conn.exec_driver_sql("{downgrade_statement(number)}")
        ''')
        + pad
    )


def _alembic_file(number: int, previous: int | None, pad: str) -> str:
    create, insert = statements(number)
    down_revision = f'"r{previous:06d}"' if previous is not None else "None"
    return (
        textwrap.dedent(f'''\
        """Benchmark step {number}: create {table_name(number)} and insert one row."""
        from alembic import op

        revision = "r{number:06d}"
        down_revision = {down_revision}
        branch_labels = None
        depends_on = None


        def upgrade():
            op.execute("{create}")
            op.execute("{insert}")


        def downgrade():
            op.execute("{downgrade_statement(number)}")
        ''')
        + pad
    )


def _yoyo_file(number: int, pad: str) -> str:
    create, insert = statements(number)
    return (
        textwrap.dedent(f'''\
        """Benchmark step {number}: create {table_name(number)} and insert one row."""
        from yoyo import step


        def apply(conn):
            cursor = conn.cursor()
            cursor.execute("{create}")
            cursor.execute("{insert}")


        def rollback(conn):
            conn.cursor().execute("{downgrade_statement(number)}")


        steps = [step(apply, rollback)]
        ''')
        + pad
    )


ALEMBIC_ENV = textwrap.dedent('''\
    """Alembic environment for the benchmark: one transaction per step.

    On SQLite the engine gets SQLAlchemy's documented BEGIN recipe, as the floor
    does, so each step's transaction is a real one.
    """
    from alembic import context
    from sqlalchemy import create_engine, event

    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, record):
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN")

    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
    ''')


def write_workload(root: Path, tool: str, n: int, pad_kib: int = 0) -> Path:
    """Write ``tool``'s files for ``n`` steps under ``root``; return the folder to pass."""
    pad = _padding(pad_kib)
    digits = width(n)
    folder = root / tool
    if folder.exists():
        return folder
    if tool in ("floor", "sqlmig"):
        folder.mkdir(parents=True)
        for number in range(1, n + 1):
            (folder / f"{number:0{digits}d}_step.py").write_text(_sqlmig_file(number, pad))
        return folder
    if tool == "alembic":
        versions = folder / "versions"
        versions.mkdir(parents=True)
        (folder / "env.py").write_text(ALEMBIC_ENV)
        for number in range(1, n + 1):
            previous = number - 1 if number > 1 else None
            text = _alembic_file(number, previous, pad)
            (versions / f"r{number:0{digits}d}_step.py").write_text(text)
        return folder
    if tool == "yoyo":
        folder.mkdir(parents=True)
        for number in range(1, n + 1):
            (folder / f"{number:0{digits}d}_step.py").write_text(_yoyo_file(number, pad))
        return folder
    raise ValueError(f"unknown tool {tool!r}")

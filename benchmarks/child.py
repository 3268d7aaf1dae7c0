"""One measured process: ``python child.py TOOL ACTION URL FOLDER``.

ACTION is ``import``, ``upgrade``, ``check`` (the start-up call with every
step applied) or ``downgrade`` (to base). It prints one JSON line: the
in-process seconds spent importing (``import_s``) and working after imports
(``work_s``), and the peak RSS in KiB (``maxrss_kib``). The parent times the
whole process from start to exit.

Nothing but the standard library is imported before the clock starts.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

from workloads import FILE_NAME, downgrade_statement, statements  # noqa: E402

Work = Callable[[], Any]


def _import_driver(url: str) -> None:
    """Import the driver and SQLAlchemy's dialect module, so work time excludes them."""
    if url.startswith("sqlite"):
        import sqlite3  # noqa: F401

        import sqlalchemy.dialects.sqlite.pysqlite
    else:
        import psycopg  # noqa: F401
        import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401


# -- the floor: plain SQLAlchemy ---------------------------------------------------

FLOOR_HISTORY = (
    "CREATE TABLE IF NOT EXISTS floor_history (version VARCHAR(32) PRIMARY KEY, "
    "name VARCHAR(255) NOT NULL, applied_at TIMESTAMP NOT NULL)"
)


def _floor_engine(url: str) -> Any:
    from sqlalchemy import create_engine, event

    engine = create_engine(url)
    if engine.dialect.name == "sqlite":  # SQLAlchemy's documented recipe for a real BEGIN

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

    return engine


def _floor_files(folder: str) -> list[tuple[int, str, str]]:
    found = []
    for name in os.listdir(folder):
        match = FILE_NAME.match(name)
        if match:
            found.append((int(match["version"]), match["version"], match["name"]))
    found.sort()
    return found


def floor(action: str, url: str, folder: str) -> Work:
    from sqlalchemy import text

    insert = text("INSERT INTO floor_history (version, name, applied_at) VALUES (:v, :n, :t)")
    delete = text("DELETE FROM floor_history WHERE version = :v")

    def upgrade() -> int:
        engine = _floor_engine(url)
        files = _floor_files(folder)
        with engine.connect() as conn:
            with conn.begin():
                conn.exec_driver_sql(FLOOR_HISTORY)
                applied = {r[0] for r in conn.exec_driver_sql("SELECT version FROM floor_history")}
            done = 0
            for number, version, name in files:
                if version in applied:
                    continue
                with conn.begin():
                    for statement in statements(number):
                        conn.exec_driver_sql(statement)
                    conn.execute(insert, {"v": version, "n": name, "t": datetime.now(UTC)})
                done += 1
        engine.dispose()
        return done

    def check() -> int:
        engine = _floor_engine(url)
        files = _floor_files(folder)
        with engine.connect() as conn, conn.begin():
            applied = {r[0] for r in conn.exec_driver_sql("SELECT version FROM floor_history")}
        engine.dispose()
        return len([f for f in files if f[1] not in applied])

    def downgrade() -> int:
        engine = _floor_engine(url)
        with engine.connect() as conn:
            with conn.begin():
                rows = conn.exec_driver_sql("SELECT version FROM floor_history").all()
            versions = sorted((r[0] for r in rows), key=int, reverse=True)
            for version in versions:
                with conn.begin():
                    conn.exec_driver_sql(downgrade_statement(int(version)))
                    conn.execute(delete, {"v": version})
        engine.dispose()
        return len(versions)

    return {"upgrade": upgrade, "check": check, "downgrade": downgrade}[action]


# -- sqlmig ---------------------------------------------------------------------------


def sqlmig(action: str, url: str, folder: str) -> Work:
    from sqlmig import MigrationRunner

    if action == "downgrade":
        return lambda: len(MigrationRunner(url, folder).downgrade("base"))
    return lambda: len(MigrationRunner(url, folder).upgrade())  # "check": nothing pending


# -- Alembic ----------------------------------------------------------------------------


def alembic(action: str, url: str, folder: str) -> Work:
    from alembic import command
    from alembic.config import Config

    def config() -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", folder)
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        return cfg

    if action == "downgrade":
        return lambda: command.downgrade(config(), "base")
    return lambda: command.upgrade(config(), "head")


# -- yoyo-migrations ----------------------------------------------------------------------


def yoyo(action: str, url: str, folder: str) -> Work:
    from yoyo import get_backend, read_migrations

    def run() -> int:
        backend = get_backend(url)
        migrations = read_migrations(folder)
        with backend.lock():
            if action == "downgrade":
                todo = backend.to_rollback(migrations)
                backend.rollback_migrations(todo)
            else:
                todo = backend.to_apply(migrations)
                backend.apply_migrations(todo)
        backend.connection.close()
        return len(todo)

    return run


IMPORTS = {
    "floor": (),
    "sqlmig": ("sqlmig",),
    "alembic": ("alembic.command", "alembic.config"),
    "yoyo": ("yoyo",),
}


def measure_import(tool: str) -> dict[str, float]:
    import importlib

    before = time.perf_counter()
    importlib.import_module("sqlalchemy")
    between = time.perf_counter()
    for module in IMPORTS[tool]:
        importlib.import_module(module)
    after = time.perf_counter()
    return {"sqlalchemy_s": between - before, "tool_s": after - between}


def main(argv: list[str]) -> None:
    tool, action, url, folder = argv
    result: dict[str, Any] = {"tool": tool, "action": action}
    if action == "import":
        result.update(measure_import(tool))
        imported = time.perf_counter()
        result["import_s"] = imported - STARTED
        result["work_s"] = 0.0
    else:
        import sqlalchemy  # noqa: F401

        _import_driver(url)
        work = {"floor": floor, "sqlmig": sqlmig, "alembic": alembic, "yoyo": yoyo}[tool](
            action, url, folder
        )
        imported = time.perf_counter()
        result["steps"] = work()
        done = time.perf_counter()
        result["import_s"] = imported - STARTED
        result["work_s"] = done - imported
    result["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if not isinstance(result.get("steps"), int):
        result["steps"] = None
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])

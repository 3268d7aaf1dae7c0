"""Migrating from asyncio code: ``AsyncConnection.run_sync`` with aiosqlite and asyncpg."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "greenlet", reason="SQLAlchemy's asyncio needs greenlet: pip install 'sqlalchemy[asyncio]'"
)

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from backends import Backend, fresh_database
from conftest import MakeMigrations, count, tables
from sqlmig import MigrationFailed, MigrationRunner
from sqlmig._aio import upgrade_async
from sqlmig._dialects.postgresql import AdvisoryLock
from sqlmig._locking import lock_key

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}

CREATE = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE {t} (id INTEGER PRIMARY KEY)"))

    def down(conn):
        conn.execute(text("DROP TABLE {t}"))
    """

RAISES = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE half_done (id INTEGER)"))
        raise RuntimeError("step 002 breaks")
    """


@pytest.fixture(params=sorted(ASYNC_DRIVERS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """SQLite (through aiosqlite) and PostgreSQL (through asyncpg); MariaDB has no async
    driver among sqlmig's extras."""
    with fresh_database(request.param, tmp_path) as db:
        yield db


def async_engine(backend: Backend) -> AsyncEngine:
    return create_async_engine(backend.url.set(drivername=ASYNC_DRIVERS[backend.name]))


def arun(backend: Backend, make: Any) -> Any:
    """Run ``make(engine)`` on a fresh async engine, bounded in time, then dispose of it."""

    async def main() -> Any:
        engine = async_engine(backend)
        try:
            coroutine: Awaitable[Any] = make(engine)
            return await asyncio.wait_for(coroutine, timeout=120)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_run_sync_migrates_with_an_async_engine(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_a.py": CREATE.format(t="a"), "002_b.py": CREATE.format(t="b")})

    async def migrate(engine: AsyncEngine) -> tuple[list[str], bool]:
        async with engine.connect() as conn:  # outside a transaction: each step commits
            applied = await conn.run_sync(
                lambda sync_conn: MigrationRunner(sync_conn, folder).upgrade()
            )
            return [m.version for m in applied], conn.in_transaction()

    versions, left_open = arun(backend, migrate)

    assert versions == ["001", "002"]
    assert not left_open
    assert {"a", "b", "migrations"} <= tables(backend)  # committed: seen by another connection
    assert count(backend, "SELECT count(*) FROM migrations") == 2


def test_a_failing_step_is_rolled_back_through_the_async_driver(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_a.py": CREATE.format(t="a"), "002_raises.py": RAISES})

    async def migrate(engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            await conn.run_sync(lambda sync_conn: MigrationRunner(sync_conn, folder).upgrade())

    with pytest.raises(MigrationFailed, match=r"migration 002 .*step 002 breaks") as caught:
        arun(backend, migrate)

    assert [m.version for m in caught.value.applied] == ["001"]
    assert tables(backend) == {"a", "migrations"}  # DDL of 002 rolled back, on SQLite too


def test_run_sync_inside_the_callers_transaction_is_undone_by_its_rollback(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_a.py": CREATE.format(t="a"), "002_b.py": CREATE.format(t="b")})

    async def migrate(engine: AsyncEngine) -> list[str]:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            applied = await conn.run_sync(
                lambda sync_conn: MigrationRunner(sync_conn, folder).upgrade()
            )
            seen = await conn.run_sync(lambda sync_conn: _names(sync_conn))
            await transaction.rollback()
            return [m.version for m in applied] + sorted(seen)

    assert arun(backend, migrate) == ["001", "002", "a", "b", "migrations"]
    assert tables(backend) == set()


def _names(conn: Connection) -> set[str]:
    from sqlalchemy import inspect

    return set(inspect(conn).get_table_names())


def test_upgrade_async_applies_pending_steps_once(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_a.py": CREATE.format(t="a"), "002_b.py": CREATE.format(t="b")})

    async def migrate(engine: AsyncEngine) -> tuple[list[str], list[str], list[str]]:
        first = await upgrade_async(engine, folder, "001")
        rest = await upgrade_async(engine, folder, lock_timeout=30)
        again = await upgrade_async(engine, folder)
        return [m.version for m in first], [m.version for m in rest], [m.version for m in again]

    assert arun(backend, migrate) == (["001"], ["002"], [])


def test_concurrent_upgrade_tasks_apply_each_step_once(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({f"{n:03d}_t{n}.py": CREATE.format(t=f"t{n}") for n in range(1, 4)})

    async def migrate(engine: AsyncEngine) -> list[list[str]]:
        results = await asyncio.gather(*(upgrade_async(engine, folder) for _ in range(3)))
        return [[m.version for m in applied] for applied in results]

    results = arun(backend, migrate)

    assert sorted(v for applied in results for v in applied) == ["001", "002", "003"]
    assert count(backend, "SELECT count(*) FROM migrations") == 3


def test_a_runner_waiting_for_the_lock_leaves_the_event_loop_free(
    tmp_path: Path, make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_migrations({"001_a.py": CREATE.format(t="a")})
    blocking: list[float] = []
    real_sleep = time.sleep

    def spy(seconds: float) -> None:
        try:
            asyncio.get_running_loop()
            blocking.append(seconds)  # a sleep on the event loop's own thread
        except RuntimeError:
            pass
        real_sleep(seconds)

    with fresh_database("postgresql", tmp_path) as backend:
        lock = AdvisoryLock(lock_key(backend.url.database, "public", "migrations"))
        holder = backend.engine(isolation_level="AUTOCOMMIT")
        try:
            with holder.connect() as conn:
                lock.acquire(conn, timeout=10)

                async def release_soon() -> None:
                    await asyncio.sleep(0.5)
                    lock.release(conn)

                async def migrate(engine: AsyncEngine) -> list[Any]:
                    return await asyncio.gather(upgrade_async(engine, folder), release_soon())

                monkeypatch.setattr(time, "sleep", spy)
                applied, _ = arun(backend, migrate)
                monkeypatch.undo()
        finally:
            holder.dispose()

    assert [m.version for m in applied] == ["001"]
    assert blocking == []


def test_raw_cursor_and_non_transactional_steps_work_through_the_async_drivers(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_raw.py": """\
            def up(conn):
                cursor = conn.connection.cursor()  # the bot runner's style, via the adapter
                cursor.execute("CREATE TABLE raw_t (id INTEGER)")
                cursor.execute("INSERT INTO raw_t (id) VALUES (1)")
                cursor.close()
            """,
            "002_outside.py": """\
            from sqlalchemy import text

            transactional = False

            def up(conn):
                conn.execute(text("CREATE INDEX ix_raw_t ON raw_t (id)"))
            """,
        }
    )

    async def migrate(engine: AsyncEngine) -> list[str]:
        return [m.version for m in await upgrade_async(engine, folder)]

    assert arun(backend, migrate) == ["001", "002"]
    assert count(backend, "SELECT count(*) FROM raw_t") == 1
    assert count(backend, "SELECT count(*) FROM migrations WHERE success = true") == 2


SWALLOWS = """\
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    def up(conn):
        conn.execute(text("CREATE TABLE kept (id INTEGER)"))
        try:
            conn.execute(text("SELECT id FROM no_such_table"))
        except DBAPIError:
            pass  # the step goes on
    """


def test_a_step_that_catches_a_database_error_is_told_apart_through_the_async_driver(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    """PostgreSQL aborts the step's transaction at the error; SQLite undoes the statement alone."""
    folder = make_migrations({"001_a.py": CREATE.format(t="a"), "002_swallows.py": SWALLOWS})

    async def migrate(engine: AsyncEngine) -> list[str]:
        async with engine.connect() as conn:
            applied = await conn.run_sync(
                lambda sync_conn: MigrationRunner(sync_conn, folder).upgrade()
            )
            return [m.version for m in applied]

    if not backend.profile.errors_abort_transaction:
        assert arun(backend, migrate) == ["001", "002"]
        assert "kept" in tables(backend)
        return
    with pytest.raises(MigrationFailed, match="caught a database error") as caught:
        arun(backend, migrate)

    assert [m.version for m in caught.value.applied] == ["001"]
    assert tables(backend) == {"a", "migrations"}
    assert count(backend, "SELECT count(*) FROM migrations") == 1

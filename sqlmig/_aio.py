"""Running migrations from asyncio code: a thin wrapper over ``AsyncConnection.run_sync``.

sqlmig itself is synchronous. An asyncio service runs it on one connection of
its ``AsyncEngine``; SQLAlchemy runs the synchronous calls on that connection's
async driver (aiosqlite, asyncpg, aiomysql)::

    async with engine.connect() as conn:
        await conn.run_sync(lambda sync_conn: MigrationRunner(sync_conn, "migrations").upgrade())

:func:`upgrade_async` is exactly that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._migration import Migration, StepCallback
from ._runner import MigrationRunner

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ._sources import MigrationsSource

__all__ = ["upgrade_async"]


async def upgrade_async(
    engine: AsyncEngine,
    migrations: MigrationsSource,
    target: str | int | None = None,
    *,
    table: str = "migrations",
    schema: str | None = None,
    lock_timeout: float = 60.0,
    allow_out_of_order: bool = True,
    on_step: StepCallback | None = None,
) -> list[Migration]:
    """``MigrationRunner(...).upgrade(target)`` on one connection of an ``AsyncEngine``.

    The keywords are :class:`MigrationRunner`'s (``table``, ``schema``,
    ``lock_timeout``, ``allow_out_of_order``, ``on_step``). Each step is
    committed as it finishes, as with a synchronous engine.

    Example::

        engine = create_async_engine("postgresql+asyncpg://app@db/app")
        applied = await upgrade_async(engine, "migrations")

    Raises:
        The errors of :meth:`MigrationRunner.upgrade`.
    """

    def run(sync_conn: Connection) -> list[Migration]:
        runner = MigrationRunner(
            sync_conn,
            migrations,
            table=table,
            schema=schema,
            lock_timeout=lock_timeout,
            allow_out_of_order=allow_out_of_order,
            on_step=on_step,
        )
        return runner.upgrade(target)

    async with engine.connect() as conn:
        return await conn.run_sync(run)

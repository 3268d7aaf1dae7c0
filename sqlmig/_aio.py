"""Running migrations from asyncio code: a thin wrapper over ``AsyncConnection.run_sync``.

sqlmig itself is synchronous. An asyncio service runs it on one connection of
its ``AsyncEngine``; SQLAlchemy runs the synchronous calls on that connection's
async driver (aiosqlite, asyncpg, aiomysql)::

    async with engine.connect() as conn:
        await conn.run_sync(lambda sync_conn: MigrationRunner(sync_conn, "migrations").upgrade())

:func:`upgrade_async` is exactly that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._migration import Migration
from ._runner import MigrationRunner

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ._sources import MigrationsSource

__all__ = ["upgrade_async"]


async def upgrade_async(
    engine: AsyncEngine,
    migrations: MigrationsSource,
    target: str | int | None = None,
    **runner_options: Any,
) -> list[Migration]:
    """``MigrationRunner(...).upgrade(target)`` on one connection of an ``AsyncEngine``.

    ``runner_options`` are :class:`MigrationRunner`'s keywords (``table``,
    ``schema``, ``lock_timeout``, ``allow_out_of_order``). Each step is
    committed as it finishes, as with a synchronous engine.

    Example::

        engine = create_async_engine("postgresql+asyncpg://app@db/app")
        applied = await upgrade_async(engine, "migrations")

    Raises:
        The errors of :meth:`MigrationRunner.upgrade`.
    """

    def run(sync_conn: Any) -> list[Migration]:
        return MigrationRunner(sync_conn, migrations, **runner_options).upgrade(target)

    async with engine.connect() as conn:
        return await conn.run_sync(run)

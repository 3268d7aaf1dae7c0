"""Taking over from Alembic: an ``alembic_version`` table read into sqlmig's history.

On the first write to a database whose sqlmig history is empty, when the
source is an Alembic chain and the database has an ``alembic_version`` table
naming a revision, every revision up to that one is recorded as applied
(nothing runs). This happens inside the write transaction that prepares the
history, under the migration lock, so two runners adopt once, and a run
killed half way leaves nothing. The ``alembic_version`` table itself is only
read: it stays naming the revision it named, so Alembic can take over again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Column, MetaData, String, Table, inspect, select
from sqlalchemy.engine import Connection

from ._errors import MissingMigration, UsageError
from ._migration import Migration

__all__ = ["VERSION_TABLE", "to_adopt"]

log = logging.getLogger("sqlmig")

#: The table where Alembic records its current revision (Alembic's default name).
VERSION_TABLE = "alembic_version"


def to_adopt(
    conn: Connection, migrations: Sequence[Migration], schema: str | None
) -> list[Migration]:
    """The steps ``alembic_version`` says Alembic applied: its revision and all before it.

    Empty when no step of ``migrations`` is an Alembic revision, or there is
    no ``alembic_version`` table, or it is empty. Reads only.

    Raises:
        MissingMigration: it names a revision that is not in the chain.
        UsageError: it names several revisions (Alembic branches).
    """
    from ._alembic_source import RevisionStep

    steps = [m for m in migrations if isinstance(m, RevisionStep)]
    if not steps or not inspect(conn).has_table(VERSION_TABLE, schema=schema):
        return []
    table = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32)), schema=schema)
    heads = [str(row[0]) for row in conn.execute(select(table.c.version_num))]
    if not heads:
        return []
    if len(heads) > 1:
        raise UsageError(
            f"{VERSION_TABLE} names {len(heads)} revisions ({', '.join(sorted(heads))}): "
            "Alembic has this database on several branches; merge them with Alembic "
            "(alembic merge, alembic upgrade heads) before sqlmig takes over"
        )
    head = heads[0]
    position = next((i for i, m in enumerate(steps) if m.revision == head), None)
    if position is None:
        raise MissingMigration(
            f"{VERSION_TABLE} names revision {head}, which is not in this Alembic chain: "
            "point sqlmig at the project this database was migrated with, or restore "
            "that revision's file; nothing was changed",
            versions=[head],
        )
    adopted = steps[: position + 1]
    log.info(
        "adopting %s at revision %s: recording %d revision(s) as applied, running none",
        VERSION_TABLE,
        head,
        len(adopted),
    )
    return list(adopted)

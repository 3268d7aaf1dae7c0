"""Taking over from Alembic: an ``alembic_version`` table read into sqlmig's history.

On a write to a database whose sqlmig history has no row (no table yet, or
an empty one), when the source is an Alembic chain and the database has an
``alembic_version`` table (or the one the project names, see
:class:`~sqlmig._alembic_source.VersionTable`) naming a revision, every
revision up to that one is recorded as applied (nothing runs). This happens
inside the write transaction that prepares the history, under the migration
lock, so two runners adopt once, and a run killed half way leaves nothing to
read as applied. On MySQL/MariaDB the history's ``CREATE TABLE`` commits
itself, so a run killed there leaves an empty table: the next run adopts into
it. The version table is only read, except by the step that undoes the
chain's first revision, which empties it as Alembic's ``downgrade base`` does
(else a history sqlmig emptied would be adopted again). Until the first
write, reads (``status``, ``dry_run``, ``upgrade``'s first look) see the
history as adoption will make it (:func:`as_adopted`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Column, MetaData, String, Table, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ._errors import ConfigError, MissingMigration, UsageError
from ._history import History
from ._migration import AppliedMigration, Migration

if TYPE_CHECKING:
    from ._alembic_source import RevisionStep
    from ._session import Session

__all__ = ["adoptable", "as_adopted", "may_adopt", "to_adopt"]

log = logging.getLogger("sqlmig")


def adoptable(history: History) -> bool:
    """Whether a write would adopt Alembic's version table into ``history``: it has no row.

    No table yet, or an empty one: the one a run killed while adopting on
    MySQL/MariaDB leaves (its ``CREATE TABLE`` committed itself, its rows did
    not). A history sqlmig emptied by undoing the chain has an empty version
    table too (see ``at_base``), so nothing is adopted there.
    """
    return not history.rows and not history.unreadable


def as_adopted(s: Session, migrations: Sequence[Migration], history: History) -> History:
    """``history`` as the next write will make it.

    With no history row yet, the revisions ``alembic_version`` names are
    shown applied (``applied_at`` is the time of this read: nothing is
    recorded), in a ``History`` whose ``exists`` is false (nothing written
    yet). Reads only, so that ``status``, ``dry_run`` and ``upgrade``'s
    first look agree with what the write does.

    Raises:
        MissingMigration, UsageError: as :func:`to_adopt`.
    """
    if not adoptable(history) or not _revisions(migrations):
        return history
    if s.nested:
        steps = _applied_by_alembic(s.conn, migrations)
    else:
        with s.conn.begin():
            steps = _applied_by_alembic(s.conn, migrations)
    if not steps:
        return history
    now = datetime.now(UTC)
    rows = [AppliedMigration(m.version, m.name, now, m.checksum, None, True) for m in steps]
    return History(rows, exists=False)


def to_adopt(conn: Connection, migrations: Sequence[Migration]) -> list[Migration]:
    """The steps ``alembic_version`` says Alembic applied: its revision and all before it.

    Empty when no step of ``migrations`` is an Alembic revision, or there is
    no ``alembic_version`` table, or it is empty. The table is where Alembic
    puts it: in the schema the project names, else in the connection's
    default schema (a tenant's run: the tenant's), wherever sqlmig's own
    history is. Reads only; logs what it adopts.

    Raises:
        MissingMigration: it names a revision that is not in the chain.
        UsageError: it names several revisions (Alembic branches).
    """
    adopted = _applied_by_alembic(conn, migrations)
    if adopted:
        log.info(
            "adopting %s at revision %s: recording %d revision(s) as applied, running none",
            _revisions(migrations)[0].version_table.name,
            getattr(adopted[-1], "revision", "?"),
            len(adopted),
        )
    return adopted


def may_adopt(migrations: Sequence[Migration]) -> bool:
    """Whether a first write may take over an ``alembic_version`` (the source is Alembic's)."""
    return bool(_revisions(migrations))


def _revisions(migrations: Sequence[Migration]) -> list[RevisionStep]:
    from ._alembic_source import RevisionStep  # no Alembic import: the class alone

    return [m for m in migrations if isinstance(m, RevisionStep)]


def _applied_by_alembic(conn: Connection, migrations: Sequence[Migration]) -> list[Migration]:
    steps = _revisions(migrations)
    if not steps:
        return []
    # where the chain's project names it; schema None: the connection's default one
    name, schema = steps[0].version_table.name, steps[0].version_table.schema
    if not inspect(conn).has_table(name, schema=schema):
        return []
    table = Table(name, MetaData(), Column("version_num", String(32)), schema=schema)
    try:
        heads = [str(row[0]) for row in conn.execute(select(table.c.version_num))]
    except DBAPIError as exc:  # not Alembic's table (no version_num), or not readable
        where = f"{schema}.{name}" if schema else name
        detail = (str(exc.orig).strip().splitlines() or ["?"])[0][:200]
        raise ConfigError(
            f"cannot read Alembic's version table {where} ({detail}): if Alembic's is "
            "another, name it with version_table = ... (and version_table_schema) in "
            "alembic.ini's [alembic] section; else grant the user SELECT on it",
            key="version_table",
        ) from exc
    if not heads:
        return []
    if len(heads) > 1:
        raise UsageError(
            f"{name} names {len(heads)} revisions ({', '.join(sorted(heads))}): "
            "Alembic has this database on several branches; merge them with Alembic "
            "(alembic merge, alembic upgrade heads) before sqlmig takes over"
        )
    head = heads[0]
    position = next((i for i, m in enumerate(steps) if getattr(m, "revision", None) == head), None)
    if position is None:
        raise MissingMigration(
            f"{name} names revision {head}, which is not in this Alembic chain: "
            "point sqlmig at the project this database was migrated with, or restore "
            "that revision's file; nothing was changed",
            versions=[head],
        )
    adopted: list[Migration] = list(steps[: position + 1])
    return adopted

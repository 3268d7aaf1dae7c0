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
it. The version table is only read, except by a step that undoes the revision
it names: it is moved back to the revision before, as Alembic's ``downgrade``
does, and emptied at the base (else a history sqlmig emptied would be adopted
again). So it never names a revision past the history's last step, unless
Alembic ran since sqlmig took over: every later run refuses that history
(:func:`refuse_alembic_ahead`), whose steps in between ran outside sqlmig. Until the first
write, reads (``status``, ``dry_run``, ``upgrade``'s first look) see the
history as adoption will make it (:func:`as_adopted`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ._errors import ConfigError, DirtyDatabase, MissingMigration, UsageError
from ._history import History
from ._migration import AppliedMigration, Migration

if TYPE_CHECKING:
    from ._alembic_source import RevisionStep
    from ._session import Session

__all__ = ["adoptable", "as_adopted", "may_adopt", "refuse_alembic_ahead", "to_adopt"]

log = logging.getLogger("sqlmig")


def adoptable(history: History) -> bool:
    """Whether a write would adopt Alembic's version table into ``history``: it has no row.

    No table yet, or an empty one: the one a run killed while adopting on
    MySQL/MariaDB leaves (its ``CREATE TABLE`` committed itself, its rows did
    not). A history sqlmig emptied by undoing the chain has an empty version
    table too (see ``step_back``), so nothing is adopted there.
    """
    return not history.rows and not history.unreadable


def as_adopted(s: Session, migrations: Sequence[Migration], history: History) -> History:
    """``history`` as the next write will make it.

    With no history row yet, the revisions ``alembic_version`` names are
    shown applied (``applied_at`` is the time of this read: nothing is
    recorded), in a ``History`` whose ``exists`` is false (nothing written
    yet). Reads only, so that ``status``, ``dry_run`` and ``upgrade``'s
    first look agree with what the write does.

    With history rows, it is checked against the version table instead
    (:func:`refuse_alembic_ahead`).

    Raises:
        DirtyDatabase: as :func:`refuse_alembic_ahead`.
        MissingMigration, UsageError: as :func:`to_adopt`.
    """
    if not _revisions(migrations):
        return history
    if not adoptable(history):  # taken over already: unless Alembic went on since
        if s.nested:
            refuse_alembic_ahead(s.conn, migrations, history)
        else:
            with s.conn.begin():
                refuse_alembic_ahead(s.conn, migrations, history)
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
    position = _named_position(conn, steps)
    return [] if position is None else list(steps[: position + 1])


def _named_position(conn: Connection, steps: list[RevisionStep]) -> int | None:
    """Where in ``steps`` the revision the version table names is (None: no table, no row).

    Raises:
        MissingMigration: it names a revision that is not in the chain.
        UsageError: it names several revisions (Alembic branches).
        ConfigError: the table cannot be read (not Alembic's).
    """
    if not steps:
        return None
    # where the chain's project names it; schema None: the connection's default one
    name, schema = steps[0].version_table.name, steps[0].version_table.schema
    if not inspect(conn).has_table(name, schema=schema):
        return None
    table = steps[0].version_table.table()
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
        return None
    if len(heads) > 1:
        raise UsageError(
            f"{name} names {len(heads)} revisions ({', '.join(sorted(heads))}): "
            "Alembic has this database on several branches; merge them with Alembic "
            "(alembic merge, alembic upgrade heads) before sqlmig takes over"
        )
    head = heads[0]
    position = next((i for i, m in enumerate(steps) if m.revision == head), None)
    if position is None:
        raise MissingMigration(
            f"{name} names revision {head}, which is not in this Alembic chain: "
            "point sqlmig at the project this database was migrated with, or restore "
            "that revision's file; nothing was changed",
            versions=[head],
        )
    return position


def refuse_alembic_ahead(
    conn: Connection, migrations: Sequence[Migration], history: History
) -> None:
    """Refuse a history that Alembic went past after sqlmig took over.

    sqlmig never moves the version table ahead (it only moves it back, when
    it undoes the revision the table names), so a version table naming a
    revision past every step the history records was written by Alembic
    since: the revisions in between ran outside sqlmig, and would run again.
    Reads only; nothing to do without history rows (adoption's case) or
    without an Alembic chain.

    Raises:
        DirtyDatabase: the version table names a later step than the history.
        MissingMigration, UsageError, ConfigError: as :func:`to_adopt`.
    """
    steps = _revisions(migrations)
    if not steps or not history.rows:
        return
    position = _named_position(conn, steps)
    if position is None:
        return
    named = steps[position]
    last = max(int(r.version) for r in history.rows)
    if named.number <= last:
        return
    table = steps[0].version_table.name
    versions = [m.version for m in steps if last < m.number <= named.number]
    raise DirtyDatabase(
        f"{table} names revision {named.revision} (step {named.version}), past the last step "
        f"sqlmig's history records ({last}): Alembic migrated this database after sqlmig "
        f"took over, so steps {', '.join(versions)} ran outside sqlmig; record them with "
        f"sqlmig stamp {versions[0]} (and each after it), or delete the rows of sqlmig's "
        "history table so that sqlmig takes over again; nothing was changed",
        versions=versions,
    )

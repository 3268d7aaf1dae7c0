"""SQL scripts of steps, written without a database (``sqlmig upgrade --sql``).

Each step's ``up(conn)`` or ``down(conn)`` runs against a
:class:`~sqlmig._offline.ScriptConnection`, which writes its statements as
SQL text. The script is one transaction per step (begun as the dialect's
profile writes it), the step's statements, its history row (an ``INSERT``, or
a ``DELETE`` when undoing), and ``COMMIT``; where DDL commits itself (MySQL,
MariaDB), a comment says so. A step that needs an answer from the database (it
reads rows or a row count, reflects the schema) cannot be written: the script
stops there with ``UsageError`` naming the step and its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.exc import NoInspectionAvailable
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql import ClauseElement

from ._alembic_adoption import may_adopt
from ._dialects import DialectProfile, profile_named
from ._errors import MigrationFailed, UsageError
from ._history import HistoryStore, ServerNow
from ._migration import AppliedMigration, Migration, StepFunction, check_reversible
from ._offline import Refused, ScriptConnection, Unwritable, tidy
from ._planning import compare, plan_downgrade, plan_upgrade, resolve_target

__all__ = ["DIALECTS", "dialect_choice", "render_script"]

#: The dialects a script can be written for.
DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb")


def dialect_choice(name: str) -> str:
    """``name`` as a dialect a script is written for.

    Raises:
        UsageError: not one of :data:`DIALECTS`.
    """
    if name not in DIALECTS:
        raise UsageError(
            f"cannot write a SQL script for the dialect {name!r}: choose one of "
            f"{', '.join(DIALECTS)}"
        )
    return name


def render_script(
    migrations: Sequence[Migration],
    dialect: str,
    target: str | int | None = None,
    *,
    downgrade: bool = False,
    from_version: str | int | None = None,
    table: str = "migrations",
    schema: str | None = None,
    tenant: bool = False,
) -> str:
    """The SQL script of ``upgrade(target)`` (or ``downgrade(target)``) for ``dialect``.

    ``from_version`` is the version taken as applied (with every one below
    it); None: nothing applied, and the script creates the history table first.
    ``tenant``: ``schema`` is a tenant's (``steps_in_schema``): the script
    creates it if missing and makes it the search path of the steps.

    Raises:
        UsageError: an unknown dialect or version, a downgrade with nothing
            applied, or a step that needs data from the database.
        IrreversibleMigration: a step to undo has no ``down()``.
        MigrationFailed: a step raised while its SQL was written.
    """
    dialect = dialect_choice(dialect)
    profile = profile_named(dialect)
    store = HistoryStore(table, schema)
    applied = _applied(migrations, from_version)
    comparison = compare(migrations, applied)
    header = [
        f"-- sqlmig {'downgrade' if downgrade else 'upgrade'} script for {dialect}",
        f"-- taken as applied: {applied[-1].version if applied else 'none'}",
    ]
    if not profile.transactional_ddl:
        header.append(
            f"-- {dialect} commits each DDL statement itself: a step that fails part-way "
            "leaves its earlier statements applied"
        )
    if not applied and may_adopt(migrations):
        header.append(
            "-- an Alembic chain: for a database Alembic migrated, give --from the step of "
            "the revision its version table names (sqlmig status on it shows that step), "
            "else this script runs every revision again"
        )
    parts = ["\n".join(header)]
    if tenant and schema:
        parts.append(_tenant_schema(schema, dialect, profile))
    previous: Migration | None = None
    if downgrade:
        if target is None:
            raise UsageError("downgrade --sql needs a target: a version, or 'base' to undo all")
        if not applied:
            raise UsageError(
                "nothing is taken as applied, so there is nothing to undo: give the version "
                "the database is at with --from VERSION (from_version=)"
            )
        undo = [m for _row, m in plan_downgrade(comparison, target)]
        check_reversible(undo)
        for migration in undo:
            parts.append(_step(migration, "down", dialect, profile, store, previous))
            previous = migration
    else:
        if not applied:
            create = CreateTable(store.table, if_not_exists=True)
            statement = tidy(str(create.compile(dialect=ScriptConnection(dialect).dialect)))
            parts.append(_transaction("-- the history table", [statement], profile, True))
        for migration in plan_upgrade(comparison, target, allow_out_of_order=True):
            parts.append(_step(migration, "up", dialect, profile, store, previous))
            previous = migration
    if len(parts) == 1 + (not downgrade and not applied):
        parts.append(f"-- nothing to {'undo' if downgrade else 'apply'}")
    return "\n\n".join(parts) + "\n"


def _tenant_schema(schema: str, dialect: str, profile: DialectProfile) -> str:
    """The lines that make the tenant's ``schema`` exist and be the steps' search path."""
    if profile.create_tenant_schema is None or profile.script_tenant_schema is None:
        raise UsageError(
            f"a schema per tenant (steps_in_schema) is PostgreSQL's; {dialect} has no search "
            "path for the steps: write the script for postgresql"
        )
    name = ScriptConnection(dialect).dialect.identifier_preparer.quote_identifier(schema)
    return "\n".join(
        [
            "-- the tenant's schema: created if missing, and the search path of the steps",
            f"{profile.create_tenant_schema.format(name=name)};",
            f"{profile.script_tenant_schema.format(name=name)};",
        ]
    )


def _applied(
    migrations: Sequence[Migration], from_version: str | int | None
) -> list[AppliedMigration]:
    """History rows for every step up to ``from_version``, as if applied in order."""
    if from_version is None:
        return []
    try:
        limit = resolve_target(from_version, compare(migrations, []))
    except UsageError:
        raise UsageError(
            f"cannot take {str(from_version).strip()!r} as applied: no migration file has that "
            "version; give the version the database is at (sqlmig status shows it)"
        ) from None
    if limit is None or limit < 0:
        return []
    rows = [m for m in migrations if m.number <= limit]
    epoch = datetime.fromtimestamp(0, UTC)
    return [AppliedMigration(m.version, m.name, epoch, m.checksum, None, True) for m in rows]


def _transaction(
    title: str, statements: list[str], profile: DialectProfile, transactional: bool
) -> str:
    lines = [title]
    if transactional:
        lines.append(f"{profile.script_begin};")
    for statement in statements:
        delimiter = profile.script_delimiter
        if delimiter and ";" in statement:  # a body the client would cut at its first ;
            ended = _ended(statement, delimiter, profile)
            lines.extend([f"DELIMITER {delimiter}", ended, "DELIMITER ;"])
        else:
            lines.append(_ended(statement, ";", profile))
    if transactional:
        lines.append("COMMIT;")
    return "\n".join(lines)


def _ended(statement: str, terminator: str, profile: DialectProfile) -> str:
    """``statement`` with its terminator, on a line of its own when the last line may
    end in a comment (``-- note``), which would hide it from the client."""
    last = statement.rpartition("\n")[2]
    comment = "--" in last or (profile.sql_syntax.hash_comments and "#" in last)
    return f"{statement}\n{terminator}" if comment else f"{statement}{terminator}"


def _step(
    migration: Migration,
    action: str,
    dialect: str,
    profile: DialectProfile,
    store: HistoryStore,
    previous: Migration | None,
) -> str:
    """One step's part of the script: its transaction, statements and history row."""
    migration.load(dialect)
    fn = migration.up if action == "up" else migration.down
    assert fn is not None  # check_reversible() saw to it
    conn = ScriptConnection(dialect)
    _run(conn, migration, fn, action, previous)
    t = store.table
    if action == "up":
        row: ClauseElement = t.insert().values(
            version=migration.version,
            name=migration.name,
            applied_at=ServerNow(),
            checksum=migration.checksum,
            execution_ms=None,
            success=True,
        )
    else:
        row = t.delete().where(t.c.version == migration.version)
    history = conn.literal_sql(row)
    title = f"-- {migration.label} ({action})"
    if migration.description:
        title += f": {migration.description}"
    if not migration.transactional:
        title += "\n-- transactional = False: it runs outside a transaction"
    return _transaction(title, [*conn.statements, history], profile, migration.transactional)


def _run(
    conn: ScriptConnection,
    migration: Migration,
    fn: StepFunction,
    action: str,
    previous: Migration | None,
) -> None:
    """Call ``fn(conn)``; turn what cannot be rendered into errors naming the step."""
    error: BaseException | None = None
    try:
        fn(conn)  # type: ignore[arg-type]
    except NoInspectionAvailable as exc:
        conn.needed.append(
            "reflects the schema (inspect(conn), or a sqlmig.ops change that reads the table first)"
        )
        error = exc
    except Exception as exc:
        if "live database connection" in str(exc) or "--sql mode" in str(exc):
            conn.needed.append("reflects the schema (a table rebuild)")
        elif isinstance(exc, AttributeError) and exc.obj is conn:
            conn.needed.append(f"uses conn.{exc.name}, which only a database connection has")
        elif type(conn).__name__ in str(exc):  # SQLAlchemy wanted a real Connection
            conn.needed.append("reflects the schema through conn.dialect")
        error = exc
        if not conn.needed:
            path, line = migration.where(exc, fn)
            where = f"{path}:{line}" if line else f"{path}"
            said = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            if isinstance(exc, Refused):
                what = f"it {exc} inside the step"
            elif isinstance(exc, Unwritable):
                what = f"it {exc}"
            else:
                what = f"{type(exc).__name__}: {said}"
            raise MigrationFailed(
                f"migration {migration.version} ({action}) cannot be written as SQL at "
                f"{where}: {what}; fix the step, or use sqlmig upgrade --dry-run against "
                "a database",
                version=migration.version,
                path=path,
                line=line,
            ) from exc
    if not conn.needed:
        return
    path, line = migration.where(error, fn)
    where = f"{path}:{line}" if line else f"{path}"
    hint = (
        "use sqlmig upgrade --dry-run against a database instead"
        if action == "up"
        else "run the downgrade against a database instead"
    )
    if action == "up" and previous is not None:
        hint += f" (the steps before it render with sqlmig upgrade {previous.version} --sql)"
    need = conn.needed[0]
    what = (
        "cannot be written as SQL" if need.startswith("sends") else "needs data from the database"
    )
    raise UsageError(
        f"migration {migration.label} ({action}) {what} at {where}: "
        f"it {need}, so no SQL script can hold it; {hint}"
    ) from error

"""How a database differs from its models: Alembic's comparison, told as readable lines.

Alembic's autogenerate API (``compare_metadata``) does the comparing, on the
runner's own connection, with these settings:

- types are compared (``compare_type=True``); Alembic treats MySQL's
  ``TINYINT(1)`` and ``Boolean`` as the same;
- server defaults are compared only where the profile says the comparison is
  exact (PostgreSQL); elsewhere the reflected text differs from the model's
  for equal defaults, so they are left out;
- an index or constraint of a table missing (or extra) as a whole is not
  listed apart from the table;
- nullability is not compared for primary-key columns (SQLite reflects an
  ``INTEGER PRIMARY KEY`` as nullable; a key is never null);
- a foreign key's ``DEFERRABLE`` / ``INITIALLY`` / ``MATCH`` are compared only
  where reflection reports them (PostgreSQL);
- the history table (any table of its name) is left out, and only the
  default schema is compared.

Alembic does not see changes to a PostgreSQL enum's values, nor indexes on
expressions (it warns and skips them); nor does this module. Each difference
becomes one line such as ``column orders.note: missing in the database``.
Alembic is imported only when a comparison is made.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.schema import (
    Column,
    ForeignKeyConstraint,
    Index,
    SchemaItem,
    Table,
    UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

from ._dialects import profile_for
from ._errors import UsageError
from ._reflected import skipping_expression_indexes

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext

__all__ = ["EXTRA", "comparison_context", "schema_differences"]

#: The extra that installs Alembic.
EXTRA = "ops"

IN_DB = "in the database, not in the models"
NOT_IN_DB = "missing in the database"
_KEYWORDS = re.compile(r"\b(length|precision|scale|timezone)=")


def schema_differences(
    conn: Connection, metadata: Sequence[MetaData], history_table: str
) -> list[str]:
    """One line per difference between the database on ``conn`` and ``metadata``.

    Tables named ``history_table`` are left out of the comparison.

    Raises:
        UsageError: Alembic is not installed (the message names the extra).
    """
    context = comparison_context(conn, history_table)
    from alembic.autogenerate import compare_metadata

    with skipping_expression_indexes():  # documented above
        # Alembic takes a sequence too (AutogenContext); its signature names one.
        diffs = compare_metadata(context, metadata if len(metadata) != 1 else metadata[0])  # type: ignore[arg-type]
    keys = {(t.name, c.name) for m in metadata for t in m.tables.values() for c in t.primary_key}
    whole = {d[1].name for d in diffs if isinstance(d, tuple) and d[0].endswith("_table")}
    lines: list[str] = []
    for diff in diffs:
        if not _of_a_whole_table(diff, whole):
            lines.extend(_lines(_without_key_nullability(diff, keys), conn))
    return lines


def comparison_context(conn: Connection, history_table: str) -> MigrationContext:
    """Alembic's context for comparing the database on ``conn`` with models (settings above).

    Shared by ``check`` and ``new --autogenerate``, so both see the same differences.

    Raises:
        UsageError: Alembic is not installed (the message names the extra).
    """
    try:
        from alembic.runtime.migration import MigrationContext
    except ImportError as exc:
        raise UsageError(
            f"comparing the database with models needs Alembic: install the extra with "
            f"pip install 'sqlmig[{EXTRA}]'"
        ) from exc

    options_seen = profile_for(conn).reflects_foreign_key_options
    expressions_indexed = profile_for(conn).indexes_expressions(conn)

    def include(obj: Any, name: str | None, kind: str, reflected: bool, other: Any) -> bool:
        if kind == "foreign_key_constraint" and not options_seen:
            return not _same_but_options(obj, other)
        if kind == "index" and not expressions_indexed and not reflected:
            # what ops.create_index skips there (MariaDB): never missing, never written
            return bool(obj.unique) or all(isinstance(e, Column) for e in obj.expressions)
        return not (kind == "table" and name == history_table)

    return MigrationContext.configure(
        connection=conn,
        opts={
            "compare_type": True,
            "compare_server_default": profile_for(conn).compares_server_defaults,
            "include_object": include,
        },
    )


def _same_but_options(key: Any, other: Any) -> bool:
    """Whether two foreign keys differ at most in ``DEFERRABLE`` / ``INITIALLY`` / ``MATCH``,
    which the database does not report: Alembic would list the one as gone and the other
    as missing."""
    if not (isinstance(key, ForeignKeyConstraint) and isinstance(other, ForeignKeyConstraint)):
        return False

    def shape(fk: ForeignKeyConstraint) -> tuple[Any, ...]:
        actions = [(a or "no action").lower() for a in (fk.ondelete, fk.onupdate)]
        return (
            fk.column_keys,
            fk.referred_table.name,
            [e.column.name for e in fk.elements],
            actions,
        )

    return shape(key) == shape(other)


def _of_a_whole_table(diff: Any, tables: set[str]) -> bool:
    """Whether ``diff`` is an index or constraint of a table that is missing or extra
    as a whole: the table's line says it all."""
    if not isinstance(diff, tuple) or diff[0].endswith("_table"):
        return False
    item = diff[1] if len(diff) == 2 else None
    table = getattr(item, "table", None)
    return isinstance(table, Table) and table.name in tables


def _without_key_nullability(diff: Any, keys: set[tuple[str, str]]) -> Any:
    """``diff`` less nullability changes of primary-key columns: a key is never null, but
    SQLite reflects ``id INTEGER PRIMARY KEY`` as nullable."""
    if not isinstance(diff, list):
        return diff
    return [c for c in diff if not (c[0] == "modify_nullable" and (c[2], c[3]) in keys)]


def _lines(diff: Any, conn: Connection) -> Iterable[str]:
    """The lines of one entry of Alembic's list: a tuple, or a list of column changes."""
    if isinstance(diff, list):
        for change in diff:
            yield _column_change(change, conn)
        return
    kind, *args = diff
    action, _, what = kind.partition("_")
    where = NOT_IN_DB if action == "add" else IN_DB
    if what == "table":
        yield f"table {_table_name(args[0])}: {where}"
    elif what == "column":
        _schema, table, column = args
        yield f"column {_qualified(_schema, table)}.{column.name}: {where}"
    elif what == "index":
        index: Index = args[0]
        unique = "unique index" if index.unique else "index"
        yield f"{unique} {index.name} on {_columns_of(index)}: {where}"
    elif what == "constraint" and isinstance(args[0], UniqueConstraint):
        yield f"unique constraint {_named(args[0])}on {_columns_of(args[0])}: {where}"
    elif what == "fk":
        yield f"foreign key {_named(args[0])}on {_foreign_key(args[0])}: {where}"
    elif what == "table_comment":
        yield f"table {_table_name(args[0])}: comment {_comment_change(action, args)}"
    else:  # a kind Alembic may add later: still one readable line
        yield f"{kind.replace('_', ' ')}: {', '.join(_describe(a) for a in args)}"


def _column_change(change: tuple[Any, ...], conn: Connection) -> str:
    kind, schema, table, column, _existing, old, new = change
    name = f"column {_qualified(schema, table)}.{column}"
    if kind == "modify_type":
        return (
            f"{name}: type {_db_type(old, conn)} in the database, {_model_type(new)} in the models"
        )
    if kind == "modify_nullable":
        return f"{name}: {_nullable(old)} in the database, {_nullable(new)} in the models"
    if kind == "modify_default":
        return (
            f"{name}: server default {_default(old)} in the database, {_default(new)} in the models"
        )
    if kind == "modify_comment":
        return f"{name}: comment {old!r} in the database, {new!r} in the models"
    return (
        f"{name}: {kind.removeprefix('modify_')} {_describe(old)} in the database, "
        f"{_describe(new)} in the models"
    )


def _comment_change(action: str, args: list[Any]) -> str:
    table: Table = args[0]
    if action == "remove":
        return "in the database, not in the models"
    return f"{table.comment!r} in the models, {args[1]!r} in the database"


def _qualified(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def _table_name(table: Table) -> str:
    return _qualified(table.schema, table.name)


def _named(item: UniqueConstraint | ForeignKeyConstraint) -> str:
    return f"{item.name} " if isinstance(item.name, str) and item.name else ""


def _columns_of(item: Index | UniqueConstraint) -> str:
    table = item.table
    names = [c.name for c in item.columns]
    owner = _table_name(table) if isinstance(table, Table) else "?"
    return f"{owner}({', '.join(names)})"


def _foreign_key(fk: ForeignKeyConstraint) -> str:
    table = fk.table
    owner = _table_name(table) if isinstance(table, Table) else "?"
    target = fk.elements[0].target_fullname.rsplit(".", 1)[0] if fk.elements else "?"
    remote = [e.target_fullname.rsplit(".", 1)[-1] for e in fk.elements]
    return f"{owner}({', '.join(fk.column_keys)}) -> {target}({', '.join(remote)})"


def _db_type(kind: TypeEngine[Any], conn: Connection) -> str:
    try:
        return str(kind.compile(dialect=conn.dialect))
    except Exception:  # a type the dialect cannot render: its Python form
        return _model_type(kind)


def _model_type(kind: TypeEngine[Any]) -> str:
    return _KEYWORDS.sub("", repr(kind))


def _nullable(nullable: object) -> str:
    return "nullable" if nullable else "NOT NULL"


def _default(default: object) -> str:
    if default is None:
        return "none"
    arg = getattr(default, "arg", default)
    text = getattr(arg, "text", arg)
    return str(text)


def _describe(item: object) -> str:
    if isinstance(item, Column):
        return str(item.name)
    if isinstance(item, Table):
        return _table_name(item)
    if isinstance(item, SchemaItem):
        return str(getattr(item, "name", type(item).__name__))
    return str(item)

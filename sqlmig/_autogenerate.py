"""``new --autogenerate``: Alembic's comparison, rendered as a step of ``sqlmig.ops(conn)`` calls.

Alembic's ``produce_migrations`` compares, on the context ``check`` uses
(:func:`sqlmig._drift.comparison_context`), and its ``render_python_code``
writes each operation with the prefix ``ops.``. sqlmig then adjusts what its
portable operations spell differently:

- drops of foreign keys, unique constraints and indexes become
  ``ops.drop_foreign_key``, ``ops.drop_unique_constraint`` and
  ``ops.drop_index(name, table)``;
- a foreign key or unique constraint added to an existing table without a name
  gets one (``fk_<table>_<columns>``, ``uq_<table>_<columns>``), so its
  ``down()`` can drop it; names from a naming convention are written out;
- ``existing_*`` keywords are left out of ``alter_column``: ``ops`` reads them
  from the database, whichever it is;
- nullability changes of primary-key columns are left out, as ``check`` does;
- a server default of ``true()``, ``false()`` or ``func.now()`` is written as
  that expression, not as one database's SQL for it;
- the changes to one table are ordered so that foreign keys and indexes are
  dropped before the columns they use change, and added after;
- a column type is written as ``module.Class(...)`` with its import; a type
  whose class cannot be imported back (defined in ``__main__`` or inside a
  function) is refused, naming the table and column;
- what ``down()`` puts back as the database reported it (a dropped table or
  column, a column's old type and default) is written portably (``_reflected``);
- a dropped table's named enum types are dropped after it (PostgreSQL keeps
  them; ``Enum.drop`` does nothing elsewhere), so ``up()`` can run again.

The module is longer than most because each of those adjustments is a small
function of its own, next to the walk over Alembic's operations that applies them.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Boolean, Enum, MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.schema import Column, DefaultClause, ForeignKeyConstraint, UniqueConstraint
from sqlalchemy.sql.elements import False_, True_
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeEngine

from ._drift import comparison_context
from ._errors import UsageError
from ._reflected import (
    portable_column,
    portable_default,
    portable_type,
    skipping_expression_indexes,
)

if TYPE_CHECKING:
    from alembic.operations import ops as alembic_ops

__all__ = ["TEMPLATE", "render_changes"]

#: The longest constraint name sqlmig makes up (PostgreSQL keeps 63 bytes, MySQL 64).
MAX_NAME = 60

TEMPLATE = '''\
"""{{description}}

Written by sqlmig new --autogenerate from the models: review it before applying.
The first line above is the description sqlmig shows.
"""

{imports}
from sqlalchemy.engine import Connection

import sqlmig


def up(conn: Connection) -> None:
    """Apply {{label}}."""
    ops = sqlmig.ops(conn)
{up}


def down(conn: Connection) -> None:
    """Undo {{label}}."""
    ops = sqlmig.ops(conn)
{down}
'''


def render_changes(
    conn: Connection, metadata: Sequence[MetaData], history_table: str
) -> str | None:
    """The text of a migration file (a template for ``new_migration``) making the
    database on ``conn`` match ``metadata``; None when they already match.

    Raises:
        UsageError: Alembic is not installed, or a column's type cannot be
            written in a file (the message names the table and column).
    """
    context = comparison_context(conn, history_table)
    from alembic.autogenerate import produce_migrations

    with skipping_expression_indexes():  # as by check (docs/models.md)
        script = produce_migrations(context, list(metadata) if len(metadata) != 1 else metadata[0])  # type: ignore[arg-type]
    keys = {(t.name, c.name) for m in metadata for t in m.tables.values() for c in t.primary_key}
    if script.upgrade_ops is None or script.upgrade_ops.is_empty():
        return None
    _name_added_constraints(script.upgrade_ops)
    # reversed after the naming, so down() drops what up() named
    downgrade = _adjusted(script.upgrade_ops.reverse(), keys)
    _portable(downgrade)
    upgrade = _adjusted(script.upgrade_ops, keys)
    if not upgrade:
        return None
    for table, column, type_ in _types(upgrade):
        _check_renderable(table, column, type_)
    imports: set[str] = {"import sqlalchemy as sa"}
    enums = _enum_types([*upgrade, *downgrade], metadata)
    up = "\n".join(_render(op, context, enums) for op in upgrade)
    down = "\n".join(_render(op, context, enums) for op in downgrade) or "    pass"
    imports.update(
        f"from sqlalchemy.dialects import {name}" for name in _DIALECT.findall(up + "\n" + down)
    )
    for _, _, type_ in [*_types(upgrade), *_types(downgrade)]:
        module = type(type_).__module__
        if not module.startswith("sqlalchemy"):
            imports.add(f"import {module}")
    return TEMPLATE.format(
        imports=_escaped("\n".join(sorted(imports, key=lambda i: (i.startswith("from"), i)))),
        up=_escaped(up),
        down=_escaped(down),
    )


def _escaped(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _adjusted(container: Any, keys: set[tuple[str, str]]) -> list[Any]:
    """The operations of Alembic's tree, flat, adjusted for ``ops`` (module docstring)."""
    from alembic.operations import ops as alembic_ops

    flat: list[Any] = []
    for op in container.ops:
        if isinstance(op, alembic_ops.ModifyTableOps):
            flat.extend(sorted(_adjusted(op, keys), key=_phase))
            continue
        if isinstance(op, alembic_ops.CreateUniqueConstraintOp):
            op.kw.clear()  # dialect options as reflected (e.g. postgresql_nulls_not_distinct)
        if isinstance(op, alembic_ops.CreateForeignKeyOp):
            op.kw = {k: v for k, v in op.kw.items() if k in _FOREIGN_KEY_KEYWORDS and v}
        if isinstance(op, alembic_ops.AlterColumnOp):
            if (op.table_name, op.column_name) in keys:
                op.modify_nullable = None
            if not _alters_something(op):
                continue
            op.existing_type = None
            op.existing_nullable = None
            op.existing_server_default = False
            op.existing_comment = None
            op.kw.pop("autoincrement", None)
        if isinstance(op, (alembic_ops.CreateIndexOp, alembic_ops.DropIndexOp)):
            op.index_name = str(op.index_name)
        flat.append(op)
    # a dropped table takes its indexes along (MySQL refuses to drop one a foreign key needs)
    dropped = {op.table_name for op in flat if isinstance(op, alembic_ops.DropTableOp)}
    return [
        op
        for op in flat
        if not (isinstance(op, alembic_ops.DropIndexOp) and op.table_name in dropped)
    ]


def _portable(operations: list[Any]) -> None:
    """What ``down()`` puts back as the database reported it, made portable (``_reflected``)."""
    from alembic.operations import ops as alembic_ops

    for op in operations:
        if isinstance(op, alembic_ops.CreateTableOp):
            for column in op.columns:
                if isinstance(column, Column):
                    portable_column(column)
        elif isinstance(op, alembic_ops.AddColumnOp):
            portable_column(op.column)
        elif isinstance(op, alembic_ops.AlterColumnOp):
            if op.modify_type is not None:
                op.modify_type = portable_type(op.modify_type, op.column_name)
            boolean = isinstance(op.modify_type, Boolean)
            op.modify_server_default = portable_default(op.modify_server_default, boolean=boolean)


def _phase(op: Any) -> int:
    """Where a change to one table goes among the others: what refers to columns is dropped
    before columns change (foreign keys before the indexes they use) and added after (MySQL
    refuses to drop a column or an index a foreign key uses)."""
    from alembic.operations import ops as alembic_ops

    if isinstance(op, alembic_ops.DropConstraintOp):
        return 0
    if isinstance(op, alembic_ops.DropIndexOp):
        return 1
    if isinstance(op, alembic_ops.CreateIndexOp):
        return 3
    if isinstance(op, alembic_ops.AddConstraintOp):
        return 4
    return 2


def _name_added_constraints(container: Any) -> None:
    """Name each foreign key and unique constraint added to a table without one."""
    from alembic.operations import ops as alembic_ops

    for op in container.ops:
        if isinstance(op, alembic_ops.ModifyTableOps):
            _name_added_constraints(op)
        elif isinstance(op, alembic_ops.CreateForeignKeyOp):
            op.constraint_name = _name(op.constraint_name, "fk", op.source_table, op.local_cols)
        elif isinstance(op, alembic_ops.CreateUniqueConstraintOp):
            op.constraint_name = _name(op.constraint_name, "uq", op.table_name, op.columns)


def _alters_something(op: alembic_ops.AlterColumnOp) -> bool:
    return (
        op.modify_nullable is not None
        or op.modify_type is not None
        or op.modify_server_default is not False
        or op.modify_comment is not False
        or op.modify_name is not None
    )


def _name(name: Any, kind: str, table: str, columns: Sequence[str]) -> str:
    """``name`` as a plain string; a made-up one when the models give none."""
    if name is not None and str(name):
        return str(name)
    made = f"{kind}_{table}_{'_'.join(columns)}".lower()
    return made[:MAX_NAME]


def _render(op: Any, context: Any, enums: dict[str, list[str]]) -> str:
    """One operation as indented lines of ``ops.`` calls."""
    from alembic.autogenerate import render_python_code
    from alembic.operations import ops as alembic_ops

    if isinstance(op, alembic_ops.DropConstraintOp):
        method = {"foreignkey": "drop_foreign_key", "unique": "drop_unique_constraint"}.get(
            str(op.constraint_type)
        )
        if method is None or not op.constraint_name:
            kinds = {"foreignkey": "foreign key", "unique": "unique constraint"}
            what = kinds.get(str(op.constraint_type), f"{op.constraint_type} constraint")
            raise UsageError(
                f"cannot write a step dropping a {what} of table {op.table_name!r} that has no "
                "name in the database: drop it by hand in the step (conn.exec_driver_sql)"
            )
        return f"    ops.{method}({str(op.constraint_name)!r}, {op.table_name!r}{_schema(op)})"
    if isinstance(op, alembic_ops.DropIndexOp):
        return f"    ops.drop_index({op.index_name!r}, {op.table_name!r}{_schema(op)})"
    with _named_constraints(op):
        code = render_python_code(
            alembic_ops.UpgradeOps(ops=[op]),
            alembic_module_prefix="ops.",
            migration_context=context,
            render_item=_portable_default,
        )
    code = _CONVENTION_NAME.sub(r"\1", code)
    lines = [
        line for line in code.splitlines() if line.strip() and not line.strip().startswith("# ###")
    ]
    lines = list(_indented(lines))
    if isinstance(op, alembic_ops.DropTableOp):
        # PostgreSQL keeps a dropped table's enum types; elsewhere Enum.drop does nothing
        drops = enums.get(op.table_name, [])
        lines += [f"    sa.Enum(name={e!r}).drop(conn, checkfirst=True)" for e in drops]
    return "\n".join(lines)


def _portable_default(kind: str, item: Any, autogen_context: Any) -> str | Literal[False]:
    """A server default of ``true()``, ``false()`` or a function without arguments
    (``func.now()``) written as that expression, which each database compiles its own way;
    Alembic writes what the database at hand compiles (``sa.text('0')`` on SQLite), which
    PostgreSQL refuses for a boolean."""
    if kind != "server_default" or not isinstance(item, DefaultClause):
        return False
    arg = item.arg
    if isinstance(arg, (True_, False_)):
        return "sa.true()" if isinstance(arg, True_) else "sa.false()"
    if isinstance(arg, FunctionElement) and not list(arg.clauses) and _PLAIN.fullmatch(arg.name):
        return f"sa.func.{arg.name}()"
    return False


def _enum_types(operations: list[Any], metadata: Sequence[MetaData]) -> dict[str, list[str]]:
    """The named enum types of each table a step creates or drops that no other table of
    the models uses: dropping the table drops them too."""
    from alembic.operations import ops as alembic_ops

    def named(columns: Iterable[Any]) -> set[str]:
        return {
            str(c.type.name)
            for c in columns
            if isinstance(c, Column) and isinstance(c.type, Enum) and c.type.name
        }

    users: dict[str, set[str]] = {}
    for table in (t for m in metadata for t in m.tables.values()):
        for name in named(table.columns):
            users.setdefault(name, set()).add(table.name)
    return {
        op.table_name: sorted(
            e for e in named(op.columns) if not users.get(e, set()) - {op.table_name}
        )
        for op in operations
        if isinstance(op, alembic_ops.CreateTableOp)
    }


@contextmanager
def _named_constraints(op: Any) -> Iterator[None]:
    """While a new table is written, its unnamed foreign keys and unique constraints named,
    so a later step can drop them (SQLite keeps no name of its own); the models are left
    as they were afterwards."""
    from alembic.operations import ops as alembic_ops

    renamed: list[tuple[Any, Any]] = []
    if isinstance(op, alembic_ops.CreateTableOp):
        for item in op.columns:
            if isinstance(item, (ForeignKeyConstraint, UniqueConstraint)) and not _has_name(item):
                kind = "fk" if isinstance(item, ForeignKeyConstraint) else "uq"
                renamed.append((item, item.name))
                item.name = _name(None, kind, op.table_name, [c.name for c in item.columns])
    try:
        yield
    finally:
        for item, name in renamed:
            item.name = name


def _has_name(item: ForeignKeyConstraint | UniqueConstraint) -> bool:
    """Whether the constraint has a name, given or from a naming convention."""
    if isinstance(item.name, str) and item.name:
        return True
    convention = item.table.metadata.naming_convention
    return bool(convention.get("fk" if isinstance(item, ForeignKeyConstraint) else "uq"))


def _indented(lines: list[str]) -> Iterator[str]:
    """Alembic's lines in the body: the call, its arguments under it, its closing parenthesis."""
    yield "    " + lines[0].strip()
    for line in lines[1:]:
        yield ("    " if line.strip() == ")" else "        ") + line.strip()


def _schema(op: Any) -> str:
    return f", schema={op.schema!r}" if op.schema else ""


def _types(operations: list[Any]) -> Iterator[tuple[str, str, TypeEngine[Any]]]:
    """Each column type an operation writes: (table, column, type)."""
    from alembic.operations import ops as alembic_ops

    for op in operations:
        if isinstance(op, alembic_ops.CreateTableOp):
            for column in op.columns:
                if isinstance(column, Column):
                    yield op.table_name, column.name, column.type
        elif isinstance(op, alembic_ops.AddColumnOp):
            yield op.table_name, op.column.name, op.column.type
        elif isinstance(op, alembic_ops.AlterColumnOp) and op.modify_type is not None:
            yield op.table_name, op.column_name, op.modify_type


#: What ``ops.create_foreign_key`` takes of a foreign key's options (it leaves out,
#: where the database does not take them, ``deferrable``, ``initially`` and ``match``).
_FOREIGN_KEY_KEYWORDS = frozenset({"ondelete", "onupdate", "deferrable", "initially", "match"})
#: ``ops.f('name')``: Alembic marks a name from a naming convention; the name itself will do.
_CONVENTION_NAME = re.compile(r"ops\.f\(('(?:[^'\\]|\\.)*')\)")
#: A dialect's module named in rendered code (``mysql.VARCHAR(...)``); Alembic's own
#: import list is not handed back by ``render_python_code``.
_DIALECT = re.compile(r"(?<![\w.'\"])(postgresql|mysql|sqlite|mssql|oracle)\.(?=[A-Za-z_])")
_PLAIN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _check_renderable(table: str, column: str, type_: TypeEngine[Any]) -> None:
    """Raise unless ``type_`` can be written as ``module.Class(...)`` and imported back."""
    cls = type(type_)
    module, qualname = cls.__module__, cls.__qualname__
    if module.startswith("sqlalchemy"):
        return
    found: Any = None
    if module != "__main__" and _PLAIN.fullmatch(qualname) and "." not in qualname:
        try:
            found = getattr(importlib.import_module(module), qualname, None)
        except Exception:
            found = None
    if found is not cls:
        raise UsageError(
            f"cannot write the type of column {table}.{column} in a migration file: "
            f"{module}.{qualname} cannot be imported back (define the type at the top level of "
            "an importable module), or write this step by hand with sqlmig new"
        )

"""A database schema as plain data, read by reflection, and the differences between two.

Used by :func:`sqlmig.testing.check_stairway`: a snapshot holds every table
(columns with type and nullability, primary key, foreign keys, indexes, unique
constraints) and view of the schemas it was asked for. Types are compared by
their SQL as the database's own dialect writes them (``VARCHAR(20)``,
``INTEGER``), so two snapshots of one database compare exactly, on any backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.engine.reflection import Inspector
from sqlalchemy.exc import CompileError, UnsupportedCompilationError

from ._reflected import skipping_expression_indexes

__all__ = ["Snapshot", "TableShape", "differences", "snapshot"]


@dataclass(frozen=True)
class TableShape:
    """What reflection says about one table, in comparable form."""

    #: column name -> (type as SQL, nullable)
    columns: dict[str, tuple[str, bool]] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    #: description (``fk_name`` or ``(a, b) -> other(x, y)``) -> full definition
    foreign_keys: dict[str, str] = field(default_factory=dict)
    #: index name -> ``UNIQUE (a, b)`` or ``(a, b)``
    indexes: dict[str, str] = field(default_factory=dict)
    #: constraint name (or its columns, when unnamed) -> its columns
    unique_constraints: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Every table and view of the reflected schemas, keyed by qualified name."""

    tables: dict[str, TableShape]
    views: frozenset[str] = frozenset()


def _type_sql(type_: Any, dialect: Dialect) -> str:
    try:
        return str(type_.compile(dialect=dialect))
    except (CompileError, UnsupportedCompilationError, NotImplementedError, AttributeError):
        return type(type_).__name__


def _cols(names: Iterable[str | None]) -> str:
    return "(" + ", ".join(str(n) for n in names) + ")"


def _qualified(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def _table_shape(inspector: Inspector, name: str, schema: str | None) -> TableShape:
    dialect = inspector.dialect
    columns = {
        c["name"]: (_type_sql(c["type"], dialect), bool(c["nullable"]))
        for c in inspector.get_columns(name, schema)
    }
    pk = tuple(inspector.get_pk_constraint(name, schema).get("constrained_columns") or ())
    fks: dict[str, str] = {}
    for fk in inspector.get_foreign_keys(name, schema):
        target = _qualified(fk.get("referred_schema"), fk["referred_table"])
        definition = (
            f"{_cols(fk['constrained_columns'])} -> {target}{_cols(fk['referred_columns'])}"
        )
        fks[fk.get("name") or definition] = definition
    indexes = _indexes(inspector, name, schema)
    uniques = {
        (uc.get("name") or _cols(uc["column_names"])): _cols(uc["column_names"])
        for uc in inspector.get_unique_constraints(name, schema)
    }
    return TableShape(columns, pk, fks, indexes, uniques)


def _indexes(inspector: Inspector, name: str, schema: str | None) -> dict[str, str]:
    """The table's indexes: name -> ``UNIQUE (a, lower(b))`` or ``(a, b)``.

    An index on an expression is compared by its expression where reflection
    reports it (PostgreSQL, MySQL); SQLite's reflection skips it (see :func:`snapshot`).
    """
    return {
        str(ix["name"]): ("UNIQUE " if ix.get("unique") else "")
        + _cols(ix.get("expressions") or ix["column_names"])
        for ix in inspector.get_indexes(name, schema)
    }


def snapshot(
    conn: Connection, schemas: Iterable[str | None] = (None,), *, ignore: Iterable[str] = ()
) -> Snapshot:
    """Reflect the schemas (``None``: the default one), leaving out the tables in ``ignore``.

    ``ignore`` holds qualified names (``table`` or ``schema.table``). Reads only.
    """
    inspector = inspect(conn)  # a fresh Inspector: nothing cached from an earlier look
    skipped = set(ignore)
    tables: dict[str, TableShape] = {}
    views: set[str] = set()
    with skipping_expression_indexes():
        for schema in dict.fromkeys(schemas):
            for name in inspector.get_table_names(schema):
                key = _qualified(schema, name)
                if key not in skipped:
                    tables[key] = _table_shape(inspector, name, schema)
            views.update(_qualified(schema, v) for v in inspector.get_view_names(schema))
    return Snapshot(tables, frozenset(views))


def _compare_named(
    what: str, where: str, expected: Mapping[str, str], actual: Mapping[str, str]
) -> list[str]:
    found = []
    for key in actual.keys() - expected.keys():
        found.append(f"{what} {key} on {where} left behind")
    for key in expected.keys() - actual.keys():
        found.append(f"{what} {key} on {where} missing (it existed before the step)")
    for key in expected.keys() & actual.keys():
        if expected[key] != actual[key]:
            found.append(
                f"{what} {key} on {where} is {actual[key]}, was {expected[key]} before the step"
            )
    return sorted(found)


def _column_differences(table: str, expected: TableShape, actual: TableShape) -> list[str]:
    found = []
    for name in actual.columns.keys() - expected.columns.keys():
        found.append(f"column {table}.{name} left behind")
    for name in expected.columns.keys() - actual.columns.keys():
        found.append(f"column {table}.{name} missing (it existed before the step)")
    for name in sorted(expected.columns.keys() & actual.columns.keys()):
        (type_before, null_before), (type_now, null_now) = (
            expected.columns[name],
            actual.columns[name],
        )
        if type_before != type_now:
            found.append(f"column {table}.{name} is {type_now}, was {type_before} before the step")
        if null_before != null_now:
            now, was = ("nullable", "NOT NULL") if null_now else ("NOT NULL", "nullable")
            found.append(f"column {table}.{name} is {now}, was {was} before the step")
    return sorted(found)


def _table_differences(table: str, expected: TableShape, actual: TableShape) -> list[str]:
    found = _column_differences(table, expected, actual)
    if expected.primary_key != actual.primary_key:
        found.append(
            f"primary key of {table} is {_cols(actual.primary_key)}, "
            f"was {_cols(expected.primary_key)} before the step"
        )
    found += _compare_named("foreign key", table, expected.foreign_keys, actual.foreign_keys)
    found += _compare_named("index", table, expected.indexes, actual.indexes)
    found += _compare_named(
        "unique constraint", table, expected.unique_constraints, actual.unique_constraints
    )
    return found


def differences(expected: Snapshot, actual: Snapshot) -> list[str]:
    """What ``actual`` has that ``expected`` lacks, and the reverse, one line each.

    An empty list means the two schemas are the same.
    """
    found = [f"table {t} left behind" for t in sorted(actual.tables.keys() - expected.tables)]
    found += [
        f"table {t} missing (it existed before the step)"
        for t in sorted(expected.tables.keys() - actual.tables)
    ]
    for table in sorted(expected.tables.keys() & actual.tables.keys()):
        found += _table_differences(table, expected.tables[table], actual.tables[table])
    found += [f"view {v} left behind" for v in sorted(actual.views - expected.views)]
    found += [
        f"view {v} missing (it existed before the step)"
        for v in sorted(expected.views - actual.views)
    ]
    return found

"""What a SQLite table rebuild must carry over, and putting it back.

SQLite changes most of a table by building a new one, copying the rows,
dropping the old table and renaming the new one (Alembic's "batch" mode does
this from the reflected table). Reflection does not see everything the old
table had, and dropping it takes its triggers along, so :class:`TableKeeper`
reads the table's own SQL and ``sqlite_master`` first and:

- gives the rebuild what reflection misses: unnamed ``CHECK`` constraints,
  each column's ``COLLATE`` and ``AUTOINCREMENT``;
- renames with ``PRAGMA legacy_alter_table=ON``, so views and other tables'
  triggers that name the table are left as written (otherwise the rename
  fails on them with "error in view");
- afterwards re-creates the table's triggers and the indexes reflection
  skipped (on expressions) or rendered short (``DESC``, ``COLLATE``) from
  their saved SQL, keeps the AUTOINCREMENT
  counter (``sqlite_sequence``) from going back, and has SQLite check every
  view and trigger that names the table, so one the change broke fails the
  step instead of failing later;
- refuses, before anything changes, what it cannot carry (``ON CONFLICT``
  clauses), naming it.

Everything happens on the step's connection, inside its transaction: a
failure later in the step rolls the rebuild back with the rest.

The module is long because each of those is a small reader of SQLite's own SQL,
and they share one tokenizer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import inspect, literal_column
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.schema import CheckConstraint

from ._errors import UsageError

__all__ = ["TableKeeper"]

#: SQLite's tokens, enough to split a CREATE TABLE into its parts.
_TOKEN = re.compile(
    r"""(?P<space>\s+|--[^\n]*|/\*.*?(?:\*/|\Z))
      |(?P<string>'(?:[^']|'')*')
      |(?P<quoted>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
      |(?P<word>[^\W\d][\w$]*)
      |(?P<other>\d[\w.]*|.)""",
    re.VERBOSE | re.DOTALL,
)
_TABLE_CONSTRAINT = frozenset({"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"})
#: The scratch column a rebuild adds and drops to make SQLite check views and triggers.
PROBE_COLUMN = "_sqlmig_rebuild_check"
#: Statements a rebuild sends only to set itself up or check its work, changing nothing.
SCAFFOLDING = re.compile(rf"^\s*PRAGMA\s+legacy_alter_table\b|\b{PROBE_COLUMN}\b", re.IGNORECASE)

log = logging.getLogger("sqlmig")


def _tokens(sql: str) -> list[tuple[str, str]]:
    return [(str(m.lastgroup), m.group()) for m in _TOKEN.finditer(sql) if m.lastgroup != "space"]


def _name(token: tuple[str, str]) -> str:
    """An identifier token as a name: quotes removed, doubled quotes undone."""
    kind, value = token
    if kind == "quoted" or kind == "string":
        if value[0] == "[":
            return value[1:-1]
        return value[1:-1].replace(value[0] * 2, value[0])
    return value


def _mentions(sql: str, name: str) -> bool:
    """Whether ``sql`` names ``name`` anywhere (as an identifier, any case)."""
    wanted = name.lower()
    return any(
        kind in ("word", "quoted") and _name((kind, value)).lower() == wanted
        for kind, value in _tokens(sql)
    )


def _renamed(sql: str, renamed: Mapping[str, str]) -> str:
    """``sql`` with the identifiers in ``renamed`` (lower-case old -> new) replaced."""
    if not renamed:
        return sql

    def replace(match: re.Match[str]) -> str:
        token = (str(match.lastgroup), match.group())
        new = renamed.get(_name(token).lower()) if token[0] in ("word", "quoted") else None
        return token[1] if new is None else '"{}"'.format(new.replace('"', '""'))

    return _TOKEN.sub(replace, sql)


def _table_items(sql: str) -> list[list[tuple[str, str]]]:
    """The column definitions and table constraints of a CREATE TABLE, as tokens."""
    tokens = _tokens(sql)
    start = next((i for i, t in enumerate(tokens) if t == ("other", "(")), len(tokens))
    items: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for token in tokens[start + 1 :]:
        if token == ("other", "("):
            depth += 1
        elif token == ("other", ")"):
            if depth == 0:
                break
            depth -= 1
        elif token == ("other", ",") and depth == 0:
            items.append([])
            continue
        items[-1].append(token)
    return [item for item in items if item]


@dataclass
class TableKeeper:
    """What one SQLite table has that a rebuild would lose, read before it."""

    conn: Connection
    table: str
    schema: str | None
    #: Column name (lower case) -> its COLLATE sequence.
    collations: dict[str, str] = field(default_factory=dict)
    autoincrement: bool = False
    unnamed_checks: list[str] = field(default_factory=list)
    #: ``(name, sql)`` of the table's triggers and indexes, in creation order.
    triggers: list[tuple[str, str]] = field(default_factory=list)
    indexes: list[tuple[str, str]] = field(default_factory=list)
    #: Index name -> its key columns as ``(name, descending, collation)``.
    index_keys: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    #: Views and triggers of other objects that name the table.
    dependents: list[str] = field(default_factory=list)
    sequence: int | None = None
    #: What cannot be carried: the rebuild is refused when it is not empty.
    lost: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, conn: Connection, table: str, schema: str | None) -> TableKeeper:
        """Read the table's SQL, triggers, indexes, dependents and counter."""
        keeper = cls(conn, table, schema)
        master = keeper._qualified("sqlite_master")
        objects = conn.exec_driver_sql(
            f"SELECT type, name, tbl_name, sql FROM {master} WHERE sql IS NOT NULL ORDER BY rowid"
        ).all()
        lower = table.lower()
        for kind, name, owner, sql in objects:
            if kind == "table" and name.lower() == lower:
                keeper._read_table_sql(sql)
            elif owner.lower() == lower and kind == "trigger":
                keeper.triggers.append((name, sql))
            elif owner.lower() == lower and kind == "index":
                keeper.indexes.append((name, sql))
            elif kind in ("view", "trigger") and _mentions(sql, table):
                keeper.dependents.append(name)
        keeper.index_keys = {name: keeper._index_keys(name) for name, _sql in keeper.indexes}
        checks = inspect(conn).get_check_constraints(table, schema=schema)
        keeper.unnamed_checks = [str(c["sqltext"]) for c in checks if not c.get("name")]
        if keeper.autoincrement:
            sequence = keeper._qualified("sqlite_sequence")
            keeper.sequence = conn.exec_driver_sql(
                f"SELECT seq FROM {sequence} WHERE name = ?", (table,)
            ).scalar()
        return keeper

    def _read_table_sql(self, sql: str) -> None:
        for item in _table_items(sql):
            words = [v.upper() if k == "word" else v for k, v in item]
            if "AUTOINCREMENT" in words:
                self.autoincrement = True
            column = None if words[0] in _TABLE_CONSTRAINT else _name(item[0])
            for i, word in enumerate(words[:-1]):
                if word == "COLLATE" and column is not None:
                    self.collations[column.lower()] = _name(item[i + 1])
                if word == "ON" and words[i + 1] == "CONFLICT":
                    what = f"column {column!r}" if column else "a table constraint"
                    self.lost.append(f"the ON CONFLICT clause of {what}")

    def _qualified(self, name: str) -> str:
        if self.schema is None:
            return name
        return '"{}".{}'.format(self.schema.replace('"', '""'), name)

    # -- what the rebuild is given ------------------------------------------

    def refuse_losses(self) -> None:
        """Stop before the rebuild when the table has something it cannot carry.

        Raises:
            UsageError: naming what would be lost and how to do it by hand.
        """
        if self.lost:
            raise UsageError(
                f"rebuilding SQLite table {self.table!r} would lose {', '.join(self.lost)}: "
                "make this change with conn.execute() (CREATE TABLE new, INSERT ... SELECT, "
                "DROP TABLE, ALTER TABLE ... RENAME) restating the clause"
            )

    def batch_options(self, renamed: Mapping[str, str], dropped: Collection[str]) -> dict[str, Any]:
        """Keywords for Alembic's ``batch_alter_table`` that carry what reflection misses.

        ``renamed`` (old column name -> new) and ``dropped`` are the change's
        columns: an unnamed CHECK follows a renamed column, and goes with a
        dropped one (as PostgreSQL drops it).
        """
        checks = []
        for sqltext in self.unnamed_checks:
            gone = [c for c in dropped if _mentions(sqltext, c)]
            if gone:
                log.info(
                    "dropping column %s of SQLite table %r drops its CHECK (%s)",
                    ", ".join(gone),
                    self.table,
                    sqltext,
                )
                continue
            checks.append(CheckConstraint(literal_column(_renamed(sqltext, renamed))))
        return {
            "table_args": tuple(checks),
            "table_kwargs": {"sqlite_autoincrement": True} if self.autoincrement else {},
            "reflect_kwargs": {"listeners": [("column_reflect", self._add_collation)]},
        }

    def collation(self, column: str) -> str | None:
        """The column's COLLATE sequence, if it has one."""
        return self.collations.get(column.lower())

    def _add_collation(self, _inspector: Any, _table: Any, info: dict[str, Any]) -> None:
        collation = self.collation(str(info["name"]))
        if collation is None:
            return
        if not hasattr(info["type"], "collation"):
            raise UsageError(
                f"rebuilding SQLite table {self.table!r} would lose COLLATE {collation} of "
                f"column {info['name']!r}, whose type {info['type']} takes no collation: "
                "give the column a text type first, or rebuild the table by hand"
            )
        info["type"].collation = collation

    # -- around the rebuild ---------------------------------------------------

    @contextmanager
    def rebuilding(self, dropped_indexes: Sequence[str], *, columns_go: bool) -> Iterator[None]:
        """Run the rebuild inside; then put back what it dropped and check the rest.

        ``dropped_indexes`` are the indexes the change drops on purpose;
        ``columns_go`` says it drops or renames columns, which may break a view
        or trigger (nothing else it does can).
        """
        self.refuse_losses()
        legacy = self.conn.exec_driver_sql("PRAGMA legacy_alter_table").scalar()
        self.conn.exec_driver_sql("PRAGMA legacy_alter_table = ON")
        try:
            yield
        finally:
            self.conn.exec_driver_sql(f"PRAGMA legacy_alter_table = {int(bool(legacy))}")
        self._restore({name.lower() for name in dropped_indexes}, columns_go)

    def _restore(self, dropped: set[str], columns_go: bool) -> None:
        present = {
            str(name).lower()
            for name in self.conn.exec_driver_sql(
                f"SELECT name FROM {self._qualified('sqlite_master')} WHERE type = 'index'"
            ).scalars()
        }
        for name, sql in self.indexes:
            if name.lower() in dropped:
                continue
            if name.lower() not in present:  # on expressions: not reflected
                self.conn.exec_driver_sql(sql)
            else:
                self._restore_index_details(name, sql)
        for _trigger, sql in self.triggers:
            self.conn.exec_driver_sql(sql)
        if self.sequence is not None:
            self._keep_sequence(self.sequence)
        if columns_go and (self.triggers or self.dependents):
            self._check_dependents()

    def indexes_using(self, column: str) -> list[str]:
        """The table's indexes whose keys or ``WHERE`` name ``column`` (those on an
        expression included, which reflection does not report): dropping the column
        drops them, as PostgreSQL does, where SQLite would refuse."""
        return [name for name, sql in self.indexes if _mentions(sql[sql.find("(") :], column)]

    def _index_keys(self, index: str) -> list[tuple[Any, ...]]:
        return [
            tuple(row)
            for row in self.conn.exec_driver_sql(
                'SELECT name, "desc", coll FROM pragma_index_xinfo(?, ?) WHERE key ORDER BY seqno',
                (index, self.schema or "main"),
            )
        ]

    def _restore_index_details(self, index: str, sql: str) -> None:
        """Put back the DESC and COLLATE of an index's columns, which reflection drops."""
        was, now = self.index_keys[index], self._index_keys(index)
        if [k[1:] for k in was] == [k[1:] for k in now]:
            return
        if [k[0] for k in was] != [k[0] for k in now]:
            raise UsageError(
                f"rebuilding SQLite table {self.table!r} would lose the DESC or COLLATE of "
                f"index {index!r} on renamed columns: drop the index before the change and "
                "create it again after"
            )
        index_name = self._qualified('"{}"'.format(index.replace('"', '""')))
        self.conn.exec_driver_sql(f"DROP INDEX {index_name}")
        self.conn.exec_driver_sql(sql)

    def _keep_sequence(self, seq: int) -> None:
        table = self._qualified("sqlite_sequence")
        exists = self.conn.exec_driver_sql(
            f"SELECT 1 FROM {table} WHERE name = ?", (self.table,)
        ).scalar()
        if exists:
            self.conn.exec_driver_sql(
                f"UPDATE {table} SET seq = max(seq, ?) WHERE name = ?", (seq, self.table)
            )
        else:
            self.conn.exec_driver_sql(
                f"INSERT INTO {table} (name, seq) VALUES (?, ?)", (self.table, seq)
            )

    def _check_dependents(self) -> None:
        """Have SQLite check every view and trigger against the new table.

        ``DROP COLUMN`` (SQLite 3.35+) checks the whole schema, so adding and
        dropping a scratch column asks for exactly that and leaves the table
        as it was.
        """
        dbapi = self.conn.dialect.dbapi
        version = tuple(int(p) for p in getattr(dbapi, "sqlite_version", "0").split("."))
        if version < (3, 35):
            return
        table = self._qualified('"{}"'.format(self.table.replace('"', '""')))
        self.conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {PROBE_COLUMN} INTEGER")
        try:
            self.conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {PROBE_COLUMN}")
        except OperationalError as exc:
            raise UsageError(
                f"after rebuilding SQLite table {self.table!r}: {exc.orig}; drop that view or "
                "trigger earlier in the step and create it again after the change"
            ) from exc

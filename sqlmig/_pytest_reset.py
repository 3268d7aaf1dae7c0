"""``--sqlmig-reset``: a reused test database emptied before the session.

Every view, table and sequence of the database's default schema (and of
``[tool.sqlmig] schema``, when it names another) is dropped, with PostgreSQL's
enum types, so the session's ``upgrade()`` (and the stairway check) start from
nothing. What each database needs around the drops is data (:data:`EMPTYING`).
Built on SQLAlchemy and sqlmig's public API alone, like the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine


@dataclass(frozen=True)
class Emptying:
    """How one database is emptied."""

    #: Statements run first (foreign keys off, where the drops' order would matter).
    first: tuple[str, ...]
    #: Appended to each DROP, where the database takes it.
    cascade: str
    #: Whether materialized views and enum types are objects of their own (PostgreSQL).
    materialized_views: bool
    enum_types: bool
    #: Whether the database has sequences of its own to drop.
    sequences: bool


EMPTYING: dict[str, Emptying] = {
    "sqlite": Emptying(
        ("PRAGMA foreign_keys=OFF",),
        "",
        materialized_views=False,
        enum_types=False,
        sequences=False,
    ),
    "postgresql": Emptying(
        (), " CASCADE", materialized_views=True, enum_types=True, sequences=True
    ),
    "mysql": Emptying(
        ("SET FOREIGN_KEY_CHECKS=0",),
        "",
        materialized_views=False,
        enum_types=False,
        sequences=False,
    ),
}
EMPTYING["mariadb"] = EMPTYING["mysql"]
RESET = "sqlmig_reset"


def add_options(parser: pytest.Parser, group: pytest.OptionGroup) -> None:
    """``--sqlmig-reset`` and the ini flag ``sqlmig_reset``."""
    group.addoption(
        "--sqlmig-reset",
        dest=RESET,
        action="store_true",
        default=False,
        help="empty the --sqlmig-url (or $SQLMIG_TEST_URL) database before the session: "
        "drop its tables, views and sequences, then migrate",
    )
    parser.addini(
        RESET,
        "empty the --sqlmig-url database before the session (as --sqlmig-reset)",
        type="bool",
        default=False,
    )


def asked(config: pytest.Config) -> bool:
    """Whether ``--sqlmig-reset`` or the ini flag ``sqlmig_reset`` asks to empty the database."""
    return bool(config.getoption(RESET) or config.getini(RESET))


def reset_if_asked(config: pytest.Config, engine: Engine, schema: object) -> None:
    """Empty the ``--sqlmig-url`` database when asked to (``schema``: ``[tool.sqlmig]``'s)."""
    if asked(config):
        empty(engine, schema)


def refuse_foreign_reset(config: pytest.Config, engine: Engine, own: Engine | None) -> None:
    """Stop a reset asked for a database the plugin did not choose (a project's own fixture)."""
    __tracebackhide__ = True
    if asked(config) and engine is not own:
        raise pytest.UsageError(
            "--sqlmig-reset empties only the database of --sqlmig-url or $SQLMIG_TEST_URL, and "
            "this session's sqlmig_engine comes from a fixture of the project's own: empty "
            "that database in the fixture, or leave out --sqlmig-reset (ini sqlmig_reset)"
        )


def empty(engine: Engine, schema: object = None) -> list[str]:
    """Drop every view, table and sequence of the database; returns what was dropped."""
    from sqlalchemy import inspect, text

    how = EMPTYING.get(engine.dialect.name)
    if how is None:
        raise pytest.UsageError(
            f"--sqlmig-reset cannot empty a {engine.dialect.name} database: empty it by hand, "
            "or leave out --sqlmig-reset"
        )
    dropped: list[str] = []
    with engine.connect() as conn:
        for statement in how.first:
            conn.execute(text(statement))
        found = inspect(conn).get_schema_names()
        for where in dict.fromkeys([None, schema if isinstance(schema, str) else None]):
            if where is None or where in found:
                dropped += _drop_all(conn, how, where)
        conn.commit()
    return dropped


def _drop_all(conn: Connection, how: Emptying, schema: str | None) -> list[str]:
    from sqlalchemy import inspect, text

    inspector = inspect(conn)
    quote = conn.dialect.identifier_preparer.quote

    def named(name: str) -> str:
        return f"{quote(schema)}.{quote(name)}" if schema else quote(name)

    kinds: list[tuple[str, list[str]]] = [("VIEW", inspector.get_view_names(schema))]
    if how.materialized_views:
        kinds.append(("MATERIALIZED VIEW", inspector.get_materialized_view_names(schema)))
    kinds += [
        ("TABLE", [t for t in inspector.get_table_names(schema) if not t.startswith("sqlite_")]),
    ]
    if how.sequences:
        kinds.append(("SEQUENCE", inspector.get_sequence_names(schema)))
    if how.enum_types:
        enums: list[dict[str, object]] = getattr(inspector, "get_enums", lambda schema: [])(schema)
        kinds.append(("TYPE", [str(e["name"]) for e in enums]))
    dropped = []
    for kind, names in kinds:
        for name in names:
            conn.execute(text(f"DROP {kind} IF EXISTS {named(name)}{how.cascade}"))
            dropped.append(f"{kind.lower()} {name}")
    return dropped

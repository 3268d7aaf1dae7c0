"""What a database reports of a column, made portable for a generated ``down()``."""

from __future__ import annotations

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Enum,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.schema import DefaultClause
from sqlalchemy.types import TypeEngine

from sqlmig._reflected import portable_column, portable_default, portable_type

DIALECTS = [postgresql.dialect(), mysql.dialect(is_mariadb=True), sqlite.dialect()]


@pytest.mark.parametrize(
    ("reported", "portable"),
    [
        (postgresql.BYTEA(), LargeBinary()),
        (postgresql.TIMESTAMP(timezone=True), DateTime(timezone=True)),
        (postgresql.DOUBLE_PRECISION(precision=53), Float()),
        (postgresql.ENUM("a", "b", name="kind"), Enum("a", "b", name="kind")),
        (mysql.TINYINT(display_width=1), Boolean()),
        (mysql.BIGINT(display_width=20), BigInteger()),
        (mysql.INTEGER(display_width=11), Integer()),
        (mysql.VARCHAR(length=10, collation="utf8mb4_general_ci"), String(10)),
        (mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_bin"), Text()),
        (mysql.ENUM("a", "b"), Enum("a", "b", name="kind")),  # named after its column
    ],
)
def test_a_reported_type_becomes_the_generic_one_every_database_writes(
    reported: TypeEngine[object], portable: TypeEngine[object]
) -> None:
    found = portable_type(reported, "kind")
    assert repr(found) == repr(portable)
    for dialect in DIALECTS:
        found.compile(dialect=dialect)  # raises where a database cannot write it


def test_a_type_without_a_generic_form_is_kept() -> None:
    inet = postgresql.INET()
    assert portable_type(inet) is inet


@pytest.mark.parametrize(
    ("reported", "boolean", "written"),
    [
        ("'x'::character varying", False, "'x'"),
        ("('{}'::jsonb)", False, "'{}'"),
        ("7", False, "7"),
        ("now()", False, "now()"),
        ("current_timestamp()", False, "now()"),
        ("CURRENT_TIMESTAMP", False, "now()"),
        ("false", True, "false"),
        ("'0'", True, "false"),
        ("1", True, "true"),
        ("1", False, "1"),
    ],
)
def test_a_reported_default_becomes_an_expression_every_database_compiles(
    reported: str, boolean: bool, written: str
) -> None:
    found = portable_default(DefaultClause(text(reported)), boolean=boolean)
    assert isinstance(found, DefaultClause)
    assert str(found.arg).lower() == written


def test_a_reported_column_is_made_portable_in_place() -> None:
    column = Column("active", mysql.TINYINT(display_width=1), server_default=text("'1'"))
    portable_column(column)
    assert isinstance(column.type, Boolean)
    assert isinstance(column.server_default, DefaultClause)
    assert str(column.server_default.arg) == "true"
    assert portable_default(None, boolean=False) is None

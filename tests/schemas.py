"""Models for the tests of ``check`` and autogenerate: users and orders, and changes to them."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from sqlmig._cli import main

Change = Callable[[MetaData], None]


def schema(*changes: Change) -> MetaData:
    """users and orders, with ``changes`` made to them."""
    meta = MetaData()
    Table(
        "users",
        meta,
        Column("id", Integer, primary_key=True),
        Column("name", String(50)),
        Column("email", String(100), nullable=True),
    )
    Table("orders", meta, Column("id", Integer, primary_key=True), Column("user_id", Integer))
    for change in changes:
        change(meta)
    return meta


def note_column(meta: MetaData) -> None:
    meta.tables["orders"].append_column(Column("note", Text))


def longer_name(meta: MetaData) -> None:
    meta.tables["users"].c.name.type = String(100)


def required_email(meta: MetaData) -> None:
    meta.tables["users"].c.email.nullable = False


def name_index(meta: MetaData) -> None:
    Index("ix_users_name", meta.tables["users"].c.name)


def unique_email(meta: MetaData) -> None:
    meta.tables["users"].append_constraint(UniqueConstraint("email", name="uq_users_email"))


def user_key(meta: MetaData) -> None:
    meta.tables["orders"].append_constraint(
        ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_orders_user")
    )


def run(root: Path, *args: str) -> tuple[int, str, str]:
    """``sqlmig ARGS`` in ``root``, in-process, without SQLMIG_* variables: (code, out, err)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name in [k for k in os.environ if k.startswith("SQLMIG_")]:
            patch.delenv(name)
        with redirect_stdout(stdout), redirect_stderr(stderr):
            code = main(list(args))
    return code, stdout.getvalue(), stderr.getvalue()

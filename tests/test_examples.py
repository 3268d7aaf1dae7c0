"""The bundled examples in migrations/ run unchanged on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, Engine, column, func, inspect, select, table, text, true
from sqlalchemy.sql import Select

from backends import Backend
from conftest import tables
from sqlmig import MigrationRunner
from sqlmig.testing import check_stairway

EXAMPLES = Path(__file__).resolve().parent.parent / "migrations"
USERS_BEFORE_004 = 2500  # more than one backfill batch of 1,000


settings = table("settings", column("key"), column("value"))
users = table("users", column("id"), column("name"), column("email"), column("verified", Boolean))


@pytest.fixture
def engine(backend: Backend) -> Engine:
    engine = backend.engine()
    yield engine  # type: ignore[misc]
    engine.dispose()


def rows(engine: Engine, query: Select[Any]) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def add_users(engine: Engine, count: int) -> None:
    """Half of them at example.com (to be verified), half elsewhere."""
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (name, email) VALUES (:name, :email)"),
            [
                {"name": f"user {i}", "email": f"u{i}@{'example.com' if i % 2 else 'other.org'}"}
                for i in range(count)
            ],
        )


def test_examples_upgrade_downgrade_to_base_and_upgrade_again(
    backend: Backend, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    runner = MigrationRunner(backend.url, EXAMPLES)
    assert [m.version for m in runner.upgrade("003")] == ["001", "002", "003"]
    add_users(engine, USERS_BEFORE_004)

    with caplog.at_level(logging.INFO, logger="sqlmig"):
        assert [m.version for m in runner.upgrade()] == ["004"]

    progress = [r.getMessage() for r in caplog.records if r.name == "sqlmig.migrations"]
    assert progress[-1] == f"backfilled users.verified for {USERS_BEFORE_004 + 1} rows"
    assert len(progress) == 3  # three batches of at most 1,000
    assert rows(engine, select(settings).order_by(settings.c.key)) == [
        ("app_name", "My Bot"),
        ("version", "1.0.0"),
    ]
    # the seed admin and every example.com user are verified, the rest are not
    verified = rows(engine, select(users.c.email).where(users.c.verified == true()))
    assert len(verified) == 1 + USERS_BEFORE_004 // 2
    assert all(email.endswith("@example.com") for (email,) in verified)
    assert rows(engine, select(func.count()).select_from(users)) == [(USERS_BEFORE_004 + 1,)]
    assert {c["name"] for c in inspect(engine).get_columns("users")} >= {"verified", "email"}

    assert [m.version for m in runner.downgrade("base")] == ["004", "003", "002", "001"]
    assert tables(backend) == {"migrations"}

    assert [m.version for m in runner.upgrade()] == ["001", "002", "003", "004"]
    assert rows(engine, select(users.c.name, users.c.email, users.c.verified)) == [
        ("Admin", "admin@example.com", True)
    ]
    assert {i["name"] for i in inspect(engine).get_indexes("user_preferences")} >= {
        "idx_user_preferences_user_id"
    }


def test_every_example_down_undoes_its_up(backend: Backend) -> None:
    checked = check_stairway(MigrationRunner(backend.url, EXAMPLES))

    assert [m.version for m in checked] == ["001", "002", "003", "004"]


def test_undoing_004_keeps_users_rows_and_the_preferences_foreign_key(
    backend: Backend, engine: Engine
) -> None:
    runner = MigrationRunner(backend.url, EXAMPLES)
    runner.upgrade()
    add_users(engine, 10)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO user_preferences (user_id, preference_key, preference_value) "
                "SELECT id, 'theme', 'dark' FROM users"
            )
        )

    runner.rollback_last()

    assert "verified" not in {c["name"] for c in inspect(engine).get_columns("users")}
    assert rows(engine, select(func.count()).select_from(users)) == [(11,)]
    assert rows(engine, select(func.count()).select_from(table("user_preferences"))) == [(11,)]
    [fk] = inspect(engine).get_foreign_keys("user_preferences")
    assert (fk["referred_table"], fk["referred_columns"]) == ("users", ["id"])
    uniques = inspect(engine).get_unique_constraints("users")
    assert ["email"] in [u["column_names"] for u in uniques]


def test_dry_run_of_the_examples_shows_the_alter_table_and_changes_nothing(
    backend: Backend,
) -> None:
    runner = MigrationRunner(backend.url, EXAMPLES)
    runner.upgrade("003")

    [step] = runner.dry_run()

    assert step.migration.version == "004"
    if not backend.profile.transactional_ddl:  # DDL commits itself there: planned only
        assert not step.tried and step.statements == []
    else:
        assert step.tried
        assert any(
            s.startswith("ALTER TABLE users ADD") and "verified" in s for s in step.statements
        )
    assert runner.status().current == "003"
    engine = backend.engine()
    try:
        assert "verified" not in {c["name"] for c in inspect(engine).get_columns("users")}
    finally:
        engine.dispose()

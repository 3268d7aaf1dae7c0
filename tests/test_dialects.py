"""The registry of dialect profiles (sqlmig._dialects): each database's name to its profile."""

from __future__ import annotations

import dataclasses

import pytest

from backends import Backend
from sqlmig._dialects import FALLBACK, PROFILES, DialectProfile, profile_for, profile_named
from sqlmig._dialects.mysql import MYSQL
from sqlmig._dialects.postgresql import POSTGRESQL, AdvisoryLock
from sqlmig._dialects.sqlite import SQLITE


def test_each_dialect_name_finds_its_own_module_s_profile() -> None:
    assert profile_named("sqlite") is SQLITE
    assert profile_named("postgresql") is POSTGRESQL
    assert profile_named("mysql") is MYSQL


def test_mariadb_is_mysql() -> None:
    assert profile_named("mariadb") is MYSQL


def test_an_unknown_dialect_gets_the_conservative_fallback() -> None:
    profile = profile_named("somedb")

    assert profile is FALLBACK
    assert not profile.transactional_ddl  # DDL assumed to commit itself: failed rows, no rollback
    assert not profile.caller_transaction_ok
    assert profile.lock is None
    assert not profile.rebuilds_tables_for_alter
    assert profile.history_now_sql == "CURRENT_TIMESTAMP"
    assert not profile.busy(RuntimeError("database is locked"))


def test_the_profile_of_a_connection_is_its_dialect_s(backend: Backend) -> None:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            assert profile_for(conn) is PROFILES[conn.dialect.name] is backend.profile
    finally:
        engine.dispose()


def test_a_backend_is_one_profile_and_one_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL-compatible database whose advisory locks differ: only the lock is new."""

    class OtherLock(AdvisoryLock):
        pass

    compatible = dataclasses.replace(POSTGRESQL, name="pgcompatible", lock=OtherLock)
    monkeypatch.setitem(PROFILES, "pgcompatible", compatible)

    profile = profile_named("pgcompatible")
    assert isinstance(profile, DialectProfile)
    assert profile.lock is OtherLock
    assert profile.transactional_ddl and profile.identity == POSTGRESQL.identity
    assert profile_named("postgresql").lock is AdvisoryLock

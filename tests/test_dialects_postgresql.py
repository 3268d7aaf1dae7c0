"""PostgreSQL's profile (sqlmig._dialects.postgresql): the advisory lock, the session settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from backends import Backend
from sqlmig._dialects.postgresql import POSTGRESQL, AdvisoryLock
from sqlmig._locking import lock_key

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


@pytest.fixture
def conn(backend: Backend) -> Iterator[Connection]:
    engine = backend.engine()
    with engine.connect() as conn:
        yield conn
    engine.dispose()


def test_the_lock_key_names_the_server_s_database_and_schema(
    conn: Connection, backend: Backend
) -> None:
    lock = POSTGRESQL.lock_for(conn, "migrations", None)
    audit = POSTGRESQL.lock_for(conn, "migrations", "audit")

    assert isinstance(lock, AdvisoryLock) and isinstance(audit, AdvisoryLock)
    assert lock.key == lock_key(backend.url.database, "public", "migrations")
    assert audit.key == lock_key(backend.url.database, "audit", "migrations")
    assert lock.id == int.from_bytes(lock.key[:8], "big", signed=True)  # a signed bigint


def test_the_advisory_lock_is_a_session_lock_and_names_its_holder(
    conn: Connection, backend: Backend
) -> None:
    lock = AdvisoryLock(lock_key(backend.url.database, "public", "migrations"))
    with conn.begin():
        assert lock.try_acquire(conn, transaction_scoped=False)
    pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    conn.commit()
    engine = backend.engine()
    try:
        with engine.connect() as other:
            assert not lock.try_acquire(other, transaction_scoped=False)
            assert lock.holder(other) == f"PostgreSQL process {pid}"
            other.rollback()
    finally:
        engine.dispose()
    assert lock.free(conn)
    assert not lock.free(conn)  # no longer held


def test_the_session_settings_are_applied_and_given_back(conn: Connection) -> None:
    def interval() -> str:
        with conn.begin_nested() if conn.in_transaction() else conn.begin():
            return str(conn.execute(text("SHOW client_connection_check_interval")).scalar())

    before = interval()
    with conn.begin():
        assert POSTGRESQL.tune_session(conn, local=True) == []  # ends with the transaction
        assert interval() == "1s"
    assert interval() == before
    with conn.begin():
        previous = POSTGRESQL.tune_session(conn, local=False)
    assert previous == [("client_connection_check_interval", "0")] and interval() == "1s"
    with conn.begin():
        POSTGRESQL.untune_session(conn, previous)
    assert interval() == before

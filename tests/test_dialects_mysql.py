"""MySQL/MariaDB's profile (sqlmig._dialects.mysql): GET_LOCK, DATETIME(6), what ops restate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import BigInteger, create_engine, text
from sqlalchemy.engine import Connection

from backends import Backend
from conftest import MakeMigrations
from sqlmig import MigrationRunner, ops
from sqlmig._dialects import profile_for
from sqlmig._dialects.mysql import MYSQL, NamedLock
from sqlmig._locking import lock_key

pytestmark = pytest.mark.parametrize("backend", ["mysql"], indirect=True)


@pytest.fixture
def conn(backend: Backend) -> Iterator[Connection]:
    engine = backend.engine()
    with engine.connect() as conn:
        yield conn
    engine.dispose()


def test_the_lock_key_names_the_table_s_own_schema_as_its_database(
    conn: Connection, backend: Backend
) -> None:
    lock = MYSQL.lock_for(conn, "migrations", None)
    other = MYSQL.lock_for(conn, "migrations", "audit")

    assert isinstance(lock, NamedLock) and isinstance(other, NamedLock)
    database = backend.url.database
    assert lock.key == lock_key(database, database, "migrations")
    assert other.key == lock_key("audit", "audit", "migrations")
    assert lock.name.startswith("sqlmig_") and len(lock.name) <= 64  # MySQL's limit


def test_the_named_lock_names_its_holder(conn: Connection, backend: Backend) -> None:
    lock = NamedLock(lock_key(backend.url.database, backend.url.database, "migrations"))
    with conn.begin():
        assert lock.try_acquire(conn, transaction_scoped=False)
        me = conn.execute(text("SELECT CONNECTION_ID()")).scalar()
    engine = backend.engine()
    try:
        with engine.connect() as other:
            assert not lock.try_acquire(other, transaction_scoped=False)
            assert lock.holder(other) == f"MySQL connection {me}"
            other.rollback()
    finally:
        engine.dispose()
    assert lock.free(conn)


def test_history_times_keep_microseconds(backend: Backend, make_migrations: MakeMigrations) -> None:
    MigrationRunner(backend.url, make_migrations({"001_a.py": "def up(conn): pass\n"})).upgrade()
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            precision = conn.execute(
                text(
                    "SELECT DATETIME_PRECISION FROM information_schema.COLUMNS WHERE "
                    "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'migrations' "
                    "AND COLUMN_NAME = 'applied_at'"
                )
            ).scalar()
    finally:
        engine.dispose()
    assert precision == 6


@pytest.mark.parametrize("scheme", ["mysql+pymysql", "mariadb+pymysql"])
def test_ops_keep_auto_increment_and_drop_a_foreign_key_s_index(
    backend: Backend, scheme: str
) -> None:
    """A ``mariadb://`` URL (SQLAlchemy's dialect "mariadb") gets MySQL's profile."""
    engine = create_engine(backend.url.set(drivername=scheme))
    try:
        with engine.begin() as conn:
            assert profile_for(conn) is MYSQL
            conn.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
            conn.execute(
                text(
                    "CREATE TABLE child (id INTEGER AUTO_INCREMENT PRIMARY KEY, parent_id INTEGER,"
                    " CONSTRAINT fk_child_parent FOREIGN KEY (parent_id) REFERENCES parent (id))"
                )
            )
            o = ops(conn)
            o.alter_column("child", "id", type_=BigInteger)
            o.drop_foreign_key("fk_child_parent", "child")
            conn.execute(text("INSERT INTO child (parent_id) VALUES (NULL)"))  # still numbered
            indexes = conn.execute(text("SHOW INDEX FROM child")).all()
        assert [row[2] for row in indexes] == ["PRIMARY"]
    finally:
        engine.dispose()


def test_a_step_that_turned_autocommit_on_is_seen_and_undone(conn: Connection) -> None:
    with conn.begin():
        conn.execute(text("SELECT 1"))
        assert MYSQL.kept_transaction(conn)
        conn.connection.dbapi_connection.autocommit(True)  # type: ignore[union-attr]

        assert not MYSQL.kept_transaction(conn)
        assert conn.execute(text("SELECT @@autocommit")).scalar() == 0

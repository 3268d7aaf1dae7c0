"""PostgreSQL's profile (sqlmig._dialects.postgresql): the advisory lock, the session settings.

The lock is a session lock so that CREATE INDEX CONCURRENTLY can run while it is held.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from backends import Backend
from conftest import MakeMigrations
from sqlmig import DatabaseUnavailable, Migration, MigrationFailed, MigrationRunner
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


def scalar(backend: Backend, sql: str) -> object:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


# -- CREATE INDEX CONCURRENTLY ------------------------------------------------------------

TABLE_WITH_ROWS = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t SELECT generate_series(1, 1000)"))
    """

CONCURRENT_INDEX = """\
    '''Build an index without blocking writers.'''
    from sqlalchemy import text

    transactional = False

    def up(conn):
        conn.execute(text("SET lock_timeout = '20s'"))  # bounds the test if it ever waits
        conn.execute(text("CREATE INDEX CONCURRENTLY t_x ON t (x)"))

    def down(conn):
        conn.execute(text("DROP INDEX CONCURRENTLY t_x"))
    """


def snapshot_holding_transactions(backend: Backend) -> None:
    """Every transaction in the database keeps one snapshot (REPEATABLE READ).

    Then a transaction that is merely open, such as one holding a
    transaction-scoped advisory lock, is one CREATE INDEX CONCURRENTLY waits for.
    """
    engine = backend.engine(isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(
            text(
                f"ALTER DATABASE {backend.url.database} "
                "SET default_transaction_isolation = 'repeatable read'"
            )
        )
    engine.dispose()


def test_create_index_concurrently_completes_while_the_runner_holds_the_lock(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    snapshot_holding_transactions(backend)
    folder = make_migrations({"001_t.py": TABLE_WITH_ROWS, "002_index.py": CONCURRENT_INDEX})

    applied = MigrationRunner(backend.url, folder, lock_timeout=5).upgrade()

    assert [m.version for m in applied] == ["001", "002"]
    assert scalar(backend, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass")


@pytest.mark.parametrize("scope", ["transaction", "session"])
def test_a_transaction_scoped_lock_would_deadlock_create_index_concurrently(
    backend: Backend, make_migrations: MakeMigrations, scope: str
) -> None:
    """Why the lock is a session lock, never held in an open transaction."""
    snapshot_holding_transactions(backend)
    MigrationRunner(backend.url, make_migrations({"001_t.py": TABLE_WITH_ROWS})).upgrade()
    engine = backend.engine()
    key = AdvisoryLock(lock_key(backend.url.database, "public", "migrations")).id
    try:
        with engine.connect() as holder, engine.connect() as migrating:
            if scope == "transaction":  # a runner holding its lock in an open transaction
                holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            else:  # what sqlmig does
                holder = holder.execution_options(isolation_level="AUTOCOMMIT")
                holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            migrating = migrating.execution_options(isolation_level="AUTOCOMMIT")
            migrating.execute(text("SET lock_timeout = '1s'"))
            build = text("CREATE INDEX CONCURRENTLY t_x ON t (x)")
            if scope == "transaction":
                # The index build waits for the holder's transaction, which waits for
                # the migration to end: a deadlock, cut here by lock_timeout.
                with pytest.raises(OperationalError, match="lock timeout"):
                    migrating.execute(build)
            else:
                migrating.execute(build)
                assert scalar(backend, "SELECT count(*) FROM pg_indexes WHERE indexname = 't_x'")
    finally:
        engine.dispose()


def test_the_step_s_search_path_is_restored_by_pg_catalog_s_set_config_not_a_step_s_own(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    """A step that puts a schema with a ``set_config()`` of its own first on the path."""
    hijack = """\
        def up(conn):
            conn.exec_driver_sql("CREATE SCHEMA trap")
            conn.exec_driver_sql(
                "CREATE FUNCTION trap.set_config(text, text, boolean) RETURNS text "
                "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'trap.set_config ran'; END $$"
            )
            conn.exec_driver_sql("SET search_path = trap, pg_catalog, public")

        def down(conn):
            conn.exec_driver_sql("DROP SCHEMA trap CASCADE")
        """
    engine = backend.engine(pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            before = conn.execute(text("SELECT current_setting('search_path')")).scalar()
        runner = MigrationRunner(engine, make_migrations({"001_trap.py": hijack}))

        assert [m.version for m in runner.upgrade()] == ["001"]
        with engine.connect() as conn:  # the pool's one connection, the run's
            assert conn.execute(text("SELECT current_setting('search_path')")).scalar() == before
        assert [m.version for m in runner.downgrade("base")] == ["001"]
    finally:
        engine.dispose()


@pytest.mark.parametrize("level", ["SERIALIZABLE", "REPEATABLE READ"])
def test_each_step_runs_at_the_engine_s_isolation_level(
    backend: Backend, make_migrations: MakeMigrations, level: str
) -> None:
    """sqlmig begins each step's transaction itself, as the driver would have begun it."""
    step = """\
        def up(conn):
            level = conn.exec_driver_sql("SHOW transaction_isolation").scalar()
            conn.exec_driver_sql(f"CREATE TABLE seen AS SELECT '{level}'::text AS level")
        """
    engine = backend.engine(isolation_level=level.replace(" ", "_"))
    try:
        MigrationRunner(engine, make_migrations({"001_seen.py": step})).upgrade()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT level FROM seen")).scalar() == level.lower()
    finally:
        engine.dispose()


@pytest.mark.parametrize("off", ["at connect", "by a step"])
def test_a_search_path_with_backslashes_comes_back_whatever_standard_conforming_strings_says(
    backend: Backend, make_migrations: MakeMigrations, off: str
) -> None:
    """The restore's literal reads the same with ``standard_conforming_strings`` on or off."""
    schema = "it's a \\b\\\\ schéma"
    path = '"' + schema.replace('"', '""') + '", public'
    setup = backend.engine()
    with setup.begin() as conn:
        conn.exec_driver_sql('CREATE SCHEMA "' + schema.replace('"', '""') + '"')
    setup.dispose()
    engine = backend.engine(pool_size=1, max_overflow=0)

    @event.listens_for(engine, "connect")
    def scoped(dbapi: Any, _record: Any) -> None:
        with dbapi.cursor() as cursor:
            cursor.execute("SELECT pg_catalog.set_config('search_path', %s, false)", (path,))
            if off == "at connect":
                cursor.execute("SET standard_conforming_strings = off")
        dbapi.commit()

    steps = {
        "001_off.py": "def up(conn):\n"
        + (
            "    conn.exec_driver_sql('SET standard_conforming_strings = off')\n"
            if off == "by a step"
            else "    pass\n"
        ),
        "002_t.py": "def up(conn):\n    conn.exec_driver_sql('CREATE TABLE t (x int)')\n",
    }
    try:
        with engine.connect() as conn:
            before = conn.execute(text("SELECT current_setting('search_path')")).scalar()
        assert [m.version for m in MigrationRunner(engine, make_migrations(steps)).upgrade()] == [
            "001",
            "002",
        ]
        with engine.connect() as conn:  # the pool's one connection, the run's
            assert conn.execute(text("SELECT current_setting('search_path')")).scalar() == before
            assert conn.execute(text("SELECT current_schema()")).scalar() == schema
    finally:
        engine.dispose()


def test_a_step_that_ends_its_transaction_then_catches_an_error_is_still_told_apart(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    """An aborted transaction is the step's own only while the step's savepoint is in it."""
    source = """\
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError

        def up(conn):
            conn.execute(text("CREATE TABLE sneaky (id INTEGER)"))
            conn._dbapi_connection.commit()
            try:
                conn.execute(text("SELECT id FROM no_such_table"))
            except DBAPIError:
                pass
        """
    folder = make_migrations({"001_sneaky.py": source})
    with pytest.raises(MigrationFailed, match="transaction was ended inside the step"):
        MigrationRunner(backend.url, folder).upgrade()

    assert [row.version for row in MigrationRunner(backend.url, folder).status().failed] == ["001"]


@pytest.mark.parametrize("schema", ["Mandant-ü€", "租户"])
def test_the_search_path_comes_back_after_a_step_sets_an_encoding_without_its_names(
    backend: Backend, make_migrations: MakeMigrations, schema: str
) -> None:
    """The restore is ASCII and returns nothing, so any client_encoding can carry it."""
    quoted = '"' + schema.replace('"', '""') + '"'
    setup = backend.engine()
    with setup.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {quoted}")
    setup.dispose()
    engine = backend.engine(pool_size=1, max_overflow=0)

    @event.listens_for(engine, "connect")
    def scoped(dbapi: Any, _record: Any) -> None:
        with dbapi.cursor() as cursor:
            cursor.execute("SELECT pg_catalog.set_config('search_path', %s, false)", (quoted,))
        dbapi.commit()

    steps = {
        "001_latin.py": "def up(conn):\n"
        '    conn.exec_driver_sql("SET search_path TO public")\n'
        "    conn.exec_driver_sql(\"SET client_encoding TO 'LATIN1'\")\n",
        "002_t.py": "def up(conn):\n    conn.exec_driver_sql('CREATE TABLE t (x int)')\n",
    }
    try:
        runner = MigrationRunner(engine, make_migrations(steps), schema="public")
        assert [m.version for m in runner.upgrade()] == ["001", "002"]
        with engine.connect() as conn:  # the pool's one connection, the run's
            conn.exec_driver_sql("RESET client_encoding")
            assert conn.execute(text("SELECT current_setting('search_path')")).scalar() == quoted
            assert inspect(conn).get_table_names(schema=schema) == ["t"]
    finally:
        engine.dispose()


TWO_STATEMENTS = """\
    def up(conn):
        conn.exec_driver_sql("CREATE TABLE t{n} (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO t{n} (id) VALUES (1)")
    """


def test_a_step_costs_as_many_round_trips_as_a_plain_transaction_of_it_and_its_row(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    """Through psycopg, a step of two statements is five round trips, as in a loop of
    ``with conn.begin()`` sending them and the history row: the step's savepoint goes
    with ``BEGIN``, its release with the search path's restore and the row, then COMMIT."""
    from psycopg import pq

    trace = tmp_path / "libpq.trace"
    engine = backend.engine()
    folder = make_migrations({f"00{n}_t{n}.py": TWO_STATEMENTS.format(n=n) for n in (1, 2, 3)})
    with trace.open("w") as out:

        @event.listens_for(engine, "connect")
        def traced(dbapi: Any, _record: Any) -> None:
            dbapi.pgconn.trace(out.fileno())
            dbapi.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

        try:
            applied = MigrationRunner(engine, folder).upgrade()
        finally:
            engine.dispose()
    assert len(applied) == 3

    steps: list[list[str]] = []  # each step's messages, from its BEGIN until idle again
    inside = False
    for line in trace.read_text().splitlines():
        if line.startswith("F") and "BEGIN; SAVEPOINT sqlmig_step" in line:
            steps.append([])
            inside = True
        if inside:
            steps[-1].append(line)
            inside = "ReadyForQuery\t I" not in line
    assert len(steps) == 3
    for messages in steps:
        assert len([m for m in messages if "ReadyForQuery" in m]) == 5
        queries = [m for m in messages if m.startswith("F") and "\tQuery\t" in m]
        assert "RELEASE SAVEPOINT sqlmig_step_" in queries[-2]
        assert "set_config('search_path'" in queries[-2]
        assert "INSERT INTO migrations " in queries[-2]  # the row, in the step's transaction
        assert queries[-1].endswith('"COMMIT"')


def test_a_history_row_s_text_comes_back_whatever_standard_conforming_strings_says(
    backend: Backend,
) -> None:
    """A row's values written in sqlmig's own statement read the same with it on or off;
    a name that is not ASCII is sent as a parameter, and comes back too."""

    def off(conn: Connection) -> None:
        conn.exec_driver_sql("SET standard_conforming_strings = off")

    def on(conn: Connection) -> None:
        conn.exec_driver_sql("SET standard_conforming_strings = on")

    names = ["it's a \\b\\\\ step", "schrödinger's", "back \\' to 'on'"]
    steps = [
        Migration("001", names[0], up=off, down=on),
        Migration("002", names[1], up=off, down=on),
        Migration("003", names[2], up=on, down=off),
    ]
    runner = MigrationRunner(backend.url, steps)

    assert [m.version for m in runner.upgrade()] == ["001", "002", "003"]
    assert [row.name for row in runner.status().applied] == names
    assert [m.version for m in runner.downgrade("base")] == ["003", "002", "001"]
    assert runner.status().applied == []


def test_a_connection_lost_while_the_history_row_is_written_says_so(backend: Backend) -> None:
    """The server ending the session in the round trip that writes a step's history row
    (here a trigger on the table) is a lost connection, not a refused row; the step
    is rolled back with it."""

    def up(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER)")
        conn.exec_driver_sql(
            "CREATE FUNCTION bye() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END$$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER bye BEFORE INSERT ON migrations FOR EACH ROW EXECUTE FUNCTION bye()"
        )

    steps = [Migration("001", "first", up=lambda conn: None), Migration("002", "bye", up=up)]
    with pytest.raises(DatabaseUnavailable, match="while recording 002"):
        MigrationRunner(backend.url, steps).upgrade()

    engine = backend.engine()
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version FROM migrations").scalars().all() == ["001"]
            assert not inspect(conn).has_table("t")
    finally:
        engine.dispose()

"""The migration lock (sqlmig._locking) on real databases, one runner against a held lock.

The multi-process behaviour (replicas starting at once, killed runners, races)
is in test_concurrency.py; what only one database's lock does, in test_dialects_<name>.py.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from holding import held_lock, lock_is_free, lock_waits, runner_lock
from sqlalchemy import URL, event, text
from sqlalchemy.exc import OperationalError
from workers import BOUND, SPAWN, hold_sqlite_lock, upgrade_once, wait_for_file

from backends import Backend
from conftest import MakeMigrations, tables
from sqlmig import DirtyDatabase, LockTimeout, MigrationFailed, MigrationRunner
from sqlmig._cli import main
from sqlmig._dialects.mysql import NamedLock
from sqlmig._dialects.postgresql import AdvisoryLock
from sqlmig._locking import lock_key

servers = pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
postgresql = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

CREATE = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE {t} (x INTEGER)"))

    def down(conn):
        conn.execute(text("DROP TABLE {t}"))
    """


def creating(*names: str, prefix: str = "") -> dict[str, str]:
    """Files ``NNN_<t>.py`` that each create (and drop) table ``<prefix><t>``."""
    return {f"{i:03d}_{t}.py": CREATE.format(t=prefix + t) for i, t in enumerate(names, 1)}


def scalar(backend: Backend, sql: str) -> object:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


# -- the key -----------------------------------------------------------------


def test_the_key_names_database_schema_and_table() -> None:
    key = lock_key("app", "public", "migrations")

    assert key == lock_key("app", "public", "migrations")
    others = {
        lock_key("app", "public", "other"),
        lock_key("app", "audit", "migrations"),
        lock_key("other", "public", "migrations"),
    }
    assert key not in others and len(others) == 3


# -- timing out ----------------------------------------------------------------


def test_a_runner_that_cannot_get_the_lock_raises_lock_timeout_naming_the_holder(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(creating("a")), lock_timeout=0.3)

    with held_lock(backend) as held, pytest.raises(LockTimeout) as caught:
        runner.upgrade()

    error = caught.value
    assert error.timeout == 0.3
    assert "lock_timeout" in str(error)
    if backend.name == "postgresql":
        assert f"PostgreSQL process {held.holder}" in str(error)
    elif backend.name == "mysql":
        assert f"MySQL connection {held.holder}" in str(error)
    else:
        assert "SQLite" in str(error)
    assert "a" not in tables(backend)
    assert runner.upgrade()[0].version == "001"  # the lock is free again


WRITERS: dict[str, Callable[[MigrationRunner], object]] = {
    "upgrade": lambda r: r.upgrade(),
    "downgrade": lambda r: r.downgrade("base"),
    "rollback_last": lambda r: r.rollback_last(),
    "baseline": lambda r: r.baseline("001"),
    "repair": lambda r: r.repair(),
}


@pytest.mark.parametrize("operation", list(WRITERS))
def test_every_writing_operation_waits_for_the_same_lock(
    backend: Backend, make_migrations: MakeMigrations, operation: str
) -> None:
    folder = make_migrations(creating("a", "b"))
    runner = MigrationRunner(backend.url, folder, lock_timeout=0.3)
    if operation != "baseline":
        runner.upgrade("001")  # upgrade: 002 stays pending; the others: something to undo
    before = runner.status()

    with held_lock(backend), pytest.raises(LockTimeout):
        WRITERS[operation](runner)

    after = runner.status()
    assert [r.version for r in after.applied] == [r.version for r in before.applied]
    WRITERS[operation](runner)  # and once the lock is free it goes through


# -- two history tables ----------------------------------------------------------


@servers
def test_two_history_tables_in_one_database_do_not_block_each_other(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(creating("a"))
    billing = MigrationRunner(backend.url, folder, table="billing_migrations", lock_timeout=0.3)
    other = MigrationRunner(backend.url, folder, table="other_migrations", lock_timeout=0.3)

    with held_lock(backend, table="billing_migrations"):
        with pytest.raises(LockTimeout):
            billing.upgrade()
        assert [m.version for m in other.upgrade()] == ["001"]


@postgresql
def test_two_schemas_in_one_database_do_not_block_each_other(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA billing"))
        conn.execute(text("CREATE SCHEMA shop"))
    engine.dispose()
    folder = make_migrations(creating("a"))
    billing = MigrationRunner(backend.url, folder, schema="billing", lock_timeout=0.3)
    shop = MigrationRunner(backend.url, folder, schema="shop", lock_timeout=0.3)

    with held_lock(backend, schema="billing"):
        with pytest.raises(LockTimeout):
            billing.upgrade()
        assert [m.version for m in shop.upgrade()] == ["001"]
    assert scalar(backend, "SELECT count(*) FROM shop.migrations") == 1


# -- released on every exit path ----------------------------------------------------

FAILING = """\
    def up(conn):
        raise {error}("step 002 gives up")
    """


def test_the_lock_is_released_when_a_step_fails(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({**creating("a"), "002_fails.py": FAILING.format(error="ValueError")})
    engine = backend.engine()  # a pool the lock connection returns to
    try:
        with pytest.raises(MigrationFailed):
            MigrationRunner(engine, folder, lock_timeout=5).upgrade()
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert lock_is_free(backend)
        with engine.connect() as conn:  # no pooled connection still holds it either
            if backend.profile.lock is not None:
                lock = runner_lock(conn)
                assert lock.try_acquire(conn, transaction_scoped=False)
                lock.release(conn)
    finally:
        engine.dispose()


def test_the_lock_is_released_when_a_step_is_interrupted(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {**creating("a"), "002_interrupted.py": FAILING.format(error="KeyboardInterrupt")}
    )
    runner = MigrationRunner(backend.url, folder, lock_timeout=5)

    with pytest.raises(KeyboardInterrupt):
        runner.upgrade()

    assert lock_is_free(backend)
    if not backend.profile.transactional_ddl:  # DDL committed itself: the step stays flagged
        with pytest.raises(DirtyDatabase):
            runner.upgrade()
    else:
        assert [r.version for r in runner.status().applied] == ["001"]


@pytest.fixture
def interrupt_when_waiting() -> Iterator[threading.Event]:
    """Send this process SIGINT (Ctrl-C) once a runner says it waits for the lock."""
    done = threading.Event()
    with lock_waits() as waits:

        def interrupt() -> None:
            if waits.wait(30) and not done.is_set():
                os.kill(os.getpid(), signal.SIGINT)

        # a suite run as a background job starts with SIGINT ignored: take Ctrl-C as a terminal does
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        thread = threading.Thread(target=interrupt, daemon=True)
        thread.start()
        try:
            yield waits
        finally:
            signal.signal(signal.SIGINT, previous)
            done.set()
            waits.set()
            thread.join(30)


def connections_named(backend: Backend, name: str) -> int:
    """PostgreSQL: sessions with that application_name; MySQL: other sessions on the database."""
    if backend.name == "postgresql":
        query = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}'"
    else:
        query = (
            "SELECT count(*) FROM information_schema.PROCESSLIST "
            f"WHERE DB = '{backend.url.database}' AND ID <> CONNECTION_ID()"
        )
    return int(str(scalar(backend, query)))


@servers
def test_a_runner_interrupted_while_waiting_leaves_no_connection_and_no_lock(
    backend: Backend, make_migrations: MakeMigrations, interrupt_when_waiting: threading.Event
) -> None:
    url = backend.url
    waiter = f"waiter-{url.database}"  # unique on the server
    if backend.name == "postgresql":
        url = url.update_query_dict({"application_name": waiter})
    runner = MigrationRunner(url, make_migrations(creating("a")), lock_timeout=30)

    with held_lock(backend):
        with pytest.raises(KeyboardInterrupt):
            runner.upgrade()
        assert interrupt_when_waiting.is_set()
        # only the test's own holder is left (MySQL: counted from another session)
        assert connections_named(backend, waiter) == (1 if backend.name == "mysql" else 0)

    assert lock_is_free(backend)
    again = MigrationRunner(backend.url, runner.migrations_source, lock_timeout=1)
    assert [m.version for m in again.upgrade()] == ["001"]


# -- one session: the runner's own connection holds the lock ----------------------------

OBSERVE = {
    "postgresql": """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE observed (me INTEGER, holder INTEGER, others INTEGER)"))
            conn.execute(text(
                "INSERT INTO observed SELECT pg_backend_pid(), "
                "(SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND "
                " l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                " AND (l.classid::bigint << 32 | l.objid::bigint) = {signed}), "
                "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                " AND pid <> pg_backend_pid())"))
        """,
    "mysql": """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE observed (me INTEGER, holder INTEGER, others INTEGER)"))
            conn.execute(text(
                "INSERT INTO observed SELECT CONNECTION_ID(), IS_USED_LOCK('{name}'), "
                "(SELECT count(*) FROM information_schema.PROCESSLIST "
                " WHERE DB = DATABASE() AND ID <> CONNECTION_ID())"))
        """,
}


@servers
def test_the_runner_holds_the_lock_on_the_one_session_its_steps_run_on(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    """No second, idle session: PostgreSQL counts exactly one commit per step."""
    engine = backend.engine()
    with engine.connect() as conn:
        lock = runner_lock(conn)
    engine.dispose()
    source = OBSERVE[backend.name].format(
        signed=lock.id if isinstance(lock, AdvisoryLock) else 0,
        name=lock.name if isinstance(lock, NamedLock) else "",
    )
    MigrationRunner(backend.url, make_migrations({"001_observe.py": source})).upgrade()

    engine = backend.engine()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT me, holder, others FROM observed")).all()
    engine.dispose()
    assert len(rows) == 1
    me, holder, others = rows[0]
    assert holder == me, "the step's own session holds the runner's lock"
    assert others == 0, "the runner opened no other session on the database"
    assert lock_is_free(backend)


FREES_THE_LOCK = {
    "postgresql": "SELECT pg_advisory_unlock_all()",
    "mysql": "SELECT RELEASE_ALL_LOCKS()",
}


@servers
def test_a_step_that_frees_the_runners_lock_is_reported(
    backend: Backend, make_migrations: MakeMigrations, caplog: pytest.LogCaptureFixture
) -> None:
    source = f"""\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("{FREES_THE_LOCK[backend.name]}"))
        """
    runner = MigrationRunner(backend.url, make_migrations({"001_frees.py": source}))

    with caplog.at_level(logging.WARNING, logger="sqlmig"):
        assert [m.version for m in runner.upgrade()] == ["001"]

    assert "the migration lock was no longer held" in caplog.text
    assert lock_is_free(backend)


# -- inside the caller's transaction --------------------------------------------------------


@postgresql
def test_inside_a_callers_transaction_the_lock_lasts_until_the_caller_commits(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(creating("a"))
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            with conn.begin():
                MigrationRunner(conn, folder).upgrade()
                assert not lock_is_free(backend)  # held by the caller's transaction
                with pytest.raises(LockTimeout):
                    MigrationRunner(
                        backend.url, make_migrations(creating("a", "b")), lock_timeout=0.3
                    ).upgrade()
            assert lock_is_free(backend)  # gone with the commit
    finally:
        engine.dispose()
    assert "a" in tables(backend)


@servers
def test_a_release_interrupted_by_ctrl_c_does_not_leave_the_lock_in_the_pool(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    """SQLAlchemy invalidates a connection a KeyboardInterrupt went through: session ended."""
    engine = backend.engine()  # the service's own pool, handed to the runner
    interrupted: list[str] = []

    def ctrl_c_at_release(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if ("unlock" in statement or "RELEASE_LOCK" in statement) and not interrupted:
            interrupted.append(statement)
            raise KeyboardInterrupt

    event.listen(engine, "before_cursor_execute", ctrl_c_at_release)
    try:
        with pytest.raises(KeyboardInterrupt):
            MigrationRunner(engine, make_migrations(creating("a"))).upgrade()
        assert interrupted
        assert lock_is_free(backend)
    finally:
        engine.dispose()


# -- SQLite: every wait for the write lock is tied to lock_timeout -------------------------


@contextmanager
def sqlite_locked(backend: Backend, tmp_path: Path, seconds: float) -> Iterator[None]:
    """Another process holds the SQLite file's exclusive lock for ``seconds`` from now."""
    assert backend.url.database
    ready = tmp_path / "locked"
    holder = SPAWN.Process(
        target=hold_sqlite_lock, args=(backend.url.database, seconds, str(ready)), daemon=True
    )
    holder.start()
    try:
        wait_for_file(ready, holder)
        yield
    finally:
        holder.join(BOUND)
        if holder.is_alive():
            holder.kill()


def sqlite_with_one_pending(backend: Backend, make_migrations: MakeMigrations) -> Path:
    folder = make_migrations(creating("a"))
    MigrationRunner(backend.url, folder).upgrade()
    return make_migrations(creating("a", "b"))


def test_sqlite_a_runner_waits_up_to_lock_timeout_past_the_drivers_default(
    sqlite_backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = sqlite_with_one_pending(sqlite_backend, make_migrations)
    with sqlite_locked(sqlite_backend, tmp_path, seconds=6):  # sqlite3 gives up after 5 s
        started = time.monotonic()
        applied = MigrationRunner(sqlite_backend.url, folder, lock_timeout=20).upgrade()
    assert [m.version for m in applied] == ["002"]
    assert time.monotonic() - started < 15


def test_sqlite_a_runner_whose_wait_runs_out_gets_lock_timeout(
    sqlite_backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = sqlite_with_one_pending(sqlite_backend, make_migrations)
    runner = MigrationRunner(sqlite_backend.url, folder, lock_timeout=1)
    with sqlite_locked(sqlite_backend, tmp_path, seconds=4):
        for call in (runner.upgrade, runner.status, lambda: runner.downgrade("001")):
            started = time.monotonic()
            with pytest.raises(LockTimeout) as caught:
                call()
            assert time.monotonic() - started < 3.5, "waited past lock_timeout"
            assert "SQLite database stayed locked" in str(caught.value)
            assert isinstance(caught.value.__cause__, OperationalError)
    assert [m.version for m in runner.status().applied] == ["001"]


def test_sqlite_the_command_line_exits_4_when_the_wait_runs_out(
    sqlite_backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = sqlite_with_one_pending(sqlite_backend, make_migrations)
    argv = ["--url", sqlite_backend.url_string, "--dir", str(folder)]
    with sqlite_locked(sqlite_backend, tmp_path, seconds=4):
        assert main([*argv, "--lock-timeout", "1", "upgrade"]) == 4


def test_sqlite_a_callers_engine_with_a_short_timeout_waits_up_to_lock_timeout(
    sqlite_backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = sqlite_with_one_pending(sqlite_backend, make_migrations)
    engine = sqlite_backend.engine(connect_args={"timeout": 0.1})
    try:
        with sqlite_locked(sqlite_backend, tmp_path, seconds=2):
            applied = MigrationRunner(engine, folder, lock_timeout=10).upgrade()
        assert [m.version for m in applied] == ["002"]
        with engine.connect() as conn:  # the engine's own setting is back
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 100
    finally:
        engine.dispose()


# -- the lock's identity comes from the server, not from the URL's text --------------------

STAYING = """\
    '''Step 002: the first time it runs, stays until {release} appears (bounded).'''
    import os
    import time
    from pathlib import Path

    def up(conn):
        if os.path.exists({mark!r}):
            return
        Path({mark!r}).touch()
        deadline = time.monotonic() + {bound}
        while not os.path.exists({release!r}) and time.monotonic() < deadline:
            time.sleep(0.02)
    """


def spelled(backend: Backend, how: str) -> URL:
    """The backend's database, named another way than in the URL's path."""
    name = backend.url.database
    assert name
    bare = backend.url.set(database="")
    if how == "query":
        key = "dbname" if backend.name == "postgresql" else "database"
        return bare.update_query_dict({key: name})
    return bare  # PGDATABASE names it


@pytest.mark.parametrize("how", ["query", "env"])
@servers
def test_runners_reaching_one_database_through_differently_spelled_urls_take_one_lock(
    backend: Backend,
    make_migrations: MakeMigrations,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    if how == "env":
        if backend.name != "postgresql":
            pytest.skip("PyMySQL reads no environment variable for the database")
        monkeypatch.setenv("PGDATABASE", backend.url.database or "")
    mark, release = tmp_path / "in-step-002", tmp_path / "release-002"
    folder = make_migrations(
        {
            **creating("a"),
            "002_stay.py": STAYING.format(mark=str(mark), release=str(release), bound=BOUND),
            "003_c.py": CREATE.format(t="c"),
        }
    )
    # the replica in the slow step reaches the database one way, the second replica another
    other = spelled(backend, how)
    holder_url, waiter_url = (other, backend.url) if how == "query" else (backend.url, other)
    if backend.name == "postgresql":  # bounded even where the second replica does not wait
        waiter_url = waiter_url.update_query_dict({"options": "-c statement_timeout=5000"})
    results = SPAWN.Queue()
    holder = SPAWN.Process(
        target=upgrade_once,
        args=(holder_url.render_as_string(False), str(folder), {}, results),
        daemon=True,
    )
    holder.start()
    try:
        wait_for_file(mark, holder)
        with pytest.raises(LockTimeout):
            MigrationRunner(waiter_url, folder, lock_timeout=0.5).upgrade()
    finally:
        release.touch()
        outcome = results.get(timeout=BOUND)
        holder.join(BOUND)
    assert outcome.ok and outcome.value == ["001", "002", "003"], str(outcome)
    assert MigrationRunner(waiter_url, folder).upgrade() == []


@servers
def test_a_run_takes_and_frees_the_lock_in_one_transaction_each(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    """The lock is taken in one transaction with the server's names for its key and the
    session's settings, right after the run's reads, and freed in one with the settings
    given back, the run's last."""
    MigrationRunner(backend.url, make_migrations(creating("a"))).upgrade()
    engine = backend.engine()
    transactions: list[list[str]] = [[]]
    event.listen(engine, "commit", lambda conn: transactions.append([]))
    event.listen(
        engine, "before_cursor_execute", lambda c, cur, st, *_: transactions[-1].append(st)
    )
    try:
        applied = MigrationRunner(engine, make_migrations(creating("a", "b", "c"))).upgrade()
    finally:
        engine.dispose()
    assert len(applied) == 2
    (taking,) = [
        t for t in transactions if any("try_advisory_lock" in s or "GET_LOCK" in s for s in t)
    ]
    (freeing,) = [
        t for t in transactions if any("advisory_unlock" in s or "RELEASE_LOCK" in s for s in t)
    ]
    assert transactions.index(taking) == 2  # after the start-up check and the full read
    assert backend.profile.identity in taking
    assert transactions.index(freeing) == len(transactions) - 2  # the last one
    settings = [s for s in taking if "set_config" in s]
    assert len(settings) == len(backend.profile.session_settings)
    assert [s for s in freeing if "set_config" in s] == settings  # given back
    assert lock_is_free(backend)

"""Each step's transaction: rollback on failure, the failed-row protocol, the guard."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from workers import BOUND, SPAWN, downgrade_dying, upgrade_once

from backends import Backend, fresh_database
from conftest import MakeMigrations, count, tables
from sqlmig import (
    DatabaseError,
    DatabaseUnavailable,
    DirtyDatabase,
    Migration,
    MigrationFailed,
    MigrationRunner,
    MigrationSourceError,
    SqlmigError,
    UsageError,
)

GOOD = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE good (id INTEGER PRIMARY KEY)"))

    def down(conn):
        conn.execute(text("DROP TABLE good"))
    """

RAISES = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE half (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO good (id) VALUES (1)"))
        raise RuntimeError("boom")
    """

LATER = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE later (id INTEGER PRIMARY KEY)"))
    """


def test_a_failing_step_is_rolled_back_and_stops_the_run(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_good.py": GOOD, "002_raises.py": RAISES, "003_later.py": LATER})
    runner = MigrationRunner(backend.url, folder)

    with pytest.raises(MigrationFailed) as info:
        runner.upgrade()

    error = info.value
    assert error.version == "002"
    assert error.path == str(folder / "002_raises.py") and error.line == 6
    assert isinstance(error.__cause__, RuntimeError)
    assert f"{folder / '002_raises.py'}:6" in str(error) and "\n" not in str(error)
    assert [m.version for m in error.applied] == ["001"]
    assert "later" not in tables(backend)
    status = runner.status()
    assert [r.version for r in status.applied] == ["001"]
    if not backend.profile.transactional_ddl:  # DDL committed itself: the half-made table stays
        assert "half" in tables(backend)
        assert [r.version for r in status.failed] == ["002"]
    else:  # SQLite and PostgreSQL roll the DDL back
        assert "half" not in tables(backend)
        assert status.failed == []
        make_migrations({"002_raises.py": RAISES.replace('raise RuntimeError("boom")', "pass")})
        assert [m.version for m in runner.upgrade()] == ["002", "003"]  # a plain retry


def test_mysql_failed_row_blocks_until_repair(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    if backend.profile.transactional_ddl:
        pytest.skip("the failed-row protocol is for DDL that commits itself")
    folder = make_migrations({"001_good.py": GOOD, "002_raises.py": RAISES})
    runner = MigrationRunner(backend.url, folder)
    with pytest.raises(MigrationFailed, match="check the database by hand"):
        runner.upgrade()

    with pytest.raises(DirtyDatabase, match="002") as info:
        runner.upgrade()
    assert info.value.versions == ["002"]

    engine = backend.engine()  # the manual clean-up a person would do
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE half"))
    engine.dispose()
    make_migrations({"002_raises.py": RAISES.replace('raise RuntimeError("boom")', "pass")})
    assert runner.repair() == ["removed the failed row of 002"]
    assert [m.version for m in runner.upgrade()] == ["002"]
    assert runner.status().failed == []


@pytest.mark.parametrize(
    "call", ["conn.commit()", "conn.rollback()", "conn.close()", "conn.connection.commit()"]
)
def test_a_step_that_ends_its_transaction_is_stopped_and_rolled_back(
    backend: Backend, make_migrations: MakeMigrations, call: str
) -> None:
    source = f"""\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE sneaky (id INTEGER PRIMARY KEY)"))
            conn.execute(text("INSERT INTO sneaky (id) VALUES (1)"))
            try:
                {call}
            except Exception:
                pass  # swallowing the refusal does not help
        """
    runner = MigrationRunner(backend.url, make_migrations({"001_sneaky.py": source}))
    commits: list[str] = []

    refused = r"called (conn\.\w+|the driver connection's \w+)\(\)"
    with pytest.raises(MigrationFailed, match=refused) as info:
        runner.upgrade()

    assert info.value.version == "001"
    assert commits == []
    if backend.profile.transactional_ddl:
        assert "sneaky" not in tables(backend)
    else:  # the DDL committed itself; the row inserted after it did not
        engine = backend.engine()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sneaky")).scalar() == 0
        engine.dispose()


def test_steps_run_in_savepoints_inside_a_callers_transaction(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner_source = make_migrations({"001_good.py": GOOD, "002_later.py": LATER})
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            trans = conn.begin()
            runner = MigrationRunner(conn, runner_source)
            if not backend.profile.caller_transaction_ok:
                with pytest.raises(UsageError, match="commits DDL implicitly"):
                    runner.upgrade()
                assert runner.status().total_pending == 2  # reads are fine
                trans.rollback()
                assert tables(backend) == set()
                return
            assert [m.version for m in runner.upgrade()] == ["001", "002"]
            assert conn.in_transaction() and trans.is_active
            trans.rollback()
        assert tables(backend) == set()  # tables and history rows are gone
    finally:
        engine.dispose()


def test_a_failing_step_inside_a_callers_transaction_keeps_the_earlier_ones(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    if not backend.profile.caller_transaction_ok:
        pytest.skip("MySQL refuses a caller's transaction")
    folder = make_migrations({"001_good.py": GOOD, "002_raises.py": RAISES})
    engine = backend.engine()
    try:
        with engine.connect() as conn, conn.begin():
            with pytest.raises(MigrationFailed):
                MigrationRunner(conn, folder).upgrade()
            names = {r[0] for r in conn.execute(text("SELECT version FROM migrations"))}
            assert names == {"001"}
            assert conn.execute(text("SELECT count(*) FROM good")).scalar() == 0
            conn.commit()
        assert tables(backend) == {"good", "migrations"}
    finally:
        engine.dispose()


def test_sqlite_engine_given_is_left_as_it_was(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    engine = sqlite_backend.engine()
    folder = make_migrations({"001_good.py": GOOD, "002_raises.py": RAISES})
    with pytest.raises(MigrationFailed):
        MigrationRunner(engine, folder).upgrade()
    try:
        with engine.connect() as conn:  # the driver's own behaviour is unchanged
            conn.execute(text("CREATE TABLE plain (id INTEGER)"))
            conn.rollback()
        assert "plain" in tables(sqlite_backend)  # pysqlite: DDL outside a transaction
        assert "half" not in tables(sqlite_backend)
    finally:
        engine.dispose()


def test_non_transactional_step_runs_outside_a_transaction(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    concurrently = "CONCURRENTLY " if backend.name == "postgresql" else ""
    on_table = " ON good" if backend.name == "mysql" else ""
    source = f"""\
        '''An index built without blocking writes.'''
        from sqlalchemy import text

        transactional = False

        def up(conn):
            conn.execute(text("CREATE INDEX {concurrently}ix_good_id ON good (id)"))

        def down(conn):
            conn.execute(text("DROP INDEX {concurrently}ix_good_id{on_table}"))
        """
    runner = MigrationRunner(
        backend.url, make_migrations({"001_good.py": GOOD, "002_index.py": source})
    )

    assert [m.version for m in runner.upgrade()] == ["001", "002"]
    assert runner.status().failed == []
    assert [m.version for m in runner.downgrade("1")] == ["002"]


def test_a_failing_non_transactional_step_leaves_a_failed_row(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    source = """\
        from sqlalchemy import text

        transactional = False

        def up(conn):
            conn.execute(text("CREATE TABLE half (id INTEGER PRIMARY KEY)"))
            raise RuntimeError("interrupted")
        """
    runner = MigrationRunner(backend.url, make_migrations({"001_half.py": source}))

    with pytest.raises(MigrationFailed, match="repair"):
        runner.upgrade()

    assert "half" in tables(backend)  # nothing could roll it back
    with pytest.raises(DirtyDatabase, match="001"):
        runner.upgrade()


def test_registered_migrations_built_in_code_run_like_files(backend: Backend) -> None:
    def up(conn: object) -> None:
        conn.execute(text("CREATE TABLE prefs (id INTEGER PRIMARY KEY)"))  # type: ignore[attr-defined]

    def down(conn: object) -> None:
        conn.execute(text("DROP TABLE prefs"))  # type: ignore[attr-defined]

    steps = [Migration(version="002", name="add_prefs", up=up, down=down, description="prefs")]
    runner = MigrationRunner(backend.url, steps)

    assert runner.upgrade() == steps
    assert runner.status().applied[0].checksum is None
    assert runner.downgrade("base") == steps
    assert "prefs" not in tables(backend)


def test_a_down_that_fails_before_changing_anything_leaves_the_step_applied(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    source = """\
        from sqlalchemy import text

        transactional = False

        def up(conn):
            conn.execute(text("CREATE TABLE kept (id INTEGER PRIMARY KEY)"))

        def down(conn):
            conn.execute(text("DROP TABLE no_such_table"))
            conn.execute(text("DROP TABLE kept"))
        """
    runner = MigrationRunner(backend.url, make_migrations({"001_kept.py": source}))
    runner.upgrade()

    with pytest.raises(MigrationFailed, match="nothing was undone") as info:
        runner.downgrade("base")

    assert "stays applied" in str(info.value)
    assert [r.version for r in runner.status().applied] == ["001"]
    assert runner.status().failed == []
    runner.verify()  # not "failed part-way"
    assert runner.upgrade() == []
    assert "kept" in tables(backend)


FK_INDEX = {
    "001_parent.py": """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
            conn.execute(text("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER, "
                              "FOREIGN KEY (parent_id) REFERENCES parent (id))"))

        def down(conn):
            conn.execute(text("DROP TABLE child"))
            conn.execute(text("DROP TABLE parent"))
        """,
    "002_index.py": """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE INDEX ix_child_parent ON child (parent_id)"))

        def down(conn):
            conn.execute(text("DROP INDEX ix_child_parent ON child"))
        """,
}


def test_mysql_a_down_refused_by_the_foreign_key_index_rule_keeps_the_step_applied(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    if backend.name != "mysql":
        pytest.skip("MySQL's rule: an index a foreign key needs cannot be dropped")
    runner = MigrationRunner(backend.url, make_migrations(FK_INDEX))
    runner.upgrade()

    with pytest.raises(MigrationFailed, match="nothing was undone"):
        runner.rollback_last()

    status = runner.status()
    assert [r.version for r in status.applied] == ["001", "002"] and status.failed == []
    runner.verify()
    assert runner.repair() == []  # nothing to repair: the row stays
    assert runner.upgrade() == []  # no "Duplicate key name"
    # the documented way out: undo by hand what down() could not, then unstamp
    assert "removed the applied row of 002_index" in runner.unstamp("002")
    assert [m.version for m in runner.status().pending] == ["002"]
    assert "recorded 002_index as applied" in runner.stamp("002")
    assert runner.status().pending == []


@pytest.mark.parametrize(
    "header",
    ["def up(conn):", "async def up(conn):"],
    ids=["generator", "coroutine"],
)
def test_a_step_whose_body_would_not_run_is_refused_before_any_write(
    backend: Backend, make_migrations: MakeMigrations, header: str
) -> None:
    source = f"""\
        from sqlalchemy import text

        {header}
            conn.execute(text("CREATE TABLE never (id INTEGER PRIMARY KEY)"))
            {"yield" if header.startswith("def") else "pass"}
        """
    runner = MigrationRunner(backend.url, make_migrations({"001_a.py": GOOD, "002_b.py": source}))

    with pytest.raises(MigrationSourceError, match=r"002_b\.py: up\(conn\) is (a gen|`async)"):
        runner.upgrade()

    assert tables(backend) == set()  # found before anything was written


def test_a_step_returning_a_coroutine_fails_instead_of_being_recorded(backend: Backend) -> None:
    async def body(conn: object) -> None:
        raise AssertionError("never awaited")

    steps = [Migration("001", "wrapped", up=lambda conn: body(conn))]
    with pytest.raises(MigrationFailed, match="returned a coroutine instead of running"):
        MigrationRunner(backend.url, steps).upgrade()

    assert count(backend, "SELECT count(*) FROM migrations WHERE success") == 0


def test_a_commit_refused_below_the_connection_does_not_commit_on_clean_up(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    # Connection.commit called unbound, past the guard's override: the commit the
    # driver refuses leaves SQLAlchemy's transaction inactive, which it would only forget
    source = """\
        from sqlalchemy import text
        from sqlalchemy.engine import Connection

        def up(conn):
            conn.execute(text("CREATE TABLE sneaky (id INTEGER PRIMARY KEY)"))
            Connection.commit(conn)
        """
    runner = MigrationRunner(backend.url, make_migrations({"001_sneaky.py": source}))

    with pytest.raises(MigrationFailed, match="driver connection's commit"):
        runner.upgrade()

    if backend.profile.transactional_ddl:  # else its DDL committed itself
        assert "sneaky" not in tables(backend)
    assert count(backend, "SELECT count(*) FROM migrations WHERE success") == 0


def test_steps_and_undos_run_at_the_isolation_level_of_the_engine_given(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    # where sqlmig begins a step's transaction itself, it begins it as the driver would
    source = """\
        from sqlalchemy import text

        def check(conn):
            level = conn.get_isolation_level()
            if level != "SERIALIZABLE":
                raise RuntimeError(f"the step ran at {level}")

        def up(conn):
            check(conn)
            conn.execute(text("CREATE TABLE leveled (id INTEGER PRIMARY KEY)"))

        def down(conn):
            check(conn)
            conn.execute(text("DROP TABLE leveled"))
        """
    folder = make_migrations({"001_leveled.py": source, "002_good.py": GOOD})
    engine = backend.engine(isolation_level="SERIALIZABLE")
    try:
        runner = MigrationRunner(engine, folder)
        assert [m.version for m in runner.upgrade()] == ["001", "002"]
        assert [m.version for m in runner.downgrade("base")] == ["002", "001"]
    finally:
        engine.dispose()
    assert tables(backend) == {"migrations"}


DIES_AS_ITS_ROW_IS_WRITTEN = """\
    '''Step 002: inserts a row, then its process dies as sqlmig commits the step with
    its row (sent with sqlmig's own statements, which no event sees, on PostgreSQL).'''
    import os

    from sqlalchemy import event, text

    def up(conn):
        conn.execute(text("INSERT INTO good (id) VALUES (1)"))
        event.listen(conn, "commit", lambda _conn: os._exit(9))
    """


def test_a_steps_dml_and_its_history_row_commit_together(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_good.py": GOOD, "002_dies.py": DIES_AS_ITS_ROW_IS_WRITTEN})
    MigrationRunner(backend.url, folder).upgrade("001")
    results = SPAWN.Queue()
    victim = SPAWN.Process(
        target=upgrade_once, args=(backend.url_string, str(folder), {}, results), daemon=True
    )
    victim.start()
    victim.join(BOUND)
    assert victim.exitcode == 9

    assert count(backend, "SELECT count(*) FROM good") == 0  # never committed without its row


UNDOES_THEN_DIES = """\
    '''Step 002: its down() deletes a row, then its process dies as sqlmig commits the
    removal of its row.'''
    import os

    from sqlalchemy import event, text

    def up(conn):
        conn.execute(text("INSERT INTO good (id) VALUES (1)"))

    def down(conn):
        conn.execute(text("DELETE FROM good"))
        event.listen(conn, "commit", lambda _conn: os._exit(9))
    """


def test_a_down_s_dml_and_the_removal_of_its_row_commit_together(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_good.py": GOOD, "002_undoes.py": UNDOES_THEN_DIES})
    MigrationRunner(backend.url, folder).upgrade()
    results = SPAWN.Queue()
    victim = SPAWN.Process(target=downgrade_dying, args=(backend.url_string, str(folder), results))
    victim.start()
    victim.join(BOUND)
    assert victim.exitcode == 9

    assert count(backend, "SELECT count(*) FROM good") == 1  # never deleted with its row kept


COMMITS_BEHIND_THE_GUARD = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE sneaky (id INTEGER)"))
        conn._dbapi_connection.commit()  # a path the guard cannot refuse
    """


def test_an_on_step_that_raises_on_failed_still_leaves_a_committing_step_s_failed_row(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    if not backend.profile.transactional_ddl:
        pytest.skip("its steps run under the failed-row protocol, not a watched transaction")

    def on_step(migration: Migration, phase: str, seconds: float) -> None:
        if phase == "failed":
            raise OSError(5, "the terminal is gone")

    folder = make_migrations({"001_sneaky.py": COMMITS_BEHIND_THE_GUARD})
    with pytest.raises(OSError, match="terminal is gone"):
        MigrationRunner(backend.url, folder, on_step=on_step).upgrade()

    assert "sneaky" in tables(backend)  # its work was committed
    with pytest.raises(DirtyDatabase, match="001"):  # never run again as if pending
        MigrationRunner(backend.url, folder).upgrade()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # trusts any password
@pytest.mark.parametrize(
    "raised", ['f"cannot log in with {PASSWORD}"', 'f"dsn: password={PASSWORD} host=h"']
)
def test_a_steps_error_holding_the_database_password_never_shows_it(
    backend: Backend, make_migrations: MakeMigrations, raised: str
) -> None:
    password = "Sekr3tPw"
    source = f"""\
        PASSWORD = {password!r}

        def up(conn):
            raise RuntimeError({raised})
        """
    url = backend.url.set(password=password)
    runner = MigrationRunner(url, make_migrations({"001_leaky.py": source}))

    with pytest.raises(MigrationFailed) as info:
        runner.upgrade()

    assert password not in str(info.value)
    assert "migration 001 (up) failed at" in str(info.value)


NOT_TRANSACTIONAL = """\
    from sqlalchemy import text

    transactional = False

    def up(conn):
        conn.execute(text("CREATE TABLE alone (id INTEGER PRIMARY KEY)"))

    def down(conn):
        conn.execute(text("DROP TABLE alone"))
    """


@pytest.mark.parametrize("source", [GOOD, NOT_TRANSACTIONAL], ids=["transactional", "not"])
def test_an_on_step_that_raises_on_start_leaves_the_database_as_it_was(
    backend: Backend, make_migrations: MakeMigrations, source: str
) -> None:
    def on_step(migration: Migration, phase: str, seconds: float) -> None:
        if phase == "start":
            raise OSError(5, "the terminal is gone")

    folder = make_migrations({"001_step.py": source})
    with pytest.raises(OSError, match="terminal is gone") as info:
        MigrationRunner(backend.url, folder, on_step=on_step).upgrade()

    assert any("001 (up) did not run" in note for note in info.value.__notes__)
    # no failed row: the next run is not stopped
    assert count(backend, "SELECT count(*) FROM migrations") == 0
    assert MigrationRunner(backend.url, folder).upgrade()[0].version == "001"


@pytest.mark.parametrize("source", [GOOD, NOT_TRANSACTIONAL], ids=["transactional", "not"])
def test_an_on_step_that_raises_on_start_of_an_undo_leaves_the_step_applied(
    backend: Backend, make_migrations: MakeMigrations, source: str
) -> None:
    folder = make_migrations({"001_step.py": source})
    MigrationRunner(backend.url, folder).upgrade()

    def on_step(migration: Migration, phase: str, seconds: float) -> None:
        if phase == "start":
            raise OSError(5, "the terminal is gone")

    with pytest.raises(OSError, match="terminal is gone") as info:
        MigrationRunner(backend.url, folder, on_step=on_step).downgrade("base")

    assert any("001 (down) did not run" in note for note in info.value.__notes__)
    status = MigrationRunner(backend.url, folder).status()
    assert status.current == "001" and not status.failed


#: Per backend, a way to end the step's transaction that the guard cannot refuse.
BEHIND_THE_GUARD = {
    "sqlite": "conn._dbapi_connection.commit()",
    "postgresql": "conn._dbapi_connection.commit()",
    "mysql": "conn._dbapi_connection.autocommit(True)  # each statement commits itself",
}


def test_a_step_that_ends_its_transaction_behind_the_guard_fails_and_stays_failed(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    source = f"""\
        from sqlalchemy import text

        def up(conn):
            {BEHIND_THE_GUARD[backend.profile.name]}
            conn.execute(text("CREATE TABLE sneaky (id INTEGER)"))
            conn.execute(text("INSERT INTO sneaky (id) VALUES (1)"))
        """
    folder = make_migrations({"001_sneaky.py": source, "002_later.py": LATER})
    with pytest.raises(MigrationFailed, match="transaction was ended inside the step") as info:
        MigrationRunner(backend.url, folder).upgrade()

    assert info.value.version == "001" and info.value.applied == []
    assert "later" not in tables(backend)
    with pytest.raises(DirtyDatabase, match="001"):  # its work may be committed: not pending
        MigrationRunner(backend.url, folder).upgrade()


def _switch(backend: Backend, stack: ExitStack, tmp_path: Path) -> str:
    """A statement moving the session to another schema (nothing to move on SQLite)."""
    if backend.name == "postgresql":
        engine = backend.engine()
        with engine.begin() as conn:
            conn.execute(text("CREATE SCHEMA app"))
        engine.dispose()
        return "SET search_path TO app"
    if backend.name == "mysql":
        other = stack.enter_context(fresh_database("mysql", tmp_path / "other"))
        return f"USE {other.url.database}"
    return "SELECT 1"


@pytest.mark.parametrize("transactional", [True, False], ids=["transactional", "not"])
def test_a_step_that_changes_the_session_s_schema_and_fails_leaves_the_pool_s_as_it_was(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path, transactional: bool
) -> None:
    with ExitStack() as stack:
        switch = _switch(backend, stack, tmp_path)
        source = f"""\
            from sqlalchemy import text

            transactional = {transactional}

            def up(conn):
                conn.execute(text({switch!r}))
                raise RuntimeError("boom")
            """
        engine = backend.engine(pool_size=1, max_overflow=0)
        stack.callback(engine.dispose)
        with engine.connect() as conn:
            before = conn.execute(text(CURRENT_SCHEMA[backend.name])).scalar()
        with pytest.raises(MigrationFailed, match="boom"):
            MigrationRunner(engine, make_migrations({"001_switch.py": source})).upgrade()

        with engine.connect() as conn:  # the pool's one connection, the run's
            assert conn.execute(text(CURRENT_SCHEMA[backend.name])).scalar() == before


#: The session's current schema, per backend.
CURRENT_SCHEMA = {
    "sqlite": "SELECT 'main'",
    "postgresql": "SELECT current_setting('search_path')",
    "mysql": "SELECT DATABASE()",
}


@pytest.mark.parametrize("transactional", [True, False], ids=["transactional", "not"])
def test_a_step_that_changes_the_session_s_schema_keeps_the_run_s_history_table(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path, transactional: bool
) -> None:
    with ExitStack() as stack:
        switch = _switch(backend, stack, tmp_path)
        source = f"""\
            from sqlalchemy import text

            transactional = {transactional}

            def up(conn):
                conn.execute(text({switch!r}))
                conn.execute(text("CREATE TABLE moved (id INTEGER)"))

            def down(conn):
                conn.execute(text({switch!r}))
                conn.execute(text("DROP TABLE moved"))
            """
        folder = make_migrations({"001_switch.py": source, "002_later.py": GOOD})
        runner = MigrationRunner(backend.url, folder)

        assert [m.version for m in runner.upgrade()] == ["001", "002"]
        assert {"migrations", "good"} <= tables(backend)  # the next step ran where the run began
        status = runner.status()
        assert [row.version for row in status.applied] == ["001", "002"] and not status.failed

        assert [m.version for m in runner.downgrade("base")] == ["002", "001"]
        assert count(backend, "SELECT count(*) FROM migrations") == 0


#: A step that catches a database error of its own and goes on.
SWALLOWS = """\
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    def up(conn):
        conn.execute(text("CREATE TABLE kept (id INTEGER)"))
        conn.execute(text("INSERT INTO kept (id) VALUES (1)"))
        try:
            conn.execute(text("SELECT id FROM no_such_table"))
        except DBAPIError:
            pass  # the step goes on

    def down(conn):
        conn.execute(text("DROP TABLE kept"))
        try:
            conn.execute(text("SELECT id FROM no_such_table"))
        except DBAPIError:
            pass
    """


def _rows(backend: Backend) -> tuple[set[str], list[tuple[str, bool]]]:
    """The database as a step may leave it: its tables, and the history's rows."""
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version, success FROM migrations ORDER BY version"))
            return tables(backend), [(v, bool(ok)) for v, ok in rows]
    finally:
        engine.dispose()


@pytest.mark.parametrize("action", ["up", "down"])
def test_a_step_that_catches_a_database_error_and_goes_on_is_kept_only_where_errors_abort_nothing(
    backend: Backend, make_migrations: MakeMigrations, action: str
) -> None:
    """PostgreSQL aborts a transaction at any error; SQLite and MariaDB undo the statement only."""
    folder = make_migrations({"001_good.py": GOOD, "002_swallows.py": SWALLOWS})
    runner = MigrationRunner(backend.url, folder)
    if action == "up":
        runner.upgrade("001")
    elif backend.profile.errors_abort_transaction:  # applied by hand, as if fixed since
        runner.upgrade("001")
        engine = backend.engine()
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE kept (id INTEGER)"))
        engine.dispose()
        runner.stamp("002")
    else:
        runner.upgrade()
    before = _rows(backend)
    run = runner.upgrade if action == "up" else lambda: runner.downgrade("001")

    if not backend.profile.errors_abort_transaction:
        assert [m.version for m in run()] == ["002"]
        assert ("kept" in tables(backend)) == (action == "up")
        return
    with pytest.raises(MigrationFailed) as info:
        run()

    message = str(info.value)
    assert "it caught a database error and went on" in message and "\n" not in message
    assert "nothing of the step was applied" in message and "conn.begin_nested()" in message
    assert info.value.version == "002" and info.value.path == str(folder / "002_swallows.py")
    assert _rows(backend) == before  # the step's work undone, its history row as it was
    assert runner.status().failed == []


def test_a_step_that_catches_a_database_error_inside_a_callers_transaction_leaves_it_usable(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    if not backend.profile.caller_transaction_ok:
        pytest.skip("MySQL refuses a caller's transaction")
    folder = make_migrations({"001_good.py": GOOD, "002_swallows.py": SWALLOWS})
    engine = backend.engine()
    try:
        with engine.connect() as conn, conn.begin():
            if backend.profile.errors_abort_transaction:
                with pytest.raises(MigrationFailed, match="caught a database error") as info:
                    MigrationRunner(conn, folder).upgrade()
                assert [m.version for m in info.value.applied] == ["001"]
                expected = {"001"}
            else:
                MigrationRunner(conn, folder).upgrade()
                expected = {"001", "002"}
            names = {r[0] for r in conn.execute(text("SELECT version FROM migrations"))}
            assert names == expected  # the caller's transaction goes on
            conn.commit()
        assert ("kept" in tables(backend)) == ("002" in expected)
    finally:
        engine.dispose()


HIDES_THE_HISTORY = """\
    def up(conn):
        conn.exec_driver_sql("CREATE TABLE hidden (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("ALTER TABLE migrations RENAME TO elsewhere")
    """


def test_a_history_row_the_database_refuses_after_the_step_rolls_the_step_back(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    """The row goes after the release of the step's savepoint (on PostgreSQL in its round
    trip): refused, it fails the run with the database's error, the transaction whole."""
    if not backend.profile.transactional_ddl:
        pytest.skip("its steps run under the failed-row protocol, not a watched transaction")
    folder = make_migrations({"001_good.py": GOOD, "002_hides.py": HIDES_THE_HISTORY})
    runner = MigrationRunner(backend.url, folder)

    with pytest.raises(Exception, match="migrations") as info:
        runner.upgrade()

    assert not isinstance(info.value, MigrationFailed)  # not the step's: its transaction held
    assert tables(backend) == {"migrations", "good"}
    status = runner.status()
    assert [r.version for r in status.applied] == ["001"] and status.failed == []


@pytest.mark.parametrize("action", ["up", "down"])
def test_on_step_hears_failed_when_the_history_row_is_refused(
    backend: Backend, action: str
) -> None:
    """Every step that started ends with one "done" or one "failed", also when what
    fails is the history change after it (here the step moved the history table)."""
    seen: list[tuple[str, str]] = []

    def hide(conn: Connection) -> None:
        conn.exec_driver_sql("ALTER TABLE migrations RENAME TO elsewhere")

    def noop(conn: Connection) -> None:
        pass

    step = Migration("001", "hides", up=hide if action == "up" else noop, down=hide)
    runner = MigrationRunner(
        backend.url, [step], on_step=lambda m, phase, s: seen.append((m.version, phase))
    )
    if action == "down":
        runner.upgrade()
        seen.clear()
        with pytest.raises(SqlmigError):
            runner.downgrade("base")
    else:
        with pytest.raises(SqlmigError):
            runner.upgrade()
    assert seen == [("001", "start"), ("001", "failed")]


#: Ends another session on the server, and asks a session for its own id.
KILL = {
    "postgresql": ("SELECT pg_terminate_backend({})", "SELECT pg_backend_pid()", "pg_sleep"),
    "mysql": ("KILL CONNECTION {}", "SELECT CONNECTION_ID()", "SLEEP"),
}


@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
@pytest.mark.parametrize("when", ["in a statement", "between statements"])
def test_a_connection_lost_while_a_step_runs_is_a_lost_connection(
    backend: Backend, when: str
) -> None:
    """The server ending the step's session (an administrator, a failover) is
    ``DatabaseUnavailable``, not a step that ended its transaction; the step is told
    "failed", and nothing of it is recorded as applied."""
    import threading
    import time

    kill, own_id, sleep = KILL[backend.name]
    session: list[int] = []
    ready = threading.Event()

    def up(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER)")
        session.append(conn.exec_driver_sql(own_id).scalar_one())
        ready.set()
        if when == "in a statement":
            conn.exec_driver_sql(f"SELECT {sleep}(5)")
        else:
            time.sleep(0.5)

    def killer() -> None:
        ready.wait(5)
        time.sleep(0.1)
        engine = backend.engine(isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(kill.format(session[0]))
        engine.dispose()

    seen: list[str] = []
    runner = MigrationRunner(
        backend.url, [Migration("001", "killed", up=up)], on_step=lambda m, p, s: seen.append(p)
    )
    thread = threading.Thread(target=killer)
    thread.start()
    try:
        with pytest.raises(DatabaseUnavailable, match=r"lost the connection .* migration 001"):
            runner.upgrade()
    finally:
        thread.join()
    assert seen == ["start", "failed"]
    status = runner.status()
    assert status.applied == []
    if backend.profile.transactional_ddl:  # the server rolled the step back
        assert "t" not in tables(backend) and status.failed == []
    else:  # its DDL committed itself: the failed row stops the next run
        assert [r.version for r in status.failed] == ["001"]


#: A rule or trigger that makes the history table ignore an INSERT or a DELETE.
SWALLOWS_HISTORY = {
    "sqlite": (
        "CREATE TRIGGER ignore_{op} BEFORE {op} ON migrations BEGIN SELECT RAISE(IGNORE); END"
    ),
    "postgresql": "CREATE RULE ignore_{op} AS ON {op} TO migrations DO INSTEAD NOTHING",
}


@pytest.mark.parametrize("action", ["up", "down"])
def test_a_history_change_that_writes_no_row_rolls_the_step_back(
    backend: Backend, action: str
) -> None:
    """A step that makes the history table swallow its own row (a rule, a trigger)
    would be applied with no row, or undone with its row left: refused, rolled back."""
    if not backend.profile.transactional_ddl:
        pytest.skip("under the failed-row protocol a missing row is reported as removed")
    sql = SWALLOWS_HISTORY[backend.name]

    def swallow(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER)" if action == "up" else "DROP TABLE t")
        conn.exec_driver_sql(sql.format(op="INSERT" if action == "up" else "DELETE"))

    def make(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER)")

    step = Migration("001", "t", up=swallow if action == "up" else make, down=swallow)
    runner = MigrationRunner(backend.url, [step])
    if action == "down":
        runner.upgrade()
    with pytest.raises(DatabaseError, match=r"changed no row .* the step was rolled back"):
        runner.upgrade() if action == "up" else runner.downgrade("base")
    status = runner.status()
    assert ("t" in tables(backend)) == (action == "down")
    assert [r.version for r in status.applied] == ([] if action == "up" else ["001"])


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)  # LOCK TABLES is MySQL's
@pytest.mark.parametrize("action", ["up", "down"])
def test_a_step_that_leaves_tables_locked_fails_and_frees_them(
    backend: Backend, action: str
) -> None:
    """MySQL's LOCK TABLES shuts out every table it does not name, the history table
    too: the step fails naming it, and the connection goes back to its pool unlocked."""

    def lock(conn: Connection) -> None:
        conn.exec_driver_sql("LOCK TABLES t WRITE")
        conn.exec_driver_sql("INSERT INTO t (id) VALUES (1)")

    def make(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER)")

    def both(conn: Connection) -> None:
        make(conn)
        lock(conn)

    step = Migration("001", "t", up=both if action == "up" else make, down=lock)
    engine = backend.engine(pool_size=1, max_overflow=0)
    try:
        runner = MigrationRunner(engine, [step])
        if action == "down":
            runner.upgrade()
        with pytest.raises(MigrationFailed, match=r"tables locked .* UNLOCK TABLES"):
            runner.upgrade() if action == "up" else runner.downgrade("base")
        with engine.connect() as conn:  # the pool's connection holds no table lock
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
            assert conn.exec_driver_sql("SELECT count(*) FROM migrations").scalar() == 1
        status = runner.status()
    finally:
        engine.dispose()
    if action == "up":  # the failed-row protocol: check, then repair or stamp
        assert [r.version for r in status.failed] == ["001"]
    else:  # down() failed: the step stays applied
        assert [r.version for r in status.applied] == ["001"]

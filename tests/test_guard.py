"""The guard on a step's connection: no way a step commits escapes unnoticed."""

from __future__ import annotations

import pytest

from backends import Backend
from conftest import MakeMigrations, count, tables
from sqlmig import DirtyDatabase, MigrationFailed, MigrationRunner

#: Every way a step could end the transaction sqlmig began, refused before it
#: reaches the database.
REFUSED = [
    'conn.execute(text("COMMIT"))',
    'conn.exec_driver_sql("COMMIT")',
    'conn.execute(text("-- flush before the index\\n  commit"))',
    'conn.exec_driver_sql("/* tidy */ ROLLBACK")',
    'conn.exec_driver_sql("END")',
    'conn.exec_driver_sql("BEGIN")',
    'conn.exec_driver_sql("start transaction")',
    'conn.exec_driver_sql("SELECT 1; COMMIT")',
    # PostgreSQL reads 'a\' as a whole string (standard_conforming_strings), MySQL not
    r"""conn.exec_driver_sql("SELECT 'a\\'; COMMIT; SELECT '\\'")""",
    "conn.connection.dbapi_connection.commit()",
    "conn.connection.dbapi_connection.rollback()",
    "conn.connection.driver_connection.commit()",
    "conn.connection.cursor().connection.commit()",
    "conn.connection.dbapi_connection.cursor().connection.close()",
    'conn.connection.cursor().execute("COMMIT")',
    "conn.get_transaction().commit()",
    "conn.get_transaction().rollback()",
    "conn.commit()",
    "conn.rollback()",
    "conn.close()",
    "conn.connection.commit()",
    # the savepoint that watches the step: rolled back to, the step's work would be
    # undone and its history row still written; released, the step would go unwatched
    'conn.exec_driver_sql("ROLLBACK TO SAVEPOINT sqlmig_step")',
    'conn.exec_driver_sql("release sqlmig_step")',
    # MySQL/MariaDB run a string's text: a ROLLBACK there would undo the step's DML
    # while its history row is still written
    "conn.exec_driver_sql(\"EXECUTE IMMEDIATE 'ROLLBACK'\")",
]

SNEAKY = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE sneaky (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO sneaky (id) VALUES (1)"))
        try:
            {call}
        except Exception:
            pass  # swallowing the refusal does not help
        conn.execute(text("INSERT INTO sneaky (id) VALUES (2)"))
        {end}
    """


def sneaky_rows(backend: Backend) -> int | None:
    """The rows of the step's table, None when it does not exist."""
    if "sneaky" not in tables(backend):
        return None
    return count(backend, "SELECT count(*) FROM sneaky")


@pytest.mark.parametrize("call", REFUSED)
def test_every_way_to_end_the_transaction_is_refused_and_nothing_is_kept(
    backend: Backend, make_migrations: MakeMigrations, call: str
) -> None:
    source = SNEAKY.format(call=call, end="")
    runner = MigrationRunner(backend.url, make_migrations({"001_sneaky.py": source}))

    with pytest.raises(MigrationFailed, match="sqlmig owns the step's transaction") as info:
        runner.upgrade()

    assert info.value.version == "001" and "\n" not in str(info.value)
    if not backend.profile.transactional_ddl:  # the DDL committed itself; the row did not
        assert sneaky_rows(backend) == 0
        assert [r.version for r in runner.status().failed] == ["001"]
    else:
        assert sneaky_rows(backend) is None
        assert runner.status().total_pending == 1 and runner.status().failed == []


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
@pytest.mark.parametrize("sql", ['"COMMIT"', '"SET autocommit = 1"', 'b"ROLLBACK"'])
def test_transaction_control_sent_through_the_drivers_query_is_refused(
    backend: Backend, make_migrations: MakeMigrations, sql: str
) -> None:
    source = SNEAKY.format(call=f"conn.connection.dbapi_connection.query({sql})", end="")
    engine = backend.engine(pool_size=1, max_overflow=0)
    try:
        with pytest.raises(MigrationFailed, match="sqlmig owns the step's transaction"):
            MigrationRunner(engine, make_migrations({"001_sneaky.py": source})).upgrade()
        with engine.connect() as conn:  # the pool's connection is as it was
            assert conn.exec_driver_sql("SELECT @@autocommit").scalar() == 0
    finally:
        engine.dispose()
    assert sneaky_rows(backend) == 0


@pytest.mark.parametrize("call", REFUSED)
def test_a_dry_run_never_commits(
    backend: Backend, make_migrations: MakeMigrations, call: str
) -> None:
    source = SNEAKY.format(call=call, end="")
    runner = MigrationRunner(backend.url, make_migrations({"001_sneaky.py": source}))

    if not backend.profile.transactional_ddl:  # nothing is tried there: the plan only
        assert [s.tried for s in runner.dry_run()] == [False]
    else:
        with pytest.raises(MigrationFailed, match="sqlmig owns the step's transaction"):
            runner.dry_run()
    assert tables(backend) == set()


#: A commit the guard cannot see: the driver connection behind a private attribute.
PRIVATE = "conn._dbapi_connection.commit()"


@pytest.mark.parametrize("end", ["", 'raise RuntimeError("boom")'])
def test_a_commit_past_the_guard_fails_the_step_and_leaves_a_failed_row(
    backend: Backend, make_migrations: MakeMigrations, end: str
) -> None:
    source = SNEAKY.format(call=PRIVATE, end=end)
    runner = MigrationRunner(backend.url, make_migrations({"001_sneaky.py": source}))

    if not backend.profile.transactional_ddl and not end:  # failed-row protocol: a step returned
        assert [m.version for m in runner.upgrade()] == ["001"]
        return
    with pytest.raises(MigrationFailed) as info:
        runner.upgrade()

    message = str(info.value)
    if not backend.profile.transactional_ddl:
        assert "may remain" in message
    else:
        assert "may be committed" in message and "rolled back" not in message
    assert sneaky_rows(backend) in (1, 2)  # the first row was committed by the step
    assert [r.version for r in runner.status().failed] == ["001"]
    with pytest.raises(DirtyDatabase, match="001"):
        runner.upgrade()


@pytest.mark.parametrize("verb", ["ROLLBACK TO SAVEPOINT", "RELEASE SAVEPOINT"])
def test_a_step_cannot_name_sqlmigs_savepoint_even_past_the_guard(
    backend: Backend, make_migrations: MakeMigrations, verb: str
) -> None:
    """The savepoint's name is drawn anew for each call: a step that sends the name
    it could guess past the guard finds no such savepoint, and its history row
    never parts from its work."""
    if not backend.profile.transactional_ddl:
        pytest.skip("no savepoint watches a step where DDL commits itself")
    source = f"""\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE sneaky (id INTEGER PRIMARY KEY)"))
            conn.execute(text("INSERT INTO sneaky (id) VALUES (1)"))
            conn._dbapi_connection.cursor().execute("{verb} sqlmig_step")
        """
    runner = MigrationRunner(backend.url, make_migrations({"001_sneaky.py": source}))

    with pytest.raises(MigrationFailed, match="sqlmig_step"):
        runner.upgrade()
    assert sneaky_rows(backend) is None
    assert runner.status().total_pending == 1 and runner.status().failed == []


def test_a_dry_run_that_a_step_committed_in_says_so(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    if not backend.profile.transactional_ddl:
        pytest.skip("MySQL's dry run tries nothing")
    source = SNEAKY.format(call=PRIVATE, end="")
    runner = MigrationRunner(backend.url, make_migrations({"001_sneaky.py": source}))

    with pytest.raises(MigrationFailed, match="ended the dry run's transaction"):
        runner.dry_run()


def test_savepoints_inside_a_step_are_fine(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    source = """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE kept (id INTEGER PRIMARY KEY)"))
            with conn.begin_nested():
                conn.execute(text("INSERT INTO kept (id) VALUES (1)"))
            savepoint = conn.begin_nested()
            conn.execute(text("INSERT INTO kept (id) VALUES (2)"))
            savepoint.rollback()
            conn.exec_driver_sql("SAVEPOINT mine")
            conn.exec_driver_sql("INSERT INTO kept (id) VALUES (3)")
            conn.exec_driver_sql("ROLLBACK TO SAVEPOINT mine")
            conn.exec_driver_sql("RELEASE SAVEPOINT mine")
        """
    runner = MigrationRunner(backend.url, make_migrations({"001_kept.py": source}))
    assert [m.version for m in runner.upgrade()] == ["001"]
    assert count(backend, "SELECT count(*) FROM kept") == 1


def test_the_guard_leaves_no_listener_on_the_connection(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    from sqlalchemy import event

    folder = make_migrations({"001_sneaky.py": SNEAKY.format(call="pass", end="")})
    engine = sqlite_backend.engine()
    try:
        with engine.connect() as conn:
            MigrationRunner(conn, folder).upgrade()
            assert not event.contains(conn, "before_cursor_execute", lambda *a: None)
            assert not conn.dispatch.before_cursor_execute
            assert not conn.dispatch.after_cursor_execute
            conn.exec_driver_sql("BEGIN")  # the application's own connection is its own again
            conn.rollback()
    finally:
        engine.dispose()


@pytest.mark.parametrize("call", ["conn.commit()", "with conn.begin(): pass"])
def test_a_non_transactional_step_that_commits_is_told_it_runs_in_autocommit(
    backend: Backend, make_migrations: MakeMigrations, call: str
) -> None:
    source = f"""\
        from sqlalchemy import text

        transactional = False

        def up(conn):
            conn.execute(text("CREATE TABLE batch (id INTEGER)"))
            {call}
        """
    runner = MigrationRunner(backend.url, make_migrations({"001_batch.py": source}))
    with pytest.raises(MigrationFailed) as info:
        runner.upgrade()
    message = str(info.value)
    assert "runs in autocommit, so each statement is committed as it completes" in message
    assert "mark a step that cannot run in a transaction" not in message  # it already is


def test_a_run_adds_the_guards_listeners_once_not_per_step(
    backend: Backend, make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import event

    added: list[str] = []
    listen = event.listen

    def counted(target: object, name: str, fn: object, *args: object, **kw: object) -> None:
        added.append(name)
        listen(target, name, fn, *args, **kw)

    monkeypatch.setattr(event, "listen", counted)
    step = """\
        def up(conn):
            conn.exec_driver_sql("CREATE TABLE t{i} (id INTEGER PRIMARY KEY)")

        def down(conn):
            conn.exec_driver_sql("DROP TABLE t{i}")
        """
    folder = make_migrations({f"00{i}_step.py": step.format(i=i) for i in (1, 2, 3)})
    runner = MigrationRunner(backend.url, folder)
    guard = ["before_cursor_execute"]
    if not backend.profile.transactional_ddl:  # a failure's message counts what completed
        guard.append("after_cursor_execute")

    assert len(runner.upgrade()) == 3
    assert [name for name in added if name in guard] == guard
    added.clear()
    assert len(runner.downgrade("base")) == 3
    assert [name for name in added if name in guard] == guard
    assert tables(backend) == {"migrations"}


#: A step whose statements and commit all go past the guard (a private attribute).
UNSEEN = """\
    from sqlalchemy import text

    def up(conn):
        cursor = conn._dbapi_connection.cursor()
        cursor.execute("INSERT INTO sneaky (id) VALUES (3)")
        cursor.execute("COMMIT")
        raise RuntimeError("boom")
    """


def test_a_step_wholly_past_the_guard_still_leaves_a_failed_row(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    steps = {"001_table.py": SNEAKY.format(call="pass", end=""), "002_unseen.py": UNSEEN}
    runner = MigrationRunner(backend.url, make_migrations(steps))
    runner.upgrade("001")

    with pytest.raises(MigrationFailed) as info:
        runner.upgrade()

    if backend.profile.transactional_ddl:  # the savepoint is gone: sqlmig knows
        assert "may be committed" in str(info.value)
    # MySQL/MariaDB cannot tell this commit from DDL's own (see docs/backends.md), but
    # the failed-row protocol holds: the row written before the step stays failed
    assert sneaky_rows(backend) == 3  # 001's two rows and the one the step committed
    assert [r.version for r in runner.status().failed] == ["002"]
    with pytest.raises(DirtyDatabase, match="002"):
        runner.upgrade()


def runs_compound_statements(backend: Backend) -> bool:
    """Whether the server runs compound statements outside routines (MariaDB)."""
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN NOT ATOMIC SELECT 1; END")
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


COMPOUND = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE kept (id INTEGER PRIMARY KEY)"))
        conn.exec_driver_sql("IF 1 = 1 THEN INSERT INTO kept (id) VALUES (1); END IF")
        conn.exec_driver_sql(
            "BEGIN NOT ATOMIC DECLARE n INT DEFAULT 2; "
            "WHILE n < 4 DO INSERT INTO kept (id) VALUES (n); SET n = n + 1; END WHILE; END"
        )
        {end}
    """


@pytest.mark.parametrize("end", ["", 'conn.exec_driver_sql("IF 1 THEN COMMIT; END IF")'])
def test_mariadb_compound_statements_run_unless_they_end_the_transaction(
    backend: Backend, make_migrations: MakeMigrations, end: str
) -> None:
    if not runs_compound_statements(backend):
        pytest.skip("compound statements outside routines are MariaDB's")
    runner = MigrationRunner(
        backend.url, make_migrations({"001_compound.py": COMPOUND.format(end=end)})
    )
    if not end:
        assert [m.version for m in runner.upgrade()] == ["001"]
        assert count(backend, "SELECT count(*) FROM kept") == 3
        return
    with pytest.raises(MigrationFailed, match="sent COMMIT as SQL"):
        runner.upgrade()
    assert [r.version for r in runner.status().failed] == ["001"]  # DDL committed itself


@pytest.mark.parametrize("sql", ["RELEASE SAVEPOINT {}", 'ROLLBACK TO SAVEPOINT "{}"'])
def test_a_step_inside_a_callers_transaction_cannot_reach_the_savepoints_around_it(
    backend: Backend, make_migrations: MakeMigrations, sql: str
) -> None:
    """Inside your transaction each step runs in a savepoint SQLAlchemy names
    (``sa_savepoint_1``): a step releasing it would leave its work in your transaction
    with no history row, for your commit to keep. Only its own savepoints are its to end."""
    if not backend.profile.caller_transaction_ok:
        pytest.skip("MySQL refuses a caller's transaction")
    source = f"""\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE sneaky (id INTEGER PRIMARY KEY)"))
            name = conn.get_nested_transaction()._savepoint  # SQLAlchemy's, around the step
            conn.exec_driver_sql('{sql}'.format(name))
        """
    folder = make_migrations({"001_sneaky.py": source})
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            with conn.begin():
                with pytest.raises(MigrationFailed, match="which it did not take"):
                    MigrationRunner(conn, folder).upgrade()
            # the caller committed what the run left: nothing of the failed step
    finally:
        engine.dispose()
    assert sneaky_rows(backend) is None

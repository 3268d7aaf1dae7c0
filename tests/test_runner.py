"""MigrationRunner's operations, on every backend."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, event, text

from backends import Backend
from conftest import MakeMigrations, count, tables
from sqlmig import (
    ChecksumMismatch,
    ConfigError,
    DirtyDatabase,
    IrreversibleMigration,
    MigrationFailed,
    MigrationRunner,
    MissingMigration,
    OutOfOrderMigration,
    UsageError,
)

CREATE = """\
    '''Create table {t}.'''
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE {t} (id INTEGER PRIMARY KEY)"))

    def down(conn):
        conn.execute(text("DROP TABLE {t}"))
    """


def steps(*names: str) -> dict[str, str]:
    """Files ``NNN_create_<t>.py`` that each create (and drop) table ``t``."""
    return {f"{i:03d}_create_{t}.py": CREATE.format(t=t) for i, t in enumerate(names, 1)}


def test_upgrade_applies_every_pending_step_in_order(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(steps("a", "b", "c")))

    applied = runner.upgrade()

    assert [m.version for m in applied] == ["001", "002", "003"]
    assert {"a", "b", "c", "migrations"} <= tables(backend)
    status = runner.status()
    assert status.current == "003"
    assert (status.total_applied, status.total_pending) == (3, 0)
    row = status.applied[0]
    assert row.name == "create_a" and row.success and row.checksum and len(row.checksum) == 64
    assert row.applied_at.tzinfo is not None
    assert abs(row.applied_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert runner.upgrade() == []


def test_upgrade_to_a_target_stops_there(backend: Backend, make_migrations: MakeMigrations) -> None:
    runner = MigrationRunner(backend.url, make_migrations(steps("a", "b", "c")))

    assert [m.version for m in runner.upgrade("2")] == ["001", "002"]
    assert "c" not in tables(backend)
    assert [m.version for m in runner.upgrade()] == ["003"]


def test_downgrade_undoes_steps_above_the_target_newest_first(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(steps("a", "b", "c")))
    runner.upgrade()

    assert [m.version for m in runner.downgrade("001")] == ["003", "002"]
    assert tables(backend) & {"a", "b", "c"} == {"a"}
    assert runner.status().current == "001"
    assert [m.version for m in runner.downgrade("base")] == ["001"]
    assert tables(backend) == {"migrations"}


def test_rollback_last_undoes_the_most_recently_applied_step(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(steps("a", "b")))
    runner.upgrade()

    undone = runner.rollback_last()

    assert undone is not None and undone.version == "002"
    assert runner.status().current == "001"
    assert runner.rollback_last() is not None
    assert runner.rollback_last() is None


def test_out_of_order_step_is_applied_with_a_warning_and_undone_first(
    backend: Backend, make_migrations: MakeMigrations, caplog: pytest.LogCaptureFixture
) -> None:
    folder = make_migrations({k: v for k, v in steps("a", "b", "c").items() if "_b" not in k})
    runner = MigrationRunner(backend.url, folder)
    runner.upgrade()
    make_migrations({"002_create_b.py": CREATE.format(t="b")})

    with caplog.at_level(logging.WARNING, logger="sqlmig"):
        assert [m.version for m in runner.upgrade()] == ["002"]

    assert "out of order" in caplog.text
    assert runner.rollback_last().version == "002"  # type: ignore[union-attr]
    assert "b" not in tables(backend) and "c" in tables(backend)


def test_out_of_order_step_is_refused_when_disallowed(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({k: v for k, v in steps("a", "b", "c").items() if "_b" not in k})
    MigrationRunner(backend.url, folder).upgrade()
    make_migrations({"002_create_b.py": CREATE.format(t="b")})
    strict = MigrationRunner(backend.url, folder, allow_out_of_order=False)

    with pytest.raises(OutOfOrderMigration, match="002") as info:
        strict.upgrade()

    assert info.value.versions == ["002"]
    assert "b" not in tables(backend)


def test_downgrade_refuses_a_step_without_down_before_undoing_anything(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    files = {**steps("a"), "002_no_down.py": "def up(conn):\n    pass\n"}
    files["003_create_c.py"] = CREATE.format(t="c")
    runner = MigrationRunner(backend.url, make_migrations(files))
    runner.upgrade()

    with pytest.raises(IrreversibleMigration, match="002") as info:
        runner.downgrade("base")

    assert info.value.versions == ["002"]
    assert {"a", "c"} <= tables(backend)
    assert runner.status().total_applied == 3


@pytest.mark.parametrize("target", ["7", "abc", ""])
def test_unknown_target_is_a_usage_error(
    backend: Backend, make_migrations: MakeMigrations, target: str
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(steps("a")))

    with pytest.raises(UsageError, match="unknown target"):
        runner.upgrade(target)
    with pytest.raises(UsageError, match="unknown target"):
        runner.downgrade(target)
    assert tables(backend) == set()


def unreachable(backend: Backend) -> URL:
    """The backend's URL, where connecting would show: a SQLite file not made yet, a closed port."""
    if backend.profile.database_file(backend.url) is not None:
        assert not Path(str(backend.url.database)).exists()
        return backend.url
    return backend.url.set(host="127.0.0.1", port=9)  # discard: nothing listens


@pytest.mark.parametrize("target", ["999", "abc", "0"])
def test_an_upgrade_target_no_file_has_is_refused_before_anything_connects(
    backend: Backend, make_migrations: MakeMigrations, target: str
) -> None:
    runner = MigrationRunner(unreachable(backend), make_migrations(steps("a", "b")))

    with pytest.raises(UsageError, match=f"unknown target '{target}'.*newest is 002"):
        runner.upgrade(target)
    with pytest.raises(UsageError, match=f"unknown target '{target}'"):
        runner.dry_run(target)
    if backend.profile.database_file(backend.url) is not None:
        assert not Path(str(backend.url.database)).exists()  # no empty database file left


def test_a_downgrade_target_may_be_an_applied_step_whose_file_is_gone(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(steps("a", "b", "c"))
    MigrationRunner(backend.url, folder).upgrade()
    make_migrations({"002_create_b.py": None})
    runner = MigrationRunner(backend.url, folder)

    assert [m.version for m in runner.downgrade("002")] == ["003"]
    assert [r.version for r in runner.status().applied] == ["001", "002"]


def test_versions_match_by_integer_value(backend: Backend, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(steps("a", "b"))
    runner = MigrationRunner(backend.url, folder)
    runner.upgrade("1")
    (folder / "001_create_a.py").rename(folder / "1_create_a.py")

    assert [m.version for m in runner.upgrade("0002")] == ["002"]
    assert runner.status().pending == []


def test_baseline_marks_existing_steps_applied_without_running_them(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(steps("a", "b", "c")))

    marked = runner.baseline("002")

    assert [m.version for m in marked] == ["001", "002"]
    assert tables(backend) == {"migrations"}  # nothing ran
    assert [m.version for m in runner.upgrade()] == ["003"]
    with pytest.raises(UsageError, match="already has 3 row"):
        runner.baseline("003")


def test_baseline_needs_the_version_of_a_file(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(steps("a")))

    with pytest.raises(UsageError, match="no migration file has that version"):
        runner.baseline("5")
    assert tables(backend) == set()


def test_status_reports_everything_pending_without_creating_the_table(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(steps("a", "b")))

    status = runner.status()

    assert [m.version for m in status.pending] == ["001", "002"]
    assert status.current is None and status.applied == []
    assert status.pending[0].description == "Create table a."
    assert tables(backend) == set()


def test_verify_passes_with_pending_steps_and_writes_nothing(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(steps("a", "b")))
    runner.upgrade("1")

    runner.verify()

    assert runner.status().total_pending == 1


def test_a_runner_given_an_engine_leaves_it_usable(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    engine = backend.engine()
    try:
        MigrationRunner(engine, make_migrations(steps("a"))).upgrade()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM migrations")).scalar() == 1
    finally:
        engine.dispose()


def test_a_runner_given_a_connection_outside_a_transaction_commits_each_step(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            assert [m.version for m in MigrationRunner(conn, make_migrations(steps("a"))).upgrade()]
            assert not conn.in_transaction()
        assert count(backend, "SELECT count(*) FROM migrations") == 1
    finally:
        engine.dispose()


HALF_DONE = {
    "001_create_t.py": """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        """,
    "002_fill_t_then_fail.py": """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("INSERT INTO t (id) VALUES (1)"))
            raise RuntimeError("step 002 fails after its insert")
        """,
}

AUTOCOMMIT_SOURCES = ["create_engine", "engine option", "connection option"]


@pytest.mark.parametrize("source", AUTOCOMMIT_SOURCES)
def test_a_step_is_rolled_back_even_when_the_caller_works_in_autocommit(
    backend: Backend, make_migrations: MakeMigrations, source: str
) -> None:
    """AUTOCOMMIT would commit the insert as it ran; the runner makes the step a transaction."""
    folder = make_migrations(HALF_DONE)
    outcome = "rolled back" if backend.profile.transactional_ddl else "may remain"
    engine = (
        backend.engine(isolation_level="AUTOCOMMIT")
        if source == "create_engine"
        else backend.engine()
    )
    try:
        if source == "connection option":
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                with pytest.raises(MigrationFailed, match=outcome):
                    MigrationRunner(conn, folder).upgrade()
                assert conn.get_execution_options()["isolation_level"] == "AUTOCOMMIT"
        else:
            db = (
                engine.execution_options(isolation_level="AUTOCOMMIT")
                if (source == "engine option")
                else engine
            )
            with pytest.raises(MigrationFailed, match=outcome):
                MigrationRunner(db, folder).upgrade()
            with db.connect() as conn:  # the pool gave the connection its AUTOCOMMIT back
                conn.execute(text("INSERT INTO t (id) VALUES (7)"))
            assert count(backend, "SELECT count(*) FROM t WHERE id = 7") == 1
    finally:
        engine.dispose()

    assert count(backend, "SELECT count(*) FROM t WHERE id = 1") == 0, "002's insert undone"


def test_a_dry_run_in_autocommit_leaves_the_database_as_it_was(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    engine = backend.engine(isolation_level="AUTOCOMMIT")
    try:
        plan = MigrationRunner(engine, make_migrations(steps("a"))).dry_run()
    finally:
        engine.dispose()

    assert [step.migration.version for step in plan] == ["001"]
    assert "a" not in tables(backend)


def test_a_plain_path_is_a_file_only_through_db_path(
    tmp_path: object, make_migrations: MakeMigrations
) -> None:
    from pathlib import Path

    db = Path(str(tmp_path)) / "plain.db"
    with pytest.raises(ConfigError, match=r"is not a database URL.*sqlite:///"):
        MigrationRunner(str(db), make_migrations(steps("a")))
    assert not db.exists()
    MigrationRunner(db_path=str(db), migrations_dir=make_migrations(steps("a"))).upgrade()
    assert db.exists()


# -- the start-up check: nothing to do costs one SELECT, and hides nothing ----------------


def test_a_start_up_with_nothing_to_do_sends_one_select_and_takes_no_lock(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(steps("a", "b"))
    MigrationRunner(backend.url, folder).upgrade()
    engine = backend.engine()
    engine.connect().close()  # the dialect's own first-connect queries are not the runner's
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda c, cur, sql, *_: sent.append(sql))
    try:
        assert MigrationRunner(engine, folder).upgrade() == []
    finally:
        engine.dispose()

    work = [sql for sql in sent if sql.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK")]
    assert len(work) == 1 and work[0].startswith("SELECT") and "migrations" in work[0], sent


def _pending(backend: Backend, folder: Path, write: MakeMigrations) -> None:
    write(steps("a", "b", "c"))


def _edited(backend: Backend, folder: Path, write: MakeMigrations) -> None:
    (folder / "001_create_a.py").write_text(CREATE.format(t="a") + "# edited\n")


def _deleted(backend: Backend, folder: Path, write: MakeMigrations) -> None:
    (folder / "002_create_b.py").unlink()


def _failed_row(backend: Backend, folder: Path, write: MakeMigrations) -> None:
    _sql(backend, "UPDATE migrations SET success = false WHERE version = '002'")


def _checksum_emptied(backend: Backend, folder: Path, write: MakeMigrations) -> None:
    _sql(backend, "UPDATE migrations SET checksum = NULL WHERE version = '001'")


def _old_table(backend: Backend, folder: Path, write: MakeMigrations) -> None:
    """The bot runner's table: version, name, applied_at and nothing else."""
    _sql(backend, "ALTER TABLE migrations DROP COLUMN execution_ms")
    _sql(backend, "ALTER TABLE migrations DROP COLUMN checksum")


def _sql(backend: Backend, statement: str) -> None:
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(text(statement))
    engine.dispose()


def _checksums(backend: Backend) -> dict[str, str | None]:
    engine = backend.engine()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT version, checksum FROM migrations")).all()
    engine.dispose()
    return {version: value for version, value in rows}


Outcome = Callable[[MigrationRunner, Backend], None]


def _applies_the_new_step(runner: MigrationRunner, backend: Backend) -> None:
    assert [m.version for m in runner.upgrade()] == ["003"]


def _raises(error: type[Exception]) -> Outcome:
    def check(runner: MigrationRunner, backend: Backend) -> None:
        with pytest.raises(error):
            runner.upgrade()

    return check


def _fills_checksums(runner: MigrationRunner, backend: Backend) -> None:
    assert runner.upgrade() == []
    files = {m.version: m.checksum for m in runner.migrations()}
    assert _checksums(backend) == files


@pytest.mark.parametrize(
    ("change", "outcome"),
    [
        (_pending, _applies_the_new_step),
        (_edited, _raises(ChecksumMismatch)),
        (_deleted, _raises(MissingMigration)),
        (_failed_row, _raises(DirtyDatabase)),
        (_checksum_emptied, _fills_checksums),
        (_old_table, _fills_checksums),
    ],
    ids=["new file", "edited file", "deleted file", "failed row", "empty checksum", "old table"],
)
def test_the_start_up_check_sees_every_difference_from_the_last_run(
    backend: Backend, make_migrations: MakeMigrations, change: Any, outcome: Outcome
) -> None:
    folder = make_migrations(steps("a", "b"))
    runner = MigrationRunner(backend.url, folder)
    runner.upgrade()
    assert runner.upgrade() == []  # the no-op start-up, before the change

    change(backend, folder, make_migrations)

    outcome(runner, backend)


STAMPED = {
    "001_first.py": """\
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("CREATE TABLE first (id INTEGER PRIMARY KEY)"))
        """,
    "002_half.py": """\
        from sqlalchemy import text

        transactional = False

        def up(conn):
            conn.execute(text("CREATE TABLE half (id INTEGER PRIMARY KEY)"))
            raise RuntimeError("stopped half-way")
        """,
}


def test_stamp_and_unstamp_record_and_forget_one_step_without_running_it(
    backend: Backend, make_migrations: MakeMigrations, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sqlmig")
    runner = MigrationRunner(backend.url, make_migrations(STAMPED))

    assert runner.stamp("1") == "recorded 001_first as applied without running it"
    assert "first" not in tables(backend)
    assert [r.version for r in runner.status().applied] == ["001"]
    with pytest.raises(UsageError, match="already recorded as applied"):
        runner.stamp("001")
    with pytest.raises(UsageError, match="no migration file has that version"):
        runner.stamp("007")
    with pytest.raises(UsageError, match="a version is digits"):
        runner.stamp("x")

    with pytest.raises(MigrationFailed):
        runner.upgrade()  # 002 leaves a failed row
    with pytest.raises(DirtyDatabase):
        runner.upgrade()
    assert runner.stamp("002") == (
        "recorded 002_half as applied without running it (replacing its failed row)"
    )
    status = runner.status()
    assert [r.version for r in status.applied] == ["001", "002"] and status.failed == []
    assert runner.upgrade() == []

    assert runner.unstamp("002") == "removed the applied row of 002_half without running down()"
    assert "half" in tables(backend)  # down() did not run
    assert [m.version for m in runner.status().pending] == ["002"]
    with pytest.raises(UsageError, match="the history has no row for it"):
        runner.unstamp("002")
    assert "stamp: recorded 001_first" in caplog.text
    assert "unstamp: removed the applied row of 002_half" in caplog.text


def test_a_closed_connection_is_a_usage_error(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    engine = backend.engine()
    try:
        conn = engine.connect()
        conn.close()
        runner = MigrationRunner(conn, make_migrations(steps("a")))
        for call in (runner.upgrade, runner.status):
            with pytest.raises(UsageError, match="Connection you passed is closed"):
                call()
    finally:
        engine.dispose()


@pytest.mark.parametrize("option", [{"table": ""}, {"table": "  "}, {"schema": ""}])
def test_an_empty_table_or_schema_name_is_refused_before_connecting(
    backend: Backend, make_migrations: MakeMigrations, option: dict[str, str]
) -> None:
    with pytest.raises(UsageError, match="names nothing"):
        MigrationRunner(backend.url, make_migrations(steps("a")), **option).upgrade()
    assert tables(backend) == set()


def test_unstamp_on_a_database_without_history_creates_nothing(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(steps("a")))
    with pytest.raises(UsageError, match="cannot unstamp 1: the history has no row for it"):
        runner.unstamp("1")
    assert tables(backend) == set()  # MySQL would keep a history table created for nothing


def test_repair_on_a_database_without_history_changes_nothing(
    backend: Backend, make_migrations: MakeMigrations, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sqlmig")
    runner = MigrationRunner(backend.url, make_migrations(steps("a")))
    assert runner.repair() == []
    assert tables(backend) == set()  # no history table created for nothing
    assert "repair: nothing to repair: there is no history table yet" in caplog.text


# -- the calls for checks and tests: history, connect, with_database, reusing_engine ---


def test_history_lists_the_rows_as_read_and_creates_nothing(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations(steps("a", "b")))
    assert runner.history() == []
    assert "migrations" not in tables(backend)

    runner.upgrade("001")
    rows = runner.history()
    assert [(r.version, r.name, r.success) for r in rows] == [("001", "create_a", True)]
    assert rows[0].checksum == runner.migrations()[0].checksum


def test_connect_reads_the_runners_database_and_leaves_a_given_connection_as_found(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    MigrationRunner(backend.url, make_migrations(steps("a"))).upgrade()
    folder = make_migrations(steps("a"))
    with MigrationRunner(backend.url, folder).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM migrations")).scalar_one() == 1

    engine = backend.engine()
    try:
        with engine.connect() as given:
            with MigrationRunner(given, folder).connect() as conn:
                assert conn is given
                conn.execute(text("SELECT count(*) FROM a"))
            assert not given.in_transaction()  # the transaction the read began is over
    finally:
        engine.dispose()


def test_with_database_keeps_the_migrations_and_every_setting(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    def on_step(*args: object) -> None:
        pass

    runner = MigrationRunner(
        "sqlite:///one.db",
        make_migrations(steps("a")),
        table="history",
        lock_timeout=7,
        allow_out_of_order=False,
        on_step=on_step,
    )
    other = runner.with_database(sqlite_backend.url)
    assert other.url == sqlite_backend.url.render_as_string()
    assert (other.migrations_source, other.table, other.schema) == (
        runner.migrations_source,
        "history",
        None,
    )
    assert (other.lock_timeout, other.allow_out_of_order, other.on_step) == (7, False, on_step)


def test_reusing_engine_shares_one_engine_across_the_calls_of_the_block(
    sqlite_backend: Backend, make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlmig._database

    built: list[object] = []
    real = sqlmig._database.create_engine

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(sqlmig._database, "create_engine", counting)
    runner = MigrationRunner(sqlite_backend.url, make_migrations(steps("a", "b")))
    with runner.reusing_engine() as walker:
        assert walker is not runner
        walker.upgrade("001")
        walker.upgrade()
        assert walker.status().total_applied == 2
    assert len(built) == 1

    engine = sqlite_backend.engine()
    try:
        given = MigrationRunner(engine, runner.migrations_source)
        with given.reusing_engine() as walker:
            assert walker is given
    finally:
        engine.dispose()


def test_connect_raises_the_blocks_own_errors_as_they_are(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    from sqlalchemy.exc import DBAPIError

    runner = MigrationRunner(backend.url, make_migrations({"001_a.py": "def up(conn): pass\n"}))
    runner.upgrade()

    with pytest.raises(DBAPIError), runner.connect() as conn:  # the caller's, not sqlmig's
        conn.execute(text("SELECT * FROM no_such_table"))
    with pytest.raises(KeyError), runner.connect():
        raise KeyError("mine")
    with runner.connect() as conn:  # and the connection is fine for the next block
        assert conn.execute(text("SELECT count(*) FROM migrations")).scalar() == 1


#: the statement each backend's table lookup (``Inspector.has_table``) sends, in part
TABLE_LOOKUP = {"sqlite": "table_info", "postgresql": "pg_class", "mysql": "DESCRIBE"}


def test_a_run_on_a_sqlite_file_it_creates_reads_nothing_before_writing(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    """A new file has no history: no read, no table lookup; one write transaction makes
    the table and reads it, then one per step."""
    sent: list[str] = []
    engine = sqlite_backend.engine()
    event.listen(engine, "connect", lambda dbapi, _: dbapi.set_trace_callback(sent.append))
    try:
        applied = MigrationRunner(engine, make_migrations(steps("a", "b"))).upgrade()
    finally:
        engine.dispose()
    assert len(applied) == 2
    assert not [s for s in sent if TABLE_LOOKUP["sqlite"] in s]
    assert [s for s in sent if s.startswith("SELECT")] == ["SELECT * FROM migrations"]
    assert sent.count("BEGIN IMMEDIATE") == 1 + len(applied)


def test_a_run_reads_a_history_table_it_has_just_read_without_looking_it_up(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    MigrationRunner(backend.url, make_migrations(steps("a"))).upgrade()
    sent: list[str] = []
    engine = backend.engine()
    event.listen(engine, "before_cursor_execute", lambda c, cur, st, *_: sent.append(st))
    try:
        applied = MigrationRunner(engine, make_migrations(steps("a", "b"))).upgrade()
    finally:
        engine.dispose()
    assert [m.version for m in applied] == ["002"]
    assert not [s for s in sent if TABLE_LOOKUP[backend.name] in s]
    assert len([s for s in sent if s.startswith("SELECT * FROM")]) == 2  # before and under lock

"""The history table: its shape, UTC times, and adopting older runners' tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest
from sqlalchemy import MetaData, inspect, select, text
from sqlalchemy.exc import DBAPIError

import sqlmig._history as history_module
from backends import Backend
from conftest import MakeMigrations, tables
from sqlmig import DatabaseError, DirtyDatabase, MigrationRunner, history_table
from sqlmig._history import HistoryStore, to_utc

INITIAL = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY)"))
    """
SECOND = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE settings (id INTEGER PRIMARY KEY)"))

    def down(conn):
        conn.execute(text("DROP TABLE settings"))
    """

BOT_TABLE = (
    "CREATE TABLE migrations (version {key} PRIMARY KEY, name TEXT NOT NULL, "
    "applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"
)
CONTACTS_TABLE = (
    "CREATE TABLE _migrations (version {key} PRIMARY KEY, name TEXT NOT NULL, "
    "description TEXT, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"
)


def legacy_database(backend: Backend, ddl: str, rows: list[str]) -> None:
    """A database an older runner migrated: its table, its rows, the users table."""
    key = "VARCHAR(50)" if backend.name == "mysql" else "TEXT"
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(text(ddl.format(key=key)))
        conn.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY)"))
        for insert in rows:
            conn.execute(text(insert))
    engine.dispose()


def test_history_table_has_the_documented_columns(backend: Backend) -> None:
    table = history_table(MetaData(), schema=None)
    engine = backend.engine()
    try:
        table.create(engine)
        columns = {c["name"]: c for c in inspect(engine).get_columns("migrations")}
        assert list(columns) == [
            "version",
            "name",
            "applied_at",
            "checksum",
            "execution_ms",
            "success",
        ]
        assert not columns["name"]["nullable"] and not columns["success"]["nullable"]
        assert inspect(engine).get_pk_constraint("migrations")["constrained_columns"] == ["version"]
    finally:
        engine.dispose()


def test_applied_at_is_stored_in_utc_with_microseconds(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    before = datetime.now(UTC)
    runner = MigrationRunner(backend.url, make_migrations({"001_initial.py": INITIAL}))
    runner.upgrade()

    (row,) = runner.status().applied
    assert row.applied_at.tzinfo == UTC
    assert before <= row.applied_at <= datetime.now(UTC)
    engine = backend.engine()
    with engine.connect() as conn:  # the raw stored value keeps microseconds
        stored = conn.execute(select(history_table(MetaData()).c.applied_at)).scalar_one()
    engine.dispose()
    assert stored == row.applied_at


def test_the_bot_runners_table_is_adopted_without_rerunning_anything(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    legacy_database(
        backend, BOT_TABLE, ["INSERT INTO migrations (version, name) VALUES ('001', 'initial')"]
    )
    folder = make_migrations({"001_initial.py": INITIAL, "002_settings.py": SECOND})
    runner = MigrationRunner(db_path=backend.url_string, migrations_dir=str(folder))

    before = runner.status()  # reading writes nothing, even on an old table
    assert [r.version for r in before.applied] == ["001"] and before.applied[0].checksum is None
    assert [m.version for m in runner.upgrade()] == ["002"]  # 001 would fail if re-run

    after = runner.status()
    assert [r.version for r in after.applied] == ["001", "002"]
    assert all(r.checksum and r.success for r in after.applied)  # checksum filled in
    engine = backend.engine()
    columns = [c["name"] for c in inspect(engine).get_columns("migrations")]
    engine.dispose()
    assert columns[:3] == ["version", "name", "applied_at"]
    assert {"checksum", "execution_ms", "success"} <= set(columns)


def test_the_contact_managers_table_is_adopted_and_its_columns_kept(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    legacy_database(
        backend,
        CONTACTS_TABLE,
        [
            "INSERT INTO _migrations (version, name, description) "
            "VALUES ('001', 'initial_schema', 'Create base database schema')"
        ],
    )
    folder = make_migrations(
        {"migration_001_initial_schema.py": INITIAL, "migration_002_settings.py": SECOND}
    )
    runner = MigrationRunner(backend.url, folder, table="_migrations")

    assert [m.version for m in runner.upgrade()] == ["002"]
    assert runner.rollback_last().version == "002"  # type: ignore[union-attr]

    engine = backend.engine()
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT description FROM _migrations WHERE version = '001'"))
        assert kept.scalar_one() == "Create base database schema"
    engine.dispose()


def test_repair_fills_checksums_of_an_adopted_table(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    legacy_database(
        backend, BOT_TABLE, ["INSERT INTO migrations (version, name) VALUES ('1', 'initial')"]
    )
    runner = MigrationRunner(backend.url, make_migrations({"001_initial.py": INITIAL}))

    assert runner.repair() == []
    (row,) = runner.status().applied
    assert row.version == "1" and row.checksum is not None  # matched by integer value


@pytest.mark.parametrize("table", ["schema_history", "odd%(name)s %s history"])
def test_a_custom_table_name_is_used(
    backend: Backend, make_migrations: MakeMigrations, table: str
) -> None:
    # a name holding what a driver reads as a placeholder is sent as a name
    runner = MigrationRunner(backend.url, make_migrations({"001_initial.py": INITIAL}), table=table)
    runner.upgrade()
    engine = backend.engine()
    assert table in inspect(engine).get_table_names()
    assert "migrations" not in inspect(engine).get_table_names()
    engine.dispose()
    assert [r.version for r in runner.status().applied] == ["001"]
    runner.unstamp("001")
    runner.stamp("001")
    assert [r.version for r in runner.status().applied] == ["001"]


UNREADABLE_HISTORY = {
    # a history that exists but whose SELECT fails: a view over a table dropped under it
    "sqlite": [
        "CREATE TABLE gone (version TEXT)",
        "CREATE VIEW migrations AS SELECT version FROM gone",
        "DROP TABLE gone",
    ],
    "postgresql": ["CREATE VIEW migrations AS SELECT (1 / 0)::text AS version"],
    "mysql": [
        "CREATE TABLE gone (version TEXT)",
        "CREATE VIEW migrations AS SELECT version FROM gone",
        "DROP TABLE gone",
    ],
}


def test_a_history_that_exists_but_cannot_be_read_is_an_error_not_an_empty_history(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    """The start-up read is one SELECT; only a missing table reads as empty."""
    engine = backend.engine()
    with engine.begin() as conn:
        for statement in UNREADABLE_HISTORY[backend.name]:
            conn.execute(text(statement))
    engine.dispose()
    runner = MigrationRunner(backend.url, make_migrations({"001_users.py": INITIAL}))

    with pytest.raises(DatabaseError, match="reading the history table migrations failed"):
        runner.status()
    with pytest.raises(DatabaseError, match="reading the history table migrations failed") as info:
        runner.upgrade()
    assert isinstance(info.value.__cause__, DBAPIError)

    assert "users" not in tables(backend)


@pytest.mark.parametrize(
    "stored",
    [
        "2026-11-22 07:39:55.284260",  # SQLite text, as sqlmig writes it
        "2026-11-22T09:39:55.284260+02:00",  # text with an offset (an older runner)
        datetime(2026, 11, 22, 7, 39, 55, 284260),  # MySQL: naive UTC
        datetime(2026, 11, 22, 2, 39, 55, 284260, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_applied_at_reads_as_aware_utc_whatever_the_driver_returns(stored: object) -> None:
    moment = to_utc(stored)

    assert moment == datetime(2026, 11, 22, 7, 39, 55, 284260, tzinfo=UTC)
    assert moment is not None and moment.utcoffset() == timedelta(0)


def test_the_fingerprint_is_each_applied_rows_checksum_and_none_with_a_failed_row(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, make_migrations({"001_initial.py": INITIAL}))
    runner.upgrade()
    engine = backend.engine()
    try:
        with engine.begin() as conn:
            assert HistoryStore().read_fingerprint(conn) == {1: runner.migrations()[0].checksum}
            conn.execute(text("UPDATE migrations SET success = false"))
            assert HistoryStore().read_fingerprint(conn) is None
    finally:
        engine.dispose()


def test_the_fingerprint_of_a_table_that_needs_adopting_raises(backend: Backend) -> None:
    legacy_database(backend, BOT_TABLE, [])
    engine = backend.engine()
    try:
        with engine.connect() as conn, pytest.raises(DBAPIError):
            HistoryStore().read_fingerprint(conn)
    finally:
        engine.dispose()


THIRD = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE flags (id INTEGER PRIMARY KEY)"))

    def down(conn):
        conn.execute(text("DROP TABLE flags"))
    """


class _FastClock(datetime):
    """The client clock of a replica that runs two minutes fast."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        return datetime.now(tz) + timedelta(minutes=2)


def test_rollback_order_follows_the_servers_clock_not_a_replicas(
    backend: Backend, make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_migrations(
        {"001_initial.py": INITIAL, "002_settings.py": SECOND, "003_flags.py": THIRD}
    )
    MigrationRunner(backend.url, folder).upgrade("001")
    with monkeypatch.context() as patch:  # the replica that applies 002 runs fast
        patch.setattr(history_module, "datetime", _FastClock)
        MigrationRunner(backend.url, folder).upgrade("002")
    MigrationRunner(backend.url, folder).upgrade("003")  # a replica on time applies 003

    runner = MigrationRunner(backend.url, folder)
    applied = {row.version: row.applied_at for row in runner.status().applied}
    assert applied["001"] <= applied["002"] <= applied["003"] <= datetime.now(UTC)
    undone = runner.rollback_last()
    assert undone is not None and undone.version == "003"
    assert "flags" not in tables(backend) and "settings" in tables(backend)


def test_an_adopted_sqlite_history_with_unix_times_reads_in_their_order(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    engine = sqlite_backend.engine()
    with engine.begin() as conn:  # another tool's table: applied_at in Unix seconds
        conn.execute(text("CREATE TABLE migrations (version TEXT, name TEXT, applied_at INTEGER)"))
        conn.execute(text("INSERT INTO migrations VALUES ('001', 'a', 1700000200)"))
        conn.execute(text("INSERT INTO migrations VALUES ('002', 'b', 1700000100.5)"))
    engine.dispose()
    source = "def up(conn):\n    pass\n\ndef down(conn):\n    pass\n"
    runner = MigrationRunner(
        sqlite_backend.url, make_migrations({"001_a.py": source, "002_b.py": source})
    )

    status = runner.status()
    assert [r.version for r in status.applied] == ["002", "001"]  # oldest first
    assert status.applied[1].applied_at == datetime.fromtimestamp(1700000200, UTC)
    undone = runner.rollback_last()
    assert undone is not None and undone.version == "001"


def test_a_hand_written_applied_at_that_is_no_date_is_dirty_naming_the_row(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    source = "def up(conn):\n    pass\n"
    runner = MigrationRunner(sqlite_backend.url, make_migrations({"001_a.py": source}))
    runner.upgrade()
    engine = sqlite_backend.engine()
    with engine.begin() as conn:
        conn.execute(text("UPDATE migrations SET applied_at = 'yesterday'"))
    engine.dispose()

    for call in (runner.status, runner.verify, runner.rollback_last):
        with pytest.raises(DirtyDatabase, match=r"row \('001'\) whose applied_at is no date"):
            call()
    assert runner.upgrade() == []  # the start-up check reads checksums only
    assert runner.repair() == []  # still works on such a table
    engine = sqlite_backend.engine()
    with engine.begin() as conn:  # the way out the message gives
        conn.execute(text("UPDATE migrations SET applied_at = CURRENT_TIMESTAMP"))
    engine.dispose()
    assert runner.status().current == "001"


#: the paramstyles each test backend's driver reads
PARAMSTYLES = {
    "sqlite": ["qmark", "named", "numeric"],
    "postgresql": ["format", "pyformat"],
    "mysql": ["format", "pyformat"],
}


@pytest.mark.parametrize("style", ["qmark", "named", "numeric", "format", "pyformat"])
def test_a_row_is_recorded_in_the_drivers_own_paramstyle(
    backend: Backend, make_migrations: MakeMigrations, style: str
) -> None:
    """Each row's INSERT is written as driver SQL, in whichever paramstyle the engine uses."""
    if style not in PARAMSTYLES[backend.name]:
        pytest.skip(f"{backend.name}'s driver reads no {style} parameters")
    engine = backend.engine(paramstyle=style)
    try:
        runner = MigrationRunner(engine, make_migrations({"001_users.py": INITIAL}))
        assert [m.version for m in runner.upgrade()] == ["001"]
        (row,) = runner.history()
    finally:
        engine.dispose()
    assert (row.version, row.name, row.success, row.execution_ms is not None) == (
        "001",
        "users",
        True,
        True,
    )
    assert row.checksum and len(row.checksum) == 64
    assert abs(row.applied_at - datetime.now(UTC)) < timedelta(minutes=5)

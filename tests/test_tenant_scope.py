"""A schema per tenant on PostgreSQL: ``Target(url, schema=...)`` and ``steps_in_schema``.

The same unqualified files migrate every tenant's schema; the history table
lives there; the connection's own ``search_path`` comes back after the run;
each schema has a lock of its own. Elsewhere a tenant's schema is refused
before anything connects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from holding import held_lock
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.pool import QueuePool
from tenants import COUNTED_STEPS, hits

from backends import Backend, fresh_database
from conftest import MakeMigrations
from sqlmig import (
    MigrationFailed,
    MigrationRunner,
    Target,
    UsageError,
    status_all,
    upgrade_all,
)

SCHEMAS = ["tenant_a", "Tenant-A", 'we"ird.na me']


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[Backend]:
    with fresh_database("postgresql", tmp_path) as db:
        yield db


def schemas(backend: Backend) -> set[str]:
    engine = backend.engine()
    try:
        return set(inspect(engine).get_schema_names()) - {"information_schema", "public"}
    finally:
        engine.dispose()


def test_each_tenant_s_schema_gets_the_same_unqualified_steps(
    postgres: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(COUNTED_STEPS)
    targets = [Target(postgres.url_string, schema=s) for s in SCHEMAS]

    results = upgrade_all(targets, folder, jobs=3)

    assert [(r.name, r.state) for r in results] == [(s, "upgraded") for s in SCHEMAS]
    assert schemas(postgres) >= set(SCHEMAS)
    assert [hits(postgres.url_string, s) for s in SCHEMAS] == [["001", "002", "003"]] * 3
    engine = postgres.engine()
    with engine.connect() as conn:
        public = inspect(conn).get_table_names()
        assert {t for s in SCHEMAS for t in inspect(conn).get_table_names(schema=s)} == {
            "hits",
            "migrations",
        }
    engine.dispose()
    assert public == []  # nothing landed in the connection's default schema
    again = status_all(targets, folder)
    assert [(r.state, r.status and r.status.current) for r in again] == [("up to date", "003")] * 3


def test_the_pooled_connection_gets_its_search_path_back(
    postgres: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            **COUNTED_STEPS,
            "004_fails.py": "def up(conn):\n    raise RuntimeError('no')\n",
        }
    )
    engine = create_engine(postgres.url, poolclass=QueuePool, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            conn.execute(text("SET search_path TO public"))
            conn.commit()
        runner = MigrationRunner(engine, folder, schema="Tenant-A", steps_in_schema=True)
        with pytest.raises(MigrationFailed):
            runner.upgrade()
        assert runner.status().current == "003"
        with engine.connect() as conn:  # the one connection of the pool, after the runs
            assert conn.execute(text("SHOW search_path")).scalar() == "public"
    finally:
        engine.dispose()


def test_a_tenant_s_lock_is_its_own(postgres: Backend, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(COUNTED_STEPS)
    upgrade_all([Target(postgres.url_string, schema=s) for s in ("a", "b")], folder, to="001")

    with held_lock(postgres, schema="a"):
        results = upgrade_all(
            [Target(postgres.url_string, schema=s) for s in ("a", "b")], folder, lock_timeout=0.5
        )

    assert [r.state for r in results] == ["failed", "upgraded"]
    assert "lock" in str(results[0].error)


def test_reading_a_tenant_not_made_yet_creates_nothing(
    postgres: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(COUNTED_STEPS)
    runner = MigrationRunner(postgres.url, folder, schema="newcomer", steps_in_schema=True)

    assert runner.status().total_pending == 3
    assert runner.downgrade("base") == []
    assert "newcomer" not in schemas(postgres)
    assert [m.version for m in runner.upgrade()] == ["001", "002", "003"]
    assert "newcomer" in schemas(postgres)


def test_a_new_tenant_s_history_is_made_without_reading_or_looking_it_up_first(
    postgres: Backend, make_migrations: MakeMigrations
) -> None:
    """A schema the run creates has no history: the run makes the table and reads it once."""
    sent: list[str] = []
    engine = postgres.engine()
    event.listen(engine, "before_cursor_execute", lambda c, cur, st, *_: sent.append(st))
    try:
        runner = MigrationRunner(
            engine, make_migrations(COUNTED_STEPS), schema="newcomer", steps_in_schema=True
        )
        assert [m.version for m in runner.upgrade()] == ["001", "002", "003"]
    finally:
        engine.dispose()
    assert not [s for s in sent if "pg_class" in s]  # no table lookup
    assert len([s for s in sent if s.startswith("SELECT * FROM")]) == 1


def test_two_runs_creating_one_schema_at_once_both_succeed(
    postgres: Backend, make_migrations: MakeMigrations
) -> None:
    """CREATE SCHEMA IF NOT EXISTS still races on the catalog; the loser finds it made."""
    import threading

    folder = make_migrations(COUNTED_STEPS)
    gate = threading.Barrier(4)
    outcomes: list[object] = []

    def run() -> None:
        gate.wait()
        try:
            outcomes.append(
                len(
                    MigrationRunner(
                        postgres.url, folder, schema="raced", steps_in_schema=True
                    ).upgrade()
                )
            )
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes) == [0, 0, 0, 3]  # type: ignore[type-var]
    assert hits(postgres.url_string, "raced") == ["001", "002", "003"]


def test_a_tenant_s_schema_needs_postgresql(backend: Backend, tmp_path: Path) -> None:
    if backend.profile.enter_tenant_schema is not None:
        pytest.skip("this database keeps tenants in schemas")
    with pytest.raises(UsageError, match="needs PostgreSQL"):
        MigrationRunner(backend.url, tmp_path, schema="t", steps_in_schema=True)
    with pytest.raises(UsageError, match="needs PostgreSQL"):
        upgrade_all([Target(backend.url_string, schema="t")], tmp_path)


def test_steps_in_schema_needs_a_schema(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs schema="):
        MigrationRunner("postgresql://u@h/db", tmp_path, steps_in_schema=True)


def test_a_runner_s_schema_alone_still_means_the_history_table_s(
    postgres: Backend, make_migrations: MakeMigrations
) -> None:
    """Existing users of schema= keep their steps in the connection's default schema."""
    engine = postgres.engine()
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA meta"))
    engine.dispose()
    folder = make_migrations(COUNTED_STEPS)

    MigrationRunner(postgres.url, folder, schema="meta").upgrade()

    assert hits(postgres.url_string) == ["001", "002", "003"]  # in public
    assert hits(postgres.url_string, "meta") == []


def wait_for(path: Path, *, within: float = 30.0) -> bool:
    """Wait until file ``path`` exists; False if it has not within ``within`` seconds."""
    deadline = time.monotonic() + within
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Touching(logging.Handler):
    """Touches ``path`` when the ``sqlmig`` logger says ``words``."""

    def __init__(self, words: str, path: Path) -> None:
        super().__init__(logging.WARNING)
        self.words = words
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.path.touch()


def test_ctrl_c_stops_each_running_schema_after_its_step(
    postgres: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    """Ctrl-C comes while a schema's step runs, which ends once the run has heard it.

    No fixed wait: the step says it started (a file named for its schema), the
    interrupt waits for Second-One's, and the step goes on once the run has
    logged that it was interrupted.
    """
    from sqlmig import TargetResult, TargetsInterrupted

    started, heard = tmp_path / "started", tmp_path / "heard"
    started.mkdir()
    folder = make_migrations(
        {
            **COUNTED_STEPS,
            "004_slow.py": f"""\
                import pathlib, time

                def up(conn):
                    conn.exec_driver_sql("INSERT INTO hits (version) VALUES ('004')")
                    schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
                    pathlib.Path({str(started)!r}, schema).touch()
                    deadline = time.monotonic() + 30
                    while not pathlib.Path({str(heard)!r}).exists() and time.monotonic() < deadline:
                        time.sleep(0.01)
                """,
            "005_after.py": """\
                def up(conn):
                    conn.exec_driver_sql("INSERT INTO hits (version) VALUES ('005')")
                """,
        }
    )
    names = ["first", "Second-One", "third", "fourth"]
    heard.touch()  # the set-up's own runs of 004 go straight on
    upgrade_all([Target(postgres.url_string, schema="first")], folder)  # up to date: done at once
    upgrade_all([Target(postgres.url_string, schema="Second-One")], folder, to="003")
    heard.unlink()

    def interrupt(result: TargetResult) -> None:
        assert wait_for(started / "Second-One"), "Second-One's step 004 never started"
        raise KeyboardInterrupt

    logger = logging.getLogger("sqlmig")
    handler = Touching("interrupted", heard)
    logger.addHandler(handler)
    try:
        with pytest.raises(TargetsInterrupted) as stop:
            upgrade_all(
                [Target(postgres.url_string, schema=n) for n in names],
                folder,
                jobs=2,
                on_result=interrupt,
            )
    finally:
        logger.removeHandler(handler)

    states = {r.name: r.state for r in stop.value.results}
    assert states["first"] == "up to date"
    assert states["Second-One"] == "interrupted"  # after its step 004, before 005
    assert states["third"] in {"interrupted", "not started"}  # taken when "first" ended, or not
    assert states["fourth"] == "not started"
    for result, name in zip(stop.value.results, names, strict=True):
        applied = (
            MigrationRunner(postgres.url, folder, schema=name, steps_in_schema=True)
            .status()
            .applied
        )
        recorded = [r.version for r in applied]
        assert recorded == hits(postgres.url_string, name), name  # each step whole, or not at all
        if result.state == "interrupted":
            assert "005" not in recorded
    assert hits(postgres.url_string, "Second-One") == ["001", "002", "003", "004"]
    assert "fourth" not in schemas(postgres)


def test_a_user_who_may_not_create_the_schema_is_told_how_to_make_it(
    postgres: Backend, make_migrations: MakeMigrations
) -> None:
    from sqlmig import DatabaseError

    role = f"sqlmig_weak_{postgres.url.database}"
    admin = postgres.engine(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
    try:
        weak = postgres.url.set(username=role).render_as_string(hide_password=False)
        results = upgrade_all(
            [Target(weak, schema="acme"), Target(postgres.url_string, schema="globex")],
            make_migrations(COUNTED_STEPS),
        )
        assert [r.state for r in results] == ["failed", "upgraded"]
        assert isinstance(results[0].error, DatabaseError)
        assert str(results[0].error).startswith(
            'cannot create the tenant\'s schema "acme" on postgresql+psycopg://sqlmig_weak_'
        )
        assert "grant the user CREATE on the database" in str(results[0].error)
        assert "acme" not in schemas(postgres)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


#: A step that leaves the connection in an encoding without most of the world's letters.
LATIN1_STEP = """\
    def up(conn):
        conn.exec_driver_sql("CREATE TABLE latin (x int)")
        conn.exec_driver_sql("SET client_encoding TO 'LATIN1'")
    """


@pytest.mark.parametrize("schema", ["Mandant-ü€", "租户-ü"])
def test_a_step_that_sets_an_encoding_without_the_schema_s_name_is_rolled_back_and_told(
    postgres: Backend, make_migrations: MakeMigrations, schema: str
) -> None:
    folder = make_migrations({"001_latin.py": LATIN1_STEP})
    runner = MigrationRunner(postgres.url, folder, schema=schema, steps_in_schema=True)

    with pytest.raises(MigrationFailed) as info:
        runner.upgrade()

    message = str(info.value)
    assert "client encoding, latin-1" in message and "RESET client_encoding" in message
    assert "its work was rolled back" in message and "\n" not in message
    assert runner.status().pending[0].version == "001" and not runner.status().failed
    engine = postgres.engine()
    with engine.connect() as conn:
        assert inspect(conn).get_table_names(schema=schema) == ["migrations"]
    engine.dispose()
    fixed = LATIN1_STEP.rstrip(" ") + "        conn.exec_driver_sql('RESET client_encoding')\n"
    make_migrations({"001_latin.py": fixed})
    assert [m.version for m in runner.upgrade()] == ["001"]

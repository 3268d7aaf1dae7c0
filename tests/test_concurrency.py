"""Replicas of a service calling sqlmig at start-up: real processes, on every backend (SPEC §5).

Eight spawned processes (see :mod:`workers`) are released at the same moment by
a barrier and each call one runner method; killed runners are one-off
processes sent SIGKILL in the middle of a step. Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from holding import held_lock, lock_waits
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from workers import (
    BOUND,
    SPAWN,
    Crew,
    Job,
    Outcome,
    downgrade_dying,
    upgrade_once,
    wait_for_file,
)

from backends import Backend
from conftest import MakeMigrations, tables
from sqlmig import DirtyDatabase, LockTimeout, MigrationRunner, SqlmigError

REPLICAS = 8
ROUNDS = 4  # stress rounds per backend: REPLICAS * ROUNDS concurrent upgrade() calls
STEPS = 5
RACE_ROUNDS = 20  # rounds of one upgrade() racing one downgrade() per backend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def crews() -> Iterator[list[Crew]]:
    """Eight processes, spawned once for the module (and again if a test had to kill them)."""
    box = [Crew(REPLICAS)]
    try:
        yield box
    finally:
        box[0].close()


@pytest.fixture
def replicas(crews: list[Crew]) -> Crew:
    """The module's crew, idle and alive."""
    if crews[0].pending:  # a test that failed between submit() and collect()
        crews[0].collect()
    if crews[0].broken:
        crews[0] = Crew(REPLICAS)
    return crews[0]


def sql(backend: Backend, *statements: str) -> list[object]:
    """Run statements in one transaction; the first value each returned (None: no rows)."""
    engine = backend.engine()
    try:
        with engine.begin() as conn:
            results = [conn.execute(text(s)) for s in statements]
            return [r.scalar() if r.returns_rows else None for r in results]
    finally:
        engine.dispose()


def history(backend: Backend, table: str = "migrations") -> list[tuple[str, bool]]:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT version, success FROM {table} ORDER BY version"))
            return [(str(v), bool(s)) for v, s in rows]
    finally:
        engine.dispose()


def all_ok(outcomes: list[Outcome]) -> list[list[str]]:
    failed = [str(o) for o in outcomes if not o.ok]
    assert not failed, f"processes that did not return normally: {failed}"
    return [o.value or [] for o in outcomes]


# -- eight replicas start at once ----------------------------------------------------

INSERTING = """\
    '''Step {n}: takes a moment and leaves one row per run in ran_{n}.'''
    import os
    import time

    from sqlalchemy import text

    def up(conn):
        conn.execute(text("INSERT INTO ran_{n} (pid) VALUES (:pid)"), {{"pid": os.getpid()}})
        time.sleep(0.05)

    def down(conn):
        conn.execute(text("DELETE FROM ran_{n}"))
    """


def test_replicas_starting_at_once_apply_every_step_exactly_once(
    backend: Backend, make_migrations: MakeMigrations, replicas: Crew
) -> None:
    folder = make_migrations(
        {f"{n:03d}_step.py": INSERTING.format(n=n) for n in range(1, STEPS + 1)}
    )
    numbers = range(1, STEPS + 1)
    everything = [f"{n:03d}" for n in numbers]
    sql(backend, *(f"CREATE TABLE ran_{n} (pid INTEGER)" for n in range(1, STEPS + 1)))
    job = Job("upgrade", backend.url_string, str(folder), options={"lock_timeout": BOUND})

    for round_ in range(ROUNDS):
        outcomes = replicas.run([job] * REPLICAS)

        applied = all_ok(outcomes)
        assert sorted(v for versions in applied for v in versions) == everything, (
            f"round {round_}: each step returned by exactly one process"
        )
        ran_by = {v: o.pid for o in outcomes for v in o.value or []}
        for n in range(1, STEPS + 1):
            rows = sql(backend, f"SELECT count(*) FROM ran_{n}", f"SELECT min(pid) FROM ran_{n}")
            assert rows == [1, ran_by[f"{n:03d}"]], f"round {round_}: step {n} ran {rows[0]} times"
        assert history(backend) == [(v, True) for v in everything]
        sql(backend, "DROP TABLE migrations", *(f"DELETE FROM ran_{n}" for n in numbers))


def test_replicas_against_an_up_to_date_database_take_no_lock(
    backend: Backend, make_migrations: MakeMigrations, replicas: Crew
) -> None:
    folder = make_migrations({"001_a.py": "def up(conn):\n    pass\n"})
    MigrationRunner(backend.url, folder).upgrade()
    job = Job("upgrade", backend.url_string, str(folder), options={"lock_timeout": 0.5})

    with held_lock(backend):
        outcomes = replicas.run([job] * REPLICAS)
        assert all_ok(outcomes) == [[]] * REPLICAS  # none waited, none timed out

        make_migrations({"002_b.py": "def up(conn):\n    pass\n"})  # now one is pending
        with pytest.raises(LockTimeout):
            MigrationRunner(backend.url, folder, lock_timeout=0.5).upgrade()


# -- a runner in a slow step, waited for or killed ---------------------------------------

SLOW = """\
    '''Step 002: creates b, then stays until {release} appears (or is killed).'''
    import os
    import time
    from pathlib import Path

    from sqlalchemy import text

    transactional = {transactional}

    def up(conn):
        conn.execute(text("CREATE TABLE b (x INTEGER)"))
        conn.execute(text("INSERT INTO b VALUES (1)"))
        if not os.path.exists({mark!r}):
            Path({mark!r}).touch()
            deadline = time.monotonic() + {bound}
            while not os.path.exists({release!r}) and time.monotonic() < deadline:
                time.sleep(0.02)
    """


def slow_migrations(
    make_migrations: MakeMigrations, tmp_path: Path, *, transactional: bool = True
) -> tuple[Path, Path, Path]:
    """001 creates a, 002 is slow the first time it runs, 003 creates c."""
    mark, release = tmp_path / "in-step-002", tmp_path / "release-002"
    create = "def up(conn):\n    conn.exec_driver_sql('CREATE TABLE {} (x INTEGER)')\n"
    folder = make_migrations(
        {
            "001_a.py": create.format("a"),
            "002_slow.py": SLOW.format(
                mark=str(mark), release=str(release), transactional=transactional, bound=BOUND
            ),
            "003_c.py": create.format("c"),
        }
    )
    return folder, mark, release


def test_a_runner_that_cannot_get_the_lock_names_the_process_holding_it(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path, replicas: Crew
) -> None:
    folder, mark, release = slow_migrations(make_migrations, tmp_path)
    holder_url = backend.url
    if backend.name == "postgresql":
        name = f"holder-{backend.url.database}"  # unique on the server
        holder_url = holder_url.update_query_dict({"application_name": name})
    replicas.submit([Job("upgrade", holder_url.render_as_string(False), str(folder))])
    try:
        wait_for_file(mark)
        with pytest.raises(LockTimeout) as caught:
            MigrationRunner(backend.url, folder, lock_timeout=0.3).upgrade()
        if backend.name == "postgresql":
            assert caught.value.holder is not None
            pid = caught.value.holder.removeprefix("PostgreSQL process ")
            assert f"PostgreSQL process {pid}" in str(caught.value)
            owner = sql(backend, f"SELECT application_name FROM pg_stat_activity WHERE pid = {pid}")
            assert owner == [name]  # the process in the slow step, not anyone else
        elif backend.profile.lock is not None:  # a session lock names its holder
            assert caught.value.holder is not None
            assert caught.value.holder in str(caught.value)
        else:
            assert "SQLite" in str(caught.value)
    finally:
        release.touch()
        outcomes = replicas.collect()
    assert all_ok(outcomes) == [["001", "002", "003"]]


@pytest.mark.parametrize("transactional", [True, False], ids=["transactional", "non_transactional"])
def test_a_runner_killed_in_a_step_leaves_no_stale_lock(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path, transactional: bool
) -> None:
    folder, mark, _ = slow_migrations(make_migrations, tmp_path, transactional=transactional)
    results = SPAWN.Queue()
    victim = SPAWN.Process(
        target=upgrade_once, args=(backend.url_string, str(folder), {}, results), daemon=True
    )
    victim.start()
    try:
        wait_for_file(mark, victim)
    finally:
        os.kill(victim.pid or 0, signal.SIGKILL)
        victim.join(BOUND)
    assert victim.exitcode == -signal.SIGKILL

    runner = MigrationRunner(backend.url, folder, lock_timeout=5)  # no stale lock to wait out
    if not (backend.profile.transactional_ddl and transactional):
        # DDL may have committed itself: the step stays flagged until a person looks (§4)
        with pytest.raises(DirtyDatabase) as caught:
            runner.upgrade()
        assert caught.value.versions == ["002"]
        assert [r.version for r in runner.status().failed] == ["002"]
        sql(backend, "DROP TABLE IF EXISTS b")  # the manual check: undo what 002 left
        assert runner.repair() == ["removed the failed row of 002"]
    else:
        assert "b" not in tables(backend)  # rolled back with the killed process
        assert [r.version for r in runner.status().applied] == ["001"]
    assert [m.version for m in runner.upgrade()] == ["002", "003"]
    assert sql(backend, "SELECT count(*) FROM b") == [1]
    assert history(backend) == [("001", True), ("002", True), ("003", True)]


SLEEPING = """\
    '''Step 002: the first time it runs, sleeps on the server ({mark} marks it).'''
    import os
    from pathlib import Path

    from sqlalchemy import text

    def up(conn):
        if not os.path.exists({mark!r}):
            Path({mark!r}).touch()
            conn.execute(text("SELECT pg_sleep(60)"))
    """
CHECKING = """\
    from sqlalchemy import text

    def up(conn):
        interval = conn.execute(text("SHOW client_connection_check_interval")).scalar()
        if interval != "1s":
            raise RuntimeError(f"client_connection_check_interval is {interval}")
    """


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_a_runner_killed_in_a_long_statement_frees_the_lock_within_seconds(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    mark = tmp_path / "in-step-002"
    folder = make_migrations(
        {
            "001_a.py": CREATING.format(n=1),
            "002_sleep.py": SLEEPING.format(mark=str(mark)),
        }
    )
    results = SPAWN.Queue()
    victim = SPAWN.Process(
        target=upgrade_once, args=(backend.url_string, str(folder), {}, results), daemon=True
    )
    victim.start()
    try:
        wait_for_file(mark, victim)
        time.sleep(0.3)  # well inside pg_sleep(60)
    finally:
        os.kill(victim.pid or 0, signal.SIGKILL)
        victim.join(BOUND)
    assert victim.exitcode == -signal.SIGKILL

    # the killed runner's server session ends (and frees the lock) long before pg_sleep would
    started = time.monotonic()
    applied = MigrationRunner(backend.url, folder, lock_timeout=10).upgrade()
    assert [m.version for m in applied] == ["002"]
    assert time.monotonic() - started < 8


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_a_callers_pooled_connection_gets_its_settings_back(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_a.py": CREATING.format(n=1), "002_check.py": CHECKING})
    engine = backend.engine(pool_size=1, max_overflow=0)
    try:
        assert len(MigrationRunner(engine, folder).upgrade()) == 2  # 002 saw "1s"
        with engine.connect() as conn:  # the same pooled connection, as the server set it
            assert conn.execute(text("SHOW client_connection_check_interval")).scalar() == "0"
    finally:
        engine.dispose()


# -- the other writing operations racing -----------------------------------------------

CREATING = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE t{n} (x INTEGER)"))

    def down(conn):
        conn.execute(text("DROP TABLE t{n}"))
    """


def creating(make_migrations: MakeMigrations, count: int = 3) -> Path:
    return make_migrations({f"{n:03d}_t{n}.py": CREATING.format(n=n) for n in range(1, count + 1)})


def step_tables(backend: Backend) -> set[str]:
    return {t for t in tables(backend) if t.startswith("t") and t[1:].isdigit()}


def test_racing_downgrades_undo_each_step_once(
    backend: Backend, make_migrations: MakeMigrations, replicas: Crew
) -> None:
    folder = creating(make_migrations)
    MigrationRunner(backend.url, folder).upgrade()
    job = Job("downgrade", backend.url_string, str(folder), ("base",), {"lock_timeout": BOUND})

    undone = all_ok(replicas.run([job] * REPLICAS))

    assert sorted(v for versions in undone for v in versions) == ["001", "002", "003"]
    assert history(backend) == [] and step_tables(backend) == set()


def test_racing_baselines_record_the_history_once(
    backend: Backend, make_migrations: MakeMigrations, replicas: Crew
) -> None:
    folder = creating(make_migrations)
    job = Job("baseline", backend.url_string, str(folder), ("002",), {"lock_timeout": BOUND})

    outcomes = replicas.run([job] * REPLICAS)

    winners = [o for o in outcomes if o.ok]
    assert [o.value for o in winners] == [["001", "002"]], [str(o) for o in outcomes]
    losers = Counter(o.error for o in outcomes if not o.ok)
    assert losers == {"UsageError": REPLICAS - 1}, [str(o) for o in outcomes]
    assert history(backend) == [("001", True), ("002", True)]
    assert step_tables(backend) == set()


def test_racing_repairs_fix_the_history_once(
    backend: Backend, make_migrations: MakeMigrations, replicas: Crew
) -> None:
    folder = creating(make_migrations)
    MigrationRunner(backend.url, folder).upgrade()
    sql(backend, "UPDATE migrations SET success = FALSE WHERE version = '003'")
    make_migrations({"001_t1.py": CREATING.format(n=1) + "# edited\n"})
    job = Job("repair", backend.url_string, str(folder), options={"lock_timeout": BOUND})

    changes = all_ok(replicas.run([job] * REPLICAS))

    assert sorted(c for lines in changes for c in lines) == [
        "accepted the edited file of 001",
        "removed the failed row of 003",
    ]
    assert history(backend) == [("001", True), ("002", True)]
    MigrationRunner(backend.url, folder).verify()


def test_racing_upgrades_and_downgrades_keep_history_and_schema_in_step(
    backend: Backend, make_migrations: MakeMigrations, replicas: Crew
) -> None:
    folder = creating(make_migrations, count=4)
    MigrationRunner(backend.url, folder).upgrade("002")
    options = {"lock_timeout": BOUND}
    up = Job("upgrade", backend.url_string, str(folder), options=options)
    down = Job("downgrade", backend.url_string, str(folder), ("base",), options)

    all_ok(replicas.run([up, down] * (REPLICAS // 2)))

    rows = history(backend)
    assert all(success for _, success in rows)
    assert {f"t{int(v)}" for v, _ in rows} == step_tables(backend)


# -- an upgrade racing a downgrade: every step is planned from the history as it is now ---

ALTERING = {
    "001_t1.py": CREATING.format(n=1),
    "002_t2.py": CREATING.format(n=2),
    "003_t3.py": CREATING.format(n=3),
    "004_t3_y.py": """\
        import time
        from sqlalchemy import text

        def up(conn):
            conn.execute(text("ALTER TABLE t3 ADD COLUMN y INTEGER"))
            time.sleep(0.01)

        def down(conn):
            conn.execute(text("ALTER TABLE t3 DROP COLUMN y"))
        """,
    "005_t5.py": CREATING.format(n=5),
}


def assert_schema_matches_history(backend: Backend, when: str = "") -> None:
    """Each recorded step's tables and columns exist, and no other step's do (by reflection)."""
    rows = history(backend)
    assert all(ok for _, ok in rows), f"{when}: failed rows {rows}"
    recorded = {int(v) for v, _ in rows}
    engine = backend.engine()
    try:
        inspector = inspect(engine)
        present = {t for t in inspector.get_table_names() if t in {"t1", "t2", "t3", "t5"}}
        columns = {c["name"] for c in inspector.get_columns("t3")} if "t3" in present else set()
    finally:
        engine.dispose()
    expected = {f"t{n}" for n in (1, 2, 3, 5) if n in recorded}
    assert (present, "y" in columns) == (expected, 4 in recorded), (
        f"{when}: history {sorted(recorded)} but tables {sorted(present)}, t3 columns {columns}"
    )


def test_an_upgrade_racing_a_downgrade_leaves_history_matching_the_schema(
    backend: Backend, make_migrations: MakeMigrations, replicas: Crew
) -> None:
    folder = make_migrations(ALTERING)
    runner = MigrationRunner(backend.url, folder)
    options = {"lock_timeout": BOUND}
    down = Job("downgrade", backend.url_string, str(folder), ("001",), options)
    up = Job("upgrade", backend.url_string, str(folder), options=options)

    for round_ in range(RACE_ROUNDS):
        runner.upgrade("003")
        runner.downgrade("003")  # 001-003 applied, 004 and 005 pending
        outcomes = replicas.run([down, up] if round_ % 2 else [up, down])
        all_ok(outcomes)
        assert_schema_matches_history(backend, f"round {round_}: {[str(o) for o in outcomes]}")


def test_sqlite_upgrade_plans_again_when_a_downgrade_ran_between_its_steps(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(ALTERING)
    MigrationRunner(sqlite_backend.url, folder).upgrade("003")
    other = MigrationRunner(sqlite_backend.url, folder)
    engine = sqlite_backend.engine()
    try:
        # this runner has planned 004, 005 when the other one undoes 003 and 002
        with between_transactions(engine, lambda: other.downgrade("001")):
            applied = MigrationRunner(engine, folder).upgrade()
    finally:
        engine.dispose()
    assert [m.version for m in applied] == ["002", "003", "004", "005"]
    assert_schema_matches_history(sqlite_backend)


def test_sqlite_downgrade_plans_again_when_an_upgrade_ran_between_its_steps(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(ALTERING)
    MigrationRunner(sqlite_backend.url, folder).upgrade("003")
    other = MigrationRunner(sqlite_backend.url, folder)
    engine = sqlite_backend.engine()
    try:
        # this runner has planned to undo 003, 002 when the other one applies 004 and 005
        with between_transactions(engine, lambda: other.upgrade()):
            undone = MigrationRunner(engine, folder).downgrade("001")
    finally:
        engine.dispose()
    assert [m.version for m in undone] == ["005", "004", "003", "002"]
    assert_schema_matches_history(sqlite_backend)
    assert history(sqlite_backend) == [("001", True)]


def test_sqlite_rollback_last_undoes_the_step_applied_between_its_transactions(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(ALTERING)
    MigrationRunner(sqlite_backend.url, folder).upgrade("003")
    other = MigrationRunner(sqlite_backend.url, folder)
    engine = sqlite_backend.engine()
    try:
        # this runner has picked 003 as the most recent when the other one applies 004
        with between_transactions(engine, lambda: other.upgrade("004")):
            undone = MigrationRunner(engine, folder).rollback_last()
    finally:
        engine.dispose()
    assert undone is not None and undone.version == "004"
    assert_schema_matches_history(sqlite_backend)


def test_sqlite_upgrade_lists_a_step_it_applied_again_once(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(ALTERING)
    MigrationRunner(sqlite_backend.url, folder).upgrade("003")
    other = MigrationRunner(sqlite_backend.url, folder)
    engine = sqlite_backend.engine()
    try:
        # this runner has applied 004 when the other one undoes it: 004 runs again, then 005
        with between_transactions(engine, lambda: other.downgrade("003"), before_transaction=3):
            applied = MigrationRunner(engine, folder).upgrade()
    finally:
        engine.dispose()
    assert [m.version for m in applied] == ["004", "005"]
    assert_schema_matches_history(sqlite_backend)
    assert [v for v, _ in history(sqlite_backend)] == ["001", "002", "003", "004", "005"]


def test_sqlite_downgrade_lists_a_step_it_undid_again_once(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(ALTERING)
    MigrationRunner(sqlite_backend.url, folder).upgrade()
    other = MigrationRunner(sqlite_backend.url, folder)
    engine = sqlite_backend.engine()
    try:
        # this runner has undone 005 when the other one applies it again: 005 is undone again
        with between_transactions(engine, lambda: other.upgrade(), before_transaction=3):
            undone = MigrationRunner(engine, folder).downgrade("003")
    finally:
        engine.dispose()
    assert [m.version for m in undone] == ["005", "004"]
    assert_schema_matches_history(sqlite_backend)
    assert [v for v, _ in history(sqlite_backend)] == ["001", "002", "003"]


# -- SQLite: a decision and its write must share one write transaction ---------------------


@contextmanager
def between_transactions(
    engine: Engine, act: Callable[[], object], *, before_transaction: int = 2
) -> Iterator[None]:
    """Run ``act`` (another runner) between the write transactions of the runner on ``engine``.

    ``before_transaction``: the runner's write transaction (counted from 1) that ``act``
    runs just before.

    On SQLite each write transaction is the lock, so this is the interleaving two
    racing processes can produce; here it happens every time. A runner that decides
    and writes in one transaction has no "between": ``act`` then runs after it.
    """
    ran: list[bool] = []

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            ran.append(True)
            if len(ran) == before_transaction:  # the previous transaction is over
                act()

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", before)
    if len(ran) < before_transaction:
        act()


def outcome_of(call: Callable[[], object]) -> str:
    try:
        call()
    except SqlmigError as exc:
        return type(exc).__name__
    return "ok"


def test_sqlite_upgrade_skips_the_steps_another_runner_applied_between_its_transactions(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = creating(make_migrations)
    other = MigrationRunner(sqlite_backend.url, folder)
    engine = sqlite_backend.engine()
    try:
        # this runner has planned 001-003 when the other one applies 001 and 002
        with between_transactions(engine, lambda: other.upgrade("002")):
            applied = MigrationRunner(engine, folder).upgrade()
    finally:
        engine.dispose()
    assert [m.version for m in applied] == ["003"]
    assert history(sqlite_backend) == [("001", True), ("002", True), ("003", True)]


def test_sqlite_downgrade_skips_the_steps_another_runner_undid_between_its_transactions(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = creating(make_migrations)
    MigrationRunner(sqlite_backend.url, folder).upgrade()
    other = MigrationRunner(sqlite_backend.url, folder)
    engine = sqlite_backend.engine()
    try:
        # this runner has planned to undo 003-001 when the other one undoes 003 and 002
        with between_transactions(engine, lambda: other.downgrade("001")):
            undone = MigrationRunner(engine, folder).downgrade("base")
    finally:
        engine.dispose()
    assert [m.version for m in undone] == ["001"]
    assert history(sqlite_backend) == []
    assert step_tables(sqlite_backend) == set()


def test_sqlite_runner_alone_asks_the_change_counter_not_the_history_at_each_step(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = creating(make_migrations)
    statements: list[str] = []
    engine = sqlite_backend.engine()
    # SQLite's own trace: it sees the statements sqlmig sends on the driver connection too
    event.listen(engine, "connect", lambda dbapi, _: dbapi.set_trace_callback(statements.append))
    try:
        applied = MigrationRunner(engine, folder).upgrade()
        undone = MigrationRunner(engine, folder).downgrade("base")
    finally:
        engine.dispose()
    assert (len(applied), len(undone)) == (3, 3)
    assert statements.count("PRAGMA data_version") == 2 * (1 + 3)  # the history read, each step
    assert not [s for s in statements if s.startswith("SELECT") and "WHERE" in s]


def test_sqlite_baselines_racing_between_transactions_keep_the_history(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = creating(make_migrations)
    other = MigrationRunner(sqlite_backend.url, folder)
    results: list[str] = []
    engine = sqlite_backend.engine()
    try:
        with between_transactions(
            engine, lambda: results.append(outcome_of(lambda: other.baseline("002")))
        ):
            results.append(outcome_of(lambda: MigrationRunner(engine, folder).baseline("002")))
    finally:
        engine.dispose()
    assert sorted(results) == ["UsageError", "ok"]  # never an IntegrityError
    assert history(sqlite_backend) == [("001", True), ("002", True)]


def test_sqlite_repairs_racing_between_transactions_report_each_change_once(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = creating(make_migrations)
    MigrationRunner(sqlite_backend.url, folder).upgrade()
    sql(sqlite_backend, "UPDATE migrations SET success = FALSE WHERE version = '003'")
    second = MigrationRunner(sqlite_backend.url, folder)
    changes: list[str] = []
    engine = sqlite_backend.engine()
    try:
        with between_transactions(engine, lambda: changes.extend(second.repair())):
            changes.extend(MigrationRunner(engine, folder).repair())
    finally:
        engine.dispose()
    assert changes == ["removed the failed row of 003"]
    assert history(sqlite_backend) == [("001", True), ("002", True)]


WAITING_STEP = """\
    import time
    from pathlib import Path
    from sqlalchemy import text

    transactional = False

    def up(conn):
        Path({running!r}).touch()
        deadline = time.monotonic() + 30
        while not Path({go!r}).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        conn.execute(text("CREATE TABLE slow (id INTEGER PRIMARY KEY)"))
    """


def _start_waiting_step(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> tuple[Any, Any, Path, MigrationRunner]:
    running, go = tmp_path / "running", tmp_path / "go"
    folder = make_migrations({"001_slow.py": WAITING_STEP.format(running=str(running), go=str(go))})
    results: Any = SPAWN.Queue()
    args = (backend.url_string, str(folder), {}, results)
    process = SPAWN.Process(target=upgrade_once, args=args)
    process.start()
    wait_for_file(running, process)
    return process, results, go, MigrationRunner(backend.url, folder, lock_timeout=0.5)


def test_sqlite_a_running_non_transactional_step_is_in_progress_not_dirty(
    sqlite_backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    process, results, go, other = _start_waiting_step(sqlite_backend, make_migrations, tmp_path)
    try:
        with pytest.raises(LockTimeout, match="still in progress"):
            other.upgrade()
        with pytest.raises(LockTimeout, match="still in progress"):
            other.repair()  # must not remove the running step's row
        assert [r.version for r in other.status().failed] == ["001"]
    finally:
        go.touch()
        outcome: Outcome = results.get(timeout=BOUND)
        process.join(BOUND)
    assert outcome.ok and outcome.value == ["001"], outcome
    assert other.upgrade() == [] and other.status().failed == []


@pytest.mark.parametrize("command", ["downgrade", "rollback_last"])
def test_sqlite_an_undo_waits_for_a_running_non_transactional_step_not_dirty(
    sqlite_backend: Backend, make_migrations: MakeMigrations, tmp_path: Path, command: str
) -> None:
    process, results, go, other = _start_waiting_step(sqlite_backend, make_migrations, tmp_path)
    try:
        with pytest.raises(LockTimeout, match="still in progress"):
            other.downgrade("base") if command == "downgrade" else other.rollback_last()
    finally:
        go.touch()
        outcome: Outcome = results.get(timeout=BOUND)
        process.join(BOUND)
    assert outcome.ok and outcome.value == ["001"], outcome


def test_sqlite_a_step_whose_row_vanished_while_it_ran_fails_loudly(
    sqlite_backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    process, results, go, _ = _start_waiting_step(sqlite_backend, make_migrations, tmp_path)
    try:
        engine = sqlite_backend.engine()
        with engine.begin() as conn:  # what an older runner's repair() did
            conn.execute(text("DELETE FROM migrations"))
        engine.dispose()
    finally:
        go.touch()
        outcome: Outcome = results.get(timeout=BOUND)
        process.join(BOUND)
    assert outcome.error == "MigrationFailed", outcome
    assert "its history row was removed while it ran" in outcome.message


KILLED_IN_DOWN = """\
    '''Step 002: a table whose down() is stopped (like kill -9) before it undoes anything.'''
    import os

    from sqlalchemy import text

    transactional = False

    def up(conn):
        conn.execute(text("CREATE TABLE b (x INTEGER)"))

    def down(conn):
        if os.environ.get("SQLMIG_TEST_DIE_IN_DOWN"):
            os._exit(9)
        conn.execute(text("DROP TABLE b"))
    """


def test_a_runner_killed_in_a_down_is_dirty_with_a_way_out_that_keeps_history_true(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    create = "def up(conn):\n    conn.exec_driver_sql('CREATE TABLE a (x INTEGER)')\n"
    folder = make_migrations({"001_a.py": create, "002_b.py": KILLED_IN_DOWN})
    runner = MigrationRunner(backend.url, folder, lock_timeout=5)
    runner.upgrade()
    results = SPAWN.Queue()
    victim = SPAWN.Process(
        target=downgrade_dying, args=(backend.url_string, str(folder), results), daemon=True
    )
    victim.start()
    victim.join(BOUND)
    assert victim.exitcode == 9

    with pytest.raises(DirtyDatabase) as caught:
        runner.upgrade()
    assert "b" in tables(backend)  # down() undid nothing: the step is all there
    assert "stamp('002') (sqlmig stamp 002) if all of it is" in str(caught.value)
    runner.stamp("002")  # what the message says for a step whose work is all there
    assert runner.upgrade() == []
    assert history(backend) == [("001", True), ("002", True)]
    assert [m.version for m in runner.downgrade("001")] == ["002"]
    assert "b" not in tables(backend)


FAILS_WHEN_RELEASED = """\
    '''Step 002: creates b (committed at once), waits for {release}, then fails.'''
    import os
    import time
    from pathlib import Path

    from sqlalchemy import text

    transactional = False

    def up(conn):
        conn.execute(text("CREATE TABLE b (x INTEGER)"))
        Path({mark!r}).touch()
        deadline = time.monotonic() + {bound}
        while not os.path.exists({release!r}) and time.monotonic() < deadline:
            time.sleep(0.02)
        raise RuntimeError("002 fails after its DDL")
    """


@pytest.mark.parametrize("command", ["repair", "stamp", "unstamp"])
def test_a_repair_waiting_on_a_running_step_does_not_clear_the_failure_it_leaves(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path, replicas: Crew, command: str
) -> None:
    mark, release = tmp_path / "in-step-002", tmp_path / "release-002"
    create = "def up(conn):\n    conn.exec_driver_sql('CREATE TABLE a (x INTEGER)')\n"
    step = FAILS_WHEN_RELEASED.format(mark=str(mark), release=str(release), bound=BOUND)
    folder = make_migrations({"001_a.py": create, "002_b.py": step})
    replicas.submit([Job("upgrade", backend.url_string, str(folder))])
    repaired: list[object] = []
    try:
        wait_for_file(mark)
        runner = MigrationRunner(backend.url, folder)
        args = () if command == "repair" else ("002",)
        worker = threading.Thread(
            target=lambda: repaired.append(_outcome(lambda: getattr(runner, command)(*args)))
        )
        with lock_waits() as waiting:
            worker.start()
            # the repair is waiting for the running step (SQLite's wait says nothing)
            if backend.profile.lock is not None:
                assert waiting.wait(BOUND)
            else:
                time.sleep(0.5)
    finally:
        release.touch()
        outcomes = replicas.collect()
    worker.join(BOUND)
    assert outcomes[0].error == "MigrationFailed"
    assert "b" in tables(backend)  # 002 failed part-way: its table is there
    # the failure is left for a person to check, not cleared by a repair asked before it
    assert history(backend) == [("001", True), ("002", False)], repaired
    assert isinstance(repaired[0], DirtyDatabase)
    assert "waited for another runner" in str(repaired[0])
    sql(backend, "DROP TABLE b")  # the check by hand; then the command does its work
    assert getattr(runner, command)(*args)


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except SqlmigError as exc:
        return exc

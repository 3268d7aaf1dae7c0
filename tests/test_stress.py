"""Sixteen replicas mixing every writing command at once: history and schema stay in step.

Each round hands sixteen spawned processes (see :mod:`workers`) a mix of
``upgrade()``, ``downgrade()``, ``rollback_last()`` and ``repair()``, released
together by a barrier. Whatever order they run in, every call must return
normally and, after the round, the history must say exactly what the schema
holds: a table ``tN`` for every recorded step N that creates one, and 003's
table with 004's column exactly when 004 is recorded. Every wait is bounded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import inspect, text
from workers import BOUND, Crew, Job, Outcome

from backends import Backend
from conftest import MakeMigrations

pytestmark = pytest.mark.slow

REPLICAS = 16
ROUNDS = 4

CREATING = """\
    '''Step {n}: creates t{n}.'''
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE t{n} (id INTEGER PRIMARY KEY)"))

    def down(conn):
        conn.execute(text("DROP TABLE t{n}"))
    """

ALTERING = """\
    '''Step 4: adds a column to 003's table.'''
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("ALTER TABLE t3 ADD COLUMN extra INTEGER"))

    def down(conn):
        conn.execute(text("ALTER TABLE t3 DROP COLUMN extra"))
    """

#: One round's jobs, by method and arguments: as many undoing as upgrading.
MIX: list[tuple[str, tuple[str, ...]]] = [
    ("upgrade", ()),
    ("downgrade", ("001",)),
    ("upgrade", ()),
    ("rollback_last", ()),
    ("upgrade", ()),
    ("downgrade", ("base",)),
    ("repair", ()),
    ("upgrade", ()),
] * (REPLICAS // 8)


@pytest.fixture(scope="module")
def crew() -> Iterator[Crew]:
    """Sixteen processes, spawned once for the module."""
    members = Crew(REPLICAS)
    try:
        yield members
    finally:
        members.close()


def snapshot(backend: Backend) -> tuple[list[tuple[int, bool]], set[int], bool]:
    """The history rows, the step tables present, and whether t3 has 004's column."""
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version, success FROM migrations"))
            history = sorted((int(v), bool(s)) for v, s in rows)
        inspector = inspect(engine)
        names = set(inspector.get_table_names())
        present = {int(t[1:]) for t in names if t.startswith("t") and t[1:].isdigit()}
        extra = "t3" in names and "extra" in {c["name"] for c in inspector.get_columns("t3")}
        return history, present, extra
    finally:
        engine.dispose()


def assert_in_step(backend: Backend, outcomes: list[Outcome]) -> None:
    failed = [str(o) for o in outcomes if not o.ok]
    assert not failed, f"calls that did not return normally: {failed}"
    history, present, extra = snapshot(backend)
    assert all(success for _, success in history), f"a failed row was left: {history}"
    recorded = {version for version, _ in history}
    assert present == recorded - {4}, f"history {sorted(recorded)} but tables {sorted(present)}"
    assert extra == (4 in recorded), f"history {sorted(recorded)} but t3 has extra: {extra}"


def test_sixteen_replicas_mixing_every_command_keep_history_and_schema_in_step(
    backend: Backend, make_migrations: MakeMigrations, crew: Crew
) -> None:
    files = {f"{n:03d}_t{n}.py": CREATING.format(n=n) for n in (1, 2, 3, 5, 6)}
    folder = make_migrations({**files, "004_extra.py": ALTERING})
    jobs = [
        Job(op, backend.url_string, str(folder), args, {"lock_timeout": BOUND}) for op, args in MIX
    ]
    for _ in range(ROUNDS):
        assert_in_step(backend, crew.run(jobs, timeout=2 * BOUND))

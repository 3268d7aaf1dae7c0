"""Fresh databases for measured runs, the server's commit counter, and a sanity count.

SQLite: a new file in a temporary folder. PostgreSQL: a new database created on
the admin URL (``CREATE DATABASE``) and dropped afterwards; the shared
databases themselves are never written to.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL, Engine, create_engine, make_url, text

__all__ = [
    "Target",
    "commits",
    "count_bench_tables",
    "fresh_database",
    "quiesce",
    "server_version",
]


@dataclass
class Target:
    """One database for one measured sequence (upgrade, check, downgrade)."""

    backend: str
    url: URL
    admin: Engine | None = None  # PostgreSQL: an AUTOCOMMIT engine on the admin database

    @property
    def url_string(self) -> str:
        return self.url.render_as_string(hide_password=False)

    @property
    def name(self) -> str:
        return str(self.url.database)


@contextmanager
def fresh_database(backend: str, folder: Path, admin: Engine | None) -> Iterator[Target]:
    """A new, empty database, removed afterwards."""
    if backend == "sqlite":
        path = folder / f"bench_{uuid.uuid4().hex[:8]}.db"
        try:
            yield Target("sqlite", URL.create("sqlite", database=str(path)))
        finally:
            path.unlink(missing_ok=True)
        return
    assert admin is not None
    name = f"sqlmig_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield Target(backend, admin.url.set(database=name), admin)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def admin_engine(url: str) -> Engine:
    return create_engine(make_url(url), isolation_level="AUTOCOMMIT")


def server_version(admin: Engine) -> str:
    with admin.connect() as conn:
        return str(conn.execute(text("SHOW server_version")).scalar())


def commits(target: Target, timeout: float = 5.0) -> tuple[int, int]:
    """(xact_commit, xact_rollback) of ``target``'s database, once its sessions are gone.

    A backend flushes its statistics when it exits, a moment after its client
    disconnected (and after it left pg_stat_activity), so: wait for no session
    on the database, then read until two reads 50 ms apart agree. Each read
    starts with pg_stat_clear_snapshot(), so it is never a cached snapshot.
    """
    assert target.admin is not None
    query = text(
        "SELECT coalesce(xact_commit, 0), coalesce(xact_rollback, 0) "
        "FROM pg_stat_database WHERE datname = :d"
    )
    sessions = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
    )
    deadline = time.monotonic() + timeout
    with target.admin.connect() as conn:
        while conn.execute(sessions, {"d": target.name}).scalar() and time.monotonic() < deadline:
            time.sleep(0.01)
        last: tuple[int, int] | None = None
        while True:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            row = conn.execute(query, {"d": target.name}).first()
            now = (int(row[0]), int(row[1])) if row else (0, 0)
            if now == last or time.monotonic() > deadline:
                return now
            last = now
            time.sleep(0.05)


def quiesce(target: Target) -> None:
    """Start each measured process from the same state: nothing dirty left to write.

    The process before (another tool's run, a dropped or new database) leaves
    dirty pages that the kernel or PostgreSQL's checkpointer would otherwise
    write during whichever run comes next: ``os.sync()`` for the SQLite file,
    ``CHECKPOINT`` on PostgreSQL.
    """
    os.sync()
    if target.admin is not None:
        with target.admin.connect() as conn:
            conn.execute(text("CHECKPOINT"))


def count_bench_tables(target: Target) -> int:
    """How many ``bench_*`` tables the database holds (checks every tool did the work)."""
    engine = create_engine(target.url)
    if target.backend == "sqlite":
        query = (
            "SELECT count(*) FROM sqlite_master "
            "WHERE type = 'table' AND name LIKE 'bench^_%' ESCAPE '^'"
        )
    else:
        query = (
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_name LIKE 'bench^_%' ESCAPE '^'"
        )
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(query)).scalar() or 0)
    finally:
        engine.dispose()

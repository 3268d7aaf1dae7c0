"""Whose test databases are whose under pytest-xdist: a run's names, its lock, and leftovers.

Every database and file the plugin makes for workers is named
``sqlmig_test_<host>_<pid>_<run>_<role>``: a hash of the host's name, the pid of
the pytest process that runs the workers, the run's id, and ``template``,
``lock`` or the worker's id. SQLite's files and the run's lock live in the
system's temporary folder under the same names. :func:`sweep` drops a run's
databases and files: the controlling process, at the end, its own and those of
runs whose process is gone (killed, say).

Each server's statements are data (:data:`SERVERS`). Built on SQLAlchemy and
sqlmig's public API alone, like the plugin.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import URL
    from sqlalchemy.engine import Connection

#: What every database and file this module makes is named with, first.
PREFIX = "sqlmig_test_"
NAME = re.compile(
    rf"^{PREFIX}(?P<host>[0-9a-f]{{6}})_(?P<pid>\d+)_(?P<run>[0-9a-f]{{6}})_(?P<role>\w+?)(\.db)?$"
)


def this_host() -> str:
    """A short hash of this machine's name: a pid means something only on its host."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


@dataclass(frozen=True)
class Run:
    """One pytest run with workers: whose names are whose."""

    host: str
    pid: int
    run: str

    @classmethod
    def new(cls) -> Run:
        """This process's run (the controlling pytest process calls it once)."""
        return cls(this_host(), os.getpid(), uuid.uuid4().hex[:6])

    @classmethod
    def of(cls, name: str) -> Run | None:
        """The run a database or file name belongs to, or None when it is no such name."""
        found = NAME.match(name)
        return cls(found["host"], int(found["pid"]), found["run"]) if found else None

    @classmethod
    def parse(cls, token: str) -> Run:
        host, pid, run = token.split("_")
        return cls(host, int(pid), run)

    @property
    def token(self) -> str:
        return f"{self.host}_{self.pid}_{self.run}"

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.token}_"

    def name(self, role: str) -> str:
        """The database (or file stem) of ``role``: a worker's id, ``template``, ``lock``."""
        return self.prefix + role

    def gone(self) -> bool:
        """Whether the process that ran this run has ended (on this host; never elsewhere)."""
        if self.host != this_host() or sys.platform == "win32":
            return False  # another machine's, or no cheap way to ask: left alone
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # someone else's process: alive
            return False
        return False


@dataclass(frozen=True)
class Server:
    """What making, copying and dropping databases takes on one kind of server."""

    #: The privilege the test URL's user needs, as the server names it, and how to grant it.
    privilege: str
    grant: str
    databases: str
    create: str
    #: ``CREATE DATABASE`` from a template, where the server copies databases; ``{how}``
    #: takes :attr:`clone_how` from the server version :attr:`clone_how_since` on.
    clone: str | None
    drop: str
    #: The SQLSTATE or server error numbers that mean "may not create databases".
    denied: frozenset[str | int]
    #: PostgreSQL 15 copies through the WAL by default: slower for many copies at once.
    clone_how: str = ""
    clone_how_since: tuple[int, ...] = ()


SERVERS: dict[str, Server] = {
    "postgresql": Server(
        privilege="CREATEDB",
        grant="ALTER ROLE {user} CREATEDB",
        databases="SELECT datname FROM pg_database",
        create="CREATE DATABASE {name}",
        clone="CREATE DATABASE {name} TEMPLATE {template}{how}",
        drop="DROP DATABASE IF EXISTS {name} WITH (FORCE)",
        denied=frozenset({"42501"}),
        clone_how=" STRATEGY FILE_COPY",
        clone_how_since=(15,),
    ),
    "mysql": Server(
        privilege="CREATE",
        grant="GRANT ALL PRIVILEGES ON `sqlmig\\_test\\_%`.* TO {user}",
        databases="SELECT schema_name FROM information_schema.schemata",
        create="CREATE DATABASE {name}",
        clone=None,
        drop="DROP DATABASE IF EXISTS {name}",
        denied=frozenset({1044, 1227}),
    ),
}
SERVERS["mariadb"] = SERVERS["mysql"]

#: Run on each connection that migrates a run's template: only its copies must last (a
#: crash ends the run anyway), so its steps' commits need not wait for the disk.
TEMPLATE_SETUP: dict[str, str] = {
    "postgresql": "SET synchronous_commit = off",
    "sqlite": "PRAGMA synchronous = OFF",
}


def server_of(url: str | None) -> Server | None:
    """The server a test URL names, or None for SQLite (and no URL: a SQLite file)."""
    if url is None:
        return None
    from sqlalchemy import make_url

    return SERVERS.get(make_url(url).get_backend_name())


@contextmanager
def admin(url: URL) -> Iterator[Connection]:
    """A connection on the test URL's own database, in autocommit, closed after."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def run_statement(conn: Connection, statement: str) -> None:
    from sqlalchemy import text

    conn.execute(text(statement))


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on a file, held for the block, released when the process dies."""
    with open(path, "a+b") as handle:
        if sys.platform == "win32":
            import msvcrt

            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after ten seconds: wait on
                    continue
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def folder() -> Path:
    """Where SQLite's files and each run's lock live: the system's temporary folder."""
    return Path(tempfile.gettempdir())


def sweep(url: str | None, keep: Callable[[Run], bool]) -> list[str]:
    """Drop the databases and files of every run ``keep`` rejects; returns their names."""
    from sqlalchemy import make_url, text

    dropped = []
    for path in folder().glob(f"{PREFIX}*"):
        run = Run.of(path.name)
        if run is not None and not keep(run):
            path.unlink(missing_ok=True)
            dropped.append(path.name)
    server = server_of(url)
    if server is not None and url is not None:
        with admin(make_url(url)) as conn:
            names = list(conn.execute(text(server.databases)).scalars())
            for name in names:
                run = Run.of(name)
                if run is not None and not keep(run):
                    run_statement(conn, server.drop.format(name=name))
                    dropped.append(name)
    return dropped


def alive(run: Run) -> bool:
    """Whether a run may still be using its databases (:func:`sweep` keeps those)."""
    return not run.gone()


def finish(url: str | None, run: Run, used_server: bool) -> list[str]:
    """At the end of a run: drop what is left of it (the template, a crashed worker's
    database), and what runs whose process is gone (killed, say) left behind.
    """
    return sweep(url if used_server else None, lambda other: other != run and alive(other))

"""Turning the ``db`` argument into connections for the length of one call.

What a URL means and what may be shown of it is ``_urls``'s concern.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import URL, create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from ._dialects import profile_named
from ._errors import ConfigError, DatabaseUnavailable, UsageError
from ._urls import in_memory, mask, scrub, sqlite_file, to_url

__all__ = ["Database", "DatabaseArgument", "caller_began"]

DatabaseArgument = str | URL | Engine | Connection


def _held_only_by_an_attribute() -> int:
    """What ``sys.getrefcount`` says of an object that one attribute and one local hold."""

    class Holder:
        __slots__ = ("transaction",)

        def __init__(self) -> None:
            self.transaction: object = None

    holder = Holder()
    holder.transaction = object()
    probe = holder.transaction
    return sys.getrefcount(probe)


ONLY_THE_CONNECTION = _held_only_by_an_attribute()


def caller_began(conn: Connection) -> bool:
    """Whether ``conn``'s transaction was begun by its caller, not by autobegin.

    SQLAlchemy has no public marker for it: ``conn.begin()`` and the first
    statement (autobegin) create the same ``RootTransaction``. What differs is
    who holds it. ``with conn.begin():`` (and ``engine.begin()``) registers it
    as the connection's context, a savepoint (``begin_nested()``) is explicit
    by nature, and ``trans = conn.begin()`` keeps a reference that a
    transaction begun by autobegin, held by the connection alone, has not.
    (A ``conn.begin()`` whose result is dropped cannot be told from autobegin.)
    """
    if conn.in_nested_transaction() or getattr(conn, "_trans_context_manager", None):
        return True
    root = conn.get_transaction()
    if root is None:
        return False
    return sys.getrefcount(root) > ONLY_THE_CONNECTION


class Database:
    """Where a runner's connections come from for the length of one call.

    A runner given a URL builds its own Engine and disposes of it after each
    call; a given Engine or Connection is used as it is and left open.

    Raises:
        ConfigError: a string or URL that is not a database URL.
        UsageError: an in-memory SQLite URL (each connection would see its own
            empty database, so every call would start from nothing).
    """

    def __init__(self, db: DatabaseArgument) -> None:
        self.given_connection: Connection | None = None
        self.given_engine: Engine | None = None
        self.given_text = db if isinstance(db, str) else None
        self.url: URL
        if isinstance(db, Connection):
            self.given_connection = db
            self.url = db.engine.url
        elif isinstance(db, Engine):
            self.given_engine = db
            self.url = db.url
        else:
            self.url = to_url(db)
            if in_memory(self.url):
                raise UsageError(
                    f"{mask(self.url)} is an in-memory SQLite database, and each connection "
                    "gets its own, so every call would start from nothing: use a file "
                    "(sqlite:///app.db), or pass an Engine built with poolclass=StaticPool"
                )

    @property
    def display_url(self) -> str:
        return mask(self.url)

    def scrub(self, text: str) -> str:
        """``text`` safe to show: see :func:`scrub`."""
        return scrub(text, self.given_text if self.given_text is not None else self.url)

    @property
    def builds_engine(self) -> bool:
        """True when each call gets an Engine built here (from a URL), not the caller's."""
        return self.given_connection is None and self.given_engine is None

    def _build_engine(self, connect_args: dict[str, Any]) -> Engine:
        try:
            return create_engine(self.url, connect_args=connect_args)
        except (NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
            extra = profile_named(self.url.get_backend_name()).driver_extra
            hint = (
                f"pip install 'sqlmig[{extra}]'"
                if extra
                else "check the URL's scheme (e.g. postgresql+psycopg, mysql+pymysql, sqlite) "
                "or install that database's SQLAlchemy dialect"
            )
            raise ConfigError(
                f"cannot load the driver for {self.display_url} ({self.scrub(str(exc))}): {hint}",
                key="url",
            ) from exc
        except (ArgumentError, ValueError, TypeError) as exc:  # a query option of bad type
            raise ConfigError(
                f"bad database URL {self.display_url}: {self.scrub(str(exc))}", key="url"
            ) from exc

    def missing_file(self) -> bool:
        """Whether the URL names a SQLite file that does not exist (yet)."""
        if self.given_connection is not None:
            return False
        path = sqlite_file(self.url)
        return path is not None and not path.exists()

    @contextmanager
    def engine(
        self, connect_args: dict[str, Any] | None = None, *, create_file: bool = True
    ) -> Iterator[Engine]:
        """The engine for one call, disposed afterwards if sqlmig built it.

        ``connect_args`` go to the driver of an engine built here; a given
        Engine or Connection is used as it is. A call that records no step
        (``create_file=False``: a read, a downgrade, a repair) on a SQLite
        file that does not exist gets an empty in-memory database in its
        place, so it finds nothing applied and creates no file.
        """
        if not create_file and self.missing_file():
            stand_in = create_engine("sqlite://", poolclass=StaticPool)
            try:
                yield stand_in
            finally:
                stand_in.dispose()
        elif self.given_connection is not None:
            yield self.given_connection.engine
        elif self.given_engine is not None:
            yield self.given_engine
        else:
            engine = self._build_engine(connect_args or {})
            try:
                yield engine
            finally:
                engine.dispose()

    def connect(self, engine: Engine) -> Connection:
        """A new connection; failures to connect become :class:`DatabaseUnavailable`.

        A driver that chokes on a setting of the URL before it reaches the server
        (PyMySQL's ``?charset=bogus``, ``?connect_timeout=abc``, an ``?ssl_ca=``
        file that is not there) raises plain Python errors, which become a
        :class:`ConfigError` naming the URL.
        """
        try:
            return engine.connect()
        except DBAPIError as exc:
            raise self.unavailable(exc) from exc
        except (ValueError, TypeError, AttributeError, LookupError) as exc:
            raise ConfigError(
                f"cannot connect to {self.display_url}: the driver rejected a setting of the "
                f"URL ({type(exc).__name__}: {self.scrub(str(exc))}); check its query "
                "options (?charset=, ?connect_timeout= ...)",
                key="url",
            ) from exc
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise ConfigError(  # PyMySQL reads ?ssl_ca= (and the like) before connecting
                f"cannot connect to {self.display_url}: the driver cannot read a file a "
                f"setting names ({type(exc).__name__}: {self.scrub(str(exc))}); check the "
                "paths in its query options (?ssl_ca=, ?ssl_cert= ...) or connect_args",
                key="url",
            ) from exc

    def unavailable(self, exc: DBAPIError) -> DatabaseUnavailable:
        """The error for a failed connection: the URL masked, the driver's reason scrubbed."""
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        return DatabaseUnavailable(
            f"cannot connect to {self.display_url}: {self.scrub(reason)}; check that the "
            "server is up and the URL, user and password are right",
            url=self.display_url,
        )

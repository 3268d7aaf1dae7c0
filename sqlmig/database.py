"""Turning the ``db`` argument into connections, and connection failures into errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import URL, create_engine, make_url
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from .errors import ConfigError, DatabaseUnavailable

__all__ = ["Database", "DatabaseArgument", "mask"]

DatabaseArgument = str | URL | Engine | Connection

DRIVER_EXTRAS = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}


def mask(url: URL | str) -> str:
    """The URL with its password hidden."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)


def to_url(value: str | URL) -> URL:
    """A URL from a URL string or, without ``://``, a SQLite file path.

    Raises:
        ConfigError: the text is not a database URL.
    """
    if isinstance(value, URL):
        return value
    if "://" not in value:
        return URL.create("sqlite", database=value)
    try:
        return make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(
            f"{mask(value)} is not a database URL: write it as "
            "dialect+driver://user:password@host/database",
            key="url",
        ) from exc


class Database:
    """Where a runner's connections come from for the length of one call.

    A runner given a URL builds its own Engine and disposes of it after each
    call; a given Engine or Connection is used as it is and left open.
    """

    def __init__(self, db: DatabaseArgument) -> None:
        self.given_connection: Connection | None = None
        self.given_engine: Engine | None = None
        self.url: URL
        if isinstance(db, Connection):
            self.given_connection = db
            self.url = db.engine.url
        elif isinstance(db, Engine):
            self.given_engine = db
            self.url = db.url
        else:
            self.url = to_url(db)

    @property
    def display_url(self) -> str:
        return mask(self.url)

    def _build_engine(self) -> Engine:
        try:
            return create_engine(self.url)
        except (NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
            extra = DRIVER_EXTRAS.get(self.url.get_backend_name(), "")
            hint = (
                f"pip install 'sqlmig[{extra}]'"
                if extra
                else "check the URL's scheme (e.g. postgresql+psycopg, mysql+pymysql, sqlite) "
                "or install that database's SQLAlchemy dialect"
            )
            raise ConfigError(
                f"cannot load the driver for {self.display_url} ({exc}): {hint}", key="url"
            ) from exc
        except ArgumentError as exc:
            raise ConfigError(f"bad database URL {self.display_url}: {exc}", key="url") from exc

    @contextmanager
    def engine(self) -> Iterator[Engine]:
        """The engine for one call, disposed afterwards if sqlmig built it."""
        if self.given_connection is not None:
            yield self.given_connection.engine
        elif self.given_engine is not None:
            yield self.given_engine
        else:
            engine = self._build_engine()
            try:
                yield engine
            finally:
                engine.dispose()

    def connect(self, engine: Engine) -> Connection:
        """A new connection; failures to connect become :class:`DatabaseUnavailable`."""
        try:
            return engine.connect()
        except DBAPIError as exc:
            raise self.unavailable(exc) from exc

    def unavailable(self, exc: DBAPIError) -> DatabaseUnavailable:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if self.url.password:
            reason = reason.replace(str(self.url.password), "***")
        return DatabaseUnavailable(
            f"cannot connect to {self.display_url}: {reason}; check that the server is up "
            "and the URL, user and password are right",
            url=self.display_url,
        )

"""Turning the ``db`` argument into connections, and what may be shown of a URL.

Every URL sqlmig shows (``runner.url``, error messages, the command line) goes
through :func:`mask`, which works on the parsed URL: the password, query
values that hold secrets (``?password=``, ``sslpassword``, ``token`` ...) and
anything an unencoded ``@`` leaves ambiguous are hidden, and nothing else is
touched. Text that sqlmig did not write (a driver's error message) goes
through :func:`scrub`, which never replaces a password as a substring.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, create_engine, make_url
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from ._errors import ConfigError, DatabaseUnavailable, UsageError

__all__ = [
    "Database",
    "DatabaseArgument",
    "caller_began",
    "holds_secret",
    "mask",
    "mask_in",
    "scrub",
    "to_url",
]

DatabaseArgument = str | URL | Engine | Connection

#: Query keys whose values are hidden: any key containing one of these.
SECRET_KEYS = ("pass", "pwd", "secret", "token", "credential", "apikey", "api_key")
HIDDEN = "***"
#: A password at least this long is hidden wherever it appears in a driver's
#: message; a shorter one only where it stands alone (``p`` in ``port`` is no leak).
SUBSTRING_LENGTH = 6
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
URL_HINT = (
    "write it as dialect+driver://user:password@host/database "
    "(a SQLite file is sqlite:///path/to/file.db)"
)


def _secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEYS)


def _ambiguous(url: URL) -> bool:
    """An unencoded ``@`` in the user or password put part of it in the host or path."""
    return "@" in (url.host or "") or (url.host is not None and "@" in (url.database or ""))


def mask(url: URL | str) -> str:
    """The URL as it may be shown: every secret it holds replaced by ``***``.

    Hides the password, the values of secret query keys (``?password=``,
    ``sslpassword``, ``token`` ...), and, when an unencoded ``@`` makes it
    unclear where the password ends, everything before the last ``@``.
    """
    text = url if isinstance(url, str) else None
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            return "<unparseable URL>"
    if text is not None and _ambiguous(url):
        scheme, _, rest = text.partition("://")
        location = mask(f"{scheme}://{rest.rpartition('@')[2]}").partition("://")[2]
        return f"{scheme}://{HIDDEN}@{location}"
    query = {key: (HIDDEN if _secret_key(key) else value) for key, value in url.query.items()}
    shown = url.set(query=query) if query != dict(url.query) else url
    return shown.render_as_string(hide_password=True).replace("=%2A%2A%2A", f"={HIDDEN}")


def _secrets(url: URL) -> list[str]:
    values = [str(url.password)] if url.password else []
    for key, value in url.query.items():
        if _secret_key(key):
            values.extend([value] if isinstance(value, str) else value)
    return [v for v in values if v]


def _reveals(text: str, secret: str) -> bool:
    if len(secret) >= SUBSTRING_LENGTH:
        return secret in text
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", text) is not None


def _parsed(url: URL | str) -> URL | None:
    try:
        return make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError):
        return None


def holds_secret(url: URL | str) -> bool:
    """Whether showing ``url`` as it is would show a secret."""
    parsed = _parsed(url)
    return parsed is not None and bool(_secrets(parsed) or _ambiguous(parsed))


def mask_in(text: str, url: URL | str) -> str:
    """``text`` with every unmasked spelling of ``url`` replaced by :func:`mask`'s."""
    parsed = _parsed(url)
    if parsed is None or not holds_secret(parsed):
        return text
    shown = mask(url)
    forms = {parsed.render_as_string(hide_password=False)}
    if isinstance(url, str):
        forms.add(url)
    for form in sorted(forms - {shown}, key=len, reverse=True):
        text = text.replace(form, shown)
    return text


def scrub(text: str, url: URL | str) -> str:
    """A message not written by sqlmig (a driver's), made safe to show.

    The URL's own unmasked forms are replaced by :func:`mask`'s, and
    ``password=...`` pairs (a DSN echoed back) lose their value. If a secret
    is still in the text after that, the whole text is withheld: replacing a
    short password as a substring would garble every word that contains it
    and give the password away.
    """
    parsed = _parsed(url)
    if parsed is None:
        return text
    text = mask_in(text, url)
    secrets = _secrets(parsed)
    for secret in secrets:
        pair = rf"(?i)\b(\w*(?:{'|'.join(SECRET_KEYS)})\w*\s*=\s*)(['\"]?){re.escape(secret)}\2"
        text = re.sub(pair, rf"\g<1>\g<2>{HIDDEN}\g<2>", text)
    if any(_reveals(text, secret) for secret in secrets):
        return "(message withheld: it holds the database password)"
    return text


def to_url(value: str | URL) -> URL:
    """A URL from a URL string (``scheme://...``) or a ``URL``.

    Raises:
        ConfigError: the text is not a database URL (a bare word, a mistyped
            scheme, an unparsable or ambiguous URL), or names a database kind
            SQLAlchemy does not know.
    """
    if isinstance(value, str):
        if not SCHEME.match(value.strip()):
            shown = "the URL given" if "@" in value else repr(value)
            raise ConfigError(f"{shown} is not a database URL: {URL_HINT}", key="url")
        try:
            url = make_url(value.strip())
        except (ArgumentError, ValueError) as exc:
            raise ConfigError(
                f"{mask(value)} is not a database URL: {URL_HINT}", key="url"
            ) from exc
        if _ambiguous(url):
            raise ConfigError(
                f"{mask(value)}: the user name or password holds an unencoded '@', so the host "
                "is unclear; write '@' as %40 (or set the password through ${VAR} in the config)",
                key="url",
            )
    else:
        url = value
    try:
        url.get_dialect()
    except NoSuchModuleError as exc:
        raise ConfigError(
            f"unknown database kind {url.drivername!r} in {mask(url)}: check the URL's scheme "
            "(e.g. postgresql+psycopg, mysql+pymysql, sqlite) or install that database's "
            "SQLAlchemy dialect",
            key="url",
        ) from exc
    return url


def in_memory(url: URL) -> bool:
    """Whether ``url`` names an in-memory SQLite database."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    if url.query.get("uri") in ("true", "1"):
        database = database.removeprefix("file:")
    return database in ("", ":memory:") or url.query.get("mode") == "memory"


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL (None when not SQLite or in memory)."""
    if url.get_backend_name() != "sqlite" or in_memory(url):
        return None
    database = url.database or ""
    if url.query.get("uri") in ("true", "1"):
        database = database.removeprefix("file:").partition("?")[0]
    return Path(database)


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
            from ._dialects import profile_named  # which imports this module

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

    def _missing_file(self) -> bool:
        if self.given_connection is not None:
            return False
        path = sqlite_file(self.url)
        return path is not None and not path.exists()

    @contextmanager
    def engine(
        self, connect_args: dict[str, Any] | None = None, *, write: bool = True
    ) -> Iterator[Engine]:
        """The engine for one call, disposed afterwards if sqlmig built it.

        ``connect_args`` go to the driver of an engine built here; a given
        Engine or Connection is used as it is. A read-only call
        (``write=False``) on a SQLite file that does not exist gets an empty
        in-memory database in its place, so it reports everything pending and
        creates no file.
        """
        if not write and self._missing_file():
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
        (PyMySQL's ``?charset=bogus``, ``?connect_timeout=abc``) raises plain
        Python errors, which become a :class:`ConfigError` naming the URL.
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

    def unavailable(self, exc: DBAPIError) -> DatabaseUnavailable:
        """The error for a failed connection: the URL masked, the driver's reason scrubbed."""
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        return DatabaseUnavailable(
            f"cannot connect to {self.display_url}: {self.scrub(reason)}; check that the "
            "server is up and the URL, user and password are right",
            url=self.display_url,
        )

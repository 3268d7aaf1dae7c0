"""Database URLs: reading the value given, and what may be shown of one.

Every URL sqlmig shows (``runner.url``, error messages, the command line) goes
through :func:`mask`, which works on the parsed URL: the password, query
values that hold secrets (``?password=``, ``sslpassword``, ``token`` ...) and
anything an unencoded ``@`` leaves ambiguous are hidden, and nothing else is
touched. Text that sqlmig did not write (a driver's error message) goes
through :func:`scrub`, which never replaces a password as a substring.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ._dialects import profile_named
from ._errors import ConfigError

__all__ = [
    "URL_HINT",
    "URL_TEMPLATE",
    "holds_secret",
    "in_memory",
    "mask",
    "mask_in",
    "scrub",
    "sqlite_file",
    "to_url",
]

#: Query keys whose values are hidden: any key containing one of these.
SECRET_KEYS = ("pass", "pwd", "secret", "token", "credential", "apikey", "api_key")
HIDDEN = "***"
#: A password at least this long is hidden wherever it appears in a driver's
#: message; a shorter one only where it stands alone (``p`` in ``port`` is no leak).
SUBSTRING_LENGTH = 6
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: How a URL is written, in the hints of errors: its "password" is a word to read,
#: not a secret, and is never masked.
URL_TEMPLATE = "dialect+driver://user:password@host/database"
URL_HINT = f"write it as {URL_TEMPLATE} (a SQLite file is sqlite:///path/to/file.db)"


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
    """Whether ``url`` names a database each connection gets afresh in memory (SQLite's)."""
    return profile_named(url.get_backend_name()).in_memory(url)


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL (None for a server's database, or one in memory)."""
    return profile_named(url.get_backend_name()).database_file(url)

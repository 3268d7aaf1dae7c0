"""The databases of a many-tenant run: :class:`Target`, and the lists that name them.

A target is a URL, a ``sqlalchemy.URL``, an ``Engine``, or a :class:`Target`
(one of those with a tenant's schema and a name to show). This module turns
what the caller, the configuration (``targets = [...]`` or
``"module:callable"``) or a targets file (one ``URL`` or ``URL#schema`` per
line) gives into checked targets: each with a unique name, none twice, none
with a schema where the database keeps no tenant in one. Everything here is
decided before anything connects.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL
from sqlalchemy.engine import Connection, Engine

from ._dialects import profile_named
from ._errors import ConfigError, UsageError
from ._tenant_scope import refuse_without_schemas
from ._urls import mask, sqlite_file, to_url

__all__ = [
    "Target",
    "TargetArgument",
    "checked_targets",
    "from_callable",
    "from_lines",
    "split_schema",
]

REFERENCE = re.compile(r"(?P<module>[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)")


@dataclass(frozen=True)
class Target:
    """One database (or one PostgreSQL schema) of a many-tenant run.

    ``url`` is a URL string, a ``sqlalchemy.URL`` or an ``Engine``.
    ``schema`` (PostgreSQL) makes the target a schema per tenant: the history
    table lives there, the steps run with ``search_path`` set to it, and an
    upgrade creates it when it is missing. ``name`` is what results and the
    command line show; by default the schema, else the URL with its password
    masked.
    """

    url: str | URL | Engine
    schema: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        for key, value in (("schema", self.schema), ("name", self.name)):
            if value is not None and not (isinstance(value, str) and value.strip()):
                raise UsageError(
                    f"Target {key}={value!r} names nothing: give a non-empty {key}, or leave "
                    f"{key}= out"
                )
        if isinstance(self.url, Connection) or not isinstance(self.url, (str, URL, Engine)):
            raise UsageError(
                f"Target url {type(self.url).__name__} is not a database: give a URL, a "
                "sqlalchemy URL or an Engine (a Connection cannot be shared between targets)"
            )

    @property
    def display_url(self) -> str:
        """The URL, password masked."""
        return mask(self._url)

    @property
    def _url(self) -> URL:
        return self.url.url if isinstance(self.url, Engine) else to_url(self.url)

    def identity(self) -> tuple[object, ...]:
        """What makes two targets the same database (and schema), however spelled.

        The password and driver do not count; a SQLite file is its real path.
        """
        url = self._url
        path = sqlite_file(url)
        if path is not None:
            return ("sqlite", str(path.resolve()), self.schema)
        query = tuple(sorted((k, str(v)) for k, v in url.query.items() if "pass" not in k))
        return (
            url.get_backend_name(),
            url.username,
            url.host,
            url.port,
            url.database,
            query,
            self.schema,
        )


TargetArgument = str | URL | Engine | Target


def _as_target(item: object, where: str) -> Target:
    if isinstance(item, Target):
        return item
    if isinstance(item, (str, URL, Engine)):
        return Target(item)
    raise UsageError(
        f"{where} is a {type(item).__name__}, not a target: give URLs, sqlalchemy URLs, "
        "Engines or sqlmig.Target(url, schema=...)"
    )


def checked_targets(items: Iterable[object]) -> list[Target]:
    """The targets of a run, each with its name, in the order given.

    Raises:
        UsageError: no targets, something that is not a target, a target given
            twice (the same database and schema, however its URL is spelled),
            two targets with one ``name``, or a schema on a database other
            than PostgreSQL.
        ConfigError: a string that is not a database URL.
    """
    if isinstance(items, (str, URL, Engine, Target)):
        items = [items]
    targets = [_as_target(item, f"target #{i + 1}") for i, item in enumerate(items)]
    if not targets:
        raise UsageError("no targets: give at least one database (a URL, an Engine or a Target)")
    seen: dict[tuple[object, ...], int] = {}
    for i, target in enumerate(targets):
        try:
            url = target._url
        except ConfigError as exc:
            raise ConfigError(f"target #{i + 1}: {exc.message}", key="targets") from None
        if target.schema is not None:
            refuse_without_schemas(profile_named(url.get_backend_name()), target.schema)
        key = target.identity()
        if key in seen:
            raise UsageError(
                f"target #{i + 1} ({_shown(target)}) is target #{seen[key] + 1} again: "
                "give each database (and schema) once"
            )
        seen[key] = i
    return _named(targets)


def _shown(target: Target) -> str:
    return target.display_url + (f"#{target.schema}" if target.schema else "")


def _named(targets: list[Target]) -> list[Target]:
    """Each target with its name: the given one, else its schema, else its masked URL;
    names that would clash are the URL and the schema."""
    given = [t.name for t in targets if t.name is not None]
    clash = {n for n in given if given.count(n) > 1}
    if clash:
        raise UsageError(
            f"two targets are named {sorted(clash)[0]!r}: give each target a name of its own"
        )
    default = [t.name or t.schema or t.display_url for t in targets]
    named = []
    for target, name in zip(targets, default, strict=True):
        if target.name is None and (default.count(name) > 1 or name in given):
            name = _shown(target)
        named.append(Target(target.url, target.schema, name))
    return named


def split_schema(line: str) -> tuple[str, str | None]:
    """``URL#schema`` as its URL and schema (None without one).

    As in any URL, ``#`` starts the fragment: everything after the first one
    is the schema (which may hold anything, ``#`` too); a password holding
    ``#`` writes it ``%23`` (``@`` is ``%40``, ``%`` is ``%25``).
    """
    url, sep, schema = line.partition("#")
    return (url, schema) if sep else (line, None)


def from_lines(text: str, source: str) -> list[Target]:
    """The targets of a targets file: one ``URL`` or ``URL#schema`` per line.

    Blank lines and lines starting with ``#`` are skipped.

    Raises:
        ConfigError: a line that is not a database URL (its number given, the
            URL masked), or a line with ``#`` and no schema after it.
    """
    targets = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        targets.append(_target_of(line, f"{source}:{number}"))
    return targets


def _target_of(line: str, where: str) -> Target:
    url, schema = split_schema(line)
    if schema is not None and not schema.strip():
        raise ConfigError(f"{where}: nothing follows '#': write URL#schema, or leave '#' out")
    try:
        to_url(url)
    except ConfigError as exc:  # its message shows the URL masked, and why it is no URL
        raise ConfigError(f"{where}: {exc.message}", key="targets") from None
    return Target(url, schema)


def from_callable(reference: str) -> list[Target]:
    """The targets that ``"module:callable"`` returns when called with no argument.

    Strings it returns may be ``URL#schema``; it may also return URLs,
    Engines and :class:`Target` objects.

    Raises:
        ConfigError: not a reference, the module or callable is missing, the
            callable raised or returned something that is not a list of targets.
    """
    match = REFERENCE.fullmatch(reference.strip())
    if match is None:
        raise ConfigError(
            f"targets {reference!r} is not a 'module:callable' reference: write it as "
            "'myapp.tenants:database_urls', or give a list of URLs",
            key="targets",
        )
    module_name, attributes = match["module"], match["attr"]
    try:
        value: object = importlib.import_module(module_name)
        for attribute in attributes.split("."):
            value = getattr(value, attribute)
    except Exception as exc:
        raise ConfigError(
            f"targets {reference!r}: cannot import it ({type(exc).__name__}: {exc}); check "
            "the name (the command line imports modules from the current directory)",
            key="targets",
        ) from exc
    if not callable(value):
        raise ConfigError(f"targets {reference!r} is not callable: name a function", key="targets")
    try:
        returned = value()
    except Exception as exc:
        raise ConfigError(
            f"targets {reference!r} raised {type(exc).__name__}: {exc}; fix it", key="targets"
        ) from exc
    if isinstance(returned, (str, bytes)) or not isinstance(returned, Iterable):
        raise ConfigError(
            f"targets {reference!r} returned a {type(returned).__name__}, not a list of "
            "database URLs: return a list (URLs, 'URL#schema', Engines or sqlmig.Target)",
            key="targets",
        )
    targets = []
    for i, item in enumerate(returned):
        where = f"targets {reference!r} item #{i + 1}"
        if isinstance(item, str):
            targets.append(_target_of(item, where))
        elif isinstance(item, (URL, Engine, Target)):
            targets.append(item if isinstance(item, Target) else Target(item))
        else:
            raise ConfigError(
                f"{where} is a {type(item).__name__}, not a database URL: return URLs, "
                "'URL#schema', Engines or sqlmig.Target",
                key="targets",
            )
    return targets


def read_file(path: str, stdin_text: str | None = None) -> list[Target]:
    """The targets of file ``path`` (``-``: ``stdin_text``).

    Raises:
        ConfigError: the file cannot be read, or a line is not a target.
    """
    if path == "-":
        return from_lines(stdin_text or "", "<stdin>")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read targets file {path}: {exc}; fix --targets") from exc
    return from_lines(text, path)

"""Configuration: ``[tool.sqlmig]`` in ``pyproject.toml``, environments, ``SQLMIG_*`` variables.

The database URL is resolved in this order, first found wins:

1. the explicit ``url`` (``--url``, or ``url=`` / ``db=`` in Python);
2. the ``SQLMIG_URL`` environment variable;
3. ``url`` of the environment chosen by ``env`` (``--env``), else by
   ``SQLMIG_ENV``, in ``[tool.sqlmig.env.NAME]``;
4. ``url`` in ``[tool.sqlmig]``;
5. otherwise :class:`~sqlmig.ConfigError`.

``migrations``, ``table``, ``schema``, ``lock_timeout``,
``allow_out_of_order`` and ``metadata`` (the models ``check`` compares with:
``"module:attribute"`` or a list of them) come from the keyword overrides, else the chosen
environment, else ``[tool.sqlmig]``. ``${VAR}`` inside a configured URL is read
from the process environment, so secrets stay out of the file. Reading the
configuration never connects to a database.

The config file is the one given (``--config`` / ``path=``), else the one
``SQLMIG_CONFIG`` names, else the nearest ``pyproject.toml`` with a
``[tool.sqlmig]`` table in the current directory or above it (as pytest and
ruff look for their sections: a ``pyproject.toml`` without one is passed
over). With none, sqlmig runs on ``SQLMIG_URL`` (or the URL given) and the
migrations given (``--dir`` / ``migrations=``; a package name for a service
installed as a wheel).

The module is long because it is the whole public configuration: reading the
file, checking every key with a message naming it, environments, and ``${VAR}``
expansion that never shows a secret.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from ._errors import ConfigError
from ._locking import checked_lock_timeout
from ._models import checked_setting
from ._sources import from_setting
from ._urls import URL_TEMPLATE, mask, to_url

if TYPE_CHECKING:
    from ._targets import Target

__all__ = [
    "CONFIG_VAR",
    "DEFAULT_PATH",
    "ENV_VAR",
    "URL_VAR",
    "ConfigFile",
    "checked_lock_timeout",
    "find_config",
    "migrations_source",
    "project_imports",
    "read_config",
    "runner_settings",
]

DEFAULT_PATH = "pyproject.toml"
URL_VAR = "SQLMIG_URL"
ENV_VAR = "SQLMIG_ENV"
CONFIG_VAR = "SQLMIG_CONFIG"

#: Keys ``[tool.sqlmig]`` and each environment may hold, with their types.
KEYS: dict[str, tuple[type, ...]] = {
    "url": (str,),
    "migrations": (str, list),
    "table": (str,),
    "schema": (str,),
    "lock_timeout": (int, float),
    "allow_out_of_order": (bool,),
    "metadata": (str, list),
    "targets": (str, list),
}
OVERRIDES = (frozenset(KEYS) - {"targets"}) | {"db"}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ConfigFile:
    """``[tool.sqlmig]`` of one file: its own keys and its environments."""

    path: Path
    exists: bool
    settings: dict[str, Any] = field(default_factory=dict)
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: No file was given and none was found (the ``path`` is only the current directory's).
    searched: bool = False

    @property
    def folder(self) -> Path:
        """The folder relative ``migrations`` paths are resolved against."""
        return self.path.parent

    def environment(self, name: str) -> dict[str, Any]:
        """The keys of ``[tool.sqlmig.env.NAME]``.

        Raises:
            ConfigError: the file has no such environment (the message lists those it has).
        """
        if name in self.environments:
            return self.environments[name]
        known = ", ".join(sorted(self.environments)) or "none"
        where = str(self.path) if self.exists else f"{self.path} (which does not exist)"
        if self.searched:
            where = f"no config file was found ({_searched()}), so it"
        raise ConfigError(
            f"unknown environment {name!r}: {where} has no [tool.sqlmig.env.{name}] "
            f"(environments defined: {known}); add it or pick one of those",
            path=str(self.path),
            key=f"tool.sqlmig.env.{name}",
        )


def _parse(path: Path) -> dict[str, Any]:
    """The TOML document in ``path``.

    Raises:
        ConfigError: not valid TOML (line given) or not UTF-8.
        OSError: the file cannot be read.
    """
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}; fix the file", path=str(path)) from exc


def read_config(path: str | Path = DEFAULT_PATH) -> ConfigFile:
    """Read ``[tool.sqlmig]`` from ``path``; a missing file gives an empty configuration.

    Raises:
        ConfigError: the file is not valid TOML (line given), or a key is unknown
            or has the wrong type.
    """
    path = Path(path).absolute()
    try:
        data = _parse(path)
    except FileNotFoundError:
        return ConfigFile(path, exists=False)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", path=str(path)) from exc
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise _bad(path, "tool", "must be a table: [tool.sqlmig]")
    section = tool.get("sqlmig", {})
    if not isinstance(section, dict):
        raise _bad(path, "tool.sqlmig", "must be a table: [tool.sqlmig]")
    section = dict(section)
    raw_envs = section.pop("env", {})
    if not isinstance(raw_envs, dict):
        raise _bad(path, "tool.sqlmig.env", "must hold tables: [tool.sqlmig.env.NAME]")
    environments = {}
    for name, keys in raw_envs.items():
        if not isinstance(keys, dict):
            raise _bad(path, f"tool.sqlmig.env.{name}", "must be a table")
        environments[name] = _checked(path, f"tool.sqlmig.env.{name}", keys)
    return ConfigFile(path, True, _checked(path, "tool.sqlmig", section), environments)


def _checked(path: Path, table: str, keys: dict[str, Any]) -> dict[str, Any]:
    for key, value in keys.items():
        if key not in KEYS:
            allowed = ", ".join(sorted(KEYS))
            raise _bad(path, f"{table}.{key}", f"is not a sqlmig setting (known: {allowed})")
        types = KEYS[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            kind = " or ".join(t.__name__ for t in types)
            raise _bad(path, f"{table}.{key}", f"must be a {kind}, not {type(value).__name__}")
        if key == "migrations" and isinstance(value, list):
            if not value or not all(isinstance(item, str) for item in value):
                raise _bad(
                    path,
                    f"{table}.{key}",
                    'as a list holds sources, such as ["alembic:alembic.ini", "migrations"]',
                )
        if key == "lock_timeout":
            try:
                checked_lock_timeout(value)
            except ConfigError as exc:
                problem = exc.message.removeprefix("lock_timeout ")
                raise _bad(path, f"{table}.{key}", problem) from None
        if key == "targets" and isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    raise _bad(path, f"{table}.{key}[{i}]", "must be a URL string")
        if key == "metadata":
            try:
                checked_setting(value, where=f"{path}: {table}.{key}")
            except ConfigError as exc:
                raise ConfigError(exc.message, path=str(path), key=f"{table}.{key}") from None
    return dict(keys)


def _bad(path: Path, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {key} {problem}", path=str(path), key=key)


def find_config(path: str | Path | None = None) -> Path | None:
    """The config file to read: ``path``, else ``$SQLMIG_CONFIG``, else the nearest
    ``pyproject.toml`` with a ``[tool.sqlmig]`` table from the current directory
    upward; None when there is none. Reads files; connects to nothing.

    Raises:
        ConfigError: ``SQLMIG_CONFIG`` names a file that does not exist.
    """
    if path is not None:
        return Path(path).absolute()
    named = os.environ.get(CONFIG_VAR)
    if named:
        if not Path(named).is_file():
            raise ConfigError(
                f"{CONFIG_VAR}={named} names no file: fix or unset {CONFIG_VAR}",
                path=named,
                key=CONFIG_VAR,
            )
        return Path(named).absolute()
    here = Path.cwd()
    for folder in (here, *here.parents):
        candidate = folder / DEFAULT_PATH
        if candidate.is_file() and _has_section(candidate):
            return candidate
    return None


def migrations_source(value: str, folder: str | Path) -> str:
    """A ``migrations`` setting as a config file in ``folder`` means it: a folder path
    (a relative one taken from ``folder``), or an importable package's name.

    Reads nothing but the file system; imports no migration.
    """
    return from_setting(value, Path(folder))


@contextmanager
def project_imports(folder: str | Path | None) -> Iterator[None]:
    """While inside, the project's modules at ``folder`` (its config file's folder) import.

    ``metadata = "myapp.db:metadata"`` then names ``myapp`` beside the
    ``pyproject.toml``, wherever the command or the tests run from. The folder
    comes first on ``sys.path`` for the block and leaves it afterwards; None
    (no config file) changes nothing.
    """
    path = "" if folder is None else str(Path(folder).absolute())
    added = bool(path) and path not in sys.path
    if added:
        sys.path.insert(0, path)
        importlib.invalidate_caches()
    try:
        yield
    finally:
        if added and path in sys.path:
            sys.path.remove(path)


def _has_section(path: Path) -> bool:
    """Whether ``path`` has ``[tool.sqlmig]``; a file that cannot be parsed is an error,
    since it may be the one meant (as pytest does with a broken ``pyproject.toml``)."""
    try:
        data = _parse(path)
    except OSError:
        return False
    tool = data.get("tool")
    return isinstance(tool, dict) and "sqlmig" in tool


def _load(path: str | Path | None) -> ConfigFile:
    found = find_config(path)
    if found is None:  # nothing anywhere: an empty configuration "in" the current directory
        return ConfigFile(Path.cwd() / DEFAULT_PATH, exists=False, searched=True)
    return read_config(found)


def runner_settings(
    env: str | None = None, path: str | Path | None = None, **overrides: Any
) -> dict[str, Any]:
    """The keyword arguments of ``MigrationRunner(...)`` as the configuration says.

    ``overrides`` are the constructor's keywords plus ``url`` (the explicit URL);
    ``None`` values are ignored. Returns ``db`` (the URL, or the ``db`` given)
    and ``migrations``, plus ``table``, ``schema``, ``lock_timeout``,
    ``allow_out_of_order`` and ``metadata`` when configured. ``path`` is the config file (else
    :func:`find_config` finds it). Reads the file and the process environment;
    connects to nothing.

    Example::

        settings = runner_settings(env="prod")   # [tool.sqlmig.env.prod]
        MigrationRunner(**settings).upgrade()

    Raises:
        ConfigError: no URL anywhere, an unknown environment, an unset
            ``${VAR}``, a malformed file or setting.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - OVERRIDES)
    if unknown:
        raise ConfigError(
            f"unknown setting {', '.join(unknown)}: use {', '.join(sorted(OVERRIDES))}",
            key=unknown[0],
        )
    if "lock_timeout" in given:
        given["lock_timeout"] = checked_lock_timeout(given["lock_timeout"])
    config = _load(path)
    chosen = env or os.environ.get(ENV_VAR) or None
    layers = [("tool.sqlmig", config.settings)]
    if chosen is not None:
        layers.append((f"tool.sqlmig.env.{chosen}", config.environment(chosen)))
    settings = merged(config, layers, given)
    settings["db"] = _database(config, layers, given)
    return settings


def migrations_setting(
    env: str | None = None, path: str | Path | None = None, migrations: str | Path | None = None
) -> str | list[str]:
    """Where the migrations are, as :func:`runner_settings` resolves it, without needing a URL.

    Raises:
        ConfigError: an unknown environment, a malformed file or setting.
    """
    config = _load(path)
    chosen = env or os.environ.get(ENV_VAR) or None
    layers = [("tool.sqlmig", config.settings)]
    if chosen is not None:
        layers.append((f"tool.sqlmig.env.{chosen}", config.environment(chosen)))
    given = {} if migrations is None else {"migrations": migrations}
    found = merged(config, layers, given, may_be_new=True)["migrations"]
    if isinstance(found, list):  # new files go in its last folder (see sqlmig new)
        return [str(item) for item in found]
    return str(found)


def shared_settings(
    env: str | None = None, path: str | Path | None = None, **overrides: Any
) -> dict[str, Any]:
    """:func:`runner_settings` without the URL: what every target of ``--all`` shares.

    Raises:
        ConfigError: an unknown environment, a malformed file or setting.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    config = _load(path)
    chosen = env or os.environ.get(ENV_VAR) or None
    layers = [("tool.sqlmig", config.settings)]
    if chosen is not None:
        layers.append((f"tool.sqlmig.env.{chosen}", config.environment(chosen)))
    settings = merged(config, layers, given)
    settings.pop("metadata", None)
    return settings


def configured_targets(env: str | None = None, path: str | Path | None = None) -> list[Target]:
    """The targets ``[tool.sqlmig] targets`` (or the chosen environment's) names.

    A list of URLs (each may be ``URL#schema`` and hold ``${VAR}``), or
    ``"module:callable"`` returning them. Reads the file and the process
    environment, imports and calls the callable; connects to nothing.

    Raises:
        ConfigError: no ``targets`` setting, an empty list, an unset ``${VAR}``,
            an entry that is not a URL, a callable that is missing, raises or
            returns something else than targets.
    """
    from ._targets import Target, from_callable, split_schema  # for --all alone

    config = _load(path)
    chosen = env or os.environ.get(ENV_VAR) or None
    layers = [("tool.sqlmig", config.settings)]
    if chosen is not None:
        layers.append((f"tool.sqlmig.env.{chosen}", config.environment(chosen)))
    found = [(table, values["targets"]) for table, values in layers if "targets" in values]
    if not found:
        where = str(config.path) if config.exists else "no config file was found, so it"
        raise ConfigError(
            f"--all needs targets: {where} has no targets in [tool.sqlmig]; set targets = "
            "[URL, ...] or 'module:callable', or pass --targets FILE",
            key="tool.sqlmig.targets",
        )
    table, value = found[-1]
    targets = from_callable(value) if isinstance(value, str) else []
    for i, entry in enumerate(value if isinstance(value, list) else []):
        url, schema = split_schema(entry)
        key = f"{table}.targets[{i}]"
        targets.append(Target(_expand(config, key, url), schema or None))
    if not targets:
        raise ConfigError(
            f"{config.path}: {table}.targets names no database: list at least one URL",
            path=str(config.path),
            key=f"{table}.targets",
        )
    return targets


def merged(
    config: ConfigFile,
    layers: list[tuple[str, dict[str, Any]]],
    given: dict[str, Any],
    *,
    may_be_new: bool = False,
) -> dict[str, Any]:
    """Every setting but the URL: overrides, else the environment, else the file.

    ``may_be_new``: the migrations folder is about to be made (``sqlmig new``),
    so with no config file ``migrations`` in the current directory will do.
    """
    settings: dict[str, Any] = {}
    for key in ("table", "schema", "lock_timeout", "allow_out_of_order", "metadata"):
        for _table, values in layers:
            if key in values:
                settings[key] = values[key]
        if key in given:
            settings[key] = given[key]
    if "migrations" in given:
        settings["migrations"] = given["migrations"]
    else:
        configured = [values["migrations"] for _t, values in layers if "migrations" in values]
        value = configured[-1] if configured else "migrations"
        if isinstance(value, list):  # an Alembic chain, then a folder of what follows
            settings["migrations"] = [from_setting(item, config.folder) for item in value]
            return settings
        settings["migrations"] = from_setting(value, config.folder)
        if config.searched and not may_be_new and not Path(settings["migrations"]).is_dir():
            raise ConfigError(
                f"no migrations: no config file was found ({_searched()}) and there is no "
                f"{settings['migrations']} folder; pass --dir (migrations= in Python) with a "
                f"folder or package name, or pass --config / set {CONFIG_VAR}",
                key="migrations",
            )
    return settings


def _searched() -> str:
    return f"no {DEFAULT_PATH} with [tool.sqlmig] in {Path.cwd()} or above, {CONFIG_VAR} unset"


def _database(
    config: ConfigFile, layers: list[tuple[str, dict[str, Any]]], given: dict[str, Any]
) -> Any:
    if "db" in given:
        return given["db"]
    if "url" in given:
        return str(given["url"]) if isinstance(given["url"], Path) else given["url"]
    from_env = os.environ.get(URL_VAR)
    if from_env:
        return from_env
    for table, values in reversed(layers):
        if "url" in values:
            return _expand(config, f"{table}.url", values["url"])
    if config.searched:
        raise ConfigError(
            f"no database URL and no config file ({_searched()}): set {URL_VAR} or pass --url, "
            f"or pass --config / set {CONFIG_VAR} to a file with [tool.sqlmig] url",
            key="url",
        )
    where = str(config.path) if config.exists else f"{config.path} (not found)"
    raise ConfigError(
        f"no database URL: pass --url, set {URL_VAR}, or set url in [tool.sqlmig] of {where}",
        path=str(config.path),
        key="tool.sqlmig.url",
    )


def _expand(config: ConfigFile, key: str, template: str) -> str:
    """The URL with each ``${VAR}`` replaced by the variable's value.

    A variable inside one part of a parsable URL (the password, say) is put in
    that part as it is, so a secret holding ``@`` or ``/`` needs no escaping.

    Raises:
        ConfigError: a variable is not set, or the result is not a URL.
    """
    missing = sorted({v for v in VARIABLE.findall(template) if v not in os.environ})
    if missing:
        raise ConfigError(
            f"{config.path}: {key} uses ${{{missing[0]}}}, which is not set: "
            f"export {missing[0]} before running sqlmig",
            path=str(config.path),
            key=key,
        )

    def fill(text: str) -> str:
        return VARIABLE.sub(lambda m: os.environ[m.group(1)], text)

    if not VARIABLE.search(template):
        url = template
    else:
        try:
            parsed = make_url(template)
        except (ArgumentError, ValueError):
            parsed = None
        url = fill(template) if parsed is None else _fill_parts(parsed, fill)
    try:
        to_url(url)
    except ConfigError as exc:
        raise ConfigError(
            f"{config.path}: {key} = {mask(url)} is not a database URL: write it as {URL_TEMPLATE}",
            path=str(config.path),
            key=key,
        ) from exc
    return url


def _fill_parts(url: URL, fill: Callable[[str], str]) -> str:
    def part(value: str | None) -> str | None:
        return None if value is None else fill(value)

    query = {
        k: fill(v) if isinstance(v, str) else tuple(map(fill, v)) for k, v in url.query.items()
    }
    filled = url.set(
        username=part(url.username),
        password=part(None if url.password is None else str(url.password)),
        host=part(url.host),
        database=part(url.database),
        query=query,
    )
    return filled.render_as_string(hide_password=False)

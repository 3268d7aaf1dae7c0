"""What a migrations source names: a folder, an importable package, or a list built in code.

Every part of sqlmig that is handed a source (the runner through discovery, the
configuration, ``sqlmig new``, the pytest plugin) asks this module, so the
rules live here once:

- a sequence that is not a string is a list of :class:`~sqlmig.Migration` objects
  and of sources, whose steps are taken together (an Alembic chain, then a
  folder of the steps that follow it);
- a dotted name (``myapp.migrations``) is that package when one is importable,
  else a folder of that name;
- ``"alembic:PATH"`` is an Alembic project's revision chain
  (:mod:`sqlmig._alembic_source`);
- anything else is a folder; a bare name (``migrations``) with no such folder
  is tried as a top-level package.

Resolving a source may import the parent packages of a dotted name (as
``importlib.util.find_spec`` does); it never imports a migration.
"""

from __future__ import annotations

import importlib.machinery
import importlib.resources
import importlib.util
import os
import re
from collections.abc import Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TypeGuard

from ._errors import MigrationSourceError
from ._migration import Migration

__all__ = [
    "ALEMBIC",
    "FileSource",
    "MigrationsSource",
    "from_setting",
    "is_folder",
    "migrations_folder",
    "resolve",
]

MigrationsSource = str | Path | Sequence[Migration | str | Path]

#: A dotted name such as ``myapp.migrations``: a package, not a folder.
PACKAGE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
BARE_NAME = re.compile(r"[A-Za-z_]\w*")
#: What starts a source that names an Alembic project (``"alembic:alembic.ini"``).
ALEMBIC = "alembic:"


def is_folder(source: object) -> TypeGuard[str | Path]:
    """Whether ``source`` names a folder or package of sqlmig files (listed by discovery)."""
    return isinstance(source, Path) or (isinstance(source, str) and not source.startswith(ALEMBIC))


class FileSource:
    """A folder or package of migration files: the files under ``root``.

    ``package`` is the package's dotted name, ``None`` for a folder.
    """

    __slots__ = ("package", "root")

    def __init__(self, root: Traversable, package: str | None) -> None:
        self.root = root
        self.package = package


def resolve(source: MigrationsSource) -> FileSource | list[Migration]:
    """The files of a folder or package, or the migrations of a list.

    Raises:
        MigrationSourceError: no such folder or package, a file or module
            where a folder or package belongs, importing a parent package
            raised, or a list holds something else than migrations.
    """
    if isinstance(source, str) and source.startswith(ALEMBIC):
        from ._alembic_source import revisions  # Alembic is an extra: loaded when named

        return revisions(source[len(ALEMBIC) :])
    if isinstance(source, (str, Path)):
        return _files(source)
    migrations: list[Migration] = []
    for item in source:
        if isinstance(item, (str, Path)):  # a source of its own: an Alembic chain, then a folder
            from ._discovery import find_all

            migrations.extend(find_all(item))
        elif isinstance(item, Migration):
            migrations.append(item)
        else:
            raise MigrationSourceError(
                f"migrations list holds {item!r}, not a sqlmig.Migration nor a source: "
                "build each step with Migration(version, name, up=...), or list sources "
                "such as ['alembic:alembic.ini', 'migrations']"
            )
    return migrations


def _files(source: str | Path) -> FileSource:
    text = str(source)
    dotted = isinstance(source, str) and PACKAGE_NAME.fullmatch(text) is not None
    if dotted and _package(text) is not None:
        return FileSource(importlib.resources.files(text), text)
    path = Path(source)
    if path.is_dir():
        return FileSource(path, None)
    if isinstance(source, str) and BARE_NAME.fullmatch(text) and _package(text) is not None:
        return FileSource(importlib.resources.files(text), text)
    if path.exists():
        raise MigrationSourceError(
            f"migrations source {text!r} is a file, not a folder: point at the folder "
            "holding the NNN_name.py files",
            path=text,
        )
    raise _not_found(text, dotted)


def _package(name: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of package ``name``; None when there is no such package.

    Raises:
        MigrationSourceError: ``name`` is a module, not a package, or importing
            its parent package raised.
    """
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    except Exception as exc:  # a parent package's __init__ raised
        raise MigrationSourceError(
            f"importing the package of migrations source {name!r} raised "
            f"{type(exc).__name__}: {exc}; fix that package",
            path=name,
        ) from exc
    if spec is not None and spec.submodule_search_locations is None:
        raise MigrationSourceError(
            f"migrations source {name!r} is a module, not a package: make it a folder "
            f"with an __init__.py, holding the NNN_name.py files",
            path=name,
        )
    return spec


def from_setting(value: str, base: Path) -> str:
    """The source a configured ``migrations`` value names: a path relative to ``base``,
    or a dotted package name, kept as one when that package is importable or
    there is no folder of that name under ``base``.

    Raises:
        MigrationSourceError: a dotted name of a module, or of a package whose
            parent raised on import.
    """
    if value.startswith(ALEMBIC):
        project = Path(value[len(ALEMBIC) :]).expanduser()
        return ALEMBIC + str(project if project.is_absolute() else base / project)
    path = Path(value)
    resolved = path if path.is_absolute() else base / path
    if PACKAGE_NAME.fullmatch(value) and (not resolved.is_dir() or _package(value) is not None):
        return value
    return str(resolved)


def migrations_folder(source: str | Path) -> Path:
    """The real folder to write new migration files into; it may not exist yet.

    A dotted name is the folder of that package (found by importlib), else an
    existing folder of that name; anything else is a path.

    Raises:
        MigrationSourceError: a dotted name that is neither a package nor a
            folder, a module, or a package without a folder of its own (a zip).
    """
    text = str(source)
    if isinstance(source, str) and source.startswith(ALEMBIC):
        raise MigrationSourceError(
            f"{text} is an Alembic project, and sqlmig writes no Alembic revision: list a "
            f'folder after it for new steps (migrations = ["{text}", "migrations"])',
            path=text,
        )
    if not (isinstance(source, str) and PACKAGE_NAME.fullmatch(text)):
        return Path(source)
    spec = _package(text)
    if spec is None:
        if Path(text).is_dir():
            return Path(text)
        raise _not_found(text, dotted=True)
    for location in spec.submodule_search_locations or []:
        if os.path.isdir(location):
            return Path(location)
    raise MigrationSourceError(
        f"package {text!r} has no folder to write into (it is inside a zip or wheel): "
        "create the migration in the package's source tree",
        path=text,
    )


def _not_found(text: str, dotted: bool) -> MigrationSourceError:
    if dotted:
        return MigrationSourceError(
            f"migrations source {text!r} is neither an importable package nor a folder: "
            "check the name (the command line imports packages from the current directory) "
            "or give a folder path",
            path=text,
        )
    return MigrationSourceError(
        f"migrations folder {text!r} does not exist (nor is it an importable package): "
        "create it or pass the right path",
        path=text,
    )

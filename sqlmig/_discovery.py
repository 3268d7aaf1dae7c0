"""Finding migrations: a folder, an importable package, or a list built in code.

Discovery reads file names and bytes only, and in a real folder not even the
bytes of a file whose checksum is cached (see :mod:`sqlmig._checksums`). A module
is imported (under a private, unique name, with no change to ``sys.path``) the
first time one of its functions is needed, through :class:`ModuleLoader`.
"""

from __future__ import annotations

import importlib.machinery
import importlib.resources
import importlib.util
import itertools
import os
import re
import sys
import types
import uuid
from collections.abc import Sequence
from importlib.resources.abc import Traversable
from pathlib import Path

from ._bytecode import compiled
from ._checksums import checksum, folder_checksums, read_file
from ._errors import MigrationSourceError
from ._migration import Migration, docstring_first_line, version_problem

__all__ = [
    "FILE_NAME",
    "Listing",
    "MigrationsSource",
    "ModuleLoader",
    "checksum",
    "discover",
    "find_all",
    "fingerprint",
    "is_package",
    "line_in",
    "migrations_folder",
]

MigrationsSource = str | Path | Sequence[Migration]

#: ``[0-9]``, not ``\d``: digits of other scripts (``٢``) are not versions.
FILE_NAME = re.compile(r"^(?:migration_)?(?P<version>[0-9]+)_(?P<name>[A-Za-z0-9_]+)\.py$")

#: A dotted name such as ``myapp.migrations``: a package, not a folder.
PACKAGE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


class ModuleLoader:
    """Imports the module behind a file-based :class:`Migration` when it is needed."""

    def __init__(self, root: Traversable, package: str | None) -> None:
        self.root = root
        self.package = package
        self._prefix = f"sqlmig._loaded_{uuid.uuid4().hex[:12]}"

    def source(self, migration: Migration) -> bytes:
        return self.read(os.path.basename(migration.path or ""))

    def read(self, name: str) -> bytes:
        """The bytes of file ``name`` of the source."""
        if isinstance(self.root, Path):
            return read_file(os.path.join(self.root, name))
        return (self.root / name).read_bytes()

    def description(self, migration: Migration) -> str:
        return docstring_first_line(self.source(migration))

    def compile(self, migration: Migration) -> types.CodeType:
        """Compile the file without running it.

        Raises:
            MigrationSourceError: the file has a syntax error (file and line given).
        """
        path = migration.path or migration.label
        try:
            if isinstance(self.root, Path) and migration.path:
                return compiled(self.source(migration), migration.path)
            return compile(self.source(migration), path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", None)
            raise MigrationSourceError(
                f"{path}:{line}: syntax error: {getattr(exc, 'msg', exc)}; fix the file",
                path=path,
                line=line,
                version=migration.version,
            ) from exc

    def load(self, migration: Migration) -> types.ModuleType:
        """Run the module's top level under a private name and return the module.

        Raises:
            MigrationSourceError: syntax error, or the module raised while importing.
        """
        code = self.compile(migration)
        name = f"{self._prefix}.m{migration.version}_{migration.name}"
        module = types.ModuleType(name)
        module.__file__ = migration.path
        module.__package__ = self.package or ""
        sys.modules[name] = module
        try:
            exec(code, module.__dict__)
        except Exception as exc:
            line = line_in(exc, migration.path)
            raise MigrationSourceError(
                f"{migration.path}:{line}: importing the migration raised "
                f"{type(exc).__name__}: {exc}; fix the module's top-level code",
                path=migration.path,
                line=line,
                version=migration.version,
            ) from exc
        finally:
            sys.modules.pop(name, None)
        return module


def line_in(exc: BaseException, path: str | None) -> int | None:
    """The last line of file ``path`` that ``exc``'s traceback passed through, if any."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def discover(source: MigrationsSource | Listing) -> list[Migration]:
    """All migrations of ``source``, lowest version first.

    Reads names and bytes; imports nothing.

    Raises:
        MigrationSourceError: no such folder or package, a ``.py`` file whose
            name does not match ``NNN_name.py``, or two files with one version.
    """
    migrations = find_all(source)
    for before, after in itertools.pairwise(migrations):
        if before.number == after.number:
            where = [m.path or m.label for m in (before, after)]
            raise MigrationSourceError(
                f"{where[0]} and {where[1]} have the same version {after.number}: "
                "renumber one of them",
                path=after.path,
                version=after.version,
            )
    return migrations


def find_all(source: MigrationsSource | Listing) -> list[Migration]:
    """As :func:`discover`, but two files with one version are both returned."""
    if isinstance(source, (str, Path)):
        source = Listing(source)
    if isinstance(source, Listing):
        migrations = source.migrations()
    else:
        migrations = list(source)
        for item in migrations:
            if not isinstance(item, Migration):
                raise MigrationSourceError(
                    f"migrations list holds {item!r}, not a sqlmig.Migration: "
                    "build each step with Migration(version, name, up=...)"
                )
    migrations.sort(key=lambda m: m.number)
    return migrations


class Listing:
    """The migration files of a folder or package, listed and checksummed once.

    What a no-op start-up compares (:meth:`fingerprint`) needs no :class:`Migration`;
    :func:`discover` builds them from the same listing when a run has more to do.

    Raises:
        MigrationSourceError: no such folder or package, or a bad file name.
    """

    __slots__ = ("_loader", "_matches", "_paths", "_sums")

    def __init__(self, source: str | Path) -> None:
        root, package = _resolve_root(source)
        self._loader = ModuleLoader(root, package)
        self._paths, self._matches, self._sums = _scan(root)

    def fingerprint(self) -> dict[int, str] | None:
        """Each file's checksum by integer version; ``None`` when two files share one."""
        pairs = zip(self._matches, self._sums, strict=True)
        sums = {int(match["version"]): value for match, value in pairs}
        return sums if len(sums) == len(self._sums) else None

    def migrations(self) -> list[Migration]:
        """A :class:`Migration` for each file, in listing order."""
        return [
            Migration(m["version"], m["name"], checksum=value, path=path, loader=self._loader)
            for path, m, value in zip(self._paths, self._matches, self._sums, strict=True)
        ]


def fingerprint(source: MigrationsSource) -> dict[int, str] | None:
    """:meth:`Listing.fingerprint` of a folder or package; ``None`` for a list built in code."""
    return Listing(source).fingerprint() if isinstance(source, (str, Path)) else None


def _resolve_root(source: str | Path) -> tuple[Traversable, str | None]:
    """The files of a folder, or of a package (a dotted name is a package first)."""
    text = str(source)
    dotted = isinstance(source, str) and PACKAGE_NAME.fullmatch(text) is not None
    if dotted and _package(text) is not None:
        return importlib.resources.files(text), text
    path = Path(source)
    if path.is_dir():
        return path, None
    if isinstance(source, str) and not dotted and re.fullmatch(r"[A-Za-z_]\w*", text):
        if _package(text) is not None:
            return importlib.resources.files(text), text
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


def is_package(name: str) -> bool:
    """Whether dotted name ``name`` names an importable package (a migrations source).

    Raises:
        MigrationSourceError: it names a module, or importing its parent raised.
    """
    return PACKAGE_NAME.fullmatch(name) is not None and _package(name) is not None


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


def migrations_folder(source: str | Path) -> Path:
    """The real folder to write new migration files into; it may not exist yet.

    A dotted name is the folder of that package (found by importlib), else an
    existing folder of that name; anything else is a path.

    Raises:
        MigrationSourceError: a dotted name that is neither a package nor a
            folder, a module, or a package without a folder of its own (a zip).
    """
    text = str(source)
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


def _candidate(name: str) -> bool:
    return name.endswith(".py") and not name.startswith(("_", "."))


def _scan(root: Traversable) -> tuple[list[str], list[re.Match[str]], list[str]]:
    """The migration files of ``root``: paths, name matches and checksums, in listing order.

    A real folder is listed with one ``scandir`` and its checksums come through
    the cache of :mod:`sqlmig._checksums`; any other source's files are read.
    """
    if isinstance(root, Path):
        with os.scandir(root) as found:
            entries = [e for e in found if _candidate(e.name) and e.is_file()]
        paths = [e.path for e in entries]
        matches = [_match(e.name, e.path) for e in entries]
        return paths, matches, folder_checksums(root, entries)
    files = [e for e in root.iterdir() if _candidate(e.name) and e.is_file()]
    paths = [str(e) for e in files]
    matches = [_match(e.name, path) for e, path in zip(files, paths, strict=True)]
    return paths, matches, [checksum(e.read_bytes()) for e in files]


def _match(name: str, path: str) -> re.Match[str]:
    match = FILE_NAME.match(name)
    if match is None:
        raise MigrationSourceError(
            f"{path}: file name does not match NNN_name.py: rename it "
            "(e.g. 003_add_users.py), or start it with _ to have it ignored",
            path=path,
        )
    problem = version_problem(match["version"])
    if problem is not None:
        raise MigrationSourceError(
            f"{path}: version {match['version']} {problem}", path=path, version=match["version"]
        )
    return match

"""Finding migrations: the steps of a source, lowest version first.

A folder or package (as :mod:`sqlmig._sources` resolves it) is listed once, and
each ``NNN_name.py`` or ``NNN_name.sql`` file read for its checksum; a list
built in code is taken as it is. Both kinds share one version space. Nothing is
imported or parsed: a file's code is loaded the first time it is needed, by the
loader of its kind (:mod:`sqlmig._loader` for Python, :mod:`sqlmig._sql_files`
for SQL).
"""

from __future__ import annotations

import itertools
import os
import re
from importlib.resources.abc import Traversable
from pathlib import Path

from ._checksums import checksum, folder_checksums
from ._errors import MigrationSourceError
from ._loader import ModuleLoader
from ._migration import Migration, StepLoader, version_problem
from ._sources import FileSource, MigrationsSource, is_folder, resolve

__all__ = ["FILE_NAME", "Listing", "discover", "find_all", "fingerprint"]

#: ``[0-9]``, not ``\d``: digits of other scripts (``٢``) are not versions.
FILE_NAME = re.compile(
    r"^(?:migration_)?(?P<version>[0-9]+)_(?P<name>[A-Za-z0-9_]+)\.(?P<kind>py|sql)$"
)
#: The file kinds a folder holds, by suffix.
SUFFIXES = (".py", ".sql")


def discover(source: MigrationsSource | Listing) -> list[Migration]:
    """All migrations of ``source``, lowest version first.

    Reads names and bytes; imports nothing.

    Raises:
        MigrationSourceError: no such folder or package, a ``.py`` or ``.sql``
            file whose name does not match ``NNN_name.py`` (``.sql``), or two
            files with one version.
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
    if isinstance(source, Listing):
        migrations = source.migrations()
    else:
        resolved = resolve(source)
        migrations = resolved if isinstance(resolved, list) else Listing(resolved).migrations()
    migrations.sort(key=lambda m: m.number)
    return migrations


class Listing:
    """The migration files of a folder or package, listed and checksummed once.

    What a no-op start-up compares (:meth:`fingerprint`) needs no :class:`Migration`;
    :func:`discover` builds them from the same listing when a run has more to do.

    Raises:
        MigrationSourceError: no such folder or package, or a bad file name.
    """

    __slots__ = ("loaders", "matches", "paths", "sums")

    def __init__(self, source: str | Path | FileSource) -> None:
        files = source if isinstance(source, FileSource) else resolve(source)
        assert isinstance(files, FileSource)  # a str or Path is never a list
        self.paths, self.matches, self.sums = _scan(files.root)
        self.loaders: dict[str, StepLoader] = {"py": ModuleLoader(files.root, files.package)}
        if any(m["kind"] == "sql" for m in self.matches):
            # Imported only for a folder that holds SQL steps: most never do.
            from ._sql_files import SqlFileLoader

            self.loaders["sql"] = SqlFileLoader(files.root)

    def fingerprint(self) -> dict[int, str] | None:
        """Each file's checksum by integer version; ``None`` when two files share one."""
        pairs = zip(self.matches, self.sums, strict=True)
        sums = {int(match["version"]): value for match, value in pairs}
        return sums if len(sums) == len(self.sums) else None

    def migrations(self) -> list[Migration]:
        """A :class:`Migration` for each file, in listing order."""
        loaders = self.loaders
        return [
            Migration(m["version"], m["name"], checksum=value, path=path, loader=loaders[m["kind"]])
            for path, m, value in zip(self.paths, self.matches, self.sums, strict=True)
        ]


def fingerprint(source: MigrationsSource) -> dict[int, str] | None:
    """:meth:`Listing.fingerprint` of a folder or package; ``None`` for a list built in code."""
    return Listing(source).fingerprint() if is_folder(source) else None


def _candidate(name: str) -> bool:
    return name.endswith(SUFFIXES) and not name.startswith(("_", "."))


def _scan(root: Traversable) -> tuple[list[str], list[re.Match[str]], list[str]]:
    """The migration files of ``root``: paths, name matches and checksums, in listing order.

    Every file is read and hashed: the checksums compared at start-up are
    always those of the bytes on disk.
    """
    if isinstance(root, Path):
        with os.scandir(root) as found:
            entries = [e for e in found if _candidate(e.name) and e.is_file()]
        paths = [e.path for e in entries]
        matches = [_match(e.name, e.path) for e in entries]
        return paths, matches, folder_checksums(os.fspath(root), [e.name for e in entries])
    files = [e for e in root.iterdir() if _candidate(e.name) and e.is_file()]
    paths = [str(e) for e in files]
    matches = [_match(e.name, path) for e, path in zip(files, paths, strict=True)]
    return paths, matches, [checksum(e.read_bytes()) for e in files]


def _match(name: str, path: str) -> re.Match[str]:
    match = FILE_NAME.match(name)
    if match is None:
        raise MigrationSourceError(
            f"{path}: file name does not match NNN_name{name[name.rfind('.') :]}: rename it "
            f"(e.g. 003_add_users{name[name.rfind('.') :]}), or start it with _ to have it ignored",
            path=path,
        )
    problem = version_problem(match["version"])
    if problem is not None:
        raise MigrationSourceError(
            f"{path}: version {match['version']} {problem}", path=path, version=match["version"]
        )
    return match

"""Writing a new migration file: the next number, named like its neighbours, from a template."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from .discovery import FILE_NAME, discover
from .errors import MigrationSourceError, UsageError

__all__ = ["TEMPLATE", "new_migration", "next_file_name"]

DEFAULT_WIDTH = 3
PREFIX = "migration_"

TEMPLATE = '''\
"""{description}

Explain the change here; the first line above is the description sqlmig shows.
"""

from sqlalchemy.engine import Connection


def up(conn: Connection) -> None:
    """Apply {label}."""
    # conn.exec_driver_sql("CREATE TABLE ...")
    pass


def down(conn: Connection) -> None:
    """Undo {label}."""
    # conn.exec_driver_sql("DROP TABLE ...")
    pass
'''


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", name.strip()).strip("_")
    if not slug:
        raise UsageError(
            f"cannot name a migration {name!r}: use letters, digits and underscores, "
            "e.g. add_orders"
        )
    return slug


def next_file_name(existing: list[str], name: str) -> str:
    """The file name after ``existing`` (migration file names) for ``name``.

    The number is one above the highest, zero-padded to the width of that
    version (``009`` -> ``010``, three digits when there is none), and starts
    with ``migration_`` when the newest file does.

    >>> next_file_name(["migration_009_b.py"], "add orders")
    'migration_010_add_orders.py'

    Raises:
        UsageError: ``name`` has no letter or digit.
    """
    slug = _slug(name)
    matches = [m for m in map(FILE_NAME.match, existing) if m is not None]
    if not matches:
        return f"{1:0{DEFAULT_WIDTH}d}_{slug}.py"
    newest = max(matches, key=lambda m: int(m["version"]))
    prefix = PREFIX if newest.group(0).startswith(PREFIX) else ""
    width = len(newest["version"])
    return f"{prefix}{int(newest['version']) + 1:0{width}d}_{slug}.py"


def _folder(migrations: str | Path) -> Path:
    """The folder of a migrations source given as a path or an importable package."""
    path = Path(migrations)
    if path.is_dir() or not isinstance(migrations, str) or "." not in migrations:
        return path
    try:
        spec = importlib.util.find_spec(migrations)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return path
    return Path(next(iter(spec.submodule_search_locations)))


def new_migration(migrations: str | Path, name: str) -> Path:
    """Write the next migration file into ``migrations`` and return its path.

    Creates the folder if needed. The file has a docstring, ``up`` and ``down``.

    Raises:
        UsageError: a bad ``name``, or the file already exists.
        MigrationSourceError: the folder holds a misnamed or duplicate file.
    """
    folder = _folder(migrations)
    if folder.exists() and not folder.is_dir():
        raise MigrationSourceError(
            f"{folder} is a file, not a folder: point --dir at the migrations folder",
            path=str(folder),
        )
    existing = [Path(m.path).name for m in discover(folder) if m.path] if folder.is_dir() else []
    file_name = next_file_name(existing, name)
    match = FILE_NAME.match(file_name)
    assert match is not None
    label = f"{match['version']}_{match['name']}"
    words = match["name"].replace("_", " ").strip()
    description = words[:1].upper() + words[1:] + "."
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file_name
    try:
        with target.open("x", encoding="utf-8") as handle:
            handle.write(TEMPLATE.format(description=description, label=label))
    except FileExistsError as exc:
        raise UsageError(f"{target} already exists: pick another name") from exc
    return target

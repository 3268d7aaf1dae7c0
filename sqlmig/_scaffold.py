"""Writing a new migration file: the next number, named like its neighbours, from a template."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from ._discovery import FILE_NAME, discover
from ._errors import MigrationSourceError, UsageError
from ._sources import is_folder, migrations_folder

__all__ = ["SQL_TEMPLATE", "TEMPLATE", "new_migration", "next_file_name"]

DEFAULT_WIDTH = 3
#: The longest name part of a new file: file names are limited (255 bytes), and so is the history.
MAX_NAME = 100
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


SQL_TEMPLATE = """\
-- {description}
--
-- Explain the change here; the first line above is the description sqlmig shows.
-- Write transaction:false after -- migrate:up for a step that cannot run in a
-- transaction (CREATE INDEX CONCURRENTLY).

-- migrate:up


-- migrate:down

"""


def _slug(name: str) -> str:
    """``name`` as the name part of a file name; other characters than letters become ``_``.

    A letter or digit outside ASCII is refused rather than dropped: file names
    (and so the history) take ASCII only, and a silently changed name misleads.
    """
    foreign = sorted({c for c in name if c.isalnum() and not c.isascii()})
    if foreign:
        ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        example = _slug(ascii_name) if re.search(r"[A-Za-z0-9]", ascii_name) else "add_orders"
        raise UsageError(
            f"cannot name a migration {name!r}: file names take ASCII letters and digits only "
            f"(not {''.join(foreign)}); spell it in ASCII, e.g. {example}"
        )
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", name.strip()).strip("_")
    if len(slug) > MAX_NAME:
        raise UsageError(
            f"cannot name a migration with {len(slug)} characters: keep the name to {MAX_NAME} "
            "or fewer (it becomes the file name); the docstring can say more"
        )
    if not slug:
        raise UsageError(
            f"cannot name a migration {name!r}: use letters, digits and underscores, "
            "e.g. add_orders"
        )
    return slug


def next_file_name(existing: list[str], name: str, suffix: str = ".py", *, after: int = 0) -> str:
    """The file name after ``existing`` (migration file names) for ``name``.

    The number is one above the highest of either kind (``.py`` or ``.sql``),
    zero-padded to the width of that version (``009`` -> ``010``, three digits
    when there is none), and starts with ``migration_`` when the newest file does.

    >>> next_file_name(["migration_009_b.py"], "add orders")
    'migration_010_add_orders.py'
    >>> next_file_name(["009_b.py"], "add orders", ".sql")
    '010_add_orders.sql'

    ``after``: the highest version of the sources listed before this folder
    (an Alembic chain's length); the number is above it too.

    Raises:
        UsageError: ``name`` has no letter or digit.
    """
    slug = _slug(name)
    matches = [m for m in map(FILE_NAME.match, existing) if m is not None]
    if not matches or max(int(m["version"]) for m in matches) <= after:
        # nothing yet, or only what comes before the steps of the sources listed
        # before this folder (an Alembic chain): the next version after those
        return f"{after + 1:0{DEFAULT_WIDTH}d}_{slug}{suffix}"
    newest = max(matches, key=lambda m: int(m["version"]))
    prefix = PREFIX if newest.group(0).startswith(PREFIX) else ""
    width = len(newest["version"])
    return f"{prefix}{int(newest['version']) + 1:0{width}d}_{slug}{suffix}"


def new_migration(
    migrations: str | Path | Sequence[str | Path],
    name: str,
    template: str = TEMPLATE,
    *,
    sql: bool = False,
) -> Path:
    """Write the next migration file into ``migrations`` and return its path.

    Creates the folder if needed. The file has a docstring, ``up`` and ``down``:
    ``template`` with ``{description}`` and ``{label}`` filled in. ``sql``: a
    ``.sql`` file from :data:`SQL_TEMPLATE` instead, with its up and down markers.

    Raises:
        UsageError: a bad ``name`` (no letter or digit, one outside ASCII, too
            long), or the file already exists.
        MigrationSourceError: the folder holds a misnamed or duplicate file, a
            dotted name is neither a package nor a folder, or the file cannot
            be written.
    """
    after = 0
    if not isinstance(migrations, (str, Path)):  # a list: an Alembic chain, then a folder
        folders = [item for item in migrations if is_folder(item)]
        if not folders:
            raise MigrationSourceError(
                "the migrations list holds no folder for new files: add one after the "
                'Alembic chain, such as ["alembic:alembic.ini", "migrations"]'
            )
        others = [item for item in migrations if item is not folders[-1]]
        after = max((m.number for m in discover(others)), default=0)
        migrations = folders[-1]
    folder = migrations_folder(migrations)
    if folder.exists() and not folder.is_dir():
        raise MigrationSourceError(
            f"{folder} is a file, not a folder: point --dir at the migrations folder",
            path=str(folder),
        )
    existing = [Path(m.path).name for m in discover(folder) if m.path] if folder.is_dir() else []
    if sql:
        template = SQL_TEMPLATE
    file_name = next_file_name(existing, name, ".sql" if sql else ".py", after=after)
    match = FILE_NAME.match(file_name)
    assert match is not None
    label = f"{match['version']}_{match['name']}"
    words = match["name"].replace("_", " ").strip()
    description = words[:1].upper() + words[1:] + "."
    target = folder / file_name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with target.open("x", encoding="utf-8") as handle:
            handle.write(template.format(description=description, label=label))
    except FileExistsError as exc:
        raise UsageError(f"{target} already exists: pick another name") from exc
    except OSError as exc:
        raise MigrationSourceError(
            f"cannot write {target}: {exc.strerror or exc}; check the folder and its permissions",
            path=str(target),
        ) from exc
    return target

"""An Alembic project as a migrations source: its revision chain as sqlmig steps.

``"alembic:path"`` names an ``alembic.ini`` (or a ``pyproject.toml`` with
``[tool.alembic]``), a folder holding one, an Alembic script folder (with
``versions/``), or a versions folder itself. The revision files are read, not
run: ``revision`` and ``down_revision`` are literals at the top of every file
Alembic writes, so the chain is known without importing a revision or running
``env.py``, as sqlmig knows a folder without importing its steps. The chain
must be linear; its positions (1, 2, ...) are the versions.

A revision runs when its step runs: its module is loaded by sqlmig's loader
(private name, file and line on an error), and its ``upgrade()`` or
``downgrade()`` is called with Alembic's ``op`` and ``context`` bound to an
:class:`~alembic.runtime.migration.MigrationContext` on the step's own
connection, inside sqlmig's transaction and guard. Alembic's proxies are one
per process, so revisions of two runners in two threads run one at a time.

The module is long because reading an Alembic project is one job with many
rules: where the configuration puts the revisions, what a file declares, and
why a chain is not linear.
"""

from __future__ import annotations

import ast
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, MetaData, String, Table

from ._alembic_env import KEYS, named_in_env
from ._checksums import checksum
from ._errors import MigrationSourceError
from ._loader import ModuleLoader
from ._migration import Migration, StepCode, first_line

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

__all__ = ["PREFIX", "Revision", "RevisionStep", "VersionTable", "is_alembic", "revisions"]

log = logging.getLogger("sqlmig")

#: What starts a source string that names an Alembic project.
PREFIX = "alembic:"

#: Alembic's ``op`` and ``context`` are module-level proxies: one revision at a time.
_PROXIES = threading.RLock()

#: What a revision file declares that places it in the chain (``branch_labels`` does not).
_DECLARED = ("revision", "down_revision", "depends_on")


def is_alembic(source: object) -> bool:
    """Whether ``source`` is a string naming an Alembic project (``"alembic:..."``)."""
    return isinstance(source, str) and source.startswith(PREFIX)


@dataclass(frozen=True)
class Revision:
    """What one revision file declares, read without running it."""

    path: str
    revision: str
    down_revision: tuple[str, ...]
    depends_on: tuple[str, ...]
    #: it uses ``autocommit_block()``: it runs as a ``transactional = False`` step
    autocommit: bool = False


@dataclass(frozen=True)
class VersionTable:
    """Where Alembic records its revision: ``alembic_version`` unless the project says.

    Alembic takes it from ``context.configure(version_table=...,
    version_table_schema=...)`` in ``env.py``, which sqlmig reads without
    running it (:mod:`sqlmig._alembic_env`); the same two keys in the
    ``[alembic]`` section of ``alembic.ini`` (or ``[tool.alembic]``) come first.
    """

    name: str = "alembic_version"
    schema: str | None = None  # None: the connection's default schema, as for Alembic

    def table(self) -> Table:
        """The table as Alembic makes it: one ``version_num`` column."""
        return Table(
            self.name,
            MetaData(),
            Column("version_num", String(32), nullable=False),
            schema=self.schema,
        )


class RevisionStep(Migration):
    """A sqlmig step that runs one Alembic revision; ``revision`` is its Alembic id."""

    def __init__(self, position: int, revision: Revision, loader: RevisionLoader) -> None:
        stem = Path(revision.path).stem
        name = stem if stem.startswith(revision.revision) else f"{revision.revision}_{stem}"
        with open(revision.path, "rb") as file:
            data = file.read()
        super().__init__(
            str(position), name, checksum=checksum(data), path=revision.path, loader=loader
        )
        self.revision = revision.revision
        #: the project's Alembic version table, which adoption reads
        self.version_table = loader.project.version_table


class _Project:
    """The Alembic configuration a revision sees as ``context.config``, and its folders."""

    def __init__(
        self,
        config: Config,
        script_location: str,
        sys_paths: list[str],
        version_table: VersionTable | None = None,
    ) -> None:
        self.config = config
        self.script_location = script_location
        self.sys_paths = sys_paths
        self.version_table = version_table or VersionTable()

    @contextmanager
    def importable(self) -> Iterator[None]:
        """``prepend_sys_path`` in force while a revision loads or runs, then taken back."""
        if not self.sys_paths:
            yield
            return
        before = list(sys.path)
        sys.path[:0] = self.sys_paths
        try:
            yield
        finally:
            sys.path[:] = before


class RevisionLoader(ModuleLoader):
    """Loads revision files, and gives each an ``up``/``down`` that runs it the Alembic way."""

    def __init__(self, folder: Path, project: _Project, chain: list[Revision]) -> None:
        super().__init__(folder, None)
        self.project = project
        #: each file's revision and the one before it (None: the chain's first), which
        #: undoing it leaves the version table naming if that named it
        self.revisions = {
            r.path: (r.revision, r.down_revision[0] if r.down_revision else None) for r in chain
        }
        #: the files of revisions that use ``autocommit_block()``
        self.autocommit = {r.path for r in chain if r.autocommit}

    def step(self, path: str, version: str, name: str) -> StepCode:
        """The revision's ``upgrade()``/``downgrade()`` as the step's ``up``/``down``.

        Raises:
            MigrationSourceError: syntax or import error (file and line), or no ``upgrade()``.
        """
        with _PROXIES, self.project.importable():
            module = self.load(path, version, name)
        upgrade = getattr(module, "upgrade", None)
        if not callable(upgrade):
            raise MigrationSourceError(
                f"{path}: Alembic revision defines no upgrade() function: add one",
                path=path,
                version=version,
            )
        downgrade = getattr(module, "downgrade", None)
        autocommit = path in self.autocommit
        return StepCode(
            up=self._runner(upgrade, autocommit=autocommit),
            down=(
                self._runner(downgrade, autocommit=autocommit, undoes=self.revisions.get(path))
                if callable(downgrade)
                else None
            ),
            transactional=not autocommit,
            description=first_line(module.__doc__),
        )

    def _runner(
        self,
        fn: Callable[[], object],
        *,
        autocommit: bool,
        undoes: tuple[str, str | None] | None = None,
    ) -> Callable[[Connection], None]:
        """``fn`` run the Alembic way; ``undoes``: it is a ``downgrade()``, of this
        revision, to that one (None: the base)."""
        project = self.project

        @functools.wraps(fn)
        def run(conn: Connection) -> None:
            with _PROXIES, project.importable(), operations(conn, project, autocommit):
                fn()
            if undoes is not None:
                step_back(conn, project.version_table, *undoes)

        return run


def step_back(
    conn: Connection, version_table: VersionTable, revision: str, previous: str | None
) -> None:
    """Move Alembic's version table back, in the step that undid ``revision``.

    If the table names ``revision``, it names ``previous`` afterwards, as
    Alembic's ``downgrade`` leaves it; undoing the chain's first revision
    (``previous`` None) empties it, as ``downgrade base`` does, so that a
    history sqlmig emptied is not adopted again. The table then never names a
    revision past the history's last step unless Alembic wrote it (see
    :func:`sqlmig._alembic_adoption.refuse_alembic_ahead`). Nothing to do when
    the table does not exist or names another revision. A SQL script cannot
    ask: it creates the table if missing (``IF NOT EXISTS``; an empty one is
    never adopted) and writes the same change.
    """
    from sqlalchemy import inspect
    from sqlalchemy.schema import CreateTable
    from sqlalchemy.sql import Delete, Update

    name, schema = version_table.name, version_table.schema
    table = version_table.table()
    change: Delete | Update
    if previous is None:
        change = table.delete()
    else:
        change = table.update().where(table.c.version_num == revision).values(version_num=previous)
    if getattr(conn, "sql_output", None) is not None:
        conn.execute(CreateTable(table, if_not_exists=True))
        conn.execute(change)
        return
    if not inspect(conn).has_table(name, schema=schema):
        return
    if conn.execute(change).rowcount:
        log.info("%s now names %s", name, previous or "no revision (the base)")


@contextmanager
def _in_autocommit() -> Iterator[None]:
    """``autocommit_block()`` in a step that runs in autocommit already: nothing to do."""
    yield


@contextmanager
def operations(conn: Connection, project: _Project, autocommit: bool = False) -> Iterator[None]:
    """Alembic's ``context`` and ``op`` bound to ``conn`` (the step's connection).

    ``autocommit``: the step runs outside a transaction (the revision uses
    ``autocommit_block()``), so the block has no transaction to end, and
    its statements are committed one by one as the rest of the step's are.
    """
    from alembic.operations import Operations
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(project.script_location)
    # A step rendered as a SQL script (upgrade --sql) has a stand-in connection
    # with somewhere to write: Alembic's offline mode, as under alembic --sql.
    output = getattr(conn, "sql_output", None)
    offline = output is not None
    with EnvironmentContext(project.config, script, as_sql=offline) as env:
        if offline:
            env.configure(dialect_name=conn.dialect.name, output_buffer=output, literal_binds=True)
        else:
            env.configure(connection=conn)
        migration_context = env.get_context()
        if autocommit and not offline:
            migration_context.autocommit_block = _in_autocommit  # type: ignore[method-assign]
            if not conn.in_transaction():
                # SQLAlchemy's own begin on an AUTOCOMMIT connection (the driver commits
                # each statement): Alembic's DDL runs in it instead of beginning and
                # committing one of its own, which the step's guard refuses
                conn.begin()
        op = Operations(migration_context)
        # Operations.context() does this too, but leaves the proxy bound to this
        # step's connection when the revision raises: taken back here either way.
        op._install_proxy()
        try:
            yield
        finally:
            op._remove_proxy()


def revisions(location: str) -> list[Migration]:
    """The steps of the Alembic project at ``location``: its chain, positions 1, 2, ...

    Reads the configuration and the revision files; imports no revision and
    runs no ``env.py``.

    Raises:
        MigrationSourceError: Alembic missing, no such project, a revision
            file that does not declare its revision as literals, a syntax
            error, or a chain that is not linear (a branch, a merge, a
            ``down_revision`` naming nothing).
    """
    project, folders = _project(location)
    found = [_read(path) for path in _files(folders)]
    chain = linear_chain(found, location)
    loader = RevisionLoader(Path(project.script_location), project, chain)
    return [RevisionStep(i, rev, loader) for i, rev in enumerate(chain, start=1)]


def _alembic_config(file: Path | None) -> Config:
    try:
        from alembic.config import Config
    except ImportError as exc:
        raise MigrationSourceError(
            "an Alembic project as a migrations source needs Alembic: pip install 'sqlmig[alembic]'"
        ) from exc
    if file is None:
        return Config()
    if file.suffix == ".toml":
        return Config(toml_file=str(file))
    return Config(str(file))


def _project(location: str) -> tuple[_Project, list[Path]]:
    """The configuration and the folders of revision files that ``location`` names."""
    path = Path(location).expanduser()
    if path.is_dir() and (path / "alembic.ini").is_file():
        path = path / "alembic.ini"
    if path.is_file():
        return _from_config(path)
    if not path.is_dir():
        raise MigrationSourceError(
            f"Alembic project {location!r} does not exist: give the path of alembic.ini, "
            "of the script folder, or of the versions folder, after 'alembic:'",
            path=location,
        )
    if (path / "versions").is_dir():  # a script folder, env.py or not
        script, folders = path, [path / "versions"]
    else:  # a versions folder: env.py, if any, is in the script folder above it
        script, folders = path, [path]
    config = _alembic_config(None)
    env_folder = script if (script / "env.py").is_file() else script.parent
    table = _version_table(config, env_folder, None, None)
    return _Project(config, str(script.resolve()), [], table), folders


def _from_config(file: Path) -> tuple[_Project, list[Path]]:
    config = _alembic_config(file)
    base = file.resolve().parent
    try:
        location = config.get_alembic_option("script_location")
        versions = config.get_version_locations_list() or []
        sys_paths = config.get_prepend_sys_paths_list() or []
        recursive = config.get_alembic_boolean_option("recursive_version_locations")
        table = config.get_alembic_option("version_table")
        table_schema = config.get_alembic_option("version_table_schema")
    except Exception as exc:  # configparser's interpolation and parsing errors
        raise MigrationSourceError(
            f"{file}: cannot read the Alembic configuration: {exc}; fix the file",
            path=str(file),
        ) from exc
    if not location:
        raise MigrationSourceError(
            f"{file}: no script_location in its [alembic] section: add the folder "
            "of env.py and versions/",
            path=str(file),
        )
    script = _folder(location, base)
    folders = [_folder(v, base) for v in versions] or [script / "versions"]
    for folder in folders:
        if not folder.is_dir():
            raise MigrationSourceError(
                f"{file}: the versions folder {folder} does not exist: check script_location "
                "and version_locations (relative paths are read from the file's folder)",
                path=str(file),
            )
    if recursive:
        folders = [Path(root) for f in folders for root, _dirs, _files in os.walk(f)]
    if not isinstance(table, str | None) or not isinstance(table_schema, str | None):
        raise MigrationSourceError(
            f"{file}: version_table and version_table_schema are names (strings): "
            "write each as the one name env.py gives context.configure()",
            path=str(file),
        )
    paths = [str(_folder(p, base)) for p in sys_paths]
    version_table = _version_table(config, script, table, table_schema)
    return _Project(config, str(script), paths, version_table), folders


def _version_table(
    config: Config, script: Path, table: str | None, schema: str | None
) -> VersionTable:
    """The version table: the configuration's keys first, else what ``env.py`` names.

    Raises:
        MigrationSourceError: neither names it, and ``env.py`` passes an
            expression that cannot be read without running it.
    """
    if table and schema:
        return VersionTable(table, schema)

    def option(section: str | None, name: str) -> str | None:
        try:
            value = (
                config.get_alembic_option(name)
                if section is None
                else config.get_section_option(section, name)
            )
        except Exception:  # configparser's interpolation errors: Alembic would fail too
            return None
        return value if isinstance(value, str) else None

    unset = [k for k, v in zip(KEYS, (table, schema), strict=True) if not v]
    named = named_in_env(script / "env.py", option, unset)
    return VersionTable(
        table or named.get("version_table") or VersionTable.name,
        schema or named.get("version_table_schema") or None,
    )


def _folder(value: str, base: Path) -> Path:
    """A folder named in the configuration: ``package:path``, or a path from ``base``."""
    if ":" in value and not Path(value).is_absolute() and not Path(value).drive:
        from alembic.util import coerce_resource_to_filename

        try:
            return Path(coerce_resource_to_filename(value))
        except Exception as exc:
            raise MigrationSourceError(
                f"Alembic script location {value!r} names no package folder: {exc}",
                path=value,
            ) from exc
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _files(folders: list[Path]) -> list[str]:
    """The revision files of ``folders``: ``.py`` files, as Alembic takes them."""
    paths: list[str] = []
    for folder in folders:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            name = entry.name
            if name.endswith(".py") and name != "__init__.py" and not name.startswith(".#"):
                if entry.is_file():
                    paths.append(entry.path)
    return paths


def _read(path: str) -> Revision:
    """What revision file ``path`` declares at its top level, without running it.

    Raises:
        MigrationSourceError: a syntax error, or ``revision``/``down_revision``
            missing or not a literal.
    """
    with open(path, "rb") as file:
        source = file.read()
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        raise MigrationSourceError(
            f"{path}:{line}: syntax error: {getattr(exc, 'msg', exc)}; fix the revision file",
            path=path,
            line=line,
        ) from exc
    declared: dict[str, Any] = {}
    for node in tree.body:
        target, value = _assignment(node)
        if target in _DECLARED and value is not None:
            try:
                declared[target] = ast.literal_eval(value)
            except ValueError as exc:
                raise MigrationSourceError(
                    f"{path}:{node.lineno}: {target} is not a literal: sqlmig reads it without "
                    "running the file; write it as a string, as Alembic does",
                    path=path,
                    line=node.lineno,
                ) from exc
    autocommit = any(
        isinstance(node, ast.Attribute) and node.attr == "autocommit_block"
        for node in ast.walk(tree)
    )
    revision = declared.get("revision")
    if not isinstance(revision, str) or not revision:
        raise MigrationSourceError(
            f"{path}: declares no revision = '...': it is not an Alembic revision file; "
            "move it out of the versions folder",
            path=path,
        )
    if "down_revision" not in declared:
        raise MigrationSourceError(
            f"{path}: revision {revision} declares no down_revision: add "
            "down_revision = None for the first revision, else its parent's id",
            path=path,
        )
    return Revision(
        path,
        revision,
        _ids(declared["down_revision"]),
        _ids(declared.get("depends_on")),
        autocommit,
    )


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        return (target.id if isinstance(target, ast.Name) else None), node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id, node.value
    return None, None


def _ids(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return (str(value),)


def linear_chain(found: list[Revision], location: str) -> list[Revision]:
    """``found`` in chain order, first revision first.

    Raises:
        MigrationSourceError: two files with one revision id, a
            ``down_revision`` or ``depends_on`` naming nothing, a merge
            revision, a branch (two revisions on one parent, two bases), or
            revisions in a cycle.
    """
    by_id: dict[str, Revision] = {}
    for rev in found:
        other = by_id.get(rev.revision)
        if other is not None:
            raise _chain_error(
                f"{other.path} and {rev.path} both declare revision {rev.revision}: "
                "give one of them a new id",
                location,
            )
        by_id[rev.revision] = rev
    children: dict[str | None, list[Revision]] = {}
    for rev in found:
        if len(rev.down_revision) > 1:
            raise _chain_error(
                f"revision {rev.revision} ({rev.path}) merges {', '.join(rev.down_revision)}: "
                "sqlmig runs a linear chain only; make the branches one line first",
                location,
            )
        for named in rev.down_revision + rev.depends_on:
            if named not in by_id:
                raise _chain_error(
                    f"revision {rev.revision} ({rev.path}) names {named} as its "
                    "down_revision or depends_on, and no file declares it: restore that "
                    "revision or fix the id",
                    location,
                )
        children.setdefault(rev.down_revision[0] if rev.down_revision else None, []).append(rev)
    chain: list[Revision] = []
    parent: str | None = None
    while True:
        nexts = children.get(parent, [])
        if len(nexts) > 1:
            where = "the base" if parent is None else f"revision {parent}"
            names = ", ".join(f"{r.revision} ({r.path})" for r in nexts)
            raise _chain_error(
                f"the chain branches after {where}: {names} all follow it (two heads): "
                "sqlmig runs a linear chain only; merge them into one line first",
                location,
            )
        if not nexts:
            break
        chain.append(nexts[0])
        parent = nexts[0].revision
    if len(chain) != len(found):
        stray = sorted(set(by_id) - {r.revision for r in chain})
        raise _chain_error(
            f"revisions {', '.join(stray)} are not on the chain from the base "
            "(a cycle of down_revision): fix their down_revision",
            location,
        )
    positions = {rev.revision: i for i, rev in enumerate(chain)}
    for i, rev in enumerate(chain):
        later = [d for d in rev.depends_on if positions[d] > i]
        if later:
            raise _chain_error(
                f"revision {rev.revision} depends_on {', '.join(later)}, which comes after "
                "it in the chain: fix depends_on",
                location,
            )
    return chain


def _chain_error(message: str, location: str) -> MigrationSourceError:
    return MigrationSourceError(f"Alembic project {location}: {message}", path=location)

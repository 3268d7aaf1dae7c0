"""The objects sqlmig hands back: a migration step, a history row, a status, a plan."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from ._errors import IrreversibleMigration, MigrationSourceError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from ._loader import ModuleLoader

__all__ = [
    "MAX_VERSION_LENGTH",
    "AppliedMigration",
    "Migration",
    "PlannedStep",
    "Status",
    "StepCallback",
    "StepFunction",
    "StepPhase",
    "check_reversible",
]

StepFunction = Callable[["Connection"], object]

#: Where a step is: its function is about to run, it is done (and recorded), or it failed.
StepPhase = Literal["start", "done", "failed"]


class StepCallback(Protocol):
    """The type of ``on_step``: ``on_step(migration, phase, seconds)``, told of each step.

    Called as each step that ``upgrade``, ``downgrade`` or ``rollback_last``
    runs starts (``phase`` ``"start"``, ``seconds`` 0.0), once it is done and
    recorded (``"done"``, its duration in seconds) and when it fails
    (``"failed"``, the seconds it ran, before the error is raised). Any
    function of three positional arguments fits. What it raises is not caught;
    raised on ``"start"``, it stops the step before anything of it is written.
    """

    def __call__(self, migration: Migration, phase: StepPhase, seconds: float, /) -> None: ...


#: The longest version the history table holds (its ``version`` column is ``String(32)``).
MAX_VERSION_LENGTH = 32


def version_problem(version: str) -> str | None:
    """Why ``version`` cannot be a version (ASCII digits that fit the history), or None."""
    if not (version.isascii() and version.isdigit()):
        return "is not a number: use the digits 0-9, such as '001'"
    if len(version) > MAX_VERSION_LENGTH:
        return (
            f"has {len(version)} digits, more than the {MAX_VERSION_LENGTH} "
            "the history table holds: use a shorter version"
        )
    return None


def function_problem(fn: object) -> str | None:
    """Why ``fn`` cannot be a step's ``up``/``down`` (calling it would run nothing), or None."""
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        return "is a generator (it has `yield`), so calling it runs none of it: remove the yield"
    if inspect.iscoroutinefunction(fn):
        return (
            "is `async def`, so calling it runs none of it: make it a plain def "
            "(an async service calls the runner through AsyncConnection.run_sync)"
        )
    return None


def version_number(version: str) -> int:
    """The integer value a version compares by: ``"010"`` -> 10."""
    return int(version)


class Migration:
    """One migration step: a version, a name, ``up`` and optionally ``down``.

    Built in code (``Migration("002", "add_prefs", up=fn, down=fn)``) or found in
    a file by :mod:`sqlmig._discovery`. A file-based step runs its module (through
    its :class:`~sqlmig._loader.ModuleLoader`) only when ``up``, ``down`` or
    ``transactional`` is first read.
    """

    def __init__(
        self,
        version: str,
        name: str,
        up: StepFunction | None = None,
        down: StepFunction | None = None,
        description: str = "",
        transactional: bool = True,
        checksum: str | None = None,
        *,
        path: str | None = None,
        loader: ModuleLoader | None = None,
    ) -> None:
        version = str(version)
        problem = version_problem(version)
        if problem is not None:
            where = f"{path}: " if path else ""
            raise MigrationSourceError(
                f"{where}migration version {version!r} {problem}", path=path, version=version
            )
        if up is None and loader is None:
            raise MigrationSourceError(
                f"migration {version} ({name}) has no up(): pass up=<function>",
                version=version,
            )
        for role, fn in (("up", up), ("down", down)):
            problem = function_problem(fn) if fn is not None else None
            if problem is not None:
                raise MigrationSourceError(
                    f"migration {version} ({name}): {role}() {problem}", version=version
                )
        self.version = version
        #: The integer value this version compares by.
        self.number = version_number(version)
        self.name = name
        self.checksum = checksum
        self.path = path
        self._up = up
        self._down = down
        self._description = description
        self._transactional = transactional
        self._loader = loader

    @property
    def label(self) -> str:
        """``version_name``, as in a file name."""
        return f"{self.version}_{self.name}"

    @property
    def loaded(self) -> bool:
        """True when ``up`` is available without importing anything."""
        return self._loader is None

    def load(self) -> None:
        """Import the module behind a file-based step (once).

        Raises:
            MigrationSourceError: syntax or import error, or no ``up()``.
        """
        if self._loader is None:
            return
        assert self.path is not None  # a file-based step has its file
        module = self._loader.load(self.path, self.version, f"m{self.version}_{self.name}")
        up = getattr(module, "up", None)
        if not callable(up):
            raise MigrationSourceError(
                f"{self.path}: defines no up(conn) function: add one",
                path=self.path,
                version=self.version,
            )
        down = getattr(module, "down", None)
        for role, fn in (("up", up), ("down", down)):
            problem = function_problem(fn) if callable(fn) else None
            if problem is not None:
                raise MigrationSourceError(
                    f"{self.path}: {role}(conn) {problem}", path=self.path, version=self.version
                )
        self._up = up
        self._down = down if callable(down) else None
        self._transactional = bool(getattr(module, "transactional", True))
        self._description = _first_line(module.__doc__)
        self._loader = None

    def compile(self) -> None:
        """Compile a file-based step without running it (raises on a syntax error)."""
        if self._loader is not None:
            assert self.path is not None
            self._loader.compile(self.path, self.version)

    @property
    def up(self) -> StepFunction:
        self.load()
        assert self._up is not None
        return self._up

    @property
    def down(self) -> StepFunction | None:
        self.load()
        return self._down

    @property
    def transactional(self) -> bool:
        self.load()
        return self._transactional

    @property
    def description(self) -> str:
        """First non-empty docstring line; read from the source without importing it."""
        if self._loader is not None:
            assert self.path is not None
            return docstring_first_line(self._loader.read(self.path))
        return self._description

    def __repr__(self) -> str:
        return f"Migration(version={self.version!r}, name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Migration):
            return NotImplemented
        return (self.number, self.name, self.path) == (other.number, other.name, other.path)

    def __hash__(self) -> int:
        return hash((self.number, self.name, self.path))


def check_reversible(migrations: Iterable[Migration]) -> None:
    """Raise unless each of ``migrations`` has a ``down()``; runs the modules of files.

    Raises:
        MigrationSourceError: a file that does not load.
        IrreversibleMigration: a step has no ``down()``.
    """
    irreversible = [m for m in migrations if m.down is None]
    if irreversible:
        raise IrreversibleMigration(
            f"migration {', '.join(m.version for m in irreversible)} has no down(): add one, "
            "or undo it by hand and delete its history row",
            versions=[m.version for m in irreversible],
        )


def _first_line(doc: str | None) -> str:
    for line in (doc or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def docstring_first_line(source: bytes) -> str:
    """The description of a migration file, from its source, without importing it."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    return _first_line(ast.get_docstring(tree))


@dataclass(frozen=True)
class AppliedMigration:
    """One row of the history table."""

    version: str
    name: str
    applied_at: datetime
    checksum: str | None
    execution_ms: int | None
    success: bool
    #: The integer value this version compares by.
    number: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "number", version_number(self.version))


@dataclass(frozen=True)
class Status:
    """What ``MigrationRunner.status()`` reports. It wrote nothing to get it."""

    applied: list[AppliedMigration]
    pending: list[Migration]
    changed: list[AppliedMigration]
    missing: list[AppliedMigration]
    failed: list[AppliedMigration]
    current: str | None

    @property
    def total_applied(self) -> int:
        return len(self.applied)

    @property
    def total_pending(self) -> int:
        return len(self.pending)


@dataclass
class PlannedStep:
    """One step ``upgrade()`` would apply, with the SQL it sent when tried."""

    migration: Migration
    statements: list[str] = field(default_factory=list)
    tried: bool = False

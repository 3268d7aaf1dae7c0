"""The objects sqlmig hands back: a migration step, a history row, a status, a plan.

A step's code may come from anywhere: a file kind is a :class:`StepLoader`
(``.py`` modules: :class:`~sqlmig._loader.ModuleLoader`) that turns a file into
its :class:`StepCode` when the step must run. The module is long because a
step, the code it loads and the loaders' protocol are read together.
"""

from __future__ import annotations

import ast
import inspect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from ._errors import IrreversibleMigration, MigrationSourceError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = [
    "MAX_VERSION_LENGTH",
    "AppliedMigration",
    "Migration",
    "PlannedStep",
    "Status",
    "StepCallback",
    "StepCode",
    "StepFunction",
    "StepLoader",
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
    (``"failed"``, the seconds it ran, before the error is raised; also when
    what fails is its history row, or the connection). Each step told
    ``"start"`` is told exactly one ``"done"`` or ``"failed"``. Any
    function of three positional arguments fits. What it raises is not caught;
    raised on ``"start"``, it stops the step before anything of it is written.
    """

    def __call__(self, migration: Migration, phase: StepPhase, seconds: float, /) -> None: ...


@dataclass(frozen=True)
class StepCode:
    """What a migration file runs, once loaded: its functions and how they run.

    ``locate(error)`` gives the line of the step's file where ``error``, raised
    by ``up`` or ``down``, happened, when the traceback cannot tell (a ``.sql``
    file's statement); ``None`` there, or no ``locate``, and the line is the
    last one of the file that the traceback passed through.

    ``prepare(dialect)`` readies the code for a database, named by its
    SQLAlchemy dialect name, before anything of the run is written (a ``.sql``
    file is split by its database's rules); it raises ``MigrationSourceError``
    for what that database cannot run.
    """

    up: StepFunction
    down: StepFunction | None = None
    transactional: bool = True
    description: str = ""
    locate: Callable[[BaseException], int | None] | None = None
    prepare: Callable[[str], None] | None = None


class StepLoader(Protocol):
    """How files of one kind (Python modules, ``.sql`` files, ...) become steps.

    A :class:`Migration` built with ``loader=`` and ``path=`` asks its loader
    for its code only when ``up``, ``down`` or ``transactional`` is first read;
    status and checksums need :meth:`read` and :meth:`describe` alone.
    """

    def read(self, path: str) -> bytes:
        """The bytes of file ``path`` (what its checksum is taken of)."""
        ...

    def describe(self, path: str) -> str:
        """The step's description, read from the file without running anything."""
        ...

    def check(self, path: str, version: str, dialect: str | None) -> None:
        """Raise ``MigrationSourceError`` (file and line) if the file cannot load; run nothing.

        ``dialect``: the SQLAlchemy dialect name of the database it will run on, if known.
        """
        ...

    def step(self, path: str, version: str, name: str) -> StepCode:
        """The file's code, loaded (``name``: a label unique in the source).

        Raises:
            MigrationSourceError: the file does not load, or has no ``up``.
        """
        ...


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
    a file by :mod:`sqlmig._discovery`. A file-based step loads its code (through
    its :class:`StepLoader`, such as :class:`~sqlmig._loader.ModuleLoader`) only
    when ``up``, ``down`` or ``transactional`` is first read.
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
        loader: StepLoader | None = None,
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
        self._locate: Callable[[BaseException], int | None] | None = None
        self._prepare: Callable[[str], None] | None = None
        #: held while the code loads: threads sharing the step (``upgrade_all``) run it once
        self._loading = threading.Lock() if loader is not None else None

    @property
    def label(self) -> str:
        """``version_name``, as in a file name."""
        return f"{self.version}_{self.name}"

    @property
    def loaded(self) -> bool:
        """True when ``up`` is available without importing anything."""
        return self._loader is None

    def load(self, dialect: str | None = None) -> None:
        """Load the code behind a file-based step (once), and ready it for ``dialect``
        (a SQLAlchemy dialect name) when given.

        Raises:
            MigrationSourceError: the file does not load (syntax or import error),
                has no ``up``, or holds what ``dialect`` cannot run.
        """
        if self._loader is not None:
            assert self._loading is not None
            with self._loading:
                loader = self._loader
                if loader is not None:  # not loaded by another thread while this one waited
                    assert self.path is not None  # a file-based step has its file
                    code = loader.step(self.path, self.version, f"m{self.version}_{self.name}")
                    self._up = code.up
                    self._down = code.down
                    self._transactional = code.transactional
                    self._description = code.description
                    self._locate = code.locate
                    self._prepare = code.prepare
                    self._loader = None  # last: a thread that sees None sees all of the above
        if dialect is not None and self._prepare is not None:
            self._prepare(dialect)

    def compile(self, dialect: str | None = None) -> None:
        """Check that a file-based step loads, without running it (raises on a syntax error).

        ``dialect``: the SQLAlchemy dialect name of the database it will run on, if known.
        """
        loader = self._loader  # read once: another thread may load the step meanwhile
        if loader is not None:
            assert self.path is not None
            loader.check(self.path, self.version, dialect)

    def where(self, error: BaseException | None, fn: StepFunction) -> tuple[str | None, int | None]:
        """The file and line where ``error``, raised by this step's ``fn``, happened
        (no line when there is no error).

        The loaded code's ``locate`` answers first (a ``.sql`` statement's line);
        else the last line of the step's file (or of ``fn``'s, for a step built
        in code) that the traceback passed through.
        """
        code = getattr(fn, "__code__", None)
        filename = code.co_filename if code is not None else None
        path = self.path or filename
        if error is None:
            return path, None
        if self._locate is not None:
            line = self._locate(error)
            if line is not None:
                return path, line
        return path, line_in(error, self.path or filename) or line_in(error, filename)

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
        loader = self._loader  # read once: another thread may load the step meanwhile
        if loader is not None:
            assert self.path is not None
            return loader.describe(self.path)
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


def line_in(exc: BaseException, path: str | None) -> int | None:
    """The last line of file ``path`` that ``exc``'s traceback passed through, if any."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def first_line(doc: str | None) -> str:
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
    return first_line(ast.get_docstring(tree))


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

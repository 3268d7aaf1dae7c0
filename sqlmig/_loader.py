"""Running a migration file's module: compiled and executed under a private name.

A file in a real folder is compiled by importlib's own ``SourceFileLoader``, so
its code is cached in ``__pycache__`` as an imported module's is (and not at
all under ``PYTHONDONTWRITEBYTECODE``), but as a hash-checked ``.pyc`` (PEP
552): used only for the very bytes it was compiled from, so an edit within the
same second, of the same size, never runs stale code. A cache Python's own
import validates by time and size is not trusted. A file of a package that is
no folder (a zip) is compiled from its bytes. The module runs under a private,
unique name, with no change to ``sys.path``, and is not left in ``sys.modules``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import types
import uuid
from importlib.resources.abc import Traversable
from pathlib import Path

from ._errors import MigrationSourceError
from ._migration import StepCode, docstring_first_line, first_line, function_problem, line_in

__all__ = ["ModuleLoader"]

#: The start of a ``.pyc`` of this Python checked against its source's hash (PEP 552).
_CHECKED_HASH_PYC = importlib.util.MAGIC_NUMBER + (0b11).to_bytes(4, "little")


def _hash_checked(path: str) -> bool:
    """Whether the cached code of source file ``path`` is validated by the source's hash."""
    try:
        with open(importlib.util.cache_from_source(path), "rb") as cache:
            return cache.read(len(_CHECKED_HASH_PYC)) == _CHECKED_HASH_PYC
    except (NotImplementedError, OSError):  # no cache kept by this Python, or none yet
        return False


def _code(path: str) -> types.CodeType:
    """The code of source file ``path``, from a hash-checked cache where one can be kept.

    Raises:
        SyntaxError, ValueError: the file does not compile.
    """
    loader = importlib.machinery.SourceFileLoader(os.path.basename(path), path)
    checked = _hash_checked(path)
    if not checked and not sys.dont_write_bytecode:
        import py_compile  # only to write a cache

        mode = py_compile.PycInvalidationMode.CHECKED_HASH
        try:
            py_compile.compile(path, invalidation_mode=mode, quiet=2)  # nothing on an error
        except OSError:  # a folder that cannot be written: compiled below each time
            pass
        checked = _hash_checked(path)
    if not checked:  # a cache checked by time and size may be stale: not used
        return loader.source_to_code(loader.get_data(path), path)
    try:
        code = loader.get_code(loader.name)  # checks the hash; compiles again after an edit
    except (EOFError, ValueError, TypeError):  # a damaged .pyc, or a null byte
        code = loader.source_to_code(loader.get_data(path), path)
    assert code is not None  # a source file always has code
    return code


class ModuleLoader:
    """Compiles and runs the modules of one folder or package of migration files.

    The :class:`~sqlmig._migration.StepLoader` of ``.py`` files: a module's
    ``up(conn)``, ``down(conn)``, ``transactional`` and docstring make its step.
    """

    def __init__(self, root: Traversable, package: str | None) -> None:
        self.root = root
        self.package = package
        self.prefix = f"sqlmig._loaded_{uuid.uuid4().hex[:12]}"

    def read(self, path: str) -> bytes:
        """The bytes of file ``path`` of the source."""
        if isinstance(self.root, Path):
            return Path(path).read_bytes()
        return (self.root / os.path.basename(path)).read_bytes()

    def describe(self, path: str) -> str:
        """The first line of the module's docstring, read without running it."""
        return docstring_first_line(self.read(path))

    def check(self, path: str, version: str, dialect: str | None = None) -> None:
        """Compile the module without running it (the same for every ``dialect``).

        Raises:
            MigrationSourceError: the file has a syntax error (file and line given).
        """
        self.compile(path, version)

    def step(self, path: str, version: str, name: str) -> StepCode:
        """Run the module of file ``path`` and return its ``up``, ``down`` and settings.

        Raises:
            MigrationSourceError: syntax or import error, no ``up(conn)``, or an
                ``up``/``down`` that calling would not run.
        """
        module = self.load(path, version, name)
        up = getattr(module, "up", None)
        if not callable(up):
            raise MigrationSourceError(
                f"{path}: defines no up(conn) function: add one", path=path, version=version
            )
        down = getattr(module, "down", None)
        for role, fn in (("up", up), ("down", down)):
            problem = function_problem(fn) if callable(fn) else None
            if problem is not None:
                raise MigrationSourceError(
                    f"{path}: {role}(conn) {problem}", path=path, version=version
                )
        return StepCode(
            up=up,
            down=down if callable(down) else None,
            transactional=bool(getattr(module, "transactional", True)),
            description=first_line(module.__doc__),
        )

    def compile(self, path: str, version: str) -> types.CodeType:
        """The code of file ``path``, without running it.

        Raises:
            MigrationSourceError: the file has a syntax error (file and line given).
        """
        try:
            if not isinstance(self.root, Path):
                return compile(self.read(path), path, "exec", dont_inherit=True)
            return _code(path)
        except (SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", None)
            raise MigrationSourceError(
                f"{path}:{line}: syntax error: {getattr(exc, 'msg', exc)}; fix the file",
                path=path,
                line=line,
                version=version,
            ) from exc

    def load(self, path: str, version: str, name: str) -> types.ModuleType:
        """Run the top level of file ``path`` as module ``name`` (made private) and return it.

        Raises:
            MigrationSourceError: syntax error, or the module raised while importing.
        """
        code = self.compile(path, version)
        fullname = f"{self.prefix}.{name}"
        module = types.ModuleType(fullname)
        module.__file__ = path
        module.__package__ = self.package or ""
        sys.modules[fullname] = module
        try:
            exec(code, module.__dict__)
        except Exception as exc:
            line = line_in(exc, path)
            raise MigrationSourceError(
                f"{path}:{line}: importing the migration raised "
                f"{type(exc).__name__}: {exc}; fix the module's top-level code",
                path=path,
                line=line,
                version=version,
            ) from exc
        finally:
            sys.modules.pop(fullname, None)
        return module

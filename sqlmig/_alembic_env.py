"""The version table an Alembic project's ``env.py`` names, read without running it.

Alembic records its revision in the table ``env.py`` gives
``context.configure(version_table=..., version_table_schema=...)``. sqlmig
never runs ``env.py`` (it connects, imports the application, may migrate),
so it reads the file's syntax tree instead, and understands the forms such a
value takes in practice: a string (or ``None``), a module-level name bound to
one, and an option of the configuration with its default
(``config.get_main_option("version_table", "alembic_version")``,
``get_alembic_option``, ``get_section_option``). Any other expression (an
environment variable, a function's result) cannot be known without running
the file: the project must then write the name in its configuration, under
the keys ``version_table`` and ``version_table_schema``, which take
precedence over ``env.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from pathlib import Path

from ._errors import MigrationSourceError

__all__ = ["KEYS", "named_in_env"]

#: The keywords of ``context.configure()`` that place the version table.
KEYS = ("version_table", "version_table_schema")

#: Methods of Alembic's ``Config`` that read an option: where the section (``None``:
#: the main one), the option's name and its default sit among their positional arguments.
_READERS: dict[str, tuple[int | None, int, int]] = {
    "get_main_option": (None, 0, 1),
    "get_alembic_option": (None, 0, 1),
    "get_section_option": (0, 1, 2),
}

#: Reads an option of the project's configuration: (section or None for the main one,
#: name) -> its value, None when it is not set.
Option = Callable[[str | None, str], str | None]

#: A value that is not there: the keyword is not given.
_ABSENT = object()


class _Unreadable(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def named_in_env(env_py: Path, option: Option, keys: Iterable[str] = KEYS) -> dict[str, str | None]:
    """What ``env_py`` passes ``configure()`` for each of ``keys`` (of :data:`KEYS`) it gives.

    ``option`` reads an option of the project's configuration (``None`` when
    it is not set). A key no ``configure()`` call gives is left out. A
    missing ``env.py``, or one that does not parse, names nothing (Alembic
    could not run it either).

    Raises:
        MigrationSourceError: a value is an expression sqlmig cannot read,
            or two ``configure()`` calls give one key different values.
    """
    try:
        tree = ast.parse(env_py.read_bytes(), filename=str(env_py))
    except (OSError, SyntaxError, ValueError):
        return {}
    constants = _module_constants(tree)
    wanted = set(keys)
    found: dict[str, str | None] = {}
    for call in _configure_calls(tree):
        for keyword in _keywords(call):
            if keyword.arg is None and "version_table" in wanted and _of_alembic(call):
                raise MigrationSourceError(
                    f"{env_py}:{keyword.value.lineno}: context.configure() gets **keywords, "
                    "which may name the version table, and sqlmig cannot read them without "
                    "running env.py: write version_table = ... (alembic_version if it is "
                    "not renamed) in alembic.ini's [alembic] section (or [tool.alembic])",
                    path=str(env_py),
                    line=keyword.value.lineno,
                )
            if keyword.arg not in wanted:
                continue
            try:
                value = _value(keyword.value, constants, option)
            except _Unreadable as exc:
                raise _error(env_py, exc.line, keyword.arg) from None
            if keyword.arg in found and found[keyword.arg] != value:
                raise MigrationSourceError(
                    f"{env_py}:{keyword.value.lineno}: context.configure() calls give "
                    f"{keyword.arg} two values ({found[keyword.arg]!r}, {value!r}): write the "
                    f"one this database uses as {keyword.arg} = ... in alembic.ini's [alembic] "
                    "section, which sqlmig reads first",
                    path=str(env_py),
                    line=keyword.value.lineno,
                )
            found[keyword.arg] = value
    return found


def _configure_calls(tree: ast.Module) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "configure")
            or (isinstance(node.func, ast.Name) and node.func.id == "configure")
        )
    ]


def _of_alembic(call: ast.Call) -> bool:
    """Whether ``call`` is Alembic's ``context.configure()`` (not ``structlog.configure()``):
    its ``**keywords`` may then name the version table, which cannot be known unrun."""
    func = call.func
    if isinstance(func, ast.Name):
        return True  # from alembic.context import configure
    owner = func.value if isinstance(func, ast.Attribute) else None
    return (isinstance(owner, ast.Name) and owner.id == "context") or (
        isinstance(owner, ast.Attribute) and owner.attr == "context"
    )


def _keywords(call: ast.Call) -> list[ast.keyword]:
    """The keywords of ``call``, a ``**{"key": value}`` literal read as its keywords."""
    found: list[ast.keyword] = []
    for keyword in call.keywords:
        literal = keyword.value
        if (
            keyword.arg is None
            and isinstance(literal, ast.Dict)
            and all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in literal.keys)
        ):
            found += [
                ast.keyword(arg=k.value, value=v)  # type: ignore[union-attr]
                for k, v in zip(literal.keys, literal.values, strict=True)
            ]
        else:
            found.append(keyword)
    return found


def _module_constants(tree: ast.Module) -> dict[str, object]:
    """Names bound at the top of the module to a string or ``None``, and nowhere else."""
    stored: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            stored[node.id] = stored.get(node.id, 0) + 1
    return {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and stored.get(node.targets[0].id) == 1
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str | None)
    }


def _value(node: ast.expr, constants: dict[str, object], option: Option) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str | None):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        value = constants[node.id]
        return value if isinstance(value, str) else None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _READERS
    ):
        at_section, at_name, at_default = _READERS[node.func.attr]
        section = None if at_section is None else _argument(node, at_section, "section", constants)
        name = _argument(node, at_name, "name", constants)
        default = _argument(node, at_default, "default", constants)
        if not (
            isinstance(name, str)
            and isinstance(section, str | None)
            and (default is _ABSENT or isinstance(default, str | None))
        ):
            raise _Unreadable(node.lineno)
        value = option(section, name)
        if value is not None:
            return value
        return None if default is _ABSENT else default  # type: ignore[return-value]
    raise _Unreadable(node.lineno)


def _argument(call: ast.Call, position: int, keyword: str, constants: dict[str, object]) -> object:
    """The literal value of an argument, :data:`_ABSENT` when not given; raises when
    it is given as an expression."""
    node: ast.expr | None = None
    if len(call.args) > position:
        node = call.args[position]
    for kw in call.keywords:
        if kw.arg == keyword:
            node = kw.value
    if node is None:
        return _ABSENT
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    raise _Unreadable(node.lineno)


def _error(env_py: Path, line: int, key: str) -> MigrationSourceError:
    return MigrationSourceError(
        f"{env_py}:{line}: context.configure() gets {key} from an expression sqlmig cannot "
        "read without running env.py: write the name this database uses as "
        f"{key} = ... in alembic.ini's [alembic] section (or [tool.alembic])",
        path=str(env_py),
        line=line,
    )

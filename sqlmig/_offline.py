"""A stand-in connection that writes a step's statements as SQL text, connecting to nothing.

While a step is rendered for a script (:mod:`sqlmig._sql_script`), its
``up(conn)`` or ``down(conn)`` gets a :class:`ScriptConnection`: it compiles
every statement it is given for the target dialect, bound values written in as
literals, and keeps the text. ``sqlmig.ops`` writes through Alembic's offline
("as_sql") mode into the same list. What only a database can answer (a
result's rows or row count, reflection, the driver's connection) raises
:class:`NeedsData`.

The module is long because a stand-in must answer each part of a
``Connection`` a step may use, and driver SQL must be read as each kind of
driver reads it (placeholders, ``%%``, literals) to be written as the
database would have received it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from sqlalchemy import URL, create_mock_engine, literal
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import CompileError
from sqlalchemy.schema import ExecutableDDLElement
from sqlalchemy.sql import ClauseElement, visitors
from sqlalchemy.sql.dml import ValuesBase
from sqlalchemy.sql.elements import BindParameter, TextClause
from sqlalchemy.sql.sqltypes import NullType
from sqlalchemy.types import JSON, UserDefinedType

from ._dialects import profile_named
from ._dialects.sql_syntax import SqlSyntax

__all__ = ["NeedsData", "Refused", "ScriptConnection", "Unwritable", "tidy"]

#: The parts of ``exec_driver_sql`` text that matter to a driver: string literals, quoted
#: names and comments (groups of their own), ``%%``, ``%s``, ``%(name)s``, ``?`` and ``:name``.
_DRIVER_SQL = re.compile(
    r"""(?P<quoted>'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/)"""
    r"|%%|%s|%\((?P<pyformat>\w+)\)s|\?|(?<![:\w]):(?P<named>\w+)",
    re.DOTALL,
)
#: What a ``format``/``pyformat`` driver (psycopg, PyMySQL) reads inside a string literal too.
_PERCENT = re.compile(r"%%|%s|%\((?P<pyformat>\w+)\)s")
#: Each ``%`` such a driver reads, in order: placeholders, ``%%``, or one that starts neither.
_PLACEHOLDERS = re.compile(r"%%|%[sbt]|%\(\w+\)[sbt]|(?P<lone>%)")


class NeedsData(Exception):
    """A step asked for what only a database can answer; ``what`` says what it was."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class Refused(Exception):
    """A step tried to end the script's transaction (commit, roll back, close); says how."""


class Unwritable(Exception):
    """A statement that fails when the step runs, or sends what its text does not say:
    no script can hold it; the message says why and how to write it."""


class _NoRows:
    """The result of a rendered statement: there is no database, so nothing to read."""

    def __init__(self, conn: ScriptConnection, statement: str) -> None:
        self._conn = conn
        self._statement = _short(statement)

    def _needs(self, what: str) -> NeedsData:
        return self._conn.needs(f"reads the {what} of {self._statement!r}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        what = "row count" if name == "rowcount" else "rows"
        raise self._needs(what)

    def __iter__(self) -> Iterator[Any]:
        raise self._needs("rows")

    def close(self) -> None:
        """Nothing to release."""


class _Savepoint:
    """What ``begin_nested()`` returns: its ``SAVEPOINT`` written at once, then its
    ``RELEASE`` (``commit()``, or the end of a ``with`` block) or its ``ROLLBACK TO``
    (``rollback()``, ``close()``, or an error leaving the block)."""

    def __init__(self, conn: ScriptConnection, name: str) -> None:
        self._conn = conn
        self._name = name
        self.is_active = True
        conn.statements.append(f"SAVEPOINT {name}")

    def _end(self, statement: str) -> None:
        if self.is_active:
            self.is_active = False
            self._conn._savepoints -= 1
            self._conn.statements.append(statement)

    def commit(self) -> None:
        self._end(f"RELEASE SAVEPOINT {self._name}")

    def rollback(self) -> None:
        self._end(f"ROLLBACK TO SAVEPOINT {self._name}")

    def close(self) -> None:
        self.rollback()

    def __enter__(self) -> _Savepoint:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.rollback()


class _Output:
    """Where Alembic's offline mode writes: each ``write()`` is one statement and its ``;``."""

    def __init__(self, statements: list[str]) -> None:
        self._statements = statements

    def write(self, text: str) -> None:
        statement = tidy(text.strip().removesuffix(";"))
        if statement:
            self._statements.append(statement)

    def flush(self) -> None:
        """Nothing is buffered."""


class ScriptConnection:
    """What a step's ``conn`` is while its SQL is rendered: statements in, text out.

    Statements (Core constructs, ``text()``, DDL, ``metadata.create_all(conn)``,
    ``exec_driver_sql``) are compiled for ``dialect`` with their bound values
    as literals and kept in :attr:`statements`. Whatever must be read from a
    database (a result's rows or row count, reflection, the driver's
    connection) raises :class:`NeedsData`, and :attr:`needed` keeps it even if
    the step catches the error.
    """

    def __init__(self, dialect_name: str) -> None:
        url = URL.create(dialect_name)
        #: how the database's driver reads ``exec_driver_sql`` text (``%s`` or ``?``)
        self.driver_paramstyle: str = create_mock_engine(url, self._mock_execute).dialect.paramstyle
        # compiled as plain SQL, not for a driver: a "format" paramstyle would write each
        # "%" of a literal or text() twice (the driver's escape), which a script must not
        engine = create_mock_engine(url, self._mock_execute, paramstyle="named")
        self.engine = engine
        self.dialect: Dialect = engine.dialect
        self._syntax = profile_named(dialect_name).sql_syntax
        self.statements: list[str] = []
        #: What the step needed from a database, first first (empty: it rendered).
        self.needed: list[str] = []
        #: Where ``sqlmig.ops`` tells Alembic to write in its offline mode.
        self.sql_output = _Output(self.statements)
        self.info: dict[str, Any] = {}
        self._savepoints = 0

    def needs(self, what: str) -> NeedsData:
        self.needed.append(what)
        return NeedsData(what)

    # -- what a Connection does ------------------------------------------------

    def execute(
        self, statement: Any, parameters: Any = None, execution_options: Any = None
    ) -> _NoRows:
        for sql in self._render(statement, parameters):
            self.statements.append(sql)
        return _NoRows(self, self.statements[-1] if self.statements else "")

    def exec_driver_sql(
        self, statement: str, parameters: Any = None, execution_options: Any = None
    ) -> _NoRows:
        if execution_options and execution_options.get("no_parameters"):
            # final text (a .sql migration's statement): written as it is, to the letter
            self.statements.append(statement.strip())
            return _NoRows(self, statement)
        sets = parameters if _many(parameters) else [parameters]
        for one in sets:
            self.statements.append(self._substituted(statement, one))
        return _NoRows(self, statement)

    def scalar(self, statement: Any, parameters: Any = None, **kw: Any) -> Any:
        raise self.needs(f"reads the result of {self._rendered_one(statement, parameters)!r}")

    def scalars(self, statement: Any, parameters: Any = None, **kw: Any) -> Any:
        raise self.needs(f"reads the rows of {self._rendered_one(statement, parameters)!r}")

    def _rendered_one(self, statement: Any, parameters: Any) -> str:
        rendered = self._render(statement, parameters)
        return _short(rendered[0]) if rendered else ""

    @property
    def connection(self) -> Any:
        raise self.needs("uses the driver's connection")

    def get_isolation_level(self) -> Any:
        raise self.needs("reads the isolation level")

    def in_transaction(self) -> bool:
        return True

    def in_nested_transaction(self) -> bool:
        return self._savepoints > 0

    def execution_options(self, **kw: Any) -> ScriptConnection:
        return self

    def schema_for_object(self, obj: Any) -> str | None:
        return getattr(obj, "schema", None)

    def begin_nested(self) -> _Savepoint:
        """A savepoint, written into the script; released (or rolled back to) as a
        ``NestedTransaction`` is: at the end of its ``with`` block, or by the step."""
        self._savepoints += 1
        prepare = self.dialect.identifier_preparer
        return _Savepoint(self, prepare.quote(f"sqlmig_sp_{self._savepoints}"))

    def begin(self) -> Any:
        raise Refused("begins a transaction of its own")

    def commit(self) -> None:
        raise Refused("commits")

    def rollback(self) -> None:
        raise Refused("rolls back")

    def close(self) -> None:
        raise Refused("closes its connection")

    def _run_ddl_visitor(self, visitorcallable: Any, element: Any, **kwargs: Any) -> None:
        """``metadata.create_all(conn)``, ``table.drop(conn)``: every statement, none checked."""
        kwargs["checkfirst"] = False
        visitorcallable(dialect=self.dialect, connection=self, **kwargs).traverse_single(element)

    def _mock_execute(self, statement: Any, *multiparams: Any, **params: Any) -> None:
        self.execute(statement, multiparams[0] if multiparams else None)

    # -- rendering -------------------------------------------------------------

    def _render(self, statement: Any, parameters: Any) -> list[str]:
        if isinstance(statement, str):
            raise TypeError(
                "a plain string is not executable: wrap it in text(), or use exec_driver_sql()"
            )
        if isinstance(statement, ExecutableDDLElement):
            return [tidy(str(statement.compile(dialect=self.dialect)))]
        for clause in visitors.iterate(statement):
            if isinstance(clause, TextClause):
                _check_text(clause.text, self._syntax)
        sets = parameters if _many(parameters) else [parameters]
        return [self.literal_sql(_bound(statement, one, self.dialect)) for one in sets]

    def literal_sql(self, statement: ClauseElement) -> str:
        """``statement`` compiled for the dialect, its bound values written in."""
        try:
            compiled = statement.compile(
                dialect=self.dialect, compile_kwargs={"literal_binds": True}
            )
        except CompileError as exc:
            raise self.needs(f"sends a value SQLAlchemy cannot write as SQL ({exc})") from exc
        return tidy(str(compiled))

    def _substituted(self, sql: str, parameters: Any) -> str:
        """Driver SQL as the database receives it: placeholders replaced by literals
        (unknown ones left as they are), read as the target's driver reads them.

        ``format``/``pyformat`` drivers (psycopg, PyMySQL) read ``%s``,
        ``%(name)s`` and ``%%`` (a ``%``) everywhere, string literals included,
        and even with no parameters (SQLAlchemy always passes some); a ``?``
        is no placeholder there (PostgreSQL's ``jsonb ? 'key'``). SQLite's
        driver reads ``?`` and ``:name`` outside literals, and ``%`` is itself.
        Other spellings outside literals are written in too, for a step
        written for another driver.
        """
        percent = self.driver_paramstyle in ("format", "pyformat")
        if not (parameters or percent):
            return tidy(sql)
        lone = next((m for m in _PLACEHOLDERS.finditer(sql) if m.group("lone")), None)
        if percent and lone is not None:
            around = _short(sql[max(0, lone.start() - 20) : lone.end() + 20])
            raise Unwritable(
                f"sends driver SQL with a % that starts no placeholder (...{around}...), "
                "which psycopg and PyMySQL refuse when the step runs; write %% for a %"
            )
        positional = iter(parameters) if isinstance(parameters, (list, tuple)) else None
        missing = object()

        def given(found: str, key: str | None) -> str:
            value: Any = missing
            if key is not None and isinstance(parameters, dict):
                value = parameters.get(key, missing)
            elif key is None and positional is not None:
                value = next(positional, missing)
            if value is not missing:
                return self.literal_sql(literal(value))
            if percent and found.startswith("%"):  # the driver fails, or sends garbage
                raise Unwritable(
                    f"sends driver SQL with the placeholder {found} and no value for it "
                    "(psycopg and PyMySQL read it inside string literals too); pass the "
                    "value, or write %% for a %"
                )
            return found

        def in_literal(match: re.Match[str]) -> str:
            found = match.group(0)
            return "%" if found == "%%" else given(found, match.group("pyformat"))

        def part(match: re.Match[str]) -> str:
            found = match.group(0)
            if match.group("quoted") is not None:
                return _PERCENT.sub(in_literal, found) if percent else found
            if found == "%%":
                return "%" if percent else found
            if found == "?" and percent:
                return found
            return given(found, match.group("pyformat") or match.group("named"))

        return tidy(_DRIVER_SQL.sub(part, sql))


def _short(statement: str) -> str:
    """A statement on one line, cut short: enough to recognise it in a message."""
    line = " ".join(statement.split())
    return line if len(line) <= 80 else line[:77] + "..."


def tidy(statement: str) -> str:
    """A compiled statement as a script shows it: no tabs, no trailing spaces."""
    lines = statement.replace("\t", "    ").strip().splitlines()
    return "\n".join(line.rstrip() for line in lines)


def _many(parameters: Any) -> bool:
    """Whether ``parameters`` is several sets (an ``executemany``)."""
    return (
        isinstance(parameters, list)
        and bool(parameters)
        and isinstance(parameters[0], (dict, tuple, list))
    ) or (isinstance(parameters, tuple) and bool(parameters) and isinstance(parameters[0], dict))


def _bound(statement: Any, parameters: dict[str, Any] | None, dialect: Dialect) -> Any:
    """``statement`` with ``parameters`` in it: columns' values, else bound parameters."""
    given = dict(parameters or {})
    if isinstance(statement, ValuesBase) and hasattr(statement.table, "c"):
        columns = statement.table.c
        # values(doc=...) in the statement: typed by their column when it is compiled
        values: dict[Any, Any] = {
            key: value.value
            for key, value in (statement._values or {}).items()
            if isinstance(value, BindParameter)
            and isinstance(value.type, NullType)
            and str(getattr(key, "key", key)) in columns
        }
        values.update({k: v for k, v in given.items() if k in columns})
        given = {k: v for k, v in given.items() if k not in columns}
        if values:
            statement = statement.values(
                {k: _typed_value(v, columns[getattr(k, "key", k)].type) for k, v in values.items()}
            )
    return _with_values(statement, given, dialect)


def _typed_value(value: Any, type_: Any) -> Any:
    """A value for a column, typed by the value when the column's type is unknown."""
    if isinstance(value, ClauseElement):
        return value
    return literal(value) if isinstance(type_, NullType) else literal(value, type_)


def _with_values(statement: Any, given: dict[str, Any], dialect: Dialect) -> Any:
    """``statement`` with its bound parameters set from ``given``, and each of
    unknown type (``text()``, ``column()``) typed by its value, so that it can
    be written as a literal; a value of a type SQLAlchemy writes no literal of
    (JSON, binary) is written as what its driver would receive."""

    def bind(parameter: BindParameter[Any]) -> None:
        if parameter.key in given:
            parameter.value = given[parameter.key]
            parameter.callable = None
            parameter.required = False
        elif parameter.required and parameter.value is None and parameter.callable is None:
            # SQLAlchemy refuses to send the statement when the step runs: so does the script
            raise Unwritable(
                f"has no value for the bind parameter :{parameter.key} (SQLAlchemy refuses "
                "the statement when the step runs); pass one with the statement"
            )
        if isinstance(parameter.type, NullType) and parameter.value is not None:
            parameter.type = literal(parameter.value).type
        _as_sent(parameter, dialect)

    return visitors.cloned_traverse(statement, {}, {"bindparam": bind})


def _check_text(sql: str, syntax: SqlSyntax) -> None:
    """Refuse a ``text()`` whose ``:name`` stands inside quotes or a comment.

    SQLAlchemy takes every ``:name`` of a ``text()`` for a bind parameter,
    inside a string literal too: what the database then receives depends on its
    driver (a ``$1``, the value inside the quotes, an error), never ``:name``.
    ``\\:name`` is the characters themselves, in the script as when the step runs.

    Raises:
        Unwritable: such a ``:name``, with where it stands and how to write it.
    """
    if ":" not in sql:
        return
    for part in _unparsed(syntax).finditer(sql):
        found = TextClause._bind_params_regex.search(part.group())
        if found is None:
            continue
        where = part.group().strip()
        kind = "comment" if where.startswith(("--", "/*", "#")) else "quoted text"
        raise Unwritable(
            f"writes {found.group()} inside the {kind} {_short(where)!r} of a text(), which "
            f"takes it for a bind parameter there too (when the step runs, the database "
            f"never receives {found.group()!r}); write \\{found.group()} for the characters "
            "themselves, or bind the whole string as a parameter"
        )


@cache
def _unparsed(syntax: SqlSyntax) -> re.Pattern[str]:
    """What a database reads as no code: string literals, quoted names, comments."""
    single = r"'(?:[^'\\]|\\.)*'" if syntax.backslash_escapes else r"'[^']*'"
    double = r'"(?:[^"\\]|\\.)*"' if syntax.double_quoted_strings else r'"[^"]*"'
    parts = [r"(?<!\w)[eE]'(?:[^'\\]|\\.)*'"] if syntax.escape_strings else []
    dash = r"--(?=\s|$)" if syntax.dash_comment_needs_blank else "--"
    code = r"(?!M?!)" if syntax.executable_comments else ""  # /*! ... */ runs on MySQL
    parts += [single, double, dash + r"[^\n]*", r"/\*" + code + r".*?\*/"]
    parts += [r"`[^`]*`"] if syntax.backquotes else []
    parts += [r"\[[^\]]*\]"] if syntax.brackets else []
    parts += [r"#[^\n]*"] if syntax.hash_comments else []
    if syntax.dollar_quotes:
        parts.append(r"(?<![\w$])\$(?P<tag>(?:[^\W\d]\w*)?)\$.*?\$(?P=tag)\$")
    return re.compile("|".join(parts), re.DOTALL)


def _as_sent(parameter: BindParameter[Any], dialect: Dialect) -> None:
    """Where SQLAlchemy has no literal of ``parameter``'s type for its value (JSON, binary,
    an interval on SQLite), the parameter becomes what the type sends the driver (JSON
    text, bytes, a number), typed so that it can be written."""
    value, type_ = parameter.value, parameter.type
    if parameter.expanding or (value is None and not type_.should_evaluate_none):
        return
    if isinstance(value, (bytes, bytearray, memoryview)):  # SQLAlchemy would write text
        parameter.value, parameter.type = bytes(value), _Bytes()
        return
    try:
        written = type_.dialect_impl(dialect).literal_processor(dialect)
        if written is not None:
            written(value)
            return  # SQLAlchemy writes it (as the type would send it)
    except Exception:
        pass
    impl = type_.dialect_impl(dialect)
    if isinstance(impl, JSON):  # its text (psycopg is handed a wrapper of the value)
        serialize = getattr(dialect, "_json_serializer", None) or json.dumps
        null = value is None and impl.none_as_null
        sent = None if null else serialize(None if value is JSON.NULL else value)
    else:
        process = impl.bind_processor(dialect)
        sent = process(value) if process is not None else value
    if isinstance(sent, (bytes, bytearray, memoryview)):
        parameter.value, parameter.type = bytes(sent), _Bytes()
    elif sent is None or isinstance(sent, (str, int, float)):
        parameter.value = sent
        parameter.type = NullType() if sent is None else literal(sent).type


class _Bytes(UserDefinedType[bytes]):
    """Bytes written as a literal: ``X'00ff'``, PostgreSQL's ``decode('00ff', 'hex')``."""

    cache_ok = True

    def literal_processor(self, dialect: Dialect) -> Callable[[bytes], str]:
        if dialect.name == "postgresql":
            return lambda value: f"decode('{value.hex()}', 'hex')"
        return lambda value: f"X'{value.hex()}'"

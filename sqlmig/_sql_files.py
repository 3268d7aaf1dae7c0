"""Migrations written in SQL: the ``NNN_name.sql`` file format and its steps.

A file holds an up section and, optionally, a down section, each begun by a
marker line::

    -- Add the users table.
    -- migrate:up
    CREATE TABLE users (id INTEGER PRIMARY KEY);

    -- migrate:down
    DROP TABLE users;

A marker is a line that starts with ``-- migrate:up`` or ``-- migrate:down``
(at the start of the line); ``transaction:false`` after it marks a step that
runs outside a transaction. A line that starts so is always a marker: a
string, quoted name or comment left open across it is an error. The comment
lines above the first marker give the description.

The sections are found without knowing the database (so ``status`` and the
checksums never need one); each section is split into statements by its
database's rules (:mod:`sqlmig._sql_split`) when the step is readied for a
database, before anything of a run is written, and each statement is sent
through the step's connection, one ``exec_driver_sql`` each: the guard, the
transaction, dry runs and SQL scripts see them as a Python step's.

The module is long because every way a file can be malformed has its own
message, each naming the file, the line and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from ._dialects import profile_named
from ._dialects.sql_syntax import SqlSyntax
from ._errors import SqlFileError
from ._migration import StepCode, StepFunction
from ._sql_split import Statement, UnterminatedSql, split
from ._statements import transaction_control

__all__ = ["SqlFileLoader", "SqlSections", "read_sections"]

#: A marker line: ``-- migrate:WORD options`` at the start of a line.
_MARKER = re.compile(r"^--[ \t]*migrate:(?P<word>\S*)(?P<options>[^\n]*)$", re.MULTILINE)
#: A line that reads as a marker to a person but not to sqlmig (blanks before the
#: ``--``, ``Migrate:``, MySQL's ``#``): a comment, so the down section would run
#: with the up one.
_NEAR_MARKER = re.compile(
    r"^[ \t]*(?:--|#)[ \t]*migrate[ \t]*:[ \t]*(?:up|down)\b[^\n]*", re.MULTILINE | re.IGNORECASE
)
_SECTIONS = ("up", "down")
#: What an executed statement's error carries: the line of the statement in its file.
_LINE_ATTRIBUTE = "sqlmig_sql_line"
#: How much of a file :func:`description` reads: the comments above the markers.
_HEAD_BYTES = 8192
#: The only statement a file may not hold: the mysql client's, not SQL.
_DELIMITER = re.compile(r"delimiter\b", re.IGNORECASE)


@dataclass(frozen=True)
class Section:
    """One section of a file: its marker's line and the text below it."""

    action: str
    marker_line: int
    text: str
    transactional: bool | None  # None: the marker does not say

    @property
    def first_line(self) -> int:
        """The line the section's text starts on (the one after its marker)."""
        return self.marker_line + 1


@dataclass(frozen=True)
class SqlSections:
    """A ``.sql`` file's parts, found without knowing the database."""

    path: str
    version: str
    preamble: str
    up: Section
    down: Section | None
    transactional: bool

    def statements(self, section: Section, syntax: SqlSyntax) -> list[Statement]:
        """The statements of ``section`` by ``syntax``'s rules.

        Raises:
            SqlFileError: text left open, an empty up section, a ``DELIMITER`` line.
        """
        try:
            found = split(section.text, syntax, section.first_line)
        except UnterminatedSql as exc:
            raise self.error(
                exc.line,
                f"{exc} (before {self._next_marker(section)}): close it, "
                "or start the line that follows with something other than -- migrate:",
            ) from None
        for statement in found:
            if _DELIMITER.match(statement.sql):
                raise self.error(
                    statement.line,
                    "DELIMITER is a command of the mysql client, not SQL: remove the "
                    "DELIMITER lines and end the body with END; (sqlmig splits "
                    "BEGIN ... END bodies itself)",
                )
            control = transaction_control(statement.sql)
            if control is not None:  # refused before the run, not half way through the step
                raise self.error(
                    statement.line,
                    f"{control} ends or begins a transaction, and sqlmig runs the step in its own: "
                    "remove it (each step is committed for you; write transaction:false on the "
                    "markers for a step that cannot run in a transaction)"
                    if self.transactional
                    else f"{control} in a transaction:false step, whose statements are "
                    "each committed as they complete: remove it",
                )
        if section.action == "up" and not found:
            raise self.error(
                section.marker_line,
                "the up section holds no statement: write the SQL below -- migrate:up",
            )
        return found

    def check(self, syntax: SqlSyntax) -> dict[str, list[Statement]]:
        """Split every part by ``syntax``'s rules: the statements of each section by action.

        Raises:
            SqlFileError: see :meth:`statements`, and SQL above the first marker.
        """
        first = min(s.marker_line for s in (self.up, self.down) if s is not None)
        try:
            stray = split(self.preamble, syntax)
        except UnterminatedSql as exc:
            raise self.error(exc.line, f"{exc} (before the marker on line {first})") from None
        if stray:
            raise self.error(
                stray[0].line,
                f"SQL above the first marker (line {first}): move it below -- migrate:up, "
                "or make it a comment",
            )
        return {
            section.action: self.statements(section, syntax)
            for section in (self.up, self.down)
            if section is not None
        }

    def _next_marker(self, section: Section) -> str:
        other = self.down if section is self.up else self.up
        if other is not None and other.marker_line > section.marker_line:
            return f"the -- migrate:{other.action} on line {other.marker_line}"
        return "the end of the file"

    def error(self, line: int | None, what: str) -> SqlFileError:
        where = f"{self.path}:{line}" if line else self.path
        return SqlFileError(f"{where}: {what}", path=self.path, line=line, version=self.version)


def decode(data: bytes, path: str, version: str) -> str:
    """A file's text: UTF-8 (a byte order mark dropped), line endings made ``\\n``.

    The checksum counts ``\\r\\n`` and ``\\n`` as one (:mod:`sqlmig._checksums`),
    so the statements run must not differ between them either.

    Raises:
        SqlFileError: the bytes are not UTF-8.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SqlFileError(
            f"{path}:{line}: the file is not UTF-8 (byte {exc.start}): save it as UTF-8",
            path=path,
            line=line,
            version=version,
        ) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def read_sections(data: bytes, path: str, version: str) -> SqlSections:
    """The sections of a ``.sql`` file's bytes.

    Raises:
        SqlFileError: not UTF-8, no up section, a section twice, an unknown
            marker or option, or markers that disagree on ``transaction``.
    """
    text = decode(data, path, version)
    for near in _NEAR_MARKER.finditer(text):
        if not _MARKER.match(text, near.start()):
            line = text.count("\n", 0, near.start()) + 1
            raise SqlFileError(
                f"{path}:{line}: {near.group().strip()!r} is no marker, and its statements "
                "would run in the section above it: write -- migrate:up or -- migrate:down "
                "in lower case at the start of the line",
                path=path,
                line=line,
                version=version,
            )
    markers = list(_MARKER.finditer(text))
    sections: dict[str, Section] = {}
    for index, marker in enumerate(markers):
        line = text.count("\n", 0, marker.start()) + 1
        word = marker["word"]
        if word not in _SECTIONS:
            raise SqlFileError(
                f"{path}:{line}: unknown marker -- migrate:{word}: "
                "use -- migrate:up or -- migrate:down",
                path=path,
                line=line,
                version=version,
            )
        if word in sections:
            raise SqlFileError(
                f"{path}:{line}: a second -- migrate:{word} (the first is on line "
                f"{sections[word].marker_line}): a file holds one {word} section",
                path=path,
                line=line,
                version=version,
            )
        end = markers[index + 1].start() if index + 1 < len(markers) else len(text)
        body = text[marker.end() + 1 : end]
        sections[word] = Section(
            word, line, body, _transaction(marker["options"], path, line, version)
        )
    up = sections.get("up")
    if up is None:
        raise SqlFileError(
            f"{path}:1: no -- migrate:up line: put one above the statements of the step",
            path=path,
            line=1,
            version=version,
        )
    down = sections.get("down")
    transactional = up.transactional is not False
    if down is not None and down.transactional not in (None, transactional):
        raise SqlFileError(
            f"{path}:{down.marker_line}: the down section says transaction:"
            f"{str(down.transactional).lower()}, the up section does not: a step runs both "
            "the same way, so write transaction:false on both markers or on neither",
            path=path,
            line=down.marker_line,
            version=version,
        )
    preamble = text[: markers[0].start()]
    return SqlSections(path, version, preamble, up, down, transactional)


def _transaction(options: str, path: str, line: int, version: str) -> bool | None:
    """What a marker line's options say of the transaction (None: nothing)."""
    said: bool | None = None
    for option in options.split():
        if option.lower() in ("transaction:false", "transaction:true"):
            said = option.lower() == "transaction:true"
            continue
        raise SqlFileError(
            f"{path}:{line}: unknown option {option!r} on the marker: the only one is "
            "transaction:false",
            path=path,
            line=line,
            version=version,
        )
    return said


def description(data: bytes) -> str:
    """The first comment line above the first marker, without its ``--``.

    Only the file's head is decoded: a large file's statements are not needed.
    """
    text = data[:_HEAD_BYTES].decode("utf-8-sig", errors="replace")
    for raw in text.splitlines():
        line = raw.strip()
        if _MARKER.match(line) or not line.startswith("--"):
            return ""
        said = line.lstrip("-").strip()
        if said:
            return said
    return ""


class SqlFileLoader:
    """The :class:`~sqlmig._migration.StepLoader` of ``.sql`` files of one folder or package."""

    def __init__(self, root: Traversable) -> None:
        self.root = root

    def read(self, path: str) -> bytes:
        """The bytes of file ``path`` of the source."""
        if isinstance(self.root, Path):
            return Path(path).read_bytes()
        return (self.root / Path(path).name).read_bytes()

    def describe(self, path: str) -> str:
        return description(self.read(path))

    def check(self, path: str, version: str, dialect: str | None) -> None:
        """Read the file's sections, and split them for ``dialect`` when it is known.

        Raises:
            SqlFileError: what :func:`read_sections` and :meth:`SqlSections.check` raise.
        """
        sections = read_sections(self.read(path), path, version)
        if dialect is not None:
            sections.check(_syntax(dialect))

    def step(self, path: str, version: str, name: str) -> StepCode:
        """The file's up (and down) as functions running its statements in order.

        Raises:
            SqlFileError: what :func:`read_sections` raises.
        """
        data = self.read(path)
        sections = read_sections(data, path, version)
        split_for: dict[SqlSyntax, dict[str, list[Statement]]] = {}

        def statements(syntax: SqlSyntax) -> dict[str, list[Statement]]:
            """The file split by ``syntax``'s rules, once: readied, then run."""
            found = split_for.get(syntax)
            if found is None:
                found = split_for[syntax] = sections.check(syntax)
            return found

        def prepare(dialect: str) -> None:
            statements(_syntax(dialect))

        return StepCode(
            up=_runner(statements, "up"),
            down=_runner(statements, "down") if sections.down is not None else None,
            transactional=sections.transactional,
            description=description(data),
            locate=lambda error: getattr(error, _LINE_ATTRIBUTE, None),
            prepare=prepare,
        )


def _syntax(dialect: str) -> SqlSyntax:
    return profile_named(dialect).sql_syntax


def _runner(
    statements: Callable[[SqlSyntax], dict[str, list[Statement]]], action: str
) -> StepFunction:
    """The function that runs the ``action`` section's statements on the step's connection."""

    def run(conn: Any) -> None:
        for statement in statements(_syntax(conn.dialect.name))[action]:
            try:
                # no_parameters: the text is final, a % or ? in it is no placeholder
                conn.exec_driver_sql(statement.sql, execution_options={"no_parameters": True})
            except Exception as exc:
                try:
                    setattr(exc, _LINE_ATTRIBUTE, statement.line)
                except AttributeError:  # an error type that takes no attributes
                    pass
                raise

    run.__qualname__ = run.__name__ = action
    return run

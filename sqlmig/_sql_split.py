"""Splitting SQL text into statements, exactly, by the lexical rules of its database.

A statement ends at a ``;`` that is code: not inside a string literal, a quoted
name, a comment, a PostgreSQL dollar quote, parentheses, or the body of a
trigger, function, procedure or event (``CREATE ... BEGIN ... END``, with
``CASE ... END`` inside it, and MariaDB's ``BEGIN NOT ATOMIC ... END``). What
differs between databases is a
:class:`~sqlmig._dialects.sql_syntax.SqlSyntax`, data that each dialect
profile holds (:mod:`sqlmig._dialects`): backslash escapes in strings,
``E'...'`` strings, nested block comments, dollar quotes, ``#`` comments,
backquoted and bracketed names, MySQL's executable comments.

Each statement is given without the comments and blanks around it (comments
inside it are kept), with the line of the text it starts on. Text that is not
closed (a string, quoted name, block comment or dollar quote) raises
:class:`UnterminatedSql` with the line it was opened on.

The scanner is a regular expression that jumps from one character that can
matter to the next, so ordinary text costs one match per run of it; the words
of a statement are read only at its start and inside routine bodies. The module
is long because the rules of three databases' SQL text are one scanner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._dialects.sql_syntax import STANDARD_SQL, SqlSyntax, quoted

__all__ = ["Statement", "UnterminatedSql", "split"]


_ESCAPED = quoted("'", backslash=True)
_BACKQUOTED = quoted("`", backslash=False)
_BRACKETED = re.compile(r"[^\]]*\]")
_DOLLAR = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_WORD = re.compile(r"[^\W\d][\w$]*")
_WORD_CHAR = re.compile(r"[\w$]")
_NESTED = re.compile(r"/\*|\*/")

#: What a ``CREATE`` (or ``ALTER``) defines when its body may hold ``;``.
_ROUTINES = frozenset({"trigger", "function", "procedure", "event"})
#: Words that may stand between ``CREATE`` and what it defines.
_MODIFIERS = frozenset(
    {"or", "replace", "definer", "current_user", "temp", "temporary", "aggregate", "constraint"}
)
#: What a ``CREATE DEFINER = ...`` defines when it is no routine.
_NOT_ROUTINES = frozenset({"view", "algorithm", "sql"})
#: ``END IF``, ``END LOOP``...: these close what was not counted as a block.
_UNCOUNTED_ENDS = frozenset({"if", "loop", "while", "repeat", "for"})
#: How many words of a statement's head are read to find what it defines.
_HEAD_WORDS = 12


@dataclass(frozen=True)
class Statement:
    """One statement of a SQL text: its text and the line it starts on (1-based)."""

    sql: str
    line: int


class UnterminatedSql(Exception):
    """A string, quoted name, block comment, dollar quote or routine body is never closed."""

    def __init__(self, what: str, line: int) -> None:
        super().__init__(f"{what} opened on line {line} is never closed")
        self.what = what
        self.line = line


@dataclass
class _Statement:
    """The statement being read: where its code starts and ends, and its block depth."""

    start: int = -1
    end: int = -1
    parens: int = 0
    depth: int = 0
    #: None: the head is still being read; True/False: a routine body may follow.
    routine: bool | None = None
    head: list[str] = field(default_factory=list)
    #: The next word is the CASE of an END CASE, already counted.
    skip: bool = False


def split(sql: str, syntax: SqlSyntax = STANDARD_SQL, first_line: int = 1) -> list[Statement]:
    """The statements of ``sql`` in order; ``first_line`` is the line ``sql`` starts on.

    Raises:
        UnterminatedSql: a string, quoted name, block comment or dollar quote is
            not closed (its line given).
    """
    return _Scanner(sql, syntax, first_line).statements()


class _Scanner:
    """One pass over a SQL text (see :func:`split`)."""

    def __init__(self, sql: str, syntax: SqlSyntax, first_line: int) -> None:
        self.sql = sql
        self.syntax = syntax
        self.first_line = first_line
        self.found: list[Statement] = []
        self.current = _Statement()
        self._line_pos = 0
        self._line = first_line

    def line_at(self, pos: int) -> int:
        """The line of position ``pos`` (positions asked for only grow, but for errors)."""
        if pos < self._line_pos:
            return self.first_line + self.sql.count("\n", 0, pos)
        self._line += self.sql.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line

    def statements(self) -> list[Statement]:
        sql, size = self.sql, len(self.sql)
        special = self.syntax.special
        pos = 0
        while pos < size:
            st = self.current
            if st.routine is not False:  # words matter: the head, or a routine body
                pos = self._words_until_special(pos)
                if pos >= size:
                    break
            else:  # the rest of an ordinary statement: one search per character that matters
                match = special.search(sql, pos)
                at = size if match is None else match.start()
                if at > pos and not sql[pos:at].isspace():
                    st.end = at  # the statement has begun: blanks are trimmed at its end
                if match is None:
                    break
                pos = at
                char = sql[at]
                if char == "(":
                    st.parens += 1
                    st.end = pos = at + 1
                    continue
                if char == ")":
                    st.parens = max(0, st.parens - 1)
                    st.end = pos = at + 1
                    continue
            pos = self._special_at(pos)
        if self.current.depth > 0:  # else the rest of the text would go as one statement
            raise UnterminatedSql(
                "BEGIN ... END body (a name begin, case or end in it must be quoted)",
                self.line_at(self.current.start),
            )
        self._finish(size)
        return self.found

    # -- code, words and the end of a statement --------------------------------

    def _code(self, start: int, end: int) -> None:
        """``sql[start:end]`` is code (blanks allowed at its ends)."""
        st = self.current
        text = self.sql[start:end]
        if text.isspace():
            return
        if st.start < 0:
            st.start = start + (len(text) - len(text.lstrip()))
        st.end = end

    def _words_until_special(self, pos: int) -> int:
        """Read the words from ``pos`` to the next special character; returns its position."""
        sql = self.sql
        match = self.syntax.special.search(sql, pos)
        stop = match.start() if match is not None else len(sql)
        if stop > pos:
            self._code(pos, stop)
            for word in _WORD.finditer(sql, pos, stop):
                self._word(word.group().lower(), word.end(), stop)
                if self.current.routine is False:
                    break
        return stop

    def _word(self, word: str, end: int, stop: int) -> None:
        """A word of the statement's head, or of a routine's body."""
        st = self.current
        if st.routine is None:
            st.head.append(word)
            st.routine = self._routine(st.head)
            if st.routine and st.head[0] == "begin":  # BEGIN NOT ATOMIC: a block at once
                st.depth += 1
            return
        if st.skip:
            st.skip = False
        elif word == "case" or (word == "begin" and self._opens(st)):
            st.depth += 1
        elif word == "end" and st.depth > 0:
            following = _WORD.match(self.sql, _skip_blanks(self.sql, end, stop))
            closes = following.group().lower() if following is not None else ""
            if closes not in _UNCOUNTED_ENDS:
                st.depth -= 1
                st.skip = closes == "case"

    def _opens(self, st: _Statement) -> bool:
        """Whether a ``begin`` opens a block: the body, or a block in a MySQL body (in the
        head's parentheses it is a name: a parameter called begin)."""
        if st.depth > 0:
            return self.syntax.nested_blocks
        return st.parens == 0

    @staticmethod
    def _routine(head: list[str]) -> bool | None:
        """Whether a statement starting with ``head`` may have a body holding ``;``
        (None: read more words)."""
        first = head[0]
        if first == "begin":  # MariaDB's BEGIN NOT ATOMIC; a plain BEGIN is no block
            return None if len(head) == 1 else head[1] == "not"
        if first not in ("create", "alter") or len(head) > _HEAD_WORDS:
            return False
        if len(head) == 1:
            return None
        word = head[-1]
        if word in _ROUTINES:
            return True
        if "definer" in head:  # DEFINER = user@host: names, unquoted, may follow
            return False if word in _NOT_ROUTINES else None
        return None if word in _MODIFIERS else False

    def _end(self, pos: int) -> None:
        """A ``;`` at ``pos``: the end of the statement, unless inside parentheses or a body."""
        st = self.current
        if st.parens > 0 or st.depth > 0:
            self._code(pos, pos + 1)
            return
        self._finish(pos)

    def _finish(self, pos: int) -> None:
        st = self.current
        if st.start >= 0:
            text = self.sql[st.start : st.end].rstrip()
            self.found.append(Statement(text, self.line_at(st.start)))
        self.current = _Statement()

    # -- what a special character starts ---------------------------------------

    def _special_at(self, pos: int) -> int:
        """Read what starts at the special character at ``pos``; returns where it ends."""
        sql, syntax = self.sql, self.syntax
        char = sql[pos]
        nxt = sql[pos + 1 : pos + 2]
        if char == ";":
            self._end(pos)
            return pos + 1
        if char == "(":
            self.current.parens += 1
        elif char == ")":
            self.current.parens = max(0, self.current.parens - 1)
        elif char == "'":
            return self._quoted(pos, self._string_pattern(pos), "string literal")
        elif char == '"':
            what = "string literal" if syntax.double_quoted_strings else "quoted name"
            return self._quoted(pos, syntax.double_quoted, what)
        elif char == "`":
            return self._quoted(pos, _BACKQUOTED, "quoted name")
        elif char == "[":
            return self._quoted(pos, _BRACKETED, "quoted name")
        elif char == "-" and nxt == "-" and self._dash_comment(pos):
            return _line_end(sql, pos)
        elif char == "#":
            return _line_end(sql, pos)
        elif char == "/" and nxt == "*":
            return self._block_comment(pos)
        elif char == "$":
            return self._dollar(pos)
        self._code(pos, pos + 1)
        return pos + 1

    def _string_pattern(self, pos: int) -> re.Pattern[str]:
        """``E'...'`` on PostgreSQL takes backslash escapes; other strings as the syntax says."""
        sql = self.sql
        if (
            self.syntax.escape_strings
            and pos > 0
            and sql[pos - 1] in "eE"
            and (pos < 2 or not _WORD_CHAR.match(sql, pos - 2))
        ):
            return _ESCAPED
        return self.syntax.single_quoted

    def _quoted(self, pos: int, rest: re.Pattern[str], what: str) -> int:
        match = rest.match(self.sql, pos + 1)
        if match is None:
            raise UnterminatedSql(what, self.line_at(pos))
        self._code(pos, match.end())
        return match.end()

    def _dash_comment(self, pos: int) -> bool:
        if not self.syntax.dash_comment_needs_blank:
            return True
        after = self.sql[pos + 2 : pos + 3]
        return after == "" or after.isspace() or after < " "

    def _block_comment(self, pos: int) -> int:
        sql, syntax = self.sql, self.syntax
        code = syntax.executable_comments and sql.startswith(("/*!", "/*M!"), pos)
        if not syntax.nested_comments:
            end = sql.find("*/", pos + 2)
            if end < 0:
                raise UnterminatedSql("block comment", self.line_at(pos))
            end += 2
        else:
            level, at = 1, pos + 2
            while level:
                match = _NESTED.search(sql, at)
                if match is None:
                    raise UnterminatedSql("block comment", self.line_at(pos))
                level += 1 if match.group() == "/*" else -1
                at = match.end()
            end = at
        if code:
            self._code(pos, end)
        return end

    def _dollar(self, pos: int) -> int:
        """``$tag$ ... $tag$``, unless the ``$`` is of a name or parameter (``a$b``, ``$1``)."""
        sql = self.sql
        tag = _DOLLAR.match(sql, pos)
        if tag is None or (pos > 0 and _WORD_CHAR.match(sql, pos - 1)):
            self._code(pos, pos + 1)
            return pos + 1
        end = sql.find(tag.group(), tag.end())
        if end < 0:
            raise UnterminatedSql(f"dollar quote {tag.group()}", self.line_at(pos))
        end += len(tag.group())
        self._code(pos, end)
        return end


def _line_end(sql: str, pos: int) -> int:
    end = sql.find("\n", pos)
    return len(sql) if end < 0 else end


def _skip_blanks(sql: str, pos: int, stop: int) -> int:
    while pos < stop and sql[pos].isspace():
        pos += 1
    return pos

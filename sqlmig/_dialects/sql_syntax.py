"""What a database's SQL text allows, as far as finding where its statements end.

Each dialect profile holds one :class:`SqlSyntax` (its ``sql_syntax``);
:mod:`sqlmig._sql_split` reads text by it. The syntax is plain data here, with
the few patterns it implies compiled on first use, so that importing the
profiles costs no scanner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

__all__ = ["STANDARD_SQL", "SqlSyntax", "quoted"]


@dataclass(frozen=True)
class SqlSyntax:
    """What one database's SQL text allows, as far as finding where statements end.

    The defaults are standard SQL: ``'...'`` strings with ``''`` for a quote,
    ``"..."`` names, ``--`` and ``/* */`` comments.
    """

    #: ``'...'`` (and ``"..."`` where it is a string) take backslash escapes (MySQL).
    backslash_escapes: bool = False
    #: ``E'...'`` strings take backslash escapes (PostgreSQL).
    escape_strings: bool = False
    #: ``"..."`` is a string, with the same escapes as ``'...'`` (MySQL).
    double_quoted_strings: bool = False
    #: ``/* /* */ */`` nests (PostgreSQL).
    nested_comments: bool = False
    #: ``$$ ... $$`` and ``$tag$ ... $tag$`` quote text (PostgreSQL).
    dollar_quotes: bool = False
    #: ``#`` starts a comment to the end of the line (MySQL).
    hash_comments: bool = False
    #: ``--`` starts a comment only before a blank or the end of the line (MySQL).
    dash_comment_needs_blank: bool = False
    #: ```name``` is a quoted name (MySQL, SQLite).
    backquotes: bool = False
    #: ``[name]`` is a quoted name (SQLite).
    brackets: bool = False
    #: ``/*! ... */`` (and MariaDB's ``/*M! ... */``) is code, not a comment (MySQL).
    executable_comments: bool = False
    #: A routine's body holds ``BEGIN ... END`` blocks (MySQL); elsewhere a ``begin``
    #: inside a body is a name (PostgreSQL's ``BEGIN ATOMIC``, SQLite's triggers).
    nested_blocks: bool = False

    @cached_property
    def special(self) -> re.Pattern[str]:
        """The next character that can matter to the scanner."""
        chars = "'\";()/-"
        chars += "$" if self.dollar_quotes else ""
        chars += "#" if self.hash_comments else ""
        chars += "`" if self.backquotes else ""
        chars += "[" if self.brackets else ""
        return re.compile(f"[{re.escape(chars)}]")

    @cached_property
    def single_quoted(self) -> re.Pattern[str]:
        """The rest of a ``'...'`` text after its opening quote."""
        return quoted("'", backslash=self.backslash_escapes)

    @cached_property
    def double_quoted(self) -> re.Pattern[str]:
        """The rest of a ``"..."`` text (name or string) after its opening quote."""
        return quoted('"', backslash=self.double_quoted_strings and self.backslash_escapes)


#: Standard SQL's rules: what a database not known to sqlmig gets.
STANDARD_SQL = SqlSyntax()


def quoted(quote: str, *, backslash: bool) -> re.Pattern[str]:
    """The rest of a quoted text after its opening ``quote``: doubled quotes (and
    backslash escapes) inside, possessive so that a long text costs one pass."""
    q = re.escape(quote)
    if backslash:
        return re.compile(f"[^{q}\\\\]*+(?:(?:\\\\.|{q}{q})[^{q}\\\\]*+)*+{q}", re.DOTALL)
    return re.compile(f"[^{q}]*+(?:{q}{q}[^{q}]*+)*+{q}")

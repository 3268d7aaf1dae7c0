"""Reading SQL text for what ends a transaction: ``COMMIT``, ``ROLLBACK``, ``BEGIN`` ...

The guard (``_guard``) refuses such text before a step's connection sends it.
Statements are split at top-level ``;`` without a parser: comments, string
literals, quoted names, PostgreSQL dollar quotes and MySQL ``#`` comments are
skipped, and the body of a trigger, function or procedure is not split. What
MySQL/MariaDB run inside a comment (``/*! COMMIT */``, ``/*M!100000 ... */``)
is read as the code it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["only_reads", "transaction_control"]

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<line>--[^\n]*)
  | (?P<code>/\*M?!\d*)
  | (?P<block>/\*.*?(?:\*/|\Z))
  | (?P<quoted>'(?:[^'\\]|\\.|'')*(?:'|\Z) | "(?:[^"]|"")*(?:"|\Z) | `(?:[^`]|``)*(?:`|\Z))
  | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<end>;)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

#: First words of a statement that end, or begin, a transaction.
_ALWAYS = {"commit", "end", "abort", "xa"}
_BEFORE = {"begin": None, "start": "transaction", "prepare": "transaction"}
#: Every word that can begin a transaction-control statement, anywhere in the text.
_CONTROL_WORD = re.compile(
    r"commit|end|abort|xa|rollback|begin|start|prepare|autocommit", re.IGNORECASE
)
#: A statement whose first token is a word (nothing to skip before it).
_PLAIN_HEAD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)(?=[^A-Za-z0-9_]|\Z)")
#: What a ``CREATE`` or ``ALTER`` defines when a ``BEGIN`` in it opens a body.
_ROUTINES = frozenset({"trigger", "function", "procedure", "event", "package"})
#: First words of statements that only read.
_READS = frozenset({"select", "show", "pragma", "explain", "describe", "desc", "values"})


def _statement_heads(sql: str) -> Iterator[list[str]]:
    """The first words (lower case) of each top-level statement in ``sql``.

    Comments, string literals, quoted names and PostgreSQL dollar quotes are
    skipped. Scanning stops inside a statement that opens a block (a trigger,
    function, procedure or event body: ``CREATE ... BEGIN ... END``; MariaDB's
    ``BEGIN NOT ATOMIC``), whose inner ``;`` and ``END`` are not statements of
    their own. Elsewhere ``begin`` and ``atomic`` are names (a column), and
    scanning goes on.
    """
    words: list[str] = []
    routine = False  # the statement defines a trigger, function, procedure or event
    pos, size = 0, len(sql)
    while pos < size:
        match = _TOKEN.match(sql, pos)
        assert match is not None  # "other" matches any character
        pos = match.end()
        kind = match.lastgroup
        if kind == "dollar":
            closing = sql.find(match.group("dollar"), pos)
            pos = size if closing < 0 else closing + len(match.group("dollar"))
        elif kind == "word":
            word = match.group("word").lower()
            if words and words[0] in ("create", "alter") and word in _ROUTINES:
                routine = True
            if (routine and word in ("begin", "atomic")) or (
                words[:2] == ["begin", "not"] and word == "atomic"
            ):
                yield [*words, word]  # a block body follows: its statements are not ours to split
                return
            if len(words) < 4 or words[0] == "set":  # SET a=1, b=2, c=3, autocommit=1
                words.append(word)
        elif kind == "end":
            if words:
                yield words
            words, routine = [], False
        elif kind == "other" and not words and match.group() == "#":  # MySQL comment
            newline = sql.find("\n", pos)
            pos = size if newline < 0 else newline + 1
    if words:
        yield words


def transaction_control(sql: str) -> str | None:
    """The transaction-control statement in ``sql`` (``"COMMIT"``, ...), else None.

    Savepoints (``SAVEPOINT``, ``RELEASE``, ``ROLLBACK TO``) are fine: they stay
    inside the step's transaction. So is MariaDB's ``BEGIN NOT ATOMIC`` block.
    Text holding none of the words that could begin such a statement is not
    scanned at all (most statements of a step).
    """
    if _CONTROL_WORD.search(sql) is None:
        return None
    for words in _statement_heads(sql):
        first, rest = words[0], [w for w in words[1:] if w not in ("work", "transaction")]
        if first in _ALWAYS:
            return " ".join(words[:2]).upper() if first == "xa" else first.upper()
        if first in ("rollback",) and not rest[:1] == ["to"]:
            return "ROLLBACK"
        if first in _BEFORE:
            needed = _BEFORE[first]
            if first == "begin" and words[1:3] == ["not", "atomic"]:
                continue
            if needed is None or words[1:2] == [needed]:
                return " ".join(words[: 1 if needed is None else 2]).upper()
        if first == "set" and "autocommit" in words:  # MySQL: SET autocommit = 1 commits
            return "SET AUTOCOMMIT"
    return None


def only_reads(sql: str) -> bool:
    """Whether the statement ``sql`` only reads (``SELECT``, ``SHOW``, ``PRAGMA`` ...)."""
    plain = _PLAIN_HEAD.match(sql)  # the usual statement: no comment before its first word
    first = plain.group(1).lower() if plain else next(_statement_heads(sql), [""])[0]
    return first in _READS

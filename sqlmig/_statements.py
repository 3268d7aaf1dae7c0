"""Reading SQL text for what ends a transaction: ``COMMIT``, ``ROLLBACK``, ``BEGIN`` ...

The guard (``_guard``) refuses such text before a step's connection sends it.
Statements are split at top-level ``;`` without a parser: comments, string
literals, quoted names, PostgreSQL dollar quotes and MySQL ``#`` comments are
skipped, and the body of a trigger, function or procedure is not split (it
runs later, if ever). MariaDB's compound statements outside routines (``IF``,
``BEGIN NOT ATOMIC`` ...) run now, so the statements inside them are read one
by one, and the ``END`` that closes them ends no transaction. What
MySQL/MariaDB run inside a comment (``/*! COMMIT */``, ``/*M!100000 ... */``)
is read as the code it is.

The module is long because SQL text hides transaction control in many places:
comments MySQL runs, compound blocks MariaDB runs now, routine bodies that run
later, the strings ``PREPARE ... FROM`` and ``EXECUTE IMMEDIATE`` run, and the
savepoint sqlmig takes around each step; each needs its own reading.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["only_reads", "savepoint_uses", "transaction_control"]

#: The patterns are compiled on first use (``re.compile`` keeps them in its
#: cache): importing sqlmig compiles none of them, and a run whose steps send
#: no word of :data:`_CONTROL_WORDS` never needs them.
_TOKEN = r"""
    (?P<space>\s+)
  | (?P<line>--[^\n]*)
  | (?P<code>/\*M?!\d*)
  | (?P<block>/\*.*?(?:\*/|\Z))
  | (?P<quoted>SINGLE | "(?:[^"]|"")*(?:"|\Z) | `(?:[^`]|``)*(?:`|\Z))
  | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<end>;)
  | (?P<other>.)
"""
#: The token pattern for each reading of a backslash in ``'...'``: an escape
#: (MySQL, PostgreSQL's ``E''`` strings and ``standard_conforming_strings =
#: off``) or a plain character (standard SQL, SQLite, PostgreSQL by default).
#: A session can switch between them, so text with a backslash is read both
#: ways, and what either reading finds counts.
_TOKENS = {
    True: (_TOKEN.replace("SINGLE", r"'(?:[^'\\]|\\.|'')*(?:'|\Z)"), re.VERBOSE | re.DOTALL),
    False: (_TOKEN.replace("SINGLE", r"'(?:[^']|'')*(?:'|\Z)"), re.VERBOSE | re.DOTALL),
}

#: First words of a statement that end, or begin, a transaction.
_ALWAYS = {"commit", "end", "abort", "xa"}
_BEFORE = {"begin": None, "start": "transaction", "prepare": "transaction"}
#: Every word that can begin a transaction-control statement (``autocommit``
#: holds ``commit``): text with none of them, in any case, is not scanned.
_CONTROL_WORDS = ("commit", "end", "abort", "xa", "rollback", "begin", "start", "prepare")
#: A statement whose first token is a word (nothing to skip before it).
_PLAIN_HEAD = r"\s*([A-Za-z_][A-Za-z0-9_]*)(?=[^A-Za-z0-9_]|\Z)"
#: What a ``CREATE`` or ``ALTER`` defines when a ``BEGIN`` in it opens a body.
_ROUTINES = frozenset({"trigger", "function", "procedure", "event", "package"})
#: First words of MariaDB's compound statements (run where they stand, outside routines).
_COMPOUND = frozenset({"if", "elseif", "when", "while", "for", "loop", "repeat", "case"})
#: Those that open a block, closed by an ``END`` (``END IF``, ``END LOOP`` ...).
_OPENS = frozenset({"if", "while", "for", "loop", "repeat", "case"})
#: Those whose body follows a condition (``THEN``, ``DO``).
_CONDITIONAL = frozenset({"if", "elseif", "when", "while", "for", "case"})
#: The first words of a handler's body that is a single statement (``... FOR x ROLLBACK``).
_HANDLER_BODY = frozenset({"commit", "rollback", "start", "xa", "set"})
#: What follows a label's colon: the block it names.
_LABELLED = (r"\s*(?:begin|loop|while|repeat|for)\b", re.IGNORECASE)
#: ``END IF``, ``END LOOP`` ...: inside a routine's body, these close no ``BEGIN`` or ``CASE``.
_UNCOUNTED_ENDS = frozenset({"if", "loop", "while", "repeat", "for"})
#: The word after an ``END`` (blanks between).
_WORD_AFTER = r"\s*([A-Za-z_][A-Za-z0-9_]*)"
#: First words of statements whose every word is kept (most need only four):
#: ``SET a=1, b=2, autocommit=1``, a handler, ``ROLLBACK WORK TO SAVEPOINT name``.
_LONG_HEADS = frozenset({"set", "declare", "rollback", "release"})
#: First words of the statements that take, release or roll back to a savepoint.
_SAVEPOINT_HEADS = frozenset({"savepoint", "release", "rollback"})
#: How the names of sqlmig's own savepoints begin (see ``StepMark``).
OWN_SAVEPOINT = "sqlmig_step"
#: First words of statements that only read.
_READS = frozenset({"select", "show", "pragma", "explain", "describe", "desc", "values"})


def _statement_heads(sql: str, backslash_escapes: bool = True) -> Iterator[list[str]]:
    """The first words (lower case) of each statement in ``sql`` that the server runs.

    Comments, string literals, quoted names and PostgreSQL dollar quotes are
    skipped. The body of a statement that defines a routine (a trigger,
    function, procedure or event: ``CREATE ... BEGIN ... END``) is skipped to
    its ``END``: its statements run later, if ever, those after it now.
    MariaDB's compound statements outside routines (``BEGIN NOT ATOMIC ...
    END``, ``IF ... THEN ... END IF``, ``WHILE``, ``LOOP``, ``REPEAT``,
    ``CASE``, labels, handlers) run now: their opening words are yielded as a
    head of their own (``["if"]``), each statement inside them as a head too,
    and the ``END`` that closes a block as none. Elsewhere ``begin`` and
    ``atomic`` are names (a column, a routine's parameter in its parentheses),
    and scanning goes on. A word may hold ``$`` after its first letter
    (``a$$b`` is a name, not a dollar quote), as on PostgreSQL and MySQL.
    """
    words: list[str] = []
    routine = False  # the statement defines a trigger, function, procedure or event
    depth = 0  # compound blocks open around this point
    mode = ""  # "condition": up to THEN/DO; "closing": an END's rest; "until": REPEAT's end
    cases = 0  # CASE expressions open inside a condition (their THEN is not the body's)
    opened = False  # a block was just opened by BEGIN (NOT ATOMIC may follow)
    parens = 0  # parentheses open in the statement (a routine's parameters: names)
    pos, size = 0, len(sql)
    token, labelled = re.compile(*_TOKENS[backslash_escapes]), re.compile(*_LABELLED)
    while pos < size:
        match = token.match(sql, pos)
        assert match is not None  # "other" matches any character
        pos = match.end()
        kind = match.lastgroup
        if kind == "dollar":
            closing = sql.find(match.group("dollar"), pos)
            pos = size if closing < 0 else closing + len(match.group("dollar"))
        elif kind == "word":
            word = match.group("word").lower()
            if mode == "condition":
                cases += word == "case"
                cases -= word == "end" and cases > 0
                if word in ("then", "do") and cases == 0:
                    mode = ""  # the body begins: its first statement is next
                continue
            if mode == "closing":
                continue
            if mode == "until":
                if word == "end":
                    depth, mode = depth - 1, "closing"
                continue
            if words and words[0] in ("create", "alter") and word in _ROUTINES:
                routine = True
            if routine and word in ("begin", "atomic") and parens == 0:
                yield [*words, word]  # a routine's body: its statements are not run now
                if "package" in words:  # Oracle mode: procedures' bodies inside, then END
                    return
                pos = _body_end(sql, pos, token)
                words, routine = [], False
                continue
            if not words and word in _COMPOUND:
                yield [word]
                depth += word in _OPENS
                mode = "condition" if word in _CONDITIONAL else ""
                continue
            if not words and depth and word == "end":
                depth, mode = depth - 1, "closing"
                continue
            if not words and depth and word == "until":
                mode = "until"
                continue
            if not words and depth and word == "else":
                continue  # the ELSE branch's first statement is next
            if word == "begin" and ((depth and not words) or _handler(words)):
                if words:
                    yield words
                words, depth = [], depth + 1  # a block inside a block, or a handler's
                opened = True
                continue
            if opened and not words and word in ("not", "atomic"):
                continue  # BEGIN NOT ATOMIC inside a block
            opened = False
            if words[:2] == ["begin", "not"] and word == "atomic":
                yield [*words, word]
                words, depth = [], depth + 1  # MariaDB's block: its statements are next
                continue
            if _handler(words) and word in _HANDLER_BODY:
                yield words
                words = []  # DECLARE ... HANDLER FOR ... ROLLBACK: its body is a statement
            if len(words) < 4 or words[0] in _LONG_HEADS:  # SET a=1, b=2, autocommit=1
                words.append(word)
        elif kind == "quoted" and words and words[0] in _SAVEPOINT_HEADS:
            quoted = match.group()
            if quoted[0] in '"`' and len(quoted) > 1:  # a savepoint's quoted name
                words.append(quoted[1:-1].lower())
        elif kind == "end":
            if words:
                yield words
            words, routine, mode, parens = [], False, "", 0
        elif kind == "other" and match.group() in "()":
            parens = max(0, parens + (1 if match.group() == "(" else -1))
        elif kind == "other" and not words and match.group() == "#":  # MySQL comment
            newline = sql.find("\n", pos)
            pos = size if newline < 0 else newline + 1
        elif (
            kind == "other"
            and len(words) == 1
            and match.group() == ":"
            and labelled.match(sql, pos)
        ):
            words = []  # a label (``outer: LOOP``), not a statement's first word
    if words:
        yield words


def _body_end(sql: str, pos: int, token: re.Pattern[str]) -> int:
    """Where the routine body opened by the ``BEGIN`` before ``pos`` ends: past its
    ``END`` and up to the ``;`` after it (``CASE`` and inner blocks counted; the ``END``
    of ``END IF``, ``END LOOP`` ... closes none of them)."""
    depth, size, closing_case = 1, len(sql), False
    word_after = re.compile(_WORD_AFTER)
    while pos < size:
        match = token.match(sql, pos)
        assert match is not None  # "other" matches any character
        pos, kind = match.end(), match.lastgroup
        if kind == "dollar":
            closing = sql.find(match.group("dollar"), pos)
            pos = size if closing < 0 else closing + len(match.group("dollar"))
        elif kind == "end" and depth == 0:
            return pos - 1  # the statement's ; : read as any other
        elif kind == "word" and depth > 0:
            word = match.group("word").lower()
            if closing_case:
                closing_case = False
            elif word in ("begin", "case"):
                depth += 1
            elif word == "end":
                after = word_after.match(sql, pos)
                closes = after.group(1).lower() if after else ""
                if closes not in _UNCOUNTED_ENDS:
                    depth -= 1
                    closing_case = closes == "case"
    return size


def _handler(words: list[str]) -> bool:
    """Whether ``words`` begin a ``DECLARE ... HANDLER FOR ...`` (its body follows)."""
    return words[:1] == ["declare"] and "handler" in words


def transaction_control(sql: str) -> str | None:
    """The transaction-control statement in ``sql`` (``"COMMIT"``, ...), else None.

    Savepoints (``SAVEPOINT``, ``RELEASE``, ``ROLLBACK TO``) are fine: they stay
    inside the step's transaction. So is MariaDB's ``BEGIN NOT ATOMIC`` block.
    Text holding none of the words that could begin such a statement is not
    scanned at all (most statements of a step). A backslash in ``'...'`` is
    an escape on MySQL and in PostgreSQL's ``E''`` strings, and a plain
    character in standard SQL; a session may switch (``sql_mode``,
    ``standard_conforming_strings``), so text holding one is read both ways.
    """
    lowered = sql.lower()  # then plain substring tests: a tenth of a case-blind regex's time
    for word in _CONTROL_WORDS:
        if word in lowered:
            break
    else:
        if OWN_SAVEPOINT not in lowered:
            return None
    if OWN_SAVEPOINT in lowered:  # a step reaching for the savepoint that watches it
        found = _own_savepoint(sql)
        if found is not None:
            return found
    found = _control(sql, backslash_escapes=True)
    if found is None and "\\" in sql:
        found = _control(sql, backslash_escapes=False)
    if found is None and ("immediate" in lowered or "prepare" in lowered):
        found = _dynamic_control(sql)
    return found


#: MySQL/MariaDB statements that run the SQL text of a string: ``PREPARE name FROM
#: '...'`` (then ``EXECUTE name``) and MariaDB's ``EXECUTE IMMEDIATE '...'``.
_DYNAMIC_PATTERN = (
    r"""(?:\bexecute\s+immediate|\bprepare\s+(?:`(?:[^`]|``)*`|[A-Za-z_]\S*)\s+from)\s*"""
    r"""('(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")"""
)


def _dynamic_control(sql: str) -> str | None:
    """Transaction control in the string a ``PREPARE ... FROM`` or ``EXECUTE IMMEDIATE``
    runs (``EXECUTE IMMEDIATE 'ROLLBACK'`` would roll back the step's DML, its history
    row still written). Text built at run time (``PREPARE s FROM @sql``) cannot be read."""
    for match in re.finditer(_DYNAMIC_PATTERN, sql, re.IGNORECASE | re.DOTALL):
        literal = match.group(1)
        quote = literal[0]
        inner = re.sub(r"\\(.)", r"\1", literal[1:-1].replace(quote * 2, quote))
        found = transaction_control(inner)
        if found is not None:
            return found
    return None


def _control(sql: str, backslash_escapes: bool) -> str | None:
    """:func:`transaction_control` with one reading of a backslash in ``'...'``."""
    for words in _statement_heads(sql, backslash_escapes):
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


def _own_savepoint(sql: str) -> str | None:
    """``ROLLBACK TO`` or ``RELEASE`` of one of sqlmig's own savepoints in ``sql``, else None.

    The savepoint sqlmig takes before a step proves, when it is released after
    the step, that the step kept its transaction; rolling back to it would undo
    the step's own work before its history row is written. Its name is new on
    each run, so no step can know it; one that names it anyway (the name of an
    older sqlmig, ``sqlmig_step``) is refused.
    """
    for escapes in (True, False):
        for words in _statement_heads(sql, escapes):
            first = words[0]
            rest = [w for w in words[1:] if w not in ("work", "transaction")]
            if first == "rollback" and rest[:1] == ["to"]:
                rest = rest[1:]
            elif first != "release":
                continue
            if rest[:1] == ["savepoint"]:
                rest = rest[1:]
            if rest and rest[0].startswith(OWN_SAVEPOINT):
                verb = "ROLLBACK TO" if first == "rollback" else "RELEASE"
                return f"{verb} sqlmig's savepoint"
        if "\\" not in sql:
            break
    return None


def savepoint_uses(sql: str) -> list[tuple[str, str]]:
    """The savepoints ``sql`` takes, releases or rolls back to, in order:
    ``("savepoint" | "release" | "rollback", name)``, the name in lower case.

    Text that holds none of those words is not scanned.
    """
    lowered = sql.lower()
    if "savepoint" not in lowered and "release" not in lowered and "rollback" not in lowered:
        return []
    uses = []
    for words in _statement_heads(sql):
        first = words[0]
        rest = [w for w in words[1:] if w not in ("work", "transaction")]
        if first == "rollback":
            if rest[:1] != ["to"]:
                continue
            rest = rest[1:]
        elif first not in _SAVEPOINT_HEADS:
            continue
        if first != "savepoint" and rest[:1] == ["savepoint"]:
            rest = rest[1:]
        if rest:
            uses.append((first, rest[0]))
    return uses


def only_reads(sql: str) -> bool:
    """Whether the statement ``sql`` only reads (``SELECT``, ``SHOW``, ``PRAGMA`` ...)."""
    plain = re.match(_PLAIN_HEAD, sql)  # the usual statement: no comment before its first word
    first = plain.group(1).lower() if plain else next(_statement_heads(sql), [""])[0]
    return first in _READS

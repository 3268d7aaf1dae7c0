# ruff: noqa: E501  (a table of cases reads best one case a line)
"""Splitting ``.sql`` migrations: sqlmig's splitter against sqlparse, for exactness and speed.

    python benchmarks/sql_split.py --rows 100000 --rounds 3

Two tables. The first runs each case of the splitter's hard parts (strings and
their escapes, quoted names, comments, dollar quotes, routine bodies) through
both and says which split it as its database does. The second times both on a
file of ``--rows`` INSERT statements (about 84 bytes each: 100000 rows make
8.4 MB) and prints the median seconds and the ratio. sqlparse is optional: a
column of "not installed" when it is missing (``pip install sqlparse``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from sqlmig._dialects import profile_named
from sqlmig._sql_split import split

#: (what, dialect, text, the statements it holds)
CASES: list[tuple[str, str, str, list[str]]] = [
    ("doubled quote", "sqlite", "SELECT 'a;''b'; SELECT 2", ["SELECT 'a;''b'", "SELECT 2"]),
    ("SQLite: a backslash is a character", "sqlite", "SELECT 'C:\\'; SELECT 2", ["SELECT 'C:\\'", "SELECT 2"]),
    ("MySQL: backslash escape", "mysql", "SELECT 'a\\';b'; SELECT 2", ["SELECT 'a\\';b'", "SELECT 2"]),
    ("PostgreSQL: E'' escape", "postgresql", "SELECT E'a\\';b'; SELECT 2", ["SELECT E'a\\';b'", "SELECT 2"]),
    ("quoted name", "postgresql", 'CREATE TABLE "a;b" (x INT); SELECT 1', ['CREATE TABLE "a;b" (x INT)', "SELECT 1"]),
    ("PostgreSQL: nested comment", "postgresql", "/* a /* b */ ; */ SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("MySQL: -- needs a blank", "mysql", "SELECT 1--1;\nSELECT 2", ["SELECT 1--1", "SELECT 2"]),
    ("MySQL: # comment", "mysql", "SELECT 1; # a; b\nSELECT 2", ["SELECT 1", "SELECT 2"]),
    ("dollar quote", "postgresql", "DO $$ BEGIN PERFORM 1; END $$; SELECT 1", ["DO $$ BEGIN PERFORM 1; END $$", "SELECT 1"]),
    ("tagged dollar quote", "postgresql", "DO $fn$ SELECT '$$;'; $fn$; SELECT 1", ["DO $fn$ SELECT '$$;'; $fn$", "SELECT 1"]),
    (
        "SQLite trigger body",
        "sqlite",
        "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE a SET x = CASE WHEN 1 THEN 2 END; END; SELECT 1",
        ["CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE a SET x = CASE WHEN 1 THEN 2 END; END", "SELECT 1"],
    ),
    (
        "MySQL procedure body",
        "mysql",
        "CREATE PROCEDURE p() BEGIN IF 1 THEN SELECT 1; END IF; CASE 1 WHEN 1 THEN SELECT 2; END CASE; END; SELECT 3",
        ["CREATE PROCEDURE p() BEGIN IF 1 THEN SELECT 1; END IF; CASE 1 WHEN 1 THEN SELECT 2; END CASE; END", "SELECT 3"],
    ),
    (
        "PostgreSQL BEGIN ATOMIC body",
        "postgresql",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; SELECT 2",
        ["CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END", "SELECT 2"],
    ),
    ("last statement ends in a comment", "sqlite", "SELECT 1;\nSELECT 2 -- the end", ["SELECT 1", "SELECT 2"]),
]  # fmt: skip

ROW = "INSERT INTO t (a, b) VALUES ({0}, 'text; with ''quotes'' -- and no comment'); -- note\n"


def sqlmig_split(text: str, dialect: str) -> list[str]:
    return [s.sql for s in split(text, profile_named(dialect).sql_syntax)]


def sqlparse_split() -> Callable[[str, str], list[str]] | None:
    try:
        import sqlparse
    except ImportError:
        return None

    def run(text: str, dialect: str) -> list[str]:
        found = [sqlparse.format(s, strip_comments=True).strip() for s in sqlparse.split(text)]
        return [s.removesuffix(";").strip() for s in found if s.strip()]

    return run


def median_seconds(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    other = sqlparse_split()

    print("## exactness: each case split as its database splits it")
    print()
    print("| case | dialect | sqlmig | sqlparse |")
    print("|---|---|---|---|")
    exact = {"sqlmig": 0, "sqlparse": 0}
    for what, dialect, text, expected in CASES:
        mine = sqlmig_split(text, dialect) == expected
        theirs = other(text, dialect) == expected if other is not None else None
        exact["sqlmig"] += mine
        exact["sqlparse"] += bool(theirs)
        shown = "not installed" if theirs is None else ("yes" if theirs else "NO")
        print(f"| {what} | {dialect} | {'yes' if mine else 'NO'} | {shown} |")
    print(f"| all | | {exact['sqlmig']}/{len(CASES)} | {exact['sqlparse']}/{len(CASES)} |")
    print()

    text = "".join(ROW.format(i) for i in range(args.rows))
    size = len(text.encode()) / 1e6
    print(f"## speed: {args.rows} statements, {size:.1f} MB (median of {args.rounds} round(s))")
    print()
    print("| splitter | seconds | MB/s | ratio to sqlmig |")
    print("|---|---|---|---|")
    mine_s = median_seconds(lambda: sqlmig_split(text, "postgresql"), args.rounds)
    print(f"| sqlmig | {mine_s:.3f} | {size / mine_s:.1f} | 1.00x |")
    if other is not None:
        import sqlparse

        theirs_s = median_seconds(lambda: sqlparse.split(text), args.rounds)
        print(f"| sqlparse | {theirs_s:.3f} | {size / theirs_s:.2f} | {theirs_s / mine_s:.1f}x |")
    else:
        print("| sqlparse | not installed | | |")


if __name__ == "__main__":
    main()

"""Splitting SQL text into statements by each database's rules: one table of cases."""
# ruff: noqa: E501  (a table of cases reads best one case a line)

from __future__ import annotations

import pytest

from sqlmig._dialects import profile_named
from sqlmig._dialects.sql_syntax import STANDARD_SQL, SqlSyntax
from sqlmig._sql_split import Statement, UnterminatedSql, split

ALL = ("sqlite", "postgresql", "mysql")


def syntax(name: str) -> SqlSyntax:
    return profile_named(name).sql_syntax


CASES: list[tuple[str, tuple[str, ...], str, list[str]]] = [
    # (what, dialects, SQL text, the statements it holds)
    ("two statements", ALL, "SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
    ("a parameter named begin", ("postgresql",), "CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql AS 'SELECT 1'; COMMIT", ["CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql AS 'SELECT 1'", "COMMIT"]),
    ("a parameter named begin, then a body", ("mysql",), "CREATE PROCEDURE p(IN begin INT) BEGIN SELECT 1; END; COMMIT", ["CREATE PROCEDURE p(IN begin INT) BEGIN SELECT 1; END", "COMMIT"]),
    ("a column named begin in a trigger's body", ("sqlite",), "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE a SET begin = 1; END; COMMIT; END", ["CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE a SET begin = 1; END", "COMMIT", "END"]),
    ("a column named begin in a BEGIN ATOMIC body", ("postgresql",), "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT begin FROM t; END; COMMIT; END", ["CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT begin FROM t; END", "COMMIT", "END"]),
    ("begin and case named in a trigger's condition", ("sqlite",), "CREATE TRIGGER t AFTER INSERT ON a WHEN (SELECT 1 AS begin) BEGIN SELECT CASE WHEN 1 THEN 2 END; END; COMMIT", ["CREATE TRIGGER t AFTER INSERT ON a WHEN (SELECT 1 AS begin) BEGIN SELECT CASE WHEN 1 THEN 2 END; END", "COMMIT"]),
    ("no ; after the last", ALL, "SELECT 1;\nSELECT 2", ["SELECT 1", "SELECT 2"]),
    ("empty statements dropped", ALL, ";;SELECT 1;;\n;", ["SELECT 1"]),
    ("; in a string", ALL, "INSERT INTO t VALUES ('a;b'); SELECT 1", ["INSERT INTO t VALUES ('a;b')", "SELECT 1"]),
    ("doubled quote", ALL, "SELECT 'it''s;'; SELECT 2", ["SELECT 'it''s;'", "SELECT 2"]),
    ("string over lines", ALL, "SELECT 'a\n;\nb'; SELECT 2", ["SELECT 'a\n;\nb'", "SELECT 2"]),
    ("backslash is a character", ("sqlite", "postgresql"), "SELECT 'C:\\'; SELECT 2", ["SELECT 'C:\\'", "SELECT 2"]),
    ("backslash escapes a quote", ("mysql",), "SELECT 'it\\';s'; SELECT 2", ["SELECT 'it\\';s'", "SELECT 2"]),
    ("E string escapes", ("postgresql",), "SELECT E'it\\';s'; SELECT 2", ["SELECT E'it\\';s'", "SELECT 2"]),
    ("e string escapes", ("postgresql",), "SELECT e'\\\\'; SELECT 2", ["SELECT e'\\\\'", "SELECT 2"]),
    ("a name ending in e is no E string", ("postgresql",), "SELECT 1 AS name'x\\'; SELECT 2", ["SELECT 1 AS name'x\\'", "SELECT 2"]),
    ("; in a quoted name", ALL, 'CREATE TABLE "a;b" (x INT); SELECT 1', ['CREATE TABLE "a;b" (x INT)', "SELECT 1"]),
    ("doubled quote in a name", ALL, 'SELECT 1 AS "a"";"; SELECT 2', ['SELECT 1 AS "a"";"', "SELECT 2"]),
    ("backquoted name", ("sqlite", "mysql"), "SELECT 1 AS `a;``b`; SELECT 2", ["SELECT 1 AS `a;``b`", "SELECT 2"]),
    ("bracketed name", ("sqlite",), "SELECT 1 AS [a;b]; SELECT 2", ["SELECT 1 AS [a;b]", "SELECT 2"]),
    ("double quotes hold a string", ("mysql",), 'SELECT "a\\";b"; SELECT 2', ['SELECT "a\\";b"', "SELECT 2"]),
    ("line comment", ALL, "SELECT 1 -- a; b\n; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("line comment inside", ALL, "SELECT -- a; b\n1; SELECT 2", ["SELECT -- a; b\n1", "SELECT 2"]),
    ("comments around are dropped", ALL, "-- one\n/* two; */ SELECT 1 /* three */; -- four", ["SELECT 1"]),
    ("comment inside is kept", ALL, "SELECT /* a; */ 1; SELECT 2", ["SELECT /* a; */ 1", "SELECT 2"]),
    ("last statement ends in a comment", ALL, "SELECT 1;\nSELECT 2 -- the end", ["SELECT 1", "SELECT 2"]),
    ("a file of comments", ALL, "-- nothing\n/* here */\n", []),
    ("-- needs a blank", ("mysql",), "SELECT 1--1;\nSELECT 2", ["SELECT 1--1", "SELECT 2"]),
    ("-- is a comment", ("sqlite", "postgresql"), "SELECT 1--1;\nSELECT 2", ["SELECT 1--1;\nSELECT 2"]),
    ("# comment", ("mysql",), "SELECT 1; # x; y\nSELECT 2", ["SELECT 1", "SELECT 2"]),
    ("nested comment", ("postgresql",), "/* a /* b */ ; */ SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("comments do not nest", ("sqlite", "mysql"), "/* a /* b */ SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("executable comment is code", ("mysql",), "/*!40101 SET NAMES utf8 */;\nSELECT 2", ["/*!40101 SET NAMES utf8 */", "SELECT 2"]),
    ("MariaDB executable comment", ("mysql",), "/*M!100100 SET x = 1 */; SELECT 2", ["/*M!100100 SET x = 1 */", "SELECT 2"]),
    (
        "dollar quote",
        ("postgresql",),
        "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql; SELECT 1",
        ["CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql", "SELECT 1"],
    ),
    (
        "tagged dollar quote holding $$",
        ("postgresql",),
        "DO $fn$ BEGIN PERFORM '$$;'; END $fn$; SELECT 1",
        ["DO $fn$ BEGIN PERFORM '$$;'; END $fn$", "SELECT 1"],
    ),
    ("$$ in a string", ("postgresql",), "SELECT '$$'; SELECT '$$'", ["SELECT '$$'", "SELECT '$$'"]),
    ("$ in a name", ("postgresql",), "SELECT a$b$c FROM t; SELECT $1", ["SELECT a$b$c FROM t", "SELECT $1"]),
    ("no dollar quotes", ("sqlite", "mysql"), "SELECT '$$'; SELECT 1 AS $$; SELECT 2", ["SELECT '$$'", "SELECT 1 AS $$", "SELECT 2"]),
    (
        "trigger body",
        ("sqlite",),
        "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n  UPDATE a SET x = 1;\n  DELETE FROM b;\nEND;\nSELECT 1",
        ["CREATE TRIGGER t AFTER INSERT ON a BEGIN\n  UPDATE a SET x = 1;\n  DELETE FROM b;\nEND", "SELECT 1"],
    ),
    (
        "temporary trigger with CASE in its body",
        ("sqlite",),
        "CREATE TEMP TRIGGER IF NOT EXISTS t AFTER INSERT ON a BEGIN UPDATE a SET x = CASE WHEN 1 THEN 2 END; END; SELECT 1",
        ["CREATE TEMP TRIGGER IF NOT EXISTS t AFTER INSERT ON a BEGIN UPDATE a SET x = CASE WHEN 1 THEN 2 END; END", "SELECT 1"],
    ),
    ("a column named begin", ALL, "UPDATE t SET x = 1 WHERE a = 'begin'; SELECT 1", ["UPDATE t SET x = 1 WHERE a = 'begin'", "SELECT 1"]),
    ("CASE outside a body", ALL, "SELECT CASE WHEN 1 THEN 2 END; SELECT 2", ["SELECT CASE WHEN 1 THEN 2 END", "SELECT 2"]),
    (
        "procedure body",
        ("mysql",),
        "CREATE PROCEDURE p()\nBEGIN\n  DECLARE x INT DEFAULT 0;\n  IF x THEN SELECT 1; END IF;\n  SELECT 2;\nEND;\nSELECT 3",
        ["CREATE PROCEDURE p()\nBEGIN\n  DECLARE x INT DEFAULT 0;\n  IF x THEN SELECT 1; END IF;\n  SELECT 2;\nEND", "SELECT 3"],
    ),
    (
        "procedure with loops, labels and CASE",
        ("mysql",),
        "CREATE DEFINER=`root`@`%` PROCEDURE p() BEGIN l: LOOP LEAVE l; END LOOP l; "
        "WHILE 0 DO SELECT 1; END WHILE; REPEAT SELECT 1; UNTIL 1 END REPEAT; "
        "CASE 1 WHEN 1 THEN SELECT 1; END CASE; BEGIN SELECT 2; END; END; SELECT 3",
        [
            "CREATE DEFINER=`root`@`%` PROCEDURE p() BEGIN l: LOOP LEAVE l; END LOOP l; "
            "WHILE 0 DO SELECT 1; END WHILE; REPEAT SELECT 1; UNTIL 1 END REPEAT; "
            "CASE 1 WHEN 1 THEN SELECT 1; END CASE; BEGIN SELECT 2; END; END",
            "SELECT 3",
        ],
    ),
    (
        "function, trigger and event bodies",
        ("mysql",),
        "CREATE FUNCTION f() RETURNS INT DETERMINISTIC BEGIN RETURN 1; END;\n"
        "CREATE TRIGGER t BEFORE INSERT ON a FOR EACH ROW BEGIN SET NEW.x = 1; END;\n"
        "CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO BEGIN DELETE FROM a; END",
        [
            "CREATE FUNCTION f() RETURNS INT DETERMINISTIC BEGIN RETURN 1; END",
            "CREATE TRIGGER t BEFORE INSERT ON a FOR EACH ROW BEGIN SET NEW.x = 1; END",
            "CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO BEGIN DELETE FROM a; END",
        ],
    ),
    (
        "a body of one statement",
        ("mysql",),
        "CREATE TRIGGER t BEFORE INSERT ON a FOR EACH ROW SET NEW.x = 1; SELECT 1",
        ["CREATE TRIGGER t BEFORE INSERT ON a FOR EACH ROW SET NEW.x = 1", "SELECT 1"],
    ),
    (
        "an unquoted definer",
        ("mysql",),
        "CREATE DEFINER = root@localhost TRIGGER t BEFORE INSERT ON a FOR EACH ROW BEGIN SET NEW.x = 1; END; SELECT 1",
        ["CREATE DEFINER = root@localhost TRIGGER t BEFORE INSERT ON a FOR EACH ROW BEGIN SET NEW.x = 1; END", "SELECT 1"],
    ),
    (
        "a view with a definer",
        ("mysql",),
        "CREATE DEFINER = root@localhost VIEW v AS SELECT 1 AS `begin`; SELECT 2",
        ["CREATE DEFINER = root@localhost VIEW v AS SELECT 1 AS `begin`", "SELECT 2"],
    ),
    ("anonymous block", ("mysql",), "BEGIN NOT ATOMIC SELECT 1; SELECT 2; END; SELECT 3", ["BEGIN NOT ATOMIC SELECT 1; SELECT 2; END", "SELECT 3"]),
    ("a plain BEGIN is a statement", ALL, "BEGIN; SELECT 1; COMMIT", ["BEGIN", "SELECT 1", "COMMIT"]),
    (
        "SQL-standard function body",
        ("postgresql",),
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END; SELECT 2",
        ["CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END", "SELECT 2"],
    ),
    (
        "; inside parentheses (a rule's actions)",
        ("postgresql",),
        "CREATE RULE r AS ON INSERT TO a DO ALSO (INSERT INTO b VALUES (1); INSERT INTO c VALUES (2)); SELECT 1",
        ["CREATE RULE r AS ON INSERT TO a DO ALSO (INSERT INTO b VALUES (1); INSERT INTO c VALUES (2))", "SELECT 1"],
    ),
    ("a table named like a routine", ALL, "CREATE TABLE trigger_log (begin_at INT); SELECT 1", ["CREATE TABLE trigger_log (begin_at INT)", "SELECT 1"]),
    ("% and ? are text", ALL, "SELECT '100%' LIKE '%?'; SELECT 2", ["SELECT '100%' LIKE '%?'", "SELECT 2"]),
    ("unicode", ALL, "INSERT INTO t VALUES ('żółw;🐢'); SELECT 'ü'", ["INSERT INTO t VALUES ('żółw;🐢')", "SELECT 'ü'"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "dialect, sql, expected",
    [
        pytest.param(dialect, sql, expected, id=f"{dialect}: {what}")
        for what, dialects, sql, expected in CASES
        for dialect in dialects
    ],
)
def test_statements_end_where_their_database_ends_them(
    dialect: str, sql: str, expected: list[str]
) -> None:
    assert [s.sql for s in split(sql, syntax(dialect))] == expected


def test_each_statement_has_the_line_its_code_starts_on() -> None:
    sql = "-- a comment\n\nSELECT 1;\n/* two\nlines */ SELECT\n2; SELECT 3\n;\n\n  SELECT 'x\n\n'; SELECT 4"

    assert split(sql, first_line=10) == [
        Statement("SELECT 1", 12),
        Statement("SELECT\n2", 14),
        Statement("SELECT 3", 15),
        Statement("SELECT 'x\n\n'", 18),
        Statement("SELECT 4", 20),
    ]


UNTERMINATED: list[tuple[str, tuple[str, ...], str, str]] = [
    ("string literal", ALL, "SELECT 1;\nSELECT 'abc;\n", "string literal opened on line 2"),
    ("string ended by a backslash", ("mysql",), "SELECT 'abc\\';", "string literal opened on line 1"),
    ("E string ended by a backslash", ("postgresql",), "SELECT E'abc\\';", "string literal opened on line 1"),
    ("quoted name", ("sqlite", "postgresql"), 'SELECT 1;\n\nSELECT "abc;', "quoted name opened on line 3"),
    ("double-quoted string", ("mysql",), 'SELECT 1;\n\nSELECT "abc;', "string literal opened on line 3"),
    ("backquoted name", ("sqlite", "mysql"), "SELECT `abc;", "quoted name opened on line 1"),
    ("bracketed name", ("sqlite",), "SELECT [abc;", "quoted name opened on line 1"),
    ("block comment", ALL, "SELECT 1;\n/* abc;\nSELECT 2;", "block comment opened on line 2"),
    ("nested block comment", ("postgresql",), "/* a /* b */ SELECT 1;", "block comment opened on line 1"),
    ("dollar quote", ("postgresql",), "SELECT 1;\nDO $$ BEGIN END;", "dollar quote $$ opened on line 2"),
    ("tagged dollar quote", ("postgresql",), "DO $fn$ BEGIN END $f$;", "dollar quote $fn$ opened on line 1"),
    ("routine body", ("mysql",), "SELECT 1;\nCREATE TRIGGER t AFTER INSERT ON a FOR EACH ROW BEGIN SELECT begin FROM a; END;\nCOMMIT;", "must be quoted. opened on line 2 is never closed"),
    ("MariaDB block", ("mysql",), "BEGIN NOT ATOMIC SELECT 1;\nCOMMIT;", "BEGIN ... END body"),
]  # fmt: skip


@pytest.mark.parametrize(
    "dialect, sql, message",
    [
        pytest.param(dialect, sql, message, id=f"{dialect}: {what}")
        for what, dialects, sql, message in UNTERMINATED
        for dialect in dialects
    ],
)
def test_text_never_closed_is_an_error_naming_where_it_opened(
    dialect: str, sql: str, message: str
) -> None:
    with pytest.raises(UnterminatedSql, match=message.replace("$", r"\$")):
        split(sql, syntax(dialect))


def test_a_database_sqlmig_does_not_know_gets_standard_sql() -> None:
    assert profile_named("oracle").sql_syntax == STANDARD_SQL
    assert [s.sql for s in split("SELECT 'a\\'; SELECT \"b;\"")] == ["SELECT 'a\\'", 'SELECT "b;"']


def test_a_ten_megabyte_file_splits_into_every_statement() -> None:
    row = "INSERT INTO t (a, b) VALUES (1, 'text; with ''quotes'' and -- no comment'); -- note\n"

    statements = split(row * 120_000, syntax("postgresql"))

    assert len(statements) == 120_000
    assert statements[-1] == Statement(row.split("; --")[0], 120_000)


def test_a_ten_megabyte_string_is_one_statement() -> None:
    sql = "INSERT INTO t VALUES ('" + "x" * 10_000_000 + "');"

    (statement,) = split(sql, syntax("mysql"))

    assert len(statement.sql) == len(sql) - 1

"""Reading SQL text: which statements end a transaction, which only read."""

from __future__ import annotations

import pytest

from sqlmig._statements import only_reads, transaction_control


@pytest.mark.parametrize(
    "sql, found",
    [
        ("COMMIT", "COMMIT"),
        ("  commit work", "COMMIT"),
        ("-- note\n/* more */ Rollback", "ROLLBACK"),
        ("# mysql comment\nCOMMIT", "COMMIT"),
        ("ROLLBACK TO SAVEPOINT x", None),
        ("ROLLBACK TRANSACTION TO SAVEPOINT x", None),
        ("END TRANSACTION", "END"),
        ("BEGIN IMMEDIATE", "BEGIN"),
        ("START TRANSACTION", "START TRANSACTION"),
        ("START SLAVE", None),
        ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"),
        ("PREPARE stmt FROM 'SELECT 1'", None),
        ("ABORT", "ABORT"),
        ("SET autocommit = 1", "SET AUTOCOMMIT"),
        ("SET @a = 1, @b = 2, @c = 3, autocommit = 1", "SET AUTOCOMMIT"),
        ("SET @@session.autocommit = 1", "SET AUTOCOMMIT"),
        ("XA COMMIT 'x'", "XA COMMIT"),
        ("CREATE TABLE t (id INT); COMMIT", "COMMIT"),
        ("INSERT INTO t VALUES ('x; COMMIT')", None),
        ('SELECT "commit" FROM t', None),
        ("SELECT CASE WHEN a THEN 1 END FROM t", None),
        ("DO $$ BEGIN COMMIT; END $$", None),
        ("DO $body$ x; COMMIT $body$; COMMIT", "COMMIT"),
        ("CREATE TRIGGER t AFTER INSERT ON x BEGIN UPDATE y SET a = 1; END", None),
        ("BEGIN NOT ATOMIC SELECT 1; END", None),
        ("CREATE TABLE t (id INT, atomic INT); COMMIT", "COMMIT"),
        ("CREATE TABLE t (begin INT); COMMIT", "COMMIT"),
        ("UPDATE t SET begin = 1; COMMIT", "COMMIT"),
        ("CREATE OR REPLACE FUNCTION f() RETURNS INT LANGUAGE SQL BEGIN ATOMIC; END", None),
        ("CREATE PROCEDURE p() BEGIN COMMIT; END", None),
        ("CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO BEGIN DELETE FROM t; END", None),
        ("CREATE PACKAGE BODY p AS PROCEDURE q AS BEGIN NULL; END; END", None),
        ("SAVEPOINT a", None),
        ("/*!COMMIT*/", "COMMIT"),
        ("INSERT INTO t VALUES (1); /*!50000 SET autocommit = 1 */", "SET AUTOCOMMIT"),
        ("/*M!100000 COMMIT */", "COMMIT"),
        ("/*!40101 SET NAMES utf8 */", None),
        ("/* COMMIT */ SELECT 1", None),
        ("RELEASE SAVEPOINT a", None),
        # the savepoint sqlmig takes before each step is its own, whatever its suffix
        ("ROLLBACK TO SAVEPOINT sqlmig_step", "ROLLBACK TO sqlmig's savepoint"),
        ("rollback work to savepoint SQLMIG_STEP_00ff", "ROLLBACK TO sqlmig's savepoint"),
        ("SELECT 1; ROLLBACK TO sqlmig_step_1", "ROLLBACK TO sqlmig's savepoint"),
        ("RELEASE sqlmig_step_1", "RELEASE sqlmig's savepoint"),
        ("RELEASE SAVEPOINT sqlmig_step_1; SAVEPOINT sqlmig_step_1", "RELEASE sqlmig's savepoint"),
        ("SAVEPOINT sqlmig_step", None),
        ("INSERT INTO t VALUES ('ROLLBACK TO sqlmig_step')", None),
        # the text MySQL/MariaDB run from a string
        ("EXECUTE IMMEDIATE 'ROLLBACK'", "ROLLBACK"),
        ("execute immediate \"XA START 'x'\"", "XA START"),
        ("PREPARE s FROM 'SET autocommit = 1'", "SET AUTOCOMMIT"),
        ("PREPARE `my s`\nFROM 'COM\\'MIT'; PREPARE t FROM 'COMMIT'", "COMMIT"),
        ("PREPARE s FROM 'SELECT ''commit'''", None),
        ("PREPARE s FROM @sql", None),
        # a backslash ends nothing in a standard string (PostgreSQL, SQLite) ...
        ("SELECT 'a\\'; COMMIT; SELECT '\\'", "COMMIT"),
        # ... and escapes the quote on MySQL: either reading's COMMIT counts
        ("SELECT 'a\\\\'; COMMIT; SELECT 'b'", "COMMIT"),
        ("INSERT INTO t VALUES ('C:\\temp\\'), ('end')", None),
    ],
)
def test_transaction_control_text_is_recognised(sql: str, found: str | None) -> None:
    assert transaction_control(sql) == found


@pytest.mark.parametrize(
    "sql, found",
    [
        # MariaDB's compound statements outside routines: allowed, their ENDs are no END
        ("IF 1 = 1 THEN INSERT INTO t VALUES (1); END IF", None),
        ("IF @a THEN SELECT 1; ELSEIF @b THEN SELECT 2; ELSE SELECT 3; END IF", None),
        ("BEGIN NOT ATOMIC DECLARE x INT DEFAULT 0; SET x = 1; END", None),
        ("outer: BEGIN NOT ATOMIC SELECT 1; END outer", None),
        ("WHILE @i < 3 DO SET @i = @i + 1; END WHILE", None),
        ("again: LOOP LEAVE again; END LOOP again", None),
        ("REPEAT SET @i = @i + 1; UNTIL @i > 3 END REPEAT", None),
        ("FOR i IN 1..3 DO INSERT INTO t VALUES (i); END FOR", None),
        ("CASE @x WHEN 1 THEN SELECT 1; ELSE SELECT 2; END CASE", None),
        ("BEGIN NOT ATOMIC IF 1 THEN BEGIN SELECT 1; END; END IF; END", None),
        ("IF (CASE WHEN @a THEN 1 END) = 1 THEN SELECT 1; END IF", None),
        ("BEGIN NOT ATOMIC SET @x = CASE WHEN @a THEN 1 ELSE 2 END; END", None),
        (
            "BEGIN NOT ATOMIC DECLARE CONTINUE HANDLER FOR NOT FOUND SET @done = 1; SELECT 1; END",
            None,
        ),
        # ... but a transaction ended inside one is still refused
        ("BEGIN NOT ATOMIC INSERT INTO t VALUES (1); COMMIT; END", "COMMIT"),
        ("IF 1 = 1 THEN COMMIT; END IF", "COMMIT"),
        ("IF @a THEN SELECT 1; ELSE ROLLBACK; END IF", "ROLLBACK"),
        ("IF (CASE WHEN @a THEN 1 END) = 1 THEN COMMIT; END IF", "COMMIT"),
        ("WHILE @i < 3 DO START TRANSACTION; END WHILE", "START TRANSACTION"),
        ("REPEAT COMMIT; UNTIL 1 END REPEAT", "COMMIT"),
        ("x: LOOP SET autocommit = 1; END LOOP", "SET AUTOCOMMIT"),
        ("BEGIN NOT ATOMIC BEGIN NOT ATOMIC COMMIT; END; END", "COMMIT"),
        ("BEGIN NOT ATOMIC BEGIN ROLLBACK; END; END", "ROLLBACK"),
        ("BEGIN NOT ATOMIC DECLARE EXIT HANDLER FOR SQLEXCEPTION ROLLBACK; END", "ROLLBACK"),
        (
            "BEGIN NOT ATOMIC DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN COMMIT; END; END",
            "COMMIT",
        ),
        ("IF 1 THEN SELECT 1; END IF; COMMIT", "COMMIT"),
        ("BEGIN NOT ATOMIC SELECT 1; END; END", "END"),  # a second END closes nothing
        ("BEGIN NOT ATOMIC SAVEPOINT a; ROLLBACK TO SAVEPOINT a; END", None),
        ("CASE WHEN @a THEN COMMIT; END CASE", "COMMIT"),
    ],
)
def test_mariadb_compound_statements_are_read_statement_by_statement(
    sql: str, found: str | None
) -> None:
    assert transaction_control(sql) == found


def test_a_compound_statement_is_not_taken_for_a_read() -> None:
    assert not only_reads("/* x */ BEGIN NOT ATOMIC SELECT 1; INSERT INTO t VALUES (1); END")
    assert not only_reads("-- x\nIF 1 THEN SELECT 1; END IF")


@pytest.mark.parametrize(
    ("sql", "reads"),
    [
        ("SELECT 1", True),
        ("  select * from t", True),
        ("PRAGMA table_info(t)", True),
        ("SHOW TABLES", True),
        ("-- a comment first\nSELECT 1", True),
        ("/* hint */ SELECT 1", True),
        ("INSERT INTO t VALUES (1)", False),
        ("-- SELECT in a comment\nDELETE FROM t", False),
        ("CREATE TABLE t (id INT)", False),
        ("WITH x AS (SELECT 1) DELETE FROM t", False),
    ],
)
def test_only_reads_looks_at_the_first_word_past_comments(sql: str, reads: bool) -> None:
    assert only_reads(sql) is reads


@pytest.mark.parametrize(
    "sql, found",
    [
        ("CREATE PROCEDURE p() BEGIN SELECT 1; END; COMMIT", "COMMIT"),
        (
            "CREATE FUNCTION f() RETURNS INT LANGUAGE SQL BEGIN ATOMIC SELECT 1; END; COMMIT",
            "COMMIT",
        ),
        (
            "CREATE TRIGGER t AFTER INSERT ON x BEGIN "
            "UPDATE y SET a = CASE WHEN 1 THEN 2 END; END; ROLLBACK",
            "ROLLBACK",
        ),
        ("CREATE PROCEDURE p() BEGIN IF 1 THEN SELECT 1; END IF; COMMIT; END", None),
        ("CREATE PROCEDURE p() BEGIN CASE WHEN 1 THEN SELECT 1; END CASE; END; COMMIT", "COMMIT"),
        ("CREATE PROCEDURE p() BEGIN BEGIN COMMIT; END; LOOP LEAVE x; END LOOP; END; END", "END"),
        ("CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO BEGIN DELETE FROM t; END; COMMIT", "COMMIT"),
        ("CREATE PROCEDURE p() BEGIN SELECT 1; END; SELECT 2", None),
        # a parameter named begin is a name, not the body
        (
            "CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql AS 'SELECT 1'; COMMIT",
            "COMMIT",
        ),
        ("CREATE PROCEDURE p(IN begin INT) BEGIN SELECT 1; END; COMMIT", "COMMIT"),
        # a name holding $$ (PostgreSQL, MySQL) opens no dollar quote
        ("CREATE TABLE a$$b (id int); COMMIT; SELECT '$$'", "COMMIT"),
    ],
)
def test_what_follows_a_routine_is_read_too(sql: str, found: str | None) -> None:
    """A routine's body runs later, if ever; the statements after it run now."""
    assert transaction_control(sql) == found


def test_savepoint_uses_are_read_in_order_quoted_names_too() -> None:
    from sqlmig._statements import savepoint_uses

    sql = 'SAVEPOINT a; RELEASE b; ROLLBACK WORK TO SAVEPOINT "C"; ROLLBACK; SELECT 1'
    assert savepoint_uses(sql) == [("savepoint", "a"), ("release", "b"), ("rollback", "c")]
    assert savepoint_uses("INSERT INTO t VALUES ('SAVEPOINT a')") == []

"""Migrations written as ``NNN_name.sql`` files, next to Python ones."""
# ruff: noqa: E501  (tables of cases read best one case a line)

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from backends import Backend
from conftest import MakeMigrations, count, tables
from sqlmig import (
    ChecksumMismatch,
    IrreversibleMigration,
    MigrationFailed,
    MigrationRunner,
    SqlFileError,
)
from sqlmig.testing import check_stairway

USERS_PY = '''
"""Users."""
def up(conn):
    conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(50))")
def down(conn):
    conn.exec_driver_sql("DROP TABLE users")
'''

ORDERS_SQL = """\
-- Orders, and a first user.
-- migrate:up
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    note VARCHAR(100) DEFAULT 'none; yet'  -- a ; in a string and in a comment
);
INSERT INTO users (id, name) VALUES (1, 'O''Brien');

-- migrate:down
DELETE FROM users WHERE id = 1;
DROP TABLE orders;
"""

TAGS_PY = """
def up(conn):
    conn.exec_driver_sql("CREATE TABLE tags (id INTEGER PRIMARY KEY)")
def down(conn):
    conn.exec_driver_sql("DROP TABLE tags")
"""


def mixed(make_migrations: MakeMigrations) -> Path:
    return make_migrations(
        {"001_users.py": USERS_PY, "002_orders.sql": ORDERS_SQL, "003_tags.py": TAGS_PY}
    )


def test_python_and_sql_steps_share_one_version_order(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, mixed(make_migrations))

    applied = runner.upgrade()

    assert [m.label for m in applied] == ["001_users", "002_orders", "003_tags"]
    assert {"users", "orders", "tags"} <= tables(backend)
    assert count(backend, "SELECT count(*) FROM users WHERE name = 'O''Brien'") == 1
    assert runner.status().applied[1].checksum == applied[1].checksum

    runner.downgrade("001")

    assert "orders" not in tables(backend) and "tags" not in tables(backend)
    assert count(backend, "SELECT count(*) FROM users") == 0
    runner.downgrade("base")
    assert "users" not in tables(backend)


def test_a_sql_step_is_described_by_its_first_comment(make_migrations: MakeMigrations) -> None:
    runner = MigrationRunner("sqlite:///unused.db", mixed(make_migrations))

    assert [m.description for m in runner.migrations()] == [
        "Users.",
        "Orders, and a first user.",
        "",
    ]


def test_a_py_and_a_sql_file_with_one_version_are_refused(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({"002_a.py": TAGS_PY, "2_b.sql": ORDERS_SQL})

    with pytest.raises(Exception, match=r"have the same version 2: renumber one"):
        MigrationRunner("sqlite:///unused.db", folder).migrations()


def test_a_failing_statement_names_its_file_and_line_and_its_step_is_undone(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_users.py": USERS_PY,
            "002_fill.sql": """\
                -- migrate:up
                INSERT INTO users (id, name) VALUES (1, 'a');

                INSERT INTO
                  missing_table VALUES (2);
                INSERT INTO users (id, name) VALUES (3, 'c');
                """,
        }
    )
    runner = MigrationRunner(backend.url, folder)

    with pytest.raises(MigrationFailed, match=r"002_fill\.sql:4: ") as failed:
        runner.upgrade()

    assert failed.value.path == str(folder / "002_fill.sql")
    assert failed.value.line == 4
    assert [m.label for m in failed.value.applied] == ["001_users"]
    assert count(backend, "SELECT count(*) FROM users") == 0


def test_ddl_of_a_failed_step_is_rolled_back_where_the_database_can(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    if not backend.profile.transactional_ddl:
        pytest.skip("DDL commits itself here: the failed-row protocol covers it")
    folder = make_migrations(
        {"001_two.sql": "-- migrate:up\nCREATE TABLE a (id INT);\nCREATE TABLE a (id INT);\n"}
    )

    with pytest.raises(MigrationFailed, match=r"001_two\.sql:3: "):
        MigrationRunner(backend.url, folder).upgrade()

    assert "a" not in tables(backend)


def test_a_commit_in_a_sql_file_is_refused_before_anything_runs(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_users.py": USERS_PY,
            "002_commit.sql": "-- migrate:up\nCREATE TABLE a (id INT);\nCOMMIT;\n",
        }
    )

    with pytest.raises(SqlFileError, match=r"002_commit\.sql:3: COMMIT ends or begins"):
        MigrationRunner(backend.url, folder).upgrade()

    # not half done, even where CREATE TABLE commits itself (MySQL/MariaDB)
    assert tables(backend) == set()


def test_percent_signs_question_marks_and_colons_are_sent_as_written(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_users.py": USERS_PY,
            "002_text.sql": """\
                -- migrate:up
                INSERT INTO users (id, name) VALUES (1, '100% :done? %s %(x)s');
                UPDATE users SET name = name WHERE name LIKE '%?%';
                """,
        }
    )

    MigrationRunner(backend.url, folder).upgrade()

    engine = backend.engine()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM users")).scalars().all() == [
            "100% :done? %s %(x)s"
        ]
    engine.dispose()


def test_a_step_outside_a_transaction(backend: Backend, make_migrations: MakeMigrations) -> None:
    concurrently = "CONCURRENTLY " if backend.name == "postgresql" else ""
    folder = make_migrations(
        {
            "001_users.py": USERS_PY,
            "002_index.sql": f"""\
                -- migrate:up transaction:false
                CREATE INDEX {concurrently}ix_users_name ON users (name);
                -- migrate:down transaction:false
                DROP INDEX {concurrently}ix_users_name{"" if backend.name != "mysql" else " ON users"};
                """,
        }
    )
    runner = MigrationRunner(backend.url, folder)

    runner.upgrade()

    step = runner.migrations()[1]
    step.load()
    assert step.transactional is False
    engine = backend.engine()
    with engine.connect() as conn:
        from sqlalchemy import inspect

        assert [i["name"] for i in inspect(conn).get_indexes("users")] == ["ix_users_name"]
    engine.dispose()
    runner.downgrade("001")
    assert runner.status().current == "001"


def test_an_edited_sql_file_is_a_checksum_mismatch_and_new_line_endings_are_not(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = mixed(make_migrations)
    runner = MigrationRunner(sqlite_backend.url, folder)
    runner.upgrade()
    step = folder / "002_orders.sql"

    step.write_bytes(step.read_bytes().replace(b"\n", b"\r\n"))
    runner.verify()

    step.write_text(ORDERS_SQL.replace("'none; yet'", "'none'"))
    with pytest.raises(ChecksumMismatch, match="002"):
        runner.verify()


def test_undoing_a_file_without_a_down_section_is_refused_as_for_python(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_users.py": USERS_PY,
            "002_once.sql": "-- migrate:up\nINSERT INTO users (id) VALUES (1);\n",
        }
    )
    runner = MigrationRunner(backend.url, folder)
    runner.upgrade()

    with pytest.raises(IrreversibleMigration, match=r"migration 002 has no down\(\)"):
        runner.downgrade("001")

    assert count(backend, "SELECT count(*) FROM users") == 1


def test_an_empty_down_section_undoes_nothing(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {"001_noop.sql": "-- migrate:up\nCREATE TABLE a (id INT);\n-- migrate:down\n-- keep a\n"}
    )
    runner = MigrationRunner(sqlite_backend.url, folder)
    runner.upgrade()

    runner.downgrade("base")

    assert runner.status().current is None
    assert "a" in tables(sqlite_backend)


def test_the_stairway_walks_sql_steps(backend: Backend, make_migrations: MakeMigrations) -> None:
    runner = MigrationRunner(backend.url, mixed(make_migrations))

    assert [m.version for m in check_stairway(runner)] == ["001", "002", "003"]


def test_the_stairway_finds_a_sql_down_that_leaves_a_table(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {"001_leaky.sql": "-- migrate:up\nCREATE TABLE a (id INT);\n-- migrate:down\nSELECT 1;\n"}
    )

    with pytest.raises(AssertionError, match="001"):
        check_stairway(MigrationRunner(sqlite_backend.url, folder))


def test_a_dry_run_tries_the_statements_and_keeps_nothing(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(backend.url, mixed(make_migrations))

    plan = runner.dry_run()

    assert [p.migration.label for p in plan] == ["001_users", "002_orders", "003_tags"]
    if backend.profile.transactional_ddl:
        assert "INSERT INTO users (id, name) VALUES (1, 'O''Brien')" in plan[1].statements
    assert runner.status().current is None
    assert not {"users", "orders", "tags"} & tables(backend)


#: Databases that are never reached: a script is written without connecting.
CLOSED = {
    "sqlite": "sqlite:////nonexistent-folder/app.db",
    "postgresql": "postgresql+psycopg://app:secret@127.0.0.1:1/app",
    "mysql": "mysql+pymysql://app:secret@127.0.0.1:1/app",
}

SCRIPT_SQL = """\
-- migrate:up
INSERT INTO t VALUES ('a\tb  
c');
SELECT 2 -- no semicolon, and a comment at the end
-- migrate:down
SELECT 3
"""  # noqa: W291 (the trailing blanks are part of the string)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mysql"])
def test_a_script_holds_each_statement_as_written(
    dialect: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_script.sql": SCRIPT_SQL})

    runner = MigrationRunner(CLOSED[dialect], folder)

    script = runner.sql_script()

    assert "INSERT INTO t VALUES ('a\tb  \nc');\nSELECT 2;\n" in script
    assert "SELECT 3" not in script
    undo = runner.sql_script("base", downgrade=True, from_version="001")
    assert "SELECT 3;" in undo


def test_a_mysql_script_puts_a_procedure_between_delimiter_lines(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(
        {"001_proc.sql": "-- migrate:up\nCREATE PROCEDURE p() BEGIN SELECT 1; END;\nSELECT 2;\n"}
    )

    script = MigrationRunner(CLOSED["mysql"], folder).sql_script()

    assert (
        "DELIMITER //\nCREATE PROCEDURE p() BEGIN SELECT 1; END//\nDELIMITER ;\nSELECT 2;" in script
    )


ROUTINES = {
    "sqlite": """\
        -- migrate:up
        CREATE TABLE log (id INTEGER, what TEXT);
        CREATE TRIGGER logged AFTER INSERT ON log WHEN NEW.what <> 'copy' BEGIN
            INSERT INTO log VALUES (NEW.id, 'copy');
            UPDATE log SET what = CASE WHEN what = 'x' THEN 'y' ELSE what END;
        END;
        INSERT INTO log VALUES (1, 'x');
        """,
    "postgresql": """\
        -- migrate:up
        CREATE TABLE log (id INTEGER, what TEXT);
        CREATE FUNCTION copy_row() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            IF NEW.what NOT LIKE 'copy%' THEN
                INSERT INTO log VALUES (NEW.id, 'copy; $$ not the end');
            END IF;
            RETURN NEW;
        END;
        $fn$;
        CREATE TRIGGER logged AFTER INSERT ON log FOR EACH ROW EXECUTE FUNCTION copy_row();
        /* nested /* comment; */ still a comment; */
        DO $$ BEGIN INSERT INTO log VALUES (1, E'x\\'s'); END $$;
        """,
    "mysql": """\
        -- migrate:up
        CREATE TABLE log (id INTEGER, what TEXT);
        CREATE PROCEDURE add_row(IN n INT)
        BEGIN
            DECLARE i INT DEFAULT 0;
            WHILE i < n DO
                INSERT INTO log VALUES (i, 'it\\'s; a row');
                SET i = i + 1;
            END WHILE;
        END;
        CREATE TRIGGER logged AFTER INSERT ON log FOR EACH ROW
        BEGIN
            IF NEW.id < 0 THEN
                SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no; negative ids';
            END IF;
        END;
        CALL add_row(2); # two rows
        """,
}


def test_routine_bodies_run_as_one_statement_each(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_routines.sql": ROUTINES[backend.name]})

    MigrationRunner(backend.url, folder).upgrade()

    assert count(backend, "SELECT count(*) FROM log") == 2


BAD_FILES = [
    ("no up marker", "CREATE TABLE a (id INT);\n", 1, "no -- migrate:up line"),
    ("only a down", "-- migrate:down\nDROP TABLE a;\n", 1, "no -- migrate:up line"),
    ("two up sections", "-- migrate:up\nSELECT 1;\n-- migrate:up\nSELECT 2;\n", 3, "a second -- migrate:up"),
    ("two down sections", "-- migrate:up\nSELECT 1;\n-- migrate:down\n-- migrate:down\n", 4, "a second -- migrate:down"),
    ("empty up section", "-- migrate:up\n-- nothing yet\n\n-- migrate:down\nSELECT 1;\n", 1, "the up section holds no statement"),
    ("unknown marker", "-- migrate:up\nSELECT 1;\n-- migrate:undo\n", 3, "unknown marker -- migrate:undo"),
    ("unknown option", "-- migrate:up transactional:false\nSELECT 1;\n", 1, "unknown option 'transactional:false'"),
    ("options that disagree", "-- migrate:up\nSELECT 1;\n-- migrate:down transaction:false\nSELECT 2;\n", 3, "transaction:false"),
    ("SQL above the markers", "SELECT 0;\n-- migrate:up\nSELECT 1;\n", 1, "SQL above the first marker"),
    ("unterminated string", "-- migrate:up\nSELECT 1;\nSELECT 'abc;\n-- migrate:down\nSELECT 2;\n", 3, "string literal opened on line 3 is never closed \\(before the -- migrate:down on line 4\\)"),
    ("unterminated quoted name", '-- migrate:up\nSELECT 1 AS "abc;\n', 2, "never closed \\(before the end of the file\\)"),
    ("unterminated block comment", "-- migrate:up\nSELECT 1;\n/* SELECT 2;\n", 3, "block comment opened on line 3 is never closed"),
    ("a marker inside a string", "-- migrate:up\nINSERT INTO t VALUES ('\n-- migrate:down\n');\n", 2, "string literal opened on line 2 is never closed \\(before the -- migrate:down on line 3\\)"),
    ("a marker inside a block comment", "-- migrate:up\nSELECT 1;\n/*\n-- migrate:down\n*/\n", 3, "block comment opened on line 3"),
    ("a DELIMITER line", "-- migrate:up\nDELIMITER //\nSELECT 1//\n", 2, "DELIMITER is a command of the mysql client"),
    ("not UTF-8", b"-- migrate:up\nSELECT 'caf\xe9';\n", 2, "the file is not UTF-8"),
    ("an indented marker", "-- migrate:up\nCREATE TABLE a (id INT);\n  -- migrate:down\nDROP TABLE a;\n", 3, "'-- migrate:down' is no marker, and its statements would run in the section above it"),
    ("a marker in capitals", "-- migrate:up\nCREATE TABLE a (id INT);\n-- Migrate:Down\nDROP TABLE a;\n", 3, "'-- Migrate:Down' is no marker"),
    ("a marker as a # comment", "-- migrate:up\nCREATE TABLE a (id INT);\n# migrate:down\nDROP TABLE a;\n", 3, "'# migrate:down' is no marker"),
    ("a marker with a blank before its colon", "-- migrate :up\nCREATE TABLE a (id INT);\n", 1, "'-- migrate :up' is no marker"),
    ("a COMMIT", "-- migrate:up\nCREATE TABLE a (id INT);\nCOMMIT;\nCREATE TABLE b (id INT);\n", 3, "COMMIT ends or begins a transaction, and sqlmig runs the step in its own: remove it"),
    ("a BEGIN in the down section", "-- migrate:up\nCREATE TABLE a (id INT);\n-- migrate:down\nBEGIN;\nDROP TABLE a;\n", 4, "BEGIN ends or begins a transaction"),
    ("SET autocommit", "-- migrate:up\nCREATE TABLE a (id INT);\nSET autocommit = 1;\n", 3, "SET AUTOCOMMIT ends or begins a transaction"),
    ("a ROLLBACK outside a transaction", "-- migrate:up transaction:false\nCREATE TABLE a (id INT);\nROLLBACK;\n", 3, "ROLLBACK in a transaction:false step, whose statements are each committed as they complete: remove it"),
    ("a COMMIT after a routine with a parameter named begin", "-- migrate:up\nCREATE TABLE a (id INT);\nCREATE TRIGGER tr AFTER INSERT ON a FOR EACH ROW EXECUTE FUNCTION f(begin);\nINSERT INTO a VALUES (1);\nCOMMIT;\n", 5, "COMMIT ends or begins a transaction"),
]  # fmt: skip


@pytest.mark.parametrize(
    "content, line, message", [pytest.param(c, n, m, id=what) for what, c, n, m in BAD_FILES]
)
def test_a_bad_sql_file_is_refused_before_anything_is_written(
    backend: Backend, tmp_path: Path, content: str | bytes, line: int, message: str
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_users.py").write_text(USERS_PY)
    bad = folder / "002_bad.sql"
    bad.write_bytes(content.encode() if isinstance(content, str) else content)

    with pytest.raises(SqlFileError, match=message) as refused:
        MigrationRunner(backend.url, folder).upgrade()

    assert (refused.value.path, refused.value.line, refused.value.version) == (
        str(bad),
        line,
        "002",
    )
    assert str(refused.value).startswith(f"{bad}:{line}: ")
    assert tables(backend) == set()


BODY_READING_A_COLUMN_NAMED_BEGIN = {
    "sqlite": "CREATE TRIGGER tr AFTER INSERT ON a BEGIN SELECT begin FROM a; END;",
    "postgresql": "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT begin FROM a; END;",
    "mysql": "CREATE PROCEDURE p() BEGIN SELECT begin FROM a; END;",
}  # fmt: skip


def test_a_commit_after_a_body_reading_a_column_named_begin_is_refused_before_anything_runs(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    # PostgreSQL runs text holding several statements as one call: a split that read
    # the column begin as a block sent the rest, COMMIT and all, with the body
    body = BODY_READING_A_COLUMN_NAMED_BEGIN[backend.name]
    folder = make_migrations(
        {
            "001_body.sql": "-- migrate:up\nCREATE TABLE a (begin INT);\n"
            f"{body}\nINSERT INTO a VALUES (1);\nCOMMIT;\nINSERT INTO a VALUES (2);\n"
        }
    )
    if backend.profile.sql_syntax.nested_blocks:  # MySQL: begin may open a block there
        refused = r"001_body\.sql:3: BEGIN \.\.\. END body \(a name begin, case or end in it "
        refused += r"must be quoted\) opened on line 3 is never closed"
    else:
        refused = r"001_body\.sql:5: COMMIT ends or begins a transaction"

    with pytest.raises(SqlFileError, match=refused):
        MigrationRunner(backend.url, folder).upgrade()

    assert tables(backend) == set()


def test_an_unterminated_dollar_quote_is_refused(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    if not backend.profile.sql_syntax.dollar_quotes:
        pytest.skip("no dollar quotes in this database's SQL")
    folder = make_migrations({"001_fn.sql": "-- migrate:up\nSELECT 1;\nDO $body$ BEGIN END $$;\n"})

    with pytest.raises(
        SqlFileError, match=r"001_fn\.sql:3: dollar quote \$body\$ opened on line 3"
    ):
        MigrationRunner(backend.url, folder).upgrade()


def test_verify_reports_a_bad_pending_sql_file(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_bad.sql": "-- migrate:up\nSELECT 'abc;\n"})

    with pytest.raises(SqlFileError, match=r"001_bad\.sql:2: string literal"):
        MigrationRunner(sqlite_backend.url, folder).verify()


def test_status_reads_no_sql_file_as_sql(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_bad.sql": "-- migrate:up\nSELECT 'abc;\n"})

    status = MigrationRunner(sqlite_backend.url, folder).status()

    assert [m.label for m in status.pending] == ["001_bad"]


def test_a_bom_and_crlf_line_endings_are_read_as_plain_text(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({})
    (folder / "001_windows.sql").write_bytes(
        b"\xef\xbb\xbf-- Made on Windows.\r\n-- migrate:up\r\nCREATE TABLE a (id INT);\r\n"
        b"INSERT INTO a VALUES (1);\r\n\r\nINSERT INTO missing VALUES (1);\r\n"
    )
    runner = MigrationRunner(backend.url, folder)

    assert runner.migrations()[0].description == "Made on Windows."
    with pytest.raises(MigrationFailed, match=r"001_windows\.sql:6: "):
        runner.upgrade()


def test_a_ten_megabyte_file_runs(sqlite_backend: Backend, make_migrations: MakeMigrations) -> None:
    row = "INSERT INTO big (id, note) VALUES ({0}, 'row {0}; with a ; and ''quotes''');\n"
    body = "".join(row.format(i) for i in range(150_000))
    folder = make_migrations(
        {"001_big.sql": f"-- migrate:up\nCREATE TABLE big (id INT, note TEXT);\n{body}"}
    )
    assert (folder / "001_big.sql").stat().st_size > 10_000_000

    MigrationRunner(sqlite_backend.url, folder).upgrade()

    assert count(sqlite_backend, "SELECT count(*) FROM big") == 150_000


def test_a_semicolon_in_a_name_and_dollars_in_a_string(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    quote = "`" if backend.name == "mysql" else '"'
    folder = make_migrations(
        {
            "001_names.sql": f"""\
                -- migrate:up
                CREATE TABLE {quote}odd;name{quote} (id INT, v VARCHAR(20));
                INSERT INTO {quote}odd;name{quote} VALUES (1, '$$; $x$');
                -- migrate:down
                DROP TABLE {quote}odd;name{quote};
                """
        }
    )

    MigrationRunner(backend.url, folder).upgrade()

    engine = backend.engine()
    with engine.connect() as conn:
        value = conn.execute(text(f"SELECT v FROM {quote}odd;name{quote}")).scalar_one()
    engine.dispose()
    assert value == "$$; $x$"


@pytest.mark.parametrize(
    "content, message",
    [
        pytest.param(b"", "no -- migrate:up line", id="empty file"),
        pytest.param(b"\xef\xbb\xbf", "no -- migrate:up line", id="only a byte order mark"),
        pytest.param(
            b"-- migrate:UP\nSELECT 1;\n", "unknown marker -- migrate:UP", id="upper case"
        ),
        pytest.param(
            b"  -- migrate:up\nSELECT 1;\n", "'-- migrate:up' is no marker", id="indented marker"
        ),
    ],
)
def test_files_that_hold_no_marker_a_run_could_use(
    sqlite_backend: Backend, make_migrations: MakeMigrations, content: bytes, message: str
) -> None:
    folder = make_migrations({})
    (folder / "001_odd.sql").write_bytes(content)

    with pytest.raises(SqlFileError, match=message):
        MigrationRunner(sqlite_backend.url, folder).upgrade()


def test_old_mac_line_endings_count_as_lines(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({})
    (folder / "001_cr.sql").write_bytes(b"-- migrate:up\rSELECT 1;\r\rSELECT * FROM nope;\r")

    with pytest.raises(MigrationFailed, match=r"001_cr\.sql:4: "):
        MigrationRunner(sqlite_backend.url, folder).upgrade()


def test_a_failure_outside_a_transaction_keeps_its_row_failed(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_users.py": USERS_PY,
            "002_loose.sql": """\
                -- migrate:up transaction:false
                INSERT INTO users (id) VALUES (1);
                INSERT INTO nope VALUES (1);
                """,
        }
    )
    runner = MigrationRunner(backend.url, folder)

    with pytest.raises(MigrationFailed, match=r"002_loose\.sql:3: .*changes its DDL committed"):
        runner.upgrade()

    assert count(backend, "SELECT count(*) FROM users") == 1  # nothing took it back
    assert [row.version for row in runner.status().failed] == ["002"]


def test_sql_steps_are_shared_by_many_targets(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    from sqlmig import upgrade_all

    folder = mixed(make_migrations)
    targets = [f"sqlite:///{tmp_path / f'tenant{i}.db'}" for i in range(3)]

    results = upgrade_all(targets, folder, jobs=3)

    assert [[m.label for m in r.applied] for r in results] == [
        ["001_users", "002_orders", "003_tags"]
    ] * 3


def test_the_description_comes_from_the_head_of_a_file_that_is_not_all_utf8(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({})
    (folder / "001_mixed.sql").write_bytes(
        b"-- Caf\xc3\xa9 prices.\n-- migrate:up\nSELECT 1;\n" + b"-- \xe9\n" * 10_000
    )

    (step,) = MigrationRunner("sqlite:///unused.db", folder).migrations()

    assert step.description == "Café prices."
    with pytest.raises(SqlFileError, match=r"001_mixed\.sql:4: the file is not UTF-8"):
        step.load()

"""sqlmig.ops: schema changes written once, run on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, inspect, select, table, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

from backends import Backend
from conftest import MakeMigrations, tables
from sqlmig import MigrationFailed, MigrationRunner, UsageError
from sqlmig.testing import check_stairway

PYTHON = sys.executable

#: Two tables with rows; ``users.legacy`` is indexed, ``posts`` points at ``users``.
SCHEMA = """\
    '''Users and their posts, with rows.'''
    from sqlalchemy import (Column, ForeignKey, Index, Integer, MetaData, String, Table,
                            insert)

    metadata = MetaData()
    users = Table(
        "users", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(50), nullable=False, server_default="anon"),
        Column("email", String(100), unique=True),
        Column("legacy", Integer),
        Index("ix_users_legacy", "legacy"),
    )
    posts = Table(
        "posts", metadata,
        Column("id", Integer, primary_key=True),
        Column("user_id", Integer, ForeignKey("users.id", name="fk_posts_user"), nullable=False),
        Column("title", String(20)),
    )

    def up(conn):
        metadata.create_all(conn)
        conn.execute(insert(users), [
            {"name": "Ada", "email": "ada@example.com", "legacy": 1},
            {"name": "Bob", "email": "bob@example.org", "legacy": 2},
        ])
        conn.execute(insert(posts), [
            {"id": 1, "user_id": 1, "title": "first"},
            {"id": 2, "user_id": 2, "title": "second"},
        ])

    def down(conn):
        metadata.drop_all(conn)
    """

#: Every operation of the issue, and a down() that reverses each with the same object.
EVERY_OPERATION = """\
    '''Every portable operation, and its reverse.'''
    from sqlalchemy import Boolean, Column, Integer, String, false

    from sqlmig.ops import ops

    def up(conn):
        o = ops(conn)
        o.add_column("users", Column("verified", Boolean, nullable=False, server_default=false()))
        o.alter_column("users", "name", type_=String(200), nullable=True)
        o.rename_column("users", "email", "email_address")
        o.drop_column("users", "legacy")
        o.rename_table("posts", "articles")
        o.add_column("articles", Column("editor_id", Integer))
        o.create_foreign_key("fk_articles_editor", "articles", "users", ["editor_id"], ["id"])
        o.create_index("ix_articles_title", "articles", ["title"])
        o.create_unique_constraint("uq_articles_title_user", "articles", ["title", "user_id"])

    def down(conn):
        o = ops(conn)
        o.drop_unique_constraint("uq_articles_title_user", "articles")
        o.drop_index("ix_articles_title", "articles")
        o.drop_foreign_key("fk_articles_editor", "articles")
        o.drop_column("articles", "editor_id")
        o.rename_table("articles", "posts")
        o.add_column("users", Column("legacy", Integer))
        o.create_index("ix_users_legacy", "users", ["legacy"])
        o.rename_column("users", "email_address", "email")
        o.alter_column("users", "name", type_=String(50), nullable=False)
        o.drop_column("users", "verified")
    """


@pytest.fixture
def engine(backend: Backend) -> Iterator[Engine]:
    engine = backend.engine()
    yield engine
    engine.dispose()


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def columns(engine: Engine, name: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: dict(c) for c in inspect(engine).get_columns(name)}


def index_names(engine: Engine, name: str) -> set[str]:
    return {str(i["name"]) for i in inspect(engine).get_indexes(name)}


def test_every_operation_upgrades_and_downgrades_keeping_the_rows(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_schema.py": SCHEMA, "002_every_op.py": EVERY_OPERATION})
    runner = MigrationRunner(backend.url, folder)

    runner.upgrade()

    assert {"users", "articles"} <= tables(backend) and "posts" not in tables(backend)
    assert rows(engine, "SELECT id, name, email_address FROM users ORDER BY id") == [
        (1, "Ada", "ada@example.com"),
        (2, "Bob", "bob@example.org"),
    ]
    assert [bool(v) for (v,) in rows(engine, "SELECT verified FROM users")] == [False, False]
    user_cols = columns(engine, "users")
    assert "legacy" not in user_cols and "email" not in user_cols
    assert user_cols["name"]["nullable"] is True
    assert getattr(user_cols["name"]["type"], "length", None) == 200
    assert rows(engine, "SELECT id, user_id, title FROM articles ORDER BY id") == [
        (1, 1, "first"),
        (2, 2, "second"),
    ]
    assert "ix_articles_title" in index_names(engine, "articles")
    fks = {fk["name"]: fk for fk in inspect(engine).get_foreign_keys("articles")}
    assert fks["fk_articles_editor"]["referred_table"] == "users"
    assert fks["fk_posts_user"]["referred_table"] == "users"
    uniques = inspect(engine).get_unique_constraints("articles")
    assert [u["column_names"] for u in uniques if u["name"] == "uq_articles_title_user"] == [
        ["title", "user_id"]
    ]

    runner.downgrade("001")

    assert "articles" not in tables(backend)
    assert rows(engine, "SELECT id, name, email, legacy FROM users ORDER BY id") == [
        (1, "Ada", "ada@example.com", None),  # a dropped column's values cannot come back
        (2, "Bob", "bob@example.org", None),
    ]
    assert rows(engine, "SELECT id, user_id, title FROM posts ORDER BY id") == [
        (1, 1, "first"),
        (2, 2, "second"),
    ]
    assert columns(engine, "users")["name"]["nullable"] is False
    assert "ix_users_legacy" in index_names(engine, "users")


def test_every_operation_passes_the_stairway_check(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_schema.py": SCHEMA, "002_every_op.py": EVERY_OPERATION})

    checked = check_stairway(MigrationRunner(backend.url, folder))

    assert [m.version for m in checked] == ["001", "002"]


TABLE_COMMENTS = """\
    '''Comments on a table, set and removed.'''
    from sqlmig.ops import ops

    def up(conn):
        o = ops(conn)
        o.create_table_comment("users", "who signs in", existing_comment=None, schema=None)

    def down(conn):
        ops(conn).drop_table_comment("users", existing_comment="who signs in")
    """


def test_table_comments_are_set_and_removed_where_the_database_keeps_them(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_schema.py": SCHEMA, "002_comments.py": TABLE_COMMENTS})
    runner = MigrationRunner(backend.url, folder)

    def comment() -> object:
        if not engine.dialect.supports_comments:  # SQLite keeps none: the calls do nothing
            return None
        return inspect(engine).get_table_comment("users")["text"]

    runner.upgrade()
    assert comment() == ("who signs in" if engine.dialect.supports_comments else None)
    runner.downgrade("001")
    assert comment() is None
    runner.downgrade("base")
    check_stairway(runner)


EXPRESSION_INDEX = """\
    '''An index on lower(name), as autogenerate writes it.'''
    import sqlalchemy as sa

    from sqlmig.ops import ops

    def up(conn):
        ops(conn).create_index(
            "ix_users_lower_name", "users", [sa.literal_column("lower(name)")], unique={unique}
        )

    def down(conn):
        ops(conn).drop_index("ix_users_lower_name", "users")
    """


def has_index(engine: Engine, name: str) -> bool:
    """Whether the index exists (SQLite's reflection leaves out indexes on expressions)."""
    if engine.dialect.name == "sqlite":
        return bool(rows(engine, f"SELECT 1 FROM sqlite_master WHERE name = '{name}'"))
    return any(name in index_names(engine, t) for t in inspect(engine).get_table_names())


def test_an_index_on_an_expression_is_made_where_the_database_has_them(
    backend: Backend,
    engine: Engine,
    make_migrations: MakeMigrations,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sqlmig")
    step = EXPRESSION_INDEX.format(unique=False)
    runner = MigrationRunner(
        backend.url, make_migrations({"001_schema.py": SCHEMA, "002_ix.py": step})
    )
    with engine.connect() as conn:
        expressions = backend.profile.indexes_expressions(conn)

    runner.upgrade()
    assert has_index(engine, "ix_users_lower_name") is expressions
    runner.downgrade("001")
    assert not has_index(engine, "ix_users_lower_name")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if expressions:
        assert warned == []
        runner.downgrade("base")
        check_stairway(runner)
    else:  # MariaDB: the step runs on without the index, and says so each way
        assert warned == [
            "index ix_users_lower_name on users not created: MariaDB has no index on an "
            "expression (lower(name)); queries there run without it",
            "index ix_users_lower_name on users not dropped: it is not there (MariaDB creates "
            "no index on an expression)",
        ]


def test_dropping_a_column_drops_the_indexes_on_expressions_of_it(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    """As PostgreSQL does; SQLite refused the column's drop (reflection misses the index)."""
    with engine.connect() as conn:
        if not backend.profile.indexes_expressions(conn):
            pytest.skip("this database has no index on an expression")
    drop = """\
        from sqlmig.ops import ops

        def up(conn):
            ops(conn).drop_column("users", "name")
        """
    both = """\
        import sqlalchemy as sa
        from sqlmig.ops import ops

        def up(conn):
            ops(conn).create_index("ix_users_lower_email", "users", [sa.text("lower(email)")])
        """
    runner = MigrationRunner(
        backend.url,
        make_migrations(
            {
                "001_schema.py": SCHEMA,
                "002_ix.py": EXPRESSION_INDEX.format(unique=False),
                "003_other_ix.py": both,
                "004_drop_name.py": drop,
            }
        ),
    )

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner.upgrade()

    assert not has_index(engine, "ix_users_lower_name")
    assert has_index(engine, "ix_users_lower_email")  # on another column: kept
    assert "name" not in {c["name"] for c in inspect(engine).get_columns("users")}


def test_a_unique_index_on_an_expression_is_refused_where_the_database_has_none(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    step = EXPRESSION_INDEX.format(unique=True)
    runner = MigrationRunner(
        backend.url, make_migrations({"001_schema.py": SCHEMA, "002_ix.py": step})
    )
    with engine.connect() as conn:
        expressions = backend.profile.indexes_expressions(conn)
    if expressions:
        runner.upgrade()
        assert has_index(engine, "ix_users_lower_name")
        return
    with pytest.raises(MigrationFailed, match="MariaDB has no index on an expression") as info:
        runner.upgrade()
    assert "nothing was changed" in str(info.value)  # refused before any statement
    assert [r.version for r in runner.status().failed] == ["002"]


def test_alter_column_keeps_the_default_and_auto_increment_it_does_not_name(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    # MySQL's MODIFY COLUMN restates the whole column: ops reads the rest first
    folder = make_migrations(
        {
            "001_schema.py": SCHEMA,
            "002_relax.py": """\
            from sqlmig.ops import ops

            def up(conn):
                ops(conn).alter_column("users", "name", nullable=True)
                ops(conn).alter_column("users", "id", nullable=False)
            """,
        }
    )
    MigrationRunner(backend.url, folder).upgrade()

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (email) VALUES ('new@example.com')"))

    assert rows(engine, "SELECT id, name FROM users WHERE email = 'new@example.com'") == [
        (3, "anon")
    ]
    assert columns(engine, "users")["name"]["nullable"] is True


def test_add_column_with_a_non_constant_default_fills_existing_rows(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    # SQLite's ADD COLUMN refuses CURRENT_TIMESTAMP: ops rebuilds the table there
    folder = make_migrations(
        {
            "001_schema.py": SCHEMA,
            "002_stamp.py": """\
            from sqlalchemy import Column, DateTime, func
            from sqlmig.ops import ops

            def up(conn):
                ops(conn).add_column("users", Column(
                    "seen_at", DateTime, nullable=False, server_default=func.current_timestamp()
                ))

            def down(conn):
                ops(conn).drop_column("users", "seen_at")
            """,
        }
    )
    runner = MigrationRunner(backend.url, folder)

    runner.upgrade()

    assert rows(engine, "SELECT COUNT(*) FROM users WHERE seen_at IS NOT NULL") == [(2,)]
    runner.rollback_last()
    assert "seen_at" not in columns(engine, "users")
    assert rows(engine, "SELECT COUNT(*) FROM users") == [(2,)]


def test_batch_makes_several_changes_with_one_sqlite_rebuild(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_schema.py": SCHEMA,
            "002_batch.py": """\
            from sqlalchemy import Text
            from sqlmig.ops import ops

            def up(conn):
                with ops(conn).batch("posts") as posts:
                    posts.alter_column("title", type_=Text(), nullable=False)
                    posts.create_index("ix_posts_user", ["user_id"])
                    posts.create_unique_constraint("uq_posts_title_user", ["title", "user_id"])
            """,
        }
    )
    runner = MigrationRunner(backend.url, folder)
    runner.upgrade("001")

    [step] = runner.dry_run()
    runner.upgrade()

    if backend.profile.rebuilds_tables_for_alter:
        rebuilds = [s for s in step.statements if s.startswith("ALTER TABLE _alembic_tmp_posts")]
        assert len(rebuilds) == 1
    assert columns(engine, "posts")["title"]["nullable"] is False
    assert "ix_posts_user" in index_names(engine, "posts")
    assert rows(engine, "SELECT id, title FROM posts ORDER BY id") == [(1, "first"), (2, "second")]


def test_dry_run_shows_the_alter_statements_and_changes_nothing(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_schema.py": SCHEMA, "002_every_op.py": EVERY_OPERATION})
    runner = MigrationRunner(backend.url, folder)
    runner.upgrade("001")

    [step] = runner.dry_run()

    if not backend.profile.transactional_ddl:  # DDL commits itself: steps are planned, not tried
        assert not step.tried
    else:
        sql = "\n".join(step.statements)
        assert "ALTER TABLE users ADD COLUMN verified" in sql
        assert "ALTER TABLE posts RENAME TO articles" in sql
        assert "CREATE INDEX ix_articles_title ON articles (title)" in sql
        if backend.profile.rebuilds_tables_for_alter:
            assert "CREATE TABLE _alembic_tmp_users" in sql  # the rebuild, in full
            assert "ALTER TABLE _alembic_tmp_users RENAME TO users" in sql
        else:
            assert "ALTER TABLE users ALTER COLUMN name TYPE VARCHAR(200)" in sql
    assert tables(backend) == {"migrations", "users", "posts"}
    assert "verified" not in columns(engine, "users")
    assert runner.status().current == "001"


def test_alembic_keeps_to_statements_no_version_table_no_logging_setup(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    import alembic.util.messaging  # noqa: F401  (its own NullHandler, on import, is Alembic's)

    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("alembic").handlers[:])
    folder = make_migrations({"001_schema.py": SCHEMA, "002_every_op.py": EVERY_OPERATION})
    runner = MigrationRunner(backend.url, folder)

    runner.upgrade()
    runner.downgrade("base")

    assert tables(backend) == {"migrations"}  # no alembic_version, ever
    after = (list(root.handlers), root.level, logging.getLogger("alembic").handlers[:])
    assert after == before


def test_ops_inside_a_callers_transaction_are_undone_by_its_rollback(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_schema.py": SCHEMA, "002_every_op.py": EVERY_OPERATION})
    MigrationRunner(backend.url, folder).upgrade("001")

    with engine.connect() as conn:
        transaction = conn.begin()
        if not backend.profile.caller_transaction_ok:  # DDL would commit the caller's transaction
            with pytest.raises(UsageError):
                MigrationRunner(conn, folder).upgrade()
            return
        MigrationRunner(conn, folder).upgrade()  # each step in a SAVEPOINT
        assert "verified" in {c["name"] for c in inspect(conn).get_columns("users")}
        transaction.rollback()

    assert "verified" not in columns(engine, "users")
    assert tables(backend) == {"migrations", "users", "posts"}


def test_ops_in_a_non_transactional_step(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    # outside a transaction (AUTOCOMMIT), each Alembic batch opens and ends its own
    folder = make_migrations(
        {
            "001_schema.py": SCHEMA,
            "002_outside.py": """\
            from sqlalchemy import Column, String, Text
            from sqlmig.ops import ops

            transactional = False

            def up(conn):
                o = ops(conn)
                o.add_column("posts", Column("body", Text))
                o.alter_column("posts", "title", type_=String(80))
            """,
        }
    )

    MigrationRunner(backend.url, folder).upgrade()

    assert getattr(columns(engine, "posts")["title"]["type"], "length", None) == 80
    assert rows(engine, "SELECT title FROM posts ORDER BY id") == [("first",), ("second",)]


# -- SQLite's table rebuild ---------------------------------------------------

BIG = """\
    '''10,000 users with an index; preferences point at them.'''
    from sqlalchemy import (Column, ForeignKey, Index, Integer, MetaData, String, Table,
                            insert)

    metadata = MetaData()
    users = Table(
        "users", metadata,
        Column("id", Integer, primary_key=True),
        Column("code", String(10)),
        Column("email", String(100), nullable=False),
        Index("ix_users_email", "email", unique=True),
    )
    prefs = Table(
        "prefs", metadata,
        Column("id", Integer, primary_key=True),
        Column("user_id", Integer, ForeignKey("users.id", name="fk_prefs_user"), nullable=False),
    )

    def up(conn):
        metadata.create_all(conn)
        conn.execute(insert(users), [
            {"id": i, "code": str(i), "email": f"u{i}@example.com"} for i in range(1, 10001)
        ])
        conn.execute(insert(prefs), [{"id": i, "user_id": i} for i in range(1, 10001, 7)])
    """

CODE_TO_INT = """\
    from sqlalchemy import Integer
    from sqlmig.ops import ops

    def up(conn):
        ops(conn).alter_column("users", "code", type_=Integer(), nullable=False)
    """


def sqlite_engine(backend: Backend, foreign_keys: bool = False) -> Engine:
    engine = backend.engine()
    if foreign_keys:

        @event.listens_for(engine, "connect")
        def on(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def test_sqlite_type_and_nullability_change_keeps_10000_rows_index_and_foreign_key(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_big.py": BIG, "002_code_to_int.py": CODE_TO_INT})
    engine = sqlite_engine(sqlite_backend)
    try:
        MigrationRunner(engine, folder).upgrade()

        code = columns(engine, "users")["code"]
        assert type(code["type"]).__name__ == "INTEGER" and code["nullable"] is False
        assert rows(engine, "SELECT COUNT(*), SUM(code), SUM(id) FROM users") == [
            (10000, 50005000, 50005000)
        ]
        assert rows(engine, "SELECT typeof(code) FROM users GROUP BY 1") == [("integer",)]
        [index] = inspect(engine).get_indexes("users")
        assert (index["name"], index["column_names"], bool(index["unique"])) == (
            "ix_users_email",
            ["email"],
            True,
        )
        [fk] = inspect(engine).get_foreign_keys("prefs")
        assert (fk["name"], fk["referred_table"], fk["referred_columns"]) == (
            "fk_prefs_user",
            "users",
            ["id"],
        )
        assert rows(engine, "PRAGMA foreign_key_check") == []
        joined = "SELECT COUNT(*) FROM prefs JOIN users ON users.id = prefs.user_id"
        assert rows(engine, joined) == [(1429,)]
        assert not {t for t in tables(sqlite_backend) if t.startswith("_alembic")}
    finally:
        engine.dispose()


def test_sqlite_rebuild_failing_half_way_leaves_the_old_table_untouched(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_big.py": BIG, "002_code_to_int.py": CODE_TO_INT})
    engine = sqlite_engine(sqlite_backend)
    try:
        runner = MigrationRunner(engine, folder)
        runner.upgrade("001")
        with engine.begin() as conn:  # one NULL: copying into NOT NULL fails mid-rebuild
            conn.execute(text("UPDATE users SET code = NULL WHERE id = 9999"))
        schema_before = rows(engine, "SELECT type, name, sql FROM sqlite_master ORDER BY name")

        with pytest.raises(MigrationFailed, match="NOT NULL") as failed:
            runner.upgrade()

        assert failed.value.version == "002"
        assert rows(engine, "SELECT type, name, sql FROM sqlite_master ORDER BY name") == (
            schema_before
        )
        assert rows(engine, "SELECT COUNT(*), COUNT(code) FROM users") == [(10000, 9999)]
        assert rows(engine, "SELECT typeof(code) FROM users WHERE id = 1") == [("text",)]
        assert runner.status().current == "001"
    finally:
        engine.dispose()


def test_sqlite_with_foreign_keys_on_refuses_to_rebuild_a_referenced_table(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    # dropping the old table would delete what prefs points at, and SQLite cannot
    # switch foreign keys off inside the step's transaction
    folder = make_migrations({"001_big.py": BIG, "002_code_to_int.py": CODE_TO_INT})
    engine = sqlite_engine(sqlite_backend, foreign_keys=True)
    try:
        runner = MigrationRunner(engine, folder)
        runner.upgrade("001")
        schema_before = rows(engine, "SELECT sql FROM sqlite_master ORDER BY name")

        with pytest.raises(MigrationFailed, match="foreign_keys=ON") as failed:
            runner.upgrade()

        assert isinstance(failed.value.__cause__, UsageError)
        assert "prefs" in str(failed.value.__cause__)
        assert rows(engine, "SELECT sql FROM sqlite_master ORDER BY name") == schema_before
        assert runner.status().current == "001"
    finally:
        engine.dispose()


def test_sqlite_with_foreign_keys_on_still_renames_adds_and_drops_plain_columns(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_big.py": BIG,
            "002_in_place.py": """\
            from sqlalchemy import Boolean, Column, false
            from sqlmig.ops import ops

            def up(conn):
                o = ops(conn)
                o.add_column("users", Column("active", Boolean, nullable=False,
                                             server_default=false()))
                o.rename_column("users", "code", "legacy_code")
                o.rename_table("prefs", "preferences")

            def down(conn):
                o = ops(conn)
                o.rename_table("preferences", "prefs")
                o.rename_column("users", "legacy_code", "code")
                o.drop_column("users", "active")
            """,
        }
    )
    engine = sqlite_engine(sqlite_backend, foreign_keys=True)
    try:
        runner = MigrationRunner(engine, folder)
        runner.upgrade()
        assert "legacy_code" in columns(engine, "users")
        runner.rollback_last()

        assert set(columns(engine, "users")) == {"id", "code", "email"}
        assert rows(engine, "SELECT COUNT(*) FROM prefs") == [(1429,)]
        assert rows(engine, "PRAGMA foreign_key_check") == []
    finally:
        engine.dispose()


# -- the optional extra -------------------------------------------------------


def test_importing_sqlmig_does_not_import_alembic() -> None:
    code = "import sys, sqlmig, sqlmig.ops; print('alembic' in sys.modules)"

    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "False"


def test_without_alembic_ops_says_which_extra_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['alembic'] = None\n"  # as if the extra were not installed
        "from sqlalchemy import create_engine\n"
        "from sqlmig.ops import ops\n"
        "from sqlmig import UsageError\n"
        f"engine = create_engine('sqlite:///{tmp_path}/x.db')\n"
        "with engine.connect() as conn:\n"
        "    try:\n"
        "        ops(conn)\n"
        "    except UsageError as exc:\n"
        "        print(exc)\n"
    )

    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)

    assert "pip install 'sqlmig[ops]'" in out.stdout


def test_ops_on_a_plain_connection_outside_sqlmig(sqlite_backend: Backend) -> None:
    from sqlmig.ops import ops

    engine = sqlite_backend.engine()
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR(5))"))
            conn.execute(text("INSERT INTO t (v) VALUES ('1'), ('2')"))
            o = ops(conn)
            assert o.dialect_name == "sqlite"
            o.alter_column("t", "v", nullable=False)
            with pytest.raises(UsageError, match="no column 'nope'"):
                o.alter_column("t", "nope", nullable=False)
        assert rows(engine, "SELECT v FROM t ORDER BY id") == [("1",), ("2",)]
        assert columns(engine, "t")["v"]["nullable"] is False
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(table("t"))).scalar() == 2
    finally:
        engine.dispose()


# -- sqlmig.ops(conn), however it is reached ----------------------------------

USERS = """\
    '''Users with a name.'''
    from sqlalchemy import Column, Integer, MetaData, String, Table

    users = Table("users", MetaData(), Column("id", Integer, primary_key=True),
                  Column("name", String(100), nullable=False))

    def up(conn):
        users.create(conn)

    def down(conn):
        users.drop(conn)
    """

#: The README's example, word for word.
README_EXAMPLE = '''\
    """Widen users.name and add users.verified."""

    from sqlalchemy import Boolean, Column, String, false

    import sqlmig


    def up(conn):
        ops = sqlmig.ops(conn)
        ops.add_column("users", Column("verified", Boolean, nullable=False, server_default=false()))
        ops.alter_column("users", "name", type_=String(200), nullable=True)


    def down(conn):
        ops = sqlmig.ops(conn)
        ops.alter_column("users", "name", type_=String(100), nullable=False)
        ops.drop_column("users", "verified")
    '''

ADD_AGE = """\
    '''Add users.age.'''
    from sqlalchemy import Column, Integer

    import sqlmig

    def up(conn):
        sqlmig.ops(conn).add_column("users", Column("age", Integer))

    def down(conn):
        sqlmig.ops(conn).drop_column("users", "age")
    """


def test_two_steps_calling_sqlmig_ops_in_one_upgrade(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {"001_users.py": USERS, "002_readme.py": README_EXAMPLE, "003_age.py": ADD_AGE}
    )
    runner = MigrationRunner(backend.url, folder)

    assert [m.version for m in runner.upgrade()] == ["001", "002", "003"]

    engine = backend.engine()
    try:
        assert set(columns(engine, "users")) == {"id", "name", "verified", "age"}
    finally:
        engine.dispose()
    assert [m.version for m in runner.downgrade("base")] == ["003", "002", "001"]
    assert runner.status().failed == []


def test_the_readme_example_passes_the_stairway_check(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_users.py": USERS, "002_readme.py": README_EXAMPLE})

    assert [m.version for m in check_stairway(MigrationRunner(backend.url, folder))] == [
        "001",
        "002",
    ]


def test_sqlmig_ops_stays_callable_after_the_submodule_is_imported() -> None:
    code = (
        "import sys, sqlmig\n"
        "assert 'sqlmig.ops' not in sys.modules  # import sqlmig stays cheap\n"
        "first = sqlmig.ops\n"
        "import sqlmig.ops\n"
        "from sqlmig.ops import SchemaOps, ops\n"
        "assert callable(first) and callable(sqlmig.ops) and callable(ops)\n"
        "assert sqlmig.ops is first and sqlmig.ops.ops is ops\n"
        "print(SchemaOps.__name__)\n"
    )

    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60)

    assert (out.returncode, out.stdout.strip()) == (0, "SchemaOps"), out.stderr


# -- Alembic stays quiet --------------------------------------------------------


ALEMBIC_LOGGERS = ("alembic", "alembic.runtime.migration", "alembic.runtime.plugins")


def logger_state() -> list[tuple[Any, ...]]:
    return [
        (lg.level, lg.disabled, list(lg.filters), list(lg.handlers))
        for lg in map(logging.getLogger, ALEMBIC_LOGGERS)
    ]


def test_steps_using_ops_log_nothing_from_alembic(
    backend: Backend, make_migrations: MakeMigrations, caplog: pytest.LogCaptureFixture
) -> None:
    # "Will assume non-transactional DDL" was wrong as well as noisy: the step is in a
    # transaction
    caplog.set_level(logging.DEBUG)
    before = logger_state()
    folder = make_migrations({"001_schema.py": SCHEMA, "002_every_op.py": EVERY_OPERATION})
    runner = MigrationRunner(backend.url, folder)

    runner.upgrade()
    runner.downgrade("001")

    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []
    assert any(r.name.startswith("sqlmig") for r in caplog.records)  # the capture works
    assert logger_state() == before  # the user's logging configuration is untouched
    logging.getLogger("alembic.runtime.migration").info("the user's own line")
    assert caplog.records[-1].getMessage() == "the user's own line"


def test_first_use_of_ops_in_a_process_logs_no_alembic_setup(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    # Alembic logs "setup plugin ..." when it is first imported, inside the first step
    folder = make_migrations({"001_schema.py": SCHEMA, "002_every_op.py": EVERY_OPERATION})
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stdout,\n"
        "                    format='%(name)s: %(message)s')\n"
        "from sqlmig import MigrationRunner\n"
        f"MigrationRunner({str(sqlite_backend.url)!r}, {str(folder)!r}).upgrade()\n"
        "print('alembic' in sys.modules)\n"
    )

    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.splitlines()[-1] == "True"  # ops really ran Alembic
    assert [line for line in out.stdout.splitlines() if line.startswith("alembic")] == []
    assert "setup plugin" not in out.stdout + out.stderr


# -- what SQLite's rebuild must keep ----------------------------------------------

#: A table with an unnamed CHECK, a case-insensitive name, ids never reused, a
#: trigger and a view; each written for its database.
KEEPERS = """\
    '''Accounts with a trigger, a view, a CHECK and a case-insensitive name.'''
    from sqlalchemy import text

    TABLE = {
        "sqlite": "CREATE TABLE accounts (\\n"
                  "  id INTEGER PRIMARY KEY AUTOINCREMENT,\\n"
                  "  name VARCHAR(50) COLLATE NOCASE NOT NULL,\\n"
                  "  balance INTEGER NOT NULL DEFAULT 0,\\n"
                  "  note VARCHAR(20),\\n"
                  "  legacy INTEGER,\\n"
                  "  CHECK (balance >= 0)\\n"
                  ")",
        "postgresql": "CREATE TABLE accounts (id SERIAL PRIMARY KEY,"
                      " name VARCHAR(50) NOT NULL, balance INTEGER NOT NULL DEFAULT 0,"
                      " note VARCHAR(20), legacy INTEGER, CHECK (balance >= 0))",
        "mysql": "CREATE TABLE accounts (id INTEGER AUTO_INCREMENT PRIMARY KEY,"
                 " name VARCHAR(50) COLLATE utf8mb4_general_ci NOT NULL,"
                 " balance INTEGER NOT NULL DEFAULT 0, note VARCHAR(20), legacy INTEGER,"
                 " CHECK (balance >= 0)) DEFAULT CHARSET=utf8mb4",
    }
    TRIGGER = {
        "sqlite": ["CREATE TRIGGER accounts_audit AFTER INSERT ON accounts\\n"
                   "BEGIN INSERT INTO audit VALUES (NEW.id, 'insert'); END"],
        "postgresql": [
            "CREATE FUNCTION accounts_audit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN INSERT INTO audit VALUES (NEW.id, 'insert'); RETURN NEW; END$$",
            "CREATE TRIGGER accounts_audit AFTER INSERT ON accounts FOR EACH ROW "
            "EXECUTE FUNCTION accounts_audit()",
        ],
        "mysql": ["CREATE TRIGGER accounts_audit AFTER INSERT ON accounts FOR EACH ROW "
                  "INSERT INTO audit VALUES (NEW.id, 'insert')"],
    }

    def up(conn):
        dialect = conn.dialect.name
        conn.execute(text(TABLE[dialect]))
        conn.execute(text("CREATE INDEX ix_accounts_legacy ON accounts (legacy)"))
        conn.execute(text("CREATE TABLE audit (account_id INTEGER, what VARCHAR(10))"))
        for statement in TRIGGER[dialect]:
            conn.execute(text(statement))
        conn.execute(text("CREATE VIEW rich AS SELECT id, name FROM accounts WHERE balance > 100"))
        conn.execute(text(
            "INSERT INTO accounts (name, balance, legacy) VALUES"
            " ('Ada', 500, 1), ('Bob', 50, 2), ('Cy', 0, 3)"
        ))
        conn.execute(text("DELETE FROM accounts WHERE name = 'Cy'"))  # id 3 is never reused
        conn.execute(text("DELETE FROM audit"))
    """

#: Changes that rebuild the table on SQLite and are plain ALTERs elsewhere.
REBUILDS = """\
    from sqlalchemy import String
    from sqlmig.ops import ops

    def up(conn):
        o = ops(conn)
        o.alter_column("accounts", "note", type_=String(200))
        o.drop_column("accounts", "legacy")
        o.create_unique_constraint("uq_accounts_note", "accounts", ["note"])
    """


def sqlite_schema(engine: Engine) -> list[tuple[Any, ...]]:
    return rows(engine, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")


def test_rebuild_keeps_triggers_views_checks_collation_and_autoincrement(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_keepers.py": KEEPERS, "002_rebuilds.py": REBUILDS})
    runner = MigrationRunner(backend.url, folder)
    runner.upgrade("001")
    if backend.name == "sqlite":
        kept = [r for r in sqlite_schema(engine) if r[0] in ("trigger", "view")]

    runner.upgrade()

    assert set(columns(engine, "accounts")) == {"id", "name", "balance", "note"}
    assert getattr(columns(engine, "accounts")["note"]["type"], "length", None) == 200
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO accounts (name, balance) VALUES ('Dee', 200)"))
    assert rows(engine, "SELECT id FROM accounts WHERE name = 'Dee'") == [(4,)]  # not 3
    assert rows(engine, "SELECT account_id, what FROM audit") == [(4, "insert")]  # trigger
    assert rows(engine, "SELECT name FROM rich ORDER BY id") == [("Ada",), ("Dee",)]  # view
    with pytest.raises(DBAPIError), engine.begin() as conn:  # the CHECK
        conn.execute(text("INSERT INTO accounts (name, balance) VALUES ('Eve', -1)"))
    if backend.name != "postgresql":  # case-insensitive: SQLite NOCASE, MySQL *_ci
        assert rows(engine, "SELECT name FROM accounts WHERE name = 'ADA'") == [("Ada",)]
    if backend.name == "sqlite":
        schema = sqlite_schema(engine)
        assert [r for r in schema if r[0] in ("trigger", "view")] == kept  # the same SQL
        [table_sql] = [r[3] for r in schema if r[1] == "accounts"]
        assert "AUTOINCREMENT" in table_sql and 'COLLATE "NOCASE"' in table_sql
        assert "CHECK (balance >= 0)" in table_sql
        assert rows(engine, "SELECT name, seq FROM sqlite_sequence") == [("accounts", 4)]
        assert not [r for r in schema if "_alembic" in r[1] or "_alembic" in str(r[3])]


def test_sqlite_autoincrement_keeps_its_high_water_mark_with_the_last_rows_deleted(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_keepers.py": KEEPERS,
            "002_empty.py": """\
            from sqlalchemy import text

            def up(conn):
                conn.execute(text("DELETE FROM accounts"))
            """,
            "003_rebuilds.py": REBUILDS,
        }
    )
    engine = sqlite_backend.engine()
    try:
        MigrationRunner(engine, folder).upgrade()

        with engine.begin() as conn:
            conn.execute(text("INSERT INTO accounts (name) VALUES ('Dee')"))
        assert rows(engine, "SELECT id FROM accounts") == [(4,)]
    finally:
        engine.dispose()


def test_sqlite_rebuild_failing_after_the_copy_rolls_everything_back(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_keepers.py": KEEPERS,
            "002_rebuilds_then_fails.py": REBUILDS + "    raise RuntimeError('later trouble')\n",
        }
    )
    engine = sqlite_backend.engine()
    try:
        runner = MigrationRunner(engine, folder)
        runner.upgrade("001")
        before = sqlite_schema(engine)
        data = rows(engine, "SELECT * FROM accounts ORDER BY id")

        with pytest.raises(MigrationFailed, match="later trouble"):
            runner.upgrade()

        assert sqlite_schema(engine) == before
        assert rows(engine, "SELECT * FROM accounts ORDER BY id") == data
        assert rows(engine, "SELECT name, seq FROM sqlite_sequence") == [("accounts", 3)]
        assert rows(engine, "PRAGMA legacy_alter_table") == [(0,)]
        assert runner.status().current == "001"
    finally:
        engine.dispose()


def test_sqlite_rebuild_keeps_index_details_and_triggers_of_other_tables(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    # SQLAlchemy reflects neither expression indexes nor an index's DESC and
    # COLLATE; a trigger elsewhere naming the table made the rename fail
    folder = make_migrations(
        {
            "001_keepers.py": KEEPERS,
            "002_more.py": """\
            from sqlalchemy import text

            def up(conn):
                conn.execute(text("CREATE INDEX ix_accounts_lower ON accounts (lower(name))"))
                conn.execute(text(
                    "CREATE INDEX ix_accounts_balance"
                    " ON accounts (balance DESC, name COLLATE RTRIM)"
                ))
                conn.execute(text(
                    "CREATE TRIGGER audit_touch AFTER INSERT ON audit "
                    "BEGIN UPDATE accounts SET balance = balance WHERE id = NEW.account_id; END"
                ))
                conn.execute(text(
                    "CREATE TRIGGER rich_insert INSTEAD OF INSERT ON rich "
                    "BEGIN INSERT INTO accounts (name, balance) VALUES (NEW.name, 1000); END"
                ))
            """,
            "003_rebuilds.py": REBUILDS,
        }
    )
    engine = sqlite_backend.engine()
    try:
        runner = MigrationRunner(engine, folder)
        runner.upgrade("002")
        before = [r for r in sqlite_schema(engine) if r[1] != "ix_accounts_legacy"]

        with warnings.catch_warnings():  # reflection's skipping of ix_accounts_lower is not said
            warnings.simplefilter("error")
            runner.upgrade()

        after = sqlite_schema(engine)
        assert [r for r in after if r[0] != "table"] == sorted(
            [
                *(r for r in before if r[0] != "table"),
                ("index", "sqlite_autoindex_accounts_1", "accounts", None),  # the new UNIQUE
            ],
            key=lambda r: r[1],
        )
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO rich (name) VALUES ('Flo')"))
        assert rows(engine, "SELECT name, balance FROM accounts WHERE id = 4") == [("Flo", 1000)]
    finally:
        engine.dispose()


def test_sqlite_rebuild_that_would_break_a_view_is_refused(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_keepers.py": KEEPERS,
            "002_rename_name.py": """\
            from sqlmig.ops import ops

            def up(conn):
                with ops(conn).batch("accounts") as accounts:  # a rebuild: the view is not
                    accounts.alter_column("name", new_column_name="full_name")  # rewritten
            """,
        }
    )
    engine = sqlite_backend.engine()
    try:
        runner = MigrationRunner(engine, folder)
        runner.upgrade("001")
        before = sqlite_schema(engine)

        with pytest.raises(MigrationFailed) as failed:
            runner.upgrade()

        assert isinstance(failed.value.__cause__, UsageError)
        message = str(failed.value.__cause__)
        assert "rich" in message and "\n" not in message
        assert sqlite_schema(engine) == before
    finally:
        engine.dispose()


def test_sqlite_rebuild_refuses_what_it_cannot_carry(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_conflict.py": """\
            from sqlalchemy import text

            def up(conn):
                conn.execute(text(
                    "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL ON CONFLICT REPLACE"
                    " DEFAULT 'x', w TEXT)"
                ))
            """,
            "002_alter.py": """\
            from sqlalchemy import String
            from sqlmig.ops import ops

            def up(conn):
                ops(conn).alter_column("t", "w", type_=String(10))
            """,
        }
    )
    engine = sqlite_backend.engine()
    try:
        runner = MigrationRunner(engine, folder)
        runner.upgrade("001")
        before = sqlite_schema(engine)

        with pytest.raises(MigrationFailed) as failed:
            runner.upgrade()

        message = str(failed.value.__cause__)
        assert isinstance(failed.value.__cause__, UsageError)
        assert "ON CONFLICT" in message and "'v'" in message and "\n" not in message
        assert sqlite_schema(engine) == before
    finally:
        engine.dispose()


def test_sqlite_alter_column_keeps_collate_unless_the_new_type_names_one(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    # what alter_column does not name is kept; COLLATE is part of a SQLite column
    folder = make_migrations(
        {
            "001_keepers.py": KEEPERS,
            "002_name.py": """\
            from sqlalchemy import String
            from sqlmig.ops import ops

            def up(conn):
                o = ops(conn)
                o.alter_column("accounts", "name", nullable=True)
                o.alter_column("accounts", "name", type_=String(100))
                o.alter_column("accounts", "note", type_=String(30, collation="RTRIM"))
            """,
            "003_binary.py": """\
            from sqlalchemy import String
            from sqlmig.ops import ops

            def up(conn):
                ops(conn).alter_column("accounts", "name", type_=String(100, collation="BINARY"))
            """,
        }
    )
    engine = sqlite_backend.engine()
    try:
        runner = MigrationRunner(engine, folder)
        runner.upgrade("002")

        assert rows(engine, "SELECT name FROM accounts WHERE name = 'ADA'") == [("Ada",)]
        assert getattr(columns(engine, "accounts")["name"]["type"], "length", None) == 100
        with engine.begin() as conn:
            conn.execute(text("UPDATE accounts SET note = 'x' WHERE name = 'Ada'"))
        assert rows(engine, "SELECT name FROM accounts WHERE note = 'x   '") == [("Ada",)]

        runner.upgrade()

        assert rows(engine, "SELECT name FROM accounts WHERE name = 'ADA'") == []
    finally:
        engine.dispose()


def test_sqlite_rebuild_renaming_a_column_of_a_descending_index_is_refused(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_keepers.py": KEEPERS,
            "002_desc.py": """\
            from sqlalchemy import text

            def up(conn):
                conn.execute(text("CREATE INDEX ix_accounts_note ON accounts (note DESC)"))
            """,
            "003_rename.py": """\
            from sqlmig.ops import ops

            def up(conn):
                with ops(conn).batch("accounts") as accounts:
                    accounts.alter_column("note", new_column_name="remark")
            """,
        }
    )
    engine = sqlite_backend.engine()
    try:
        runner = MigrationRunner(engine, folder)
        runner.upgrade("002")
        before = sqlite_schema(engine)

        with pytest.raises(MigrationFailed) as failed:
            runner.upgrade()

        assert isinstance(failed.value.__cause__, UsageError)
        assert "ix_accounts_note" in str(failed.value.__cause__)
        assert sqlite_schema(engine) == before
    finally:
        engine.dispose()


def test_unnamed_check_follows_a_renamed_column_and_goes_with_a_dropped_one(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    # as PostgreSQL does; SQLite's rebuild used to fail with "no such column"
    folder = make_migrations(
        {
            "001_checked.py": """\
            from sqlalchemy import text

            def up(conn):
                conn.execute(text(
                    "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER,"
                    " CHECK (a > 0), CHECK (b < 10))"
                ))
            """,
            "002_rename_a.py": """\
            from sqlmig.ops import ops

            def up(conn):
                with ops(conn).batch("t") as t:
                    t.alter_column("a", new_column_name="alpha")
            """,
            "003_drop_b.py": """\
            from sqlmig.ops import ops

            def up(conn):
                ops(conn).drop_column("t", "b")
            """,
        }
    )
    runner = MigrationRunner(backend.url, folder)

    runner.upgrade("002")

    with pytest.raises(DBAPIError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t (id, alpha, b) VALUES (1, -1, 1)"))
    with pytest.raises(DBAPIError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t (id, alpha, b) VALUES (1, 1, 100)"))

    runner.upgrade()

    with pytest.raises(DBAPIError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t (id, alpha) VALUES (1, -1)"))
    assert set(columns(engine, "t")) == {"id", "alpha"}

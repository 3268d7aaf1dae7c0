"""``runner.check()`` and ``sqlmig check``: the database against its models, one line each.

Every kind of difference is made on SQLite, PostgreSQL and MariaDB: the
database's tables are created from one MetaData, the models are another, and
the line ``check`` gives is compared word for word.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from schemas import (
    longer_name,
    name_index,
    note_column,
    required_email,
    run,
    schema,
    unique_email,
    user_key,
)
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    DefaultClause,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    func,
    true,
)

from backends import Backend
from conftest import MakeMigrations
from sqlmig import MigrationRunner, SchemaDrift, UsageError
from sqlmig._cli import exit_code


def common_types(meta: MetaData) -> None:
    """Types and defaults whose reflected form differs from the model's on some backend."""
    Table(
        "accounts",
        meta,
        Column("id", Integer, primary_key=True),
        Column("active", Boolean, nullable=False, server_default=true()),
        Column("balance", Numeric(10, 2), server_default="0"),
        Column("opened_at", DateTime, nullable=False, server_default=func.current_timestamp()),
        Column("kind", String(20), server_default="basic"),
    )


def audit_table(meta: MetaData) -> None:
    # its index and key are told by the table's line alone
    Table(
        "audit",
        meta,
        Column("id", Integer, primary_key=True),
        Column("user_id", ForeignKey("users.id"), index=True),
    )


IN_DB = "in the database, not in the models"
MISSING = "missing in the database"

#: (what the database has more, what the models have more, the line expected)
CASES = {
    "missing table": ((), (audit_table,), f"table audit: {MISSING}"),
    "extra table": ((audit_table,), (), f"table audit: {IN_DB}"),
    "missing column": ((), (note_column,), f"column orders.note: {MISSING}"),
    "extra column": ((note_column,), (), f"column orders.note: {IN_DB}"),
    "type": (
        (),
        (longer_name,),
        "column users.name: type VARCHAR(50) in the database, String(100) in the models",
    ),
    "nullability": (
        (),
        (required_email,),
        "column users.email: nullable in the database, NOT NULL in the models",
    ),
    "index": ((), (name_index,), f"index ix_users_name on users(name): {MISSING}"),
    "extra index": ((name_index,), (), f"index ix_users_name on users(name): {IN_DB}"),
    "foreign key": (
        (),
        (user_key,),
        f"foreign key fk_orders_user on orders(user_id) -> users(id): {MISSING}",
    ),
}


def empty_runner(
    backend: Backend, make_migrations: MakeMigrations, **kw: object
) -> MigrationRunner:
    return MigrationRunner(backend.url, make_migrations({}), **kw)  # type: ignore[arg-type]


def create(backend: Backend, meta: MetaData) -> None:
    engine = backend.engine()
    try:
        with engine.begin() as conn:
            meta.create_all(conn)
    finally:
        engine.dispose()


def test_a_database_made_from_the_models_matches_them(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    models = schema(name_index, unique_email, user_key, note_column, common_types)
    create(backend, models)
    runner = empty_runner(backend, make_migrations, metadata=models)
    assert runner.check() == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_kind_of_difference_is_one_readable_line(
    backend: Backend, make_migrations: MakeMigrations, case: str
) -> None:
    in_db, in_models, line = CASES[case]
    create(backend, schema(*in_db))
    runner = empty_runner(backend, make_migrations)
    assert runner.check(schema(*in_models)) == [line]


def test_a_unique_constraint_the_database_lacks(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    create(backend, schema())
    found = empty_runner(backend, make_migrations).check(schema(unique_email))
    # MySQL/MariaDB keep a unique constraint as a unique index: Alembic tells it so
    assert found in (
        [f"unique constraint uq_users_email on users(email): {MISSING}"],
        [f"unique index uq_users_email on users(email): {MISSING}"],
    )


def test_pending_steps_come_first_and_the_history_table_is_left_out(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    models = schema()
    folder = make_migrations(
        {
            "001_users_and_orders.py": """\
                from sqlalchemy import Column, Integer, MetaData, String, Table

                meta = MetaData()
                Table("users", meta, Column("id", Integer, primary_key=True),
                      Column("name", String(50)), Column("email", String(100)))
                Table("orders", meta, Column("id", Integer, primary_key=True),
                      Column("user_id", Integer))

                def up(conn):
                    meta.create_all(conn)
                """,
            "002_add_audit.py": "def up(conn):\n    pass\n",
            "003_more.py": "def up(conn):\n    pass\n",
        }
    )
    runner = MigrationRunner(backend.url, folder, metadata=models)
    found = runner.check()
    assert found[:3] == [
        "001_users_and_orders: pending",
        "002_add_audit: pending",
        "003_more: pending",
    ]
    assert sorted(found[3:]) == [f"table orders: {MISSING}", f"table users: {MISSING}"]
    runner.upgrade("001")
    assert runner.check() == ["002_add_audit: pending", "003_more: pending"]
    runner.upgrade()
    assert runner.check() == []


def test_an_edited_or_lost_applied_file_is_a_difference_too(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_one.py": "def up(conn):\n    pass\n",
            "002_two.py": "def up(conn):\n    pass\n",
        }
    )
    runner = MigrationRunner(backend.url, folder, metadata=MetaData())
    runner.upgrade()
    (folder / "001_one.py").write_text("def up(conn):\n    pass  # edited\n")
    (folder / "002_two.py").unlink()
    assert runner.check() == ["001_one: edited after it ran", "002_two: applied, its file is gone"]


def test_several_metadata_are_compared_as_one(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    def logs_table(meta: MetaData) -> None:
        Table("logs", meta, Column("id", Integer, primary_key=True))

    create(backend, schema(logs_table))
    other = MetaData()
    logs_table(other)
    runner = empty_runner(backend, make_migrations, metadata=[schema(), other])
    assert runner.check() == []


def test_check_without_models_says_how_to_give_them(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    with pytest.raises(UsageError, match=r"pass metadata="):
        empty_runner(sqlite_backend, make_migrations).check()


def test_without_alembic_the_error_names_the_extra(tmp_path: Path) -> None:
    probe = textwrap.dedent(
        f"""\
        import sys
        sys.modules["alembic"] = None
        from sqlalchemy import MetaData
        from sqlmig import MigrationRunner, UsageError
        (__import__("pathlib").Path({str(tmp_path / "m")!r})).mkdir()
        runner = MigrationRunner("sqlite:///{tmp_path / "t.db"}", {str(tmp_path / "m")!r})
        try:
            runner.check(MetaData())
        except UsageError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert "pip install 'sqlmig[ops]'" in out


# -- sqlmig check ---------------------------------------------------------------


MODELS = """\
from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()
Table("users", metadata, Column("id", Integer, primary_key=True), Column("name", String(50)))
"""


def test_the_command_exits_0_then_3_listing_every_difference(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "models_for_check.py").write_text(MODELS)
    folder = make_migrations(
        {
            "001_users.py": """\
                from sqlalchemy import Column, Integer, MetaData, String, Table

                meta = MetaData()
                Table("users", meta, Column("id", Integer, primary_key=True),
                      Column("name", String(50)))

                def up(conn):
                    meta.create_all(conn)
                """,
            "002_nothing.py": "def up(conn):\n    pass\n",
        }
    )
    url = backend.url_string
    (root / "pyproject.toml").write_text(
        f'[tool.sqlmig]\nurl = "{url}"\nmigrations = "{folder}"\n'
        'metadata = "models_for_check:metadata"\n'
    )
    code, out, err = run(root, "check")
    assert code == 3, err
    lines = err.splitlines()
    assert lines[0].startswith("sqlmig: error: ") and "3 difference(s)" in lines[0]
    assert [line.strip() for line in lines[1:]] == [
        "001_users: pending",
        "002_nothing: pending",
        "table users: missing in the database",
    ]
    assert run(root, "upgrade")[0] == 0
    code, out, err = run(root, "check")
    assert (code, err) == (0, "")
    assert "matches the models" in out
    # --metadata beats the file: models with one more table
    (root / "more_models.py").write_text(
        MODELS + 'Table("audit", metadata, Column("id", Integer))\n'
    )
    code, out, err = run(root, "check", "--metadata", "more_models:metadata")
    assert code == 3
    assert err.splitlines()[1:] == ["  table audit: missing in the database"]


def test_the_command_imports_the_models_beside_the_project_file_from_a_subfolder(
    sqlite_backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    (root / "docs").mkdir(parents=True)
    (root / "models_beside.py").write_text(MODELS)
    folder = make_migrations({"001_nothing.py": "def up(conn):\n    pass\n"})
    (root / "pyproject.toml").write_text(
        f'[tool.sqlmig]\nurl = "{sqlite_backend.url_string}"\nmigrations = "{folder}"\n'
        'metadata = "models_beside:metadata"\n'
    )
    before = list(sys.path)
    code, _out, err = run(root / "docs", "check")  # from a folder below the project's
    assert code == 3, err
    assert "table users: missing in the database" in err
    assert sys.path == before and "models_beside" in sys.modules
    sys.modules.pop("models_beside")


def test_the_command_without_models_says_how_to_give_them(tmp_path: Path) -> None:
    (tmp_path / "migrations").mkdir()
    code, _out, err = run(tmp_path, "--url", f"sqlite:///{tmp_path}/t.db", "check")
    assert code == 2
    assert "--metadata MODULE:ATTR" in err


def test_schema_drift_exits_3_and_keeps_its_lines() -> None:
    drift = SchemaDrift("db differs\n  a\n  b", differences=["a", "b"])
    assert exit_code(drift) == 3
    assert drift.differences == ["a", "b"]


def test_a_server_default_is_compared_where_the_comparison_is_exact(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    def kind_default(meta: MetaData) -> None:
        Table("plans", meta, Column("id", Integer, primary_key=True), Column("kind", String(20)))
        meta.tables["plans"].c.kind.server_default = DefaultClause("basic")

    create(backend, schema(kind_default))
    plain = schema()
    Table("plans", plain, Column("id", Integer, primary_key=True), Column("kind", String(20)))
    found = empty_runner(backend, make_migrations).check(plain)
    if backend.profile.compares_server_defaults:
        assert len(found) == 1
        assert found[0].startswith("column plans.kind: server default 'basic'"), found
        assert found[0].endswith(" in the database, none in the models")
    else:  # SQLite, MySQL/MariaDB: the reflected text is no sure guide (documented)
        assert found == []


def test_an_index_on_an_expression_is_checked_without_a_warning(backend: Backend) -> None:
    """Reflection warns of an index on an expression it cannot read; check, which leaves
    such indexes out, lets no warning reach the caller."""
    import warnings

    from sqlalchemy import Index
    from sqlalchemy.engine import Connection

    from sqlmig import Migration

    meta = MetaData()
    users = Table(
        "users", meta, Column("id", Integer, primary_key=True), Column("name", String(50))
    )
    index = Index("ix_lower_name", func.lower(users.c.name))

    def up(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(50))")
        if backend.profile.indexes_expressions(conn):
            index.create(conn)

    runner = MigrationRunner(backend.url, [Migration("001", "users", up=up)])
    runner.upgrade()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runner.check(meta) == []

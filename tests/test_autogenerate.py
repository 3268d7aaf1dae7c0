"""``runner.autogenerate()`` and ``sqlmig new --autogenerate``: the models' changes as a step.

Each kind of change makes the round trip on SQLite, PostgreSQL and MariaDB:
a first step is generated from the models before the change and applied, a
second from the models after it; once applied, ``check`` is clean, and
``check_stairway`` walks both steps down and up again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from schemas import (
    Change,
    longer_name,
    name_index,
    note_column,
    required_email,
    run,
    schema,
    unique_email,
    user_key,
)
from scripts import apply
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    inspect,
    text,
)
from sqlalchemy.types import TypeDecorator, UserDefinedType

from backends import Backend, fresh_database
from conftest import MakeMigrations
from sqlmig import MigrationRunner, SqlmigError, UsageError
from sqlmig.testing import check_stairway


def audit_table(meta: MetaData) -> None:
    Table(
        "audit",
        meta,
        Column("id", Integer, primary_key=True),
        Column("user_id", Integer, index=True),
        Column("at", String(30), nullable=False, server_default="now"),
        ForeignKeyConstraint(["user_id"], ["users.id"]),
    )


def paid_column(meta: MetaData) -> None:
    meta.tables["orders"].append_column(
        Column("paid", Boolean, nullable=False, server_default=false())
    )


def unnamed_unique_name(meta: MetaData) -> None:
    meta.tables["users"].append_constraint(UniqueConstraint("name"))


def unnamed_user_key(meta: MetaData) -> None:
    meta.tables["orders"].append_constraint(ForeignKeyConstraint(["user_id"], ["users.id"]))


def buyer_column(meta: MetaData) -> None:
    meta.tables["orders"].append_column(
        Column("buyer_id", Integer, ForeignKey("users.id", name="fk_orders_buyer"), index=True)
    )


#: (the models of the first step, of the second)
CASES: dict[str, tuple[tuple[Change, ...], tuple[Change, ...]]] = {
    "add table": ((), (audit_table,)),
    "drop table": ((audit_table,), ()),
    "add column": ((), (note_column, paid_column)),
    "drop column": ((note_column, paid_column), ()),
    "alter type": ((), (longer_name,)),
    "alter nullability": ((), (required_email,)),
    "add index": ((), (name_index,)),
    "drop index": ((name_index,), ()),
    "add unique constraint": ((), (unique_email, unnamed_unique_name)),
    "drop unique constraint": ((unique_email,), ()),
    "add foreign key": ((), (user_key,)),
    "add unnamed foreign key": ((), (unnamed_user_key,)),
    "drop foreign key": ((user_key,), ()),
    "drop unnamed foreign key": ((unnamed_user_key,), ()),
    "add column with a foreign key": ((), (buyer_column,)),
    "drop column with a foreign key": ((buyer_column,), ()),
}


def runner_for(backend: Backend, folder: Path, meta: MetaData | None = None) -> MigrationRunner:
    return MigrationRunner(backend.url, folder, metadata=meta)  # type: ignore[arg-type]


def round_trip(runner: MigrationRunner, *models: MetaData) -> list[Path]:
    """Generate and apply one step per MetaData, each checked clean; then the stairway."""
    written = []
    for i, meta in enumerate(models):
        path = runner.autogenerate(f"step {i + 1}", meta)
        assert path is not None
        written.append(path)
        runner.upgrade()
        assert runner.check(meta) == [], path.read_text()
        assert runner.autogenerate("again", meta) is None
    runner.downgrade("base")
    check_stairway(runner)
    return written


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_change_makes_the_round_trip(
    backend: Backend, make_migrations: MakeMigrations, case: str
) -> None:
    first, second = CASES[case]
    runner = runner_for(backend, make_migrations({}))
    _, second_step = round_trip(runner, schema(*first), schema(*second))
    code = second_step.read_text()
    assert "ops = sqlmig.ops(conn)" in code and "op." not in code.replace("ops.", "")
    compile(code, str(second_step), "exec")


def test_steps_written_on_sqlite_run_unchanged_elsewhere(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations({})
    writer = MigrationRunner(f"sqlite:///{tmp_path / 'models.db'}", folder)
    steps = [
        schema(audit_table, note_column, user_key, name_index),
        schema(paid_column, longer_name, required_email, unique_email, buyer_column),
    ]
    for i, meta in enumerate(steps):
        assert writer.autogenerate(f"step {i + 1}", meta) is not None
        writer.upgrade()
    runner = runner_for(backend, folder)
    runner.upgrade()
    assert runner.check(steps[-1]) == []
    runner.downgrade("base")
    check_stairway(runner)


def typed_table(meta: MetaData) -> None:
    """A table of types and server defaults each database reports its own way."""
    Table(
        "typed",
        meta,
        Column("id", Integer, primary_key=True),
        Column("flag", Boolean, nullable=False, server_default=false()),
        Column("at", DateTime, server_default=func.now()),
        Column("amount", Numeric(10, 2)),
        Column("ratio", Float),
        Column("body", Text),
        Column("data", LargeBinary),
        Column("big", BigInteger),
        Column("small", SmallInteger),
        Column("day", Date),
        Column("n", Integer, server_default="7"),
        Column("label", String(10), server_default="x"),
    )


def typed_columns(meta: MetaData) -> None:
    users = meta.tables["users"]
    users.append_column(Column("active", Boolean, nullable=False, server_default=false()))
    users.append_column(Column("seen_at", DateTime, server_default=func.now()))
    users.append_column(Column("score", Float))


def lossy_table(meta: MetaData) -> None:
    """Types that a database where the step is written does not report as declared."""
    Table(
        "lossy",
        meta,
        Column("id", Integer, primary_key=True),
        Column("doc", JSON),  # MariaDB: LONGTEXT
        Column("at", DateTime(timezone=True)),  # MariaDB: DATETIME, no time zone
        Column("kind", Enum("a", "b", name="lossy_kind")),  # MariaDB: an ENUM without name
    )


def written_on(writer: str, tmp_path: Path, folder: Path, *steps: MetaData) -> None:
    """Generate one step per MetaData on a fresh database of ``writer``, applying each;
    then walk them down and up again there."""
    with fresh_database(writer, tmp_path / "writer") as models_db:
        written = MigrationRunner(models_db.url, folder)
        for i, meta in enumerate(steps):
            assert written.autogenerate(f"step {i + 1}", meta) is not None
            written.upgrade()
        written.downgrade("base")
        written.upgrade()
        written.downgrade("base")


@pytest.mark.parametrize("writer", ["postgresql", "mysql"])
def test_steps_written_on_a_server_run_unchanged_elsewhere(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path, writer: str
) -> None:
    folder = make_migrations({})
    steps = [
        schema(audit_table, note_column, user_key, name_index, typed_table, typed_columns),
        schema(paid_column, longer_name, required_email, unique_email, buyer_column),
    ]
    written_on(writer, tmp_path, folder, *steps)
    runner = runner_for(backend, folder)
    runner.upgrade()
    assert runner.check(steps[-1]) == []
    runner.downgrade("base")
    check_stairway(runner)  # down() puts back exactly what up() dropped


@pytest.mark.parametrize("writer", ["postgresql", "mysql"])
def test_a_down_of_types_reported_otherwise_still_runs_everywhere(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path, writer: str
) -> None:
    folder = make_migrations({})
    steps = [schema(lossy_table), schema()]
    written_on(writer, tmp_path, folder, *steps)
    runner = runner_for(backend, folder)
    for _ in range(2):  # down() puts back what it can, and up() drops it again
        assert [m.version for m in runner.upgrade()] == ["001", "002"]
        assert runner.check(steps[-1]) == []
        runner.downgrade("001")
        assert "lossy" in runner_tables(runner)
        runner.downgrade("base")


def commented(meta: MetaData) -> None:
    meta.tables["users"].comment = "who signs in"


@pytest.mark.parametrize("change", [((), (commented,)), ((commented,), ())], ids=["add", "drop"])
def test_a_table_comment_written_on_a_server_runs_everywhere(
    backend: Backend,
    make_migrations: MakeMigrations,
    tmp_path: Path,
    change: tuple[tuple[Change, ...], tuple[Change, ...]],
) -> None:
    folder = make_migrations({})
    steps = [schema(*change[0]), schema(*change[1])]
    written_on("postgresql", tmp_path, folder, *steps)  # SQLite's comparison sees no comments
    assert "ops.create_table_comment(" in (folder / "002_step_2.py").read_text()
    runner = runner_for(backend, folder)
    runner.upgrade()
    assert runner.check(steps[-1]) == []
    runner.downgrade("base")
    check_stairway(runner)


def deferred_user_key(meta: MetaData) -> None:
    meta.tables["orders"].append_constraint(
        ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_orders_user",
            deferrable=True,
            initially="DEFERRED",
            match="FULL",
        )
    )


def deferred_table(meta: MetaData) -> None:
    Table(
        "refunds",
        meta,
        Column("id", Integer, primary_key=True),
        Column("order_id", Integer),
        ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name="fk_refunds_order",
            deferrable=True,
            initially="DEFERRED",
        ),
    )


def key_sql(runner: MigrationRunner, table: str, name: str) -> str:
    """How the database holds a foreign key: its reflected options, or (SQLite) its SQL."""
    from sqlalchemy import inspect

    with runner.connect() as conn:
        if conn.dialect.name == "sqlite":
            return str(
                conn.exec_driver_sql(
                    f"SELECT sql FROM sqlite_master WHERE name = '{table}'"
                ).scalar()
            ).upper()
        keys = {k["name"]: k for k in inspect(conn).get_foreign_keys(table)}
        options = keys[name]["options"]
        return " ".join(f"{k} {v}" for k, v in sorted(options.items())).upper()


@pytest.mark.parametrize("new_table", [False, True], ids=["added", "in a new table"])
def test_a_deferrable_foreign_key_keeps_its_options_where_the_database_takes_them(
    backend: Backend, make_migrations: MakeMigrations, new_table: bool
) -> None:
    runner = runner_for(backend, make_migrations({}))
    models = (deferred_user_key, deferred_table) if new_table else (deferred_user_key,)
    _, second = round_trip(runner, schema(), schema(*models))
    code = second.read_text()
    assert "deferrable=True" in code and "initially='DEFERRED'" in code
    runner.upgrade()
    table, name = ("refunds", "fk_refunds_order") if new_table else ("orders", "fk_orders_user")
    held = key_sql(runner, table, name)
    if "deferrable" in backend.profile.foreign_key_options:
        assert "DEFERRABLE" in held and "DEFERRED" in held
    else:  # MySQL/MariaDB check each key at once: the options are left out
        assert held == ""


def runner_tables(runner: MigrationRunner) -> set[str]:
    from sqlalchemy import inspect

    with runner.connect() as conn:
        return set(inspect(conn).get_table_names())


def test_the_file_reads_like_one_sqlmig_new_writes(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"009_start.py": "def up(conn):\n    pass\n"})
    runner = runner_for(sqlite_backend, folder)
    runner.upgrade()
    path = runner.autogenerate("add users", schema())
    assert path is not None and path.name == "010_add_users.py"
    code = path.read_text()
    assert code.startswith('"""Add users.\n')
    assert "import sqlalchemy as sa\n" in code and "import sqlmig\n" in code
    assert 'def up(conn: Connection) -> None:\n    """Apply 010_add_users."""\n' in code
    assert "    ops = sqlmig.ops(conn)\n    ops.create_table(" in code
    assert (
        "    ops.create_table('users',\n        sa.Column('id', sa.Integer(), nullable=False),\n"
        in code
    )
    assert "def down(conn: Connection) -> None:" in code and "    ops.drop_table('users')" in code


def test_pending_steps_are_refused(backend: Backend, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_nothing.py": "def up(conn):\n    pass\n"})
    runner = runner_for(backend, folder, schema())
    with pytest.raises(UsageError, match=r"pending \(001_nothing\).*upgrade first"):
        runner.autogenerate("users")
    assert sorted(p.name for p in folder.iterdir()) == ["001_nothing.py"]


def test_no_changes_writes_nothing(backend: Backend, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({})
    runner = runner_for(backend, folder)
    assert runner.autogenerate("nothing", MetaData()) is None
    assert list(folder.iterdir()) == []


def test_the_first_step_makes_its_folder(sqlite_backend: Backend, tmp_path: Path) -> None:
    runner = runner_for(sqlite_backend, tmp_path / "new" / "migrations")
    path = runner.autogenerate("users", schema())
    assert path is not None and path == tmp_path / "new" / "migrations" / "001_users.py"


def test_without_models_the_error_says_how_to_give_them(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    with pytest.raises(UsageError, match="pass metadata="):
        runner_for(sqlite_backend, make_migrations({})).autogenerate("x")


def test_a_type_that_cannot_be_imported_back_names_its_column(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    class Point(UserDefinedType[str]):
        cache_ok = True

        def get_col_spec(self, **kw: object) -> str:
            return "TEXT"

    class LocalText(TypeDecorator[str]):  # declared where no import reaches it
        impl = Text
        cache_ok = True

    for kind in (Point(), LocalText()):
        meta = MetaData()
        Table("places", meta, Column("id", Integer, primary_key=True), Column("at", kind))
        folder = make_migrations({})
        with pytest.raises(SqlmigError, match=r"column places\.at .*cannot be imported back"):
            runner_for(sqlite_backend, folder, meta).autogenerate("places")
        assert list(folder.iterdir()) == []


def test_a_type_of_an_importable_module_is_imported_by_the_file(
    sqlite_backend: Backend,
    make_migrations: MakeMigrations,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "shop_types.py").write_text(
        "from sqlalchemy import Text\nfrom sqlalchemy.types import TypeDecorator\n\n"
        "class Money(TypeDecorator):\n    impl = Text\n    cache_ok = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import shop_types  # type: ignore[import-not-found]

    meta = MetaData()
    Table(
        "prices",
        meta,
        Column("id", Integer, primary_key=True),
        Column("amount", shop_types.Money()),
    )
    runner = runner_for(sqlite_backend, make_migrations({}))
    (path,) = round_trip(runner, meta)
    assert "import shop_types\n" in path.read_text()


# -- what Alembic's comparison does not see ----------------------------------


def test_a_changed_server_default_is_seen_where_the_comparison_is_exact(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    def with_default(value: str) -> MetaData:
        meta = schema()
        meta.tables["users"].c.name.server_default = None
        meta.tables["users"].append_column(
            Column("status", String(10), server_default=text(f"'{value}'"))
        )
        return meta

    runner = runner_for(backend, make_migrations({}))
    round_trip(runner, with_default("new"))
    found = runner.autogenerate("status default", with_default("open"))
    if backend.profile.compares_server_defaults:
        assert found is not None and "server_default=sa.text(\"'open'\")" in found.read_text()
    else:  # SQLite and MySQL/MariaDB: left out, as check leaves it out
        assert found is None


def test_an_index_on_an_expression_is_left_to_the_author(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    runner = runner_for(backend, make_migrations({}))
    round_trip(runner, schema())
    meta = schema()
    Index("ix_users_lower_name", func.lower(meta.tables["users"].c.name))
    path = runner.autogenerate("lower name", meta)
    if not expression_indexes(
        backend
    ):  # MariaDB: ops.create_index skips it; so does the comparison
        assert path is None and runner.check(meta) == []
        return
    if path is None:  # SQLite: Alembic does not see it; write it by hand
        return
    # written as Alembic renders it; PostgreSQL (and MySQL 8) run it, MariaDB has no such index
    assert "sa.literal_column(" in path.read_text() and "lower(name)" in path.read_text()


# -- sqlmig new --autogenerate --------------------------------------------------


MODELS = """\
from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()
Table("users", metadata, Column("id", Integer, primary_key=True), Column("name", String(50)))
"""


def test_the_command_writes_the_step_then_says_no_changes(backend: Backend, tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "migrations").mkdir(parents=True)
    (root / "models_for_autogen.py").write_text(MODELS)
    (root / "pyproject.toml").write_text(
        f'[tool.sqlmig]\nurl = "{backend.url_string}"\nmigrations = "migrations"\n'
        'metadata = "models_for_autogen:metadata"\n'
    )
    code, out, err = run(root, "new", "add users", "--autogenerate")
    assert (code, err) == (0, "")
    assert out == "Created migrations/001_add_users.py: review it, then run sqlmig upgrade\n"
    code, out, err = run(root, "new", "more", "--autogenerate")
    assert code == 2 and "upgrade first" in err
    assert run(root, "upgrade")[0] == 0
    code, out, err = run(root, "new", "more", "--autogenerate")
    assert (code, err) == (0, "")
    assert out.startswith("No changes: ") and out.endswith("matches the models; nothing written\n")
    assert sorted(p.name for p in (root / "migrations").iterdir()) == ["001_add_users.py"]
    assert run(root, "check")[0] == 0


def test_the_command_without_models_says_how_to_give_them(tmp_path: Path) -> None:
    (tmp_path / "migrations").mkdir()
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    code, _, err = run(tmp_path, "--url", url, "--dir", "migrations", "new", "x", "--autogenerate")
    assert code != 0 and "--metadata" in err


def test_a_new_table_with_an_enum_makes_the_round_trip(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    def with_enum(*values: str) -> MetaData:
        meta = schema()
        Table(
            "tickets",
            meta,
            Column("id", Integer, primary_key=True),
            Column("state", Enum(*values, name="ticket_state")),
        )
        return meta

    runner = runner_for(backend, make_migrations({}))
    # PostgreSQL: down() drops the enum type with the table, so up() can create both again
    round_trip(runner, schema(), with_enum("open", "closed"))
    more = with_enum("open", "closed", "held")
    seen = runner.check(more)  # MySQL compares an ENUM's values; PostgreSQL's and SQLite's not
    found = runner.autogenerate("more states", more)
    assert (found is not None) == bool(seen)
    if found is not None:
        runner.upgrade()
        assert runner.check(more) == []


LOWER_NAME_BY_HAND = """\
import sqlalchemy as sa
from sqlmig import ops


def up(conn):
    ops(conn).create_index("ix_users_lower_name", "users", [sa.literal_column("lower(name)")])


def down(conn):
    ops(conn).drop_index("ix_users_lower_name", "users")
"""


def expression_indexes(backend: Backend) -> bool:
    """Whether the database indexes expressions (MariaDB does not)."""
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            return backend.profile.indexes_expressions(conn)
    finally:
        engine.dispose()


def test_an_index_on_an_expression_is_scripted_up_and_down_alike(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    """The step's scripts, applied one after the other, run: where the up script leaves the
    index out (MariaDB has no index on an expression), the down script drops it only if
    it is there."""
    runner = runner_for(backend, make_migrations({}))
    round_trip(runner, schema())
    meta = schema()
    Index("ix_users_lower_name", func.lower(meta.tables["users"].c.name))
    expressions = expression_indexes(backend)
    if not expressions:  # MariaDB: not generated (see above); the step written by hand
        (Path(str(runner.migrations_source)) / "002_lower_name.py").write_text(LOWER_NAME_BY_HAND)
    elif runner.autogenerate("lower name", meta) is None:  # SQLite: Alembic does not see it
        return
    dialect = backend.name if expressions else "mariadb"
    up = runner.sql_script(from_version="001", dialect=dialect)
    down = runner.sql_script("001", downgrade=True, from_version="002", dialect=dialect)
    if expressions:
        assert "CREATE INDEX ix_users_lower_name ON users" in up
        assert "DROP INDEX ix_users_lower_name" in down
    else:
        assert "ix_users_lower_name" not in up
        assert "DROP INDEX IF EXISTS ix_users_lower_name ON users;" in down
    apply(backend, up)
    assert [r.version for r in runner.history()] == ["001", "002"]
    apply(backend, down)
    assert [r.version for r in runner.history()] == ["001"]
    engine = backend.engine()
    try:
        assert "ix_users_lower_name" not in {
            i["name"] for i in inspect(engine).get_indexes("users")
        }
    finally:
        engine.dispose()

"""An Alembic project as a migrations source: its chain run by sqlmig, as Alembic would."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from alembic_projects import CHAIN, INI, revision, write_project
from sqlalchemy import inspect, text

from backends import Backend
from sqlmig import MigrationFailed, MigrationRunner, MigrationSourceError

ALEMBIC = pytest.importorskip("alembic")


def rows(backend: Backend, sql: str) -> list[tuple[object, ...]]:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def tables(backend: Backend) -> set[str]:
    engine = backend.engine()
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_chain_runs_in_down_revision_order_with_positions_as_versions(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    runner = MigrationRunner(backend.url, f"alembic:{ini}")

    assert [m.label for m in runner.migrations()] == [
        "1_a1_account",
        "2_b2_email",
        "3_c3_fill",
        "4_d4_index",
    ]
    assert [m.version for m in runner.upgrade()] == ["1", "2", "3", "4"]

    assert rows(backend, "SELECT id, name, email FROM account") == [(1, "ada", "ada@example.org")]
    engine = backend.engine()
    try:
        columns = {c["name"]: c for c in inspect(engine).get_columns("account")}
        indexes = {i["name"] for i in inspect(engine).get_indexes("account")}
    finally:
        engine.dispose()
    assert columns["name"]["type"].length == 80  # batch mode's alter_column
    assert "ix_account_name_lower" in indexes  # each dialect's branch
    assert tables(backend) == {"account", "migrations"}  # no alembic_version written


def test_the_chain_is_undone_with_each_revisions_downgrade(
    backend: Backend, tmp_path: Path
) -> None:
    runner = MigrationRunner(backend.url, f"alembic:{write_project(tmp_path, CHAIN)}")
    runner.upgrade()

    assert [m.version for m in runner.downgrade("1")] == ["4", "3", "2"]
    engine = backend.engine()
    try:
        assert [c["name"] for c in inspect(engine).get_columns("account")] == ["id", "name"]
    finally:
        engine.dispose()
    runner.downgrade("base")
    assert tables(backend) == {"migrations"}


def test_a_versions_folder_or_script_folder_is_a_source_too(tmp_path: Path) -> None:
    write_project(tmp_path, CHAIN)
    for where in (tmp_path / "alembic", tmp_path / "alembic" / "versions", tmp_path):
        labels = [
            m.label for m in MigrationRunner("sqlite:///x.db", f"alembic:{where}").migrations()
        ]
        assert labels[0] == "1_a1_account" and len(labels) == 4, where


def test_a_relative_script_location_is_read_from_the_ini_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ini = write_project(tmp_path / "project", CHAIN, ini="[alembic]\nscript_location = alembic\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    runner = MigrationRunner(f"sqlite:///{elsewhere}/app.db", f"alembic:{ini}")

    assert len(runner.upgrade()) == 4


def test_a_bad_ini_file_is_a_source_error(tmp_path: Path) -> None:
    ini = write_project(tmp_path, CHAIN, ini="[alembic]\nscript_location = %(nowhere)s/x\n")
    with pytest.raises(MigrationSourceError, match="cannot read the Alembic configuration"):
        MigrationRunner("sqlite:///x.db", f"alembic:{ini}").migrations()
    ini.write_text("[alembic]\nsqlalchemy.url = sqlite://\n")
    with pytest.raises(MigrationSourceError, match="no script_location"):
        MigrationRunner("sqlite:///x.db", f"alembic:{ini}").migrations()
    with pytest.raises(MigrationSourceError, match="does not exist"):
        MigrationRunner("sqlite:///x.db", f"alembic:{tmp_path / 'nope.ini'}").migrations()


def test_sqlite_batch_mode_is_rolled_back_with_its_step(
    sqlite_backend: Backend, tmp_path: Path
) -> None:
    failing = revision(
        "b2",
        "a1",
        """
        with op.batch_alter_table("account") as batch:
            batch.add_column(sa.Column("email", sa.String(100)))
        op.execute("INSERT INTO nowhere VALUES (1)")
        """,
    )
    ini = write_project(tmp_path, {"a1.py": CHAIN["a1_account.py"], "b2.py": failing})
    runner = MigrationRunner(sqlite_backend.url, f"alembic:{ini}")

    with pytest.raises(MigrationFailed, match=r"b2\.py"):
        runner.upgrade()

    engine = sqlite_backend.engine()
    try:
        assert [c["name"] for c in inspect(engine).get_columns("account")] == ["id", "name"]
    finally:
        engine.dispose()
    assert [r.version for r in runner.status().applied] == ["1"]


def test_a_revision_that_commits_its_bind_is_stopped_and_rolled_back(
    backend: Backend, tmp_path: Path
) -> None:
    committing = revision(
        "b2",
        "a1",
        """
        op.execute("INSERT INTO account (id, name) VALUES (1, 'x')")
        op.get_bind().commit()
        """,
    )
    ini = write_project(tmp_path, {"a1.py": CHAIN["a1_account.py"], "b2.py": committing})
    runner = MigrationRunner(backend.url, f"alembic:{ini}")

    with pytest.raises(MigrationFailed, match="commit"):
        runner.upgrade()

    assert rows(backend, "SELECT * FROM account") == []
    assert [r.version for r in runner.status().applied] == ["1"]


def test_a_revision_whose_application_import_fails_names_its_file_and_line(
    tmp_path: Path,
) -> None:
    broken = revision("a1", None, "pass", header="from myapp.models import Base\n")
    ini = write_project(tmp_path, {"a1_models.py": broken})
    runner = MigrationRunner(f"sqlite:///{tmp_path}/app.db", f"alembic:{ini}")

    with pytest.raises(MigrationSourceError, match=r"a1_models\.py:\d+: .*ModuleNotFoundError"):
        runner.upgrade()
    assert not (tmp_path / "app.db").exists() or tables_of(tmp_path / "app.db") == set()


def tables_of(path: Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_prepend_sys_path_lets_a_revision_import_its_application_and_is_taken_back(
    tmp_path: Path,
) -> None:
    (tmp_path / "shopapp_models.py").write_text("NAME = 'shop'\n")
    uses_app = revision(
        "a1",
        None,
        "op.create_table(shopapp_models.NAME, sa.Column('id', sa.Integer, primary_key=True))",
        header="import shopapp_models\n",
    )
    ini = write_project(tmp_path, {"a1.py": uses_app})
    before = list(sys.path)

    MigrationRunner(f"sqlite:///{tmp_path}/app.db", f"alembic:{ini}").upgrade()

    assert "shop" in tables_of(tmp_path / "app.db")
    assert sys.path == before
    sys.modules.pop("shopapp_models", None)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {
                "a1.py": CHAIN["a1_account.py"],
                "b2.py": revision("b2", "a1", "pass"),
                "x9.py": revision("x9", "a1", "pass"),
            },
            r"branches after revision a1: b2 \(.*\), x9 \(.*\) all follow it \(two heads\)",
        ),
        (
            {
                "a1.py": CHAIN["a1_account.py"],
                "b2.py": revision("b2", "a1", "pass"),
                "m3.py": revision("m3", "a1", "pass").replace("= 'a1'", "= ('a1', 'b2')"),
            },
            r"revision m3 \(.*m3\.py\) merges a1, b2",
        ),
        (
            {"a1.py": CHAIN["a1_account.py"], "b2.py": revision("b2", "zz", "pass")},
            r"revision b2 \(.*b2\.py\) names zz as its down_revision",
        ),
        (
            {"a1.py": CHAIN["a1_account.py"], "b2.py": revision("a1", "a1", "pass")},
            r"both declare revision a1",
        ),
        (
            {"a1.py": CHAIN["a1_account.py"], "n1.py": revision("n1", None, "pass")},
            r"branches after the base: a1 \(.*\), n1 \(.*\)",
        ),
        (
            {"a1.py": CHAIN["a1_account.py"], "broken.py": revision("b2", "a1", "if True")},
            r"broken\.py:\d+: syntax error",
        ),
        (
            {"a1.py": CHAIN["a1_account.py"], "notes.py": "X = 1\n"},
            r"notes\.py: declares no revision",
        ),
        (
            {"a1.py": CHAIN["a1_account.py"].replace("= 'a1'", "= 'a' + '1'")},
            r"a1\.py:\d+: revision is not a literal",
        ),
    ],
    ids=["two-heads", "merge", "missing-down", "duplicate", "two-bases", "syntax", "stray", "expr"],
)
def test_a_chain_sqlmig_cannot_run_is_a_source_error_naming_the_revisions(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    ini = write_project(tmp_path, files)
    runner = MigrationRunner(f"sqlite:///{tmp_path}/app.db", f"alembic:{ini}")

    with pytest.raises(MigrationSourceError, match=message):
        runner.upgrade()
    assert not (tmp_path / "app.db").exists() or tables_of(tmp_path / "app.db") == set()


def test_status_reads_the_chain_without_importing_a_revision(tmp_path: Path) -> None:
    broken = revision("a1", None, "pass", header="raise RuntimeError('imported')\n")
    ini = write_project(tmp_path, {"a1.py": broken})

    status = MigrationRunner(f"sqlite:///{tmp_path}/app.db", f"alembic:{ini}").status()

    assert [m.label for m in status.pending] == ["1_a1"]


def test_an_edited_revision_is_a_checksum_mismatch(tmp_path: Path) -> None:
    from sqlmig import ChecksumMismatch

    ini = write_project(tmp_path, CHAIN)
    runner = MigrationRunner(f"sqlite:///{tmp_path}/app.db", f"alembic:{ini}")
    runner.upgrade()
    path = tmp_path / "alembic" / "versions" / "b2_email.py"
    path.write_text(path.read_text() + "\n# edited\n")

    with pytest.raises(ChecksumMismatch, match="2"):
        runner.upgrade()


def test_new_steps_follow_the_chain_from_a_folder_listed_after_it(
    backend: Backend, tmp_path: Path, make_migrations: object
) -> None:
    ini = write_project(tmp_path, CHAIN)
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "005_nickname.py").write_text(
        "def up(conn):\n"
        "    conn.exec_driver_sql('ALTER TABLE account ADD COLUMN nickname VARCHAR(20)')\n"
    )
    runner = MigrationRunner(backend.url, [f"alembic:{ini}", str(folder)])

    assert [m.label for m in runner.upgrade()][-2:] == ["4_d4_index", "005_nickname"]

    (folder / "004_clash.py").write_text("def up(conn):\n    pass\n")
    with pytest.raises(MigrationSourceError, match="same version 4"):
        runner.migrations()


def test_without_alembic_the_source_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ini = write_project(tmp_path, CHAIN)
    monkeypatch.setitem(sys.modules, "alembic.config", None)

    with pytest.raises(MigrationSourceError, match=r"pip install 'sqlmig\[alembic\]'"):
        MigrationRunner("sqlite:///x.db", f"alembic:{ini}").migrations()


def test_dry_run_tries_revisions_and_leaves_nothing(backend: Backend, tmp_path: Path) -> None:
    runner = MigrationRunner(backend.url, f"alembic:{write_project(tmp_path, CHAIN)}")

    plan = runner.dry_run()

    assert [p.migration.version for p in plan] == ["1", "2", "3", "4"]
    if not backend.profile.transactional_ddl:  # only planned where DDL commits itself
        assert not plan[0].tried
        return
    assert any("CREATE TABLE account" in s for s in plan[0].statements)
    assert "account" not in tables(backend)


def test_the_configured_source_is_read_relative_to_the_config_file(tmp_path: Path) -> None:
    from sqlmig.config import runner_settings

    write_project(tmp_path, CHAIN)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sqlmig]\nurl = "sqlite:///app.db"\nmigrations = "alembic:alembic.ini"\n'
    )

    settings = runner_settings(path=tmp_path / "pyproject.toml")

    assert settings["migrations"] == f"alembic:{tmp_path / 'alembic.ini'}"
    assert INI  # the default project's ini uses %(here)s


def test_a_configured_list_is_a_chain_then_the_folder_new_files_go_to(tmp_path: Path) -> None:
    from sqlmig.config import migrations_setting, runner_settings

    write_project(tmp_path, CHAIN)
    config = tmp_path / "pyproject.toml"
    config.write_text(
        '[tool.sqlmig]\nurl = "sqlite:///app.db"\n'
        'migrations = ["alembic:alembic.ini", "migrations"]\n'
    )

    assert runner_settings(path=config)["migrations"] == [
        f"alembic:{tmp_path / 'alembic.ini'}",
        str(tmp_path / "migrations"),
    ]
    assert migrations_setting(path=config) == [
        f"alembic:{tmp_path / 'alembic.ini'}",
        str(tmp_path / "migrations"),
    ]


def test_sqlmig_new_writes_no_alembic_revision(tmp_path: Path) -> None:
    from sqlmig._scaffold import new_migration

    ini = write_project(tmp_path, CHAIN)

    with pytest.raises(MigrationSourceError, match="list a folder after it"):
        new_migration(f"alembic:{ini}", "add_x")


def test_a_failing_revision_names_its_own_file_and_line(backend: Backend, tmp_path: Path) -> None:
    failing = revision("b2", "a1", 'op.execute("INSERT INTO nowhere VALUES (1)")')
    ini = write_project(tmp_path, {"a1.py": CHAIN["a1_account.py"], "b2_fail.py": failing})
    line = failing.splitlines().index('    op.execute("INSERT INTO nowhere VALUES (1)")') + 1

    with pytest.raises(MigrationFailed, match=rf"b2_fail\.py:{line}: ") as failed:
        MigrationRunner(backend.url, f"alembic:{ini}").upgrade()

    assert failed.value.version == "2"


def test_a_revision_with_an_autocommit_block_runs_outside_a_transaction(
    backend: Backend, tmp_path: Path
) -> None:
    # as under Alembic, what comes before the block is committed, and so is the block
    batched = revision(
        "b2",
        "a1",
        """
        with op.batch_alter_table("account") as batch:  # its DDL in autocommit too
            batch.add_column(sa.Column("email", sa.String(100), nullable=True))
            batch.create_index("ix_account_email", ["email"])
        op.execute("INSERT INTO account (id, name) VALUES (1, 'x')")
        with op.get_context().autocommit_block():
            op.execute("INSERT INTO account (id, name) VALUES (2, 'y')")
        op.execute("INSERT INTO account (id, name) VALUES (3, 'y')")
        """,
        """
        op.execute("DELETE FROM account")
        with op.batch_alter_table("account") as batch:
            batch.drop_index("ix_account_email")
            batch.drop_column("email")
        """,
    )
    ini = write_project(tmp_path, {"a1.py": CHAIN["a1_account.py"], "b2.py": batched})
    runner = MigrationRunner(backend.url, f"alembic:{ini}")

    runner.upgrade()

    assert [m.transactional for m in runner.migrations()] == [True, False]
    assert rows(backend, "SELECT id FROM account ORDER BY id") == [(1,), (2,), (3,)]
    runner.downgrade("1")
    assert rows(backend, "SELECT count(*) FROM account") == [(0,)]


def test_runners_in_two_threads_each_get_their_own_op(tmp_path: Path) -> None:
    import threading

    slow = revision(
        "a1",
        None,
        """
        op.create_table("account", sa.Column("id", sa.Integer, primary_key=True))
        time.sleep(0.2)  # the other thread's runner starts meanwhile
        op.execute("INSERT INTO account (id) VALUES (1)")
        """,
        header="import time\n",
    )
    ini = write_project(tmp_path, {"a1.py": slow})
    errors: list[BaseException] = []

    def upgrade(name: str) -> None:
        try:
            MigrationRunner(f"sqlite:///{tmp_path / name}", f"alembic:{ini}").upgrade()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(f"{n}.db",)) for n in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    for name in ("one", "two"):
        import sqlite3

        with sqlite3.connect(tmp_path / f"{name}.db") as conn:
            assert conn.execute("SELECT id FROM account").fetchall() == [(1,)]


def test_a_sql_script_runs_revisions_in_alembics_offline_mode(tmp_path: Path) -> None:
    data = revision(
        "b2",
        "a1",
        """
        if context.is_offline_mode():
            op.execute("UPDATE account SET name = upper(name)")
        else:
            for (id_,) in op.get_bind().execute(sa.text("SELECT id FROM account")):
                pass
        """,
    )
    ini = write_project(tmp_path, {"a1.py": CHAIN["a1_account.py"], "b2.py": data})
    runner = MigrationRunner(f"sqlite:///{tmp_path}/app.db", f"alembic:{ini}")

    script = runner.sql_script(dialect="postgresql")

    assert "CREATE TABLE account" in script
    assert "UPDATE account SET name = upper(name);" in script
    assert not (tmp_path / "app.db").exists()
    # from the base, the script warns that a database Alembic migrated needs --from
    assert "-- an Alembic chain: for a database Alembic migrated, give --from" in script
    assert "-- an Alembic chain" not in runner.sql_script(dialect="postgresql", from_version="1")


def test_a_package_script_location_and_recursive_version_folders_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "shopapp_pkg"
    (package / "migrations" / "versions" / "2024").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "migrations" / "versions" / "a1.py").write_text(CHAIN["a1_account.py"])
    (package / "migrations" / "versions" / "2024" / "b2.py").write_text(CHAIN["b2_email.py"])
    ini = tmp_path / "alembic.ini"
    ini.write_text(
        "[alembic]\nscript_location = shopapp_pkg:migrations\nrecursive_version_locations = true\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    labels = [m.label for m in MigrationRunner("sqlite:///x.db", f"alembic:{ini}").migrations()]

    assert labels == ["1_a1", "2_b2"]


def test_a_pyproject_with_tool_alembic_is_a_project_too(tmp_path: Path) -> None:
    write_project(tmp_path, CHAIN)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.alembic]\nscript_location = "%(here)s/alembic"\n'
    )

    steps = MigrationRunner("sqlite:///x.db", f"alembic:{tmp_path / 'pyproject.toml'}").migrations()

    assert len(steps) == 4


def test_sqlmig_new_numbers_the_first_file_after_the_chain(tmp_path: Path) -> None:
    from sqlmig._scaffold import new_migration

    ini = write_project(tmp_path, CHAIN)
    sources = [f"alembic:{ini}", str(tmp_path / "migrations")]

    first = new_migration(sources, "add_orders")
    second = new_migration(sources, "add_items")

    assert (first.name, second.name) == ("005_add_orders.py", "006_add_items.py")
    assert [m.version for m in MigrationRunner("sqlite:///x.db", sources).migrations()][-2:] == [
        "005",
        "006",
    ]


def test_the_version_table_is_read_from_the_configuration(tmp_path: Path) -> None:
    from sqlmig._alembic_source import VersionTable, revisions

    write_project(tmp_path / "ini", CHAIN)
    ini = tmp_path / "ini" / "alembic.ini"
    assert revisions(str(ini))[0].version_table == VersionTable("alembic_version")  # type: ignore[attr-defined]
    ini.write_text(ini.read_text() + "version_table = app_revision\nversion_table_schema = meta\n")
    assert revisions(str(ini))[0].version_table == VersionTable("app_revision", "meta")  # type: ignore[attr-defined]

    toml = tmp_path / "toml" / "pyproject.toml"
    write_project(tmp_path / "toml", CHAIN)
    toml.write_text('[tool.alembic]\nscript_location = "%(here)s/alembic"\nversion_table = "rev"\n')
    assert revisions(str(toml))[0].version_table == VersionTable("rev")  # type: ignore[attr-defined]
    toml.write_text('[tool.alembic]\nscript_location = "%(here)s/alembic"\nversion_table = ["a"]\n')
    with pytest.raises(MigrationSourceError, match="version_table and version_table_schema are"):
        revisions(str(toml))

"""Taking over a database Alembic migrated: alembic_version read into sqlmig's history."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic_projects import CHAIN, INI, adopt_and_hang, alembic_upgrade, revision, write_project
from scripts import apply
from sqlalchemy import MetaData, inspect, text
from workers import BOUND, SPAWN, Crew, Job, wait_for_file

from backends import Backend, fresh_database
from sqlmig import ConfigError, DirtyDatabase, MigrationRunner, MissingMigration, history_table

pytest.importorskip("alembic")


def rows(backend: Backend, sql: str) -> list[tuple[object, ...]]:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def history(backend: Backend) -> list[tuple[object, ...]]:
    return rows(backend, "SELECT version, name, success FROM migrations ORDER BY version")


def has_table(backend: Backend, name: str) -> bool:
    engine = backend.engine()
    try:
        return inspect(engine).has_table(name)
    finally:
        engine.dispose()


def test_a_database_alembic_upgraded_half_way_is_adopted_and_finished(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "b2")  # Alembic itself, env.py and all

    applied = MigrationRunner(backend.url, f"alembic:{ini}").upgrade()

    assert [m.version for m in applied] == ["3", "4"]  # 1 and 2 adopted, not run again
    assert history(backend) == [
        ("1", "a1_account", True),
        ("2", "b2_email", True),
        ("3", "c3_fill", True),
        ("4", "d4_index", True),
    ]
    assert rows(backend, "SELECT email FROM account") == [("ada@example.org",)]
    # left as it was: Alembic can take over again from b2 after a stamp
    assert rows(backend, "SELECT version_num FROM alembic_version") == [("b2",)]


def test_adopted_revisions_record_no_execution_time_and_can_be_undone(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "head")
    runner = MigrationRunner(backend.url, f"alembic:{ini}")

    assert runner.upgrade() == []
    assert [r.execution_ms for r in runner.status().applied] == [None] * 4

    assert [m.version for m in runner.downgrade("2")] == ["4", "3"]
    assert rows(backend, "SELECT count(*) FROM account") == [(0,)]


def test_an_alembic_version_naming_a_revision_not_in_the_chain_changes_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "b2")
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    engine.dispose()

    with pytest.raises(MissingMigration, match="names revision f00d, which is not in this"):
        MigrationRunner(backend.url, f"alembic:{ini}").upgrade()

    assert not has_table(backend, "migrations")  # refused before the history is created
    assert rows(backend, "SELECT version_num FROM alembic_version") == [("f00d",)]


def test_a_table_named_alembic_version_that_is_not_alembics_is_refused_by_its_name(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (id INTEGER)"))
    engine.dispose()
    runner = MigrationRunner(backend.url, f"alembic:{ini}")
    refused = r"cannot read Alembic's version table alembic_version \(.*version_num.*\): "

    with pytest.raises(ConfigError, match=refused):  # not "migrations is not a history table"
        runner.status()
    with pytest.raises(ConfigError, match=refused):
        runner.upgrade()

    assert not has_table(backend, "migrations")


def test_an_empty_alembic_version_adopts_nothing(backend: Backend, tmp_path: Path) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "b2")
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
        conn.execute(text("DROP TABLE account"))
    engine.dispose()

    applied = MigrationRunner(backend.url, f"alembic:{ini}").upgrade()

    assert [m.version for m in applied] == ["1", "2", "3", "4"]


def test_a_history_sqlmig_emptied_is_never_adopted_again(backend: Backend, tmp_path: Path) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "b2")
    runner = MigrationRunner(backend.url, f"alembic:{ini}")
    runner.upgrade("2")  # adopts a1 and b2
    runner.downgrade("base")  # sqlmig undid them both: alembic_version emptied, as Alembic does

    assert rows(backend, "SELECT count(*) FROM alembic_version") == [(0,)]
    assert runner.status().applied == []
    applied = runner.upgrade()

    assert [m.version for m in applied] == ["1", "2", "3", "4"]


def test_undoing_the_revision_alembic_version_names_moves_it_back_so_alembic_can_resume(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "head")
    runner = MigrationRunner(backend.url, f"alembic:{ini}")

    assert [m.version for m in runner.downgrade("2")] == ["4", "3"]  # adopted, then undone

    assert rows(backend, "SELECT version_num FROM alembic_version") == [("b2",)]
    alembic_upgrade(ini, backend.url_string, "head")  # back to Alembic: it goes on from b2
    assert rows(backend, "SELECT email FROM account") == [("ada@example.org",)]


def test_a_history_alembic_went_past_after_sqlmig_took_over_is_refused(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "a1")
    runner = MigrationRunner(backend.url, f"alembic:{ini}")
    assert [m.version for m in runner.upgrade("2")] == ["2"]  # a1 adopted, b2 run
    alembic_upgrade(ini, backend.url_string, "b2", command_name="stamp")
    alembic_upgrade(ini, backend.url_string, "head")  # Alembic again: c3 and d4

    for call in (runner.status, runner.upgrade, runner.dry_run, runner.rollback_last):
        with pytest.raises(
            DirtyDatabase,
            match=r"alembic_version names revision d4 \(step 4\), "
            r"past the last step sqlmig's history records \(2\).*sqlmig stamp 3",
        ):
            call()

    assert rows(backend, "SELECT count(*) FROM account") == [(1,)]  # c3's row, not twice
    runner.stamp("3")
    runner.stamp("4")
    assert runner.upgrade() == []


def test_an_empty_history_table_is_adopted_into_and_nothing_runs_again(
    backend: Backend, tmp_path: Path
) -> None:
    # what a run killed while adopting leaves on MySQL/MariaDB, whose CREATE TABLE
    # commits itself: the history table, without the rows that were to follow it
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "c3")
    engine = backend.engine()
    history_table(MetaData()).create(engine)
    engine.dispose()
    runner = MigrationRunner(backend.url, f"alembic:{ini}")

    assert [r.version for r in runner.status().applied] == ["1", "2", "3"]
    applied = runner.upgrade()

    assert [m.version for m in applied] == ["4"]
    assert [r[0] for r in history(backend)] == ["1", "2", "3", "4"]
    assert rows(backend, "SELECT count(*) FROM account") == [(1,)]  # c3's row, once


def test_a_downgrade_into_an_empty_history_table_adopts_then_undoes(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "head")
    engine = backend.engine()
    history_table(MetaData()).create(engine)
    engine.dispose()

    undone = MigrationRunner(backend.url, f"alembic:{ini}").downgrade("3")

    assert [m.version for m in undone] == ["4"]
    assert [r[0] for r in history(backend)] == ["1", "2", "3"]


REPLICAS = 4


@pytest.fixture(scope="module")
def replicas() -> object:
    crew = Crew(REPLICAS)
    yield crew
    crew.close()


def test_replicas_adopting_at_once_record_each_revision_once(
    backend: Backend, tmp_path: Path, replicas: Crew
) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "b2")
    job = Job("upgrade", backend.url_string, f"alembic:{ini}", options={"lock_timeout": BOUND})

    outcomes = replicas.run([job] * REPLICAS)

    assert all(o.ok for o in outcomes), [str(o) for o in outcomes]
    assert sorted(v for o in outcomes for v in (o.value or [])) == ["3", "4"]
    assert [r[0] for r in history(backend)] == ["1", "2", "3", "4"]


def test_a_runner_killed_while_adopting_leaves_nothing_and_the_next_one_adopts(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "c3")
    mark = tmp_path / "adopting"
    process = SPAWN.Process(
        target=adopt_and_hang, args=(backend.url_string, f"alembic:{ini}", str(mark))
    )
    process.start()
    try:
        wait_for_file(mark, process)
    finally:
        process.kill()
        process.join(BOUND)
    if not backend.profile.transactional_ddl:
        # the history table's CREATE committed itself before the rows: the table is
        # left empty, and the next run adopts into it
        assert history(backend) == []

    applied = MigrationRunner(backend.url, f"alembic:{ini}", lock_timeout=BOUND).upgrade()

    assert [m.version for m in applied] == ["4"]
    assert [r[0] for r in history(backend)] == ["1", "2", "3", "4"]


def test_before_the_first_write_status_and_dry_run_see_what_adoption_will_record(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "b2")
    runner = MigrationRunner(backend.url, f"alembic:{ini}")

    status = runner.status()
    plan = runner.dry_run()

    assert [r.version for r in status.applied] == ["1", "2"]
    assert [m.version for m in status.pending] == ["3", "4"]
    assert [p.migration.version for p in plan] == ["3", "4"]
    assert not has_table(backend, "migrations")  # both only read


def test_a_database_alembic_left_at_head_is_adopted_by_an_upgrade_with_nothing_to_run(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "head")

    assert MigrationRunner(backend.url, f"alembic:{ini}").upgrade() == []

    assert [r[0] for r in history(backend)] == ["1", "2", "3", "4"]


def test_status_refuses_an_alembic_version_the_chain_does_not_hold(
    sqlite_backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, sqlite_backend.url_string, "a1")
    engine = sqlite_backend.engine()
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    engine.dispose()

    with pytest.raises(MissingMigration, match="f00d"):
        MigrationRunner(sqlite_backend.url, f"alembic:{ini}").status()


def test_a_downgrade_as_the_first_write_adopts_then_undoes(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    alembic_upgrade(ini, backend.url_string, "head")

    undone = MigrationRunner(backend.url, f"alembic:{ini}").downgrade("2")

    assert [m.version for m in undone] == ["4", "3"]
    assert [r[0] for r in history(backend)] == ["1", "2"]
    assert rows(backend, "SELECT count(*) FROM account") == [(0,)]


def test_a_version_table_named_in_alembic_ini_is_adopted_and_emptied_at_the_base(
    backend: Backend, tmp_path: Path
) -> None:
    # env.py passes the name to context.configure(); alembic.ini holds it for both tools
    ini = write_project(
        tmp_path, CHAIN, ini=INI.format(script="alembic") + "version_table = app_revision\n"
    )
    alembic_upgrade(ini, backend.url_string, "b2")
    assert not has_table(backend, "alembic_version")
    runner = MigrationRunner(backend.url, f"alembic:{ini}")

    assert [r.version for r in runner.status().applied] == ["1", "2"]
    assert [m.version for m in runner.upgrade()] == ["3", "4"]
    assert [m.version for m in runner.downgrade("base")] == ["4", "3", "2", "1"]

    assert rows(backend, "SELECT count(*) FROM app_revision") == [(0,)]
    assert [m.version for m in runner.upgrade()] == ["1", "2", "3", "4"]


def test_a_version_table_in_another_schema_is_adopted(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as backend:
        engine = backend.engine()
        with engine.begin() as conn:
            conn.execute(text("CREATE SCHEMA meta"))
        engine.dispose()
        ini = write_project(
            tmp_path,
            CHAIN,
            ini=INI.format(script="alembic")
            + "version_table = app_revision\nversion_table_schema = meta\n",
        )
        alembic_upgrade(ini, backend.url_string, "c3")
        runner = MigrationRunner(backend.url, f"alembic:{ini}")

        assert [m.version for m in runner.upgrade()] == ["4"]
        runner.downgrade("base")

        assert rows(backend, "SELECT count(*) FROM meta.app_revision") == [(0,)]
        assert history(backend) == []


def test_a_version_table_named_in_env_py_alone_is_adopted_and_emptied_at_the_base(
    backend: Backend, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, CHAIN)
    env_py = tmp_path / "alembic" / "env.py"
    env_py.write_text(
        env_py.read_text().replace(
            'version_table=config.get_main_option("version_table", "alembic_version")',
            'version_table="app_revision"',
        )
    )
    alembic_upgrade(ini, backend.url_string, "b2")
    runner = MigrationRunner(backend.url, f"alembic:{ini}")

    assert [m.version for m in runner.upgrade()] == ["3", "4"]  # a1, b2 adopted
    assert [m.version for m in runner.downgrade("base")] == ["4", "3", "2", "1"]
    assert rows(backend, "SELECT count(*) FROM app_revision") == [(0,)]


def test_a_history_placed_in_another_schema_adopts_alembic_version_where_alembic_put_it(
    tmp_path: Path,
) -> None:
    with fresh_database("postgresql", tmp_path) as backend:
        engine = backend.engine()
        with engine.begin() as conn:
            conn.execute(text("CREATE SCHEMA ops"))
        engine.dispose()
        ini = write_project(tmp_path, CHAIN)
        alembic_upgrade(ini, backend.url_string, "b2")  # public.alembic_version
        runner = MigrationRunner(backend.url, f"alembic:{ini}", schema="ops")

        assert [m.version for m in runner.upgrade()] == ["3", "4"]
        assert len(rows(backend, "SELECT * FROM ops.migrations")) == 4
        runner.downgrade("base")

        assert rows(backend, "SELECT count(*) FROM public.alembic_version") == [(0,)]
        assert runner.upgrade()  # not adopted again: the chain runs from its start


def test_a_tenant_schema_adopts_the_alembic_version_alembic_kept_there(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as backend:
        engine = backend.engine()
        with engine.begin() as conn:
            conn.execute(text("CREATE SCHEMA tenant_a"))
        engine.dispose()
        ini = write_project(tmp_path, CHAIN)
        # Alembic run with the tenant's schema as its search path
        in_tenant = backend.url.update_query_dict({"options": "-csearch_path=tenant_a"})
        alembic_upgrade(ini, in_tenant.render_as_string(hide_password=False), "b2")
        runner = MigrationRunner(
            backend.url, f"alembic:{ini}", schema="tenant_a", steps_in_schema=True
        )

        assert [m.version for m in runner.upgrade()] == ["3", "4"]
        runner.downgrade("base")

        assert rows(backend, "SELECT count(*) FROM tenant_a.alembic_version") == [(0,)]
        assert not has_table(backend, "alembic_version")  # nothing in the default schema


def test_a_downgrade_script_to_the_base_empties_the_version_table(
    backend: Backend, tmp_path: Path
) -> None:
    # (a script cannot hold SQLite's batch rebuild of b2: the first revision alone)
    ini = write_project(tmp_path, {"a1_account.py": CHAIN["a1_account.py"]})
    alembic_upgrade(ini, backend.url_string, "head")
    runner = MigrationRunner(backend.url, f"alembic:{ini}")
    runner.upgrade()  # adopted

    apply(backend, runner.sql_script("base", downgrade=True, from_version="1"))

    assert rows(backend, "SELECT count(*) FROM alembic_version") == [(0,)]
    assert history(backend) == []
    assert [m.version for m in runner.upgrade()] == ["1"]  # run, not adopted again
    # on a database that never had Alembic's table, the script leaves an empty one
    runner.downgrade("base")
    drop_version_table(backend)
    apply(backend, runner.sql_script("1"))
    apply(backend, runner.sql_script("base", downgrade=True, from_version="1"))
    assert rows(backend, "SELECT count(*) FROM alembic_version") == [(0,)]


def test_a_downgrade_script_moves_the_version_table_back(backend: Backend, tmp_path: Path) -> None:
    note = revision(
        "n2",
        "a1",
        'op.create_table("note", sa.Column("id", sa.Integer, primary_key=True))',
        'op.drop_table("note")',
    )
    ini = write_project(tmp_path, {"a1_account.py": CHAIN["a1_account.py"], "n2_note.py": note})
    alembic_upgrade(ini, backend.url_string, "head")
    runner = MigrationRunner(backend.url, f"alembic:{ini}")
    runner.upgrade()  # adopted

    script = runner.sql_script("1", downgrade=True, from_version="2")
    apply(backend, script)

    assert "SET version_num='a1' WHERE alembic_version.version_num = 'n2'" in script
    assert rows(backend, "SELECT version_num FROM alembic_version") == [("a1",)]
    assert [m.version for m in runner.upgrade()] == ["2"]  # n2 run again, not refused


def drop_version_table(backend: Backend) -> None:
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()

"""The version table an Alembic project's env.py names, read without running env.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from alembic_projects import CHAIN, INI, write_project

from sqlmig import MigrationSourceError

pytest.importorskip("alembic")


def version_table(tmp_path: Path, env_py: str, ini_extra: str = "") -> tuple[str, str | None]:
    """The version table sqlmig reads for a project with this env.py (which never runs)."""
    from sqlmig._alembic_source import revisions

    ini = write_project(tmp_path, CHAIN, ini=INI.format(script="alembic") + ini_extra)
    (tmp_path / "alembic" / "env.py").write_text(
        'raise RuntimeError("env.py ran")\n' + textwrap.dedent(env_py)
    )
    table = revisions(str(ini))[0].version_table  # type: ignore[attr-defined]
    return table.name, table.schema


@pytest.mark.parametrize(
    ("env_py", "ini_extra", "expected"),
    [
        pytest.param(
            """
            from alembic import context
            context.configure(connection=None, version_table="app_revision",
                              version_table_schema="meta")
            """,
            "",
            ("app_revision", "meta"),
            id="literals",
        ),
        pytest.param(
            """
            from alembic import context
            VERSION_TABLE = "app_revision"
            def run_migrations_offline():
                context.configure(url="x", version_table=VERSION_TABLE)
            def run_migrations_online():
                context.configure(connection=None, version_table=VERSION_TABLE)
            """,
            "",
            ("app_revision", None),
            id="a module constant in both modes",
        ),
        pytest.param(
            """
            from alembic import context
            config = context.config
            context.configure(
                version_table=config.get_main_option("version_table", "fallback_revision"),
                version_table_schema=config.get_main_option("version_table_schema"),
            )
            """,
            "",
            ("fallback_revision", None),
            id="an option unset: its default",
        ),
        pytest.param(
            """
            from alembic import context
            config = context.config
            context.configure(
                version_table=config.get_main_option("revision_table"),
                version_table_schema=config.get_section_option("app", "schema", "public"),
            )
            """,
            "revision_table = app_revision\n\n[app]\nschema = meta\n",
            ("app_revision", "meta"),
            id="options set, of any name and section",
        ),
        pytest.param(
            """
            from alembic import context
            context.configure(version_table="from_env_py")
            """,
            "version_table = from_ini\n",
            ("from_ini", None),
            id="the configuration's key first",
        ),
        pytest.param(
            """
            from alembic import context
            context.configure(connection=None, target_metadata=None)
            """,
            "",
            ("alembic_version", None),
            id="not named: Alembic's default",
        ),
        pytest.param("def broken(:\n", "", ("alembic_version", None), id="a syntax error"),
        pytest.param(
            """
            import structlog
            from alembic import context
            settings = {}
            structlog.configure(**settings)
            context.configure(connection=None)
            """,
            "",
            ("alembic_version", None),
            id="** given to another library's configure()",
        ),
        pytest.param(
            """
            from alembic import context
            context.configure(connection=None, **{"version_table": "app_revision"})
            """,
            "",
            ("app_revision", None),
            id="a dict literal after **",
        ),
    ],
)
def test_the_version_table_is_read_from_env_py(
    tmp_path: Path, env_py: str, ini_extra: str, expected: tuple[str, str | None]
) -> None:
    assert version_table(tmp_path, env_py, ini_extra) == expected


def test_a_name_env_py_computes_is_refused_with_where_to_write_it(tmp_path: Path) -> None:
    env_py = """
        import os
        from alembic import context
        context.configure(version_table=os.environ["VERSION_TABLE"])
        """
    with pytest.raises(
        MigrationSourceError,
        match=r"env.py:5: context.configure\(\) gets version_table from an expression sqlmig "
        r"cannot read without running env.py: write the name this database uses as "
        r"version_table = \.\.\. in alembic.ini",
    ):
        version_table(tmp_path, env_py)
    # the configuration's key settles it: env.py is then not read
    assert version_table(tmp_path, env_py, "version_table = app_revision\n") == (
        "app_revision",
        None,
    )


def test_keywords_passed_as_a_dict_are_refused_unless_the_configuration_names_the_table(
    tmp_path: Path,
) -> None:
    # Flask-Migrate's env.py: configure_args may hold version_table, unknowable unrun
    env_py = """
        from alembic import context
        conf_args = {}
        context.configure(
            connection=None,
            **conf_args,
        )
        """
    with pytest.raises(
        MigrationSourceError,
        match=r"env.py:7: context.configure\(\) gets \*\*keywords, which may name the "
        r"version table, and sqlmig cannot read them without running env.py: write "
        r"version_table = \.\.\. \(alembic_version if it is not renamed\) in alembic.ini",
    ):
        version_table(tmp_path, env_py)
    assert version_table(tmp_path, env_py, "version_table = alembic_version\n") == (
        "alembic_version",
        None,
    )


def test_two_names_in_env_py_are_refused(tmp_path: Path) -> None:
    env_py = """
        from alembic import context
        if context.is_offline_mode():
            context.configure(version_table="one")
        else:
            context.configure(version_table="two")
        """
    with pytest.raises(
        MigrationSourceError, match=r"calls give version_table two values \('one', 'two'\)"
    ):
        version_table(tmp_path, env_py)


def test_a_constant_bound_twice_is_not_taken_for_its_first_value(tmp_path: Path) -> None:
    env_py = """
        from alembic import context
        TABLE = "one"
        if context.get_x_argument():
            TABLE = "two"
        context.configure(version_table=TABLE)
        """
    with pytest.raises(MigrationSourceError, match=r"env.py:7: .* gets version_table from an"):
        version_table(tmp_path, env_py)


def test_a_versions_folder_source_reads_the_env_py_above_it(tmp_path: Path) -> None:
    from sqlmig._alembic_source import revisions

    write_project(tmp_path, CHAIN)
    (tmp_path / "alembic" / "env.py").write_text(
        'from alembic import context\ncontext.configure(version_table="app_revision")\n'
    )

    for source in (tmp_path / "alembic", tmp_path / "alembic" / "versions"):
        assert revisions(str(source))[0].version_table.name == "app_revision"  # type: ignore[attr-defined]

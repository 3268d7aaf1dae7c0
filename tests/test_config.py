"""Configuration: where the URL and the settings come from (SPEC §8), case by case.

Pure tests: a pyproject.toml in a temporary folder, the environment set with
monkeypatch, nothing connects to a database.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sqlalchemy import make_url

from sqlmig import ConfigError, MigrationRunner
from sqlmig._cli import exit_code
from sqlmig.config import migrations_setting, read_config, runner_settings

PROJECT = """\
[tool.sqlmig]
url = "sqlite:///app.db"
migrations = "migrations"

[tool.sqlmig.env.staging]
url = "postgresql+psycopg://app@staging-db/app"

[tool.sqlmig.env.prod]
url = "postgresql+psycopg://app:${DB_PASSWORD}@db/app"
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SQLMIG_URL", "SQLMIG_ENV", "DB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str = PROJECT, name: str = "pyproject.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# -- the URL, first found wins ------------------------------------------------


def test_the_file_url_is_used_when_nothing_else_is_given(tmp_path: Path) -> None:
    settings = runner_settings(path=write(tmp_path))
    assert settings["db"] == "sqlite:///app.db"


def test_the_chosen_environment_beats_the_file_url(tmp_path: Path) -> None:
    settings = runner_settings(env="staging", path=write(tmp_path))
    assert settings["db"] == "postgresql+psycopg://app@staging-db/app"


def test_sqlmig_env_chooses_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQLMIG_ENV", "staging")
    assert runner_settings(path=write(tmp_path))["db"].endswith("@staging-db/app")


def test_the_env_argument_beats_sqlmig_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLMIG_ENV", "staging")
    monkeypatch.setenv("DB_PASSWORD", "pw")
    assert runner_settings(env="prod", path=write(tmp_path))["db"].endswith("@db/app")


def test_sqlmig_url_beats_every_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLMIG_URL", "sqlite:///from-env.db")
    assert runner_settings(path=write(tmp_path))["db"] == "sqlite:///from-env.db"
    assert runner_settings(env="staging", path=write(tmp_path))["db"] == "sqlite:///from-env.db"


def test_the_explicit_url_beats_sqlmig_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLMIG_URL", "sqlite:///from-env.db")
    settings = runner_settings(env="staging", path=write(tmp_path), url="sqlite:///given.db")
    assert settings["db"] == "sqlite:///given.db"


def test_a_db_object_counts_as_the_explicit_url(tmp_path: Path) -> None:
    settings = runner_settings(path=write(tmp_path), db="sqlite:///object.db")
    assert settings["db"] == "sqlite:///object.db"


def test_an_environment_without_url_falls_back_to_the_file_url(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [tool.sqlmig]
        url = "sqlite:///a.db"
        [tool.sqlmig.env.ci]
        table = "t"
        """,
    )
    settings = runner_settings(env="ci", path=path)
    assert (settings["db"], settings["table"]) == ("sqlite:///a.db", "t")


def test_no_url_anywhere_is_a_config_error_naming_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[tool.sqlmig]\nmigrations = "m"\n')
    with pytest.raises(ConfigError, match="no database URL") as caught:
        runner_settings(path=path)
    assert str(path) in str(caught.value)
    assert caught.value.key == "tool.sqlmig.url"
    assert exit_code(caught.value) == 2


def test_a_missing_file_is_fine_when_the_url_comes_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQLMIG_URL", "sqlite:///x.db")
    settings = runner_settings(path=tmp_path / "pyproject.toml")
    assert settings == {"db": "sqlite:///x.db", "migrations": str(tmp_path / "migrations")}


def test_a_missing_file_and_no_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        runner_settings(path=tmp_path / "pyproject.toml")


# -- environments -------------------------------------------------------------


def test_an_unknown_environment_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'qa'.*prod, staging") as caught:
        runner_settings(env="qa", path=write(tmp_path))
    assert caught.value.key == "tool.sqlmig.env.qa"


def test_an_unknown_environment_fails_even_when_sqlmig_url_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQLMIG_URL", "sqlite:///x.db")
    monkeypatch.setenv("SQLMIG_ENV", "qa")
    with pytest.raises(ConfigError, match="unknown environment 'qa'"):
        runner_settings(path=write(tmp_path))
    with pytest.raises(ConfigError, match="unknown environment 'qa'"):
        runner_settings(path=write(tmp_path), url="sqlite:///given.db")


def test_an_environment_asked_of_a_missing_file_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        runner_settings(env="prod", path=tmp_path / "nope.toml", url="sqlite:///x.db")


def test_environment_settings_override_the_file_and_overrides_beat_both(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [tool.sqlmig]
        url = "sqlite:///a.db"
        table = "schema_history"
        lock_timeout = 60
        allow_out_of_order = true
        [tool.sqlmig.env.ci]
        migrations = "db/ci_migrations"
        schema = "ci"
        lock_timeout = 5.5
        allow_out_of_order = false
        """,
    )
    settings = runner_settings(env="ci", path=path)
    assert settings == {
        "db": "sqlite:///a.db",
        "migrations": str(tmp_path / "db" / "ci_migrations"),
        "table": "schema_history",
        "schema": "ci",
        "lock_timeout": 5.5,
        "allow_out_of_order": False,
    }
    given = runner_settings(env="ci", path=path, table="t", lock_timeout=1, migrations="here")
    assert (given["table"], given["lock_timeout"], given["migrations"]) == ("t", 1, "here")


def test_none_overrides_are_ignored(tmp_path: Path) -> None:
    settings = runner_settings(path=write(tmp_path), url=None, lock_timeout=None, migrations=None)
    assert settings == {"db": "sqlite:///app.db", "migrations": str(tmp_path / "migrations")}


def test_an_unknown_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting lock_timout"):
        runner_settings(path=write(tmp_path), lock_timout=3)


# -- paths --------------------------------------------------------------------


def test_migrations_are_relative_to_the_config_file_not_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = runner_settings(path=write(project))
    assert settings["migrations"] == str(project / "migrations")
    assert settings["db"] == "sqlite:///app.db"  # a SQLite path in a URL follows SQLAlchemy


def test_without_a_migrations_key_the_folder_next_to_the_file_is_used(tmp_path: Path) -> None:
    settings = runner_settings(path=write(tmp_path, '[tool.sqlmig]\nurl = "sqlite://"\n'))
    assert settings["migrations"] == str(tmp_path / "migrations")


def test_an_absolute_migrations_path_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / "abs"
    path = write(tmp_path, f'[tool.sqlmig]\nurl = "sqlite://"\nmigrations = "{folder}"\n')
    assert runner_settings(path=path)["migrations"] == str(folder)


def test_a_dotted_package_name_stays_a_package_name(tmp_path: Path) -> None:
    path = write(tmp_path, '[tool.sqlmig]\nurl = "sqlite://"\nmigrations = "myapp.migrations"\n')
    assert runner_settings(path=path)["migrations"] == "myapp.migrations"


def test_migrations_setting_needs_no_url(tmp_path: Path) -> None:
    path = write(tmp_path, '[tool.sqlmig.env.ci]\nmigrations = "ci"\n')
    assert migrations_setting(path=path) == str(tmp_path / "migrations")
    assert migrations_setting(env="ci", path=path) == str(tmp_path / "ci")
    assert migrations_setting(path=path, migrations="given") == "given"


# -- ${VAR} -------------------------------------------------------------------


def test_a_variable_in_the_url_is_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", "s3cret")
    settings = runner_settings(env="prod", path=write(tmp_path))
    assert make_url(settings["db"]).password == "s3cret"


def test_a_password_with_url_characters_needs_no_escaping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", "p@ss/w:rd#?%")
    url = make_url(runner_settings(env="prod", path=write(tmp_path))["db"])
    assert (url.password, url.host, url.database) == ("p@ss/w:rd#?%", "db", "app")


def test_variables_fill_other_parts_and_whole_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_HOST", "db.internal")
    monkeypatch.setenv("DB_PORT", "6543")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///whole.db")
    path = write(
        tmp_path,
        """\
        [tool.sqlmig.env.a]
        url = "postgresql://app@${DB_HOST}:${DB_PORT}/app"
        [tool.sqlmig.env.b]
        url = "${DATABASE_URL}"
        """,
    )
    assert runner_settings(env="a", path=path)["db"] == "postgresql://app@db.internal:6543/app"
    assert runner_settings(env="b", path=path)["db"] == "sqlite:///whole.db"


def test_an_unset_variable_is_a_config_error_naming_file_key_and_variable(tmp_path: Path) -> None:
    path = write(tmp_path)
    with pytest.raises(ConfigError, match=r"\$\{DB_PASSWORD\}, which is not set") as caught:
        runner_settings(env="prod", path=path)
    assert str(path) in str(caught.value)
    assert "tool.sqlmig.env.prod.url" in str(caught.value)
    assert caught.value.key == "tool.sqlmig.env.prod.url"


def test_sqlmig_url_is_not_expanded_and_spares_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQLMIG_URL", "sqlite:///x.db")
    assert runner_settings(env="prod", path=write(tmp_path))["db"] == "sqlite:///x.db"


def test_a_configured_value_that_is_no_url_is_named_with_its_password_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", "s3cret")
    path = write(tmp_path, '[tool.sqlmig]\nurl = "postgresql+psycopg://app:${DB_PASSWORD}@:x/"\n')
    with pytest.raises(ConfigError) as caught:
        runner_settings(path=path)
    assert "tool.sqlmig.url" in str(caught.value)
    assert "s3cret" not in str(caught.value)


# -- the file itself ----------------------------------------------------------


def test_malformed_toml_is_a_config_error_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[tool.sqlmig]\nurl = "sqlite:///a.db"\nmigrations = \n')
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 3") as caught:
        runner_settings(path=path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[tool.sqlmig]\nurl = 5\n", "tool.sqlmig.url"),
        ('[tool.sqlmig]\nlock_timeout = "soon"\n', "tool.sqlmig.lock_timeout"),
        ("[tool.sqlmig]\nlock_timeout = true\n", "tool.sqlmig.lock_timeout"),
        ('[tool.sqlmig]\nallow_out_of_order = "no"\n', "tool.sqlmig.allow_out_of_order"),
        ('[tool.sqlmig]\nmigration = "m"\n', "tool.sqlmig.migration"),
        ('[tool.sqlmig.env.prod]\nurll = "sqlite://"\n', "tool.sqlmig.env.prod.urll"),
        ('[tool.sqlmig]\nenv = "prod"\n', "tool.sqlmig.env"),
    ],
)
def test_a_bad_setting_is_a_config_error_naming_its_key(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as caught:
        read_config(write(tmp_path, text))
    assert caught.value.key == key


def test_other_tools_sections_are_left_alone(tmp_path: Path) -> None:
    path = write(tmp_path, '[tool.ruff]\nline-length = 3\n[tool.sqlmig]\nurl = "sqlite://"\n')
    assert runner_settings(path=path)["db"] == "sqlite://"


# -- from Python --------------------------------------------------------------


def test_from_config_resolves_the_same_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", "s3cret")
    runner = MigrationRunner.from_config(env="prod", path=write(tmp_path), lock_timeout=7)
    assert runner.url == "postgresql+psycopg://app:***@db/app"
    assert runner.migrations_source == str(tmp_path / "migrations")
    assert runner.lock_timeout == 7.0


def test_from_config_overrides_are_constructor_keywords(tmp_path: Path) -> None:
    runner = MigrationRunner.from_config(
        path=write(tmp_path), url="sqlite:///other.db", table="hist", allow_out_of_order=False
    )
    assert runner.url == "sqlite:///other.db"
    assert (runner.table, runner.allow_out_of_order) == ("hist", False)


# -- where the config file is -------------------------------------------------


@pytest.fixture
def no_config_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQLMIG_CONFIG", raising=False)


def test_the_nearest_pyproject_with_tool_sqlmig_upward_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_config_variable: None
) -> None:
    write(tmp_path)
    deep = tmp_path / "src" / "pkg"
    deep.mkdir(parents=True)
    write(tmp_path / "src", '[project]\nname = "pkg"\n')  # no [tool.sqlmig]: passed over
    monkeypatch.chdir(deep)
    settings = runner_settings()
    assert settings == {"db": "sqlite:///app.db", "migrations": str(tmp_path / "migrations")}
    assert MigrationRunner.from_config().migrations_source == str(tmp_path / "migrations")


def test_sqlmig_config_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_config_variable: None
) -> None:
    path = write(tmp_path, '[tool.sqlmig]\nurl = "sqlite:///elsewhere.db"\n', name="db.toml")
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.setenv("SQLMIG_CONFIG", str(path))
    assert runner_settings()["db"] == "sqlite:///elsewhere.db"
    monkeypatch.setenv("SQLMIG_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"SQLMIG_CONFIG=.*gone.toml names no file"):
        runner_settings()


def test_an_installed_service_runs_on_sqlmig_url_and_a_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_config_variable: None
) -> None:
    monkeypatch.chdir(tmp_path)  # no pyproject.toml here or above
    monkeypatch.setenv("SQLMIG_URL", "sqlite:///svc.db")
    settings = runner_settings(migrations="svc.migrations")
    assert settings == {"db": "sqlite:///svc.db", "migrations": "svc.migrations"}


def test_with_nothing_found_the_error_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_config_variable: None
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        runner_settings(migrations="svc.migrations")
    message = str(caught.value)
    assert "no config file" in message and str(tmp_path) in message
    assert "SQLMIG_URL" in message and "--config" in message and "SQLMIG_CONFIG" in message
    assert "(not found)" not in message
    monkeypatch.setenv("SQLMIG_URL", "sqlite:///svc.db")
    with pytest.raises(ConfigError, match=r"no migrations.*--dir.*package"):
        runner_settings()


# -- malformed values ---------------------------------------------------------


def test_a_tool_key_that_is_no_table_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tool must be a table") as caught:
        runner_settings(path=write(tmp_path, "tool = 1\n"))
    assert exit_code(caught.value) == 2


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "1e12"])
def test_a_lock_timeout_that_is_no_usable_number_is_a_config_error(
    tmp_path: Path, value: str
) -> None:
    path = write(tmp_path, f'[tool.sqlmig]\nurl = "sqlite:///a.db"\nlock_timeout = {value}\n')
    with pytest.raises(ConfigError, match=r"tool\.sqlmig\.lock_timeout must be a number"):
        runner_settings(path=path)
    number = float(value)
    with pytest.raises(ConfigError, match="lock_timeout must be a number of seconds from 0"):
        runner_settings(path=write(tmp_path, PROJECT), lock_timeout=number)
    with pytest.raises(ConfigError, match="lock_timeout must be a number of seconds from 0"):
        MigrationRunner("sqlite:///a.db", "m", lock_timeout=number)


def test_a_lock_timeout_too_large_for_a_float_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"from 0 to 2147483, not more$"):
        MigrationRunner("sqlite:///a.db", "m", lock_timeout=10**400)

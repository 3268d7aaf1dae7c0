"""The ``metadata`` setting: a MetaData, ``"module:attribute"``, or a list of them.

Pure tests: modules written to a temporary folder on ``sys.path``; nothing
connects to a database.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from sqlmig import ConfigError, MigrationRunner
from sqlmig._models import Models
from sqlmig.config import runner_settings

MODELS = """\
from sqlalchemy import Column, Integer, MetaData, Table

metadata = MetaData()
Table("users", metadata, Column("id", Integer, primary_key=True))


class Base:
    metadata = MetaData()


not_metadata = {"users": 1}
"""


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on ``sys.path`` with ``appmodels.py``; modules imported from it forgotten after."""
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "appmodels.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_reference_names_a_module_and_an_attribute_path(modules: Path) -> None:
    (metadata,) = Models("appmodels:metadata").resolve()
    assert set(metadata.tables) == {"users"}
    (base,) = Models(" appmodels:Base.metadata ").resolve()
    assert isinstance(base, MetaData) and base is not metadata


def test_a_list_mixes_references_and_metadata(modules: Path) -> None:
    own = MetaData()
    found = Models(["appmodels:metadata", own]).resolve()
    assert found[1] is own and set(found[0].tables) == {"users"}


def test_a_reference_is_imported_only_when_needed(modules: Path) -> None:
    runner = MigrationRunner("sqlite:///app.db", "migrations", metadata="appmodels:metadata")
    assert "appmodels" not in sys.modules
    assert runner.metadata == ["appmodels:metadata"]
    assert runner.with_database("sqlite:///other.db").metadata == ["appmodels:metadata"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("no_such_module_here:metadata", "there is no module 'no_such_module_here'"),
        ("appmodels:nothing", "appmodels has no attribute 'nothing'"),
        ("appmodels:Base.nothing", "appmodels.Base has no attribute 'nothing'"),
        ("appmodels:not_metadata", "is a dict, not a sqlalchemy MetaData"),
    ],
)
def test_a_bad_reference_is_a_config_error_naming_it(modules: Path, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Models(value).resolve()
    assert repr(value) in str(caught.value) and says in str(caught.value)
    assert caught.value.key == "metadata"


@pytest.mark.parametrize("value", ["appmodels", "appmodels:", ":metadata", "a b:c", 42, []])
def test_a_malformed_value_is_refused_at_once(value: object) -> None:
    with pytest.raises(ConfigError, match=r"metadata .*(module:attribute|empty list)"):
        MigrationRunner("sqlite:///app.db", "migrations", metadata=value)  # type: ignore[arg-type]


def test_an_import_error_inside_the_module_names_its_file_and_line(modules: Path) -> None:
    (modules / "brokenmodels.py").write_text("import os\n\nx = 1 / 0\n")
    with pytest.raises(ConfigError) as caught:
        Models("brokenmodels:metadata").resolve()
    message = str(caught.value)
    assert f"{modules / 'brokenmodels.py'}:3" in message and "ZeroDivisionError" in message
    (modules / "badsyntax.py").write_text("x = (\n")
    with pytest.raises(ConfigError, match=r"badsyntax\.py:1.*SyntaxError|SyntaxError.*badsyntax"):
        Models("badsyntax:metadata").resolve()


def test_a_module_missing_inside_the_models_module_is_its_import_error(modules: Path) -> None:
    (modules / "needsmore.py").write_text("import not_installed_anywhere\n")
    with pytest.raises(ConfigError) as caught:
        Models("needsmore:metadata").resolve()
    message = str(caught.value)
    assert "ModuleNotFoundError" in message and f"{modules / 'needsmore.py'}:1" in message


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_config_file_names_the_models(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [tool.sqlmig]
        url = "sqlite:///app.db"
        metadata = "app.db:metadata"

        [tool.sqlmig.env.many]
        metadata = ["app.db:metadata", "app.audit:metadata"]
        """,
    )
    assert runner_settings(path=path)["metadata"] == "app.db:metadata"
    assert runner_settings(path=path, env="many")["metadata"] == [
        "app.db:metadata",
        "app.audit:metadata",
    ]
    assert runner_settings(path=path, metadata=["x:y"])["metadata"] == ["x:y"]
    runner = MigrationRunner.from_config(path=path, migrations="migrations")
    assert runner.metadata == ["app.db:metadata"]


@pytest.mark.parametrize("value", ["42", '"app.db"', '["app.db:metadata", 1]'])
def test_a_bad_config_value_names_the_key(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f'[tool.sqlmig]\nurl = "sqlite:///a.db"\nmetadata = {value}\n')
    with pytest.raises(ConfigError) as caught:
        runner_settings(path=path)
    assert "tool.sqlmig.metadata" in str(caught.value)
    assert caught.value.key == "tool.sqlmig.metadata"

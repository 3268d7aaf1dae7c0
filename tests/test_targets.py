"""Targets: what names them (the caller, a targets file, ``module:callable``), checked
before anything connects: each named, none twice, none a schema where there are none."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from sqlmig import ConfigError, Target, UsageError
from sqlmig._targets import checked_targets, from_callable, from_lines, split_schema


@pytest.mark.parametrize(
    ("line", "url", "schema"),
    [
        ("postgresql://app@db/app", "postgresql://app@db/app", None),
        ("postgresql://app@db/app#acme", "postgresql://app@db/app", "acme"),
        ('postgresql://a:p%23w@db/app#we"ird.na me', "postgresql://a:p%23w@db/app", 'we"ird.na me'),
        ("postgresql://app@db/app#has#hash", "postgresql://app@db/app", "has#hash"),
    ],
)
def test_url_hash_schema_splits_at_the_first_hash(line: str, url: str, schema: str | None) -> None:
    assert split_schema(line) == (url, schema)


def test_a_targets_file_skips_blank_lines_and_comments() -> None:
    text = "# tenants\n\n  sqlite:///a.db  \npostgresql://u@h/db#Tenant-A\n"

    targets = from_lines(text, "t.txt")

    assert targets == [Target("sqlite:///a.db"), Target("postgresql://u@h/db", "Tenant-A")]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("sqlite:///a.db\nstaging\n", "t.txt:2: 'staging' is not a database URL"),
        ("postgresql://u@h/db#\n", "t.txt:1: nothing follows '#'"),
        ("postgresql://u@h/db#   \n", "t.txt:1: nothing follows '#'"),
    ],
)
def test_a_bad_line_names_its_file_and_line(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        from_lines(text, "t.txt")
    assert str(raised.value).startswith(says)


def test_names_are_the_schema_else_the_masked_url_and_never_clash() -> None:
    targets = checked_targets(
        [
            "postgresql://u:secret@one/db",
            Target("postgresql://u:secret@one/db", schema="acme"),
            Target("postgresql://u:secret@two/db", schema="acme"),
            Target("postgresql://u:secret@two/db", schema="globex", name="Globex Inc."),
        ]
    )

    assert [t.name for t in targets] == [
        "postgresql://u:***@one/db",
        "postgresql://u:***@one/db#acme",
        "postgresql://u:***@two/db#acme",
        "Globex Inc.",
    ]


def test_one_database_however_spelled_is_one_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        for twice in (
            ["sqlite:///a.db", f"sqlite:///{tmp_path / 'a.db'}"],
            ["sqlite:///a.db", engine],
            ["postgresql+psycopg://u:x@h/db", "postgresql+psycopg2://u:y@h/db"],
            [Target("postgresql://u@h/db", "s"), Target("postgresql://u@h/db", "s", name="other")],
        ):
            with pytest.raises(UsageError, match="is target #1 again"):
                checked_targets(twice)
    finally:
        engine.dispose()
    assert len(checked_targets([Target("postgresql://u@h/db", "s"), "postgresql://u@h/db"])) == 2


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"url": "sqlite:///a.db", "schema": ""}, "schema='' names nothing"),
        ({"url": "sqlite:///a.db", "name": " "}, "name=' ' names nothing"),
        ({"url": 3}, "Target url int is not a database"),
    ],
)
def test_a_target_that_names_nothing_is_refused(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        Target(**kwargs)  # type: ignore[arg-type]


def test_a_callable_s_targets_and_its_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "registry_of_tenants.py").write_text(
        "def good():\n    return ['sqlite:///a.db', 'postgresql://u@h/db#acme']\n"
        "def one_string():\n    return 'sqlite:///a.db'\n"
        "def raises():\n    raise LookupError('registry down')\n"
        "not_callable = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert from_callable("registry_of_tenants:good") == [
            Target("sqlite:///a.db"),
            Target("postgresql://u@h/db", "acme"),
        ]
        for reference, says in [
            ("registry_of_tenants:one_string", "returned a str, not a list"),
            ("registry_of_tenants:raises", "raised LookupError: registry down; fix it"),
            ("registry_of_tenants:not_callable", "is not callable"),
            ("registry_of_tenants:missing", "cannot import it (AttributeError"),
            ("no_such_module_here:x", "cannot import it (ModuleNotFoundError"),
            ("sqlite:///a.db", "is not a 'module:callable' reference"),
        ]:
            with pytest.raises(ConfigError) as raised:
                from_callable(reference)
            assert says in str(raised.value), reference
    finally:
        sys.modules.pop("registry_of_tenants", None)

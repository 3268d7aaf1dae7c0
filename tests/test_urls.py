"""Database URLs: what a value means, and what may be shown of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import make_url

from sqlmig import ConfigError
from sqlmig._urls import in_memory, mask, scrub, sqlite_file, to_url


def test_a_short_password_never_garbles_a_driver_message() -> None:
    url = "postgresql+psycopg://app:p@127.0.0.1:1/app"
    message = 'connection to server at "127.0.0.1", port 1 failed: Connection refused'
    assert scrub(message, url) == message  # "p" of "port" is no password
    assert scrub("invalid dsn: user=app password=p host=x", url) == (
        "invalid dsn: user=app password=*** host=x"
    )
    assert "withheld" in scrub("role app with password p refused", url)
    assert scrub(f"bad URL {url}", url) == f"bad URL {mask(url)}"


@pytest.mark.parametrize(
    ("url", "memory", "file"),
    [
        ("sqlite://", True, None),
        ("sqlite:///:memory:", True, None),
        ("sqlite:///file:shared?mode=memory&cache=shared&uri=true", True, None),
        ("sqlite:///app.db", False, "app.db"),
        ("sqlite:///file:app.db?mode=rwc&uri=true", False, "app.db"),
        ("postgresql+psycopg://app@db/app", False, None),
    ],
)
def test_sqlite_urls_name_a_file_or_memory(url: str, memory: bool, file: str | None) -> None:
    assert in_memory(make_url(url)) is memory
    assert sqlite_file(make_url(url)) == (Path(file) if file else None)


def test_to_url_keeps_a_url_and_refuses_an_unknown_database_kind() -> None:
    url = make_url("sqlite:///app.db")
    assert to_url(url) is url
    with pytest.raises(ConfigError, match=r"unknown database kind 'postgress'.*scheme"):
        to_url("postgress://app:s3cret-pw@db/app")
    with pytest.raises(ConfigError) as info:
        to_url("postgress://app:s3cret-pw@db/app")
    assert "s3cret-pw" not in str(info.value)

"""Checksums: read from every file's bytes at every start, so every edit is seen."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from backends import Backend
from conftest import MakeMigrations
from sqlmig import ChecksumMismatch, MigrationRunner
from sqlmig._checksums import checksum, folder_checksums, read_file
from sqlmig._discovery import discover

UP = "def up(conn):\n    pass\n"
CREATE = """\
    '''Create table {t}.'''
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE {t} (id INTEGER PRIMARY KEY)"))
    """


def sums(folder: Path) -> dict[str, str | None]:
    return {Path(m.path or "").name: m.checksum for m in discover(folder)}


def test_checksums_ignore_line_endings() -> None:
    assert checksum(b"a\r\nb\r\n") == checksum(b"a\nb\n") == checksum(b"a\rb\r")
    assert checksum(b"a\nb\n") != checksum(b"a\nc\n")


def test_a_files_checksum_is_that_of_its_bytes(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_a.py": UP, "002_b.py": UP + "# b\n"})
    (folder / "003_crlf.py").write_bytes(b"def up(conn):\r\n    pass\r\n")

    assert sums(folder) == {
        "001_a.py": checksum(UP.encode()),
        "002_b.py": checksum((UP + "# b\n").encode()),
        "003_crlf.py": checksum(UP.encode()),
    }


def test_files_larger_than_one_read_are_read_whole(tmp_path: Path) -> None:
    data = os.urandom(200_000)  # four reads of 64 KiB
    (tmp_path / "big.py").write_bytes(data)

    assert read_file(str(tmp_path / "big.py")) == data
    (tmp_path / "empty.py").write_bytes(b"")
    assert read_file(str(tmp_path / "empty.py")) == b""
    assert folder_checksums(str(tmp_path), ["empty.py", "big.py"]) == [
        checksum(b""),
        checksum(data),
    ]


def test_an_edit_that_keeps_size_and_mtime_is_seen(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_a.py": "x = 1\n"})
    path = folder / "001_a.py"
    before = os.stat(path)
    assert sums(folder)["001_a.py"] == checksum(b"x = 1\n")

    path.write_text("x = 2\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert sums(folder)["001_a.py"] == checksum(b"x = 2\n")


def test_an_applied_file_edited_between_two_starts_stops_the_upgrade(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_create_a.py": CREATE.format(t="a")})
    path = folder / "001_create_a.py"
    MigrationRunner(backend.url, folder).upgrade()
    assert MigrationRunner(backend.url, folder).upgrade() == []  # a restart: nothing to do
    before = os.stat(path)

    make_migrations({"001_create_a.py": CREATE.format(t="b")})  # same size, other table
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    with pytest.raises(ChecksumMismatch, match="001 was edited"):
        MigrationRunner(backend.url, folder).upgrade()


@pytest.mark.parametrize("dont_write_bytecode", [False, True])
def test_a_start_with_nothing_to_do_writes_nothing_into_the_folder(
    sqlite_backend: Backend,
    make_migrations: MakeMigrations,
    monkeypatch: pytest.MonkeyPatch,
    dont_write_bytecode: bool,
) -> None:
    folder = make_migrations({"001_create_a.py": CREATE.format(t="a"), "002_b.py": UP})
    MigrationRunner(sqlite_backend.url, folder).upgrade()
    monkeypatch.setattr(sys, "dont_write_bytecode", dont_write_bytecode)
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))

    assert MigrationRunner(sqlite_backend.url, folder).upgrade() == []
    MigrationRunner(sqlite_backend.url, folder).status()

    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before

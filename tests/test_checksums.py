"""The checksum cache: unchanged files are trusted by their metadata, edits are still seen.

A file's ctime cannot be set, so "written more than two seconds ago" is played
by moving the module's clock (``checksums._now_ns``) forward instead of sleeping.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import pytest

from backends import Backend
from conftest import MakeMigrations
from sqlmig import ChecksumMismatch, MigrationRunner
from sqlmig import _checksums as checksums
from sqlmig._checksums import RACY_NS, read_file
from sqlmig._discovery import checksum, discover

UP = "def up(conn):\n    pass\n"
CREATE = """\
    '''Create table {t}.'''
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE {t} (id INTEGER PRIMARY KEY)"))
    """
SECONDS = 1_000_000_000


@pytest.fixture(autouse=True)
def bytecode_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches are written here even when the environment sets PYTHONDONTWRITEBYTECODE."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock ten seconds ahead: every file written so far is old enough to cache."""
    monkeypatch.setattr(checksums, "_now_ns", lambda: time.time_ns() + 10 * SECONDS)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the migration files read (and hashed), in order."""
    names: list[str] = []

    def recording(name: str, folder_fd: int | None = None) -> bytes:
        if name.endswith(".py"):
            names.append(os.path.basename(name))
        return read_file(name, folder_fd)

    monkeypatch.setattr(checksums, "read_file", recording)
    return names


def cache_of(folder: Path) -> Path:
    return folder / "__pycache__" / "sqlmig-checksums"


def cached_names(folder: Path) -> list[str]:
    """The file names the cache holds entries for."""
    header, *lines = cache_of(folder).read_text().splitlines()
    assert header == "sqlmig-checksums 1"
    return [line.split("\t")[0] for line in lines]


def sums(folder: Path) -> dict[str, str | None]:
    return {Path(m.path or "").name: m.checksum for m in discover(folder)}


def from_bytes(folder: Path) -> dict[str, str]:
    return {p.name: checksum(p.read_bytes()) for p in folder.glob("*.py")}


def test_checksums_from_the_cache_equal_those_of_the_bytes(
    make_migrations: MakeMigrations, later: None, reads: list[str]
) -> None:
    folder = make_migrations({"001_a.py": UP, "002_b.py": UP + "# b\n", "003_c.py": "x = 3\n"})

    first = sums(folder)
    second = sums(folder)

    assert first == second == from_bytes(folder)
    assert sorted(reads) == ["001_a.py", "002_b.py", "003_c.py"]  # all read the first time only


def test_the_cache_lives_under_pycache_one_line_per_file(
    make_migrations: MakeMigrations, later: None
) -> None:
    folder = make_migrations({"001_a.py": UP, "002_b.py": UP + "# b\n"})

    discover(folder)

    header, *lines = cache_of(folder).read_text().splitlines()
    assert header == "sqlmig-checksums 1"
    st = os.stat(folder / "001_a.py")
    assert lines[0].split("\t") == [
        "001_a.py",
        str(st.st_size),
        str(st.st_mtime_ns),
        str(st.st_ctime_ns),
        str(st.st_ino),
        checksum(UP.encode()),
    ]
    assert cached_names(folder) == ["001_a.py", "002_b.py"]


def test_a_second_discovery_reads_only_the_files_that_changed(
    make_migrations: MakeMigrations, later: None, reads: list[str]
) -> None:
    folder = make_migrations({"001_a.py": UP, "002_b.py": UP, "003_c.py": UP})
    discover(folder)
    reads.clear()

    assert sums(folder) == from_bytes(folder)
    assert reads == []

    make_migrations({"002_b.py": UP + "# edited\n"})

    assert sums(folder) == from_bytes(folder)
    assert reads == ["002_b.py"]


def test_the_cache_is_not_written_when_nothing_changed(
    make_migrations: MakeMigrations, later: None
) -> None:
    folder = make_migrations({"001_a.py": UP})
    discover(folder)
    written = cache_of(folder).stat()

    discover(folder)

    again = cache_of(folder).stat()
    assert (again.st_ino, again.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)


def test_only_files_settled_for_two_seconds_are_cached(
    make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch, reads: list[str]
) -> None:
    folder = make_migrations({"001_a.py": UP})
    st = os.stat(folder / "001_a.py")
    settled_at = max(st.st_mtime_ns, st.st_ctime_ns) + RACY_NS

    monkeypatch.setattr(checksums, "_now_ns", lambda: settled_at - 1)
    discover(folder)
    discover(folder)

    assert not cache_of(folder).exists()
    assert reads == ["001_a.py", "001_a.py"]  # hashed again, as nothing was trusted

    monkeypatch.setattr(checksums, "_now_ns", lambda: settled_at)
    discover(folder)

    assert cached_names(folder) == ["001_a.py"]


def test_an_edit_within_two_seconds_of_the_last_is_seen(
    make_migrations: MakeMigrations, reads: list[str]
) -> None:
    # The real clock: the file was just written, as was the edit. Had the first
    # discovery cached it, an edit in the same timestamp tick that keeps the size
    # and puts the mtime back would leave every value of the stat the same.
    folder = make_migrations({"001_a.py": "x = 1\n"})
    before = os.stat(folder / "001_a.py")
    assert sums(folder) == from_bytes(folder)

    (folder / "001_a.py").write_text("x = 2\n")
    os.utime(folder / "001_a.py", ns=(before.st_atime_ns, before.st_mtime_ns))

    assert not cache_of(folder).exists()
    assert sums(folder)["001_a.py"] == checksum(b"x = 2\n")
    assert reads == ["001_a.py", "001_a.py"]


@pytest.mark.parametrize("how", ["in place", "replaced"])
def test_an_edit_that_keeps_size_and_mtime_is_seen_by_ctime_and_inode(
    make_migrations: MakeMigrations, later: None, how: str
) -> None:
    folder = make_migrations({"001_a.py": "x = 1\n"})
    path = folder / "001_a.py"
    hour_ago = time.time_ns() - 3600 * SECONDS
    os.utime(path, ns=(hour_ago, hour_ago))
    before = os.stat(path)
    assert sums(folder)["001_a.py"] == checksum(b"x = 1\n")
    time.sleep(0.05)  # past the kernel's timestamp tick, so the edit gets another ctime

    if how == "in place":
        path.write_text("x = 2\n")
    else:  # as editors save: a new file renamed over the old one
        (folder / "new.tmp").write_text("x = 2\n")
        os.replace(folder / "new.tmp", path)
    os.utime(path, ns=(hour_ago, hour_ago))

    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns
    assert sums(folder)["001_a.py"] == checksum(b"x = 2\n")


def test_the_entry_of_a_deleted_file_is_dropped(
    make_migrations: MakeMigrations, later: None
) -> None:
    folder = make_migrations({"001_a.py": UP, "002_b.py": UP})
    discover(folder)
    assert cached_names(folder) == ["001_a.py", "002_b.py"]

    make_migrations({"002_b.py": None})
    discover(folder)

    assert cached_names(folder) == ["001_a.py"]


def test_a_folder_where_the_cache_cannot_be_written_still_works(
    make_migrations: MakeMigrations, later: None, caplog: pytest.LogCaptureFixture
) -> None:
    folder = make_migrations({"001_a.py": UP})
    if os.geteuid() == 0:  # root writes anywhere: block the cache with a file instead
        (folder / "__pycache__").write_text("a file where the cache folder would go")
    else:
        folder.chmod(0o555)
    caplog.set_level(logging.DEBUG, logger="sqlmig")
    try:
        assert sums(folder) == from_bytes(folder)
        assert sums(folder) == from_bytes(folder)
    finally:
        folder.chmod(0o755)

    assert not cache_of(folder).exists()
    assert "not writing the checksum cache" in caplog.text


def test_no_cache_is_written_when_python_writes_no_bytecode(
    make_migrations: MakeMigrations, later: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # PYTHONDONTWRITEBYTECODE, python -B
    folder = make_migrations({"001_a.py": UP})

    assert sums(folder) == from_bytes(folder)
    assert not (folder / "__pycache__").exists()


def test_like_bytecode_a_cache_already_written_is_still_used_under_dont_write_bytecode(
    make_migrations: MakeMigrations,
    later: None,
    monkeypatch: pytest.MonkeyPatch,
    reads: list[str],
) -> None:
    folder = make_migrations({"001_a.py": UP})
    discover(folder)
    reads.clear()
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    assert sums(folder) == from_bytes(folder)
    assert reads == []


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe not text",
        b"sqlmig-checksums 1\n001_a.py\tno numbers here\n",
        b"sqlmig-checksums 1\n001_a.py\t6",  # cut short
        b"",
    ],
    ids=["binary", "damaged line", "truncated", "empty"],
)
def test_a_corrupt_cache_is_ignored_and_rewritten(
    make_migrations: MakeMigrations, later: None, reads: list[str], content: bytes
) -> None:
    folder = make_migrations({"001_a.py": UP})
    cache_of(folder).parent.mkdir()
    cache_of(folder).write_bytes(content)

    assert sums(folder) == from_bytes(folder)
    assert cached_names(folder) == ["001_a.py"]
    reads.clear()
    assert sums(folder) == from_bytes(folder)
    assert reads == []


def test_a_cache_of_another_format_is_not_trusted_even_where_its_lines_match(
    make_migrations: MakeMigrations, later: None
) -> None:
    folder = make_migrations({"001_a.py": UP})
    st = os.stat(folder / "001_a.py")
    line = f"001_a.py\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ctime_ns}\t{st.st_ino}\t{'0' * 64}"
    cache_of(folder).parent.mkdir()
    cache_of(folder).write_text(f"sqlmig-checksums 2\n{line}\n")

    assert sums(folder) == from_bytes(folder)
    assert cached_names(folder) == ["001_a.py"]  # rewritten in format 1


def test_line_endings_are_normalised_with_and_without_the_cache(
    make_migrations: MakeMigrations, later: None, reads: list[str]
) -> None:
    folder = make_migrations({})
    (folder / "001_crlf.py").write_bytes(b"def up(conn):\r\n    pass\r\n")

    cold = sums(folder)["001_crlf.py"]
    warm = sums(folder)["001_crlf.py"]

    assert cold == warm == checksum(UP.encode())
    assert reads == ["001_crlf.py"]


def test_files_larger_than_one_read_are_read_whole(tmp_path: Path) -> None:
    data = os.urandom(200_000)  # four reads of 64 KiB
    (tmp_path / "big.py").write_bytes(data)

    assert read_file(str(tmp_path / "big.py")) == data
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert read_file("big.py", fd) == data
    finally:
        os.close(fd)


def test_an_applied_file_edited_after_the_cache_was_written_stops_the_upgrade(
    backend: Backend,
    make_migrations: MakeMigrations,
    later: None,
    reads: list[str],
) -> None:
    folder = make_migrations({"001_create_a.py": CREATE.format(t="a")})
    MigrationRunner(backend.url, folder).upgrade()
    assert cached_names(folder) == ["001_create_a.py"]
    reads.clear()
    assert MigrationRunner(backend.url, folder).upgrade() == []  # a restart: the cache holds
    assert reads == []
    time.sleep(0.05)  # past the kernel's timestamp tick, so the edit gets another ctime

    make_migrations({"001_create_a.py": CREATE.format(t="b")})  # same size, other table

    with pytest.raises(ChecksumMismatch, match="001 was edited"):
        MigrationRunner(backend.url, folder).upgrade()


def test_a_trusted_file_is_still_read_when_its_description_is_needed(
    make_migrations: MakeMigrations, later: None
) -> None:
    folder = make_migrations({"001_a.py": '"""Step a."""\n' + UP})
    discover(folder)

    (migration,) = discover(folder)

    assert migration.description == "Step a."

"""File checksums: the sha256 of a migration file, and a cache that skips unchanged files.

The start-up check compares every applied file's checksum with the one recorded
when it ran. Reading and hashing every file at every start costs time that
grows with the files' size, so the checksums of a real folder are remembered
in ``<folder>/__pycache__/sqlmig-checksums``, keyed by each file's size,
``st_mtime_ns``, ``st_ctime_ns`` and inode, as Python validates its bytecode
caches and git its index. A file whose four values all match its entry is
trusted without being read; any other file is read and hashed.

An entry is written only for a file whose mtime and ctime are at least
:data:`RACY_NS` older than the clock read before the file was looked at
("racy-clean", as git calls it): an edit made within the filesystem's
timestamp granularity of an earlier one could otherwise keep every value the
same and go unseen. Such a file is simply hashed again at the next start.

What the cache trusts: an edit that leaves size, mtime, ctime and inode all as
they were. Tools can put an mtime back but not a ctime, so that takes setting
the system clock back or writing to the disk underneath the filesystem. A
copy, a checkout or an archive extracted elsewhere gets new inodes and ctimes,
and a cache carried along with it matches nothing.

The cache is written only when it would change, atomically, never when
``sys.dont_write_bytecode`` is set (``PYTHONDONTWRITEBYTECODE``, ``python -B``),
and never at the cost of the run: a folder that cannot be written is logged at
DEBUG and otherwise ignored, as is a cache file that cannot be read or parsed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Sequence

__all__ = [
    "CACHE_DIR",
    "CACHE_NAME",
    "RACY_NS",
    "checksum",
    "folder_checksums",
    "read_file",
    "replace_file",
]

log = logging.getLogger("sqlmig")

CACHE_DIR = "__pycache__"
CACHE_NAME = "sqlmig-checksums"
HEADER = "sqlmig-checksums 1"
RACY_NS = 2_000_000_000  # FAT's mtime granularity, the coarsest in common use

_CHUNK = 65536  # os.read's buffer: large enough for one call per typical file
_DIR_FD = os.open in os.supports_dir_fd

_now_ns = time.time_ns  # the clock of the racy-clean rule; tests replace it

# The cache's entries: file name -> "size<TAB>mtime_ns<TAB>ctime_ns<TAB>inode<TAB>sha256",
# the rest of the file's line. Kept as text: comparing the text made from a fresh
# stat is cheaper than parsing every line into numbers, and a damaged line merely
# fails to match (its file is hashed again and the line rewritten).
Entries = dict[str, str]


def checksum(data: bytes) -> str:
    """sha256 of a file's bytes with line endings normalised to ``\\n``."""
    if b"\r" in data:  # one fast scan; copies only for files with CR line endings
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return hashlib.sha256(data).hexdigest()


def read_file(name: str, folder_fd: int | None = None) -> bytes:
    """The bytes of file ``name``, relative to the open folder ``folder_fd`` if given.

    ``os.open``/``os.read``/``os.close`` cost less than half of ``open().read()``
    for small files; a 64 KiB buffer keeps each read's allocation cheap (a
    larger one costs more than it saves).
    """
    fd = os.open(name, os.O_RDONLY, dir_fd=folder_fd)
    try:
        chunks = []
        while chunk := os.read(fd, _CHUNK):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def folder_checksums(
    folder: str | os.PathLike[str], files: Sequence[os.DirEntry[str]]
) -> list[str]:
    """The :func:`checksum` of each of ``files`` (entries of ``folder``), in their order.

    Trusts the cache for files whose metadata match their entry, reads the
    others, and rewrites the cache when its content would change.

    Raises:
        OSError: a file could not be looked at or read (the cache never raises).
    """
    path = os.fspath(folder)
    # the clock is read before any file is looked at, so an edit after it shows
    # in the file's stat; only files older than RACY_NS by then are remembered
    settled = _now_ns() - RACY_NS
    cached, valid = _load(path)
    result: list[str] = []
    keep: Entries = {}
    stat = os.stat
    folder_fd = os.open(path, os.O_RDONLY) if _DIR_FD else None
    try:
        for entry in files:  # the loop every start pays per file: kept to the bone
            name = entry.name
            # by name in the open folder: cheaper than DirEntry.stat()'s full path
            st = entry.stat() if folder_fd is None else stat(name, dir_fd=folder_fd)
            key = f"{st.st_size}\t{st.st_mtime_ns}\t{st.st_ctime_ns}\t{st.st_ino}\t"
            line = cached.get(name)
            if line is None or line[:-64] != key:
                data = read_file(entry.path) if folder_fd is None else read_file(name, folder_fd)
                line = key + checksum(data)
            result.append(line[-64:])
            if st.st_mtime_ns <= settled and st.st_ctime_ns <= settled:
                keep[name] = line
    finally:
        if folder_fd is not None:
            os.close(folder_fd)
    if keep != cached or not valid:
        _store(path, keep)
    return result


def _load(folder: str) -> tuple[Entries, bool]:
    """The cache's entries, and whether the file was absent or in our format.

    A cache that cannot be read or is in another format is empty (and to be
    rewritten).
    """
    where = os.path.join(folder, CACHE_DIR, CACHE_NAME)
    try:
        text = read_file(where).decode("utf-8")
    except FileNotFoundError:
        return {}, True
    except (OSError, UnicodeDecodeError) as exc:
        log.debug("ignoring the checksum cache %s: %s", where, exc)
        return {}, False
    lines = text.split("\n")
    if lines[0] != HEADER or lines[-1] != "":
        log.debug("ignoring the checksum cache %s: not in format %r", where, HEADER)
        return {}, False
    entries: Entries = {}
    for line in lines[1:-1]:
        name, _, rest = line.partition("\t")
        entries[name] = rest
    return entries, True


def _store(folder: str, entries: Entries) -> None:
    """Replace the cache with ``entries`` atomically; on failure, log and carry on."""
    if sys.dont_write_bytecode:
        return
    target = os.path.join(folder, CACHE_DIR, CACHE_NAME)
    lines = [HEADER]
    for name, rest in sorted(entries.items()):
        if name.isprintable():  # no tab or line break: one line, its name first
            lines.append(f"{name}\t{rest}")
    data = ("\n".join(lines) + "\n").encode("utf-8")
    try:
        replace_file(target, data)
    except OSError as exc:
        log.debug("not writing the checksum cache %s: %s", target, exc)


def replace_file(target: str, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (a new file renamed over it), folder included.

    Raises:
        OSError: the folder or the file could not be written (nothing is left behind).
    """
    directory, name = os.path.split(target)
    temporary = os.path.join(directory, f"{name}.{uuid.uuid4().hex[:12]}.tmp")
    os.makedirs(directory, exist_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise

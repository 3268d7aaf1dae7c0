"""File checksums: what a migration file's history row records and every start compares.

A checksum is the sha256 of the file's bytes with line endings normalised to
``\\n``, so a checkout that converts them is no edit. Every start reads and
hashes every file: nothing is remembered between runs, and nothing is written.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

__all__ = ["checksum", "folder_checksums", "read_file"]

CHUNK = 65536  # os.read's buffer: one call for a typical file

DIR_FD = os.open in os.supports_dir_fd


def checksum(data: bytes) -> str:
    """sha256 of a file's bytes with line endings normalised to ``\\n``."""
    if b"\r" in data:  # one fast scan; copies only for files with CR line endings
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return hashlib.sha256(data).hexdigest()


def read_file(path: str, folder_fd: int | None = None) -> bytes:
    """The bytes of file ``path``, relative to the open folder ``folder_fd`` if given.

    ``os.open``/``os.read`` cost less than half of ``open().read()`` for small
    files, and start-up reads every migration file.
    """
    fd = os.open(path, os.O_RDONLY, dir_fd=folder_fd)
    try:
        chunks = []
        while chunk := os.read(fd, CHUNK):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def folder_checksums(folder: str, names: Sequence[str]) -> list[str]:
    """The :func:`checksum` of each file of ``folder`` named in ``names``, in their order.

    The folder is opened once and each file looked up in it by name, which
    costs less than resolving each file's whole path.

    Raises:
        OSError: a file could not be read.
    """
    if not DIR_FD:
        return [checksum(read_file(os.path.join(folder, name))) for name in names]
    folder_fd = os.open(folder, os.O_RDONLY)
    try:
        return [checksum(read_file(name, folder_fd)) for name in names]
    finally:
        os.close(folder_fd)

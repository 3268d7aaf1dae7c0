"""Compiled migration code, cached as Python's own hash-checked ``.pyc`` files (PEP 552).

Running a step compiles its file; compiling costs more than the rest of the
step's Python work. The code is kept where Python keeps it for an imported
module (``__pycache__/NNN_name.cpython-311.pyc``), in the format Python writes
for ``--invalidation-mode checked-hash``: the file holds the hash of the source
bytes it was compiled from, and is used only when the bytes read now have the
same hash. Unlike the default (the source's mtime and size), this cannot run
stale code after an edit made within the same second. Python's own import
validates such a file the same way, so the two share it.

A cache file that is missing, damaged, of another Python, compiled from other
bytes or at another path (a moved folder) is ignored and replaced. Nothing is
written under ``sys.dont_write_bytecode``, and a folder that cannot be written
only costs the compile (logged at DEBUG).
"""

from __future__ import annotations

import importlib.util
import logging
import marshal
import sys
import types

from ._checksums import read_file, replace_file

__all__ = ["compiled"]

log = logging.getLogger("sqlmig")

_CHECKED_HASH = (0b11).to_bytes(4, "little")  # PEP 552 flags: hash-based, check the source
_HEADER = 16  # magic number, flags, source hash


def compiled(source: bytes, path: str) -> types.CodeType:
    """The code of ``source``, the bytes of file ``path``, from its ``.pyc`` when it matches.

    Raises:
        SyntaxError, ValueError: as ``compile()`` does, for a file that does not compile.
    """
    try:
        cache = importlib.util.cache_from_source(path)
    except NotImplementedError:  # this Python keeps no bytecode caches
        return _compile(source, path)
    key = importlib.util.source_hash(source)
    code = _load(cache, key, path)
    if code is None:
        code = _compile(source, path)
        _store(cache, key, code)
    return code


def _compile(source: bytes, path: str) -> types.CodeType:
    return compile(source, path, "exec", dont_inherit=True)


def _load(cache: str, key: bytes, path: str) -> types.CodeType | None:
    try:
        data = read_file(cache)
    except OSError:
        return None
    header = importlib.util.MAGIC_NUMBER + _CHECKED_HASH + key
    if data[:_HEADER] != header:
        return None
    try:
        code = marshal.loads(memoryview(data)[_HEADER:])
    except (EOFError, ValueError, TypeError):
        log.debug("ignoring the damaged bytecode cache %s", cache)
        return None
    if not isinstance(code, types.CodeType) or code.co_filename != path:
        return None
    return code


def _store(cache: str, key: bytes, code: types.CodeType) -> None:
    if sys.dont_write_bytecode:
        return
    data = importlib.util.MAGIC_NUMBER + _CHECKED_HASH + key + marshal.dumps(code)
    try:
        replace_file(cache, data)
    except OSError as exc:
        log.debug("not writing the bytecode cache %s: %s", cache, exc)

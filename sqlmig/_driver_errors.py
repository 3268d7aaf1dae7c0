"""Driver errors raised by sqlmig's own statements, turned into sqlmig errors.

A step's own errors become :class:`~sqlmig._errors.MigrationFailed` where it
runs. Every other statement is sqlmig's: reading, creating or adopting the
history table, writing its rows, taking the lock, setting up the connection.
A driver error from one of those is translated once, where a runner call
ends (:func:`translated`), into the error that says what sqlmig was doing and
what to do about it, with the driver's error chained:

- a privilege the user lacks, or a read-only connection: :class:`PermissionDenied`;
- a schema that does not exist, or a table of that name that is not a
  history table: :class:`ConfigError` (fix ``schema=`` / ``table=``);
- a wait for a lock the database gave up on: :class:`LockTimeout`;
- a connection lost meanwhile: :class:`DatabaseUnavailable`;
- anything else: :class:`DatabaseError`.

What sqlmig was doing is read from the failed statement itself, so the
translation needs no bookkeeping along the way. Error codes are the
databases' own: PostgreSQL SQLSTATEs, MySQL/MariaDB error numbers, SQLite
result codes; what only one database needs (SQLite's busy codes, its
messages for errors it gives no code of their own) its profile says.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError

from ._dialects import profile_named
from ._errors import (
    ConfigError,
    DatabaseError,
    DatabaseUnavailable,
    LockTimeout,
    PermissionDenied,
    SqlmigError,
)

__all__ = ["missing_schema", "not_a_history_table", "translate", "translated"]

#: the user lacks a privilege
_PRIVILEGE = {"42501", 1044, 1142, 1143, 1227, "SQLITE_PERM", "SQLITE_AUTH"}
#: the connection, transaction, server or file is read-only
_READ_ONLY = {"25006", 1036, 1290, 1792}
#: the schema (MySQL: database) does not exist
_NO_SCHEMA = {"3F000", 1049}
#: the table lacks a column sqlmig uses
_NO_COLUMN = {"42703", 1054}
#: the database gave up waiting for a lock (SQLite: its profile's busy codes)
_LOCKED = {"55P03", 1205}

_LOCK_FUNCTIONS = ("ADVISORY_LOCK", "ADVISORY_XACT_LOCK", "GET_LOCK", "IS_USED_LOCK", "PG_LOCKS")
_UNLOCK_FUNCTIONS = ("ADVISORY_UNLOCK", "RELEASE_LOCK")


@contextmanager
def translated(
    *,
    url: str,
    table: str,
    schema: str | None,
    backend: str,
    lock_timeout: float,
    passes: Sequence[BaseException] = (),
) -> Iterator[None]:
    """Inside, a driver error escaping the block becomes the matching :class:`SqlmigError`.

    ``url`` is the masked URL, ``table`` and ``schema`` the history table's,
    ``backend`` the dialect's name (``postgresql``, ``mysql``, ``sqlite``).
    The errors in ``passes`` (the caller's own statements', raised inside the
    block) escape as they are.
    """
    try:
        yield
    except DBAPIError as exc:
        if any(exc is own for own in passes):
            raise
        raise translate(
            exc,
            url=url,
            table=table,
            schema=schema,
            backend=backend,
            lock_timeout=lock_timeout,
        ) from exc


def translate(
    exc: DBAPIError,
    *,
    url: str,
    table: str,
    schema: str | None,
    backend: str,
    lock_timeout: float,
) -> SqlmigError:
    """The sqlmig error for a driver error raised by one of sqlmig's own statements."""
    where = f"{schema}.{table}" if schema else table
    action, kind = describe(exc.statement, exc.params, where)
    reason = _reason(exc)
    code = _code(exc.orig)
    profile = profile_named(backend)
    if exc.connection_invalidated:
        return DatabaseUnavailable(
            f"lost the connection to {url} while {action}: {reason}; check that the server "
            "is up, then run again (sqlmig status shows what was applied)",
            url=url,
        )
    if code in _LOCKED or profile.busy(exc):
        return LockTimeout(
            f"the database gave up waiting for a lock while {action} ({reason}): another "
            "runner or session holds it; wait for it, or raise lock_timeout",
            timeout=lock_timeout,
        )
    if code in _NO_SCHEMA or (schema and f"unknown database {schema}" in reason):
        return missing_schema(schema or "", backend)
    if code in _NO_COLUMN or any(text in reason for text in profile.missing_column_texts):
        return not_a_history_table(where, reason)
    if code in _READ_ONLY or str(code).startswith("SQLITE_READONLY"):
        return PermissionDenied(
            f"cannot write while {action}, the connection is read-only ({reason}): point "
            "sqlmig at a writable database (not a replica or a read-only file), or use a "
            "user whose sessions may write",
            action=action,
            url=url,
        )
    if code in _PRIVILEGE:
        return PermissionDenied(
            f"permission denied while {action} ({reason}): {_grant(kind, where)}",
            action=action,
            url=url,
        )
    outcome = (
        "its work was rolled back (a deferred constraint or a conflict with another "
        "session fails only at commit)"
        if kind == "commit"
        else "the statement was not applied"
    )
    return DatabaseError(
        f"{action} failed: {type(exc.orig).__name__}: {reason}; {outcome}: fix the cause "
        "in the database, then run again",
        action=action,
        url=url,
    )


def describe(statement: str | None, params: Any, table: str) -> tuple[str, str]:
    """What sqlmig was doing when ``statement`` failed, and the kind of access it needed.

    The kind is ``"create"``, ``"write"``, ``"read"``, ``"commit"`` or ``"other"``.
    """
    if statement is None:  # raised outside a statement: by the commit ending a transaction
        return "committing a transaction", "commit"
    text = " ".join(statement.split()).upper()
    verb = text.split(" ", 1)[0] if text else ""
    # the lock's statements are SELECTs; a history row's names and values may hold the
    # same words (PostgreSQL writes them into the statement)
    if verb == "SELECT" and any(name in text for name in _UNLOCK_FUNCTIONS):
        return "freeing the migration lock", "other"
    if verb == "SELECT" and any(name in text for name in _LOCK_FUNCTIONS):
        return "taking the migration lock", "other"
    version = _version(params) or _written_version(text)
    row = f"the history row of {version}" if version else "a history row"
    if verb == "CREATE":
        return f"creating the history table {table}", "create"
    if verb == "ALTER":
        return f"adding sqlmig's columns to the history table {table}", "create"
    if verb == "INSERT":
        step = f"{version} " if version else "a step "
        return f"recording {step}in the history table {table}", "write"
    if verb == "UPDATE":
        return f"updating {row} in {table}", "write"
    if verb == "DELETE":
        return f"removing {row} from {table}", "write"
    if verb in ("SELECT", "SHOW", "DESCRIBE", "WITH") or "TABLE_INFO" in text:
        return f"reading the history table {table}", "read"
    if verb in ("BEGIN", "START", "SAVEPOINT"):
        return "beginning a transaction", "other"
    if verb in ("COMMIT", "RELEASE"):
        return "committing a transaction", "commit"
    if verb in ("SET", "PRAGMA"):
        return "setting up the connection", "other"
    return "talking to the database", "other"


def missing_schema(schema: str, backend: str) -> ConfigError:
    """The error for a ``schema`` setting that names nothing on the server."""
    hint = profile_named(backend).missing_schema_hint
    return ConfigError(hint.format(schema=schema), key="schema")


def not_a_history_table(table: str, detail: str) -> ConfigError:
    """The error for a table named like the history table that is something else."""
    return ConfigError(
        f"table {table} is not a sqlmig history table ({detail}): if it belongs to something "
        "else, give sqlmig a table of its own with table= (e.g. table='sqlmig_history')",
        key="table",
    )


def _grant(kind: str, table: str) -> str:
    if kind == "create":
        return (
            "run sqlmig as a user that may create tables there (such as the schema's "
            "owner), or grant this one CREATE on the schema (MySQL/MariaDB: the database)"
        )
    if kind == "write":
        return (
            f"grant the user SELECT, INSERT, UPDATE and DELETE on {table}, or run sqlmig as "
            "the user that owns it"
        )
    if kind == "read":
        return f"grant the user SELECT on {table}, or run sqlmig as the user that owns it"
    return (
        "use a user with the privileges sqlmig needs (SELECT, INSERT, UPDATE, DELETE on "
        f"{table}, and CREATE where it lives)"
    )


def _version(params: Any) -> str | None:
    """The version a history statement was about, from its parameters.

    Named parameters say it; positional ones (SQLite's) hold it as the only
    text made of digits (the others are a name, a time, a checksum, numbers).
    """
    if isinstance(params, list) and params:
        params = params[0]  # executemany: the first row
    if isinstance(params, Mapping):
        for key in ("version", "v", "version_1"):
            value = params.get(key)
            if isinstance(value, str):
                return value
        return None
    if isinstance(params, tuple):
        for value in params:
            if isinstance(value, str) and value.isascii() and value.isdigit():
                return value
    return None


def _written_version(text: str) -> str | None:
    """The version a history statement with its values written in was about (one of
    sqlmig's own on PostgreSQL): the first value of its ``INSERT``, or its ``DELETE``'s."""
    import re  # only on an error's path

    name = r'(?:"(?:[^"]|"")*"|[^ ."]+)'  # a quoted name may hold "VALUES (E'9'"
    found = re.search(
        rf"^INSERT INTO {name}(?:\.{name})? \([^)]*\) VALUES \(E?'(\d+)'|^DELETE .* = E?'(\d+)'$",
        text,
    )
    return (found[1] or found[2]) if found else None


def _code(orig: BaseException | None) -> str | int | None:
    """The database's own error code: a SQLSTATE, a MySQL number or a SQLite code name."""
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # MySQL's number is finer than its SQLSTATE
        return args[0]
    for attribute in ("sqlstate", "pgcode", "sqlite_errorname"):
        value = getattr(orig, attribute, None)
        if isinstance(value, str) and value:
            return value
    return None


def _reason(exc: DBAPIError) -> str:
    """The driver's message, on one line, without SQLAlchemy's statement dump."""
    orig = exc.orig
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int) and isinstance(args[1], str):
        text = args[1]  # PyMySQL: (number, message)
    else:
        text = str(orig) if orig is not None else str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__

"""Every error sqlmig raises, under one root.

::

    SqlmigError
    ├── MigrationSourceError      bad folder, file name, duplicate, no up(), import/syntax error
    │   └── SqlFileError          a .sql migration's markers or text (an unclosed string, ...)
    ├── ConfigError               no URL, unknown environment, unset ${VAR}, bad config,
    │                             a missing schema, a table that is not a history table
    ├── UsageError                unknown target, baseline on a used history, MySQL transaction
    ├── DatabaseUnavailable       cannot connect or authenticate, or the connection was lost
    ├── DatabaseError             a statement sqlmig sent itself (not a step's) failed
    │   └── PermissionDenied      the user or connection may not read or write the history
    ├── MigrationFailed           a step raised, or tried to commit / roll back / close
    ├── IrreversibleMigration     a step to undo has no down()
    ├── HistoryMismatch
    │   ├── ChecksumMismatch      an applied file was edited
    │   └── MissingMigration      an applied file is gone
    ├── OutOfOrderMigration       a late version refused (allow_out_of_order=False)
    ├── DirtyDatabase             a failed or unreadable row needs a manual check, then repair()
    ├── SchemaDrift               check: the database differs from the models, or has pending steps
    ├── LockTimeout               another runner held the lock longer than lock_timeout
    └── WorkerDied                the worker process running a target died (processes=True)

Each message is one line that says what to do. Data travels as attributes.
Every error pickles (a worker process sends it to the one that called it):
its class, message and attributes come back equal.
The command line's exit code for each is in ``sqlmig._cli.EXIT_CODES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ChecksumMismatch",
    "ConfigError",
    "DatabaseError",
    "DatabaseUnavailable",
    "DirtyDatabase",
    "HistoryMismatch",
    "IrreversibleMigration",
    "LockTimeout",
    "MigrationFailed",
    "MigrationSourceError",
    "MissingMigration",
    "OutOfOrderMigration",
    "PermissionDenied",
    "SchemaDrift",
    "SqlFileError",
    "SqlmigError",
    "UsageError",
    "WorkerDied",
]


class SqlmigError(Exception):
    """Root of every sqlmig error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its class, message and attributes (keyword-only ones too)."""
        return (_rebuilt, (type(self), self.message, dict(self.__dict__)))


def _rebuilt(cls: type[SqlmigError], message: str, state: dict[str, Any]) -> SqlmigError:
    """An unpickled error: its class, message and attributes, without calling its __init__."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class MigrationSourceError(SqlmigError):
    """The migrations source is unusable: folder, file name, duplicate, module content."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        version: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.version = version


class SqlFileError(MigrationSourceError):
    """A ``.sql`` migration file cannot be read as one: no ``-- migrate:up``, two of a
    section, an empty up section, an unknown marker or option, a line that looks
    like a marker, a ``COMMIT`` (or other transaction control), a string, quoted
    name, comment or dollar quote never closed, or text that is not UTF-8.

    ``path`` and ``line`` say where; the message says what to change.
    """

    def __init__(self, message: str, *, path: str, line: int | None, version: str | None) -> None:
        super().__init__(message, path=path, line=line, version=version)


class ConfigError(SqlmigError):
    """Configuration cannot be resolved: no URL, unknown environment, unset variable."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


class UsageError(SqlmigError):
    """A call that cannot be honoured as asked: unknown target, misuse of the API."""


class DatabaseUnavailable(SqlmigError):
    """The database cannot be reached or refuses the credentials."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class DatabaseError(SqlmigError):
    """A statement sqlmig sent itself failed: reading or creating the history table,
    recording a step, taking the lock. A step's own errors are :class:`MigrationFailed`.

    ``action`` says what sqlmig was doing; the driver's error is ``__cause__``.
    """

    def __init__(self, message: str, *, action: str, url: str) -> None:
        super().__init__(message)
        self.action = action
        self.url = url


class PermissionDenied(DatabaseError):
    """The database user (or a read-only connection) may not do what sqlmig needs."""


class MigrationFailed(SqlmigError):
    """A step raised, or tried to end its transaction; its work was rolled back."""

    def __init__(
        self,
        message: str,
        *,
        version: str,
        path: str | None,
        line: int | None,
        applied: Sequence[object] = (),
    ) -> None:
        super().__init__(message)
        self.version = version
        self.path = path
        self.line = line
        self.applied = list(applied)


class IrreversibleMigration(SqlmigError):
    """A step that must be undone has no ``down()``."""

    def __init__(self, message: str, *, versions: Sequence[str]) -> None:
        super().__init__(message)
        self.versions = list(versions)


class HistoryMismatch(SqlmigError):
    """The history table and the migration files disagree."""

    def __init__(self, message: str, *, versions: Sequence[str]) -> None:
        super().__init__(message)
        self.versions = list(versions)


class ChecksumMismatch(HistoryMismatch):
    """An applied migration's file was edited after it ran."""


class MissingMigration(HistoryMismatch):
    """An applied migration's file is gone."""


class OutOfOrderMigration(SqlmigError):
    """A pending version is lower than the newest applied one and that is refused."""

    def __init__(self, message: str, *, versions: Sequence[str]) -> None:
        super().__init__(message)
        self.versions = list(versions)


class DirtyDatabase(SqlmigError):
    """The history needs a person: a step that could not be rolled back failed or was
    interrupted, or a row's version is not a number (written by hand)."""

    def __init__(self, message: str, *, versions: Sequence[str]) -> None:
        super().__init__(message)
        self.versions = list(versions)


class SchemaDrift(SqlmigError):
    """``check``: the database has pending steps or differs from the models.

    ``differences`` holds one line per difference; the message lists them all,
    one per line, after a first line saying what to do.
    """

    def __init__(self, message: str, *, differences: Sequence[str]) -> None:
        super().__init__(message)
        self.differences = list(differences)


class LockTimeout(SqlmigError):
    """Another runner held the migration lock for longer than ``lock_timeout``."""

    def __init__(self, message: str, *, timeout: float, holder: str | None = None) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.holder = holder


class WorkerDied(SqlmigError):
    """The worker process running a target (``processes=True``) died: killed, or crashed.

    The database rolled back the step it was running, as for any ended session
    (on MySQL/MariaDB a step's DDL stays, its history row failed: see the
    failed-row protocol). ``version`` is that step (None between two steps);
    ``exitcode`` is the process's (a negative number: the signal that ended it).
    """

    def __init__(self, message: str, *, version: str | None, exitcode: int | None) -> None:
        super().__init__(message)
        self.version = version
        self.exitcode = exitcode

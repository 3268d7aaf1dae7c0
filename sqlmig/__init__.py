"""sqlmig: transactional, lock-safe migrations on SQLAlchemy Core.

>>> from sqlmig import MigrationRunner
>>> MigrationRunner("sqlite:///app.db", "migrations").upgrade()  # doctest: +SKIP
"""

from __future__ import annotations

from .aio import upgrade_async
from .errors import (
    ChecksumMismatch,
    ConfigError,
    DatabaseUnavailable,
    DirtyDatabase,
    HistoryMismatch,
    IrreversibleMigration,
    LockTimeout,
    MigrationFailed,
    MigrationSourceError,
    MissingMigration,
    OutOfOrderMigration,
    SqlmigError,
    UsageError,
)
from .history import history_table
from .migration import AppliedMigration, Migration, PlannedStep, Status
from .ops import ops
from .runner import MigrationRunner

__version__ = "0.1.0"

__all__ = [
    "AppliedMigration",
    "ChecksumMismatch",
    "ConfigError",
    "DatabaseUnavailable",
    "DirtyDatabase",
    "HistoryMismatch",
    "IrreversibleMigration",
    "LockTimeout",
    "Migration",
    "MigrationFailed",
    "MigrationRunner",
    "MigrationSourceError",
    "MissingMigration",
    "OutOfOrderMigration",
    "PlannedStep",
    "SqlmigError",
    "Status",
    "UsageError",
    "history_table",
    "ops",
    "upgrade_async",
]

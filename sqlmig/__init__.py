"""sqlmig: transactional, lock-safe migrations on SQLAlchemy Core.

>>> from sqlmig import MigrationRunner
>>> MigrationRunner("sqlite:///app.db", "migrations").upgrade()  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    ChecksumMismatch,
    ConfigError,
    DatabaseError,
    DatabaseUnavailable,
    DirtyDatabase,
    HistoryMismatch,
    IrreversibleMigration,
    LockTimeout,
    MigrationFailed,
    MigrationSourceError,
    MissingMigration,
    OutOfOrderMigration,
    PermissionDenied,
    SchemaDrift,
    SqlmigError,
    UsageError,
)
from ._history import history_table
from ._migration import AppliedMigration, Migration, PlannedStep, Status, StepCallback, StepPhase
from ._runner import MigrationRunner

if TYPE_CHECKING:
    from ._aio import upgrade_async
    from .ops import ops

__version__ = "0.1.0"

__all__ = [
    "AppliedMigration",
    "ChecksumMismatch",
    "ConfigError",
    "DatabaseError",
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
    "PermissionDenied",
    "PlannedStep",
    "SchemaDrift",
    "SqlmigError",
    "Status",
    "StepCallback",
    "StepPhase",
    "UsageError",
    "history_table",
    "ops",
    "upgrade_async",
]


def __getattr__(name: str) -> Any:
    """``ops`` and ``upgrade_async``, imported on first use: most runs need neither.

    ``sqlmig.ops`` is the module :mod:`sqlmig.ops`, which is callable as its
    function ``ops(conn)``: the package attribute is the module once anything
    imports it, so it is the module from the start.
    """
    if name == "ops":
        return importlib.import_module(".ops", __name__)
    if name == "upgrade_async":
        from ._aio import upgrade_async

        return upgrade_async
    raise AttributeError(f"module 'sqlmig' has no attribute {name!r}")

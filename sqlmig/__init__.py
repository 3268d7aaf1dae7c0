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
    SqlFileError,
    SqlmigError,
    UsageError,
    WorkerDied,
)
from ._history import history_table
from ._migration import AppliedMigration, Migration, PlannedStep, Status, StepCallback, StepPhase
from ._runner import MigrationRunner

if TYPE_CHECKING:
    from ._aio import upgrade_async
    from ._fleet import TargetResult, TargetsInterrupted, downgrade_all, status_all, upgrade_all
    from ._targets import Target
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
    "SqlFileError",
    "SqlmigError",
    "Status",
    "StepCallback",
    "StepPhase",
    "Target",
    "TargetResult",
    "TargetsInterrupted",
    "UsageError",
    "WorkerDied",
    "downgrade_all",
    "history_table",
    "ops",
    "status_all",
    "upgrade_all",
    "upgrade_async",
]

#: Names imported on first use, and their modules: most runs need none of them.
_LAZY = {
    "Target": "._targets",
    "TargetResult": "._fleet",
    "TargetsInterrupted": "._fleet",
    "downgrade_all": "._fleet",
    "status_all": "._fleet",
    "upgrade_all": "._fleet",
    "upgrade_async": "._aio",
}


def __getattr__(name: str) -> Any:
    """``ops``, ``upgrade_async`` and the calls over many targets, imported on first use.

    ``sqlmig.ops`` is the module :mod:`sqlmig.ops`, which is callable as its
    function ``ops(conn)``: the package attribute is the module once anything
    imports it, so it is the module from the start.
    """
    if name == "ops":
        return importlib.import_module(".ops", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'sqlmig' has no attribute {name!r}")

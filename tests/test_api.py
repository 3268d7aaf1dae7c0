"""The public surface: exported names, no side effects on import."""

from __future__ import annotations

import subprocess
import sys

import sqlmig

EXPECTED = [
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


def test_the_exported_names_are_the_intended_ones() -> None:
    assert sqlmig.__all__ == EXPECTED == sorted(EXPECTED)
    assert all(hasattr(sqlmig, name) for name in EXPECTED)


def test_importing_sqlmig_configures_no_logging_and_loads_no_optional_package() -> None:
    probe = (
        "import logging, sys; import sqlmig; "
        "log = logging.getLogger('sqlmig'); "
        "print(len(logging.getLogger().handlers), len(log.handlers), log.level, "
        "sorted(m for m in ('alembic', 'psycopg', 'pymysql', 'pytest') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "0 0 0 []"

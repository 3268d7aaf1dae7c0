"""The public signatures type-check as documented: one mypy run over a small snippet.

Each line marked ``# error`` must be a mypy error, and no other line may be one:
a runner built with no database or no migrations, a misspelt keyword of
``upgrade_async``; the supported forms (``db`` and ``migrations``, the seed
runners' ``db_path=`` and ``migrations_dir=``) and ``on_step`` callbacks pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SNIPPET = """\
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncEngine

from sqlmig import Migration, MigrationRunner, StepCallback, StepPhase, upgrade_async


def show(migration: Migration, phase: StepPhase, seconds: float) -> None:
    print(migration.label, phase, seconds)


async def calls(engine: AsyncEngine) -> None:
    MigrationRunner()  # error
    MigrationRunner("sqlite:///app.db")  # error
    MigrationRunner(db_path="bot.db")  # error
    MigrationRunner(migrations_dir="migrations")  # error
    MigrationRunner("sqlite:///app.db", "migrations", tabel="t")  # error
    await upgrade_async(engine, "migrations", tagret="002")  # error
    await upgrade_async(engine, "migrations", on_step=lambda migration: None)  # error

    MigrationRunner("sqlite:///app.db", "migrations")
    MigrationRunner(create_engine("sqlite://"), Path("migrations"), table="t", schema=None)
    MigrationRunner(db="sqlite:///app.db", migrations="pkg.migrations", lock_timeout=5)
    MigrationRunner(db_path="bot.db", migrations_dir="migrations")
    MigrationRunner(db_path=Path("bot.db"), migrations_dir=Path("migrations"), on_step=show)
    runner = MigrationRunner("sqlite:///app.db", "migrations", allow_out_of_order=False)
    runner.upgrade("002", on_step=lambda m, phase, s: None)
    runner.downgrade("base", on_step=show)
    callback: StepCallback = show
    runner.rollback_last(on_step=callback)
    await upgrade_async(engine, "migrations")
    await upgrade_async(
        engine,
        "migrations",
        "002",
        table="t",
        schema="s",
        lock_timeout=5,
        allow_out_of_order=False,
        on_step=show,
    )
"""


def test_mypy_refuses_a_runner_without_its_arguments_and_a_misspelt_keyword(
    tmp_path: Path,
) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(snippet)],
        cwd=ROOT,  # sqlmig from the source tree, with its mypy cache
        env={**os.environ, "MYPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    found = {int(m[1]) for m in re.finditer(r"^[^\n]*snippet\.py:(\d+): error:", run.stdout, re.M)}
    lines = SNIPPET.splitlines()
    wanted = {n for n, line in enumerate(lines, 1) if line.endswith("# error")}
    unexpected = {n: lines[n - 1].strip() for n in found - wanted}
    missed = {n: lines[n - 1].strip() for n in wanted - found}
    assert not unexpected and not missed, textwrap.indent(run.stdout + run.stderr, "  ")

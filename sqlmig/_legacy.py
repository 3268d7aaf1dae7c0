"""The calls of the original bot runner, over the public API.

Kept so that its users switch by changing an import: ``run_pending_migrations``,
``get_status`` and ``rollback_last(verbose=True)``. The ``MigrationRunner``
methods of those names call these functions; ``verbose=True`` prints the
documented line per step from an ``on_step`` callback (the one place sqlmig
prints).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._migration import Migration, StepCallback, StepPhase
    from ._runner import MigrationRunner

__all__ = ["get_status", "rollback_last_verbosely", "run_pending_migrations"]


def _say(line: str) -> None:
    """Print one ``verbose`` line; a reader gone (closed or broken standard output) is no
    failure: the steps still run, and the line is dropped."""
    if sys.stdout is None:  # started with standard output closed
        return
    try:
        print(line, flush=True)
    except (OSError, ValueError):  # a pipe closed, a terminal gone, a stream closed
        pass


def _printing(verb: str, also: StepCallback | None = None) -> StepCallback:
    """An ``on_step`` callback printing ``Applied migration 001_x (2 ms)`` as each step is done.

    ``also`` is called first with every event (the caller's own callback).
    """

    def on_step(migration: Migration, phase: StepPhase, seconds: float) -> None:
        if also is not None:
            also(migration, phase, seconds)
        if phase == "done":
            _say(f"{verb} migration {migration.label} ({round(seconds * 1000)} ms)")

    return on_step


def run_pending_migrations(runner: MigrationRunner, verbose: bool) -> list[Migration]:
    """``upgrade()``, printing one line per step when ``verbose``."""
    applied = runner.upgrade(on_step=_printing("Applied") if verbose else None)
    if verbose and not applied:
        _say("No pending migrations")
    return applied


def rollback_last_verbosely(
    runner: MigrationRunner, on_step: StepCallback | None = None
) -> Migration | None:
    """``rollback_last()``, printing the step undone, or that there was none."""
    undone = runner.rollback_last(on_step=_printing("Undid", on_step))
    if undone is None:
        _say("No migration to roll back")
    return undone


def get_status(runner: MigrationRunner) -> dict[str, Any]:
    """``status()`` as the bot runner's dict: totals, applied and pending."""
    st = runner.status()
    return {
        "total_applied": st.total_applied,
        "total_pending": st.total_pending,
        "applied": [
            {"version": r.version, "name": r.name, "applied_at": r.applied_at} for r in st.applied
        ],
        "pending": [{"version": m.version, "name": m.name} for m in st.pending],
    }

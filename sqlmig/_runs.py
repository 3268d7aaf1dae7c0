"""A run of planned steps, applied or undone in order on one executor.

Between steps the executor may have made the plan again (another runner wrote
meanwhile, see ``StepExecutor.take_replanned``): the run then follows the new
plan from where it stands.
"""

from __future__ import annotations

from ._errors import MigrationFailed
from ._execution import PlanItem, StepExecutor
from ._migration import Migration

__all__ = ["apply_steps", "undo_steps"]


def apply_steps(executor: StepExecutor, steps: list[Migration]) -> list[Migration]:
    """Apply ``steps`` in order; returns those applied by this run.

    Raises:
        MigrationFailed: a step failed; its ``applied`` lists the steps applied before it.
    """
    for migration in steps:
        migration.load()
    applied: list[Migration] = []
    queue = list(steps)
    while queue:
        migration = queue.pop(0)
        migration.load()
        try:
            done = executor.apply(migration)
        except MigrationFailed as exc:
            exc.applied = list(applied)
            raise
        if done:
            applied.append(migration)
        again = executor.take_replanned()
        if again is not None:
            queue = [m for _, m in again[1 if done else 0 :]]
    return applied


def undo_steps(executor: StepExecutor, plan: list[PlanItem]) -> list[Migration]:
    """Undo the planned rows in order, newest first; returns the steps undone by this run."""
    queue = list(plan)
    undone: list[Migration] = []
    while queue:
        row, migration = queue.pop(0)
        assert row is not None
        done = executor.undo(row, migration)
        if done:
            undone.append(migration)
        again = executor.take_replanned()
        if again is not None:
            queue = again[1 if done else 0 :]
    return undone

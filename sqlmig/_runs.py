"""The runs of ``upgrade`` and ``downgrade``: planned, then applied or undone in order.

The plan is made from the history read at the start, made again under the
lock, and, between steps, made again by the executor when another runner
wrote meanwhile (see ``StepExecutor.take_replanned``): the run then follows
the new plan from where it stands.
"""

from __future__ import annotations

from collections import deque

from ._alembic_adoption import adoptable, as_adopted
from ._edits import prepared
from ._errors import MigrationFailed
from ._execution import PlanItem, StepExecutor
from ._held_lock import locked
from ._history import History
from ._migration import Migration, StepCallback, check_reversible
from ._planning import compare, plan_downgrade, plan_upgrade, resolve_target
from ._session import Session

__all__ = ["apply_steps", "run_downgrade", "run_upgrade", "undo_steps"]


def run_upgrade(
    s: Session,
    migrations: list[Migration],
    target: str | int | None,
    allow_out_of_order: bool,
    on_step: StepCallback | None,
) -> list[Migration]:
    """``MigrationRunner.upgrade`` once the migrations are known: nothing to do costs no lock."""
    history = as_adopted(s, migrations, s.read())
    first = compare(migrations, history.rows)
    if first.failed:  # maybe another runner's step in progress: decide under the lock
        limit = resolve_target(target, first)
        steps = [m for m in first.pending if limit is None or m.number <= limit]
    else:
        steps = plan_upgrade(first, target, allow_out_of_order=allow_out_of_order)
        adopting = bool(history.rows) and not history.exists  # Alembic's, taken over
        if not (steps or history.needs_adopting or first.unfilled or adopting):
            return []
    for migration in steps:
        migration.load(s.conn.dialect.name)  # every source error surfaces before the first write
    with locked(s):
        executor = s.executor(on_step)
        with prepared(s, executor, migrations) as history:
            comparison = compare(migrations, history.rows)
        steps = plan_upgrade(comparison, target, allow_out_of_order=allow_out_of_order)

        def replan(history: History) -> list[PlanItem]:
            now = compare(migrations, history.rows)
            planned = plan_upgrade(now, target, allow_out_of_order=allow_out_of_order)
            return [(None, m) for m in planned]

        executor.replan = replan
        with executor.watching():
            return apply_steps(executor, steps)


def run_downgrade(
    s: Session,
    migrations: list[Migration],
    target: str | int | None,
    on_step: StepCallback | None,
) -> list[Migration]:
    """``MigrationRunner.downgrade`` (``target`` None: the last step), under the lock."""
    executor = s.executor(on_step)
    read = s.read()
    seen = as_adopted(s, migrations, read)  # refuses a history Alembic went past since
    if adoptable(read) and seen.rows:
        with prepared(s, executor, migrations):  # Alembic's history, taken over first
            pass
    comparison = compare(migrations, s.read_for_steps(executor).rows)
    queue: list[PlanItem] = list(plan_downgrade(comparison, target))
    for _, migration in queue:
        migration.load(s.conn.dialect.name)  # every source error surfaces before the first write
    check_reversible(m for _, m in queue)

    def replan(history: History) -> list[PlanItem]:
        planned = plan_downgrade(compare(migrations, history.rows), target)
        check_reversible(m for _, m in planned)
        return list(planned)

    executor.replan = replan
    with executor.watching():
        return undo_steps(executor, queue)


def apply_steps(executor: StepExecutor, steps: list[Migration]) -> list[Migration]:
    """Apply ``steps`` in order; returns those applied by this run, each once.

    A step that another runner undid after this run applied it, and that this
    run applied again, is listed once, where it was applied last.

    Raises:
        MigrationFailed: a step failed; its ``applied`` lists the steps applied before it.
    """
    dialect = executor.conn.dialect.name
    for migration in steps:
        migration.load(dialect)
    applied: dict[int, Migration] = {}  # by number, in the order last applied
    queue = deque(steps)
    while queue:
        migration = queue.popleft()
        migration.load(dialect)
        try:
            done = executor.apply(migration)
        except MigrationFailed as exc:
            exc.applied = list(applied.values())
            raise
        if done:
            applied.pop(migration.number, None)
            applied[migration.number] = migration
        again = executor.take_replanned()
        if again is not None:
            queue = deque(m for _, m in again[1 if done else 0 :])
    return list(applied.values())


def undo_steps(executor: StepExecutor, plan: list[PlanItem]) -> list[Migration]:
    """Undo the planned rows in order, newest first; returns the steps undone by this run.

    Each is listed once, as in :func:`apply_steps`.
    """
    queue = deque(plan)
    undone: dict[int, Migration] = {}  # by number, in the order last undone
    while queue:
        row, migration = queue.popleft()
        assert row is not None
        done = executor.undo(row, migration)
        if done:
            undone.pop(migration.number, None)
            undone[migration.number] = migration
        again = executor.take_replanned()
        if again is not None:
            queue = deque(again[1 if done else 0 :])
    return list(undone.values())

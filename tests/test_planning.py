"""Planning is pure: files and history rows in, ordered steps or an error out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conftest import MakeMigrations
from sqlmig import (
    ChecksumMismatch,
    DirtyDatabase,
    IrreversibleMigration,
    Migration,
    MissingMigration,
    OutOfOrderMigration,
    UsageError,
)
from sqlmig._discovery import discover
from sqlmig._migration import AppliedMigration, check_reversible
from sqlmig._planning import compare, plan_downgrade, plan_upgrade

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def noop(conn: object) -> None:
    pass


def step(version: str, checksum: str | None = "c", down: bool = True) -> Migration:
    return Migration(
        version, f"s{version}", up=noop, down=noop if down else None, checksum=checksum
    )


def row(
    version: str, minute: int, checksum: str | None = "c", success: bool = True
) -> AppliedMigration:
    return AppliedMigration(
        version, f"s{version}", T0 + timedelta(minutes=minute), checksum, 1, success
    )


def test_pending_steps_come_lowest_first_up_to_the_target() -> None:
    comparison = compare([step("1"), step("2"), step("3")], [row("001", 0)])
    assert [m.version for m in plan_upgrade(comparison, None, allow_out_of_order=True)] == [
        "2",
        "3",
    ]
    assert [m.version for m in plan_upgrade(comparison, "02", allow_out_of_order=True)] == ["2"]
    assert comparison.current == "001"


def test_a_late_version_is_out_of_order() -> None:
    comparison = compare([step("1"), step("2"), step("3")], [row("1", 0), row("3", 1)])
    assert [m.version for m in plan_upgrade(comparison, None, allow_out_of_order=True)] == ["2"]
    with pytest.raises(OutOfOrderMigration):
        plan_upgrade(comparison, None, allow_out_of_order=False)


def test_history_problems_stop_the_plan_most_urgent_first() -> None:
    files = [step("1", checksum="new"), step("2")]
    with pytest.raises(DirtyDatabase):
        plan_upgrade(
            compare(files, [row("1", 0, "old"), row("2", 1, success=False)]),
            None,
            allow_out_of_order=True,
        )
    with pytest.raises(ChecksumMismatch):
        plan_upgrade(
            compare(files, [row("1", 0, "old"), row("9", 1)]), None, allow_out_of_order=True
        )
    with pytest.raises(MissingMigration, match="009"):
        plan_upgrade(compare(files, [row("009", 1)]), None, allow_out_of_order=True)


def test_an_empty_checksum_is_filled_in_not_a_mismatch() -> None:
    comparison = compare([step("1", checksum="abc")], [row("1", 0, checksum=None)])
    assert comparison.changed == [] and [r.version for r, _ in comparison.unfilled] == ["1"]


def test_downgrade_undoes_in_reverse_order_of_application() -> None:
    files = [step("1"), step("2"), step("3")]
    history = [row("1", 0), row("3", 1), row("2", 2)]  # 2 arrived late
    plan = plan_downgrade(compare(files, history), "base")
    assert [m.version for _, m in plan] == ["2", "3", "1"]
    assert [m.version for _, m in plan_downgrade(compare(files, history), None)] == ["2"]


def test_ties_in_applied_at_undo_the_higher_version_first() -> None:
    files = [step("1"), step("2")]
    plan = plan_downgrade(compare(files, [row("1", 0), row("2", 0)]), "base")
    assert [m.version for _, m in plan] == ["2", "1"]


def test_a_downgrade_plan_is_checked_for_down_functions_apart() -> None:
    files = [step("1"), step("2", down=False), step("3")]
    comparison = compare(files, [row("1", 0), row("2", 1), row("3", 2)])
    plan = plan_downgrade(comparison, "base")
    with pytest.raises(IrreversibleMigration, match="migration 2 has no down"):
        check_reversible(m for _, m in plan)
    check_reversible(m for _, m in plan_downgrade(comparison, "2"))


def test_planning_runs_no_migration_module(make_migrations: MakeMigrations) -> None:
    loud = '"""Loud."""\nraise SystemExit("imported!")\n'
    files = discover(make_migrations({"001_a.py": loud, "002_b.py": loud}))
    comparison = compare(files, [row("001", 0), row("002", 1)])

    plan_downgrade(comparison, "base")
    plan_upgrade(compare(files, []), None, allow_out_of_order=False)

    assert not any(m.loaded for m in files)


def test_targets_must_name_a_known_version() -> None:
    with pytest.raises(UsageError):
        plan_upgrade(compare([step("1")], []), "7", allow_out_of_order=True)
    comparison = compare([step("1")], [row("1", 0), row("5", 1)])
    with pytest.raises(MissingMigration):  # 5 is applied but its file is gone
        plan_downgrade(comparison, "1")
    assert plan_downgrade(comparison, "5") == []  # an applied row's version is a target

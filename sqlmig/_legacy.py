"""The calls of the original bot runner, kept so its users switch by changing an import."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._migration import Migration, Status

__all__ = ["BotRunnerCalls", "Report", "printer"]

#: Called after each step with ("applied" | "undid", migration, milliseconds).
Report = Callable[[str, "Migration", int], None]


def printer(verb: str, migration: Migration, ms: int) -> None:
    """The documented ``verbose=True`` output: one line per step."""
    print(f"{verb.capitalize()} migration {migration.label} ({ms} ms)")


class BotRunnerCalls:
    """``run_pending_migrations`` and ``get_status``, as the bot runner had them."""

    def _upgrade(self, target: str | int | None, report: Report | None) -> list[Migration]:
        raise NotImplementedError

    def status(self) -> Status:
        raise NotImplementedError

    def run_pending_migrations(self, verbose: bool = False) -> list[Migration]:
        """``upgrade()``, printing one line per step when ``verbose``."""
        applied = self._upgrade(None, printer if verbose else None)
        if verbose and not applied:
            print("No pending migrations")
        return applied

    def get_status(self) -> dict[str, Any]:
        """``status()`` as the bot runner's dict: totals, applied and pending."""
        st = self.status()
        return {
            "total_applied": st.total_applied,
            "total_pending": st.total_pending,
            "applied": [
                {"version": r.version, "name": r.name, "applied_at": r.applied_at}
                for r in st.applied
            ],
            "pending": [{"version": m.version, "name": m.name} for m in st.pending],
        }

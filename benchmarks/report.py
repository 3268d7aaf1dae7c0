"""The benchmark's printed table: medians, ratios to the floor, and the goals."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["render"]

NAMES = {
    "floor": "floor (SQLAlchemy)",
    "sqlmig": "sqlmig",
    "candidate": "sqlmig (candidate)",
    "alembic": "Alembic",
    "yoyo": "yoyo",
}


def _median(values: Iterable[float]) -> float | None:
    data = list(values)
    return statistics.median(data) if data else None


class Figures:
    """Medians of the measured records, looked up by (n, backend, tool, action)."""

    def __init__(self, records: list[Any]) -> None:
        self.records = records

    def median(
        self, n: int, backend: str, tool: str, action: str, field: Callable[[Any], float | None]
    ) -> float | None:
        values = []
        for r in self.records:
            if (r.n, r.backend, r.tool, r.action) == (n, backend, tool, action):
                value = field(r)
                if value is not None:
                    values.append(value)
        return _median(values)

    def values(
        self, n: int, backend: str, tool: str, action: str, field: Callable[[Any], float | None]
    ) -> list[float | None]:
        return [
            field(r)
            for r in self.records
            if (r.n, r.backend, r.tool, r.action) == (n, backend, tool, action)
        ]

    def ratio(
        self,
        n: int,
        backend: str,
        tool: str,
        action: str,
        field: Callable[[Any], float | None],
        floor_action: str | None = None,
    ) -> float | None:
        """The median of tool / floor over runs, each paired with the floor's in the same round.

        The tools take turns within a round, so a pair ran minutes apart at most:
        on a machine whose speed drifts, this follows the drift better than a
        ratio of medians.
        """
        mine = self.values(n, backend, tool, action, field)
        floor = self.values(n, backend, "floor", floor_action or action, field)
        # runs are recorded round by round; a figure measured k times per round
        # for the floor but once for the tool (sqlmig's cold check) pairs with
        # the median of the floor's k runs of that round
        k = max(1, len(floor) // len(mine)) if mine else 1
        pairs = []
        for i, a in enumerate(mine):
            group = [b for b in floor[i * k : (i + 1) * k] if b]
            b = _median(group)
            if a is not None and b:
                pairs.append(a / b)
        return _median(pairs)


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.2f} s"


def _ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def _mib(value: float) -> str:
    return f"{value / 1024:.1f} MiB"


def _ratio_cell(value: float | None, ratio: float | None, fmt: Callable[[float], str]) -> str:
    if value is None:
        return "-"
    if ratio is None:
        return fmt(value)
    return f"{fmt(value)} ({ratio:.2f}x)"


def _commit_cell(value: float | None, n: int) -> str:
    if value is None:
        return "-"
    return f"{value / n:.2f}/step ({value:.0f})"


ROWS: list[tuple[str, str, Callable[[Any], float | None], str, bool]] = [
    # label, action, field, kind (s, ms, mib, commits), postgres-only
    ("upgrade, whole process", "upgrade", lambda r: r.wall_s, "s", False),
    ("upgrade, commits seen by server", "upgrade", lambda r: r.commits, "commits", True),
    ("start-up check, whole process", "check", lambda r: r.wall_s, "s", False),
    ("start-up check, after import", "check", lambda r: r.work_s, "ms", False),
    ("start-up check, commits", "check", lambda r: r.commits, "commits", True),
    ("downgrade to base, whole process", "downgrade", lambda r: r.wall_s, "s", False),
    ("downgrade, commits seen by server", "downgrade", lambda r: r.commits, "commits", True),
    ("upgrade, peak RSS", "upgrade", lambda r: r.maxrss_kib, "mib", False),
]
PADDED_ROWS: list[tuple[str, str, Callable[[Any], float | None], str, bool]] = [
    ("start-up check, whole process, padded files", "check-padded", lambda r: r.wall_s, "s", False),
    ("start-up check, after import, padded files", "check-padded", lambda r: r.work_s, "ms", False),
]
FORMATS = {"s": _seconds, "ms": _ms, "mib": _mib}


def _size_table(
    figures: Figures, n: int, tools: list[str], backends: list[str], rows: list[Any]
) -> list[str]:
    header = "| measure | backend | " + " | ".join(NAMES[t] for t in tools) + " |"
    lines = [header, "|" + "---|" * (len(tools) + 2)]
    for label, action, field, kind, pg_only in rows:
        for backend in backends:
            if pg_only and backend != "postgresql":
                continue
            floor_action = action
            if action.endswith("-cold"):  # the floor has no cache to lose
                floor_action = action.removesuffix("-cold")
            floor = figures.median(n, backend, "floor", floor_action, field)
            cells = []
            for tool in tools:
                value = figures.median(n, backend, tool, action, field)
                if kind == "commits":
                    cells.append(_commit_cell(value, n))
                elif tool == "floor":
                    cells.append(FORMATS[kind](floor) if floor is not None else "-")
                else:
                    ratio = figures.ratio(n, backend, tool, action, field, floor_action)
                    cells.append(_ratio_cell(value, ratio, FORMATS[kind]))
            if any(c != "-" for c in cells):
                lines.append(f"| {label} | {backend} | " + " | ".join(cells) + " |")
    return lines


def _import_table(figures: Figures, tools: list[str]) -> list[str]:
    lines = [
        "| import, after `import sqlalchemy` | in-process, added | whole process |",
        "|---|---|---|",
    ]
    floor_wall = figures.median(0, "-", "floor", "import", lambda r: r.wall_s)
    sa = figures.median(0, "-", "floor", "import", lambda r: r.work_s)
    if sa is not None and floor_wall is not None:
        lines.append(
            f"| sqlalchemy alone (floor) | {_ms(sa)} (sqlalchemy itself) | {_seconds(floor_wall)} |"
        )
    for tool in tools:
        if tool == "floor":
            continue
        added = figures.median(0, "-", tool, "import", lambda r: r.import_s)
        wall = figures.median(0, "-", tool, "import", lambda r: r.wall_s)
        if added is None or wall is None:
            continue
        ratio = figures.ratio(0, "-", tool, "import", lambda r: r.wall_s)
        lines.append(f"| {NAMES[tool]} | +{_ms(added)} | {_ratio_cell(wall, ratio, _seconds)} |")
    return lines


def _memory_table(figures: Figures, sizes: list[int], tools: list[str], backends: list[str]):
    small, big = min(sizes), max(sizes)
    lines = [
        f"| peak RSS of upgrade, N={big} / N={small} | backend | "
        + " | ".join(NAMES[t] for t in tools)
        + " |",
        "|" + "---|" * (len(tools) + 2),
    ]
    for backend in backends:
        cells = []
        for tool in tools:
            a = figures.median(small, backend, tool, "upgrade", lambda r: r.maxrss_kib)
            b = figures.median(big, backend, tool, "upgrade", lambda r: r.maxrss_kib)
            cells.append(f"{b / a:.2f}x" if a and b else "-")
        lines.append(f"| memory growth | {backend} | " + " | ".join(cells) + " |")
    return lines


def _goals(figures: Figures, sizes: list[int], backends: list[str], tool: str) -> list[str]:
    n = 1000 if 1000 in sizes else max(sizes)
    lines = [f"Goals for {NAMES[tool]} (N={n}; ratios to the floor measured in this run):"]

    def ratio(backend: str, action: str, field: Callable[[Any], float | None]) -> float | None:
        return figures.ratio(n, backend, tool, action, field)

    def line(ok: bool | None, text: str) -> None:
        mark = "n/a " if ok is None else ("PASS" if ok else "MISS")
        lines.append(f"  {mark} {text}")

    for backend in backends:
        for action in ("upgrade", "downgrade"):
            r = ratio(backend, action, lambda rec: rec.wall_s)
            line(
                None if r is None else r <= 1.15,
                f"{action} on {backend}: {r or 0:.2f}x the floor (goal <= 1.15x)",
            )
        check = figures.median(n, backend, tool, "check", lambda rec: rec.work_s)
        limit = 0.020 if backend == "sqlite" else 0.030
        line(
            None if check is None else check < limit,
            f"start-up check on {backend} after import: {(check or 0) * 1000:.1f} ms "
            f"(goal < {limit * 1000:.0f} ms)",
        )
        r = ratio(backend, "check", lambda rec: rec.wall_s)
        line(
            None if r is None else r <= 1.1,
            f"start-up check on {backend}, whole process: {r or 0:.2f}x the floor (goal <= 1.1x)",
        )
        # padded and plain files are checked minutes apart: each is taken against the
        # floor's checks of its own phase (the floor reads no file), so the VM's drift
        # between the two phases cancels out
        padded = ratio(backend, "check-padded", lambda rec: rec.work_s)
        plain = ratio(backend, "check", lambda rec: rec.work_s)
        if padded is not None and plain:  # told, not judged: each start reads every file
            line(
                None,
                f"start-up check on {backend} with padded files: {padded / plain:.2f}x the "
                "plain files', each against the floor (no goal: every start reads each "
                "file's bytes for its checksum)",
            )
    if "postgresql" in backends:
        for action in ("upgrade", "downgrade"):
            values = {
                size: figures.median(size, "postgresql", tool, action, lambda r: r.commits)
                for size in sizes
            }
            if len(sizes) >= 2 and all(v is not None for v in values.values()):
                lo, hi = min(sizes), max(sizes)
                slope = (values[hi] - values[lo]) / (hi - lo)  # type: ignore[operator]
                constant = values[hi] - slope * hi  # type: ignore[operator]
                line(
                    abs(slope - 1) < 0.005,
                    f"{action} commits on postgresql: {slope:.3f} per step + {constant:.0f} "
                    "(goal: exactly 1 per step plus a constant)",
                )
            elif values.get(n) is not None:
                total = values[n]
                line(
                    None,
                    f"{action} commits on postgresql: {total:.0f} for {n} steps "
                    "(goal: 1 per step plus a constant; run two sizes to separate them)",
                )
    added = figures.median(0, "-", tool, "import", lambda rec: rec.import_s)
    line(
        None if added is None else added < 0.015,
        f"import sqlmig adds {(added or 0) * 1000:.1f} ms to import sqlalchemy (goal < 15 ms)",
    )
    if len(sizes) >= 2:
        for backend in backends:
            a = figures.median(min(sizes), backend, tool, "upgrade", lambda r: r.maxrss_kib)
            b = figures.median(max(sizes), backend, tool, "upgrade", lambda r: r.maxrss_kib)
            if a and b:
                line(
                    b / a <= 1.2,
                    f"peak RSS on {backend}: N={max(sizes)} uses {b / a:.2f}x "
                    f"N={min(sizes)} (goal <= 1.2x)",
                )
    return lines


def render(
    records: list[Any], tools: list[str], backends: list[str], info: dict[str, str], pad_kib: int
) -> str:
    """The whole report as markdown-friendly text."""
    figures = Figures(records)
    sizes = sorted({r.n for r in records if r.n})
    out = ["# sqlmig benchmark", ""]
    out.append("Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    out.append("")
    for n in sizes:
        runs = max(
            (
                sum(
                    1
                    for r in records
                    if (r.n, r.tool, r.action) == (n, "floor", "upgrade") and r.backend == b
                )
                for b in backends
            ),
            default=0,
        )
        checks = sum(
            1
            for r in records
            if (r.n, r.tool, r.action) == (n, "floor", "check") and r.backend == backends[0]
        )
        out.append(
            f"## N = {n} (median of {runs} round(s), the start-up check {checks // max(runs, 1)}"
            " times in each; ratio = median of tool / floor, each run paired with the floor's"
            " run of the same round)"
        )
        out.append("")
        rows = list(ROWS)
        if pad_kib and any(r.n == n and r.action == "check-padded" for r in records):
            rows += [(f"{label} ({pad_kib} KiB each)", *rest) for label, *rest in PADDED_ROWS]
        out += _size_table(figures, n, tools, backends, rows)
        out.append("")
    imports = sum(1 for r in records if r.action == "import" and r.tool == "floor")
    out.append(f"## import (median of {imports} run(s))")
    out.append("")
    out += _import_table(figures, tools)
    out.append("")
    if len(sizes) >= 2:
        out += _memory_table(figures, sizes, tools, backends)
        out.append("")
    for tool in ("sqlmig", "candidate"):
        if tool in tools and sizes:
            out += _goals(figures, sizes, backends, tool)
            out.append("")
    return "\n".join(out)

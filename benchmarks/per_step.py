"""sqlmig's own cost per step, in one process: the floor and sqlmig take turns.

    python benchmarks/per_step.py --n 1000 --rounds 8 --backend sqlite
    python benchmarks/per_step.py --n 1000 --rounds 8 --backend postgresql --action downgrade

``run.py`` times whole processes, as the goals are stated; on a shared VM a pair of
them can differ by 20% for reasons of the machine's own. This script removes
what it can of that: both tools run in one warmed-up process, alternately, each on
a fresh database, and it prints for each the median wall time per step and the
median CPU time per step of this process (``time.process_time``: the client's
own work, which neither ``fsync`` nor the server's load changes much). The
difference in CPU per step is what sqlmig adds to a step; the paired wall ratio
is what that costs against the commit.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import child
from databases import admin_engine, fresh_database
from workloads import write_workload

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TOOLS = ("floor", "sqlmig")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--action", default="upgrade", choices=["upgrade", "downgrade"])
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args()
    admin = admin_engine(args.pg_url) if args.backend == "postgresql" else None
    child._import_driver("sqlite" if args.backend == "sqlite" else "postgresql")

    with tempfile.TemporaryDirectory(prefix="sqlmig-per-step-") as tmp:
        root = Path(tmp)
        folder = str(write_workload(root / "steps", "sqlmig", args.n))

        def run(tool: str) -> tuple[float, float]:
            with fresh_database(args.backend, root, admin) as target:
                if args.action == "downgrade":
                    getattr(child, tool)("upgrade", target.url_string, folder)()
                work = getattr(child, tool)(args.action, target.url_string, folder)
                wall, cpu = time.perf_counter(), time.process_time()
                done = work()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if done not in (args.n, None):
                raise RuntimeError(f"{tool} {args.action} did {done} steps, not {args.n}")
            return wall / args.n, cpu / args.n

        for tool in TOOLS:  # warm-up: imports, sqlmig's bytecode and checksum caches
            run(tool)
        times: dict[str, list[tuple[float, float]]] = {tool: [] for tool in TOOLS}
        for i in range(args.rounds):
            for tool in TOOLS if i % 2 == 0 else TOOLS[::-1]:
                times[tool].append(run(tool))
    if admin is not None:
        admin.dispose()

    def median_ms(tool: str, index: int) -> float:
        return statistics.median(t[index] for t in times[tool]) * 1000

    print(f"{args.action} of {args.n} steps on {args.backend}, {args.rounds} rounds, per step:")
    print(f"{'':8} {'wall ms':>9} {'cpu ms':>9}")
    for tool in TOOLS:
        print(f"{tool:8} {median_ms(tool, 0):9.3f} {median_ms(tool, 1):9.3f}")
    pairs = [s[0] / f[0] for f, s in zip(times["floor"], times["sqlmig"], strict=True)]
    added = median_ms("sqlmig", 1) - median_ms("floor", 1)
    print(
        f"sqlmig adds {added:.3f} ms of CPU per step; wall, paired: "
        f"{statistics.median(pairs):.2f}x the floor (pairs {min(pairs):.2f}-{max(pairs):.2f})"
    )


if __name__ == "__main__":
    main()

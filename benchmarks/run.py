"""sqlmig's benchmark: ``python benchmarks/run.py`` (``--quick`` for a 20-step smoke run).

For N generated migrations (each creates a small table and inserts a row;
``down()`` drops it) it measures, on a SQLite file and on PostgreSQL, in one
run: the full upgrade from an empty database, the start-up check with all N
applied, the full downgrade to base, peak RSS of the upgrade, and ``import``
on top of ``import sqlalchemy``. Every figure is the median of several whole
processes, shown next to its ratio to the floor: a plain SQLAlchemy script that
runs the same statements, one real transaction per step, one history insert
per step. Alembic and yoyo-migrations are measured too where installed
(``pip install -e . --group bench``). On PostgreSQL the server's commit counter
(``pg_stat_database.xact_commit``) is read before and after each process.

The table goes to stdout, progress to stderr. This is not a test: CI only runs
it with ``--quick``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy
from databases import (
    Target,
    admin_engine,
    commits,
    count_bench_tables,
    fresh_database,
    quiesce,
    server_version,
)
from report import render
from sqlalchemy import Engine
from workloads import TOOLS, write_workload

HERE = Path(__file__).resolve().parent
CHILD = HERE / "child.py"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass
class Record:
    """One measured process."""

    n: int
    backend: str
    tool: str
    action: str  # upgrade, check, downgrade, import, or check-padded
    wall_s: float
    import_s: float
    work_s: float
    maxrss_kib: int
    commits: int | None = None
    rollbacks: int | None = None


def installed_tools(wanted: list[str]) -> list[str]:
    modules = {"floor": "sqlalchemy", "sqlmig": "sqlmig", "alembic": "alembic", "yoyo": "yoyo"}
    found = []
    for tool in wanted:
        if importlib.util.find_spec(modules[tool]) is None:
            hint = "pip install -e . --group bench"
            print(f"skipping {tool}: not installed ({hint})", file=sys.stderr)
        else:
            found.append(tool)
    return found


#: ``--candidate PATH``: a second sqlmig checkout (e.g. a core change being tried),
#: measured in the same run as the tool "candidate", imported from PATH.
CANDIDATE: dict[str, str] = {}


def run_child(tool: str, action: str, url: str, folder: Path) -> dict[str, Any]:
    """Run one measured process; its JSON line plus the wall time from start to exit."""
    # Python's default: bytecode cached in __pycache__, as an installed package has it.
    # (With PYTHONDONTWRITEBYTECODE set, an edited module is compiled at every import.)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if tool == "candidate":
        env["PYTHONPATH"] = CANDIDATE["path"]
        tool = "sqlmig"
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(CHILD), tool, action, url, str(folder)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=HERE,
        env=env,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} {action} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def measured(
    target: Target, n: int, tool: str, action: str, folder: Path, label: str | None = None
) -> Record:
    quiesce(target)
    before = commits(target) if target.admin is not None else None
    result = run_child(tool, action, target.url_string, folder)
    after = commits(target) if target.admin is not None else None
    record = Record(
        n,
        target.backend,
        tool,
        label or action,
        result["wall_s"],
        result["import_s"],
        result["work_s"],
        result["maxrss_kib"],
    )
    if before is not None and after is not None:
        record.commits = after[0] - before[0]
        record.rollbacks = after[1] - before[1]
    return record


def expect_tables(target: Target, tool: str, action: str, wanted: int) -> None:
    found = count_bench_tables(target)
    if found != wanted:
        raise RuntimeError(
            f"{tool} {action} on {target.backend} left {found} bench tables, expected {wanted}"
        )


#: Start-up checks measured per round (cheap processes; their ratio lines are the tightest).
CHECKS_PER_ROUND = 3


def turns(tools: list[str], rep: int) -> list[str]:
    """The order in which the tools take their turns in round ``rep``.

    Rounds come in mirrored pairs: a rotation of the tools, then the same
    rotation reversed. Over each pair every tool runs before and after every
    other once, and in mirrored positions, so a position that runs slower (the
    first after the last round's databases were dropped, say) favours no tool.
    """
    shift = (rep // 2) % len(tools)
    order = list(tools[shift:]) + list(tools[:shift])
    return order[::-1] if rep % 2 else order


def play_round(
    records: list[Record],
    n: int,
    backend: str,
    root: Path,
    admin: Engine | None,
    folders: dict[str, Path],
    order: list[str],
) -> None:
    """One round on one backend: each action measured for every tool, back to back.

    Every tool gets a fresh database; then all upgrade from empty, one after
    the other, then all run the start-up check (``CHECKS_PER_ROUND`` times), then
    all downgrade to base. A tool's run
    and the floor's of the same action are seconds apart, so a pair sees the
    same machine even when its speed drifts over minutes.
    """
    actions = [("upgrade", n)]
    actions += [("check", n)] * CHECKS_PER_ROUND
    actions += [("downgrade", 0)]
    with ExitStack() as stack:
        targets = {
            tool: stack.enter_context(fresh_database(backend, root, admin)) for tool in order
        }
        for action, tables in actions:
            for tool in order:
                target = targets[tool]
                record = measured(target, n, tool, action, folders[tool], label=action)
                expect_tables(target, tool, action, tables)
                records.append(record)
                extra = f", {record.commits} commits" if record.commits is not None else ""
                print(
                    f"  n={n} {backend:<10} {tool:<7} {action:<10} {record.wall_s:7.3f} s "
                    f"(after import {record.work_s * 1000:8.1f} ms{extra})",
                    file=sys.stderr,
                )


def padded_checks(
    records: list[Record], n: int, target: Target, tool: str, folder: Path, repeat: int
) -> None:
    """The start-up check over files padded with comments: what reading each file costs."""
    run_child(tool, "upgrade", target.url_string, folder)
    expect_tables(target, tool, "upgrade", n)
    for _ in range(repeat):
        records.append(measured(target, n, tool, "check", folder, label="check-padded"))
    print(f"  n={n} {target.backend:<10} {tool:<7} padded checks done", file=sys.stderr)


def _kind(tool: str) -> str:
    """The workload a tool reads: the candidate reads sqlmig's files."""
    return "sqlmig" if tool == "candidate" else tool


def machine() -> dict[str, str]:
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "sqlalchemy": sqlalchemy.__version__,
        "cpus": str(os.cpu_count()),
        "platform": platform.platform(),
        "load average at start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    for name, module in (("alembic", "alembic"), ("yoyo", "yoyo-migrations")):
        try:
            from importlib.metadata import version

            info[name] = version(module)
        except Exception:
            pass
    return info


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, help="rounds per figure (default 6)")
    parser.add_argument("--import-repeat", type=int, default=9)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("SQLMIG_BENCH_POSTGRES_URL")
        or os.environ.get("SQLMIG_TEST_POSTGRES_URL")
        or DEFAULT_PG,
        help="admin URL; each run gets a fresh database created there",
    )
    parser.add_argument(
        "--pad-kib",
        type=int,
        default=64,
        help="also time the start-up check over files padded to this size (0: skip)",
    )
    parser.add_argument(
        "--candidate",
        metavar="PATH",
        help="also measure the sqlmig found at PATH (a checkout with a change to try)",
    )
    parser.add_argument("--json", type=Path, help="write every measured process here")
    parser.add_argument("--quick", action="store_true", help="N=20, one run each (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeat, args.import_repeat, args.pad_kib = [20], 1, 1, 0
    if "floor" not in args.tools:
        args.tools.insert(0, "floor")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    tools = installed_tools(args.tools)
    if args.candidate:
        CANDIDATE["path"] = str(Path(args.candidate).resolve())
        tools.insert(tools.index("sqlmig") + 1 if "sqlmig" in tools else 1, "candidate")
    admin = admin_engine(args.pg_url) if "postgresql" in args.backends else None
    info = machine()
    if admin is not None:
        info["postgresql"] = server_version(admin)
    records: list[Record] = []
    with tempfile.TemporaryDirectory(prefix="sqlmig-bench-") as tmp:
        root = Path(tmp)
        for tool in tools:  # warm-up, not measured: writes the bytecode caches
            run_child(tool, "import", "-", root)
        for rep in range(args.import_repeat):
            for tool in tools[rep % len(tools) :] + tools[: rep % len(tools)]:
                result = run_child(tool, "import", "-", root)
                records.append(
                    Record(
                        0,
                        "-",
                        tool,
                        "import",
                        result["wall_s"],
                        result["tool_s"],
                        result["sqlalchemy_s"],
                        result["maxrss_kib"],
                    )
                )
        print(f"imports measured ({args.import_repeat} runs each)", file=sys.stderr)
        for n in args.sizes:
            repeat = args.repeat or 6
            folders = {tool: write_workload(root / f"n{n}", _kind(tool), n) for tool in tools}
            for rep in range(repeat):
                order = turns(tools, rep)
                for backend in args.backends:
                    play_round(records, n, backend, root, admin, folders, order)
            if args.pad_kib and n == max(args.sizes):
                padded = {
                    tool: write_workload(root / f"n{n}-padded", _kind(tool), n, args.pad_kib)
                    for tool in tools
                    if tool in ("floor", "sqlmig", "candidate", "alembic")
                }
                for backend in args.backends:
                    for tool, folder in padded.items():
                        with fresh_database(backend, root, admin) as target:
                            padded_checks(records, n, target, tool, folder, repeat)
    if admin is not None:
        admin.dispose()
    info["load average at end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(render(records, tools, args.backends, info, args.pad_kib))
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "records": [asdict(r) for r in records]}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

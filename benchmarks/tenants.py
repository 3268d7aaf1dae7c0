"""Many tenants at once: ``upgrade_all`` against a plain loop, and what it holds.

    python benchmarks/tenants.py                      # the figures of the goals
    python benchmarks/tenants.py --schemas 10 --files 20 --steps 5 --noop 10 --rss 10,100

Prints one table, each row a measurement with its ratio and the goal it answers:

- PostgreSQL, a schema per tenant (``--schemas`` x ``--steps``): ``jobs=8`` on
  threads, ``jobs=8`` on worker processes (``processes=True``) and ``jobs=1``
  against the floor, a loop of plain SQLAlchemy over the same
  schemas (one engine, one connection per tenant, ``search_path`` set, each
  step and its history row in one transaction);
- SQLite, a file per tenant (``--files`` x ``--steps``), likewise;
- the no-op start-up: ``upgrade_all`` over ``--noop`` up-to-date tenants against
  as many single ``MigrationRunner(url, folder).upgrade()`` calls in one process;
- peak RSS and most open file descriptors (connections, on SQLite files and
  their journals) of ``upgrade_all(jobs=4)`` over the two counts of ``--rss``
  (each in a process of its own), as a ratio of the larger to the smaller.

Each timed run gets fresh databases (PostgreSQL: a new ``sqlmig_bench_*``
database, dropped after). The machine may be shared: run it twice and compare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child import FLOOR_HISTORY, _floor_engine, _floor_files
from workloads import statements, write_workload

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
INSERT = text("INSERT INTO floor_history (version, name, applied_at) VALUES (:v, :n, :t)")


def floor_tenant(engine: Engine, folder: str, schema: str | None) -> int:
    """The plain loop's work for one tenant: its steps, each with its history row."""
    done = 0
    with engine.connect() as conn:
        if schema is not None:
            quoted = conn.dialect.identifier_preparer.quote_identifier(schema)
            with conn.begin():
                conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
                conn.exec_driver_sql(f"SET search_path TO {quoted}")
        with conn.begin():
            conn.exec_driver_sql(FLOOR_HISTORY)
            applied = {r[0] for r in conn.exec_driver_sql("SELECT version FROM floor_history")}
        for number, version, name in _floor_files(folder):
            if version in applied:
                continue
            with conn.begin():
                for statement in statements(number):
                    conn.exec_driver_sql(statement)
                conn.execute(INSERT, {"v": version, "n": name, "t": datetime.now(UTC)})
            done += 1
        if schema is not None:
            with conn.begin():
                conn.exec_driver_sql("SET search_path TO DEFAULT")
    return done


@contextmanager
def pg_database(admin: Engine) -> Iterator[str]:
    name = f"sqlmig_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


#: The ways each timed run is done: the plain loop, upgrade_all on threads, on processes.
WAYS = ("floor", "jobs=1", "jobs=8", "jobs=8 processes")


def way_of(way: str) -> tuple[int, bool]:
    """``jobs=8 processes`` as its jobs and whether on processes."""
    jobs, _, processes = way.partition(" ")
    return int(jobs.split("=")[1]), bool(processes)


def upgrade_all_checked(
    targets: list[object], folder: str, jobs: int, processes: bool = False
) -> None:
    from sqlmig import upgrade_all

    results = upgrade_all(targets, folder, jobs=jobs, processes=processes)  # type: ignore[arg-type]
    bad = [r for r in results if r.state != "upgraded"]
    if bad:
        raise RuntimeError(f"{bad[0].name}: {bad[0].state}: {bad[0].error}")


def schemas_rows(admin: Engine, folder: str, tenants: int, rounds: int) -> dict[str, list[float]]:
    """Wall seconds of the floor loop, jobs=1 and jobs=8 over ``tenants`` schemas."""
    from sqlmig import Target

    names = [f"tenant_{i:04d}" for i in range(tenants)]
    times: dict[str, list[float]] = {w: [] for w in WAYS}
    for round_ in range(rounds):  # each way once a round, in turns
        order = list(times) if round_ % 2 == 0 else list(times)[::-1]
        for way in order:
            with pg_database(admin) as url:
                if way == "floor":

                    def work(url: str = url) -> None:
                        engine = create_engine(url)
                        for name in names:
                            floor_tenant(engine, folder, name)
                        engine.dispose()

                else:
                    jobs, processes = way_of(way)

                    def work(url: str = url, jobs: int = jobs, processes: bool = processes) -> None:
                        targets: list[object] = [Target(url, schema=n) for n in names]
                        upgrade_all_checked(targets, folder, jobs, processes)

                times[way].append(timed(work))
    return times


def files_rows(root: Path, folder: str, tenants: int, rounds: int) -> dict[str, list[float]]:
    """Wall seconds of the floor loop, jobs=1 and jobs=8 over ``tenants`` SQLite files."""
    times: dict[str, list[float]] = {w: [] for w in WAYS}
    for round_ in range(rounds):
        order = list(times) if round_ % 2 == 0 else list(times)[::-1]
        for way in order:
            where = root / f"files-{way.replace(' ', '-')}-{round_}"
            where.mkdir()
            urls = [f"sqlite:///{where / f'{i}.db'}" for i in range(tenants)]
            if way == "floor":

                def work(urls: list[str] = urls) -> None:
                    for url in urls:
                        engine = _floor_engine(url)
                        floor_tenant(engine, folder, None)
                        engine.dispose()

            else:
                jobs, processes = way_of(way)

                def work(
                    urls: list[str] = urls, jobs: int = jobs, processes: bool = processes
                ) -> None:
                    upgrade_all_checked(list(urls), folder, jobs, processes)

            times[way].append(timed(work))
    return times


def noop_rows(root: Path, folder: str, tenants: int) -> dict[str, list[float]]:
    """Wall seconds of a no-op start-up over up-to-date tenants: singles and upgrade_all."""
    from sqlmig import MigrationRunner, upgrade_all

    where = root / "noop"
    where.mkdir()
    urls = [f"sqlite:///{where / f'{i}.db'}" for i in range(tenants)]
    upgrade_all_checked(list(urls), folder, 8)

    def singles() -> None:
        for url in urls:
            assert MigrationRunner(url, folder).upgrade() == []

    def together() -> None:
        assert all(r.state == "up to date" for r in upgrade_all(urls, folder, jobs=1))

    times: dict[str, list[float]] = {"single calls": [], "upgrade_all jobs=1": []}
    for round_ in range(10):
        for way, work in [("single calls", singles), ("upgrade_all jobs=1", together)][
            :: 1 if round_ % 2 == 0 else -1
        ]:
            times[way].append(timed(work))
    return times


def paired(these: list[float], those: list[float]) -> str:
    """The median of the rounds' ratios, and their range."""
    ratios = [a / b for a, b in zip(these, those, strict=True)]
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def timed_rows(what: str, times: dict[str, list[float]], goal: float) -> list[tuple[str, str, str]]:
    """The floor, jobs=1, jobs=8 and jobs=8 processes rows: the median time, and ratios
    paired by round."""
    floor, one, eight = times["floor"], times["jobs=1"], times["jobs=8"]
    forked = times["jobs=8 processes"]
    return [
        (f"{what}: floor loop", f"{statistics.median(floor):.2f} s", ""),
        (
            f"{what}: jobs=1",
            f"{statistics.median(one):.2f} s",
            f"{paired(one, floor)} floor (goal <= 1.15)",
        ),
        (
            f"{what}: jobs=8",
            f"{statistics.median(eight):.2f} s",
            f"{paired(eight, one)} jobs=1 (goal <= {goal})",
        ),
        (
            f"{what}: jobs=8, processes",
            f"{statistics.median(forked):.2f} s",
            f"{paired(forked, one)} jobs=1 (goal <= {goal})",
        ),
    ]


def footprint(count: int, steps: int) -> dict[str, float]:
    """Peak RSS (KiB) and most open descriptors of upgrade_all over ``count`` files,
    measured in a process of its own."""
    script = Path(__file__).resolve()
    out = subprocess.run(
        [sys.executable, str(script), "--footprint-child", str(count), "--steps", str(steps)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def footprint_child(count: int, steps: int) -> None:
    from sqlmig import TargetResult, upgrade_all

    with tempfile.TemporaryDirectory(prefix="sqlmig-tenants-") as tmp:
        root = Path(tmp)
        folder = str(write_workload(root / "steps", "sqlmig", steps))
        urls = [f"sqlite:///{root / f'{i}.db'}" for i in range(count)]
        most = [0]

        def sample(result: TargetResult) -> None:
            most[0] = max(most[0], len(os.listdir("/proc/self/fd")))

        results = upgrade_all(urls, folder, jobs=4, on_result=sample)
        assert all(r.state == "upgraded" for r in results)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"maxrss_kib": rss, "fds": most[0]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schemas", type=int, default=100)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--noop", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the timed runs")
    parser.add_argument("--rss", default="100,1000", help="two tenant counts, small,large")
    parser.add_argument("--rss-steps", type=int, default=2)
    parser.add_argument("--pg-url", default=os.environ.get("SQLMIG_TEST_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument("--no-postgresql", action="store_true")
    parser.add_argument("--footprint-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.footprint_child:
        footprint_child(args.footprint_child, args.steps)
        return

    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="sqlmig-tenants-") as tmp:
        root = Path(tmp)
        folder = str(write_workload(root / "steps", "sqlmig", args.steps))
        if not args.no_postgresql:
            admin = create_engine(make_url(args.pg_url), isolation_level="AUTOCOMMIT")
            pg = schemas_rows(admin, folder, args.schemas, args.rounds)
            admin.dispose()
            rows += timed_rows(f"PostgreSQL {args.schemas} schemas x {args.steps} steps", pg, 0.4)
        lite = files_rows(root, folder, args.files, args.rounds)
        rows += timed_rows(f"SQLite {args.files} files x {args.steps} steps", lite, 0.5)
        noop = noop_rows(root, folder, args.noop)
        what = f"no-op start-up, {args.noop} up-to-date SQLite tenants"
        singles, together = noop["single calls"], noop["upgrade_all jobs=1"]
        rows += [
            (f"{what}: single calls", f"{statistics.median(singles) * 1000:.0f} ms", ""),
            (
                f"{what}: upgrade_all",
                f"{statistics.median(together) * 1000:.0f} ms",
                f"{paired(together, singles)} singles (goal <= 1.2)",
            ),
        ]
    small, large = (int(n) for n in args.rss.split(","))
    low, high = footprint(small, args.rss_steps), footprint(large, args.rss_steps)
    rows += [
        (
            f"peak RSS, {small} vs {large} SQLite files (jobs=4)",
            f"{low['maxrss_kib'] / 1024:.0f} / {high['maxrss_kib'] / 1024:.0f} MiB",
            f"{high['maxrss_kib'] / low['maxrss_kib']:.2f}x (goal <= 1.2)",
        ),
        (
            f"most open descriptors, {small} vs {large}",
            f"{low['fds']:.0f} / {high['fds']:.0f}",
            f"{high['fds'] / low['fds']:.2f}x (goal <= 1.2)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'figure':>14}  ratio")
    for name, figure, ratio in rows:
        print(f"{name:<{width}}  {figure:>14}  {ratio}")


if __name__ == "__main__":
    main()

"""Databases for pytest-xdist workers: a template copied, against every worker migrating.

    python benchmarks/xdist_setup.py --workers 8 --steps 200 --rounds 3

N worker processes each get a migrated PostgreSQL database of their own through
the plugin's own code (``sqlmig._pytest_workers.WorkerDatabase``), in two ways:

- clone: the first worker migrates the run's template, every worker's database
  is a ``CREATE DATABASE ... TEMPLATE`` copy of it (what the plugin does);
- migrate each: every worker runs the steps on its own database (what the plugin
  does on MySQL/MariaDB, and what a project without the plugin would do).

The workers start (and import) first and wait; the clock runs from their common
start to the last one's database being ready. Each round runs both ways, in
turn first; the table gives the medians (and, for a clue to where the time
goes, when the first worker was ready: in the clone way, the template migrated
and one copy made), and the ratio is the median of each
round's pair, against the goal of cloning in at most a quarter of the time of
migrating each.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import statistics
import sys
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from workloads import write_workload

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
WAYS = ("clone", "migrate each")
GOAL = 0.25


def worker(
    way: str, url: str, token: str, name: str, folder: str, start: Event, done: Event, ready: Any
) -> None:
    """One worker: wait for the start, get a migrated database, say when, drop it at the end."""
    from sqlmig import MigrationRunner
    from sqlmig._pytest_runs import Run
    from sqlmig._pytest_workers import WorkerDatabase

    database = WorkerDatabase(url, Run.parse(token), name)
    if way == "migrate each":
        assert database.server is not None
        database.server = dataclasses.replace(database.server, clone=None)  # MySQL's way
    from sqlalchemy import create_engine

    create_engine(url).dispose()  # the driver imported before the clock starts, as in a worker
    start.wait()
    try:
        engine = database.create()
        database.migrate(MigrationRunner(engine, folder))
        ready.put((name, time.monotonic()))
        done.wait()
    except BaseException as exc:
        ready.put((name, repr(exc)))
        raise
    finally:
        database.drop()


def settle(url: str) -> None:
    """A checkpoint first, so neither way pays for the writes of the round before it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
    except DBAPIError:  # not a superuser: the rounds' alternation must do
        pass
    finally:
        engine.dispose()


def one_round(way: str, url: str, workers: int, folder: Path) -> tuple[float, float]:
    """Seconds from the workers' common start to the first and the last database ready."""
    from sqlmig._pytest_runs import Run, finish

    run = Run.new()
    context = multiprocessing.get_context("spawn")
    start, done, ready = context.Event(), context.Event(), context.Queue()
    processes = [
        context.Process(
            target=worker,
            args=(way, url, run.token, f"gw{i}", str(folder), start, done, ready),
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    settle(url)
    time.sleep(3.0)  # every worker started and imported, waiting on the start
    began = time.monotonic()
    start.set()
    try:
        finished = [ready.get(timeout=600) for _ in processes]
    finally:
        done.set()
        for process in processes:
            process.join(timeout=120)
        finish(url, run, used_server=True)
    failed = [f"{name}: {what}" for name, what in finished if isinstance(what, str)]
    if failed:
        sys.exit("a worker failed: " + "; ".join(failed))
    times = [when - began for _, when in finished]
    return min(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args()

    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    first: dict[str, list[float]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory(prefix="sqlmig-xdist-bench-") as root:
        folder = write_workload(Path(root), "sqlmig", args.steps)
        for number in range(args.rounds):
            for way in WAYS if number % 2 == 0 else WAYS[::-1]:
                soonest, last = one_round(way, args.pg_url, args.workers, folder)
                first[way].append(soonest)
                seconds[way].append(last)

    median = {way: statistics.median(values) for way, values in seconds.items()}
    # each round's pair, then their median: a busy machine slows both ways of a round alike
    pairs = zip(seconds["clone"], seconds["migrate each"], strict=True)
    ratio = statistics.median(clone / each for clone, each in pairs)
    print(
        f"## {args.workers} workers, {args.steps} steps, PostgreSQL "
        f"(median of {args.rounds} round(s))\n"
    )
    print("| setup | all ready | each round | first ready |")
    print("| --- | --- | --- | --- |")
    for way in WAYS:
        rounds = ", ".join(f"{s:.2f}" for s in seconds[way])
        soonest = statistics.median(first[way])
        print(f"| {way} | {median[way]:.2f} s | {rounds} | {soonest:.2f} s |")
    verdict = "PASS" if ratio <= GOAL else "FAIL"
    print(
        f"\nratio: clone / migrate each = {ratio:.2f}x, paired by round "
        f"(goal: <= {GOAL}x) {verdict}"
    )


if __name__ == "__main__":
    main()

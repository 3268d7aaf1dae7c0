"""Where sqlmig spends its time: cProfile over one upgrade, start-up check and downgrade.

    python benchmarks/profile_sqlmig.py --n 1000 --backend sqlite
    python benchmarks/profile_sqlmig.py --n 1000 --backend postgresql --top 40

Builds the benchmark's workload, runs each call once in this process under
cProfile on a fresh database, and prints the top functions by cumulative and by
own time, plus ``python -X importtime -c 'import sqlmig'``'s heaviest imports.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from databases import admin_engine, fresh_database
from workloads import write_workload

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _profiled(label: str, call: object, top: int, sort: list[str]) -> None:
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    result = call()  # type: ignore[operator]
    profile.disable()
    elapsed = time.perf_counter() - started
    print(f"\n===== {label}: {elapsed * 1000:.1f} ms (profiled), result {len(result)} steps")
    for key in sort:
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats(key).print_stats(top)
        text = out.getvalue()
        start = text.find("   ncalls")
        print(f"--- sorted by {key}")
        print(text[start:] if start >= 0 else text)


def import_times(limit: int) -> None:
    command = [sys.executable, "-X", "importtime", "-c", "import sqlalchemy; import sqlmig"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(command, capture_output=True, env=env)  # writes the bytecode caches
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line[len("import time:") :].split("|")]
        if not parts[0].isdigit():
            continue
        own, cumulative, name = int(parts[0]), int(parts[1]), parts[2]
        rows.append((cumulative, own, name))
    # only what was imported after sqlalchemy: everything after the top-level sqlalchemy line
    names = [r[2] for r in rows]
    cut = next((i for i, n in enumerate(names) if n == "sqlalchemy"), -1)
    after = rows[cut + 1 :]
    print("\n===== imports added by `import sqlmig` after `import sqlalchemy` (us)")
    print(f"{'cumulative':>10} {'self':>8}  module")
    for cumulative, own, name in sorted(after, reverse=True)[:limit]:
        print(f"{cumulative:>10} {own:>8}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", nargs="+", default=["cumulative", "tottime"])
    args = parser.parse_args()

    import sqlalchemy  # noqa: F401

    from sqlmig import MigrationRunner

    admin = admin_engine(args.pg_url) if args.backend == "postgresql" else None
    with tempfile.TemporaryDirectory(prefix="sqlmig-prof-") as tmp:
        folder = write_workload(Path(tmp), "sqlmig", args.n)
        with fresh_database(args.backend, Path(tmp), admin) as target:
            url = target.url_string
            _profiled(
                f"upgrade of {args.n}",
                lambda: MigrationRunner(url, folder).upgrade(),
                args.top,
                args.sort,
            )
            _profiled(
                "start-up check",
                lambda: MigrationRunner(url, folder).upgrade(),
                args.top,
                args.sort,
            )
            _profiled(
                "downgrade to base",
                lambda: MigrationRunner(url, folder).downgrade("base"),
                args.top,
                args.sort,
            )
    if admin is not None:
        admin.dispose()
    import_times(args.top)


if __name__ == "__main__":
    main()

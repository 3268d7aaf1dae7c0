"""``sqlmig check`` against ``alembic check`` on the same database, whole processes.

    python benchmarks/drift.py                      # 60 tables, SQLite and PostgreSQL
    python benchmarks/drift.py --tables 5 --rounds 1 --backends sqlite   # a smoke run

The models are ``--tables`` tables in one MetaData (each with a key, a
foreign key to the table before it, a unique constraint, an index and six
columns of common types). The database is made from them (``create_all``), so
both tools compare every table and find nothing: each must exit 0. sqlmig
runs ``python -m sqlmig check`` on an empty migrations folder (it reads its
history table too: there is none); Alembic runs ``python -m alembic check`` in
a project with no revision, whose ``env.py`` gives the same MetaData and
sqlmig's settings (``compare_type=True``, server defaults on PostgreSQL
only). The rounds alternate which tool goes first; each figure is the median
wall time of whole processes (Python start-up and imports included); the
ratio is the median of each round's sqlmig/Alembic ratio. The goal: sqlmig
at most 1.1x Alembic.

The table goes to stdout, progress to stderr. This is not a test: CI runs it
with small numbers only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from databases import Target, admin_engine, fresh_database, quiesce
from sqlalchemy import create_engine

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
GOAL = 1.1
TOOLS = ("sqlmig", "alembic")

MODELS = '''\
"""{n} tables for the drift benchmark."""
from sqlalchemy import (Boolean, Column, DateTime, ForeignKey, Index, Integer, MetaData,
                        Numeric, String, Table, Text, UniqueConstraint)

metadata = MetaData()
for i in range({n}):
    Table(
        f"drift_{{i:03d}}",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", String(100), nullable=False),
        Column("code", String(20), nullable=False),
        Column("amount", Numeric(10, 2)),
        Column("active", Boolean, nullable=False),
        Column("created_at", DateTime, nullable=False),
        Column("note", Text),
        *([Column("parent_id", ForeignKey(f"drift_{{i - 1:03d}}.id"))] if i else []),
        UniqueConstraint("code", name=f"uq_drift_{{i:03d}}_code"),
        Index(f"ix_drift_{{i:03d}}_name", "name"),
    )
'''

ALEMBIC_INI = """\
[alembic]
script_location = %(here)s/alembic
"""

ENV_PY = """\
import os

from alembic import context
from sqlalchemy import create_engine

from drift_models import metadata

engine = create_engine(os.environ["DRIFT_URL"])
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        # as sqlmig compares: server defaults on PostgreSQL only
        compare_server_default=connection.dialect.name == "postgresql",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""

SCRIPT_MAKO = '''\
"""${message}"""
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}


def upgrade():
    pass


def downgrade():
    pass
'''


def write_projects(root: Path, tables: int) -> None:
    """The models module, sqlmig's empty migrations folder, and an Alembic project."""
    (root / "drift_models.py").write_text(MODELS.format(n=tables))
    (root / "migrations").mkdir()
    (root / "alembic.ini").write_text(ALEMBIC_INI)
    (root / "alembic" / "versions").mkdir(parents=True)
    (root / "alembic" / "env.py").write_text(ENV_PY)
    (root / "alembic" / "script.py.mako").write_text(SCRIPT_MAKO)


def command(tool: str, url: str) -> list[str]:
    if tool == "sqlmig":
        return [
            sys.executable, "-m", "sqlmig", "--url", url, "--dir", "migrations",
            "--metadata", "drift_models:metadata", "check",
        ]  # fmt: skip
    return [sys.executable, "-m", "alembic", "check"]


def timed(tool: str, target: Target, root: Path) -> float:
    """Seconds of one whole ``check`` process; it must find nothing (exit 0)."""
    env = {**os.environ, "DRIFT_URL": target.url_string, "PYTHONPATH": str(root)}
    env = {k: v for k, v in env.items() if not k.startswith("SQLMIG_")}
    quiesce(target)
    start = time.perf_counter()
    proc = subprocess.run(
        command(tool, target.url_string), cwd=root, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} check exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return seconds


def measure(backend: str, root: Path, tables: int, rounds: int, pg_url: str) -> dict[str, float]:
    """The median seconds of each tool's check, and the median of the rounds' ratios."""
    admin = admin_engine(pg_url) if backend == "postgresql" else None
    sys.path.insert(0, str(root))
    try:
        from drift_models import metadata  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(root))
    times: dict[str, list[float]] = {tool: [] for tool in TOOLS}
    try:
        with fresh_database(backend, root, admin) as target:
            engine = create_engine(target.url)
            with engine.begin() as conn:
                metadata.create_all(conn)
            engine.dispose()
            for tool in TOOLS:  # warm-up: bytecode caches, the server's catalog caches
                timed(tool, target, root)
            for i in range(rounds):
                for tool in TOOLS if i % 2 == 0 else TOOLS[::-1]:
                    times[tool].append(timed(tool, target, root))
                    print(
                        f"{backend} round {i + 1}: {tool} {times[tool][-1]:.3f} s", file=sys.stderr
                    )
    finally:
        if admin is not None:
            admin.dispose()
    medians = {tool: statistics.median(values) for tool, values in times.items()}
    # each round's two runs are neighbours in time: their ratio drifts less with the machine
    pairs = [s / a for s, a in zip(times["sqlmig"], times["alembic"], strict=True)]
    medians["ratio"] = statistics.median(pairs)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="sqlmig-drift-") as tmp:
        root = Path(tmp)
        write_projects(root, args.tables)
        for backend in args.backends:
            results[backend] = measure(backend, root, args.tables, args.rounds, args.pg_url)
    print(f"## check of {args.tables} tables that match (median of {args.rounds} round(s))")
    print()
    print("| backend | sqlmig check | alembic check | ratio (paired) |")
    print("| --- | --- | --- | --- |")
    worst = 0.0
    for backend, medians in results.items():
        ratio = medians["ratio"]
        worst = max(worst, ratio)
        print(
            f"| {backend} | {medians['sqlmig'] * 1000:.0f} ms | "
            f"{medians['alembic'] * 1000:.0f} ms | {ratio:.2f}x |"
        )
    print()
    verdict = "PASS" if worst <= GOAL else "FAIL"
    print(f"{verdict} sqlmig check <= {GOAL}x alembic check (worst: {worst:.2f}x)")


if __name__ == "__main__":
    main()

"""``benchmarks/tenants.py`` runs and prints every row of its table, at small N.

It asserts nothing about speed: the figures are measured by hand (``python
benchmarks/tenants.py``). Marked ``bench``: ``python -m pytest -m bench`` runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backends import required, server_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.bench
def test_tenants_script_prints_every_measurement_with_its_ratio() -> None:
    pg = server_url("postgresql")
    if pg is None and "postgresql" in required():
        pytest.fail("backend postgresql is required (SQLMIG_REQUIRE_BACKENDS) but not set")
    args = ["--schemas", "3", "--files", "4", "--steps", "3", "--noop", "3", "--rss", "3,6"]
    args += (
        ["--no-postgresql"]
        if pg is None
        else ["--pg-url", pg.render_as_string(hide_password=False)]
    )

    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "tenants.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["measurement", "figure", "ratio"]
    names = [line.split(":")[0] for line in lines[1:]]
    wanted = [
        "SQLite 4 files x 3 steps",
        "no-op start-up, 3 up-to-date SQLite tenants",
        "peak RSS, 3 vs 6 SQLite files (jobs=4)",
        "most open descriptors, 3 vs 6",
    ]
    if pg is not None:
        wanted.insert(0, "PostgreSQL 3 schemas x 3 steps")
    assert all(any(n.startswith(w) for n in names) for w in wanted), lines
    assert sum("(goal <=" in line for line in lines) == (9 if pg is not None else 6)
    assert sum(": jobs=8, processes " in line for line in lines) == (2 if pg is not None else 1)

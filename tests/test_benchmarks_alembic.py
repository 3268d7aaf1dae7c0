"""The real-history script works: ``python benchmarks/alembic_histories.py --only optuna``.

A released project's Alembic revisions (optuna's, pinned), fetched from the
package registry at run time, reach the same schema through sqlmig as through
Alembic on SQLite and PostgreSQL, revision by revision, going down, and when
sqlmig takes over a database Alembic upgraded half way. Marked ``bench`` (CI
runs ``pytest -m bench``); skipped, saying why, when the registry cannot be
reached. The longer histories (mlflow's, prefect's: large installs) are
measured by hand: see the performance page.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from backends import required, server_url

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "alembic_histories.py"


@pytest.mark.bench
def test_a_real_history_reaches_alembics_schema_through_sqlmig() -> None:
    pytest.importorskip("alembic")
    url = server_url("postgresql")
    if url is None and "postgresql" in required():
        pytest.fail("backend postgresql is required (SQLMIG_REQUIRE_BACKENDS) but not set")
    cache = os.environ.get("SQLMIG_HISTORY_CACHE") or str(
        Path(tempfile.gettempdir()) / "sqlmig-alembic-histories"
    )
    args = ["--only", "optuna", "--repeat", "1", "--cache", cache]
    if url is not None:
        args += ["--postgres-url", url.render_as_string(hide_password=False)]
    env = {k: v for k, v in os.environ.items() if k != "SQLMIG_TEST_POSTGRES_URL"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    if proc.returncode == 2:
        pytest.skip(f"the package registry cannot be reached: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = {
        line.split()[2]: line for line in proc.stdout.splitlines() if line.startswith("optuna")
    }
    sqlite = lines["sqlite"].split()
    assert sqlite[3] == "10" and sqlite[4] == "10/10", proc.stdout  # every revision matches
    assert "ran 5" in lines["sqlite"], proc.stdout  # adopted half way, sqlmig ran the rest
    if url is not None:
        # Alembic's own upgrade stops at optuna's v2.4.0.a on PostgreSQL (it creates an
        # enum type that exists): sqlmig stops there too, and matches up to it
        assert lines["postgresql"].split()[4] == "3/3", proc.stdout
        assert "stops at 4 v2.4.0.a" in proc.stdout, proc.stdout

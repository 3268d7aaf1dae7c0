"""The benchmark scripts work: ``python benchmarks/run.py`` with N=20, run once.

This checks that every measurement runs and lands in the printed table (and
that every tool really did the work: the script counts the tables each upgrade
and downgrade left). It asserts nothing about speed: figures live in
``docs/performance.md``, measured by hand on a quiet machine.

The tests that run a script are marked ``bench`` and left out of the default
run (about a minute); ``python -m pytest -m bench`` runs them, as CI does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from backends import required, server_url

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run.py"


def _postgres_url() -> str | None:
    url = server_url("postgresql")
    if url is None:
        if "postgresql" in required():
            pytest.fail("backend postgresql is required (SQLMIG_REQUIRE_BACKENDS) but not set")
        return None
    return url.render_as_string(hide_password=False)


def _run(tmp_path: Path, *args: str) -> tuple[str, dict[str, object]]:
    out = tmp_path / "records.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data: dict[str, object] = json.loads(out.read_text())
    return proc.stdout, data


def _benchmark_module(name: str) -> ModuleType:
    """A module of ``benchmarks/`` (a folder of scripts, not a package), imported."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _tools() -> list[str]:
    extra = [t for t in ("alembic", "yoyo") if importlib.util.find_spec(t) is not None]
    return ["floor", "sqlmig", *extra]


def _rows(table: str, measure: str) -> dict[str, list[str]]:
    """Cells of the printed table rows named ``measure``, by backend."""
    found = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and cells[0] == measure:
            found[cells[1]] = cells[2:]
    return found


@pytest.mark.bench
def test_quick_run_measures_every_tool_on_sqlite_and_postgresql(tmp_path: Path) -> None:
    backends = ["sqlite"]
    pg = _postgres_url()
    args = ["--sizes", "20", "--repeat", "1", "--import-repeat", "1", "--pad-kib", "0"]
    if pg is not None:
        backends.append("postgresql")
        args += ["--pg-url", pg]
    tools = _tools()

    table, data = _run(tmp_path, *args, "--backends", *backends, "--tools", *tools)

    assert "## N = 20 (median of 1 round(s), the start-up check 3 times in each; ratio = " in table
    for measure in (
        "upgrade, whole process",
        "start-up check, whole process",
        "start-up check, after import",
        "downgrade to base, whole process",
        "upgrade, peak RSS",
    ):
        rows = _rows(table, measure)
        assert sorted(rows) == sorted(backends), measure
        for cells in rows.values():
            assert len(cells) == len(tools) and "-" not in cells, (measure, cells)
            assert all(cell.endswith("x)") for cell in cells[1:]), cells  # ratio to the floor
    if pg is not None:
        commits = _rows(table, "upgrade, commits seen by server")["postgresql"]
        assert all("/step" in cell for cell in commits)
    assert "| sqlmig | +" in table  # import sqlmig after import sqlalchemy
    assert "Goals for sqlmig (N=20" in table
    records = data["records"]
    assert isinstance(records, list)
    measured = {(r["tool"], r["backend"], r["action"]) for r in records}
    for tool in tools:
        for backend in backends:
            for action in ("upgrade", "check", "downgrade"):
                assert (tool, backend, action) in measured


@pytest.mark.bench
def test_quick_flag_runs_twenty_steps_once_on_sqlite(tmp_path: Path) -> None:
    table, data = _run(tmp_path, "--quick", "--backends", "sqlite", "--tools", "floor", "sqlmig")

    assert "## N = 20 (median of 1 round(s)" in table
    records = data["records"]
    assert isinstance(records, list)
    assert {r["n"] for r in records if r["action"] != "import"} == {20}
    assert {r["tool"] for r in records} == {"floor", "sqlmig"}
    assert "postgresql" not in {r["backend"] for r in records}


def test_a_figure_measured_once_a_round_pairs_with_the_floors_runs_of_that_round() -> None:
    Figures = _benchmark_module("report").Figures

    def run(tool: str, action: str, seconds: float) -> SimpleNamespace:
        return SimpleNamespace(n=10, backend="sqlite", tool=tool, action=action, wall_s=seconds)

    records = [  # round 1, then round 2 (twice as slow): the floor checks 3 times a round
        *(run("floor", "check", s) for s in (1.0, 1.2, 1.1)),
        run("sqlmig", "check-padded", 1.1),
        *(run("floor", "check", s) for s in (2.0, 2.2, 2.1)),
        run("sqlmig", "check-padded", 4.2),
    ]
    figures = Figures(records)

    ratio = figures.ratio(10, "sqlite", "sqlmig", "check-padded", lambda r: r.wall_s, "check")

    assert ratio == pytest.approx((1.1 / 1.1 + 4.2 / 2.1) / 2)  # 1.0 and 2.0: their median


@pytest.mark.bench
def test_per_step_script_prints_both_tools_and_what_sqlmig_adds() -> None:
    script = ROOT / "benchmarks" / "per_step.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--n", "5", "--rounds", "2", "--action", "downgrade"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "downgrade of 5 steps on sqlite, 2 rounds, per step:"
    assert [line.split()[0] for line in lines[2:4]] == ["floor", "sqlmig"]
    assert "ms of CPU per step; wall, paired:" in lines[4]


def test_each_pair_of_rounds_lets_every_tool_go_before_and_after_every_other() -> None:
    turns = _benchmark_module("run").turns
    tools = ["floor", "sqlmig", "alembic", "yoyo"]

    for first in range(0, 8, 2):
        one, two = turns(tools, first), turns(tools, first + 1)
        assert sorted(one) == sorted(tools) and two == one[::-1]
    assert [turns(tools, rep)[0] for rep in range(0, 8, 2)] == tools  # each leads a pair


def test_padded_files_are_told_against_the_floor_of_the_same_phase_and_not_judged() -> None:
    report = _benchmark_module("report")
    Figures, _goals = report.Figures, report._goals

    def run(tool: str, action: str, seconds: float) -> SimpleNamespace:
        return SimpleNamespace(
            n=1000, backend="sqlite", tool=tool, action=action, work_s=seconds, wall_s=seconds
        )

    # the machine runs twice as slow in the padded phase: sqlmig's check follows the floor's
    records = [
        run("floor", "check", 0.006), run("sqlmig", "check", 0.012),
        run("floor", "check-padded", 0.012), run("sqlmig", "check-padded", 0.024),
    ]  # fmt: skip

    lines = _goals(Figures(records), [1000], ["sqlite"], "sqlmig")

    padded = [line for line in lines if "padded files" in line]
    assert padded == [
        "  n/a  start-up check on sqlite with padded files: 1.00x the plain files', "
        "each against the floor (no goal: every start reads each file's bytes for its checksum)"
    ]


@pytest.mark.bench
def test_drift_script_times_both_checks_and_prints_the_ratio() -> None:
    pytest.importorskip("alembic")
    script = ROOT / "benchmarks" / "drift.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--tables", "5", "--rounds", "1", "--backends", "sqlite"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "## check of 5 tables that match (median of 1 round(s))"
    assert lines[2] == "| backend | sqlmig check | alembic check | ratio (paired) |"
    assert lines[4].startswith("| sqlite | ") and lines[4].endswith("x |")
    assert lines[-1].startswith(("PASS sqlmig check <= 1.1x", "FAIL sqlmig check <= 1.1x"))


@pytest.mark.bench
def test_xdist_setup_script_times_both_ways_and_prints_the_ratio() -> None:
    pg = _postgres_url()
    if pg is None:
        pytest.skip("the workers' databases are PostgreSQL's: no server configured")
    script = ROOT / "benchmarks" / "xdist_setup.py"
    args = ["--workers", "2", "--steps", "5", "--rounds", "1", "--pg-url", pg]

    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("## 2 workers, 5 steps, PostgreSQL (median of 1 round(s))")
    rows = {
        cells[0]: cells[1:]
        for line in out.splitlines()
        if line.startswith("| ")
        for cells in [[c.strip() for c in line.strip().strip("|").split("|")]]
    }
    for way in ("clone", "migrate each"):
        assert rows[way][0].endswith(" s") and len(rows[way][1].split(", ")) == 1, rows
    assert "ratio: clone / migrate each = " in out and "(goal: <= 0.25x) " in out


@pytest.mark.bench
def test_sql_split_script_checks_every_case_and_times_both_splitters() -> None:
    script = ROOT / "benchmarks" / "sql_split.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--rows", "200", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "## exactness: each case split as its database splits it"
    total = next(line for line in lines if line.startswith("| all |"))
    assert total.startswith("| all | | 14/14 |")
    assert any(line.startswith("## speed: 200 statements") for line in lines)
    assert any(line.startswith("| sqlmig | ") and line.endswith("| 1.00x |") for line in lines)

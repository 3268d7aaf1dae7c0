"""Names of the workers' databases: whose run they are, and whether that run is gone."""

from __future__ import annotations

import subprocess
import sys

from sqlmig._pytest_runs import Run, this_host


def test_a_run_whose_process_lives_on_is_left_alone() -> None:
    mine = Run.new()
    elsewhere = Run("000000" if this_host() != "000000" else "ffffff", 1, "abcdef")

    assert Run.of(mine.name("gw3")) == mine and Run.of(f"{mine.name('gw3')}.db") == mine
    assert Run.of("sqlmig_1a2b3c4d5e6f") is None  # the suite's own fresh databases
    assert not mine.gone() and not elsewhere.gone()
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert Run(this_host(), int(finished.stdout), "abcdef").gone()

"""A step whose code is not a Python module: a ``Migration`` with a loader of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from backends import Backend
from conftest import tables
from sqlmig import MigrationFailed, MigrationRunner, MigrationSourceError
from sqlmig._migration import Migration, StepCode


class LinesLoader:
    """A made-up file kind: each line of the file is one statement; no down."""

    def __init__(self, refuse: str | None = None) -> None:
        self.loaded: list[str] = []
        self.readied: list[str] = []
        self.refuse = refuse

    def read(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def describe(self, path: str) -> str:
        return "statements, one a line"

    def check(self, path: str, version: str, dialect: str | None) -> None:
        pass

    def step(self, path: str, version: str, name: str) -> StepCode:
        self.loaded.append(path)
        lines = Path(path).read_text().splitlines()
        failed_at: dict[int, int] = {}

        def up(conn: Connection) -> None:
            for number, line in enumerate(lines, start=1):
                try:
                    conn.execute(text(line))
                except Exception as exc:
                    failed_at[id(exc)] = number
                    raise

        def prepare(dialect: str) -> None:
            self.readied.append(dialect)
            if dialect == self.refuse:
                raise MigrationSourceError(f"{path}: not for {dialect}")

        return StepCode(up=up, locate=lambda error: failed_at.get(id(error)), prepare=prepare)


def lines_step(tmp_path: Path, loader: LinesLoader, *lines: str, version: str = "001") -> Migration:
    path = tmp_path / f"{version}_lines.txt"
    path.write_text("\n".join(lines))
    return Migration(version, "lines", path=str(path), loader=loader, checksum="made up")


def test_a_step_of_another_file_kind_loads_only_when_it_runs(
    backend: Backend, tmp_path: Path
) -> None:
    loader = LinesLoader()
    step = lines_step(tmp_path, loader, "CREATE TABLE a (id INT)", "CREATE TABLE b (id INT)")
    runner = MigrationRunner(backend.url, [step])

    assert runner.status().pending == [step]
    assert step.description == "statements, one a line"
    assert loader.loaded == []

    runner.upgrade()

    assert loader.loaded == [step.path]
    assert {"a", "b"} <= tables(backend)


def test_its_failure_names_the_line_its_loader_locates(backend: Backend, tmp_path: Path) -> None:
    loader = LinesLoader()
    step = lines_step(tmp_path, loader, "CREATE TABLE a (id INT)", "CREATE TABLE a (id INT)")
    runner = MigrationRunner(backend.url, [step])

    with pytest.raises(MigrationFailed, match=r"001_lines\.txt:2:") as failed:
        runner.upgrade()

    assert (failed.value.path, failed.value.line) == (step.path, 2)


def test_without_a_line_from_its_loader_the_traceback_gives_it(tmp_path: Path) -> None:
    def up(conn: Connection) -> None:
        raise RuntimeError("boom")

    step = Migration("001", "code", up=up)

    with pytest.raises(RuntimeError) as raised:
        step.up(None)  # type: ignore[arg-type]

    path, line = step.where(raised.value, step.up)
    assert path == __file__
    assert line == up.__code__.co_firstlineno + 1


def test_a_step_its_database_cannot_run_stops_the_run_before_anything_is_written(
    backend: Backend, tmp_path: Path
) -> None:
    dialect = backend.engine().dialect.name
    loader = LinesLoader(refuse=dialect)
    first = Migration("001", "first", up=lambda conn: conn.execute(text("CREATE TABLE a (id INT)")))
    second = lines_step(tmp_path, loader, "CREATE TABLE b (id INT)", version="002")
    runner = MigrationRunner(backend.url, [first, second])

    with pytest.raises(MigrationSourceError, match="not for"):
        runner.upgrade()

    assert loader.readied == [dialect]
    assert tables(backend) == set()


class SlowLoader(LinesLoader):
    """Loads slowly, counting its loads, so threads that load one step together overlap."""

    def step(self, path: str, version: str, name: str) -> StepCode:
        import time

        time.sleep(0.2)
        return super().step(path, version, name)


def test_threads_loading_one_step_at_once_load_it_once_and_each_sees_all_of_it(
    tmp_path: Path,
) -> None:
    import threading

    path = tmp_path / "001_lines.lines"
    path.write_text("CREATE TABLE t (x INTEGER)\n")
    loader = SlowLoader()
    migration = Migration("001", "lines", path=str(path), loader=loader)
    start = threading.Barrier(8)
    seen: list[object] = []

    def load() -> None:
        start.wait()
        seen.append(migration.up)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert loader.loaded == [str(path)]
    assert len(seen) == 8 and all(fn is seen[0] for fn in seen)

"""Real Alembic histories run by sqlmig, compared with Alembic's own run.

Each history is a released package's revision folder, fetched from the package
registry into a cache folder (``pip download --no-deps``, only the revisions
unzipped; nothing of it is kept in this repository). For each history and
backend (SQLite, and PostgreSQL when ``--postgres-url`` or
``SQLMIG_TEST_POSTGRES_URL`` names a server):

- revision by revision, Alembic's ``upgrade <rev>`` on one database and
  sqlmig's ``upgrade(<position>)`` on another, the reflected schemas compared
  after each (tables, columns, types, nullability, primary keys, indexes,
  foreign keys): "match" counts the revisions whose schemas agree;
- the whole chain from empty, timed for each tool (best of ``--repeat``);
- ``downgrade`` step by step, as far as Alembic itself gets, both compared;
- adoption: Alembic upgrades half way, sqlmig takes over and finishes, and
  the schema is compared with Alembic's head.

    python benchmarks/alembic_histories.py [--postgres-url URL] [--cache DIR]

Prints one table; exits 1 when any schema differs, 2 when the registry
cannot be reached (nothing measured).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, inspect, make_url, text
from sqlalchemy.exc import SAWarning

from sqlmig import MigrationFailed, MigrationRunner

IGNORED = {"alembic_version", "migrations"}  # each tool's own bookkeeping


@dataclass(frozen=True)
class History:
    """A released package's Alembic revisions: where they are inside its wheel."""

    package: str
    version: str
    #: the versions folder inside the wheel; ``{dialect}`` in it: a chain per
    #: database, each run on its own (``sqlite``, ``postgresql``)
    folder: str
    #: what its revisions import besides SQLAlchemy and Alembic: the package itself
    #: and its dependencies, installed into the cache (put on sys.path by the
    #: project's prepend_sys_path while revisions run, as Alembic does)
    imports: tuple[str, ...] = ()
    #: install ``imports`` with their own dependencies (those that bring no
    #: second SQLAlchemy or Alembic), else exactly the ones listed
    with_dependencies: bool = False
    #: "module:attribute" of a declarative base whose tables the project
    #: creates before its first revision runs (as the project itself does)
    initial: str | None = None


#: Pinned: the figures are for these releases.
HISTORIES = [
    History(
        "optuna",
        "5.1.0",
        "optuna/storages/_rdb/alembic/versions",
        ("optuna==5.1.0", "numpy", "colorlog", "tqdm", "PyYAML"),
    ),
    History(
        "mlflow-skinny",
        "3.18.0",
        "mlflow/store/db_migrations/versions",
        ("mlflow-skinny==3.18.0",),  # its revisions import its models
        with_dependencies=True,
        initial="mlflow.store.tracking.dbmodels.initial_models:Base",
    ),
    History(
        "prefect",
        "3.9.1",
        "prefect/server/database/_migrations/versions/{dialect}",
        ("prefect==3.9.1",),  # its revisions use its column types and block schemas
        with_dependencies=True,
    ),
]

#: Left out of an install with dependencies: the SQLAlchemy and Alembic measured are
#: the ones this script runs on (imported before any revision, so never the copies)
OWN = ("sqlalchemy", "alembic")

ENV_PY = """\
from alembic import context
from sqlalchemy import create_engine

engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""


class Unreachable(Exception):
    """The package registry could not be reached: nothing to measure."""


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def fetch(history: History, cache: Path) -> tuple[Path, Path | None]:
    """The versions folder of ``history`` (the parent of its ``{dialect}`` folders),
    downloaded and unzipped into ``cache`` once, and the folder its revisions
    import from (None when they need nothing more)."""
    target = cache / f"{history.package}-{history.version}"
    inside = history.folder.split("/{dialect}")[0]
    versions = target / inside
    site = target / "site" if history.imports else None
    if site is not None and not (site / ".complete").exists():
        deps = () if history.with_dependencies else ("--no-deps",)
        proc = _pip("install", *deps, "--target", str(site), *history.imports)
        if proc.returncode != 0:
            raise Unreachable(f"pip install {history.imports} failed: {proc.stderr[-300:]}")
        for entry in site.iterdir():
            if entry.name.lower().split("-")[0] in OWN:
                shutil.rmtree(entry)
        (site / ".complete").touch()
    if versions.is_dir():
        return versions, site
    download = cache / "wheels"
    download.mkdir(parents=True, exist_ok=True)
    spec = f"{history.package}=={history.version}"
    proc = _pip("download", "--no-deps", "--only-binary=:all:", "-d", str(download), spec)
    wheels = sorted(download.glob(f"{history.package.replace('-', '_')}-{history.version}-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise Unreachable(f"pip download {spec} failed: {proc.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        members = [n for n in wheel.namelist() if n.startswith(inside + "/")]
        wheel.extractall(target, members)
    return versions, site


def project(versions: Path, site: Path | None, where: Path) -> Path:
    """An alembic.ini of our own around ``versions``: its env.py is a plain online one."""
    script = where / "script"
    script.mkdir(parents=True, exist_ok=True)
    (script / "env.py").write_text(ENV_PY)
    ini = where / "alembic.ini"
    ini.write_text(
        f"[alembic]\nscript_location = {script}\nversion_locations = {versions}\n"
        "path_separator = os\nsqlalchemy.url = sqlite://\n"
        + (f"prepend_sys_path = {site}\n" if site else "")
    )
    return ini


def alembic_command(ini: Path, url: str, command: str, target: str) -> None:
    from alembic import command as commands
    from alembic.config import Config

    config = Config(str(ini))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    getattr(commands, command)(config, target)


def schema(url: str) -> dict[str, Any]:
    """The reflected schema, as plain data comparable across two databases
    (indexes on expressions, which SQLAlchemy does not reflect, left out)."""
    engine = create_engine(url)
    try:
        found = inspect(engine)
        dialect = engine.dialect
        tables: dict[str, Any] = {}
        for name in sorted(set(found.get_table_names()) - IGNORED):
            columns = [
                (c["name"], c["type"].compile(dialect=dialect), c["nullable"])
                for c in found.get_columns(name)
            ]
            indexes = sorted(  # an index on expressions (PostgreSQL): its expressions
                (tuple(map(str, i.get("expressions") or i["column_names"])), bool(i["unique"]))
                for i in found.get_indexes(name)
            )
            fks = sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in found.get_foreign_keys(name)
            )
            pk = tuple(found.get_pk_constraint(name)["constrained_columns"])
            tables[name] = {"columns": columns, "indexes": indexes, "fks": fks, "pk": pk}
        return tables
    finally:
        engine.dispose()


def difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The first difference between two schemas, or ''."""
    if set(a) != set(b):
        return f"tables {sorted(set(a) ^ set(b))}"
    for name in a:
        for part in ("columns", "indexes", "fks", "pk"):
            if a[name][part] != b[name][part]:
                return f"{name}.{part}: {a[name][part]} != {b[name][part]}"
    return ""


def _initial_tables(history: History, site: Path | None, url: str) -> None:
    """The tables the project creates itself before its first revision, if any."""
    if history.initial is None:
        return
    import importlib

    if site is not None and str(site) not in sys.path:
        sys.path.insert(0, str(site))
    module, _, attribute = history.initial.partition(":")
    base = getattr(importlib.import_module(module), attribute)
    engine = create_engine(url)
    try:
        base.metadata.create_all(engine)
    finally:
        engine.dispose()


@contextmanager
def database(backend: str, folder: Path, admin: Engine | None) -> Iterator[str]:
    """A new empty database's URL, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'{uuid.uuid4().hex[:8]}.db'}"
        return
    assert admin is not None
    name = f"sqlmig_hist_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Row:
    history: str
    backend: str
    revisions: int
    matched: int = 0  # of the revisions after which the schemas were compared
    compared: int = 0
    alembic_s: float = 0.0
    sqlmig_s: float = 0.0
    downgraded: str = ""
    adopted: str = ""
    stopped: str = ""  # where Alembic's own upgrade failed, if it did
    problems: list[str] = field(default_factory=list)


def measure(
    history: History,
    fetched: tuple[Path, Path | None],
    backend: str,
    admin: Engine | None,
    repeat: int,
    every: int = 1,
) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        versions, site = fetched
        if "{dialect}" in history.folder:  # this database's own chain
            versions = versions / (backend + history.folder.split("/{dialect}", 1)[1])
        ini = project(versions, site, folder)
        steps = MigrationRunner("sqlite:///unused.db", f"alembic:{ini}").migrations()
        revisions = [getattr(m, "revision") for m in steps]  # noqa: B009
        row = Row(f"{history.package} {history.version}", backend, len(steps))

        @contextmanager
        def fresh() -> Iterator[str]:
            with database(backend, folder, admin) as url:
                _initial_tables(history, fetched[1], url)
                yield url

        # revision by revision, as far as Alembic itself gets
        with fresh() as a, fresh() as b:
            runner = MigrationRunner(b, f"alembic:{ini}")
            for position, rev in enumerate(revisions, start=1):
                try:
                    alembic_command(ini, a, "upgrade", rev)
                except Exception as exc:  # Alembic's own run stops here: so must sqlmig's
                    row.stopped = f"{position} {rev} ({type(exc).__name__})"
                    try:
                        runner.upgrade(str(position))
                    except MigrationFailed:
                        # a step outside a transaction (autocommit_block) leaves its row
                        # failed: nothing of it ran, so it is forgotten before going down
                        runner.repair()
                    else:
                        row.problems.append(f"{rev}: Alembic failed, sqlmig applied it")
                    revisions = revisions[: position - 1]
                    break
                runner.upgrade(str(position))
                if position % every and position != len(revisions):
                    continue  # Alembic's upgrade loads every revision each time: checkpoints
                row.compared += 1
                problem = difference(schema(a), schema(b))
                if problem:
                    row.problems.append(f"after {position} ({rev}): {problem}")
                else:
                    row.matched += 1
            head = schema(a)
            # downgrade, step by step, as far as Alembic gets
            reached = len(revisions)
            while reached > 0:
                target = revisions[reached - 2] if reached > 1 else "base"
                try:
                    alembic_command(ini, a, "downgrade", target)
                except Exception as exc:  # Alembic's own downgrade stops here
                    row.downgraded = f"{len(revisions) - reached} (Alembic: {type(exc).__name__})"
                    break
                runner.downgrade(str(reached - 1) if reached > 1 else "base")
                reached -= 1
                if reached % every and reached:
                    continue
                problem = difference(schema(a), schema(b))
                if problem:
                    row.problems.append(f"downgraded to {reached}: {problem}")
            else:
                row.downgraded = f"{len(revisions)} (all)"
        # the whole chain from empty, each tool on its own database
        alembic_times, sqlmig_times = [], []
        for _ in range(repeat):
            with fresh() as a, fresh() as b:
                started = time.perf_counter()
                alembic_command(ini, a, "upgrade", revisions[-1])
                alembic_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                MigrationRunner(b, f"alembic:{ini}").upgrade(str(len(revisions)))
                sqlmig_times.append(time.perf_counter() - started)
        row.alembic_s, row.sqlmig_s = min(alembic_times), min(sqlmig_times)
        # adoption: Alembic half way, sqlmig finishes
        half = len(revisions) // 2
        with fresh() as c:
            alembic_command(ini, c, "upgrade", revisions[half - 1])
            applied = MigrationRunner(c, f"alembic:{ini}").upgrade(str(len(revisions)))
            problem = difference(head, schema(c))
            ran = [int(m.version) for m in applied]
            if problem or ran != list(range(half + 1, len(revisions) + 1)):
                row.problems.append(f"adoption at {half}: ran {ran}; {problem}")
                row.adopted = "no"
            else:
                row.adopted = f"at {half}, ran {len(ran)}"
        return row


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", default=os.environ.get("SQLMIG_TEST_POSTGRES_URL"))
    parser.add_argument("--cache", default=os.environ.get("SQLMIG_HISTORY_CACHE"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", help="one package name")
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        help="compare the schemas after every Nth revision (and the last); 1: after each",
    )
    args = parser.parse_args(argv)
    cache = Path(args.cache or Path(tempfile.gettempdir()) / "sqlmig-alembic-histories")
    admin = None
    wanted = args.backends.split(",")
    backends = ["sqlite"] if "sqlite" in wanted else []
    if args.postgres_url and "postgresql" in wanted:
        admin = create_engine(make_url(args.postgres_url), isolation_level="AUTOCOMMIT")
        backends.append("postgresql")
    rows: list[Row] = []
    try:
        for history in HISTORIES:
            if args.only and history.package != args.only:
                continue
            try:
                fetched = fetch(history, cache)
            except (Unreachable, subprocess.TimeoutExpired) as exc:
                print(f"registry unreachable, nothing measured: {exc}", file=sys.stderr)
                return 2
            for backend in backends:
                row = measure(history, fetched, backend, admin, args.repeat, args.every)
                rows.append(row)
                print(  # progress: a long history takes minutes per database
                    f"{row.history} {backend}: {row.matched}/{row.compared} match, "
                    f"{len(row.problems)} problem(s)",
                    file=sys.stderr,
                )
    finally:
        if admin is not None:
            admin.dispose()
    header = (
        f"{'history':<18} {'backend':<10} {'revs':>4} {'match':>7} {'alembic s':>9} "
        f"{'sqlmig s':>9} {'ratio':>6}  {'downgraded':<22} adoption"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = r.sqlmig_s / r.alembic_s if r.alembic_s else 0.0
        print(
            f"{r.history:<18} {r.backend:<10} {r.revisions:>4} {f'{r.matched}/{r.compared}':>7} "
            f"{r.alembic_s:>9.3f} {r.sqlmig_s:>9.3f} {ratio:>6.2f}  {r.downgraded:<22} {r.adopted}"
        )
    problems = [f"{r.history} {r.backend}: {p}" for r in rows for p in r.problems]
    for r in rows:
        if r.stopped:  # sqlmig stopped there too, or a problem says otherwise
            print(
                f"{r.history} {r.backend}: Alembic's own upgrade stops at {r.stopped}; sqlmig too"
            )
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

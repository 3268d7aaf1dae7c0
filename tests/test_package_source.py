"""Migrations shipped inside an installed wheel are found through importlib.resources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from sqlmig._cli import main

FILES = {
    "tinyapp/__init__.py": "",
    "tinyapp/migrations/__init__.py": "",
    "tinyapp/migrations/001_create_notes.py": (
        '"""Create notes."""\nfrom sqlalchemy import text\n\n'
        "def up(conn):\n    conn.execute(text('CREATE TABLE notes (id INTEGER PRIMARY KEY)'))\n"
    ),
}


def build_wheel(dist: Path) -> Path:
    """A minimal, valid wheel of the package above (PEP 427), built without network."""
    info = "tinyapp-1.0.dist-info"
    files = {
        **FILES,
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: tinyapp\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = [f"{name},," for name in [*files, f"{info}/RECORD"]]
    dist.mkdir()
    wheel = dist / "tinyapp-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def test_a_package_installed_from_a_wheel_is_a_migrations_source(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    db = tmp_path / "app.db"

    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from sqlmig import MigrationRunner; "
            f"r = MigrationRunner({'sqlite:///' + str(db)!r}, 'tinyapp.migrations'); "
            "print([m.label for m in r.upgrade()], r.status().applied[0].checksum is not None)",
        ],
        cwd=tmp_path,  # not the source tree: the package comes from the installed wheel
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )

    assert run.stdout.strip() == "['001_create_notes'] True"
    engine = create_engine(f"sqlite:///{db}")
    assert "notes" in inspect(engine).get_table_names()
    engine.dispose()


# -- the command line and a package in the current directory ------------------


def package_project(root: Path, package: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose config names ``<package>.migrations``; runs in ``root``.

    Each test uses its own package name: a package, once imported, stays in
    ``sys.modules`` for the rest of the session.
    """
    (root / package / "migrations").mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "migrations" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text(
        f'[tool.sqlmig]\nurl = "sqlite:///app.db"\nmigrations = "{package}.migrations"\n'
    )
    monkeypatch.chdir(root)
    return root / package / "migrations"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_new_writes_into_the_package_named_in_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    package = unique("svc")
    folder = package_project(tmp_path, package, monkeypatch)
    sys_path = list(sys.path)

    assert main(["new", "create notes"]) == 0
    assert capsys.readouterr().out == f"Created {package}/migrations/001_create_notes.py\n"
    assert [p.name for p in folder.glob("0*.py")] == ["001_create_notes.py"]
    assert not (tmp_path / f"{package}.migrations").exists()  # no folder named like the package
    assert sys.path == sys_path  # the current directory was importable for the command only

    assert main(["upgrade"]) == 0
    assert "Applied 1 migration(s)" in capsys.readouterr().out
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(m["version"], m["state"]) for m in status["migrations"]] == [("001", "applied")]


def test_a_package_beats_a_folder_named_like_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    package = unique("svc")
    folder = package_project(tmp_path, package, monkeypatch)
    (folder / "001_real.py").write_text("def up(conn): pass\n")
    decoy = tmp_path / f"{package}.migrations"  # what an older sqlmig new created
    decoy.mkdir()
    (decoy / "001_decoy.py").write_text("def up(conn): pass\n")

    assert main(["status", "--json"]) == 0
    names = [m["name"] for m in json.loads(capsys.readouterr().out)["migrations"]]
    assert names == ["real"]


@pytest.mark.parametrize("command", [["new", "first"], ["status"], ["upgrade"]])
def test_a_dotted_name_that_is_neither_package_nor_folder_is_a_source_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"{unique('nopkg')}.migrations"

    assert main(["--url", "sqlite:///app.db", "--dir", name, *command]) == 2

    err = capsys.readouterr().err
    assert err == (
        f"sqlmig: error: migrations source {name!r} is neither an importable package "
        "nor a folder: check the name (the command line imports packages from the "
        "current directory) or give a folder path\n"
    )
    assert list(tmp_path.iterdir()) == []  # no folder, no database file


def test_python_m_and_the_script_find_the_same_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = unique("svc")
    folder = package_project(tmp_path, package, monkeypatch)
    (folder / "001_a.py").write_text("def up(conn): pass\n")
    script = Path(sys.executable).with_name("sqlmig")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQLMIG_", "PYTHONPATH"))}

    for command in ([str(script)], [sys.executable, "-m", "sqlmig"]):
        run = subprocess.run(
            [*command, "status", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["migrations"][0]["name"] == "a"


def test_sql_migrations_inside_a_zipped_package_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = unique("zipped")
    archive = tmp_path / "app.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{package}/__init__.py", "")
        zf.writestr(f"{package}/migrations/__init__.py", "")
        zf.writestr(
            f"{package}/migrations/001_notes.sql",
            "-- Notes.\n-- migrate:up\nCREATE TABLE n (id INT);\nINSERT INTO nope VALUES (1);\n",
        )
    monkeypatch.syspath_prepend(str(archive))
    db = tmp_path / "app.db"
    from sqlmig import MigrationFailed, MigrationRunner

    runner = MigrationRunner(f"sqlite:///{db}", f"{package}.migrations")

    assert runner.migrations()[0].description == "Notes."
    with pytest.raises(MigrationFailed, match=r"001_notes\.sql:4: "):
        runner.upgrade()

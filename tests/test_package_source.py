"""Migrations shipped inside an installed wheel are found through importlib.resources."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from sqlalchemy import create_engine, inspect

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
            f"r = MigrationRunner({str(db)!r}, 'tinyapp.migrations'); "
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

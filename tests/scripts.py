"""SQL scripts (``upgrade --sql``) applied as a database's client applies them."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from sqlalchemy import create_engine

from backends import Backend


def statements(script: str) -> list[str]:
    """The script's statements, as a client sends them: comments left out, split at ``;``."""
    found: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if not current and (not line.strip() or line.startswith("--")):
            continue
        current.append(line)
        if line.endswith(";"):
            found.append("\n".join(current).removesuffix(";"))
            current = []
    assert not current, f"an unterminated statement: {current}"
    return found


def apply(backend: Backend, script: str) -> None:
    """Run the script's statements one by one through the driver, as a client would."""
    engine = create_engine(backend.url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements(script):
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def apply_with_client(backend: Backend, script: str) -> None:
    """Run the script with the database's own client (``sqlite3``, ``psql``, ``mysql``),
    stopping at the first error; skipped where the client is not installed."""
    url = backend.url
    if backend.name == "sqlite":
        command = ["sqlite3", "-bail", str(url.database)]
    elif backend.name == "postgresql":
        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        command = ["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", libpq]
    else:
        command = ["mysql", f"--host={url.host}", f"--port={url.port or 3306}"]
        command += [f"--user={url.username}", str(url.database)]
        if url.password:
            command.insert(1, f"--password={url.password}")
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed")
    done = subprocess.run(command, input=script, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr

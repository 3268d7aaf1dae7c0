"""SQL scripts (``upgrade --sql``) applied as a database's client applies them."""

from __future__ import annotations

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

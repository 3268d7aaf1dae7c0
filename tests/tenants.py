"""Several databases for one test, and steps that show how often they ran.

``tenant_databases`` gives a test a few fresh databases on one backend (SQLite
files, or databases created on the server with the ``sqlmig_`` prefix and
dropped afterwards). ``COUNTED_STEPS`` are migration files whose every run
leaves a row in the table ``hits``, so a test can tell that each step ran once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from backends import Backend, fresh_database

COUNTED_STEPS = {
    "001_hits.py": """\
        '''The table each step leaves its mark in.'''
        def up(conn):
            conn.exec_driver_sql("CREATE TABLE hits (version VARCHAR(10) NOT NULL)")
            conn.exec_driver_sql("INSERT INTO hits (version) VALUES ('001')")

        def down(conn):
            conn.exec_driver_sql("DROP TABLE hits")
        """,
    **{
        f"00{n}_step{n}.py": f"""\
            def up(conn):
                conn.exec_driver_sql("INSERT INTO hits (version) VALUES ('00{n}')")

            def down(conn):
                conn.exec_driver_sql("DELETE FROM hits WHERE version = '00{n}'")
            """
        for n in (2, 3)
    },
}


@contextmanager
def tenant_databases(name: str, tmp_path: Path, count: int) -> Iterator[list[Backend]]:
    """``count`` fresh, empty databases on backend ``name``, dropped afterwards."""
    with ExitStack() as stack:
        found = []
        for i in range(count):
            folder = tmp_path / f"tenant{i}"
            folder.mkdir(exist_ok=True)
            found.append(stack.enter_context(fresh_database(name, folder)))
        yield found


def hits(url: object, schema: str | None = None) -> list[str]:
    """The versions in the ``hits`` table (of ``schema``), sorted; [] when there is none."""
    engine = create_engine(make_url(str(url)) if isinstance(url, str) else url)  # type: ignore[arg-type]
    try:
        with engine.connect() as conn:
            table = "hits"
            if schema is not None:
                table = f"{conn.dialect.identifier_preparer.quote_identifier(schema)}.hits"
            try:
                rows = conn.execute(text(f"SELECT version FROM {table}")).scalars().all()
            except Exception:
                return []
            return sorted(rows)
    finally:
        engine.dispose()

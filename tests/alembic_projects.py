"""Small Alembic projects written by tests: an alembic.ini, an env.py that must
never run, and revision files in ``versions/``."""

from __future__ import annotations

import textwrap
from pathlib import Path

#: Alembic's own env.py, online mode only; it refuses to run unless a test lets
#: Alembic itself run it, so a sqlmig run that ran it would fail.
ENV_PY = """\
import os

from alembic import context
from sqlalchemy import create_engine

if os.environ.get("ALEMBIC_ITSELF") != "1":
    raise RuntimeError("env.py ran: sqlmig must never run it")

config = context.config
engine = create_engine(config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    # the version table named in alembic.ini, where sqlmig reads it too
    context.configure(
        connection=connection,
        version_table=config.get_main_option("version_table", "alembic_version"),
        version_table_schema=config.get_main_option("version_table_schema"),
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""

INI = """\
[alembic]
script_location = %(here)s/{script}
prepend_sys_path = .
path_separator = os
sqlalchemy.url = sqlite:///never-used.db
"""


def revision(
    rev: str,
    down: str | None,
    upgrade: str,
    downgrade: str = "pass",
    *,
    message: str = "",
    header: str = "",
) -> str:
    """The text of a revision file, as ``alembic revision`` writes one."""
    body_up = textwrap.indent(textwrap.dedent(upgrade).strip(), "    ")
    body_down = textwrap.indent(textwrap.dedent(downgrade).strip(), "    ")
    return (
        f'"""{message or rev}\n\nRevision ID: {rev}\nRevises: {down}\n"""\n'
        "from typing import Sequence, Union\n\n"
        "import sqlalchemy as sa\n"
        "from alembic import context, op\n"
        f"{textwrap.dedent(header)}\n"
        f"revision: str = {rev!r}\n"
        f"down_revision: Union[str, None] = {down!r}\n"
        "branch_labels: Union[str, Sequence[str], None] = None\n"
        "depends_on: Union[str, Sequence[str], None] = None\n\n\n"
        f"def upgrade() -> None:\n{body_up}\n\n\n"
        f"def downgrade() -> None:\n{body_down}\n"
    )


def write_project(
    root: Path, files: dict[str, str], *, script: str = "alembic", ini: str | None = None
) -> Path:
    """An Alembic project under ``root``; returns the path of its alembic.ini."""
    versions = root / script / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    (root / script / "env.py").write_text(ENV_PY)
    for name, text in files.items():
        (versions / name).write_text(text)
    path = root / "alembic.ini"
    path.write_text(ini if ini is not None else INI.format(script=script))
    return path


#: A linear chain of four revisions: a table, a column by batch mode, a data
#: migration, a dialect branch. File names do not sort in chain order.
CHAIN = {
    "d4_index.py": revision(
        "d4",
        "c3",
        """
        if op.get_context().dialect.name == "postgresql":
            op.execute("CREATE INDEX ix_account_name_lower ON account (lower(name))")
        else:
            op.create_index("ix_account_name_lower", "account", ["name"])
        """,
        'op.drop_index("ix_account_name_lower", table_name="account")',
        message="dialect branch",
    ),
    "a1_account.py": revision(
        "a1",
        None,
        """
        op.create_table(
            "account",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(50), nullable=False),
        )
        """,
        'op.drop_table("account")',
        message="create account",
    ),
    "c3_fill.py": revision(
        "c3",
        "b2",
        """
        assert not context.is_offline_mode()
        account = sa.table("account", sa.column("id"), sa.column("name"), sa.column("email"))
        op.bulk_insert(account, [{"id": 1, "name": "ada", "email": None}])
        op.get_bind().execute(account.update().values(email=account.c.name + "@example.org"))
        """,
        'op.execute("DELETE FROM account")',
        message="data migration",
    ),
    "b2_email.py": revision(
        "b2",
        "a1",
        """
        with op.batch_alter_table("account") as batch:
            batch.add_column(sa.Column("email", sa.String(100), nullable=True))
            batch.alter_column("name", type_=sa.String(80), existing_nullable=False)
        """,
        """
        with op.batch_alter_table("account") as batch:
            batch.drop_column("email")
        """,
        message="email by batch",
    ),
}


def alembic_upgrade(ini: Path, url: str, target: str, *, command_name: str = "upgrade") -> None:
    """Alembic's own ``upgrade`` (or ``command_name``: ``stamp``, ``downgrade``) of the
    project at ``ini`` (its env.py allowed to run)."""
    import os

    from alembic import command
    from alembic.config import Config

    config = Config(str(ini))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    os.environ["ALEMBIC_ITSELF"] = "1"
    try:
        getattr(command, command_name)(config, target)
    finally:
        del os.environ["ALEMBIC_ITSELF"]


def adopt_and_hang(url: str, source: str, mark: str) -> None:
    """A process whose ``upgrade()`` hangs in the middle of adopting alembic_version,
    after its first history row is written, until it is killed."""
    import time

    from sqlmig import MigrationRunner
    from sqlmig._history import HistoryStore

    record = HistoryStore.record

    def hanging(self: HistoryStore, *args: object, **kwargs: object) -> None:
        record(self, *args, **kwargs)  # type: ignore[arg-type]
        Path(mark).touch()
        time.sleep(120)

    HistoryStore.record = hanging  # type: ignore[method-assign]
    MigrationRunner(url, source).upgrade()

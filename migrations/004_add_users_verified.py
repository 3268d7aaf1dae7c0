"""Add users.verified and backfill it in batches, logging progress.

Large tables are updated a batch at a time, keyed on the primary key, so no
single statement touches every row at once.
"""

import logging

from sqlalchemy import Boolean, Column, false, select, table, column, update

log = logging.getLogger(__name__)

BATCH = 1000
users = table("users", column("id"), column("email"), column("verified"))


def up(conn):
    verified = Column("verified", Boolean, nullable=False, server_default=false())
    ddl = conn.dialect.ddl_compiler(conn.dialect, None).get_column_specification(verified)
    conn.exec_driver_sql(f"ALTER TABLE users ADD {ddl}")
    last_id, done = 0, 0
    while True:
        ids = conn.execute(
            select(users.c.id).where(users.c.id > last_id).order_by(users.c.id).limit(BATCH)
        ).scalars().all()
        if not ids:
            break
        conn.execute(
            update(users)
            .where(users.c.id.in_(ids), users.c.email.like("%@example.com"))
            .values(verified=True)
        )
        last_id, done = ids[-1], done + len(ids)
        log.info("backfilled users.verified for %d rows", done)


def down(conn):
    conn.exec_driver_sql("ALTER TABLE users DROP COLUMN verified")

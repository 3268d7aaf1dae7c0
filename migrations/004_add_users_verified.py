"""Add users.verified and backfill it in batches, logging progress.

The column is added with ``sqlmig.ops``, so the same file runs on SQLite,
PostgreSQL and MySQL/MariaDB. Large tables are updated a batch at a time,
keyed on the primary key, so no single statement touches every row at once.
"""

import logging

from sqlalchemy import Boolean, Column, column, false, select, table, update

from sqlmig.ops import ops

log = logging.getLogger("sqlmig.migrations")

BATCH = 1000
users = table("users", column("id"), column("email"), column("verified"))


def up(conn):
    ops(conn).add_column(
        "users", Column("verified", Boolean, nullable=False, server_default=false())
    )
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
    ops(conn).drop_column("users", "verified")

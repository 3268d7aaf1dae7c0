"""Seed the default settings and a first user."""

from sqlalchemy import column, delete, insert, table

settings = table("settings", column("key"), column("value"))
users = table("users", column("name"), column("email"))

DEFAULTS = [
    {"key": "app_name", "value": "My Bot"},
    {"key": "version", "value": "1.0.0"},
]


def up(conn):
    conn.execute(insert(settings), DEFAULTS)
    conn.execute(insert(users), [{"name": "Admin", "email": "admin@example.com"}])


def down(conn):
    conn.execute(delete(settings).where(settings.c.key.in_([d["key"] for d in DEFAULTS])))
    conn.execute(delete(users).where(users.c.email == "admin@example.com"))

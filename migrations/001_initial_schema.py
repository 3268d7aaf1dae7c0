"""Create the users and settings tables.

The bot runner's first migration, written with SQLAlchemy Core so the same
file runs on SQLite, PostgreSQL and MySQL/MariaDB.
"""

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, func

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("email", String(255), nullable=False, unique=True),
    Column("created_at", DateTime, nullable=False, server_default=func.current_timestamp()),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text),
)


def up(conn):
    metadata.create_all(conn)


def down(conn):
    metadata.drop_all(conn)

"""Add the user_preferences table with its lookup index.

The contact manager's second migration: one row per (user, key).
"""

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

metadata = MetaData()
Table("users", metadata, Column("id", Integer, primary_key=True))

user_preferences = Table(
    "user_preferences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("preference_key", String(100), nullable=False),
    Column("preference_value", Text),
    Column("created_at", DateTime, nullable=False, server_default=func.current_timestamp()),
    UniqueConstraint("user_id", "preference_key", name="uq_user_preferences_user_key"),
    Index("idx_user_preferences_user_id", "user_id"),
)


def up(conn):
    user_preferences.create(conn)


def down(conn):
    user_preferences.drop(conn)

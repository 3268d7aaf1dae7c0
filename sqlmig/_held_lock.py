"""Holding the migration lock for a call that writes: taken, the session tuned, freed.

A session lock is held by the runner's own connection, the one its steps run
on: taken (with the server's names for its key and the session's settings, in
one transaction) and freed (with the settings given back, in one more) in
short transactions of their own, so the connection never sits idle inside a
transaction and PostgreSQL sees no other session (one commit per step).
Inside the caller's transaction the lock is transaction-scoped. Without a
session lock (SQLite) each step's write transaction is the lock: the wait for
it is tied to ``lock_timeout``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ._errors import LockTimeout
from ._locking import MigrationLock
from ._session import Session

__all__ = ["locked"]

log = logging.getLogger("sqlmig")


@contextmanager
def locked(s: Session) -> Iterator[None]:
    """Hold the migration lock for the block (see the module's description).

    Raises:
        LockTimeout: another runner held it longer than ``lock_timeout``.
    """
    conn, profile = s.conn, s.profile
    if profile.lock is None:  # each step's write transaction is the lock: wait for it fully
        s.scope = None
        s.wait_fully()
        yield
        return
    if s.nested:
        scoped, s.scope = profile.lock_and_scope(conn, s.store.name, s.store.schema)
        assert scoped is not None
        profile.tune_session(conn, local=True)
        s.waited = scoped.acquire(conn, s.lock_timeout, transaction_scoped=True)
        yield
        return
    tuned: list[tuple[str, str]] = []
    lock: MigrationLock | None = None
    try:
        with conn.begin():  # one transaction: the lock's key and scope, the settings, a try
            lock, s.scope = profile.lock_and_scope(conn, s.store.name, s.store.schema)
            assert lock is not None
            tuned = profile.tune_session(conn, local=False)
            taken = lock.try_acquire(conn, transaction_scoped=False)
        s.waited = False if taken else lock.acquire(conn, s.lock_timeout)
    except LockTimeout:
        _untune(s, tuned)
        raise
    except BaseException:
        conn.invalidate()  # ending the session frees a lock we may hold
        raise
    assert lock is not None
    try:
        yield
    except BaseException:
        _rescope(s)
        raise
    finally:
        _release(s, lock, tuned)


def _rescope(s: Session) -> None:
    """After a failed run: the connection's scope as the run found it (a step may have moved it).

    Each step that completes gets it back at once (``StepExecutor``); a failed
    one may have left it moved where a rollback does not take it back (MySQL's
    ``USE``), and the connection may go back to a pool.
    """
    if s.scope is None or s.conn.invalidated:
        return
    try:
        if s.conn.in_transaction():
            s.conn.rollback()
        with s.conn.begin():
            s.profile.keep_scope(s.conn, s.scope)
    except Exception as exc:
        s.conn.invalidate()  # a new session starts where the URL says
        log.warning("could not restore the connection's schema (%s); closed it", exc)


def _untune(s: Session, tuned: list[tuple[str, str]]) -> None:
    """Give the connection its own settings back, before it returns to a pool."""
    if not tuned or s.conn.invalidated:
        return
    try:
        if s.conn.in_transaction():
            s.conn.rollback()
        with s.conn.begin():
            s.profile.untune_session(s.conn, tuned)
    except Exception as exc:
        s.conn.invalidate()  # a new session starts with the server's defaults
        log.warning("could not restore the connection's settings (%s); closed it", exc)


def _release(s: Session, lock: MigrationLock, tuned: list[tuple[str, str]]) -> None:
    """Free the lock and give the settings back, in one transaction; a connection that
    cannot is closed, which frees the lock and ends the settings with its session."""
    conn = s.conn
    if conn.invalidated:
        return
    try:
        if conn.in_transaction():
            conn.rollback()
        with conn.begin():
            held = lock.release(conn)
            if tuned:
                s.profile.untune_session(conn, tuned)
    except Exception as exc:
        conn.invalidate()  # ending the session frees the lock
        log.warning(
            "could not free the migration lock or restore the connection's settings (%s); "
            "closed its connection",
            exc,
        )
        return
    except BaseException:
        conn.invalidate()
        raise
    if not held:
        log.warning(
            "the migration lock was no longer held at the end of the run: "
            "a step released it (pg_advisory_unlock_all, DISCARD ALL, RELEASE_ALL_LOCKS); "
            "remove that from the step"
        )

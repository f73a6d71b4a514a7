"""Versioned schema migrations for the SQLite stores (the saver and the cache).

A store keeps a one-row table holding how many migrations its file has applied, and a
tuple of migrations (each a tuple of statements) that only ever grows. Opening a file
that is up to date takes no write lock. Otherwise each migration runs in its own
``BEGIN IMMEDIATE`` transaction that re-reads the version first, so several processes
opening one new file at once apply every migration exactly once between them; a file
written by a newer stepgraph is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from .errors import SchemaVersionError


def migrate(
    conn: sqlite3.Connection,
    writing: Callable[[], AbstractContextManager[sqlite3.Connection]],
    *,
    table: str,
    migrations: Sequence[Sequence[str]],
    path: str,
) -> None:
    """Bring the file's schema to ``len(migrations)``.

    Args:
        conn: the store's connection, for the lock-free check.
        writing: opens one write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``).
        table: the version table's name.
        migrations: entry ``i`` takes the schema from version ``i`` to ``i + 1``.
        path: the file, for error messages.

    Raises:
        SchemaVersionError: the file records more migrations than this code knows.
    """
    latest = len(migrations)
    try:
        row = conn.execute(f"SELECT MAX(version) FROM {table}").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
    else:
        if row[0] is not None and row[0] >= latest:
            _check(row[0], latest, path)
            return
    while True:
        with writing() as tx:
            tx.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)")
            found = tx.execute(f"SELECT MAX(version) FROM {table}").fetchone()[0]
            if found is None:
                tx.execute(f"INSERT INTO {table} (version) VALUES (0)")
                found = 0
            _check(found, latest, path)
            if found == latest:
                return
            for statement in migrations[found]:
                tx.execute(statement)
            tx.execute(f"UPDATE {table} SET version = ?", (found + 1,))


def _check(found: int, latest: int, path: str) -> None:
    if found > latest:
        raise SchemaVersionError(path, found, latest)


def enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch the file to WAL, waiting out other connections that are opening it too.

    Changing the journal mode needs the file to itself for a moment, and SQLite does not
    always apply the busy timeout to that: several processes (or threads) opening one
    new file at once would otherwise fail with "database is locked".
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)

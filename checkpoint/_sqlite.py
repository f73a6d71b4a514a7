"""``SqliteSaver``: checkpoints in one SQLite file, the embedded default saver.

How it uses SQLite, and why:

* One file holds everything. WAL journaling lets readers proceed while a writer
  commits, and a busy timeout makes a second process wait for the write lock instead
  of failing, so several processes can share one file.
* Every write is one explicit ``BEGIN IMMEDIATE`` transaction: a checkpoint, its new
  blobs and its reference rows appear together or not at all, and taking the write
  lock up front means a transaction never fails halfway on a lock upgrade.
* Reads of one ``get_tuple``/``list`` call run in one read transaction, so the rows,
  blobs and writes they combine come from the same snapshot even while another
  process deletes or prunes.
* The rows are the ones `StoredSaver` prepares: values are content-addressed blobs
  shared by every checkpoint and thread with the same bytes, and deltas for
  append-only channels. ``stepgraph_blob_refs`` records which blobs each checkpoint
  names, and each delta records the blob it extends (``base``), so garbage collection
  after a delete or prune is a set operation over what was removed, not a scan of
  the whole file.
* "Newest" is the order in which rows were stored (``seq``), never the greatest
  checkpoint id, so machines whose clocks disagree cannot reorder a thread's history.
* The thread lease lives in the file too, so two processes cannot advance one thread
  at once.

Schema (version 1; every table is prefixed ``stepgraph_`` so the file can also hold
other tables, LangGraph's ``checkpoints``/``writes`` included)::

    stepgraph_schema(version)                        the applied migration count
    stepgraph_checkpoints(seq PK AUTOINCREMENT, thread_id, checkpoint_ns,
        checkpoint_id, parent_checkpoint_id, checkpoint, refs, metadata,
        metadata_json, UNIQUE(thread_id, checkpoint_ns, checkpoint_id))
        indexes (thread_id, checkpoint_ns, seq) and (thread_id, seq)
    stepgraph_blobs(hash PK, base, items, data)      a delta's previous blob and items
    stepgraph_blob_refs(seq, hash, PK(seq, hash))    blobs a checkpoint names directly
    stepgraph_writes(thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel,
        value, blob, task_path, PK(thread_id, checkpoint_ns, checkpoint_id, task_id, idx))
        blob: the blob a large write is stored in (shared with the delta it appends)
    stepgraph_leases(thread_id PK, owner, expires_at)
"""

from __future__ import annotations

import builtins
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from ._base import owner_is_dead
from ._blobs import links, write_blob
from ._metadata import INT64, PLAIN_KEY, metadata_json, plain_text
from ._model import CheckpointTuple
from ._serde import Serializer
from ._sqlite_schema import enable_wal, migrate
from ._stored import (
    PreparedPut,
    StoredRow,
    StoredSaver,
    StoredWrite,
    WriteKey,
    address_conditions,
    paged_rows,
)
from .errors import SchemaVersionError

__all__ = ["SCHEMA_VERSION", "SqliteSaver"]

BUSY_TIMEOUT = 30.0
"""Seconds a connection waits for another process's write lock before failing."""

_CHUNK = 498  # bound parameters per statement, below SQLite's oldest default limit (999)
_MIN_SQLITE = (3, 34, 0)  # window functions, row values, several recursive selects

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the initial schema
    (
        """CREATE TABLE stepgraph_checkpoints (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            thread_id TEXT NOT NULL,
            checkpoint_ns TEXT NOT NULL DEFAULT '',
            checkpoint_id TEXT NOT NULL,
            parent_checkpoint_id TEXT,
            checkpoint BLOB NOT NULL,
            refs BLOB NOT NULL,
            metadata BLOB NOT NULL,
            metadata_json TEXT NOT NULL DEFAULT '{}',
            UNIQUE (thread_id, checkpoint_ns, checkpoint_id)
        )""",
        """CREATE INDEX stepgraph_checkpoints_ns_seq
            ON stepgraph_checkpoints (thread_id, checkpoint_ns, seq)""",
        """CREATE INDEX stepgraph_checkpoints_thread_seq
            ON stepgraph_checkpoints (thread_id, seq)""",
        """CREATE TABLE stepgraph_blobs (
            hash TEXT PRIMARY KEY,
            base TEXT,
            items TEXT,
            data BLOB NOT NULL
        )""",
        """CREATE INDEX stepgraph_blobs_base ON stepgraph_blobs (base)
            WHERE base IS NOT NULL""",
        """CREATE INDEX stepgraph_blobs_items ON stepgraph_blobs (items)
            WHERE items IS NOT NULL""",
        """CREATE TABLE stepgraph_blob_refs (
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL,
            PRIMARY KEY (seq, hash)
        ) WITHOUT ROWID""",
        "CREATE INDEX stepgraph_blob_refs_hash ON stepgraph_blob_refs (hash)",
        """CREATE TABLE stepgraph_writes (
            thread_id TEXT NOT NULL,
            checkpoint_ns TEXT NOT NULL,
            checkpoint_id TEXT NOT NULL,
            task_id TEXT NOT NULL,
            idx INTEGER NOT NULL,
            channel TEXT NOT NULL,
            value BLOB NOT NULL,
            blob TEXT,
            task_path TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
        )""",
        """CREATE INDEX stepgraph_writes_blob ON stepgraph_writes (blob)
            WHERE blob IS NOT NULL""",
        """CREATE TABLE stepgraph_leases (
            thread_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at REAL NOT NULL
        )""",
    ),
)
"""Schema migrations; entry ``i`` takes the schema from version ``i`` to ``i + 1``.

Append new entries, never edit old ones: a file records how many it has applied."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes and understands."""

# Per-connection scratch tables for deletes: which checkpoints go, which blobs may.
_TEMP_TABLES = (
    "CREATE TEMP TABLE IF NOT EXISTS stepgraph_doomed (seq INTEGER PRIMARY KEY)",
    "CREATE TEMP TABLE IF NOT EXISTS stepgraph_gc_seed (hash TEXT PRIMARY KEY)",
)

# Blobs that a removed checkpoint named (the seeds) and the blobs they extend are
# candidates; a candidate stays if a remaining checkpoint names it or a blob that
# extends it, directly or through a chain of deltas ("down", then "live").
_COLLECT = """
WITH RECURSIVE
    cand(hash) AS (
        SELECT hash FROM temp.stepgraph_gc_seed
        UNION
        SELECT b.base FROM stepgraph_blobs AS b JOIN cand ON b.hash = cand.hash
        WHERE b.base IS NOT NULL
        UNION
        SELECT b.items FROM stepgraph_blobs AS b JOIN cand ON b.hash = cand.hash
        WHERE b.items IS NOT NULL
    ),
    down(hash) AS (
        SELECT hash FROM cand
        UNION
        SELECT b.hash FROM stepgraph_blobs AS b JOIN down ON b.base = down.hash
        UNION
        SELECT b.hash FROM stepgraph_blobs AS b JOIN down ON b.items = down.hash
    ),
    live(hash) AS (
        SELECT d.hash FROM down AS d
        WHERE EXISTS (SELECT 1 FROM stepgraph_blob_refs AS r WHERE r.hash = d.hash)
            OR EXISTS (SELECT 1 FROM stepgraph_writes AS w WHERE w.blob = d.hash)
        UNION
        SELECT b.base FROM stepgraph_blobs AS b JOIN live ON b.hash = live.hash
        WHERE b.base IS NOT NULL
        UNION
        SELECT b.items FROM stepgraph_blobs AS b JOIN live ON b.hash = live.hash
        WHERE b.items IS NOT NULL
    )
DELETE FROM stepgraph_blobs
WHERE hash IN (SELECT hash FROM cand EXCEPT SELECT hash FROM live)
"""

_SELECT = """SELECT c.seq, c.thread_id, c.checkpoint_ns, c.checkpoint_id,
    c.parent_checkpoint_id, c.checkpoint, c.refs, c.metadata
FROM stepgraph_checkpoints AS c"""

_BEFORE = """c.seq < (SELECT b.seq FROM stepgraph_checkpoints AS b
    WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
    AND b.checkpoint_id = ?)"""


class SqliteSaver(StoredSaver):
    """Checkpoints in a SQLite file: durable, embedded, shareable between processes.

    Args:
        path: the database file (created, with its parent folders, if missing),
            ``":memory:"`` for a private in-memory database, a ``file:`` URI, or an
            open `sqlite3.Connection`. A connection you pass is yours: `close` leaves
            it open. It must allow use from other threads
            (``check_same_thread=False``) if you use the async methods, and the saver
            switches it to ``isolation_level=None`` (it runs its own transactions).
        serde: the serializer (default: `Serializer()` with the default registry).

    The saver sets ``journal_mode=WAL``, ``synchronous=NORMAL`` (a crash loses at
    most the last transactions, never consistency) and a 30 s busy timeout. One
    connection serves every thread of the process, guarded by a lock; do not share a
    connection between two savers.

    Example:
        >>> with SqliteSaver.from_conn_string(":memory:") as saver:
        ...     list(saver.list(None))
        []

    Raises:
        SchemaVersionError: the file was written by a newer stepgraph.
        sqlite3.DatabaseError: the file is not a SQLite database (the message names
            it).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | sqlite3.Connection,
        *,
        serde: Serializer | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self._lock = threading.RLock()
        self._batching = 0
        self._closed = False
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise RuntimeError(
                f"SqliteSaver needs SQLite {'.'.join(map(str, _MIN_SQLITE))} or newer, "
                f"but Python's sqlite3 module uses {sqlite3.sqlite_version}; use a Python "
                "built with a newer SQLite"
            )
        if isinstance(path, sqlite3.Connection):
            self._conn = path
            self._owns = False
            self.path = _connection_path(path)
            _take_over(path, self.path)
        else:
            self.path = os.fspath(path)
            self._conn = _connect(self.path)
            self._owns = True
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    @classmethod
    @contextmanager
    def from_conn_string(
        cls, conn_string: str, *, serde: Serializer | None = None
    ) -> Iterator[Self]:
        """A saver that the ``with`` block closes when it ends (LangGraph's shape).

        Args:
            conn_string: a file path, ``":memory:"`` or a ``file:`` URI.
            serde: the serializer.
        """
        saver = cls(conn_string, serde=serde)
        try:
            yield saver
        finally:
            saver.close()

    def close(self) -> None:
        """Close the connection the saver opened (one passed in is left open)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._owns:
                self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteSaver({self.path!r})"

    # -- connection and transactions ------------------------------------------------

    def _setup(self) -> None:
        conn = self._conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            enable_wal(conn, BUSY_TIMEOUT)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("SELECT json_type('{}')")  # metadata filters need JSON functions
            self._migrate()
            for statement in _TEMP_TABLES:
                conn.execute(statement)
        except SchemaVersionError:
            raise
        except sqlite3.DatabaseError as exc:
            if "no such function: json" in str(exc):
                raise RuntimeError(
                    f"the SQLite library Python uses ({sqlite3.sqlite_version}) was built "
                    "without JSON functions, which SqliteSaver needs for metadata filters; "
                    "use a Python built with SQLite 3.38 or newer"
                ) from exc
            raise type(exc)(
                f"cannot open {self.path} as a stepgraph checkpoint database ({exc}); check "
                "that the path names a SQLite database, or a new file, and that the file "
                "is readable, writable and not damaged"
            ) from exc

    def _migrate(self) -> None:
        """Bring the schema to `SCHEMA_VERSION` (see `_sqlite_schema.migrate`)."""
        migrate(
            self._conn,
            self._writing,
            table="stepgraph_schema",
            migrations=MIGRATIONS,
            path=str(self.path),
        )

    def _live(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(
                f"{self!r} is closed; open a new SqliteSaver (or keep using it inside its "
                "`with` block)"
            )
        return self._conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Store every write made inside the block in one transaction (one commit).

        Runs use it to commit a superstep's pending writes and checkpoint together;
        a commit is most of what a small write costs.
        """
        with self._writing():
            self._batching += 1
            try:
                yield
            finally:
                self._batching -= 1

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from its start."""
        with self._lock:
            conn = self._live()
            if self._batching:
                yield conn  # inside batch(): its transaction covers this write
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same snapshot."""
        with self._lock:
            conn = self._live()
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    # -- reading: one snapshot per call -----------------------------------------------

    def get_tuple(self, config: Mapping[str, Any]) -> CheckpointTuple | None:
        with self._reading():
            return super().get_tuple(config)

    def list(
        self,
        config: Mapping[str, Any] | None,
        *,
        filter: Mapping[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        with self._reading():
            found = builtins.list(super().list(config, filter=filter, before=before, limit=limit))
        yield from found

    # -- storage ------------------------------------------------------------------

    def _store(self, prepared: PreparedPut) -> None:
        blob_rows = [_blob_row(key, data) for key, data in prepared.blobs.items()]
        hashes = sorted({ref[0] for ref in prepared.refs.values()})
        address = (prepared.thread, prepared.ns, prepared.checkpoint_id)
        with self._writing() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO stepgraph_blobs (hash, base, items, data) "
                "VALUES (?, ?, ?, ?)",
                blob_rows,
            )
            # A re-put replaces the row and moves it to newest; its pending writes stay.
            replaced = conn.execute(
                "INSERT INTO temp.stepgraph_doomed (seq) SELECT seq FROM stepgraph_checkpoints "
                "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                address,
            ).rowcount
            if replaced:
                _drop_doomed(conn, with_writes=False)
            seq = conn.execute(
                "INSERT INTO stepgraph_checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
                "parent_checkpoint_id, checkpoint, refs, metadata, metadata_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *address,
                    prepared.parent_id,
                    prepared.checkpoint,
                    prepared.refs_bytes,
                    prepared.metadata,
                    metadata_json(prepared.metadata_plain),
                ),
            ).lastrowid
            conn.executemany(
                "INSERT INTO stepgraph_blob_refs (seq, hash) VALUES (?, ?)",
                [(seq, h) for h in hashes],
            )
            if replaced:
                _collect(conn)  # after the new references, so shared blobs stay

    def _load_refs(self, key: WriteKey) -> bytes | None:
        with self._lock:
            row = (
                self._live()
                .execute(
                    "SELECT refs FROM stepgraph_checkpoints "
                    "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                    key,
                )
                .fetchone()
            )
        return None if row is None else bytes(row[0])

    def _select(
        self,
        thread: str | None,
        ns: str | None,
        checkpoint_id: str | None,
        filter: dict[str, Any] | None,
        before_id: str | None,
        limit: int | None,
    ) -> builtins.list[StoredRow]:
        """One query, newest first (plus more pages only in rare filter cases).

        Metadata filters are pushed into SQL (``json_extract`` on ``metadata_json``)
        for str, int, float, bool and None values, as a superset of the matches, and
        then every filter is checked again in Python on the deserialized metadata
        with ``==``, exactly as `InMemorySaver` does (so ``True`` matches ``1``, as in
        Python). A row SQL let through but Python rejects leaves the page short; only
        then is the next page fetched, so ``limit`` is still applied in SQL.
        """
        if limit == 0:
            return []
        where, params = address_conditions("?", thread, ns, checkpoint_id)
        if before_id is not None:
            where.append(_BEFORE)
            params.append(before_id)
        if filter:
            pushed, pushed_params = _pushdown(filter)
            where += pushed
            params += pushed_params
        with self._reading() as conn:
            return paged_rows(
                lambda sql, args: conn.execute(sql, args).fetchall(),
                _SELECT,
                where,
                params,
                "?",
                filter,
                limit,
                self.serde,
            )

    def _blobs(self, keys: Sequence[str]) -> Mapping[str, bytes]:
        """The blobs with these hashes, and every blob their delta chains extend.

        Returning the chains too means rebuilding an append-only channel costs one
        query however many deltas it has, instead of one per delta
        (`StoredSaver` keeps the extra blobs it is given for the next rounds).
        """
        out: dict[str, bytes] = {}
        with self._reading() as conn:
            for chunk in _chunks(keys, _CHUNK):
                seeds = ", ".join(["(?)"] * len(chunk))
                rows = conn.execute(
                    f"""WITH RECURSIVE chain(hash) AS (
                        VALUES {seeds}
                        UNION
                        SELECT b.base FROM stepgraph_blobs AS b JOIN chain ON b.hash = chain.hash
                        WHERE b.base IS NOT NULL
                    ),
                    every(hash) AS (
                        SELECT hash FROM chain
                        UNION
                        SELECT b.items FROM stepgraph_blobs AS b JOIN chain ON b.hash = chain.hash
                        WHERE b.items IS NOT NULL
                    )
                    SELECT b.hash, b.data FROM stepgraph_blobs AS b
                    JOIN every ON b.hash = every.hash""",
                    chunk,
                )
                out.update(rows)
        return out

    def _writes(self, keys: Sequence[WriteKey]) -> Mapping[WriteKey, builtins.list[StoredWrite]]:
        out: dict[WriteKey, builtins.list[StoredWrite]] = {}
        unique = builtins.list(dict.fromkeys(keys))
        with self._reading() as conn:
            for chunk in _chunks(unique, _CHUNK // 3):
                wanted = ", ".join(["(?, ?, ?)"] * len(chunk))
                rows = conn.execute(
                    f"""WITH k(thread_id, checkpoint_ns, checkpoint_id) AS (VALUES {wanted})
                    SELECT w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.idx,
                        w.channel, w.value
                    FROM k JOIN stepgraph_writes AS w
                    ON w.thread_id = k.thread_id AND w.checkpoint_ns = k.checkpoint_ns
                        AND w.checkpoint_id = k.checkpoint_id
                    ORDER BY w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.idx""",
                    [part for key in chunk for part in key],
                )
                for thread, ns, cid, task_id, idx, channel, value in rows:
                    out.setdefault((thread, ns, cid), []).append((task_id, idx, channel, value))
        return out

    def _store_writes(
        self,
        key: WriteKey,
        task_id: str,
        task_path: str,
        rows: Sequence[tuple[int, str, bytes]],
        blobs: Mapping[str, bytes],
    ) -> None:
        columns = (
            "INTO stepgraph_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, "
            "channel, value, blob, task_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        ordinary = [
            (*key, task_id, i, ch, data, write_blob(data), task_path)
            for i, ch, data in rows
            if i >= 0
        ]
        special = [
            (*key, task_id, i, ch, data, write_blob(data), task_path)
            for i, ch, data in rows
            if i < 0
        ]
        with self._writing() as conn:
            if blobs:
                conn.executemany(
                    "INSERT OR IGNORE INTO stepgraph_blobs (hash, base, items, data) "
                    "VALUES (?, ?, ?, ?)",
                    [_blob_row(k, data) for k, data in blobs.items()],
                )
            # A retried save of ordinary writes is a no-op (the first copy wins);
            # special writes (error, interrupt, ...) are replaced, the last one wins.
            conn.executemany("INSERT OR IGNORE " + columns, ordinary)
            conn.executemany("INSERT OR REPLACE " + columns, special)

    def _delete_threads(self, threads: Sequence[str]) -> None:
        with self._writing() as conn:
            for chunk in _chunks(threads, _CHUNK):
                marks = ", ".join("?" * len(chunk))
                conn.execute(
                    "INSERT OR IGNORE INTO temp.stepgraph_doomed (seq) SELECT seq "
                    f"FROM stepgraph_checkpoints WHERE thread_id IN ({marks})",
                    chunk,
                )
                conn.execute(
                    "INSERT OR IGNORE INTO temp.stepgraph_gc_seed (hash) SELECT blob "
                    f"FROM stepgraph_writes WHERE thread_id IN ({marks}) AND blob IS NOT NULL",
                    chunk,
                )
                conn.execute(f"DELETE FROM stepgraph_writes WHERE thread_id IN ({marks})", chunk)
            _drop_doomed(conn, with_writes=False)
            _collect(conn)

    def _keep_latest(self, threads: Sequence[str], keep: int) -> None:
        with self._writing() as conn:
            for chunk in _chunks(threads, _CHUNK):
                marks = ", ".join("?" * len(chunk))
                conn.execute(
                    f"""INSERT OR IGNORE INTO temp.stepgraph_doomed (seq)
                    SELECT seq FROM (
                        SELECT seq, ROW_NUMBER() OVER (
                            PARTITION BY thread_id, checkpoint_ns ORDER BY seq DESC
                        ) AS newer
                        FROM stepgraph_checkpoints WHERE thread_id IN ({marks})
                    ) WHERE newer > ?""",
                    [*chunk, keep],
                )
            _drop_doomed(conn, with_writes=True)
            _collect(conn)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every namespace of a thread, in order, with its pending writes.

        The copies get the same checkpoint ids and new places at the newest end; a
        target checkpoint with a copied id is replaced, as a re-put would be. Blobs
        are shared, not copied. Copying a thread onto itself changes nothing.
        """
        src, dst = str(source_thread_id), str(target_thread_id)
        if src == dst:
            return
        self._forget_thread(dst)
        same_checkpoint = (
            "s.thread_id = ? AND s.checkpoint_ns = d.checkpoint_ns "
            "AND s.checkpoint_id = d.checkpoint_id"
        )
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO temp.stepgraph_doomed (seq) SELECT d.seq "
                "FROM stepgraph_checkpoints AS d "
                f"JOIN stepgraph_checkpoints AS s ON {same_checkpoint} WHERE d.thread_id = ?",
                (src, dst),
            )
            _drop_doomed(conn, with_writes=False)
            conn.execute(
                """INSERT INTO stepgraph_checkpoints (thread_id, checkpoint_ns, checkpoint_id,
                    parent_checkpoint_id, checkpoint, refs, metadata, metadata_json)
                SELECT ?, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, refs,
                    metadata, metadata_json
                FROM stepgraph_checkpoints WHERE thread_id = ? ORDER BY seq""",
                (dst, src),
            )
            conn.execute(
                "INSERT INTO stepgraph_blob_refs (seq, hash) SELECT d.seq, r.hash "
                "FROM stepgraph_checkpoints AS d "
                f"JOIN stepgraph_checkpoints AS s ON {same_checkpoint} "
                "JOIN stepgraph_blob_refs AS r ON r.seq = s.seq WHERE d.thread_id = ?",
                (src, dst),
            )
            replaced_writes = """thread_id = ? AND (checkpoint_ns, checkpoint_id) IN (
                    SELECT checkpoint_ns, checkpoint_id FROM stepgraph_writes WHERE thread_id = ?
                )"""
            conn.execute(
                "INSERT OR IGNORE INTO temp.stepgraph_gc_seed (hash) SELECT blob "
                f"FROM stepgraph_writes WHERE blob IS NOT NULL AND {replaced_writes}",
                (dst, src),
            )
            conn.execute(f"DELETE FROM stepgraph_writes WHERE {replaced_writes}", (dst, src))
            conn.execute(
                """INSERT INTO stepgraph_writes (thread_id, checkpoint_ns, checkpoint_id,
                    task_id, idx, channel, value, blob, task_path)
                SELECT ?, checkpoint_ns, checkpoint_id, task_id, idx, channel, value, blob,
                    task_path
                FROM stepgraph_writes WHERE thread_id = ?""",
                (dst, src),
            )
            _collect(conn)

    # -- the thread lease, shared by every process using the file -------------------

    def _lease_try(self, thread: str, owner: str, ttl: float) -> str | None:
        """Take or renew the lease in the file; None on success, else the holder.

        The read and the write are one ``BEGIN IMMEDIATE`` transaction, so two
        processes asking at once cannot both see the thread free.
        """
        now = time.time()
        with self._writing() as conn:
            row = conn.execute(
                "SELECT owner, expires_at FROM stepgraph_leases WHERE thread_id = ?", (thread,)
            ).fetchone()
            if row is not None:
                holder, expires_at = row
                if holder != owner and expires_at > now and not owner_is_dead(holder):
                    return str(holder)
            conn.execute(
                "INSERT OR REPLACE INTO stepgraph_leases (thread_id, owner, expires_at) "
                "VALUES (?, ?, ?)",
                (thread, owner, now + ttl),
            )
        return None

    def _lease_release(self, thread: str, owner: str) -> None:
        with self._writing() as conn:
            conn.execute(
                "DELETE FROM stepgraph_leases WHERE thread_id = ? AND owner = ?", (thread, owner)
            )


# -- helpers ----------------------------------------------------------------------


def _connect(path: str) -> sqlite3.Connection:
    uri = path.startswith("file:")
    if path not in ("", ":memory:") and not uri:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        return sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False, uri=uri
        )
    except sqlite3.Error as exc:
        raise type(exc)(f"cannot open {path} as a SQLite database: {exc}") from exc


def _connection_path(conn: sqlite3.Connection) -> str:
    """The main database file of a connection, for messages (``:memory:`` if none)."""
    try:
        for _, name, file in conn.execute("PRAGMA database_list"):
            if name == "main":
                return str(file) or ":memory:"
    except sqlite3.Error:
        pass
    return "<sqlite3.Connection>"


def _take_over(conn: sqlite3.Connection, path: str) -> None:
    """Make a caller's connection run in autocommit mode, so explicit BEGINs work."""
    if getattr(conn, "autocommit", None) is False:
        raise ValueError(
            f"the connection to {path} was opened with autocommit=False, which keeps a "
            "transaction open at all times; SqliteSaver runs its own transactions, so "
            "open it with autocommit=True or the default (isolation_level=None is set)"
        )
    if conn.in_transaction:
        raise ValueError(
            f"the connection to {path} is inside a transaction; commit or roll it back "
            "before handing it to SqliteSaver"
        )
    conn.isolation_level = None


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _drop_doomed(conn: sqlite3.Connection, *, with_writes: bool) -> None:
    """Delete the checkpoints listed in ``stepgraph_doomed``; seed GC with their blobs."""
    conn.execute(
        "INSERT OR IGNORE INTO temp.stepgraph_gc_seed (hash) SELECT r.hash "
        "FROM stepgraph_blob_refs AS r JOIN temp.stepgraph_doomed AS d ON r.seq = d.seq"
    )
    conn.execute(
        "DELETE FROM stepgraph_blob_refs WHERE seq IN (SELECT seq FROM temp.stepgraph_doomed)"
    )
    if with_writes:
        doomed_writes = """(thread_id, checkpoint_ns, checkpoint_id) IN (
                SELECT thread_id, checkpoint_ns, checkpoint_id FROM stepgraph_checkpoints
                WHERE seq IN (SELECT seq FROM temp.stepgraph_doomed)
            )"""
        conn.execute(
            "INSERT OR IGNORE INTO temp.stepgraph_gc_seed (hash) SELECT blob "
            f"FROM stepgraph_writes WHERE blob IS NOT NULL AND {doomed_writes}"
        )
        conn.execute(f"DELETE FROM stepgraph_writes WHERE {doomed_writes}")
    conn.execute(
        "DELETE FROM stepgraph_checkpoints WHERE seq IN (SELECT seq FROM temp.stepgraph_doomed)"
    )
    conn.execute("DELETE FROM temp.stepgraph_doomed")


def _blob_row(key: str, data: bytes) -> tuple[str, str | None, str | None, bytes]:
    """``(hash, base, items, data)``: a delta's links are columns, for chains and GC."""
    found = links(data)
    if found:
        return key, found[0], found[1], data
    return key, None, None, data


def _collect(conn: sqlite3.Connection) -> None:
    """Delete the seeded blobs (and what they extend) that nothing refers to any more."""
    conn.execute(_COLLECT)
    conn.execute("DELETE FROM temp.stepgraph_gc_seed")


def _pushdown(filter: Mapping[str, Any]) -> tuple[builtins.list[str], builtins.list[Any]]:
    """SQL conditions that every row matching ``filter`` meets (a superset).

    Values SQL cannot compare the way Python does (containers, other types, keys a
    JSON path cannot name) are left to the Python check alone.
    """
    clauses: builtins.list[str] = []
    params: builtins.list[Any] = []
    for key, value in filter.items():
        if not isinstance(key, str) or not PLAIN_KEY.fullmatch(key) or not plain_text(key):
            continue
        path = f'$."{key}"'
        if value is None:
            clauses.append("json_type(c.metadata_json, ?) = 'null'")
            params.append(path)
            continue
        if isinstance(value, str):
            if not plain_text(value):
                continue
            bound: Any = str.__str__(value)
        elif isinstance(value, int):  # bool included: True == 1 in Python and JSON true is 1
            if not INT64[0] <= value < INT64[1]:
                continue
            bound = int(value)
        elif isinstance(value, float) and math.isfinite(value):
            bound = float(value)
        else:
            continue
        clauses.append("json_extract(c.metadata_json, ?) = ?")
        params += [path, bound]
    return clauses, params

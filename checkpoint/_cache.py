"""Caches for node results: ``BaseCache``, ``InMemoryCache`` and ``SqliteCache``.

A cache maps ``(namespace, key)`` to a value with an optional time to live. The
engine stores a node's writes under ``((node identity, node name), hash of its
input)`` and reads them back instead of running the node again.

Values are stored serialized by a `Serializer` (msgpack with an explicit type
registry), in memory as in SQLite: nothing loaded from a cache can run code, a
damaged entry raises `DeserializationError` instead of returning garbage, and a value
read back is never the object that was stored.

Implementations write the sync methods; the async twins run them in a worker thread.
Expiry is measured with the cache's ``clock`` (``time.time`` by default), which tests
replace to expire entries without waiting.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Self

from ._serde import Serializer
from ._sqlite import BUSY_TIMEOUT, _connect
from ._sqlite_schema import enable_wal, migrate
from .errors import SchemaVersionError

__all__ = ["BaseCache", "CacheKey", "InMemoryCache", "Namespace", "SqliteCache"]

Namespace = tuple[str, ...]
"""Groups entries so they can be cleared together (the engine: identity, node name)."""

CacheKey = tuple[Namespace, str]
"""``(namespace, key)``: one entry."""


class BaseCache(ABC):
    """What a cache must do. Subclasses implement `get`, `set` and `clear`.

    Args:
        serde: turns values into bytes and back (default: `Serializer()` with the
            default registry; ``compile(cache=...)`` registers the graph's types in
            it).
        clock: seconds since the epoch, for expiry; inject one in tests.
    """

    def __init__(
        self, *, serde: Serializer | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.serde = Serializer() if serde is None else serde
        self.clock = clock
        self._key_serde: Serializer | None = None

    @property
    def key_serde(self) -> Serializer:
        """The serializer that turns inputs into key bytes: same registry, never
        encrypted (an encrypted dump differs every time, so keys would never match)."""
        if self._key_serde is None:
            serde = self.serde
            self._key_serde = serde if serde.cipher is None else Serializer(serde.registry)
        return self._key_serde

    @abstractmethod
    def get(self, keys: Sequence[CacheKey]) -> dict[CacheKey, Any]:
        """The values stored under ``keys`` that have not expired; missing keys are left out.

        Raises:
            DeserializationError: a stored value is damaged or names an unregistered
                type.
        """

    @abstractmethod
    def set(self, pairs: Mapping[CacheKey, tuple[Any, float | None]]) -> None:
        """Store ``{(namespace, key): (value, ttl)}``; a ttl of None never expires.

        Raises:
            SerializationError: a value has a type the serializer does not know.
        """

    @abstractmethod
    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        """Delete the entries of ``namespaces``, or every entry when None."""

    async def aget(self, keys: Sequence[CacheKey]) -> dict[CacheKey, Any]:
        """Async twin of `get` (runs it in a worker thread)."""
        return await asyncio.to_thread(self.get, keys)

    async def aset(self, pairs: Mapping[CacheKey, tuple[Any, float | None]]) -> None:
        """Async twin of `set` (runs it in a worker thread)."""
        await asyncio.to_thread(self.set, pairs)

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        """Async twin of `clear` (runs it in a worker thread)."""
        await asyncio.to_thread(self.clear, namespaces)

    # -- helpers for subclasses -----------------------------------------------------

    def _dump(self, key: CacheKey, value: Any) -> bytes:
        return self.serde.dumps(value, path=_where(key))

    def _load(self, key: CacheKey, data: bytes) -> Any:
        return self.serde.loads(data, path=_where(key))

    def _expiry(self, ttl: float | None) -> float | None:
        if ttl is None:
            return None
        if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not ttl > 0:
            raise ValueError(
                f"a cache ttl must be a positive number of seconds or None, got {ttl!r}"
            )
        return self.clock() + ttl


def _where(key: CacheKey) -> str:
    ns, k = key
    return f"cache[{'/'.join(ns)}][{k[:12]}]"


class InMemoryCache(BaseCache):
    """A cache in process memory, for tests, notebooks and single processes.

    Values are kept serialized, as `SqliteCache` keeps them, so both behave alike
    and a cached value cannot alias one a node goes on to mutate. Expired entries
    are dropped when they are next read.

    Example:
        >>> cache = InMemoryCache()
        >>> cache.set({(("ns",), "k"): ({"a": 1}, None)})
        >>> cache.get([(("ns",), "k"), (("ns",), "other")])
        {(('ns',), 'k'): {'a': 1}}
    """

    def __init__(
        self, *, serde: Serializer | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(serde=serde, clock=clock)
        self._lock = threading.RLock()
        self._entries: dict[Namespace, dict[str, tuple[float | None, bytes]]] = {}

    def get(self, keys: Sequence[CacheKey]) -> dict[CacheKey, Any]:
        found: dict[CacheKey, bytes] = {}
        now = self.clock()
        with self._lock:
            for ns, key in keys:
                entries = self._entries.get(ns, {})
                entry = entries.get(key)
                if entry is None:
                    continue
                expiry, data = entry
                if expiry is not None and expiry <= now:
                    del entries[key]  # expired: dropped when next read
                    continue
                found[(ns, key)] = data
        return {k: self._load(k, data) for k, data in found.items()}

    def set(self, pairs: Mapping[CacheKey, tuple[Any, float | None]]) -> None:
        # Serialize everything first: a value that cannot be stored stores nothing.
        rows = [(k, self._expiry(ttl), self._dump(k, v)) for k, (v, ttl) in pairs.items()]
        with self._lock:
            for (ns, key), expiry, data in rows:
                self._entries.setdefault(ns, {})[key] = (expiry, data)

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        with self._lock:
            if namespaces is None:
                self._entries.clear()
                return
            for ns in namespaces:
                self._entries.pop(tuple(ns), None)

    def __len__(self) -> int:
        """The number of entries held, expired ones included until they are read."""
        with self._lock:
            return sum(len(e) for e in self._entries.values())

    def __repr__(self) -> str:
        return f"InMemoryCache({len(self)} entries)"


MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the initial schema
    (
        """CREATE TABLE stepgraph_cache (
            ns TEXT NOT NULL,
            key TEXT NOT NULL,
            expiry REAL,
            value BLOB NOT NULL,
            PRIMARY KEY (ns, key)
        ) WITHOUT ROWID""",
        "CREATE INDEX stepgraph_cache_expiry ON stepgraph_cache (expiry) WHERE expiry IS NOT NULL",
    ),
)
"""Schema migrations of the cache tables; append new ones, never edit old ones."""

SCHEMA_VERSION = len(MIGRATIONS)


class SqliteCache(BaseCache):
    """A cache in a SQLite file: survives restarts, shared by the processes using it.

    The tables are prefixed ``stepgraph_cache`` and versioned on their own, so the
    cache may live in the same file as a `SqliteSaver`. WAL journaling, a 30 s busy
    timeout, one connection guarded by a lock, and one ``BEGIN IMMEDIATE``
    transaction per write, as the saver does. Expired rows are deleted by the next
    `set`.

    Schema (version 1)::

        stepgraph_cache_schema(version)
        stepgraph_cache(ns, key, expiry, value, PK(ns, key))
            ns: the namespace as a JSON array; expiry: clock seconds or NULL;
            value: the serialized value

    Args:
        path: the database file (created with its folders if missing), or
            ``":memory:"``.
        serde: the serializer (default: `Serializer()`).
        clock: seconds since the epoch, for expiry.

    Raises:
        SchemaVersionError: the file's cache tables were written by a newer stepgraph.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        serde: Serializer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(serde=serde, clock=clock)
        self.path = os.fspath(path)
        self._lock = threading.RLock()
        self._closed = False
        self._conn = _connect(self.path)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection; the file keeps the entries."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteCache({self.path!r})"

    def _setup(self) -> None:
        conn = self._conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            enable_wal(conn, BUSY_TIMEOUT)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except SchemaVersionError:
            raise
        except sqlite3.DatabaseError as exc:
            raise type(exc)(
                f"cannot open {self.path} as a stepgraph cache ({exc}); check that the path "
                "names a SQLite database, or a new file, and that it is readable and writable"
            ) from exc

    def _migrate(self) -> None:
        """Bring the schema to `SCHEMA_VERSION` (see `_sqlite_schema.migrate`)."""
        migrate(
            self._conn,
            self._writing,
            table="stepgraph_cache_schema",
            migrations=MIGRATIONS,
            path=str(self.path),
        )

    def _live(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; open a new SqliteCache")
        return self._conn

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from its start."""
        with self._lock:
            conn = self._live()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def get(self, keys: Sequence[CacheKey]) -> dict[CacheKey, Any]:
        now = self.clock()
        found: dict[CacheKey, bytes] = {}
        with self._lock:
            conn = self._live()
            conn.execute("BEGIN")  # one snapshot for every key
            try:
                for ns, key in keys:
                    row = conn.execute(
                        "SELECT value FROM stepgraph_cache WHERE ns = ? AND key = ? "
                        "AND (expiry IS NULL OR expiry > ?)",
                        (_ns_text(ns), key, now),
                    ).fetchone()
                    if row is not None:
                        found[(tuple(ns), key)] = row[0]
            finally:
                conn.execute("COMMIT")
        return {k: self._load(k, data) for k, data in found.items()}

    def set(self, pairs: Mapping[CacheKey, tuple[Any, float | None]]) -> None:
        rows = [
            (_ns_text(ns), key, self._expiry(ttl), self._dump((ns, key), value))
            for (ns, key), (value, ttl) in pairs.items()
        ]
        with self._writing() as conn:
            conn.execute(
                "DELETE FROM stepgraph_cache WHERE expiry IS NOT NULL AND expiry <= ?",
                (self.clock(),),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO stepgraph_cache (ns, key, expiry, value) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        with self._writing() as conn:
            if namespaces is None:
                conn.execute("DELETE FROM stepgraph_cache")
            else:
                conn.executemany(
                    "DELETE FROM stepgraph_cache WHERE ns = ?",
                    [(_ns_text(ns),) for ns in namespaces],
                )


def _ns_text(ns: Namespace) -> str:
    # JSON with ASCII escapes: unambiguous whatever the parts contain.
    return json.dumps([str(part) for part in ns])

"""``PostgresSaver``: checkpoints in PostgreSQL, for many workers on many machines.

Install it with ``pip install 'stepgraph[postgres]'`` (psycopg 3 and psycopg-pool).

How it uses PostgreSQL, and why:

* One connection pool per saver (psycopg-pool): its size, the wait for a free
  connection, idle and lifetime limits and an optional health check on checkout
  are all settings. Every call borrows a connection for one transaction and gives
  it back, so many threads and asyncio tasks of one process share a few connections
  and no call waits behind a saver-wide lock.
* A dropped connection (server restart, idle timeout, a pooler closing it, a network
  blip) is retried on a fresh connection, for reads and for writes alike: every write
  is idempotent (blobs are content-addressed and inserted once, a task's ordinary
  writes are insert-or-ignore, special writes and checkpoints are replaced by the
  same bytes), so a transaction whose fate is unknown can run again without losing
  or duplicating anything.
* A write is one transaction sent as a pipeline: the statements of a checkpoint or of
  a superstep's writes travel together and cost about one network round trip. Rows
  that several calls of one transaction add to a table go in one statement, and the
  lease is checked once per transaction: a one-task superstep's writes and checkpoint
  are six statements and one commit.
* Reads of one ``get_tuple``/``list`` call run in one ``REPEATABLE READ`` read-only
  transaction, so the rows, blobs and writes they combine come from one snapshot.
* The storage design is the SQLite saver's (see `stepgraph.checkpoint.SqliteSaver`):
  values per channel version in content-addressed blobs, deltas for append-only
  channels, ``stepgraph_blob_refs`` for garbage collection by set operations, and
  "newest" meaning the order rows were stored (``seq``), never the greatest id.
* The thread lease lives in the database, timed by the server's clock, so two workers
  on two machines cannot advance one thread at once; a lease holder's writes are
  *fenced*: each checks, in its own transaction, that the lease is still its own, so
  even a worker that stalled past its lease's expiry cannot write behind the new
  holder's back (it gets `LeaseLostError`). A background heartbeat renews the leases
  a saver holds, so a long superstep does not lose its thread.
* The schema is created and upgraded by versioned migrations when the saver opens
  (see `stepgraph.checkpoint._postgres_schema`): there is no ``setup()`` to forget.
"""

from __future__ import annotations

import builtins
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Self, TypeVar

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "stepgraph.checkpoint.postgres needs psycopg 3 and psycopg-pool; install them "
        "with: pip install 'stepgraph[postgres]'"
    ) from exc

from ._base import LEASE_TTL, owner_is_dead
from ._blobs import write_blob
from ._metadata import metadata_json
from ._model import CheckpointTuple
from ._postgres_schema import FENCE_SQLSTATE, MIGRATIONS, SCHEMA_VERSION, migrate, quote_schema
from ._postgres_sql import (
    _BEFORE,
    _NO_WAIT_FOR_DISK,
    _SELECT,
    _blob_row,
    _insert,
    _pushdown,
    _Statements,
)
from ._serde import Serializer
from ._stored import (
    PreparedPut,
    StoredRow,
    StoredSaver,
    StoredWrite,
    WriteKey,
    address_conditions,
    paged_rows,
)
from .errors import LeaseLostError

__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "PostgresSaver", "LeaseLostError"]

T = TypeVar("T")


class PostgresSaver(StoredSaver):
    """Checkpoints in PostgreSQL: one database shared by many worker processes.

    Args:
        conninfo: a libpq connection string or URL
            (``postgresql://user@host:5432/db``). Either this or ``pool``.
        pool: a `psycopg_pool.ConnectionPool` you own (the saver does not close it).
        schema: the PostgreSQL schema that holds stepgraph's tables (created if
            missing), so one database can serve several applications.
        min_size / max_size: connections the pool keeps open / may open.
        timeout: seconds a call waits for a free connection before failing with
            `psycopg_pool.PoolTimeout`.
        max_idle: seconds an unused connection stays open; set it below your
            server's or pooler's idle timeout.
        max_lifetime: seconds after which a connection is replaced.
        check: test each connection with a round trip before handing it out. Off by
            default: a call whose connection turns out dead is retried on a fresh one
            anyway, and the check would cost a round trip per call.
        retries: how many times a call is retried after its connection broke.
        retry_backoff: the first pause between tries, in seconds; it doubles each time.
        prepare_threshold: psycopg's threshold for server-side prepared statements;
            ``None`` turns them off, which a pooler in transaction mode (PgBouncer
            before 1.21, Supavisor) needs.
        connect_kwargs: more keyword arguments for `psycopg.connect` (TCP keepalives
            are on by default).
        lease_heartbeat: renew held thread leases in a background thread, so a
            superstep that runs longer than the lease (60 s) keeps its thread.
        serde: the serializer (default: `Serializer()` with the default registry).

    Opening the saver connects and brings the schema up to date (an older schema is
    migrated, a newer one is refused with `SchemaVersionError`). Use it as a context
    manager, or call `close`. Sync and async runs use the same object: the ``a``
    methods run the sync ones in a worker thread.

    Raises:
        ConnectionError: no connection could be made (the message names the server).
        SchemaVersionError: the database was written by a newer stepgraph.
    """

    def __init__(
        self,
        conninfo: str | None = None,
        *,
        pool: ConnectionPool | None = None,
        schema: str = "public",
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
        max_idle: float = 300.0,
        max_lifetime: float = 3600.0,
        check: bool = False,
        retries: int = 5,
        retry_backoff: float = 0.05,
        prepare_threshold: int | None = 5,
        connect_kwargs: Mapping[str, Any] | None = None,
        lease_heartbeat: bool = True,
        serde: Serializer | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if (conninfo is None) == (pool is None):
            raise TypeError("PostgresSaver needs exactly one of conninfo= or pool=")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        if not (isinstance(retry_backoff, int | float) and retry_backoff >= 0):
            raise ValueError(f"retry_backoff must be a number >= 0, got {retry_backoff!r}")
        self.schema = schema
        self._s = quote_schema(schema)
        self.retries = retries
        self.retry_backoff = float(retry_backoff)
        self._local = threading.local()
        self._closed = False
        self._fence_lock = threading.Lock()
        self._fences: dict[str, str] = {}  # thread -> the owner this saver holds it as
        self._heartbeat_on = lease_heartbeat
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()
        self._sql = _Statements(self._s)
        if pool is not None:
            self._pool = pool
            self._owns = False
            self.where = f"{_describe(str(pool.conninfo))} schema {schema}"
        else:
            assert conninfo is not None
            self.where = f"{_describe(conninfo)} schema {schema}"
            kwargs: dict[str, Any] = {
                "autocommit": True,
                "prepare_threshold": prepare_threshold,
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            }
            kwargs.update(connect_kwargs or {})
            self._pool = ConnectionPool(
                conninfo,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout,
                max_idle=max_idle,
                max_lifetime=max_lifetime,
                check=ConnectionPool.check_connection if check else None,
                kwargs=kwargs,
                name="stepgraph",
                open=False,
            )
            self._owns = True
        try:
            if self._owns:
                assert conninfo is not None
                # One direct connection first: a refused connection, a wrong password or
                # a missing database fails at once, with the server's own reason.
                first_kwargs = {**kwargs, "connect_timeout": max(1, math.ceil(timeout))}
                with psycopg.connect(conninfo, **first_kwargs) as first:
                    migrate(first, schema=schema, where=self.where)
                self._pool.open(wait=False)
            else:
                self.setup()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self.close()
            reason = " ".join(str(exc).split())
            raise ConnectionError(
                f"cannot connect to PostgreSQL at {self.where}: {reason}. Check that the "
                "server is running and reachable and that the connection string (user, "
                "password, database) is right"
            ) from exc
        except BaseException:
            self.close()
            raise

    @classmethod
    @contextmanager
    def from_conn_string(cls, conninfo: str, **options: Any) -> Iterator[Self]:
        """A saver that the ``with`` block closes when it ends (LangGraph's shape).

        Args:
            conninfo: a libpq connection string or URL.
            options: any keyword argument of `PostgresSaver`.
        """
        saver = cls(conninfo, **options)
        try:
            yield saver
        finally:
            saver.close()

    def setup(self) -> None:
        """Create or upgrade the schema; cheap when it is up to date.

        The saver calls it when it opens; it is public for LangGraph's shape and for
        deploy scripts that want to migrate before starting workers.
        """
        with self._pool.connection() as conn:
            migrate(conn, schema=self.schema, where=self.where)

    def close(self) -> None:
        """Stop the heartbeat and close the pool the saver opened (one passed in stays)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        if self._owns:
            self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresSaver({self.where!r})"

    # -- connections, transactions and retries ---------------------------------------

    def _attempts(self, work: Callable[[], T]) -> T:
        """Run ``work``, again on a fresh connection if its connection broke."""
        delay = self.retry_backoff
        tries = 0
        while True:
            try:
                return work()  # a closed saver raises there (_transaction)
            except psycopg.OperationalError as exc:
                if not _retryable(exc) or tries >= self.retries:
                    if tries:
                        exc.add_note(f"stepgraph: gave up after {tries + 1} tries")
                    raise
            tries += 1
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _use(
        self,
        work: Callable[[psycopg.Connection[Any]], T],
        *,
        read: bool,
        retry: bool = True,
        own: bool = False,
    ) -> T:
        """Run ``work`` in one transaction; nested calls join the outer transaction,
        unless ``own``: then it is a transaction of its own (on another connection)."""
        txn: _Txn | None = getattr(self._local, "txn", None)
        if txn is not None and not own:
            return work(txn.conn)

        def once() -> T:
            with self._transaction(read=read) as txn:
                return work(txn.conn)

        return self._attempts(once) if retry else once()

    @contextmanager
    def _transaction(self, *, read: bool) -> Iterator[_Txn]:
        """One transaction on a pooled connection, shared by the calls made inside it.

        A write transaction is pipelined, and rows that several calls add to the same
        table (blobs, task writes) are gathered and sent as one statement before the
        commit. Jobs queued on ``after`` run once the transaction committed.
        """
        if self._closed:
            raise RuntimeError(
                f"{self!r} is closed; open a new PostgresSaver (or keep using it inside "
                "its `with` block)"
            )
        outer = getattr(self._local, "txn", None)  # set when this one is ``own``
        with self._pool.connection() as conn:
            txn = _Txn(conn)
            self._local.txn = txn
            try:
                if read:
                    with conn.transaction():
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        yield txn
                else:
                    with conn.pipeline(), conn.transaction():
                        yield txn
                        self._flush(txn)
            except psycopg.Error as exc:
                _raise_fence(exc)
                raise
            finally:
                self._local.txn = outer
        for job in txn.after:
            job()

    def _flush(self, txn: _Txn) -> None:
        conn, sql = txn.conn, self._sql
        if txn.blobs:
            rows = [_blob_row(k, data) for k, data in txn.blobs.items()]
            _insert(conn, sql.insert_blobs, sql.insert_blob, rows, 4)
        if txn.writes:
            _insert(conn, sql.insert_writes, sql.insert_write, txn.writes, 9)
        if txn.upserts:
            rows = builtins.list(txn.upserts.values())
            _insert(conn, sql.upsert_writes, sql.upsert_write, rows, 9)

    def _reading(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        return self._use(work, read=True)

    def _writing(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        return self._use(work, read=False)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Store every write made inside the block in one pipelined transaction.

        Runs use it to commit a superstep's pending writes and checkpoint together.
        If the connection breaks inside the block, the block fails (it cannot be
        run again from here); a run then stores each write on its own, each retried.
        """
        if getattr(self._local, "txn", None) is not None:
            yield
            return
        with self._transaction(read=False):
            yield

    # -- reading: one snapshot per call -----------------------------------------------

    def get_tuple(self, config: Mapping[str, Any]) -> CheckpointTuple | None:
        return self._reading(lambda _c: super(PostgresSaver, self).get_tuple(config))

    def list(
        self,
        config: Mapping[str, Any] | None,
        *,
        filter: Mapping[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        found = self._reading(
            lambda _c: builtins.list(
                super(PostgresSaver, self).list(config, filter=filter, before=before, limit=limit)
            )
        )
        yield from found

    def _load_refs(self, key: WriteKey) -> bytes | None:
        row = self._reading(lambda c: c.execute(self._sql.load_refs, key).fetchone())
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
        """One query, newest first (more pages only when Python rejects pushed rows).

        Metadata filters on str, int, float, bool and None values are pushed into SQL
        on the ``jsonb`` copy of the metadata, as a superset of the matches; every
        filter is then checked again in Python with ``==``, as `InMemorySaver` does.
        """
        if limit == 0:
            return []
        where, params = address_conditions("%s", thread, ns, checkpoint_id)
        if before_id is not None:
            where.append(_BEFORE.replace("{s}", self._s))
            params.append(before_id)
        if filter:
            pushed, pushed_params = _pushdown(filter)
            where += pushed
            params += pushed_params
        select = _SELECT.replace("{s}", self._s)
        return self._reading(
            lambda conn: paged_rows(
                lambda sql, args: conn.execute(sql, args).fetchall(),
                select,
                where,
                params,
                "%s",
                filter,
                limit,
                self.serde,
            )
        )

    def _blobs(self, keys: Sequence[str]) -> Mapping[str, bytes]:
        """The blobs with these hashes, and every blob their delta chains extend."""
        return self._reading(
            lambda c: dict(c.execute(self._sql.blobs, (builtins.list(keys),)).fetchall())
        )

    def _writes(self, keys: Sequence[WriteKey]) -> Mapping[WriteKey, builtins.list[StoredWrite]]:
        unique = builtins.list(dict.fromkeys(keys))
        columns = [[k[i] for k in unique] for i in range(3)]

        def work(conn: psycopg.Connection[Any]) -> dict[WriteKey, builtins.list[StoredWrite]]:
            out: dict[WriteKey, builtins.list[StoredWrite]] = {}
            for thread, ns, cid, task_id, idx, channel, value in conn.execute(
                self._sql.writes, columns
            ):
                out.setdefault((thread, ns, cid), []).append((task_id, idx, channel, value))
            return out

        return self._reading(work) if unique else {}

    # -- writing ------------------------------------------------------------------------

    def _txn(self) -> _Txn:
        txn: _Txn | None = getattr(self._local, "txn", None)
        assert txn is not None, "called outside a transaction"
        return txn

    def _fence(self, conn: psycopg.Connection[Any], thread: str) -> None:
        with self._fence_lock:
            owner = self._fences.get(thread)
        if owner is not None:
            fenced = self._txn().fenced
            if thread not in fenced:  # once per transaction is enough
                conn.execute(self._sql.fence, (thread, owner))
                fenced.add(thread)

    def _insert_blobs(self, conn: psycopg.Connection[Any], blobs: Mapping[str, bytes]) -> None:
        """Add blobs to the transaction's insert; before its first, take the blob lock.

        The lock comes before the transaction names any blob (in a checkpoint's refs
        or a write's row): the collector's lock conflicts with it, so a collection
        that starts meanwhile waits for this commit, and then sees what it names. The
        rows themselves are sent with the commit, in one statement.
        """
        txn = self._txn()
        if txn.blobs is None:
            conn.execute(self._sql.lock_blobs_shared)
            txn.blobs = {}
        txn.blobs.update(blobs)

    def _store(self, prepared: PreparedPut) -> None:
        address = (prepared.thread, prepared.ns, prepared.checkpoint_id)
        hashes = sorted({ref[0] for ref in prepared.refs.values()})

        def work(conn: psycopg.Connection[Any]) -> None:
            self._fence(conn, prepared.thread)
            self._insert_blobs(conn, prepared.blobs)
            # A re-put replaces the row and moves it to newest; its pending writes stay.
            old = conn.execute(self._sql.drop_checkpoint, address)
            conn.execute(
                self._sql.insert_checkpoint,
                (
                    *address,
                    prepared.parent_id,
                    prepared.checkpoint,
                    prepared.refs_bytes,
                    prepared.metadata,
                    metadata_json(prepared.metadata_plain),
                    ",".join(hashes),  # hex digests: no commas
                ),
            )
            self._txn().after.append(lambda: self._collect_later(old))

        self._writing(work)

    def _collect_later(self, cursor: psycopg.Cursor[Any]) -> None:
        """Collect the blobs a replaced checkpoint named, once the new one is stored."""
        seeds = sorted({row[0] for row in cursor.fetchall()})
        if seeds:
            self._writing(lambda c: self._collect(c, seeds))

    def _collect(self, conn: psycopg.Connection[Any], seeds: Sequence[str]) -> None:
        seeds = [s for s in seeds if s is not None]
        if seeds:
            conn.execute(self._sql.lock_blobs)
            conn.execute(self._sql.collect, (builtins.list(seeds),))

    def _store_writes(
        self,
        key: WriteKey,
        task_id: str,
        task_path: str,
        rows: Sequence[tuple[int, str, bytes]],
        blobs: Mapping[str, bytes],
    ) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            self._fence(conn, key[0])
            txn = self._txn()
            if blobs:
                self._insert_blobs(conn, blobs)
            # A retried save of ordinary writes is a no-op (the first copy wins);
            # special writes (error, interrupt, ...) are replaced, the last one wins.
            for i, ch, data in rows:
                row = (*key, task_id, i, ch, data, write_blob(data), task_path)
                if i >= 0:
                    txn.writes.append(row)
                else:
                    txn.upserts[(task_id, i, *key)] = row

        self._writing(work)

    def _delete_threads(self, threads: Sequence[str]) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(self._sql.lock_blobs)
            doomed = builtins.list(threads)
            seeds = conn.execute(self._sql.delete_threads, (doomed, doomed)).fetchall()
            self._collect(conn, [h for (h,) in seeds])

        self._writing(work)

    def _keep_latest(self, threads: Sequence[str], keep: int) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(self._sql.lock_blobs)
            seeds = conn.execute(self._sql.keep_latest, (builtins.list(threads), keep)).fetchall()
            self._collect(conn, [h for (h,) in seeds])

        self._writing(work)

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

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(self._sql.lock_blobs)
            self._fence(conn, dst)
            seeds = [h for (h,) in conn.execute(self._sql.copy_drop, (dst, src)).fetchall()]
            conn.execute(self._sql.copy_checkpoints, (dst, src))
            conn.execute(self._sql.copy_refs, (src, dst))
            seeds += [h for (h,) in conn.execute(self._sql.copy_drop_writes, (dst, src))]
            conn.execute(self._sql.copy_writes, (dst, src))
            self._collect(conn, seeds)

        self._writing(work)

    # -- the thread lease, shared by every worker using the database --------------------

    def _lease_try(self, thread: str, owner: str, ttl: float) -> str | None:
        """Take or renew the lease; None on success, else the current holder.

        The lease row's expiry is computed by the server's clock, so workers on
        machines whose clocks disagree still agree on when a lease ran out. A holder
        that is a dead process on this machine is taken over at once.
        """

        with self._fence_lock:
            mine = self._fences.get(thread)
        if mine is not None and mine != owner and not owner_is_dead(mine):
            # Another run of this process holds it: writes are fenced per saver and
            # thread, so a saver holds a thread for one run at a time.
            return mine

        def work(conn: psycopg.Connection[Any]) -> str | None:
            conn.execute(_NO_WAIT_FOR_DISK)
            row = conn.execute(self._sql.lease_take, (thread, owner, ttl, None)).fetchone()
            if row is not None:
                return None
            held = conn.execute(self._sql.lease_holder, (thread,)).fetchone()
            if held is None:  # released in between: try once more
                row = conn.execute(self._sql.lease_take, (thread, owner, ttl, None)).fetchone()
                return None if row is not None else "another worker"
            holder = str(held[0])
            if owner_is_dead(holder):
                row = conn.execute(self._sql.lease_take, (thread, owner, ttl, holder)).fetchone()
                if row is not None:
                    return None
            return holder

        holder = self._attempts(lambda: self._use(work, read=False, retry=False, own=True))
        if holder is None:
            with self._fence_lock:
                self._fences[thread] = owner
            self._start_heartbeat()
        return holder

    def _lease_release(self, thread: str, owner: str) -> None:
        with self._fence_lock:
            if self._fences.get(thread) == owner:
                del self._fences[thread]

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(_NO_WAIT_FOR_DISK)
            conn.execute(self._sql.lease_release, (thread, owner))

        self._use(work, read=False, own=True)  # never inside a batch: see _NO_WAIT_FOR_DISK

    def _start_heartbeat(self) -> None:
        if not self._heartbeat_on or self._heartbeat is not None:
            return
        with self._fence_lock:
            if self._heartbeat is not None:
                return
            self._heartbeat = threading.Thread(
                target=self._beat, name="stepgraph-lease-heartbeat", daemon=True
            )
            self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(LEASE_TTL / 3):
            with self._fence_lock:
                held = builtins.list(self._fences.items())
            for thread, owner in held:
                try:
                    self._renew(thread, owner)
                except Exception:
                    continue  # the next beat tries again; a lost lease fails the next write

    def _renew(self, thread: str, owner: str) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(_NO_WAIT_FOR_DISK)
            conn.execute(self._sql.lease_renew, (LEASE_TTL, thread, owner))

        self._use(work, read=False, own=True)


class _Txn:
    """What the calls made inside one write transaction share."""

    __slots__ = ("after", "blobs", "conn", "fenced", "upserts", "writes")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.after: builtins.list[Callable[[], None]] = []
        self.fenced: set[str] = set()
        self.blobs: dict[str, bytes] | None = None  # None: the blob lock is not taken yet
        self.writes: builtins.list[tuple[Any, ...]] = []
        self.upserts: dict[tuple[Any, ...], tuple[Any, ...]] = {}


# -- helpers ----------------------------------------------------------------------


# Server errors after which running the transaction again can succeed: the server is
# shutting down or starting (57P01-57P03), or the transaction lost a conflict.
_RETRY_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01"})


def _retryable(exc: psycopg.OperationalError) -> bool:
    """Whether the error means the connection (or the server) went away, or a
    transient conflict: the transaction did not happen, or may run again safely.

    Not retried: waiting for a free pooled connection timed out (``timeout`` is the
    wait the caller asked for), and errors that would only happen again (a statement
    timeout, a value beyond a limit, a full disk, a refused password).
    """
    if isinstance(exc, PoolTimeout):
        return False
    state = exc.sqlstate
    if state is None:  # raised by the client: the connection broke or could not be made
        return True
    return state.startswith("08") or state in _RETRY_SQLSTATES


def _raise_fence(exc: psycopg.Error) -> None:
    """Turn the fence's error into `LeaseLostError`."""
    if getattr(exc, "sqlstate", None) != FENCE_SQLSTATE:
        return
    diag = exc.diag
    message = diag.message_primary or ""
    thread = message.partition("thread ")[2].rpartition(" is no longer")[0]
    holder = diag.message_detail or None
    raise LeaseLostError(thread, holder) from None


def _describe(conninfo: str) -> str:
    """``host:port/dbname`` of a connection string, without secrets."""
    try:
        parts = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<invalid connection string>"
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = parts.get("port") or "5432"
    db = parts.get("dbname") or parts.get("user") or ""
    return f"{host}:{port}/{db}"

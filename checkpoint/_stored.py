"""What every stepgraph saver shares: encoding, decoding, caching, the write rules.

A concrete saver (memory, SQLite, PostgreSQL) only moves rows. This module turns a
checkpoint into those rows and back:

* ``prepare()`` serializes a checkpoint in the caller's thread, so the bytes are fixed
  before the run moves on (nothing the next superstep does can change what is saved),
  and ``commit()`` stores the prepared rows, which may happen later, in another thread
  (``durability="async"``). ``put()`` is the two in one call, LangGraph's signature.
* Values go through `_blobs`: content-addressed by xxh3, shared between checkpoints
  that did not change them, deltas for append-only channels.
* Reads are batched: ``list()`` loads the rows, then every blob and every pending
  write they need in one query each, never one per checkpoint.

Storage backends subclass `StoredSaver` and implement the ``_``-methods at the bottom.
"""

from __future__ import annotations

import builtins
import threading
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from ._base import BaseCheckpointSaver, PruneStrategy, checkpoint_config, thread_of
from ._blobs import Ref, decode_values, decode_write, encode_value, encode_write, write_blob
from ._metadata import matches
from ._model import (
    WRITES_IDX_MAP,
    ChannelVersion,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
)
from ._serde import Serializer

WriteKey = tuple[str, str, str]
"""``(thread, ns, checkpoint_id)``: the checkpoint pending writes belong to."""

_REFS_CACHE = 256  # checkpoints whose value references stay in memory for the next put


@dataclass(frozen=True, slots=True)
class PreparedPut:
    """A checkpoint turned into bytes, ready to be stored by `StoredSaver.commit`.

    Attributes:
        thread / ns / checkpoint_id / parent_id: where it goes.
        checkpoint: the serialized checkpoint without its values.
        refs: channel -> blob reference, for every channel with a value.
        refs_bytes: ``refs`` serialized.
        metadata: the serialized metadata.
        metadata_plain: the metadata as plain data, for filtering.
        blobs: hash -> bytes of the values this checkpoint stores anew.
    """

    thread: str
    ns: str
    checkpoint_id: str
    parent_id: str | None
    checkpoint: bytes
    refs: dict[str, Ref]
    refs_bytes: bytes
    metadata: bytes
    metadata_plain: dict[str, Any]
    blobs: dict[str, bytes]

    @property
    def config(self) -> dict[str, Any]:
        """The config that addresses the checkpoint once stored."""
        return checkpoint_config(self.thread, self.ns, self.checkpoint_id)


@dataclass(frozen=True, slots=True)
class PreparedWrites:
    """A task's writes turned into ``(idx, channel, bytes)`` rows."""

    key: WriteKey
    task_id: str
    task_path: str
    rows: builtins.list[tuple[int, str, bytes]]
    blobs: dict[str, bytes]  # large write values, stored as blobs (shared with deltas)


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One checkpoint as a backend returns it."""

    thread: str
    ns: str
    checkpoint_id: str
    parent_id: str | None
    checkpoint: bytes
    refs: bytes
    metadata: bytes


def address_conditions(
    mark: str, thread: str | None, ns: str | None, checkpoint_id: str | None
) -> tuple[builtins.list[str], builtins.list[Any]]:
    """SQL conditions (with ``mark`` placeholders) and parameters for the parts given."""
    where: builtins.list[str] = []
    params: builtins.list[Any] = []
    for column, value in (
        ("c.thread_id", thread),
        ("c.checkpoint_ns", ns),
        ("c.checkpoint_id", checkpoint_id),
    ):
        if value is not None:
            where.append(f"{column} = {mark}")
            params.append(value)
    return where, params


def paged_rows(
    fetch: Callable[[str, builtins.list[Any]], Sequence[Sequence[Any]]],
    select: str,
    where: Sequence[str],
    params: Sequence[Any],
    mark: str,
    filter: dict[str, Any] | None,
    limit: int | None,
    serde: Serializer,
) -> builtins.list[StoredRow]:
    """Checkpoint rows of a SQL backend, newest first, filtered again in Python.

    ``select`` yields ``seq, thread, ns, id, parent, checkpoint, refs, metadata``;
    ``where`` holds conditions that may let through more rows than ``filter``
    accepts (metadata filters pushed into SQL), and ``mark`` is the driver's
    parameter placeholder. Rows Python rejects leave a page short: only then is
    the next page (twice as long) fetched, so ``limit`` is still applied in SQL.
    """
    out: builtins.list[StoredRow] = []
    after: int | None = None  # the last seq seen, for the next page
    page = limit
    while True:
        clauses = [*where, f"c.seq < {mark}"] if after is not None else builtins.list(where)
        sql = select
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY c.seq DESC"
        args = [*params, after] if after is not None else builtins.list(params)
        if page is not None:
            sql += f" LIMIT {mark}"
            args.append(page)
        rows = fetch(sql, args)
        for _seq, t, n, cid, parent, body, refs, meta in rows:
            if filter and not matches(serde.loads(meta, path="metadata"), filter):
                continue
            out.append(StoredRow(t, n, cid, parent, body, refs, meta))
        if page is None or limit is None or len(rows) < page or len(out) >= limit:
            break
        after = rows[-1][0]
        page *= 2
    return out if limit is None else out[:limit]


StoredWrite = tuple[str, int, str, bytes]
"""``(task_id, idx, channel, value bytes)``, as a backend returns it."""


class StoredSaver(BaseCheckpointSaver):
    """A saver built on row storage; subclasses provide the storage."""

    def __init__(self, *, serde: Serializer | None = None) -> None:
        self.serde = serde or Serializer()
        self._refs_lock = threading.Lock()
        self._refs: OrderedDict[WriteKey, dict[str, Ref]] = OrderedDict()

    # -- writing ------------------------------------------------------------------

    def prepare(
        self,
        config: Mapping[str, Any],
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: Mapping[str, ChannelVersion],
        *,
        appends: Mapping[str, int] | None = None,
    ) -> PreparedPut:
        """Serialize a checkpoint; its parent is ``config``'s ``checkpoint_id``.

        Args:
            config: addresses the parent checkpoint (thread, namespace, id).
            checkpoint: the checkpoint; values of channels not in ``new_versions``
                are taken from the parent without serializing them again.
            metadata: its metadata.
            new_versions: the channels whose value changed since the parent.
            appends: channel -> n, for channels whose new value is the parent's value
                (n items) with items appended; only the new items are stored.
        """
        thread, ns, parent_id = thread_of(config)
        before = self._parent_refs(thread, ns, parent_id) if parent_id else None
        serde = self.serde
        refs: dict[str, Ref] = {}
        blobs: dict[str, bytes] = {}
        extra = appends or {}
        values = checkpoint["channel_values"]
        versions = checkpoint["channel_versions"]
        names = set(values)
        if before:
            # Channels left out of channel_values keep the parent's value unless their
            # version changed: a caller may pass only what changed.
            names.update(ch for ch in before if ch in versions and ch not in new_versions)
        for ch in sorted(names):
            old = before.get(ch) if before is not None else None
            if old is not None and ch not in new_versions:
                refs[ch] = old
            elif ch in values:
                ref, new = encode_value(serde, ch, values[ch], old, extra.get(ch))
                refs[ch] = ref
                blobs.update(new)
        # Known from now on, even before `commit` stores it: the next checkpoint may be
        # prepared while this one is still being written in the background.
        self._remember((thread, ns, checkpoint["id"]), refs)
        body = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        meta = dict(metadata)
        meta_bytes = serde.dumps(meta, path="metadata")
        return PreparedPut(
            thread=thread,
            ns=ns,
            checkpoint_id=checkpoint["id"],
            parent_id=parent_id,
            checkpoint=serde.dumps(body, path="checkpoint"),
            refs=refs,
            refs_bytes=serde.dumps(refs, path="refs"),
            metadata=meta_bytes,
            metadata_plain=serde.loads(meta_bytes, path="metadata"),
            blobs=blobs,
        )

    def commit(self, prepared: PreparedPut) -> dict[str, Any]:
        """Store a prepared checkpoint; returns the config that addresses it."""
        self._store(prepared)
        return prepared.config

    def batch(self) -> AbstractContextManager[None]:
        """Group the writes made inside the ``with`` block into one transaction.

        A run uses it to store a step's writes and checkpoint together. Backends
        without transactions (the in-memory saver) store each write as it comes.
        """
        return nullcontext()

    def put(
        self,
        config: Mapping[str, Any],
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: Mapping[str, ChannelVersion],
    ) -> dict[str, Any]:
        return self.commit(self.prepare(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: Mapping[str, Any],
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.commit_writes(self.prepare_writes(config, writes, task_id, task_path))

    def commit_writes(self, prepared: PreparedWrites) -> None:
        """Store writes made ready by `prepare_writes`."""
        if prepared.rows:
            self._store_writes(
                prepared.key, prepared.task_id, prepared.task_path, prepared.rows, prepared.blobs
            )

    def prepare_writes(
        self,
        config: Mapping[str, Any],
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> PreparedWrites:
        """Serialize a task's writes now; `commit_writes` stores them later."""
        thread, ns, checkpoint_id = thread_of(config)
        if checkpoint_id is None:
            raise ValueError(
                "put_writes needs the config of the checkpoint the task ran from "
                "(configurable.checkpoint_id is missing)"
            )
        rows: builtins.list[tuple[int, str, bytes]] = []
        blobs: dict[str, bytes] = {}
        for i, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            if idx < 0:  # special writes are replaced in place: keep them inline
                stored = self.serde.dumps(value, path=f"writes.{channel}")
            else:
                stored, new = encode_write(self.serde, channel, value)
                blobs.update(new)
            rows.append((idx, channel, stored))
        return PreparedWrites((thread, ns, checkpoint_id), task_id, task_path, rows, blobs)

    # -- reading ------------------------------------------------------------------

    def get_tuple(self, config: Mapping[str, Any]) -> CheckpointTuple | None:
        thread, ns, checkpoint_id = thread_of(config)
        rows = self._select(thread, ns, checkpoint_id, None, None, 1)
        if not rows:
            return None
        return self._tuples(rows)[0]

    def list(
        self,
        config: Mapping[str, Any] | None,
        *,
        filter: Mapping[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        conf = (config or {}).get("configurable") or {}
        thread = conf.get("thread_id")
        ns = conf.get("checkpoint_ns")
        checkpoint_id = conf.get("checkpoint_id")
        before_id = None
        if before is not None:
            before_id = (before.get("configurable") or {}).get("checkpoint_id")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        rows = self._select(
            None if thread is None else str(thread),
            None if ns is None else str(ns),
            checkpoint_id,
            dict(filter) if filter else None,
            before_id,
            limit,
        )
        yield from self._tuples(rows)

    def _tuples(self, rows: Sequence[StoredRow]) -> builtins.list[CheckpointTuple]:
        serde = self.serde
        refs_of = [serde.loads(r.refs, path="refs") for r in rows]
        wanted = sorted({ref[0] for refs in refs_of for ref in refs.values()})
        cache: dict[str, bytes] = dict(self._blobs(wanted)) if wanted else {}

        def fetch(keys: builtins.list[str]) -> dict[str, bytes]:
            missing = [k for k in keys if k not in cache]
            if missing:
                cache.update(self._blobs(missing))
            return {k: cache[k] for k in keys if k in cache}

        writes = self._writes([(r.thread, r.ns, r.checkpoint_id) for r in rows])
        write_blobs = sorted(
            {k for found in writes.values() for *_, data in found if (k := write_blob(data))}
        )
        if write_blobs:
            fetch(write_blobs)
        out: builtins.list[CheckpointTuple] = []
        for row, refs in zip(rows, refs_of):
            body = serde.loads(row.checkpoint, path="checkpoint")
            values = decode_values(serde, refs, fetch)
            checkpoint = Checkpoint(**body, channel_values=values)  # type: ignore[typeddict-item]
            key = (row.thread, row.ns, row.checkpoint_id)
            self._remember(key, refs)
            pending: builtins.list[PendingWrite] = [
                (task_id, channel, decode_write(serde, channel, data, cache))
                for task_id, _, channel, data in writes.get(key, ())
            ]
            out.append(
                CheckpointTuple(
                    config=checkpoint_config(row.thread, row.ns, row.checkpoint_id),
                    checkpoint=checkpoint,
                    metadata=serde.loads(row.metadata, path="metadata"),
                    parent_config=(
                        checkpoint_config(row.thread, row.ns, row.parent_id)
                        if row.parent_id
                        else None
                    ),
                    pending_writes=pending,
                )
            )
        return out

    # -- the references cache -----------------------------------------------------

    def _remember(self, key: WriteKey, refs: dict[str, Ref]) -> None:
        with self._refs_lock:
            self._refs[key] = refs
            self._refs.move_to_end(key)
            while len(self._refs) > _REFS_CACHE:
                self._refs.popitem(last=False)

    def _parent_refs(self, thread: str, ns: str, checkpoint_id: str) -> dict[str, Ref] | None:
        key = (thread, ns, checkpoint_id)
        with self._refs_lock:
            found = self._refs.get(key)
        if found is not None:
            return found
        raw = self._load_refs(key)
        if raw is None:
            return None
        refs: dict[str, Ref] = self.serde.loads(raw, path="refs")
        self._remember(key, refs)
        return refs

    def _forget_thread(self, thread: str) -> None:
        with self._refs_lock:
            for key in [k for k in self._refs if k[0] == thread]:
                del self._refs[key]

    # -- threads ------------------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        self._forget_thread(str(thread_id))
        self._delete_threads([str(thread_id)])

    def prune(
        self, thread_ids: Sequence[str], *, strategy: PruneStrategy = "keep_latest", keep: int = 1
    ) -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}; use 'keep_latest' or 'delete'")
        if strategy == "keep_latest" and (
            isinstance(keep, bool) or not isinstance(keep, int) or keep < 1
        ):
            raise ValueError(
                f"keep must be a positive integer, got {keep!r}; use strategy='delete' "
                "to remove every checkpoint"
            )
        threads = [str(t) for t in thread_ids]
        for t in threads:
            self._forget_thread(t)
        if strategy == "delete":
            self._delete_threads(threads)
        else:
            self._keep_latest(threads, keep)

    # -- storage: what a backend implements -----------------------------------------

    @abstractmethod
    def _store(self, prepared: PreparedPut) -> None:
        """Insert the checkpoint row and its new blobs (blobs: insert-or-ignore)."""

    @abstractmethod
    def _load_refs(self, key: WriteKey) -> bytes | None:
        """The serialized references of one checkpoint, or None if it is unknown."""

    @abstractmethod
    def _select(
        self,
        thread: str | None,
        ns: str | None,
        checkpoint_id: str | None,
        filter: dict[str, Any] | None,
        before_id: str | None,
        limit: int | None,
    ) -> builtins.list[StoredRow]:
        """Checkpoint rows, newest (last stored) first.

        ``before_id``: only rows stored before that checkpoint (of the same thread and
        namespace); ``filter``: metadata keys equal to the given values.
        """

    @abstractmethod
    def _blobs(self, keys: Sequence[str]) -> Mapping[str, bytes]:
        """The blobs with these hashes (missing ones are left out)."""

    @abstractmethod
    def _writes(self, keys: Sequence[WriteKey]) -> Mapping[WriteKey, builtins.list[StoredWrite]]:
        """Pending writes of these checkpoints, each list ordered by (task_id, idx)."""

    @abstractmethod
    def _store_writes(
        self,
        key: WriteKey,
        task_id: str,
        task_path: str,
        rows: Sequence[tuple[int, str, bytes]],
        blobs: Mapping[str, bytes],
    ) -> None:
        """Store ``(idx, channel, bytes)`` rows: idx >= 0 insert-or-ignore, idx < 0 upsert.

        A row's bytes may name a blob (see `_blobs.write_blob`); ``blobs`` holds those
        blobs (insert-or-ignore), which must live as long as a write refers to them.
        """

    @abstractmethod
    def _delete_threads(self, threads: Sequence[str]) -> None:
        """Remove every checkpoint and write of these threads, then unreferenced blobs."""

    @abstractmethod
    def _keep_latest(self, threads: Sequence[str], keep: int) -> None:
        """Keep the last ``keep`` checkpoints per (thread, namespace); drop the rest."""

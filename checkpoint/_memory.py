"""``InMemorySaver``: the reference saver, kept in process memory.

It stores exactly what the SQLite saver stores (serialized bytes, content-addressed
blobs, deltas for append-only channels), so a value handed to it can never alias live
state and the two behave alike in every test of the conformance suite.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ._blobs import links, write_blob
from ._serde import Serializer
from ._stored import PreparedPut, StoredRow, StoredSaver, StoredWrite, WriteKey


@dataclass(frozen=True, slots=True)
class _Row:
    seq: int
    row: StoredRow
    metadata: dict[str, Any]  # plain, for filtering
    blob_keys: tuple[str, ...]  # the blobs its references name directly


class InMemorySaver(StoredSaver):
    """Checkpoints in process memory: for tests, notebooks and short-lived processes.

    Everything is stored serialized, as a database would store it, so what you read
    back is never the object a run holds.

    Args:
        serde: the serializer (default: `Serializer()` with the default registry).
    """

    def __init__(self, *, serde: Serializer | None = None) -> None:
        super().__init__(serde=serde)
        self._lock = threading.RLock()
        self._seq = itertools.count(1)
        self._blob_store: dict[str, bytes] = {}
        # (thread, ns) -> checkpoint id -> row, in insertion order
        self._rows: dict[tuple[str, str], dict[str, _Row]] = {}
        # (thread, ns, checkpoint id) -> (task id, idx) -> (channel, bytes, task path)
        self._write_store: dict[WriteKey, dict[tuple[str, int], tuple[str, bytes, str]]] = {}

    # -- storage ------------------------------------------------------------------

    def _store(self, prepared: PreparedPut) -> None:
        row = StoredRow(
            thread=prepared.thread,
            ns=prepared.ns,
            checkpoint_id=prepared.checkpoint_id,
            parent_id=prepared.parent_id,
            checkpoint=prepared.checkpoint,
            refs=prepared.refs_bytes,
            metadata=prepared.metadata,
        )
        with self._lock:
            for key, data in prepared.blobs.items():
                self._blob_store.setdefault(key, data)
            rows = self._rows.setdefault((prepared.thread, prepared.ns), {})
            rows.pop(prepared.checkpoint_id, None)  # a re-put moves to the end
            rows[prepared.checkpoint_id] = _Row(
                seq=next(self._seq),
                row=row,
                metadata=prepared.metadata_plain,
                blob_keys=tuple(ref[0] for ref in prepared.refs.values()),
            )

    def _load_refs(self, key: WriteKey) -> bytes | None:
        with self._lock:
            found = self._rows.get((key[0], key[1]), {}).get(key[2])
            return found.row.refs if found else None

    def _select(
        self,
        thread: str | None,
        ns: str | None,
        checkpoint_id: str | None,
        filter: dict[str, Any] | None,
        before_id: str | None,
        limit: int | None,
    ) -> list[StoredRow]:
        with self._lock:
            found: list[_Row] = []
            for (t, n), rows in self._rows.items():
                if (thread is not None and t != thread) or (ns is not None and n != ns):
                    continue
                cutoff = None
                if before_id is not None:
                    anchor = rows.get(before_id)
                    cutoff = anchor.seq if anchor else None
                    if cutoff is None:
                        continue  # `before` a checkpoint this namespace does not have
                if checkpoint_id is not None:
                    candidates = [rows[checkpoint_id]] if checkpoint_id in rows else []
                else:
                    candidates = list(rows.values())
                for r in candidates:
                    if cutoff is not None and r.seq >= cutoff:
                        continue
                    if filter and any(r.metadata.get(k, _ABSENT) != v for k, v in filter.items()):
                        continue
                    found.append(r)
            found.sort(key=lambda r: r.seq, reverse=True)
            if limit is not None:
                found = found[:limit]
            return [r.row for r in found]

    def _blobs(self, keys: Sequence[str]) -> Mapping[str, bytes]:
        with self._lock:
            store = self._blob_store
            return {k: store[k] for k in keys if k in store}

    def _writes(self, keys: Sequence[WriteKey]) -> Mapping[WriteKey, list[StoredWrite]]:
        out: dict[WriteKey, list[StoredWrite]] = {}
        with self._lock:
            for key in keys:
                stored = self._write_store.get(key)
                if stored:
                    out[key] = [
                        (task_id, idx, channel, data)
                        for (task_id, idx), (channel, data, _) in sorted(stored.items())
                    ]
        return out

    def _store_writes(
        self,
        key: WriteKey,
        task_id: str,
        task_path: str,
        rows: Sequence[tuple[int, str, bytes]],
        blobs: Mapping[str, bytes],
    ) -> None:
        with self._lock:
            for blob_key, data in blobs.items():
                self._blob_store.setdefault(blob_key, data)
            stored = self._write_store.setdefault(key, {})
            for idx, channel, data in rows:
                if idx >= 0 and (task_id, idx) in stored:
                    continue  # a retried save: the first copy wins
                stored[(task_id, idx)] = (channel, data, task_path)

    def _delete_threads(self, threads: Sequence[str]) -> None:
        gone = set(threads)
        with self._lock:
            for key in [k for k in self._rows if k[0] in gone]:
                del self._rows[key]
            for wkey in [k for k in self._write_store if k[0] in gone]:
                del self._write_store[wkey]
            self._collect_blobs()

    def _keep_latest(self, threads: Sequence[str], keep: int) -> None:
        wanted = set(threads)
        with self._lock:
            for (thread, ns), rows in self._rows.items():
                if thread not in wanted:
                    continue
                ordered = sorted(rows.values(), key=lambda r: r.seq, reverse=True)
                for r in ordered[keep:]:
                    del rows[r.row.checkpoint_id]
                    self._write_store.pop((thread, ns, r.row.checkpoint_id), None)
            self._collect_blobs()

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        src, dst = str(source_thread_id), str(target_thread_id)
        if src == dst:
            return
        self._forget_thread(dst)
        with self._lock:
            # In the source's storage order across namespaces, so "latest" and list order
            # are the same in the copy.
            source = sorted(
                (
                    r
                    for (thread, _), rows in self._rows.items()
                    if thread == src
                    for r in rows.values()
                ),
                key=lambda r: r.seq,
            )
            for r in source:
                target = self._rows.setdefault((dst, r.row.ns), {})
                target.pop(r.row.checkpoint_id, None)
                target[r.row.checkpoint_id] = replace(
                    r, seq=next(self._seq), row=replace(r.row, thread=dst)
                )
            for (thread, ns, cid), writes in list(self._write_store.items()):
                if thread == src:
                    self._write_store[(dst, ns, cid)] = dict(writes)

    def _collect_blobs(self) -> None:
        # Keep every blob a remaining checkpoint refers to, directly or through deltas.
        store = self._blob_store
        live: set[str] = set()
        todo = [k for rows in self._rows.values() for r in rows.values() for k in r.blob_keys]
        todo += [
            k
            for writes in self._write_store.values()
            for _, data, _ in writes.values()
            if (k := write_blob(data)) is not None
        ]
        while todo:
            key = todo.pop()
            if key in live or key not in store:
                continue
            live.add(key)
            todo.extend(links(store[key]))
        self._blob_store = {k: v for k, v in store.items() if k in live}


_ABSENT = object()

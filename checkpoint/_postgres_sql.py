"""The SQL text `PostgresSaver` runs, and the helpers that shape its parameters.

Every statement is a template with ``{s}`` for the quoted schema; `_Statements` fills
it in once per saver. Kept apart from `stepgraph.checkpoint.postgres` so that the
saver's module reads as behaviour (transactions, retries, leases) and this one as the
database side of it.
"""

from __future__ import annotations

import builtins
import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._blobs import links
from ._metadata import INT64, PLAIN_KEY, json_number, plain_text

if TYPE_CHECKING:
    import psycopg

_BEFORE = """c.seq < (SELECT b.seq FROM {s}stepgraph_checkpoints AS b
    WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
    AND b.checkpoint_id = %s)"""

_SELECT = """SELECT c.seq, c.thread_id, c.checkpoint_ns, c.checkpoint_id,
    c.parent_checkpoint_id, c.checkpoint, c.refs, c.metadata
FROM {s}stepgraph_checkpoints AS c"""

_INSERT_BLOBS = """INSERT INTO {s}stepgraph_blobs (hash, base, items, data)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[])
ON CONFLICT (hash) DO NOTHING"""

# A blob's two links (the value a delta extends and its items), as rows.
_LINKS = "CROSS JOIN LATERAL (VALUES (b.base), (b.items)) AS l(hash)"

# Blobs that removed rows named (the seeds) and the blobs they extend are candidates;
# a candidate stays if a remaining checkpoint or write names it or a blob that extends
# it, directly or through a chain of deltas ("down", then "live").
_COLLECT = """
WITH RECURSIVE
    cand(hash) AS (
        SELECT unnest(%s::text[]) COLLATE "C"
        UNION
        SELECT l.hash FROM {s}stepgraph_blobs AS b JOIN cand ON b.hash = cand.hash
        {links} WHERE l.hash IS NOT NULL
    ),
    down(hash) AS (
        SELECT hash FROM cand
        UNION
        SELECT b.hash FROM {s}stepgraph_blobs AS b JOIN down
            ON b.base = down.hash OR b.items = down.hash
    ),
    live(hash) AS (
        SELECT d.hash FROM down AS d
        WHERE EXISTS (SELECT 1 FROM {s}stepgraph_blob_refs AS r WHERE r.hash = d.hash)
            OR EXISTS (SELECT 1 FROM {s}stepgraph_writes AS w WHERE w.blob = d.hash)
        UNION
        SELECT l.hash FROM {s}stepgraph_blobs AS b JOIN live ON b.hash = live.hash
        {links} WHERE l.hash IS NOT NULL
    )
DELETE FROM {s}stepgraph_blobs
WHERE hash IN (SELECT hash FROM cand EXCEPT SELECT hash FROM live)
""".replace("{links}", _LINKS)

# A write transaction takes ROW EXCLUSIVE on stepgraph_blobs before it names any blob;
# collecting takes this mode, which conflicts with that and with itself, so a collection
# waits for the writes in progress and then sees every blob they name.
_LOCK_BLOBS = "LOCK TABLE {s}stepgraph_blobs IN SHARE ROW EXCLUSIVE MODE"

# Lease changes commit without waiting for the disk (one flush less per run start and
# end). A server crash can lose one: a lost release leaves a lease that expires or whose
# dead owner is taken over; a lost take fails the holder's next fenced write with
# LeaseLostError. A checkpoint's own commit flushes every earlier change with it, so a
# lease under stored checkpoints is never lost.
_NO_WAIT_FOR_DISK = "SET LOCAL synchronous_commit TO OFF"

_WRITE_COLUMNS = (
    "(thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, value, blob, task_path)"
)
_WRITE_ROWS = (
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int[], "
    "%s::text[], %s::bytea[], %s::text[], %s::text[])"
)


class _Statements:
    """Every statement the saver runs, with the schema filled in once."""

    def __init__(self, s: str) -> None:
        def q(sql: str) -> str:
            return sql.replace("{s}", s)

        self.lock_blobs = q(_LOCK_BLOBS)
        self.collect = q(_COLLECT)
        self.insert_blobs = q(_INSERT_BLOBS)
        self.load_refs = q(
            "SELECT refs FROM {s}stepgraph_checkpoints "
            "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s"
        )
        self.blobs = q(
            """WITH RECURSIVE chain(hash) AS (
                SELECT unnest(%s::text[]) COLLATE "C"
                UNION
                SELECT b.base FROM {s}stepgraph_blobs AS b JOIN chain ON b.hash = chain.hash
                WHERE b.base IS NOT NULL
            )
            SELECT b.hash, b.data FROM {s}stepgraph_blobs AS b WHERE b.hash IN (
                SELECT hash FROM chain
                UNION
                SELECT c.items FROM {s}stepgraph_blobs AS c JOIN chain ON c.hash = chain.hash
                WHERE c.items IS NOT NULL
            )"""
        )
        self.writes = q(
            """SELECT w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.idx,
                w.channel, w.value
            FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(t, n, c)
            JOIN {s}stepgraph_writes AS w
                ON w.thread_id = k.t AND w.checkpoint_ns = k.n AND w.checkpoint_id = k.c
            ORDER BY w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.idx"""
        )
        self.fence = q("SELECT {s}stepgraph_fence(%s, %s)")
        address = "thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s"
        # Drops a checkpoint (before a re-put of it) and returns the blobs it named.
        self.drop_checkpoint = q(
            f"""WITH old AS (
                DELETE FROM {{s}}stepgraph_checkpoints WHERE {address} RETURNING seq
            )
            DELETE FROM {{s}}stepgraph_blob_refs WHERE seq IN (SELECT seq FROM old)
            RETURNING hash"""
        )
        self.insert_checkpoint = q(
            """WITH new AS (
                INSERT INTO {s}stepgraph_checkpoints (thread_id, checkpoint_ns, checkpoint_id,
                    parent_checkpoint_id, checkpoint, refs, metadata, metadata_json)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)
                RETURNING seq
            )
            INSERT INTO {s}stepgraph_blob_refs (seq, hash)
            SELECT new.seq, h FROM new CROSS JOIN unnest(string_to_array(%s, ',')) AS h"""
        )
        self.lock_blobs_shared = q("LOCK TABLE {s}stepgraph_blobs IN ROW EXCLUSIVE MODE")
        upsert = (
            "ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE "
            "SET channel = EXCLUDED.channel, value = EXCLUDED.value, blob = EXCLUDED.blob, "
            "task_path = EXCLUDED.task_path"
        )
        write = f"INSERT INTO {{s}}stepgraph_writes {_WRITE_COLUMNS}"
        self.insert_writes = q(f"{write} {_WRITE_ROWS} ON CONFLICT DO NOTHING")
        self.upsert_writes = q(f"{write} {_WRITE_ROWS} {upsert}")
        # The same inserts with a VALUES list of n rows, made on first use of each n.
        blob = "INSERT INTO {s}stepgraph_blobs (hash, base, items, data) VALUES "
        self.insert_blob = _values(q(blob), 4, " ON CONFLICT (hash) DO NOTHING")
        self.insert_write = _values(q(write + " VALUES "), 9, " ON CONFLICT DO NOTHING")
        self.upsert_write = _values(q(write + " VALUES "), 9, " " + upsert)
        # Seeds for the collector come back from each removal.
        self.delete_threads = q(
            """WITH doomed AS (
                DELETE FROM {s}stepgraph_checkpoints WHERE thread_id = ANY(%s) RETURNING seq
            ),
            refs AS (
                DELETE FROM {s}stepgraph_blob_refs AS r USING doomed AS d
                WHERE r.seq = d.seq RETURNING r.hash
            ),
            w AS (
                DELETE FROM {s}stepgraph_writes WHERE thread_id = ANY(%s) RETURNING blob
            )
            SELECT hash FROM refs UNION SELECT blob FROM w WHERE blob IS NOT NULL"""
        )
        self.keep_latest = q(
            """WITH ranked AS (
                SELECT seq, ROW_NUMBER() OVER (
                    PARTITION BY thread_id, checkpoint_ns ORDER BY seq DESC
                ) AS newer
                FROM {s}stepgraph_checkpoints WHERE thread_id = ANY(%s)
            ),
            doomed AS (
                DELETE FROM {s}stepgraph_checkpoints AS c USING ranked AS k
                WHERE c.seq = k.seq AND k.newer > %s
                RETURNING c.seq, c.thread_id, c.checkpoint_ns, c.checkpoint_id
            ),
            refs AS (
                DELETE FROM {s}stepgraph_blob_refs AS r USING doomed AS d
                WHERE r.seq = d.seq RETURNING r.hash
            ),
            w AS (
                DELETE FROM {s}stepgraph_writes AS w USING doomed AS d
                WHERE w.thread_id = d.thread_id AND w.checkpoint_ns = d.checkpoint_ns
                    AND w.checkpoint_id = d.checkpoint_id
                RETURNING w.blob
            )
            SELECT hash FROM refs UNION SELECT blob FROM w WHERE blob IS NOT NULL"""
        )
        same = (
            "s.thread_id = %s AND s.checkpoint_ns = d.checkpoint_ns "
            "AND s.checkpoint_id = d.checkpoint_id"
        )
        self.copy_drop = q(
            f"""WITH doomed AS (
                DELETE FROM {{s}}stepgraph_checkpoints AS d
                USING {{s}}stepgraph_checkpoints AS s
                WHERE d.thread_id = %s AND {same}
                RETURNING d.seq
            )
            DELETE FROM {{s}}stepgraph_blob_refs AS r USING doomed
            WHERE r.seq = doomed.seq RETURNING r.hash"""
        )
        self.copy_checkpoints = q(
            """INSERT INTO {s}stepgraph_checkpoints (thread_id, checkpoint_ns, checkpoint_id,
                parent_checkpoint_id, checkpoint, refs, metadata, metadata_json)
            SELECT %s, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, refs,
                metadata, metadata_json
            FROM {s}stepgraph_checkpoints WHERE thread_id = %s ORDER BY seq"""
        )
        self.copy_refs = q(
            f"""INSERT INTO {{s}}stepgraph_blob_refs (seq, hash)
            SELECT d.seq, r.hash FROM {{s}}stepgraph_checkpoints AS d
            JOIN {{s}}stepgraph_checkpoints AS s ON {same}
            JOIN {{s}}stepgraph_blob_refs AS r ON r.seq = s.seq
            WHERE d.thread_id = %s"""
        )
        replaced = """thread_id = %s AND (checkpoint_ns, checkpoint_id) IN (
            SELECT checkpoint_ns, checkpoint_id FROM {s}stepgraph_writes WHERE thread_id = %s
        )"""
        self.copy_drop_writes = q(
            f"DELETE FROM {{s}}stepgraph_writes WHERE {replaced} RETURNING blob"
        )
        self.copy_writes = q(
            """INSERT INTO {s}stepgraph_writes (thread_id, checkpoint_ns, checkpoint_id,
                task_id, idx, channel, value, blob, task_path)
            SELECT %s, checkpoint_ns, checkpoint_id, task_id, idx, channel, value, blob,
                task_path
            FROM {s}stepgraph_writes WHERE thread_id = %s"""
        )
        # Take the lease if it is free, ours, expired, or held by a known-dead owner.
        self.lease_take = q(
            """INSERT INTO {s}stepgraph_leases AS l (thread_id, owner, expires_at)
            VALUES (%s, %s, clock_timestamp() + make_interval(secs => %s))
            ON CONFLICT (thread_id) DO UPDATE
                SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                WHERE l.owner = EXCLUDED.owner OR l.expires_at <= clock_timestamp()
                    OR l.owner = %s
            RETURNING owner"""
        )
        self.lease_holder = q("SELECT owner FROM {s}stepgraph_leases WHERE thread_id = %s")
        self.lease_renew = q(
            "UPDATE {s}stepgraph_leases "
            "SET expires_at = clock_timestamp() + make_interval(secs => %s) "
            "WHERE thread_id = %s AND owner = %s"
        )
        self.lease_release = q(
            "DELETE FROM {s}stepgraph_leases WHERE thread_id = %s AND owner = %s"
        )


def _blob_row(key: str, data: bytes) -> tuple[str, str | None, str | None, bytes]:
    """``(hash, base, items, data)``: a delta's links are columns, for chains and GC."""
    found = links(data)
    if found:
        return key, found[0], found[1], data
    return key, None, None, data


_MAX_VALUES_ROWS = 16


def _values(head: str, width: int, tail: str) -> Callable[[int], str]:
    """``n -> head VALUES (%s, ...), ... tail`` for n rows of ``width`` columns, cached."""
    row = "(" + ", ".join(["%s"] * width) + ")"

    @functools.cache
    def statement(n: int) -> str:
        return head + ", ".join([row] * n) + tail

    return statement


def _insert(
    conn: psycopg.Connection[Any],
    many: str,
    values: Callable[[int], str],
    rows: Sequence[Sequence[Any]],
    width: int,
) -> None:
    """Insert rows: a few as a ``VALUES`` list, more as columns for ``unnest``.

    Arrays cost more to send than plain parameters, and most statements of a run
    carry a handful of rows.
    """
    if len(rows) <= _MAX_VALUES_ROWS:
        conn.execute(values(len(rows)), [v for row in rows for v in row])
    else:
        conn.execute(many, _columns(rows, width))


def _columns(rows: Sequence[Sequence[Any]], width: int) -> builtins.list[builtins.list[Any]]:
    """Rows as ``width`` column lists, for ``unnest(%s, ...)``: one statement, any count."""
    return [[row[i] for row in rows] for i in range(width)]


def _pushdown(filter: Mapping[str, Any]) -> tuple[builtins.list[str], builtins.list[Any]]:
    """SQL conditions that every row matching ``filter`` meets (a superset).

    A number also matches the booleans Python finds equal to it (``1 == True``), as
    jsonb keeps ``true`` and ``1`` apart. Values SQL cannot compare the way Python
    does (containers, other types, keys with escapes) are left to the Python check.
    """
    clauses: builtins.list[str] = []
    params: builtins.list[Any] = []
    for key, value in filter.items():
        if not isinstance(key, str) or not PLAIN_KEY.fullmatch(key) or not plain_text(key):
            continue
        if value is None:
            candidates = ["null"]
        elif isinstance(value, str):
            if not plain_text(value):
                continue
            candidates = [json.dumps(str.__str__(value), ensure_ascii=False)]
        elif isinstance(value, int | float):  # bool included
            if isinstance(value, float) and not math.isfinite(value):
                continue
            if isinstance(value, int) and not INT64[0] <= value < INT64[1]:
                continue
            number = json_number(value)
            candidates = [json.dumps(number)]
            if value == 1:
                candidates.append("true")
            elif value == 0:
                candidates.append("false")
        else:
            continue
        clauses.append(
            "c.metadata_json -> %s IN (" + ", ".join(["%s::jsonb"] * len(candidates)) + ")"
        )
        params += [key, *candidates]
    return clauses, params

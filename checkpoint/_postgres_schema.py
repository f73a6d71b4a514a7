"""Versioned schema migrations for `PostgresSaver`, safe to run from many workers at once.

The schema lives in one PostgreSQL schema (``public`` unless the saver is told
otherwise) and records how many migrations it has applied in ``stepgraph_schema``.
Opening an up-to-date database is one read and takes no lock. Otherwise the pending
migrations run in one transaction that first takes a transaction-scoped advisory lock
named after the schema and then re-reads the version, so workers that start together
apply each migration exactly once between them; DDL is transactional in PostgreSQL,
so a migration that fails leaves nothing half done. A database written by a newer
stepgraph is refused rather than guessed at.

Statements are templates: ``{s}`` stands for the quoted schema name and a dot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import SchemaVersionError

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the tables. Identifiers compare bytewise (COLLATE "C"), as Python compares str.
    (
        """CREATE TABLE {s}stepgraph_checkpoints (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            thread_id TEXT COLLATE "C" NOT NULL,
            checkpoint_ns TEXT COLLATE "C" NOT NULL DEFAULT '',
            checkpoint_id TEXT COLLATE "C" NOT NULL,
            parent_checkpoint_id TEXT COLLATE "C",
            checkpoint BYTEA NOT NULL,
            refs BYTEA NOT NULL,
            metadata BYTEA NOT NULL,
            metadata_json JSONB NOT NULL DEFAULT '{}'::jsonb,
            UNIQUE (thread_id, checkpoint_ns, checkpoint_id)
        )""",
        """CREATE INDEX stepgraph_checkpoints_ns_seq
            ON {s}stepgraph_checkpoints (thread_id, checkpoint_ns, seq)""",
        """CREATE INDEX stepgraph_checkpoints_thread_seq
            ON {s}stepgraph_checkpoints (thread_id, seq)""",
        """CREATE TABLE {s}stepgraph_blobs (
            hash TEXT COLLATE "C" PRIMARY KEY,
            base TEXT COLLATE "C",
            items TEXT COLLATE "C",
            data BYTEA NOT NULL
        )""",
        """CREATE INDEX stepgraph_blobs_base ON {s}stepgraph_blobs (base)
            WHERE base IS NOT NULL""",
        """CREATE INDEX stepgraph_blobs_items ON {s}stepgraph_blobs (items)
            WHERE items IS NOT NULL""",
        """CREATE TABLE {s}stepgraph_blob_refs (
            seq BIGINT NOT NULL,
            hash TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (seq, hash)
        )""",
        "CREATE INDEX stepgraph_blob_refs_hash ON {s}stepgraph_blob_refs (hash)",
        """CREATE TABLE {s}stepgraph_writes (
            thread_id TEXT COLLATE "C" NOT NULL,
            checkpoint_ns TEXT COLLATE "C" NOT NULL,
            checkpoint_id TEXT COLLATE "C" NOT NULL,
            task_id TEXT COLLATE "C" NOT NULL,
            idx INTEGER NOT NULL,
            channel TEXT NOT NULL,
            value BYTEA NOT NULL,
            blob TEXT COLLATE "C",
            task_path TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
        )""",
        """CREATE INDEX stepgraph_writes_blob ON {s}stepgraph_writes (blob)
            WHERE blob IS NOT NULL""",
        """CREATE TABLE {s}stepgraph_leases (
            thread_id TEXT COLLATE "C" PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL
        )""",
    ),
    # 2: fencing. A write made under a thread lease first checks, in its own
    # transaction, that the lease is still its holder's (and locks the lease row until
    # it commits, so a takeover waits for it): a worker whose lease expired and was
    # taken over cannot add to the thread's history behind the new holder's back.
    (
        """CREATE FUNCTION {s}stepgraph_fence(p_thread TEXT, p_owner TEXT) RETURNS VOID
        LANGUAGE plpgsql AS $fence$
        DECLARE
            holder TEXT;
        BEGIN
            SELECT owner INTO holder FROM {s}stepgraph_leases
                WHERE thread_id = p_thread FOR SHARE;
            IF holder IS DISTINCT FROM p_owner THEN
                RAISE EXCEPTION 'stepgraph: the lease on thread % is no longer held by %',
                    p_thread, p_owner
                    USING ERRCODE = 'SG001', DETAIL = coalesce(holder, '');
            END IF;
        END
        $fence$""",
    ),
)
"""Schema migrations; entry ``i`` takes the schema from version ``i`` to ``i + 1``.

Append new entries, never edit old ones: a database records how many it has applied."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes and understands."""

FENCE_SQLSTATE = "SG001"
"""The error `stepgraph_fence` raises when a lease was lost."""


def quote_schema(schema: str) -> str:
    """``"name".``: the schema as a quoted identifier and a dot, for the templates.

    Raises:
        ValueError: the name is empty, too long for PostgreSQL, or holds a NUL.
    """
    if not isinstance(schema, str) or not schema or "\x00" in schema:
        raise ValueError(f"schema must be a non-empty name without NUL, got {schema!r}")
    if len(schema.encode()) > 63:
        raise ValueError(
            f"schema name {schema!r} is longer than PostgreSQL's 63-byte identifier limit"
        )
    return '"' + schema.replace('"', '""') + '".'


def migrate(
    conn: Any,
    *,
    schema: str,
    where: str,
    migrations: Sequence[Sequence[str]] = MIGRATIONS,
) -> int:
    """Bring ``schema`` to ``len(migrations)``; returns the version found before.

    Args:
        conn: a psycopg connection in autocommit mode, or idle.
        schema: the PostgreSQL schema holding the tables (created if missing).
        where: the database and schema, for error messages.
        migrations: entry ``i`` takes the schema from version ``i`` to ``i + 1``.

    Raises:
        SchemaVersionError: the database records more migrations than this code knows.
    """
    from psycopg import errors

    prefix = quote_schema(schema)
    latest = len(migrations)
    try:
        with conn.transaction():
            row = conn.execute(f"SELECT MAX(version) FROM {prefix}stepgraph_schema").fetchone()
    except (errors.UndefinedTable, errors.InvalidSchemaName):
        pass
    else:
        if row[0] is not None and row[0] >= latest:
            _check(row[0], latest, where)
            return int(row[0])
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"stepgraph schema migration {schema}",),
        )
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {prefix[:-1]}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {prefix}stepgraph_schema (version INTEGER)")
        found = conn.execute(f"SELECT MAX(version) FROM {prefix}stepgraph_schema").fetchone()[0]
        if found is None:
            conn.execute(f"INSERT INTO {prefix}stepgraph_schema (version) VALUES (0)")
            found = 0
        _check(found, latest, where)
        for version in range(found, latest):
            for statement in migrations[version]:
                conn.execute(statement.replace("{s}", prefix))
        if found < latest:
            conn.execute(f"UPDATE {prefix}stepgraph_schema SET version = %s", (latest,))
    return int(found)


def _check(found: int, latest: int, where: str) -> None:
    if found > latest:
        raise SchemaVersionError(where, found, latest)

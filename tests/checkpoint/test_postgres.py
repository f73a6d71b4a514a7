"""PostgresSaver against a real PostgreSQL server: what is specific to PostgreSQL.

The saver-independent behaviour is the conformance suite's job (tests/checkpoint/
test_conformance.py runs it on PostgresSaver too); these tests cover the database:
schema migrations (fresh, older, newer, several workers at once), connections that
drop at every point of a transaction, leases and fencing between worker processes,
garbage collection of shared blobs, metadata filters that agree with Python's ``==``,
graphs run on it with both drivers, and clear errors for bad settings.

Each test gets its own PostgreSQL schema (the ``postgres_schema`` fixture), dropped
afterwards; without a server the tests skip and say why.
"""

from __future__ import annotations

import datetime as dt
import itertools
import operator
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Annotated, Any, TypedDict, cast

import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (stepgraph[postgres])")
psycopg_pool = pytest.importorskip("psycopg_pool", reason="psycopg-pool is not installed")

from stepgraph.checkpoint import (  # noqa: E402
    CheckpointMetadata,
    InMemorySaver,
    LeaseLostError,
    SchemaVersionError,
    ThreadBusyError,
    empty_checkpoint,
)
from stepgraph.checkpoint import _postgres_schema as schema_mod  # noqa: E402
from stepgraph.checkpoint.postgres import SCHEMA_VERSION, PostgresSaver  # noqa: E402
from stepgraph.engine import END, START, StateGraph  # noqa: E402

_ids = itertools.count(1)


def new_id() -> str:
    return f"id-{next(_ids):08d}"


def put(
    saver: Any,
    thread: str,
    values: dict[str, Any],
    *,
    parent: Mapping[str, Any] | None = None,
    new: list[str] | None = None,
    ns: str = "",
    metadata: Mapping[str, Any] | None = None,
    appends: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Store a checkpoint holding ``values``; ``new`` names the changed channels."""
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if parent is not None:
        conf["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    checkpoint = empty_checkpoint(new_id(), "2024-01-01T00:00:00+00:00")
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = {ch: 1 for ch in values}
    changed = list(values) if new is None else new
    meta = cast(CheckpointMetadata, dict(metadata or {"source": "loop", "step": 0}))
    prepared = saver.prepare(
        {"configurable": conf}, checkpoint, meta, {ch: 1 for ch in changed}, appends=appends
    )
    return cast(dict[str, Any], saver.commit(prepared))


def config(thread: str, ns: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"thread_id": thread}
    if ns is not None:
        conf["checkpoint_ns"] = ns
    return {"configurable": conf}


def ids(saver: Any, cfg: Mapping[str, Any] | None, **kw: Any) -> list[str]:
    return [t.config["configurable"]["checkpoint_id"] for t in saver.list(cfg, **kw)]


class Admin:
    """A plain connection to the test schema, to look at and tamper with what was written."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(f'SET search_path TO "{schema}"')

    def rows(self, statement: str, *params: Any) -> list[Any]:
        cur = self.conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else []

    def one(self, statement: str, *params: Any) -> Any:
        return self.rows(statement, *params)[0][0]

    def kill_backends(self, saver: PostgresSaver) -> int:
        """Terminate every server process serving the saver's pool (as a restart would)."""
        pids = [c.info.backend_pid for c in _pool_connections(saver)]
        for pid in pids:
            self.conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return len(pids)

    def close(self) -> None:
        self.conn.close()


def _pool_connections(saver: PostgresSaver) -> list[Any]:
    pool = saver._pool
    with pool._lock:  # the idle connections the pool will hand out next
        return list(pool._pool)


@pytest.fixture
def admin(postgres_dsn: str, postgres_schema: str) -> Iterator[Admin]:
    a = Admin(postgres_dsn, postgres_schema)
    yield a
    a.close()


@pytest.fixture
def saver(postgres_dsn: str, postgres_schema: str) -> Iterator[PostgresSaver]:
    # check=False (the default, said here because the tests rely on it): a dead
    # connection is handed out, so the tests see the retry path.
    with PostgresSaver.from_conn_string(
        postgres_dsn, schema=postgres_schema, max_size=4, check=False, retry_backoff=0.01
    ) as s:
        yield s


def assert_blobs_exact(admin: Admin, saver: PostgresSaver) -> None:
    """The schema holds exactly the blobs its checkpoints and writes need."""
    serde = saver.serde
    blobs = {h: bytes(d) for h, d in admin.rows("SELECT hash, data FROM stepgraph_blobs")}
    todo: list[str] = []
    for seq, refs in admin.rows("SELECT seq, refs FROM stepgraph_checkpoints"):
        named = {ref[0] for ref in serde.loads(bytes(refs)).values()}
        recorded = {
            h for (h,) in admin.rows("SELECT hash FROM stepgraph_blob_refs WHERE seq = %s", seq)
        }
        assert recorded == named, f"blob_refs of checkpoint {seq} disagree with its refs"
        todo += named
    todo += [h for (h,) in admin.rows("SELECT blob FROM stepgraph_writes WHERE blob IS NOT NULL")]
    assert (
        admin.one(
            "SELECT COUNT(*) FROM stepgraph_blob_refs WHERE seq NOT IN "
            "(SELECT seq FROM stepgraph_checkpoints)"
        )
        == 0
    )
    live: set[str] = set()
    while todo:
        key = todo.pop()
        if key in live:
            continue
        assert key in blobs, f"blob {key} is referenced but was deleted"
        live.add(key)
        if blobs[key][:1] == b"D":
            todo += [blobs[key][1:17].hex(), blobs[key][17:33].hex()]
    assert set(blobs) == live, f"{len(set(blobs) - live)} unreferenced blobs were kept"


# -- migrations ----------------------------------------------------------------------


def test_a_fresh_schema_is_created_at_the_current_version(
    saver: PostgresSaver, admin: Admin
) -> None:
    assert admin.one("SELECT version FROM stepgraph_schema") == SCHEMA_VERSION
    assert admin.one("SELECT COUNT(*) FROM stepgraph_schema") == 1
    saver.setup()  # idempotent: nothing changes
    assert admin.rows("SELECT version FROM stepgraph_schema") == [(SCHEMA_VERSION,)]


def test_an_older_schema_is_upgraded_and_keeps_its_data(
    postgres_dsn: str, postgres_schema: str, admin: Admin
) -> None:
    # A database as the first release left it: only migration 1 applied.
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        schema_mod.migrate(
            conn, schema=postgres_schema, where="test", migrations=schema_mod.MIGRATIONS[:1]
        )
    assert admin.one("SELECT version FROM stepgraph_schema") == 1
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{postgres_schema}"')
        assert conn.execute("SELECT to_regproc('stepgraph_fence')").fetchone() == (None,)
    with PostgresSaver(postgres_dsn, schema=postgres_schema) as s:
        first = put(s, "t", {"x": 1})
    assert admin.one("SELECT version FROM stepgraph_schema") == SCHEMA_VERSION
    with PostgresSaver(postgres_dsn, schema=postgres_schema) as s:
        found = s.get_tuple(first)
        assert found is not None and found.checkpoint["channel_values"] == {"x": 1}
        with s.acquire_thread("t"):  # the fencing function of migration 2 is there
            put(s, "t", {"x": 2}, parent=first)


def test_a_newer_schema_is_refused_without_touching_it(
    postgres_dsn: str, postgres_schema: str, saver: PostgresSaver, admin: Admin
) -> None:
    admin.rows("UPDATE stepgraph_schema SET version = %s", SCHEMA_VERSION + 5)
    with pytest.raises(SchemaVersionError) as info:
        PostgresSaver(postgres_dsn, schema=postgres_schema)
    assert info.value.found == SCHEMA_VERSION + 5
    assert info.value.supported == SCHEMA_VERSION
    assert postgres_schema in str(info.value) and "Upgrade stepgraph" in str(info.value)
    assert admin.one("SELECT version FROM stepgraph_schema") == SCHEMA_VERSION + 5


def test_workers_starting_together_migrate_exactly_once(
    postgres_dsn: str, postgres_schema: str, admin: Admin
) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def open_one() -> None:
        try:
            barrier.wait()
            PostgresSaver(postgres_dsn, schema=postgres_schema, max_size=1).close()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=open_one) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert admin.rows("SELECT version FROM stepgraph_schema") == [(SCHEMA_VERSION,)]


def test_a_failing_migration_leaves_nothing_half_done(
    postgres_dsn: str, postgres_schema: str, admin: Admin
) -> None:
    broken = (*schema_mod.MIGRATIONS, ("CREATE TABLE {s}extra (x INT)", "SELECT 1/0"))
    with (
        psycopg.connect(postgres_dsn, autocommit=True) as conn,
        pytest.raises(psycopg.errors.DivisionByZero),
    ):
        schema_mod.migrate(conn, schema=postgres_schema, where="test", migrations=broken)
    # DDL is transactional: no table from the failed migration, no version bump, and
    # not even the earlier migrations of the same (failed) transaction.
    assert admin.one("SELECT to_regclass('extra')") is None
    assert admin.one("SELECT to_regclass('stepgraph_checkpoints')") is None


def test_bad_schema_names_and_settings_are_refused(postgres_dsn: str) -> None:
    with pytest.raises(ValueError, match="63-byte"):
        PostgresSaver(postgres_dsn, schema="x" * 64)
    with pytest.raises(ValueError, match="non-empty"):
        PostgresSaver(postgres_dsn, schema="")
    with pytest.raises(TypeError, match="exactly one of conninfo= or pool="):
        PostgresSaver()
    with pytest.raises(ValueError, match="retries"):
        PostgresSaver(postgres_dsn, retries=-1)


def test_an_unreachable_server_is_a_clear_error() -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    with pytest.raises(ConnectionError) as info:
        PostgresSaver("postgresql://nobody:secret@127.0.0.1:1/db", timeout=1)
    message = str(info.value)
    assert "127.0.0.1:1/db" in message and "server is running" in message
    assert "secret" not in message


# -- values, storage, garbage collection -----------------------------------------------


def test_appends_are_deltas_and_reads_rebuild_them(saver: PostgresSaver, admin: Admin) -> None:
    log: list[str] = []
    cfg = put(saver, "t", {"log": log})
    for i in range(30):
        before = len(log)
        log = [*log, f"item {i} " + "x" * 50]
        cfg = put(saver, "t", {"log": log}, parent=cfg, appends={"log": before} if before else None)
    found = saver.get_tuple(config("t"))
    assert found is not None and found.checkpoint["channel_values"]["log"] == log
    total = admin.one("SELECT SUM(LENGTH(data)) FROM stepgraph_blobs")
    full = len(saver.serde.dumps(log))
    assert total < 6 * full  # O(n) bytes in all, not O(n^2)
    assert_blobs_exact(admin, saver)


def test_delete_prune_and_copy_keep_exactly_the_blobs_still_needed(
    saver: PostgresSaver, admin: Admin
) -> None:
    shared, mine = "s" * 3000, "m" * 3000
    a1 = put(saver, "a", {"shared": shared, "mine": mine})
    a2 = put(saver, "a", {"shared": shared, "mine": mine + "2"}, parent=a1, new=["mine"])
    saver.put_writes(a2, [("mine", "w" * 1000)], "task")  # a large write is a blob
    b = put(saver, "b", {"shared": shared, "items": [1, 2]})
    put(saver, "b", {"shared": shared, "items": [1, 2, 3]}, parent=b, appends={"items": 2})
    assert_blobs_exact(admin, saver)

    saver.copy_thread("b", "c")
    assert_blobs_exact(admin, saver)
    saver.prune(["b"], keep=1)  # the kept checkpoint's delta chain stays
    assert saver.get_tuple(config("b")).checkpoint["channel_values"]["items"] == [1, 2, 3]  # type: ignore[union-attr]
    assert_blobs_exact(admin, saver)
    saver.delete_thread("a")
    assert_blobs_exact(admin, saver)
    found = saver.get_tuple(config("c"))
    assert found is not None and found.checkpoint["channel_values"]["shared"] == shared
    saver.delete_thread("b")
    saver.delete_thread("c")
    assert admin.one("SELECT COUNT(*) FROM stepgraph_blobs") == 0


def test_a_re_put_with_other_values_collects_the_old_blobs(
    saver: PostgresSaver, admin: Admin
) -> None:
    thread = "t"
    checkpoint = empty_checkpoint("fixed", "2024-01-01T00:00:00+00:00")
    for value in ("first " * 100, "second " * 100):
        checkpoint["channel_values"] = {"v": value}
        checkpoint["channel_versions"] = {"v": 1}
        saver.put(config(thread), checkpoint, cast(CheckpointMetadata, {"step": 0}), {"v": 1})
    found = saver.get_tuple(config(thread))
    assert found is not None and found.checkpoint["channel_values"] == {"v": "second " * 100}
    assert admin.one("SELECT COUNT(*) FROM stepgraph_checkpoints") == 1
    assert_blobs_exact(admin, saver)


def test_metadata_filters_agree_with_python_equality(saver: PostgresSaver) -> None:
    when = dt.datetime(2024, 1, 1)
    metas: list[dict[str, Any]] = [
        {"source": "input", "step": -1, "user": "bob", "flag": True, "when": str(when)},
        {"source": "loop", "step": 0, "user": "ann", "flag": False, "score": 1.5},
        {"source": "loop", "step": 1, "user": "bob\x00nul", "note": None, "when": when},
        {"source": "loop", "step": 2, "user": "bob", "flag": 1, "n": Decimal("2.0")},
    ]
    memory = InMemorySaver()
    for i, m in enumerate(metas):
        put(saver, "t", {"x": i}, metadata=m)
        put(memory, "t", {"x": i}, metadata=m)
    filters: list[dict[str, Any]] = [
        {"user": "bob"},
        {"user": "bob\x00nul"},
        {"flag": True},
        {"flag": 1},
        {"flag": 1.0},
        {"flag": False},
        {"flag": 0},
        {"score": 1.5},
        {"note": None},
        {"missing": None},
        {"n": 2},
        {"n": True},
        {"when": when},
        {"when": str(when)},
        {"source": "loop", "step": 0},
        {"step": 10**30},
    ]
    for f in filters:
        assert [t.metadata for t in saver.list(config("t"), filter=f)] == [
            t.metadata for t in memory.list(config("t"), filter=f)
        ], f
    # A row SQL lets through but Python rejects does not eat into the limit.
    limited = {"filter": {"when": str(when)}, "limit": 1}
    assert [t.metadata for t in saver.list(config("t"), **limited)] == [
        t.metadata for t in memory.list(config("t"), **limited)
    ]


# -- dropped connections ------------------------------------------------------------------


def test_reads_and_writes_survive_the_server_dropping_every_connection(
    saver: PostgresSaver, admin: Admin
) -> None:
    first = put(saver, "t", {"x": 1})
    assert admin.kill_backends(saver) >= 1  # what a restart or an idle timeout does
    assert saver.get_tuple(first) is not None
    admin.kill_backends(saver)
    second = put(saver, "t", {"x": 2}, parent=first)
    admin.kill_backends(saver)
    saver.put_writes(second, [("x", 3), ("y", "z" * 2000)], "task-1")
    admin.kill_backends(saver)
    assert len(ids(saver, config("t"))) == 2
    found = saver.get_tuple(config("t"))
    assert found is not None
    assert [(t, c) for t, c, _ in found.pending_writes] == [("task-1", "x"), ("task-1", "y")]


@contextmanager
def broken_once(saver: PostgresSaver, admin: Admin, when: str) -> Iterator[list[str]]:
    """Break the next write transaction once, at ``when``: "start", "middle" or "after commit".

    "after commit" is the worst case: the transaction committed, but the client never
    heard so and must run it again. Idempotent writes make that harmless.
    """
    fired: list[str] = []
    original: Callable[..., Any] = saver._writing

    def terminate(conn: Any) -> None:
        admin.conn.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))

    def writing(work: Callable[[Any], Any]) -> Any:
        def breaking(conn: Any) -> Any:
            first = not fired
            if first:
                fired.append(when)
            if first and when == "start":
                terminate(conn)
            result = work(conn)
            if first and when == "middle":
                conn.execute("SELECT 1").fetchone()  # the statements so far have run
                terminate(conn)  # ... and COMMIT will not
            return result

        if when != "after commit":
            return original(breaking)

        def once() -> Any:
            result = original(work)
            if not fired:
                fired.append(when)
                raise psycopg.OperationalError("the connection dropped before COMMIT was answered")
            return result

        return saver._attempts(once)

    saver._writing = writing  # type: ignore[method-assign]
    try:
        yield fired
    finally:
        del saver._writing


@pytest.mark.parametrize("when", ["start", "middle", "after commit"])
def test_a_write_whose_connection_drops_is_stored_exactly_once(
    saver: PostgresSaver, admin: Admin, when: str
) -> None:
    first = put(saver, "t", {"x": 1, "log": [1]})
    with broken_once(saver, admin, when) as seen:
        second = put(saver, "t", {"x": 2, "log": [1, 2]}, parent=first, appends={"log": 1})
    assert seen == [when]
    with broken_once(saver, admin, when) as seen:
        saver.put_writes(second, [("x", 5), ("log", "w" * 1000)], "task")
    assert seen == [when]
    assert ids(saver, config("t")) == [
        second["configurable"]["checkpoint_id"],
        first["configurable"]["checkpoint_id"],
    ]
    assert admin.one("SELECT COUNT(*) FROM stepgraph_checkpoints") == 2
    assert admin.one("SELECT COUNT(*) FROM stepgraph_writes") == 2
    found = saver.get_tuple(config("t"))
    assert found is not None
    assert found.checkpoint["channel_values"] == {"x": 2, "log": [1, 2]}
    assert [w[1:] for w in found.pending_writes] == [("x", 5), ("log", "w" * 1000)]
    assert_blobs_exact(admin, saver)


def test_a_batch_gathers_rows_of_many_calls_into_few_statements(
    saver: PostgresSaver, admin: Admin
) -> None:
    first = put(saver, "t", {"x": 0})
    wide = [(f"ch{i}", "v" * (i * 50)) for i in range(40)]  # more rows than a VALUES list
    statements: list[str] = []
    original = psycopg.Connection.execute

    def spy(conn: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(" ".join(str(query).split()))
        return original(conn, query, *args, **kwargs)

    lease = saver.acquire_thread("t")  # so every write is fenced
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(psycopg.Connection, "execute", spy)
            with saver.batch():
                saver.put_writes(first, wide, "task-a")
                saver.put_writes(first, [("x", 1), ("__error__", "first try")], "task-b")
                # The same special write twice in one transaction: the last one wins.
                saver.put_writes(first, [("__error__", "second try")], "task-b")
                put(saver, "t", {"x": 2}, parent=first)
    finally:
        lease.release()
    fences = [s for s in statements if "stepgraph_fence" in s]
    assert len(fences) == 1  # once per transaction, not once per call
    assert len([s for s in statements if "INSERT INTO" in s]) == 4  # checkpoint, blobs,
    # ordinary writes, special writes: each one statement whatever the number of calls
    found = saver.get_tuple(first)
    assert found is not None
    assert {(w[0], w[1]): w[2] for w in found.pending_writes} == {
        **{("task-a", ch): v for ch, v in wide},
        ("task-b", "x"): 1,
        ("task-b", "__error__"): "second try",
    }
    assert_blobs_exact(admin, saver)


def test_retries_give_up_with_the_connection_error(postgres_dsn: str, postgres_schema: str) -> None:
    with PostgresSaver(postgres_dsn, schema=postgres_schema, retries=2, retry_backoff=0.0) as saver:
        calls = []

        def always_drops() -> Any:
            calls.append(1)
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        with pytest.raises(psycopg.OperationalError) as info:
            saver._attempts(always_drops)
        assert len(calls) == 3
        assert "gave up after 3 tries" in "".join(getattr(info.value, "__notes__", []))

        def cancelled() -> Any:
            calls.append(1)
            raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

        calls.clear()
        with pytest.raises(psycopg.errors.QueryCanceled):
            saver._attempts(cancelled)
        assert len(calls) == 1  # a timeout would only time out again


def test_errors_that_would_happen_again_are_not_retried(
    postgres_dsn: str, postgres_schema: str
) -> None:
    with PostgresSaver(
        postgres_dsn, schema=postgres_schema, max_size=1, timeout=0.3, retry_backoff=0.2
    ) as saver:
        # Waiting for a free connection: the caller's timeout, once, not retries x it.
        with (
            saver._pool.connection(),  # the only connection is busy
            pytest.raises(psycopg_pool.PoolTimeout) as waited,
        ):
            saver.get_tuple(config("t"))
        assert "gave up" not in "".join(getattr(waited.value, "__notes__", []))
        # A value beyond a server limit fails the same way every time.
        calls = []

        def beyond_a_limit() -> Any:
            calls.append(1)
            raise psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum")

        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            saver._attempts(beyond_a_limit)
        assert len(calls) == 1

        def server_restarting() -> Any:
            calls.append(1)
            if len(calls) < 3:
                raise psycopg.errors.AdminShutdown("terminating connection")
            return "stored"

        calls.clear()
        assert saver._attempts(server_restarting) == "stored"  # 57P01: run it again


def test_pool_settings_reach_the_pool(postgres_dsn: str, postgres_schema: str) -> None:
    with PostgresSaver(
        postgres_dsn,
        schema=postgres_schema,
        min_size=2,
        max_size=3,
        timeout=7,
        max_idle=60,
        max_lifetime=600,
        prepare_threshold=None,
        connect_kwargs={"application_name": "stepgraph-test"},
    ) as saver:
        pool = saver._pool
        assert (pool.min_size, pool.max_size, pool.timeout) == (2, 3, 7)
        assert (pool.max_idle, pool.max_lifetime) == (60, 600)
        with pool.connection() as conn:
            assert conn.prepare_threshold is None
            assert conn.execute("SHOW application_name").fetchone() == ("stepgraph-test",)


def test_a_pool_you_own_stays_open(postgres_dsn: str, postgres_schema: str) -> None:
    from psycopg_pool import ConnectionPool

    with ConnectionPool(postgres_dsn, min_size=1, max_size=2, open=True) as pool:
        with PostgresSaver(pool=pool, schema=postgres_schema) as saver:
            first = put(saver, "t", {"x": 1})
            assert saver.get_tuple(first) is not None
        assert not pool.closed
        with pool.connection() as conn:
            conn.execute("SELECT 1")


def test_a_closed_saver_says_so(saver: PostgresSaver) -> None:
    saver.close()
    with pytest.raises(RuntimeError, match="is closed"):
        saver.get_tuple(config("t"))


# -- many workers: leases and fencing ---------------------------------------------------


def test_a_lost_lease_fences_off_the_stalled_worker(
    postgres_dsn: str, postgres_schema: str, saver: PostgresSaver, admin: Admin
) -> None:
    first = put(saver, "t", {"x": 1})
    stalled = saver.acquire_thread("t")
    second = put(saver, "t", {"x": 2}, parent=first)  # fine while the lease is held
    # The worker stalls past its lease: it expires, and another worker takes over.
    admin.rows("UPDATE stepgraph_leases SET expires_at = now() - interval '1 second'")
    with PostgresSaver(postgres_dsn, schema=postgres_schema) as other:
        taker = other.acquire_thread("t")
        third = put(other, "t", {"x": 3}, parent=second)
        with pytest.raises(LeaseLostError) as info:
            put(saver, "t", {"x": 99}, parent=second)
        assert isinstance(info.value, ThreadBusyError)
        assert info.value.thread_id == "t" and info.value.holder == taker.owner
        assert "lost its lease on thread 't'" in str(info.value)
        with pytest.raises(LeaseLostError):
            saver.put_writes(third, [("x", 100)], "stale-task")
        # Nothing of the stalled worker's reached the thread: its history stays linear.
        assert ids(other, config("t")) == [
            third["configurable"]["checkpoint_id"],
            second["configurable"]["checkpoint_id"],
            first["configurable"]["checkpoint_id"],
        ]
        found = other.get_tuple(config("t"))
        assert found is not None and found.pending_writes == []
        taker.release()
    stalled.release()  # releasing a lease you lost does not remove the new holder's


def test_one_saver_holds_a_thread_for_one_run_at_a_time(saver: PostgresSaver, admin: Admin) -> None:
    # Writes are fenced per saver and thread: a second run of the same process must not
    # take the thread over (even from an expired lease), or the first run's writes
    # would pass the second run's check.
    first = put(saver, "t", {"x": 1})
    running = saver.acquire_thread("t")
    admin.rows("UPDATE stepgraph_leases SET expires_at = now() - interval '1 second'")
    with pytest.raises(ThreadBusyError) as info:
        saver.acquire_thread("t")
    assert info.value.holder == running.owner
    put(saver, "t", {"x": 2}, parent=first)  # the holder goes on
    running.release()
    saver.acquire_thread("t").release()  # and then the thread is free


def test_a_lease_is_its_own_transaction_even_inside_a_batch(saver: PostgresSaver) -> None:
    first = put(saver, "t", {"x": 1})
    with pytest.raises(RuntimeError, match="the batch fails"), saver.batch():
        lease = saver.acquire_thread("t")
        put(saver, "t", {"x": 2}, parent=first)
        raise RuntimeError("the batch fails")
    assert ids(saver, config("t")) == [first["configurable"]["checkpoint_id"]]  # rolled back
    with pytest.raises(ThreadBusyError):  # but the lease was taken, and is still held
        saver.acquire_thread("t", owner="someone-else")
    lease.release()


def test_a_collection_waits_for_a_write_that_names_its_blobs(
    postgres_dsn: str, postgres_schema: str, saver: PostgresSaver, admin: Admin
) -> None:
    # K3 continues from K1 and keeps its value (a fork, as time travel makes), so it
    # names K1's blob without storing it. Pruning K1 while K3 is being stored must
    # keep that blob.
    k1 = put(saver, "t", {"x": "A" * 5000})
    k2 = put(saver, "t", {"x": "B" * 5000}, parent=k1)
    named = threading.Event()
    original = PostgresSaver._flush

    def slow_flush(self: PostgresSaver, txn: Any) -> None:
        txn.conn.execute("SELECT 1").fetchone()  # the refs have reached the server
        named.set()
        threading.Event().wait(0.5)  # the pruner runs now
        original(self, txn)

    stored: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PostgresSaver, "_flush", slow_flush)
        writer = threading.Thread(
            target=lambda: stored.setdefault(
                "k3", put(saver, "t", {"x": "A" * 5000}, parent=k1, new=[])
            )
        )
        writer.start()
        assert named.wait(5)
        with PostgresSaver(postgres_dsn, schema=postgres_schema) as pruner:
            pruner.prune(["t"], keep=1)  # K1 and K2 are older than K3 once it commits
        writer.join()
    found = saver.get_tuple(stored["k3"])
    assert found is not None and found.checkpoint["channel_values"] == {"x": "A" * 5000}
    assert ids(saver, config("t")) == [stored["k3"]["configurable"]["checkpoint_id"]]
    assert k2 is not None
    assert_blobs_exact(admin, saver)


def test_the_heartbeat_keeps_a_long_step_s_lease(
    saver: PostgresSaver, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    lease = saver.acquire_thread("t")
    admin.rows("UPDATE stepgraph_leases SET expires_at = now() + interval '5 seconds'")
    saver._renew("t", lease.owner)  # what each beat does
    remaining = admin.one("SELECT expires_at - now() FROM stepgraph_leases")
    assert remaining > dt.timedelta(seconds=50)
    assert saver._heartbeat is not None and saver._heartbeat.is_alive()
    lease.release()
    assert admin.rows("SELECT * FROM stepgraph_leases") == []


_WORKER = textwrap.dedent(
    """
    import operator, sys, time
    from typing import Annotated, TypedDict
    from stepgraph.checkpoint import ThreadBusyError
    from stepgraph.checkpoint.postgres import PostgresSaver
    from stepgraph.engine import END, START, StateGraph

    class State(TypedDict):
        log: Annotated[list[str], operator.add]

    def slow(state):
        time.sleep(0.3)
        return {"log": [sys.argv[3]]}

    g = StateGraph(State)
    g.add_node("a", slow)
    g.add_node("b", slow)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", END)
    with PostgresSaver(sys.argv[1], schema=sys.argv[2]) as saver:
        app = g.compile(checkpointer=saver)
        print("ready", flush=True)
        sys.stdin.readline()
        try:
            app.invoke({"log": []}, {"configurable": {"thread_id": "shared"}})
        except ThreadBusyError as exc:
            print("busy", exc.holder, flush=True)
        else:
            print("done", flush=True)
    """
)


def test_two_workers_on_one_thread_one_wins_and_history_stays_linear(
    postgres_dsn: str, postgres_schema: str, saver: PostgresSaver
) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, postgres_dsn, postgres_schema, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("w1", "w2")
    ]
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready"
        for w in workers:  # go at once
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        outcomes = [w.communicate(timeout=60)[0].strip() for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert sorted(o.split()[0] for o in outcomes) == ["busy", "done"], outcomes
    winner = "w1" if outcomes[0] == "done" else "w2"
    history = list(saver.list(config("shared", "")))
    assert history[0].checkpoint["channel_values"]["log"] == [winner, winner]
    # Linear: each checkpoint's parent is the one stored just before it.
    for newer, older in itertools.pairwise(history):
        assert newer.parent_config == older.config
    assert history[-1].parent_config is None


# -- graphs run on it -------------------------------------------------------------------


class Counter(TypedDict):
    n: int
    seen: Annotated[list[str], operator.add]


def _graph(calls: list[str], fail_once: set[str]) -> Any:
    def make(name: str) -> Callable[[Counter], dict[str, Any]]:
        def node(state: Counter) -> dict[str, Any]:
            calls.append(name)
            if name in fail_once:
                fail_once.discard(name)
                raise RuntimeError(f"{name} fails once")
            return {"n": state["n"] + 1, "seen": [name]}

        return node

    g = StateGraph(Counter)
    for name in ("a", "b", "c"):
        g.add_node(name, make(name))
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    return g


def test_a_graph_runs_resumes_and_travels_in_time(driver: Any, saver: PostgresSaver) -> None:
    calls: list[str] = []
    app = _graph(calls, {"b"}).compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": f"run-{driver.kind}"}}
    with pytest.raises(RuntimeError, match="b fails once"):
        driver.invoke(app, {"n": 0, "seen": []}, cfg)
    # Resuming runs only what did not finish: a is not called again.
    assert driver.invoke(app, None, cfg) == {"n": 3, "seen": ["a", "b", "c"]}
    assert calls == ["a", "b", "b", "c"]
    history = list(app.get_state_history(cfg))
    assert [s.metadata["step"] for s in history] == [3, 2, 1, 0, -1]
    # Replay from after "a": a new branch; the thread's newest state is the fork's.
    after_a = next(s for s in history if s.metadata["step"] == 1)
    assert driver.invoke(app, None, after_a.config) == {"n": 3, "seen": ["a", "b", "c"]}
    assert calls == ["a", "b", "b", "c", "b", "c"]


def test_a_send_fan_out_stores_every_task_s_writes(driver: Any, saver: PostgresSaver) -> None:
    from stepgraph.engine import Send

    class Fan(TypedDict):
        items: list[int]
        out: Annotated[list[int], operator.add]

    g = StateGraph(Fan)
    g.add_node("square", lambda x: {"out": [x * x]})
    g.add_node("fan", lambda s: {})
    g.add_edge(START, "fan")
    g.add_conditional_edges("fan", lambda s: [Send("square", i) for i in s["items"]])
    g.add_edge("square", END)
    app = g.compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": f"fan-{driver.kind}"}}
    out = driver.invoke(app, {"items": list(range(40)), "out": []}, cfg)
    assert out["out"] == [i * i for i in range(40)]
    assert app.get_state(cfg).values["out"] == [i * i for i in range(40)]


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_a_run_whose_step_commit_loses_its_connection_stores_each_write_once(
    durability: str, saver: PostgresSaver, admin: Admin
) -> None:
    # The connection of one superstep's transaction (its task's writes and checkpoint)
    # is terminated just before COMMIT: the run stores the step again, one write at a
    # time, and ends with the same history as a run nothing happened to.
    broken: list[int] = []
    original = saver.batch

    @contextmanager
    def batch_broken_once() -> Iterator[None]:
        with original():
            yield
            txn = saver._local.txn
            if not broken and txn.writes:
                broken.append(txn.conn.info.backend_pid)
                txn.conn.execute("SELECT 1").fetchone()  # the statements so far have run
                admin.conn.execute("SELECT pg_terminate_backend(%s)", (broken[0],))

    app = _graph([], set()).compile(checkpointer=saver)
    clean = {"configurable": {"thread_id": f"clean-{durability}"}}
    app.invoke({"n": 0, "seen": []}, clean, durability=durability)
    hit = {"configurable": {"thread_id": f"hit-{durability}"}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(saver, "batch", batch_broken_once)
        assert app.invoke({"n": 0, "seen": []}, hit, durability=durability) == {
            "n": 3,
            "seen": ["a", "b", "c"],
        }
    assert broken  # the connection did drop

    def shape(cfg: dict[str, Any]) -> list[Any]:
        return [
            (s.metadata["step"], s.values, s.next, [t.name for t in s.tasks])
            for s in app.get_state_history(cfg)
        ]

    assert shape(hit) == shape(clean)
    counts = admin.rows(
        "SELECT thread_id, COUNT(*) FROM stepgraph_writes GROUP BY thread_id ORDER BY 1"
    )
    assert counts[0][1] == counts[1][1]  # no write stored twice
    assert_blobs_exact(admin, saver)


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_a_run_whose_lease_is_taken_over_fails_with_lease_lost(
    durability: str, saver: PostgresSaver, admin: Admin
) -> None:
    # While node b runs, another worker takes the thread over (its lease expired and
    # was taken). The run's next store is fenced off, in the background or not: the
    # run fails with LeaseLostError and the thread keeps only what came before.
    class S(TypedDict):
        seen: Annotated[list[str], operator.add]

    def b(state: S) -> dict[str, Any]:
        admin.rows("UPDATE stepgraph_leases SET owner = 'other-host:1:worker'")
        return {"seen": ["b"]}

    g = StateGraph(S)
    g.add_node("a", lambda s: {"seen": ["a"]})
    g.add_node("b", b)
    g.add_node("c", lambda s: {"seen": ["c"]})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    app = g.compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": f"taken-{durability}"}}
    with pytest.raises(LeaseLostError) as info:
        app.invoke({"seen": []}, cfg, durability=durability)
    assert info.value.holder == "other-host:1:worker"
    steps = [t.metadata["step"] for t in saver.list(cfg)]
    assert all(step <= 1 for step in steps)  # nothing after a's step was stored
    # (In the background, a's step may not have been stored yet when b ran.)
    assert app.get_state(cfg).values.get("seen", []) in (["a"], [])

"""SqliteSaver against real SQLite files: what is specific to storing checkpoints in SQLite.

The saver-independent behaviour is the conformance suite's job (stepgraph.checkpoint.
testing); these tests cover the file: what it stores and how much, that a reopened file
sees everything, schema migrations, several threads and processes sharing it, garbage
collection of shared blobs, and clear errors for files it cannot use.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from stepgraph.checkpoint import (
    CheckpointMetadata,
    DeserializationError,
    SchemaVersionError,
    Serializer,
    SqliteSaver,
    ThreadBusyError,
    TypeRegistry,
    empty_checkpoint,
)
from stepgraph.checkpoint._sqlite import SCHEMA_VERSION

_ids = itertools.count(1)


def new_id() -> str:
    return f"id-{next(_ids):08d}"


def put(
    saver: SqliteSaver,
    thread: str,
    values: dict[str, Any],
    *,
    parent: Mapping[str, Any] | None = None,
    new: list[str] | None = None,
    ns: str = "",
    checkpoint_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    appends: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Store a checkpoint holding ``values``; ``new`` names the changed channels."""
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if parent is not None:
        conf["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    checkpoint = empty_checkpoint(checkpoint_id or new_id(), "2024-01-01T00:00:00+00:00")
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = {ch: 1 for ch in values}
    changed = list(values) if new is None else new
    meta = cast(CheckpointMetadata, dict(metadata or {"source": "loop", "step": 0}))
    prepared = saver.prepare(
        {"configurable": conf}, checkpoint, meta, {ch: 1 for ch in changed}, appends=appends
    )
    return saver.commit(prepared)


def config(thread: str, ns: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"thread_id": thread}
    if ns is not None:
        conf["checkpoint_ns"] = ns
    return {"configurable": conf}


def ids(saver: SqliteSaver, cfg: Mapping[str, Any] | None, **kw: Any) -> list[str]:
    return [t.config["configurable"]["checkpoint_id"] for t in saver.list(cfg, **kw)]


def raw(path: Path) -> sqlite3.Connection:
    """A second, plain connection to the file, to look at what the saver wrote."""
    return sqlite3.connect(path, isolation_level=None)


def sql(path: Path, statement: str, *params: Any) -> list[Any]:
    """Run one statement on its own connection; its rows."""
    conn = raw(path)
    try:
        return conn.execute(statement, params).fetchall()
    finally:
        conn.close()


def blob_stats(path: Path) -> tuple[int, int]:
    """``(number of blobs, total blob bytes)`` in the file."""
    [(count, size)] = sql(
        path, "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM stepgraph_blobs"
    )
    return count, size


def assert_blobs_exact(path: Path, serde: Serializer | None = None) -> None:
    """The file holds exactly the blobs its checkpoints need: nothing leaks, nothing dangles.

    Walks every remaining checkpoint's references and their delta chains in Python,
    independently of the saver's SQL.
    """
    serde = serde or Serializer()
    conn = raw(path)
    blobs = {h: bytes(d) for h, d in conn.execute("SELECT hash, data FROM stepgraph_blobs")}
    todo: list[str] = []
    for seq, refs in conn.execute("SELECT seq, refs FROM stepgraph_checkpoints"):
        named = {ref[0] for ref in serde.loads(refs).values()}
        recorded = {
            h for (h,) in conn.execute("SELECT hash FROM stepgraph_blob_refs WHERE seq = ?", (seq,))
        }
        assert recorded == named, f"blob_refs of checkpoint {seq} disagree with its refs"
        todo += named
    todo += [h for (h,) in conn.execute("SELECT blob FROM stepgraph_writes WHERE blob IS NOT NULL")]
    orphan_refs = conn.execute(
        "SELECT COUNT(*) FROM stepgraph_blob_refs WHERE seq NOT IN "
        "(SELECT seq FROM stepgraph_checkpoints)"
    ).fetchone()[0]
    conn.close()
    assert orphan_refs == 0
    live: set[str] = set()
    while todo:
        key = todo.pop()
        if key in live:
            continue
        assert key in blobs, f"blob {key} is referenced but was deleted"
        live.add(key)
        if blobs[key][:1] == b"D":  # a delta: the previous value and the new items
            todo += [blobs[key][1:17].hex(), blobs[key][17:33].hex()]
    assert set(blobs) == live, f"{len(set(blobs) - live)} unreferenced blobs were kept"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "checkpoints.sqlite"


@pytest.fixture
def saver(path: Path) -> Iterator[SqliteSaver]:
    with SqliteSaver.from_conn_string(str(path)) as s:
        yield s


# -- values, storage size -------------------------------------------------------------


@dataclass
class Point:
    x: int
    y: float
    tags: tuple[str, ...]


def test_rich_values_round_trip_through_a_reopened_file(path: Path) -> None:
    registry = TypeRegistry()
    registry.register(Point, name="tests.Point")
    serde = Serializer(registry)
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    values = {
        "pair": (1, "two"),
        "tags": {"a", "b"},
        "frozen": frozenset({3}),
        "when": when,
        "day": dt.date(2024, 5, 1),
        "by_int": {1: "one", (2, 3): "tuple key"},
        "raw": b"\x00\xff",
        "points": [Point(1, 2.5, ("p",)), Point(-3, 0.0, ())],
        "none": None,
    }
    with SqliteSaver(path, serde=serde) as saver:
        first = put(saver, "t", {"pair": (0, "zero")}, metadata={"source": "input", "step": -1})
        second = put(saver, "t", values, parent=first, metadata={"source": "loop", "step": 0})
    assert path.exists()  # parent folders were created

    with SqliteSaver(path, serde=serde) as reopened:
        found = reopened.get_tuple(config("t"))
        assert found is not None
        assert found.config == second
        assert found.parent_config == first
        assert found.metadata == {"source": "loop", "step": 0}
        got = found.checkpoint["channel_values"]
        assert got == values
        assert type(got["pair"]) is tuple and type(got["tags"]) is set
        assert type(got["points"][0]) is Point and got["when"].tzinfo is dt.UTC
        assert found.checkpoint["id"] == second["configurable"]["checkpoint_id"]


def test_unchanged_channels_and_identical_values_are_stored_once(
    saver: SqliteSaver, path: Path
) -> None:
    a, b = "a" * 5000, list(range(2000))
    first = put(saver, "t", {"a": a, "b": b})
    assert blob_stats(path)[0] == 2
    # Only "a" changed: one new blob; "b" is shared with the parent.
    second = put(saver, "t", {"a": a + "!", "b": b}, parent=first, new=["a"])
    assert blob_stats(path)[0] == 3
    loaded = saver.get_tuple(second)
    assert loaded is not None and loaded.checkpoint["channel_values"] == {"a": a + "!", "b": b}
    # The same values in other threads cost no new blob: they are content-addressed.
    put(saver, "other", {"a": a, "b": b})
    put(saver, "third", {"a": a + "!"})
    assert blob_stats(path)[0] == 3


def test_appended_items_are_stored_as_a_delta(saver: SqliteSaver, path: Path) -> None:
    items = [{"n": i} for i in range(50)]
    first = put(saver, "t", {"items": items})
    second = put(saver, "t", {"items": [*items, {"n": 50}]}, parent=first, appends={"items": 50})
    kinds = sorted(bytes(d[:1]) for (d,) in sql(path, "SELECT data FROM stepgraph_blobs"))
    links = sql(path, "SELECT base, items FROM stepgraph_blobs WHERE base IS NOT NULL")
    # The snapshot, the delta (33 bytes: two hashes) and the new items' blob.
    assert kinds == [b"D", b"F", b"F"]
    assert len(links) == 1 and all(links[0])
    loaded = saver.get_tuple(second)
    assert loaded is not None
    assert loaded.checkpoint["channel_values"]["items"] == [*items, {"n": 50}]


def test_a_thousand_appends_store_linear_bytes_and_load_in_one_query(tmp_path: Path) -> None:
    path = tmp_path / "own-connection.sqlite"
    item = "x" * 1000
    conn = sqlite3.connect(path, check_same_thread=False)
    with SqliteSaver(conn) as saver:
        items: list[str] = []
        cfg = put(saver, "t", {"items": []})
        for i in range(1000):
            new_items = [*items, f"{i:06d}{item}"]
            cfg = put(saver, "t", {"items": new_items}, parent=cfg, appends={"items": len(items)})
            items = new_items
        final_size = len(saver.serde.dumps(items))
        assert blob_stats(path)[1] < 3 * final_size + 4096

        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        loaded = saver.get_tuple(cfg)
        conn.set_trace_callback(None)
        assert loaded is not None and loaded.checkpoint["channel_values"]["items"] == items
        # The whole delta chain arrives with the first blob query, however long it is.
        assert len([s for s in statements if "stepgraph_blobs" in s]) == 1
    conn.close()


# -- pending writes -------------------------------------------------------------------


def test_pending_writes_are_idempotent_and_special_channels_are_replaced(
    saver: SqliteSaver, path: Path
) -> None:
    cfg = put(saver, "t", {"x": 1})
    saver.put_writes(cfg, [("x", "first"), ("y", 2)], "task-b", task_path="~b")
    saver.put_writes(cfg, [("x", "retried"), ("y", 3)], "task-b", task_path="~b")  # ignored
    saver.put_writes(cfg, [("__error__", "boom")], "task-a")
    saver.put_writes(cfg, [("__error__", "boom again")], "task-a")  # last one wins
    saver.put_writes(cfg, [("__interrupt__", {"ask": "?"})], "task-a")
    found = saver.get_tuple(cfg)
    assert found is not None
    assert found.pending_writes == [
        ("task-a", "__interrupt__", {"ask": "?"}),
        ("task-a", "__error__", "boom again"),
        ("task-b", "x", "first"),
        ("task-b", "y", 2),
    ]
    paths = {p for (p,) in sql(path, "SELECT task_path FROM stepgraph_writes")}
    assert paths == {"~b", ""}


# -- listing --------------------------------------------------------------------------


def test_newest_is_the_last_stored_not_the_greatest_id(saver: SqliteSaver) -> None:
    # Ids from clocks that disagree: the later checkpoint has the smaller id.
    put(saver, "t", {"x": 1}, checkpoint_id="zzz")
    put(saver, "t", {"x": 2}, checkpoint_id="aaa")
    latest = saver.get_tuple(config("t"))
    assert latest is not None and latest.checkpoint["id"] == "aaa"
    assert ids(saver, config("t")) == ["aaa", "zzz"]
    # A re-put replaces the row and makes it newest again.
    put(saver, "t", {"x": 3}, checkpoint_id="zzz")
    assert ids(saver, config("t")) == ["zzz", "aaa"]
    found = saver.get_tuple(config("t"))
    assert found is not None and found.checkpoint["channel_values"] == {"x": 3}


def test_list_filters_before_and_limit(saver: SqliteSaver) -> None:
    when = dt.datetime(2024, 1, 1)
    metas: list[dict[str, Any]] = [
        {"source": "input", "step": -1, "user": "bob", "flag": True, "when": str(when)},
        {"source": "loop", "step": 0, "user": "ann", "flag": False, "score": 1.5},
        {"source": "loop", "step": 1, "user": "bob", "note": None, "when": when},
        {"source": "loop", "step": 2, "user": "bob", "flag": 1, "parents": {"": "x"}},
    ]
    made = [put(saver, "t", {"x": i}, metadata=m)["configurable"]["checkpoint_id"]
            for i, m in enumerate(metas)]  # fmt: skip
    child = put(saver, "t", {"x": 9}, ns="child", metadata={"source": "loop", "step": 0})
    c0, c1, c2, c3 = made

    assert ids(saver, config("t", "")) == [c3, c2, c1, c0]
    assert ids(saver, config("t", ""), filter={"user": "bob"}) == [c3, c2, c0]
    assert ids(saver, config("t"), filter={"source": "loop", "step": 0}) == [
        child["configurable"]["checkpoint_id"],
        c1,
    ]
    assert ids(saver, config("t", ""), filter={"step": 2}) == [c3]
    assert ids(saver, config("t", ""), filter={"score": 1.5}) == [c1]
    assert ids(saver, config("t", ""), filter={"note": None}) == [c2]
    assert ids(saver, config("t", ""), filter={"missing": None}) == []
    assert ids(saver, config("t", ""), filter={"parents": {"": "x"}}) == [c3]
    # As in InMemorySaver, equality is Python's: True == 1.
    assert ids(saver, config("t", ""), filter={"flag": True}) == [c3, c0]
    assert ids(saver, config("t", ""), filter={"flag": False}) == [c1]
    # The datetime's JSON text matches in SQL, the Python check rejects it, and the
    # next page is fetched so the limit is still met.
    assert ids(saver, config("t", ""), filter={"when": str(when)}, limit=1) == [c0]
    assert ids(saver, config("t", ""), filter={"when": when}) == [c2]

    before = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": c2}}
    assert ids(saver, config("t", ""), before=before) == [c1, c0]
    assert ids(saver, config("t", ""), before=before, limit=1) == [c1]
    assert ids(saver, config("t", ""), before=before, filter={"user": "bob"}) == [c0]
    unknown = {"configurable": {"thread_id": "t", "checkpoint_id": "nope"}}
    assert ids(saver, config("t"), before=unknown) == []
    assert ids(saver, config("t"), limit=2) == ids(saver, None, limit=2)
    assert len(ids(saver, config("t"))) == 5  # every namespace
    assert ids(saver, config("t"), limit=0) == []


def test_list_runs_a_fixed_number_of_queries(tmp_path: Path) -> None:
    path = tmp_path / "own-connection.sqlite"
    conn = sqlite3.connect(path, check_same_thread=False)
    with SqliteSaver(conn) as saver:

        def queries(n: int) -> int:
            thread = f"t{n}"
            cfg = put(saver, thread, {"items": ["a"], "x": 0})
            for i in range(n):
                cfg = put(
                    saver,
                    thread,
                    {"items": ["a"] * (i + 2), "x": i},
                    parent=cfg,
                    appends={"items": i + 1},
                )
                saver.put_writes(cfg, [("x", i), ("__error__", "e")], f"task{i}")
            statements: list[str] = []
            conn.set_trace_callback(statements.append)
            found = list(saver.list(config(thread)))
            conn.set_trace_callback(None)
            assert len(found) == n + 1
            assert found[0].pending_writes and found[0].checkpoint["channel_values"]["x"] == n - 1
            return len([s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))])

        assert queries(5) == queries(60) <= 3
    conn.close()


def test_latest_checkpoint_is_an_index_lookup(tmp_path: Path) -> None:
    path = tmp_path / "own-connection.sqlite"
    conn = sqlite3.connect(path, check_same_thread=False)
    with SqliteSaver(conn) as saver:
        for i in range(20):
            put(saver, f"t{i % 3}", {"x": i}, ns=f"ns{i % 2}")
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        saver.get_tuple(config("t1", "ns1"))
        list(saver.list(config("t1")))
        conn.set_trace_callback(None)
        for sql in [s for s in statements if "FROM stepgraph_checkpoints" in s]:
            plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
            assert "USING INDEX stepgraph_checkpoints" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
    conn.close()


# -- the file -------------------------------------------------------------------------


def test_a_reopened_file_sees_everything(path: Path) -> None:
    with SqliteSaver.from_conn_string(str(path)) as saver:
        root = put(saver, "t", {"x": 1})
        put(saver, "t", {"x": 2}, parent=root, ns="sub")
        saver.put_writes(root, [("x", 5)], "task")
        put(saver, "u", {"y": "why"}, metadata={"source": "update", "step": 3})
    with pytest.raises(RuntimeError, match="is closed"):
        saver.get_tuple(root)

    with SqliteSaver(path) as again:
        assert len(list(again.list(None))) == 3
        found = again.get_tuple(root)
        assert found is not None and found.pending_writes == [("task", "x", 5)]
        assert ids(again, config("t", "sub")) != []
        assert ids(again, None, filter={"source": "update"}) != []


def test_migrations_are_applied_once(path: Path) -> None:
    SqliteSaver(path).close()
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    SqliteSaver(conn).close()
    conn.set_trace_callback(None)
    assert not [s for s in statements if "CREATE TABLE" in s or "CREATE INDEX" in s]
    assert not [s for s in statements if s.startswith("BEGIN IMMEDIATE")]  # no write lock
    assert conn.execute("SELECT version FROM stepgraph_schema").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh.sqlite"
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_it() -> None:
        barrier.wait()
        try:
            SqliteSaver(path).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=open_it) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert sql(path, "SELECT version FROM stepgraph_schema") == [(SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused(path: Path) -> None:
    SqliteSaver(path).close()
    sql(path, "UPDATE stepgraph_schema SET version = ?", SCHEMA_VERSION + 7)
    with pytest.raises(SchemaVersionError) as info:
        SqliteSaver(path)
    message = str(info.value)
    assert str(SCHEMA_VERSION + 7) in message and str(SCHEMA_VERSION) in message
    assert "upgrade stepgraph" in message.lower() and str(path) in message
    assert isinstance(info.value, RuntimeError)


def test_a_file_that_is_not_a_database_is_named_in_the_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_bytes(b"this is not a database, just some text\n" * 200)
    with pytest.raises(sqlite3.DatabaseError) as info:
        SqliteSaver(bogus)
    assert str(bogus) in str(info.value)
    assert "not a database" in str(info.value)


def test_a_corrupted_blob_fails_closed(saver: SqliteSaver, path: Path) -> None:
    cfg = put(saver, "t", {"x": "value"})
    sql(path, "UPDATE stepgraph_blobs SET data = ?", b"F\x00garbage")
    with pytest.raises(DeserializationError, match=r"state\.x"):
        saver.get_tuple(cfg)


def test_a_passed_connection_stays_open_and_memory_databases_work() -> None:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    with SqliteSaver(conn) as saver:
        put(saver, "t", {"x": 1})
    assert conn.execute("SELECT COUNT(*) FROM stepgraph_checkpoints").fetchone() == (1,)
    conn.close()
    with SqliteSaver(":memory:") as private:
        assert list(private.list(None)) == []


# -- sharing: threads and processes --------------------------------------------------


def test_threads_and_connections_write_concurrently(path: Path) -> None:
    savers = [SqliteSaver(path), SqliteSaver(path)]  # two connections to one file
    errors: list[BaseException] = []

    def work(n: int) -> None:
        saver = savers[n % 2]
        try:
            cfg = None
            for i in range(25):
                cfg = put(saver, f"t{n}", {"x": i, "shared": "same"}, parent=cfg)
                saver.put_writes(cfg, [("x", i)], f"task{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []

    async def from_the_event_loop() -> list[Any]:
        await asyncio.gather(*(savers[0].aput_writes(
            {"configurable": {"thread_id": "t0", "checkpoint_ns": "", "checkpoint_id": c}},
            [("y", 1)], "async-task") for c in ids(savers[0], config("t0"))[:5]))  # fmt: skip
        return [t async for t in savers[1].alist(config("t0"), limit=5)]

    newest = asyncio.run(from_the_event_loop())
    assert [w[0] for w in newest[0].pending_writes or []] == ["async-task", "task24"]
    for n in range(6):
        found = list(savers[1].list(config(f"t{n}")))
        assert [t.checkpoint["channel_values"]["x"] for t in found] == list(range(24, -1, -1))
    for s in savers:
        s.close()
    assert_blobs_exact(path)


def test_the_lease_lives_in_the_file(path: Path) -> None:
    with SqliteSaver(path) as one, SqliteSaver(path) as two:
        lease = one.acquire_thread("t")
        with pytest.raises(ThreadBusyError) as info:
            two.acquire_thread("t")
        assert info.value.holder == lease.owner
        lease.renew()
        lease.release()
        with two.acquire_thread("t"), pytest.raises(ThreadBusyError):
            one.acquire_thread("t")
        # An expired lease, or one held by a process that has exited, is taken over.
        sql(path, "UPDATE stepgraph_leases SET owner = 'elsewhere:1:x', expires_at = 0")
        one.acquire_thread("t").release()
        # Another host's lease that has not expired: busy (its process cannot be checked).
        sql(path, "INSERT INTO stepgraph_leases VALUES ('u', 'elsewhere:1:x', 1e12)")
        with pytest.raises(ThreadBusyError):
            one.acquire_thread("u")


_CHILD = textwrap.dedent(
    """
    import sys
    from stepgraph.checkpoint import SqliteSaver

    saver = SqliteSaver(sys.argv[1])
    lease = saver.acquire_thread("shared")
    print(lease.owner, flush=True)
    if sys.stdin.readline() == "release\\n":
        lease.release()
        print("released", flush=True)
    sys.stdin.readline()
    """
)


@contextmanager
def lease_in_child(path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A child process holding the lease on thread "shared"; yields it and the owner."""
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            owner = child.stdout.readline().strip()
            assert owner, "the child process failed to take the lease"
            yield child, owner
        finally:
            child.kill()


def test_the_lease_excludes_another_process_until_it_lets_go_or_dies(
    saver: SqliteSaver, path: Path
) -> None:
    with lease_in_child(path) as (child, owner):
        with pytest.raises(ThreadBusyError) as info:
            saver.acquire_thread("shared")
        assert info.value.holder == owner and f":{child.pid}:" in owner
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("release\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "released"
        saver.acquire_thread("shared", wait=10).release()

    with lease_in_child(path) as (child, owner):
        with pytest.raises(ThreadBusyError):
            saver.acquire_thread("shared")
        child.kill()  # SIGKILL: no chance to release
        child.wait()
        # The lease has not expired, but its owner is dead: it is taken over at once.
        saver.acquire_thread("shared").release()


# -- deleting, pruning, copying ------------------------------------------------------


def test_delete_thread_keeps_blobs_another_thread_shares(saver: SqliteSaver, path: Path) -> None:
    shared, mine = "s" * 3000, "m" * 3000
    a1 = put(saver, "a", {"shared": shared, "mine": mine})
    a2 = put(saver, "a", {"shared": shared, "mine": mine + "2"}, parent=a1, new=["mine"])
    saver.put_writes(a2, [("mine", 1)], "task")
    b = put(saver, "b", {"shared": shared, "items": [1, 2]})
    b2 = put(saver, "b", {"shared": shared, "items": [1, 2, 3]}, parent=b, appends={"items": 2})
    # shared, mine, mine2, [1, 2], the delta and its items [3]
    assert blob_stats(path)[0] == 6

    saver.delete_thread("a")
    assert list(saver.list(config("a"))) == []
    found = saver.get_tuple(b2)
    assert found is not None
    assert found.checkpoint["channel_values"] == {"shared": shared, "items": [1, 2, 3]}
    assert blob_stats(path)[0] == 4
    assert_blobs_exact(path)
    assert sql(path, "SELECT COUNT(*) FROM stepgraph_writes") == [(0,)]

    saver.delete_thread("b")
    saver.delete_thread("never-existed")
    assert blob_stats(path) == (0, 0)


def test_prune_keeps_the_delta_chain_the_latest_checkpoint_needs(
    saver: SqliteSaver, path: Path
) -> None:
    for ns in ("", "sub"):
        cfg = put(saver, "t", {"items": [0], "other": "v0"}, ns=ns)
        items = [0]
        for i in range(1, 20):
            new_items = [*items, i]
            cfg = put(
                saver,
                "t",
                {"items": new_items, "other": f"v{i}"},
                parent=cfg,
                ns=ns,
                appends={"items": len(items)},
            )
            saver.put_writes(cfg, [("items", i)], f"task{i}")
            items = new_items
    put(saver, "keep-me", {"items": [0], "other": "v0"})  # shares the first blobs
    before = blob_stats(path)[0]

    saver.prune(["t"], strategy="keep_latest", keep=2)
    for ns in ("", "sub"):
        found = list(saver.list(config("t", ns)))
        assert len(found) == 2
        assert found[0].checkpoint["channel_values"] == {"items": list(range(20)), "other": "v19"}
        assert found[1].checkpoint["channel_values"]["items"] == list(range(19))
        assert found[0].pending_writes == [("task19", "items", 19)]
    assert blob_stats(path)[0] < before
    assert_blobs_exact(path)
    assert sql(path, "SELECT COUNT(*) FROM stepgraph_writes") == [(4,)]

    saver.prune(["t"], strategy="delete")
    kept = saver.get_tuple(config("keep-me"))
    assert kept is not None and kept.checkpoint["channel_values"] == {"items": [0], "other": "v0"}
    assert_blobs_exact(path)


def test_copy_thread_shares_blobs_and_survives_either_side_being_deleted(
    saver: SqliteSaver, path: Path
) -> None:
    root = put(saver, "src", {"items": [1]})
    mid = put(saver, "src", {"items": [1, 2]}, parent=root, appends={"items": 1})
    put(saver, "src", {"x": "sub"}, ns="sub", parent=root)
    saver.put_writes(mid, [("items", 3), ("__interrupt__", "why")], "task")
    blobs = blob_stats(path)[0]
    # The target already has one of the copied ids: the copy replaces it.
    put(saver, "dst", {"items": ["old"]}, checkpoint_id=root["configurable"]["checkpoint_id"])

    saver.copy_thread("src", "dst")
    saver.copy_thread("missing", "dst2")  # no-op
    assert list(saver.list(config("dst2"))) == []
    assert ids(saver, config("dst")) == ids(saver, config("src"))
    copied = {t.checkpoint["id"]: t for t in saver.list(config("dst"))}
    original = {t.checkpoint["id"]: t for t in saver.list(config("src"))}
    for cid, t in original.items():
        assert copied[cid].checkpoint == t.checkpoint
        assert copied[cid].metadata == t.metadata
        assert copied[cid].pending_writes == t.pending_writes
        assert copied[cid].config["configurable"]["thread_id"] == "dst"
        assert (copied[cid].parent_config is None) == (t.parent_config is None)
    assert blob_stats(path)[0] == blobs  # the "old" value went, nothing was duplicated
    assert_blobs_exact(path)

    # The copy grows on its own, extending a blob the source shares.
    dst_mid = {"configurable": {**mid["configurable"], "thread_id": "dst"}}
    grown = put(saver, "dst", {"items": [1, 2, 3]}, parent=dst_mid, appends={"items": 2})
    saver.delete_thread("src")
    found = saver.get_tuple(grown)
    assert found is not None and found.checkpoint["channel_values"]["items"] == [1, 2, 3]
    assert_blobs_exact(path)
    saver.copy_thread("dst", "src")
    saver.delete_thread("dst")
    again = saver.get_tuple({"configurable": {**grown["configurable"], "thread_id": "src"}})
    assert again is not None and again.checkpoint["channel_values"]["items"] == [1, 2, 3]
    assert_blobs_exact(path)
    saver.delete_thread("src")
    assert blob_stats(path) == (0, 0)


def test_a_re_put_with_other_values_collects_the_old_blobs(saver: SqliteSaver, path: Path) -> None:
    put(saver, "t", {"x": "before"}, checkpoint_id="c1")
    put(saver, "t", {"x": "after"}, checkpoint_id="c1")
    assert blob_stats(path)[0] == 1
    assert_blobs_exact(path)


def test_a_large_write_and_the_delta_it_appends_share_one_blob(
    saver: SqliteSaver, path: Path
) -> None:
    item = "x" * 2000
    first = put(saver, "t", {"items": ["a"]})
    saver.put_writes(first, [("items", [item]), ("small", 1)], "task")
    before = blob_stats(path)[0]
    second = put(saver, "t", {"items": ["a", item]}, parent=first, appends={"items": 1})
    # Only the delta itself is new: its items are the blob the write already stored.
    assert blob_stats(path)[0] == before + 1
    assert sql(path, "SELECT COUNT(*) FROM stepgraph_writes WHERE blob IS NOT NULL") == [(1,)]
    loaded = saver.get_tuple(first)
    assert loaded is not None and loaded.pending_writes == [
        ("task", "items", [item]),
        ("task", "small", 1),
    ]
    assert_blobs_exact(path)
    # Pruning the first checkpoint drops its writes; the delta still needs the blob.
    saver.prune(["t"], keep=1)
    assert_blobs_exact(path)
    latest = saver.get_tuple(second)
    assert latest is not None and latest.checkpoint["channel_values"] == {"items": ["a", item]}
    saver.delete_thread("t")
    assert blob_stats(path) == (0, 0)

"""A conformance suite for checkpoint savers: the storage contract every saver meets.

This module needs pytest, so import it from tests only. To check a saver, subclass
`SaverConformance` in your test module and define a ``saver`` fixture that yields a
fresh saver::

    import pytest
    from stepgraph.checkpoint.testing import SaverConformance

    class TestMySaver(SaverConformance):
        @pytest.fixture
        def saver(self, tmp_path):
            saver = MySaver(tmp_path / "checkpoints.db")
            yield saver
            saver.close()

Every test isolates itself with fresh ``uuid4`` thread ids, so the fixture may also
hand out one shared saver (for a backend that is slow to set up). The assertions live
in this module, so for detailed failure messages have pytest rewrite it: call
``pytest.register_assert_rewrite("stepgraph.checkpoint.testing")`` in a ``conftest.py``
(or before the import).

What the suite pins down, beyond LangGraph's checkpoint-conformance list:

* "latest" and "newest first" mean *last stored*, not greatest id: stepgraph orders a
  thread's history by storage sequence, so machines whose clocks disagree cannot
  reorder it. The suite therefore uses random checkpoint ids throughout.
* values never alias: what a saver hands back is never the object it was given, and
  mutating either side changes nothing stored.
* values of every serializable type round trip with their types, writes are
  idempotent per ``(task_id, idx)``, retention keeps what it promises to keep, and a
  copied thread is independent of its source.
* thread leases: one run at a time may advance a thread.

Tests of `StoredSaver`-only methods (``prepare``/``commit``) skip for other savers.
The async twins are exercised through ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest

from ._base import BaseCheckpointSaver
from ._model import (
    ChannelVersion,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    empty_checkpoint,
)
from ._stored import StoredSaver
from .errors import ThreadBusyError

__all__ = ["SaverConformance", "make_checkpoint", "new_thread_id", "thread_config"]

ERROR = "__error__"
INTERRUPT = "__interrupt__"


# -- helpers --------------------------------------------------------------------------


def new_thread_id() -> str:
    """A thread id no other test uses."""
    return f"thread-{uuid.uuid4()}"


def thread_config(
    thread_id: str, checkpoint_ns: str = "", checkpoint_id: str | None = None
) -> dict[str, Any]:
    """The config addressing a thread's namespace, or one checkpoint in it."""
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def make_checkpoint(
    values: Mapping[str, Any] | None = None,
    *,
    checkpoint_id: str | None = None,
    versions: Mapping[str, ChannelVersion] | None = None,
    versions_seen: Mapping[str, Mapping[str, ChannelVersion]] | None = None,
    updated_channels: Sequence[str] | None = None,
) -> Checkpoint:
    """A checkpoint holding ``values``.

    Args:
        values: channel -> value.
        checkpoint_id: its id; a random UUID by default.
        versions: channel -> version; version 1 for every channel in ``values`` by default.
        versions_seen: node -> {channel -> version}.
        updated_channels: the channels the step that made it changed.
    """
    values = dict(values or {})
    checkpoint = empty_checkpoint(
        checkpoint_id or str(uuid.uuid4()), dt.datetime.now(dt.UTC).isoformat()
    )
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = dict(
        dict.fromkeys(values, 1) if versions is None else versions
    )
    checkpoint["versions_seen"] = {k: dict(v) for k, v in (versions_seen or {}).items()}
    checkpoint["updated_channels"] = None if updated_channels is None else list(updated_channels)
    return checkpoint


def _put(
    saver: BaseCheckpointSaver,
    config: Mapping[str, Any],
    values: Mapping[str, Any] | None = None,
    *,
    checkpoint_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    versions: Mapping[str, ChannelVersion] | None = None,
    new_versions: Mapping[str, ChannelVersion] | None = None,
) -> dict[str, Any]:
    """Put a checkpoint as the child of ``config``; every channel counts as new by default."""
    checkpoint = make_checkpoint(values, checkpoint_id=checkpoint_id, versions=versions)
    changed = checkpoint["channel_versions"] if new_versions is None else new_versions
    meta = {"source": "loop", "step": 0} if metadata is None else metadata
    return saver.put(config, checkpoint, _metadata(meta), changed)


def _metadata(fields: Mapping[str, Any]) -> CheckpointMetadata:
    """``fields`` as checkpoint metadata (which may hold keys of any name)."""
    return cast(CheckpointMetadata, fields)


def _history(
    saver: BaseCheckpointSaver, thread: str, n: int, *, ns: str = "", **extra: Any
) -> list[dict[str, Any]]:
    """``n`` chained checkpoints, oldest first; checkpoint i holds ``count=i`` at version i+1.

    Metadata: ``step`` i-1, ``source`` "input" for the first and "loop" after, ``user``
    "alice" for even i and "bob" for odd i, plus ``extra``.
    """
    configs: list[dict[str, Any]] = []
    parent = thread_config(thread, ns)
    for i in range(n):
        meta: dict[str, Any] = {
            "source": "input" if i == 0 else "loop",
            "step": i - 1,
            "user": "alice" if i % 2 == 0 else "bob",
            **extra,
        }
        parent = _put(
            saver,
            parent,
            {"count": i},
            versions={"count": i + 1},
            metadata=meta,
        )
        configs.append(parent)
    return configs


def _id(config: Mapping[str, Any] | None) -> str:
    assert config is not None
    checkpoint_id: str = config["configurable"]["checkpoint_id"]
    return checkpoint_id


def _ids(tuples: Iterable[CheckpointTuple]) -> list[str]:
    return [_id(t.config) for t in tuples]


def _get(saver: BaseCheckpointSaver, config: Mapping[str, Any]) -> CheckpointTuple:
    found = saver.get_tuple(config)
    assert found is not None, f"no checkpoint for {config}"
    return found


def _values(saver: BaseCheckpointSaver, config: Mapping[str, Any]) -> dict[str, Any]:
    return _get(saver, config).checkpoint["channel_values"]


def _writes(saver: BaseCheckpointSaver, config: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    return [
        (task, channel, value) for task, channel, value in _get(saver, config).pending_writes or []
    ]


def _stored(saver: BaseCheckpointSaver) -> StoredSaver:
    if not isinstance(saver, StoredSaver):
        pytest.skip(f"prepare/commit are StoredSaver methods; {type(saver).__name__} is not one")
    return saver


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class SaverConformance:
    """The tests every saver must pass. Subclass it and define a ``saver`` fixture.

    The subclass's test module collects it under its own name (``TestMySaver``); this
    class itself is never collected, as its name does not start with ``Test``.
    """

    @pytest.fixture
    def saver(self) -> Iterator[BaseCheckpointSaver]:
        """Override in the subclass: yield a fresh saver."""
        raise NotImplementedError(
            "subclass SaverConformance and define a `saver` fixture that yields a fresh saver"
        )
        yield  # pragma: no cover

    # -- put ----------------------------------------------------------------------------

    def test_put_returns_config_addressing_the_checkpoint(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        checkpoint = make_checkpoint({"a": 1})
        returned = saver.put(thread_config(thread), checkpoint, {"step": -1}, {"a": 1})
        assert returned["configurable"] == {
            "thread_id": thread,
            "checkpoint_ns": "",
            "checkpoint_id": checkpoint["id"],
        }
        child = saver.put(thread_config(thread, "sub:1"), make_checkpoint(), {}, {})
        assert child["configurable"]["checkpoint_ns"] == "sub:1"

    def test_put_round_trips_every_checkpoint_field(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        checkpoint = make_checkpoint(
            {"messages": ["hi", {"role": "ai"}], "count": 3, "branch:to:b": None},
            versions={"messages": 2, "count": "00000003.5", "branch:to:b": 1},
            versions_seen={"agent": {"messages": 1}, "__input__": {}},
            updated_channels=["count", "messages"],
        )
        config = saver.put(thread_config(thread), checkpoint, {}, checkpoint["channel_versions"])
        loaded = _get(saver, config).checkpoint
        assert loaded == checkpoint
        assert loaded["channel_versions"]["count"] == "00000003.5"
        assert "branch:to:b" in loaded["channel_values"]

    def test_updated_channels_none_round_trips(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        assert _get(saver, config).checkpoint["updated_channels"] is None

    def test_empty_checkpoint_round_trips(self, saver: BaseCheckpointSaver) -> None:
        checkpoint = empty_checkpoint(str(uuid.uuid4()), "2024-01-01T00:00:00+00:00")
        config = saver.put(thread_config(new_thread_id()), checkpoint, {"step": -1}, {})
        assert _get(saver, config).checkpoint == checkpoint

    def test_put_round_trips_metadata(self, saver: BaseCheckpointSaver) -> None:
        metadata: dict[str, Any] = {
            "source": "loop",
            "step": 4,
            "parents": {"": "root-id", "outer:1": "outer-id"},
            "run_id": str(uuid.uuid4()),
            "user": "bob",
            "score": 0.5,
            "flag": True,
            "nothing": None,
            "nested": {"tags": ["a", "b"], "n": 1},
        }
        config = _put(saver, thread_config(new_thread_id()), {"a": 1}, metadata=metadata)
        assert _get(saver, config).metadata == metadata

    def test_values_of_many_types_round_trip(self, saver: BaseCheckpointSaver) -> None:
        values: dict[str, Any] = {
            "none": None,
            "bytes": b"\x00\xff",
            "tuple": (1, ("a", 2.5)),
            "set": {1, 2, 3},
            "frozenset": frozenset({"x"}),
            "int_keys": {1: "one", (2, 3): "pair"},
            "when": dt.datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=dt.UTC),
            "id": uuid.UUID(int=7),
            "money": decimal.Decimal("10.50"),
            "big": 2**100,
            "text": "é😀\u2028",
            "error": ValueError("boom", 3),
        }
        config = _put(saver, thread_config(new_thread_id()), values)
        loaded = _values(saver, config)
        error = loaded.pop("error")
        assert type(error) is ValueError and error.args == ("boom", 3)
        del values["error"]
        assert loaded == values
        assert {k: type(v) for k, v in loaded.items()} == {k: type(v) for k, v in values.items()}

    def test_large_value_round_trips(self, saver: BaseCheckpointSaver) -> None:
        big = {"blob": bytes(range(256)) * 4096, "rows": [{"i": i} for i in range(5000)]}
        config = _put(saver, thread_config(new_thread_id()), big)
        assert _values(saver, config) == big

    def test_root_and_child_namespaces_are_isolated(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        root = _put(saver, thread_config(thread), {"where": "root"})
        child = _put(saver, thread_config(thread, "inner:abc"), {"where": "child"})
        assert _values(saver, thread_config(thread))["where"] == "root"
        assert _values(saver, thread_config(thread, "inner:abc"))["where"] == "child"
        assert _id(_get(saver, thread_config(thread)).config) == _id(root)
        assert _id(_get(saver, thread_config(thread, "inner:abc")).config) == _id(child)
        assert saver.get_tuple(thread_config(thread, "other")) is None

    def test_same_checkpoint_id_in_two_namespaces(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        shared = str(uuid.uuid4())
        _put(saver, thread_config(thread), {"where": "root"}, checkpoint_id=shared)
        _put(saver, thread_config(thread, "sub"), {"where": "sub"}, checkpoint_id=shared)
        assert _values(saver, thread_config(thread, "", shared)) == {"where": "root"}
        assert _values(saver, thread_config(thread, "sub", shared)) == {"where": "sub"}

    def test_threads_are_isolated(self, saver: BaseCheckpointSaver) -> None:
        first, second = new_thread_id(), new_thread_id()
        _history(saver, first, 3)
        _put(saver, thread_config(second), {"count": 100})
        assert _values(saver, thread_config(first)) == {"count": 2}
        assert _values(saver, thread_config(second)) == {"count": 100}
        assert len(list(saver.list(thread_config(second)))) == 1

    def test_namespace_and_thread_ids_with_separators(self, saver: BaseCheckpointSaver) -> None:
        thread = f"user:1|{uuid.uuid4()}/x y%_'\""
        ns = "outer:1f2e|inner:3a4b"
        config = _put(saver, thread_config(thread, ns), {"a": 1})
        assert config["configurable"]["thread_id"] == thread
        assert _values(saver, thread_config(thread, ns)) == {"a": 1}
        assert saver.get_tuple(thread_config(thread, "outer:1f2e")) is None
        assert _ids(saver.list({"configurable": {"thread_id": thread}})) == [_id(config)]

    def test_parent_config_wiring(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        first, second = _history(saver, thread, 2, ns="sub")
        assert _get(saver, first).parent_config is None
        assert _get(saver, second).parent_config == thread_config(thread, "sub", _id(first))

    def test_fork_from_an_older_checkpoint(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        first, _ = _history(saver, thread, 2)
        fork = _put(saver, first, {"count": 50}, versions={"count": 9})
        assert _get(saver, fork).parent_config == first
        assert _id(_get(saver, thread_config(thread)).config) == _id(fork)
        assert _values(saver, first) == {"count": 0}

    def test_incremental_put_keeps_unchanged_values(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        first = _put(saver, thread_config(thread), {"a": [1, 2], "b": "x"})
        second = _put(
            saver,
            first,
            {"a": [1, 2], "b": "y"},
            versions={"a": 1, "b": 2},
            new_versions={"b": 2},
        )
        third = _put(
            saver, second, {"a": [1, 2], "b": "y"}, versions={"a": 1, "b": 2}, new_versions={}
        )
        assert _values(saver, second) == {"a": [1, 2], "b": "y"}
        assert _values(saver, third) == {"a": [1, 2], "b": "y"}
        assert _values(saver, first) == {"a": [1, 2], "b": "x"}

    def test_incremental_put_adds_a_channel(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        first = _put(saver, thread_config(thread), {"a": 1})
        second = _put(
            saver, first, {"a": 1, "c": "new"}, versions={"a": 1, "c": 1}, new_versions={"c": 1}
        )
        loaded = _get(saver, second).checkpoint
        assert loaded["channel_values"] == {"a": 1, "c": "new"}
        assert loaded["channel_versions"] == {"a": 1, "c": 1}

    def test_channel_removed_from_values_disappears(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        first = _put(saver, thread_config(thread), {"a": 1, "b": 2, "c": 3})
        # b emptied (its version stays), c gone altogether
        second = _put(saver, first, {"a": 1}, versions={"a": 1, "b": 2}, new_versions={"b": 2})
        loaded = _get(saver, second).checkpoint
        assert loaded["channel_values"] == {"a": 1}
        assert loaded["channel_versions"] == {"a": 1, "b": 2}
        assert _values(saver, first) == {"a": 1, "b": 2, "c": 3}

    def test_identical_values_survive_deleting_another_thread(
        self, saver: BaseCheckpointSaver
    ) -> None:
        first, second = new_thread_id(), new_thread_id()
        same = {"doc": "shared text " * 50, "n": 1}
        _put(saver, thread_config(first), same)
        config = _put(saver, thread_config(second), same)
        saver.delete_thread(first)
        assert _values(saver, config) == same

    def test_a_re_put_replaces_the_checkpoint_and_keeps_its_writes(
        self, saver: BaseCheckpointSaver
    ) -> None:
        thread = new_thread_id()
        first = _put(saver, thread_config(thread), {"a": 1})
        again = _put(saver, first, {"a": 2}, checkpoint_id="re-put")
        saver.put_writes(again, [("a", 3)], "task-1")
        _put(saver, thread_config(thread), {"a": 4}, checkpoint_id="other")
        _put(saver, first, {"a": 5}, checkpoint_id="re-put", metadata={"step": 9})
        found = _get(saver, thread_config(thread))
        assert _id(found.config) == "re-put"
        assert found.checkpoint["channel_values"] == {"a": 5}
        assert found.metadata == {"step": 9}
        assert found.pending_writes == [("task-1", "a", 3)]
        assert _ids(saver.list(thread_config(thread))) == ["re-put", "other", _id(first)]

    def test_aput(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        checkpoint = make_checkpoint({"a": (1, 2)})
        returned = asyncio.run(saver.aput(thread_config(thread), checkpoint, {"step": 1}, {"a": 1}))
        assert _id(returned) == checkpoint["id"]
        assert _values(saver, returned) == {"a": (1, 2)}

    # -- get_tuple ----------------------------------------------------------------------

    def test_get_tuple_of_an_unknown_thread_is_none(self, saver: BaseCheckpointSaver) -> None:
        assert saver.get_tuple(thread_config(new_thread_id())) is None
        assert saver.get(thread_config(new_thread_id())) is None

    def test_get_tuple_of_an_unknown_id_is_none(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        _history(saver, thread, 2)
        assert saver.get_tuple(thread_config(thread, "", str(uuid.uuid4()))) is None

    def test_latest_is_the_last_stored_not_the_greatest_id(
        self, saver: BaseCheckpointSaver
    ) -> None:
        thread = new_thread_id()
        b = _put(saver, thread_config(thread), {"x": "b"}, checkpoint_id="b")
        _put(saver, b, {"x": "a"}, checkpoint_id="a")
        assert _id(_get(saver, thread_config(thread)).config) == "a"
        assert _ids(saver.list(thread_config(thread))) == ["a", "b"]

    def test_get_tuple_by_id(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        first, _, _ = _history(saver, thread, 3)
        found = _get(saver, thread_config(thread, "", _id(first)))
        assert found.checkpoint["id"] == _id(first)
        assert found.checkpoint["channel_values"] == {"count": 0}
        assert found.metadata["step"] == -1

    def test_get_tuple_config_structure(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        _, latest = _history(saver, thread, 2, ns="sub")
        found = _get(saver, thread_config(thread, "sub"))
        assert found.config == thread_config(thread, "sub", _id(latest))
        assert found.checkpoint["id"] == _id(latest)
        assert found.pending_writes == []

    def test_get_tuple_respects_the_namespace(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        child = _put(saver, thread_config(thread, "sub"), {"a": 1})
        assert saver.get_tuple(thread_config(thread, "", _id(child))) is None
        assert saver.get_tuple(thread_config(thread)) is None

    def test_get_returns_the_checkpoint_alone(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        found = saver.get(config)
        assert found is not None and found["channel_values"] == {"a": 1}

    def test_aget_tuple(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        _, latest = _history(saver, thread, 2)
        found = asyncio.run(saver.aget_tuple(thread_config(thread)))
        assert found is not None and _id(found.config) == _id(latest)
        missing = asyncio.run(saver.aget_tuple(thread_config(new_thread_id())))
        assert missing is None

    # -- put_writes ---------------------------------------------------------------------

    def test_put_writes_basic(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        saver.put_writes(config, [("a", 2), ("log", ["x"])], "task-1")
        assert _writes(saver, config) == [("task-1", "a", 2), ("task-1", "log", ["x"])]

    def test_put_writes_many_writes_and_tasks(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        expected = []
        for t in range(5):
            writes = [(f"ch{i}", {"t": t, "i": i}) for i in range(12)]
            saver.put_writes(config, writes, f"task-{t}")
            expected += [(f"task-{t}", ch, value) for ch, value in writes]
        assert _writes(saver, config) == expected

    def test_put_writes_accepts_a_task_path(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        saver.put_writes(config, [("a", 5)], "task-1", task_path="~__pregel_pull, node")
        saver.put_writes(config, [("b", 6)], "task-2", "~__pregel_push, 0")
        assert _writes(saver, config) == [("task-1", "a", 5), ("task-2", "b", 6)]

    def test_put_writes_is_idempotent_first_wins(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        saver.put_writes(config, [("a", "first"), ("b", 1)], "task-1")
        saver.put_writes(config, [("a", "second")], "task-1")
        saver.put_writes(config, [("a", "third"), ("b", 2)], "task-1")
        assert _writes(saver, config) == [("task-1", "a", "first"), ("task-1", "b", 1)]

    @pytest.mark.parametrize("channel", [ERROR, INTERRUPT])
    def test_special_writes_are_upserted_last_wins(
        self, saver: BaseCheckpointSaver, channel: str
    ) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        saver.put_writes(config, [(channel, "one")], "task-1")
        saver.put_writes(config, [(channel, "two")], "task-1")
        assert _writes(saver, config) == [("task-1", channel, "two")]

    def test_error_write_keeps_the_exception(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        saver.put_writes(config, [(ERROR, KeyError("missing"))], "task-1")
        [(task, channel, value)] = _writes(saver, config)
        assert (task, channel) == ("task-1", ERROR)
        assert type(value) is KeyError and value.args == ("missing",)

    def test_special_and_regular_writes_of_one_task(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        saver.put_writes(config, [("a", 1)], "task-1")
        saver.put_writes(config, [(INTERRUPT, {"ask": "ok?"})], "task-1")
        saver.put_writes(config, [(ERROR, "boom")], "task-1")
        assert sorted(_writes(saver, config)) == sorted(
            [("task-1", "a", 1), ("task-1", INTERRUPT, {"ask": "ok?"}), ("task-1", ERROR, "boom")]
        )

    def test_pending_writes_ordered_by_task_then_index(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        saver.put_writes(config, [("x", 1), ("y", 2)], "task-b")
        saver.put_writes(config, [("z", 3), ("w", 4)], "task-a")
        assert _writes(saver, config) == [
            ("task-a", "z", 3),
            ("task-a", "w", 4),
            ("task-b", "x", 1),
            ("task-b", "y", 2),
        ]

    def test_writes_respect_the_namespace(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        shared = str(uuid.uuid4())
        root = _put(saver, thread_config(thread), {"a": 1}, checkpoint_id=shared)
        child = _put(saver, thread_config(thread, "sub"), {"a": 1}, checkpoint_id=shared)
        saver.put_writes(child, [("a", "child")], "task-1")
        assert _writes(saver, child) == [("task-1", "a", "child")]
        assert _writes(saver, root) == []

    def test_writes_belong_to_one_checkpoint(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        first = _put(saver, thread_config(thread), {"a": 1})
        saver.put_writes(first, [("a", 2)], "task-1")
        second = _put(saver, first, {"a": 2}, versions={"a": 2})
        assert _writes(saver, second) == []
        assert _writes(saver, first) == [("task-1", "a", 2)]

    def test_empty_writes_are_a_no_op(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        saver.put_writes(config, [], "task-1")
        assert _writes(saver, config) == []

    def test_put_writes_needs_a_checkpoint_id(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        _put(saver, thread_config(thread), {"a": 1})
        with pytest.raises(ValueError, match="checkpoint_id"):
            saver.put_writes(thread_config(thread), [("a", 1)], "task-1")

    def test_aput_writes(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        asyncio.run(saver.aput_writes(config, [("a", 9)], "task-1", "path"))
        assert _writes(saver, config) == [("task-1", "a", 9)]

    def test_concurrent_put_writes(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})

        def save(t: int) -> None:
            saver.put_writes(config, [("a", t), ("b", -t)], f"task-{t:02d}")

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(save, range(16)))
        expected = [(f"task-{t:02d}", ch, v) for t in range(16) for ch, v in (("a", t), ("b", -t))]
        assert _writes(saver, config) == expected

    def test_concurrent_puts_on_many_threads(self, saver: BaseCheckpointSaver) -> None:
        threads = [new_thread_id() for _ in range(8)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            histories = list(pool.map(lambda t: _history(saver, t, 5), threads))
        for thread, configs in zip(threads, histories):
            assert _ids(saver.list(thread_config(thread))) == [_id(c) for c in reversed(configs)]
            assert _values(saver, thread_config(thread)) == {"count": 4}

    def test_concurrent_async_calls(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        parent = _put(saver, thread_config(thread), {"a": 0})

        async def main() -> list[Any]:
            puts = [
                saver.aput(thread_config(thread, f"ns{i}"), make_checkpoint({"a": i}), {}, {"a": 1})
                for i in range(6)
            ]
            writes = [saver.aput_writes(parent, [("a", i)], f"task-{i}") for i in range(6)]
            return await asyncio.gather(*puts, *writes)

        results = asyncio.run(main())
        for i, config in enumerate(results[:6]):
            assert _values(saver, config) == {"a": i}
        assert _writes(saver, parent) == [(f"task-{i}", "a", i) for i in range(6)]

    # -- list ---------------------------------------------------------------------------

    def test_list_newest_first(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        configs = _history(saver, thread, 4)
        listed = list(saver.list(thread_config(thread)))
        assert _ids(listed) == [_id(c) for c in reversed(configs)]
        assert [t.checkpoint["channel_values"] for t in listed] == [
            {"count": i} for i in (3, 2, 1, 0)
        ]
        assert [t.metadata["step"] for t in listed] == [2, 1, 0, -1]
        assert [t.parent_config for t in listed][:-1] == list(reversed(configs))[1:]

    def test_list_by_namespace(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        root = _history(saver, thread, 2)
        child = _history(saver, thread, 3, ns="sub:1")
        assert _ids(saver.list(thread_config(thread, ""))) == [_id(c) for c in reversed(root)]
        assert _ids(saver.list(thread_config(thread, "sub:1"))) == [_id(c) for c in reversed(child)]
        assert list(saver.list(thread_config(thread, "sub:2"))) == []

    def test_list_without_a_namespace_lists_all(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        root = _put(saver, thread_config(thread), {"a": 1})
        child = _put(saver, thread_config(thread, "sub"), {"a": 2})
        later = _put(saver, root, {"a": 3}, versions={"a": 2})
        listed = list(saver.list({"configurable": {"thread_id": thread}}))
        assert _ids(listed) == [_id(later), _id(child), _id(root)]
        assert [t.config["configurable"]["checkpoint_ns"] for t in listed] == ["", "sub", ""]

    @pytest.mark.parametrize(
        ("filter", "steps"),
        [
            ({"source": "input"}, [-1]),
            ({"step": 1}, [1]),
            ({"user": "alice"}, [1, -1]),
            ({"user": "bob", "source": "loop"}, [2, 0]),
            ({"user": "alice", "step": 2}, []),
            ({"user": "carol"}, []),
            ({"no_such_key": 1}, []),
        ],
        ids=["source", "step", "custom", "many", "many_no_match", "no_match", "missing_key"],
    )
    def test_list_filters_on_metadata(
        self, saver: BaseCheckpointSaver, filter: dict[str, Any], steps: list[int]
    ) -> None:
        thread = new_thread_id()
        _history(saver, thread, 4)
        listed = saver.list(thread_config(thread), filter=filter)
        assert [t.metadata["step"] for t in listed] == steps

    def test_list_filter_with_the_thread(self, saver: BaseCheckpointSaver) -> None:
        first, second = new_thread_id(), new_thread_id()
        marker = str(uuid.uuid4())
        _history(saver, first, 2, marker=marker)
        _history(saver, second, 2, marker=marker)
        listed = list(saver.list(thread_config(first), filter={"marker": marker}))
        assert {t.config["configurable"]["thread_id"] for t in listed} == {first}
        assert len(listed) == 2

    def test_list_before(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        configs = _history(saver, thread, 4)
        listed = saver.list(thread_config(thread), before=configs[2])
        assert _ids(listed) == [_id(configs[1]), _id(configs[0])]
        assert list(saver.list(thread_config(thread), before=configs[0])) == []

    def test_list_before_uses_storage_order(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        z = _put(saver, thread_config(thread), {"x": 1}, checkpoint_id="z")
        a = _put(saver, z, {"x": 2}, checkpoint_id="a")
        assert _ids(saver.list(thread_config(thread), before=a)) == ["z"]

    def test_list_limit(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        configs = _history(saver, thread, 4)
        assert _ids(saver.list(thread_config(thread), limit=2)) == [
            _id(configs[3]),
            _id(configs[2]),
        ]
        assert len(list(saver.list(thread_config(thread), limit=10))) == 4
        assert list(saver.list(thread_config(thread), limit=0)) == []

    def test_list_limit_and_before(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        configs = _history(saver, thread, 5)
        listed = saver.list(thread_config(thread), before=configs[3], limit=2)
        assert _ids(listed) == [_id(configs[2]), _id(configs[1])]

    def test_list_limit_applies_after_the_filter(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        _history(saver, thread, 5)
        listed = saver.list(thread_config(thread), filter={"user": "alice"}, limit=2)
        assert [t.metadata["step"] for t in listed] == [3, 1]

    def test_list_all_threads(self, saver: BaseCheckpointSaver) -> None:
        first, second = new_thread_id(), new_thread_id()
        marker = str(uuid.uuid4())
        a = _history(saver, first, 2, marker=marker)
        b = _history(saver, second, 1, ns="sub", marker=marker)
        listed = list(saver.list(None, filter={"marker": marker}))
        assert _ids(listed) == [_id(b[0]), _id(a[1]), _id(a[0])]
        assert {_id(c) for c in a + b} <= set(_ids(saver.list(None)))

    def test_list_of_an_unknown_thread_is_empty(self, saver: BaseCheckpointSaver) -> None:
        assert list(saver.list(thread_config(new_thread_id()))) == []

    def test_list_includes_pending_writes(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        first, second = _history(saver, thread, 2)
        saver.put_writes(first, [("count", 1)], "task-1")
        saver.put_writes(second, [(ERROR, "boom")], "task-2")
        listed = list(saver.list(thread_config(thread)))
        assert [t.pending_writes for t in listed] == [
            [("task-2", ERROR, "boom")],
            [("task-1", "count", 1)],
        ]

    def test_list_with_a_checkpoint_id_lists_that_one(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        configs = _history(saver, thread, 3)
        assert _ids(saver.list(configs[1])) == [_id(configs[1])]

    def test_alist(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        configs = _history(saver, thread, 4)

        async def collect() -> list[CheckpointTuple]:
            config = thread_config(thread)
            return [t async for t in saver.alist(config, filter={"source": "loop"}, limit=2)]

        assert _ids(asyncio.run(collect())) == [_id(configs[3]), _id(configs[2])]

    # -- delete_thread -------------------------------------------------------------------

    def test_delete_thread_removes_everything(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        root = _history(saver, thread, 2)
        child = _history(saver, thread, 2, ns="sub")
        saver.put_writes(root[0], [("count", 1)], "task-1")
        saver.put_writes(child[1], [("count", 1)], "task-1")
        saver.delete_thread(thread)
        assert list(saver.list({"configurable": {"thread_id": thread}})) == []
        for config in root + child:
            assert saver.get_tuple(config) is None
        # the same ids again start without the deleted writes
        again = _put(saver, thread_config(thread), {"a": 1}, checkpoint_id=_id(root[0]))
        assert _writes(saver, again) == []

    def test_delete_thread_leaves_other_threads(self, saver: BaseCheckpointSaver) -> None:
        doomed, kept = new_thread_id(), new_thread_id()
        _history(saver, doomed, 2)
        configs = _history(saver, kept, 2)
        saver.put_writes(configs[0], [("count", 7)], "task-1")
        saver.delete_thread(doomed)
        assert _ids(saver.list(thread_config(kept))) == [_id(c) for c in reversed(configs)]
        assert _writes(saver, configs[0]) == [("task-1", "count", 7)]
        assert _values(saver, configs[1]) == {"count": 1}

    def test_delete_unknown_thread_is_a_no_op(self, saver: BaseCheckpointSaver) -> None:
        saver.delete_thread(new_thread_id())

    def test_adelete_thread(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        _history(saver, thread, 2)
        asyncio.run(saver.adelete_thread(thread))
        assert saver.get_tuple(thread_config(thread)) is None

    # -- copy_thread ---------------------------------------------------------------------

    def test_copy_thread_copies_history(self, saver: BaseCheckpointSaver) -> None:
        source, target = new_thread_id(), new_thread_id()
        root = _history(saver, source, 3)
        child = _history(saver, source, 2, ns="sub")
        saver.put_writes(root[1], [("count", 5), (ERROR, "boom")], "task-1")
        saver.put_writes(child[0], [("x", 1)], "task-2")
        saver.copy_thread(source, target)
        for ns in ("", "sub"):
            original = list(saver.list(thread_config(source, ns)))
            copied = list(saver.list(thread_config(target, ns)))
            assert _ids(copied) == _ids(original)
            for a, b in zip(original, copied):
                assert b.checkpoint == a.checkpoint
                assert b.metadata == a.metadata
                assert b.pending_writes == a.pending_writes
                assert b.config == thread_config(target, ns, _id(a.config))
                if a.parent_config is None:
                    assert b.parent_config is None
                else:
                    assert b.parent_config == thread_config(target, ns, _id(a.parent_config))
        assert _id(_get(saver, thread_config(target)).config) == _id(root[2])

    def test_copy_thread_keeps_storage_order(self, saver: BaseCheckpointSaver) -> None:
        source, target = new_thread_id(), new_thread_id()
        b = _put(saver, thread_config(source), {"x": "b"}, checkpoint_id="b")
        _put(saver, b, {"x": "a"}, checkpoint_id="a")
        saver.copy_thread(source, target)
        assert _ids(saver.list(thread_config(target))) == ["a", "b"]
        assert _id(_get(saver, thread_config(target)).config) == "a"

    def test_copy_thread_leaves_the_source_unchanged(self, saver: BaseCheckpointSaver) -> None:
        source, target = new_thread_id(), new_thread_id()
        configs = _history(saver, source, 2)
        saver.put_writes(configs[1], [("count", 1)], "task-1")
        before = list(saver.list(thread_config(source)))
        saver.copy_thread(source, target)
        assert list(saver.list(thread_config(source))) == before

    def test_copy_is_independent_of_the_source(self, saver: BaseCheckpointSaver) -> None:
        source, target = new_thread_id(), new_thread_id()
        first = _put(saver, thread_config(source), {"a": [1, 2], "b": "x"})
        saver.copy_thread(source, target)
        # continue the copy incrementally, then drop the source
        copied = thread_config(target, "", _id(first))
        later = _put(
            saver, copied, {"a": [1, 2], "b": "y"}, versions={"a": 1, "b": 2}, new_versions={"b": 2}
        )
        saver.put_writes(later, [("b", "z")], "task-1")
        assert _values(saver, thread_config(source)) == {"a": [1, 2], "b": "x"}
        assert len(list(saver.list(thread_config(source)))) == 1
        saver.delete_thread(source)
        assert _values(saver, later) == {"a": [1, 2], "b": "y"}
        assert _values(saver, copied) == {"a": [1, 2], "b": "x"}
        assert _writes(saver, later) == [("task-1", "b", "z")]

    def test_copy_onto_itself_changes_nothing(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        configs = _history(saver, thread, 3)
        saver.put_writes(configs[1], [("count", 1)], "task-1")
        before = list(saver.list(thread_config(thread)))
        saver.copy_thread(thread, thread)
        assert list(saver.list(thread_config(thread))) == before

    def test_copy_of_an_unknown_thread_is_a_no_op(self, saver: BaseCheckpointSaver) -> None:
        target = new_thread_id()
        saver.copy_thread(new_thread_id(), target)
        assert list(saver.list({"configurable": {"thread_id": target}})) == []

    def test_acopy_thread(self, saver: BaseCheckpointSaver) -> None:
        source, target = new_thread_id(), new_thread_id()
        configs = _history(saver, source, 2)
        asyncio.run(saver.acopy_thread(source, target))
        assert _ids(saver.list(thread_config(target))) == [_id(c) for c in reversed(configs)]

    # -- prune ---------------------------------------------------------------------------

    def test_prune_keeps_the_latest(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        configs = _history(saver, thread, 4)
        saver.prune([thread])
        assert _ids(saver.list(thread_config(thread))) == [_id(configs[3])]
        assert _values(saver, thread_config(thread)) == {"count": 3}
        assert saver.get_tuple(configs[0]) is None

    def test_prune_many_threads(self, saver: BaseCheckpointSaver) -> None:
        threads = [new_thread_id() for _ in range(3)]
        latest = [_history(saver, t, 3)[-1] for t in threads]
        saver.prune(threads, strategy="keep_latest")
        for thread, config in zip(threads, latest):
            assert _ids(saver.list(thread_config(thread))) == [_id(config)]

    def test_prune_keeps_the_latest_per_namespace(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        root = _history(saver, thread, 3)
        child = _history(saver, thread, 2, ns="sub")
        _history(saver, thread, 1, ns="other")
        saver.prune([thread])
        assert _ids(saver.list(thread_config(thread, ""))) == [_id(root[-1])]
        assert _ids(saver.list(thread_config(thread, "sub"))) == [_id(child[-1])]
        assert len(list(saver.list(thread_config(thread, "other")))) == 1

    def test_prune_preserves_the_kept_checkpoint(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        first = _put(saver, thread_config(thread), {"big": "x" * 1000, "n": 0})
        second = _put(
            saver,
            first,
            {"big": "x" * 1000, "n": 1},
            versions={"big": 1, "n": 2},
            new_versions={"n": 2},
        )
        saver.put_writes(first, [("n", 1)], "task-old")
        saver.put_writes(second, [("n", 2), (INTERRUPT, "why?")], "task-new")
        saver.prune([thread])
        kept = _get(saver, thread_config(thread))
        assert _id(kept.config) == _id(second)
        assert kept.checkpoint["channel_values"] == {"big": "x" * 1000, "n": 1}
        assert sorted(kept.pending_writes or []) == sorted(
            [("task-new", "n", 2), ("task-new", INTERRUPT, "why?")]
        )
        # the thread goes on from the kept checkpoint
        third = _put(
            saver,
            second,
            {"big": "x" * 1000, "n": 2},
            versions={"big": 1, "n": 3},
            new_versions={"n": 3},
        )
        assert _values(saver, third) == {"big": "x" * 1000, "n": 2}

    def test_prune_keep_n(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        configs = _history(saver, thread, 5)
        saver.prune([thread], keep=3)
        assert _ids(saver.list(thread_config(thread))) == [_id(c) for c in reversed(configs[2:])]
        saver.prune([thread], keep=10)
        assert len(list(saver.list(thread_config(thread)))) == 3

    def test_prune_uses_storage_order(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        b = _put(saver, thread_config(thread), {"x": "b"}, checkpoint_id="b")
        _put(saver, b, {"x": "a"}, checkpoint_id="a")
        saver.prune([thread])
        assert _ids(saver.list(thread_config(thread))) == ["a"]

    def test_prune_delete_removes_the_threads(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        configs = _history(saver, thread, 3)
        _history(saver, thread, 1, ns="sub")
        saver.put_writes(configs[-1], [("count", 1)], "task-1")
        saver.prune([thread], strategy="delete")
        assert list(saver.list({"configurable": {"thread_id": thread}})) == []

    def test_prune_leaves_other_threads(self, saver: BaseCheckpointSaver) -> None:
        pruned, kept = new_thread_id(), new_thread_id()
        _history(saver, pruned, 3)
        configs = _history(saver, kept, 3)
        saver.put_writes(configs[0], [("count", 1)], "task-1")
        saver.prune([pruned])
        saver.prune([pruned], strategy="delete")
        assert _ids(saver.list(thread_config(kept))) == [_id(c) for c in reversed(configs)]
        assert _writes(saver, configs[0]) == [("task-1", "count", 1)]

    def test_prune_of_nothing_is_a_no_op(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        configs = _history(saver, thread, 2)
        saver.prune([])
        saver.prune([], strategy="delete")
        saver.prune([new_thread_id()])
        assert len(list(saver.list(thread_config(thread)))) == len(configs)

    @pytest.mark.parametrize(
        ("strategy", "keep"),
        [
            ("keep_oldest", 1),
            ("", 1),
            ("keep_latest", 0),
            ("keep_latest", -2),
            ("keep_latest", True),
        ],
    )
    def test_prune_rejects_bad_arguments(
        self, saver: BaseCheckpointSaver, strategy: Any, keep: Any
    ) -> None:
        thread = new_thread_id()
        _history(saver, thread, 2)
        with pytest.raises(ValueError):
            saver.prune([thread], strategy=strategy, keep=keep)
        assert len(list(saver.list(thread_config(thread)))) == 2

    def test_aprune(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        configs = _history(saver, thread, 3)
        asyncio.run(saver.aprune([thread], keep=2))
        assert _ids(saver.list(thread_config(thread))) == [_id(configs[2]), _id(configs[1])]

    # -- values never alias --------------------------------------------------------------

    def test_mutating_what_was_put_changes_nothing(self, saver: BaseCheckpointSaver) -> None:
        deep = [2]
        items: list[Any] = [1, {"deep": deep}]
        checkpoint = make_checkpoint(
            {"items": items, "map": {"k": "v"}}, versions={"items": 1, "map": 1}
        )
        checkpoint["versions_seen"] = {"node": {"items": 1}}
        metadata: dict[str, Any] = {"step": 0, "parents": {"": "p"}, "tags": ["a"]}
        config = saver.put(
            thread_config(new_thread_id()), checkpoint, _metadata(metadata), {"items": 1, "map": 1}
        )
        items.append(3)
        deep.append(4)
        checkpoint["channel_values"]["map"]["k"] = "changed"
        checkpoint["channel_values"]["extra"] = 1
        checkpoint["channel_versions"]["items"] = 99
        checkpoint["versions_seen"]["node"]["items"] = 99
        metadata["parents"][""] = "changed"
        metadata["tags"].append("b")
        found = _get(saver, config)
        assert found.checkpoint["channel_values"] == {
            "items": [1, {"deep": [2]}],
            "map": {"k": "v"},
        }
        assert found.checkpoint["channel_versions"] == {"items": 1, "map": 1}
        assert found.checkpoint["versions_seen"] == {"node": {"items": 1}}
        assert found.metadata == {"step": 0, "parents": {"": "p"}, "tags": ["a"]}

    def test_mutating_what_was_read_changes_nothing(self, saver: BaseCheckpointSaver) -> None:
        config = _put(
            saver,
            thread_config(new_thread_id()),
            {"items": [1, [2]]},
            metadata={"parents": {"": "p"}},
        )
        saver.put_writes(config, [("items", [9])], "task-1")
        found = _get(saver, config)
        found.checkpoint["channel_values"]["items"][1].append(3)
        found.checkpoint["channel_values"]["new"] = 1
        found.checkpoint["channel_versions"]["items"] = 5
        found.metadata["parents"][""] = "changed"
        assert found.pending_writes is not None
        found.pending_writes[0][2].append(10)
        listed = next(iter(saver.list(config)))
        listed.checkpoint["channel_values"]["items"].append(4)
        again = _get(saver, config)
        assert again.checkpoint["channel_values"] == {"items": [1, [2]]}
        assert again.checkpoint["channel_versions"] == {"items": 1}
        assert again.metadata == {"parents": {"": "p"}}
        assert again.pending_writes == [("task-1", "items", [9])]

    def test_mutating_written_values_changes_nothing(self, saver: BaseCheckpointSaver) -> None:
        config = _put(saver, thread_config(new_thread_id()), {"a": 1})
        value = {"list": [1]}
        writes = [("a", value)]
        saver.put_writes(config, writes, "task-1")
        value["list"].append(2)
        writes.append(("b", {"list": []}))
        assert _writes(saver, config) == [("task-1", "a", {"list": [1]})]

    # -- configs --------------------------------------------------------------------------

    def test_a_config_without_thread_id_is_refused(self, saver: BaseCheckpointSaver) -> None:
        no_thread: dict[str, Any] = {"configurable": {"checkpoint_ns": "", "checkpoint_id": "x"}}
        with pytest.raises(ValueError, match="thread_id"):
            saver.get_tuple(no_thread)
        with pytest.raises(ValueError, match="thread_id"):
            saver.get_tuple({})
        with pytest.raises(ValueError, match="thread_id"):
            saver.put(no_thread, make_checkpoint({"a": 1}), {}, {"a": 1})
        with pytest.raises(ValueError, match="thread_id"):
            saver.put_writes(no_thread, [("a", 1)], "task-1")

    # -- thread leases ---------------------------------------------------------------------

    def test_a_leased_thread_is_busy(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        lease = saver.acquire_thread(thread)
        try:
            assert lease.thread_id == thread and not lease.released
            with pytest.raises(ThreadBusyError) as info:
                saver.acquire_thread(thread)
            assert info.value.thread_id == thread
            assert info.value.holder == lease.owner
            assert thread in str(info.value)
        finally:
            lease.release()
        assert lease.released

    def test_acquire_waits_then_gives_up(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        with saver.acquire_thread(thread), pytest.raises(ThreadBusyError) as info:
            saver.acquire_thread(thread, wait=0.2)
        assert info.value.waited >= 0.2

    def test_a_released_thread_can_be_acquired(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        saver.acquire_thread(thread).release()
        with saver.acquire_thread(thread) as lease:
            lease.renew()
            with pytest.raises(ThreadBusyError):
                saver.acquire_thread(thread)
        with saver.acquire_thread(thread):
            pass
        lease.release()  # releasing twice is harmless
        saver.acquire_thread(thread).release()

    def test_leases_are_per_thread(self, saver: BaseCheckpointSaver) -> None:
        first, second = new_thread_id(), new_thread_id()
        with saver.acquire_thread(first), saver.acquire_thread(second):
            with pytest.raises(ThreadBusyError):
                saver.acquire_thread(first)
            with pytest.raises(ThreadBusyError):
                saver.acquire_thread(second)

    def test_acquire_waits_for_a_release(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        lease = saver.acquire_thread(thread)
        timer = threading.Timer(0.1, lease.release)
        timer.start()
        try:
            second = saver.acquire_thread(thread, wait=30)
        finally:
            timer.join()
        assert lease.released
        second.release()

    def test_a_dead_process_lease_is_taken_over(self, saver: BaseCheckpointSaver) -> None:
        thread = new_thread_id()
        saver.acquire_thread(thread, owner=f"{socket.gethostname()}:{_dead_pid()}:run")
        saver.acquire_thread(thread).release()

    # -- StoredSaver: prepare / commit -----------------------------------------------------

    def test_prepare_fixes_the_bytes(self, saver: BaseCheckpointSaver) -> None:
        stored = _stored(saver)
        thread = new_thread_id()
        items = [1, 2]
        checkpoint = make_checkpoint({"items": items})
        metadata: dict[str, Any] = {"step": 0, "tags": ["a"]}
        prepared = stored.prepare(
            thread_config(thread), checkpoint, _metadata(metadata), {"items": 1}
        )
        assert saver.get_tuple(thread_config(thread)) is None  # nothing stored yet
        items.append(3)
        checkpoint["channel_values"]["other"] = 1
        metadata["tags"].append("b")
        returned = stored.commit(prepared)
        assert returned == prepared.config == thread_config(thread, "", checkpoint["id"])
        found = _get(saver, returned)
        assert found.checkpoint["channel_values"] == {"items": [1, 2]}
        assert found.metadata == {"step": 0, "tags": ["a"]}

    def test_prepare_with_appends(self, saver: BaseCheckpointSaver) -> None:
        stored = _stored(saver)
        thread = new_thread_id()
        log: list[Any] = []
        config = thread_config(thread)
        configs = []
        for i in range(40):
            before = len(log)
            log = [*log, {"i": i, "pad": "x" * 20}]
            checkpoint = make_checkpoint({"log": log, "n": i}, versions={"log": i + 1, "n": i + 1})
            appends = {"log": before} if before else None
            config = stored.commit(
                stored.prepare(
                    config, checkpoint, {"step": i}, {"log": i + 1, "n": i + 1}, appends=appends
                )
            )
            configs.append(config)
        for i in (0, 1, 17, 39):
            assert _values(saver, configs[i])["log"] == [
                {"i": j, "pad": "x" * 20} for j in range(i + 1)
            ]
        saver.prune([thread])
        assert _values(saver, thread_config(thread)) == {"log": log, "n": 39}

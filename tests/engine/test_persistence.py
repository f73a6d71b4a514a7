"""Persistence: threads, history, pending writes, durability, update_state, replay, leases.

Most tests run with both drivers (the ``driver`` fixture) and both savers (the
``saver`` fixture: in memory and a SQLite file; the SQLite one is skipped where
``stepgraph.checkpoint`` does not export ``SqliteSaver``). Work that must not be redone
is checked by counting node calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import operator
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from typing import Annotated, Any, TypedDict

import pytest

import stepgraph.checkpoint as checkpoint_pkg
from stepgraph.checkpoint import BaseCheckpointSaver, InMemorySaver, ThreadBusyError
from stepgraph.engine import (
    END,
    START,
    EmptyInputError,
    InvalidUpdateError,
    Send,
    StateGraph,
    StateSnapshot,
)

DURABILITY = ["sync", "async", "exit"]


# -- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def saver(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[BaseCheckpointSaver]:
    """Each saver the engine must work with: in memory, and a SQLite file."""
    if request.param == "memory":
        yield InMemorySaver()
        return
    found = checkpoint_pkg.SqliteSaver(tmp_path / "s.db")
    try:
        yield found
    finally:
        found.close()


class LaggingSaver(InMemorySaver):
    """An ``InMemorySaver`` whose storage lags one checkpoint behind, like a slow disk.

    A checkpoint handed to ``commit`` is stored only once the next checkpoint has been
    prepared (or after 0.1 s). With ``durability="async"`` that is a legitimate
    schedule: saves run in the background while the run moves on.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self._latest: str | None = None

    def prepare(self, *args: Any, **kwargs: Any) -> Any:
        out = super().prepare(*args, **kwargs)
        with self._cond:
            self._latest = out.checkpoint_id
            self._cond.notify_all()
        return out

    def _store(self, prepared: Any) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._latest != prepared.checkpoint_id, timeout=0.1)
        super()._store(prepared)


class Log(TypedDict):
    x: Annotated[list[str], operator.add]


def thread(name: str = "t", **extra: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": name, **extra}}


def counted(calls: Counter[str], name: str) -> Any:
    def run(state: Any) -> dict[str, list[str]]:
        calls[name] += 1
        return {"x": [name]}

    return run


def sequence(saver: BaseCheckpointSaver | None, calls: Counter[str], names: str = "ab") -> Any:
    """START -> names[0] -> names[1] -> ..., each node appending its name to ``x``."""
    g = StateGraph(Log)
    prev = START
    for name in names:
        g.add_node(name, counted(calls, name))
        g.add_edge(prev, name)
        prev = name
    return g.compile(checkpointer=saver)


def parallel_with_failure(
    saver: BaseCheckpointSaver | None, calls: Counter[str], failures: int
) -> Any:
    """START -> (ok, bad) in parallel -> after; ``bad`` fails its first ``failures`` calls."""
    left = [failures]

    def bad(state: Log) -> dict[str, list[str]]:
        calls["bad"] += 1
        if left[0] > 0:
            left[0] -= 1
            raise RuntimeError("bad failed")
        return {"x": ["bad"]}

    g = StateGraph(Log)
    g.add_node("ok", counted(calls, "ok"))
    g.add_node("bad", bad)
    g.add_node("after", counted(calls, "after"))
    g.add_edge(START, "ok")
    g.add_edge(START, "bad")
    g.add_edge(["ok", "bad"], "after")
    return g.compile(checkpointer=saver)


def history(graph: Any, config: dict[str, Any], **kw: Any) -> list[StateSnapshot]:
    return list(graph.get_state_history(config, **kw))


def ckpt_id(config: dict[str, Any] | None) -> str | None:
    return None if config is None else config["configurable"]["checkpoint_id"]


def by_step(snapshots: list[StateSnapshot], step: int) -> StateSnapshot:
    (found,) = [s for s in snapshots if s.metadata["step"] == step]
    return found


# -- threads ----------------------------------------------------------------------------


def test_a_second_run_on_a_thread_continues_from_its_saved_state(
    driver: Any, saver: BaseCheckpointSaver
) -> None:
    calls: Counter[str] = Counter()
    graph = sequence(saver, calls)
    assert driver.invoke(graph, {"x": ["1"]}, thread()) == {"x": ["1", "a", "b"]}
    assert driver.invoke(graph, {"x": ["2"]}, thread()) == {"x": ["1", "a", "b", "2", "a", "b"]}
    # Another thread starts from nothing.
    assert driver.invoke(graph, {"x": ["3"]}, thread("other")) == {"x": ["3", "a", "b"]}
    assert graph.get_state(thread()).values == {"x": ["1", "a", "b", "2", "a", "b"]}
    assert calls == {"a": 3, "b": 3}


def test_a_checkpointed_graph_needs_a_thread_id(driver: Any, saver: BaseCheckpointSaver) -> None:
    graph = sequence(saver, Counter())
    with pytest.raises(ValueError, match="thread_id"):
        driver.invoke(graph, {"x": []})
    with pytest.raises(ValueError, match="thread_id"):
        driver.invoke(graph, {"x": []}, {"configurable": {"user": "u"}})


def test_checkpointer_must_be_a_saver() -> None:
    g = StateGraph(Log)
    g.add_node("a", lambda s: {"x": ["a"]})
    g.add_edge(START, "a")
    with pytest.raises(TypeError, match="checkpointer"):
        g.compile(checkpointer="x")


def test_no_input_on_an_empty_thread_is_an_empty_input_error(
    driver: Any, saver: BaseCheckpointSaver
) -> None:
    calls: Counter[str] = Counter()
    graph = sequence(saver, calls)
    with pytest.raises(EmptyInputError):
        driver.invoke(graph, None, thread("empty"))
    assert calls == {}
    assert list(saver.list(thread("empty"))) == []


# -- history ----------------------------------------------------------------------------


def test_history_sources_steps_and_parent_chain(driver: Any, saver: BaseCheckpointSaver) -> None:
    graph = sequence(saver, Counter())
    driver.invoke(graph, {"x": ["0"]}, thread())
    found = history(graph, thread())
    # Newest first: the input checkpoint (-1), then one per superstep (0: START's
    # writes, 1: a, 2: b).
    assert [(s.metadata["source"], s.metadata["step"]) for s in found] == [
        ("loop", 2),
        ("loop", 1),
        ("loop", 0),
        ("input", -1),
    ]
    for child, parent in pairwise(found):
        assert child.parent_config == parent.config
    assert found[-1].parent_config is None
    assert found[0].values == {"x": ["0", "a", "b"]}
    assert found[0].next == ()
    assert graph.get_state(thread()).config == found[0].config
    for snap in found:
        conf = snap.config["configurable"]
        assert conf["thread_id"] == "t"
        assert conf["checkpoint_ns"] == ""
        assert snap.created_at is not None


def test_history_shows_each_checkpoint_as_it_was_saved(
    driver: Any, saver: BaseCheckpointSaver
) -> None:
    graph = sequence(saver, Counter())
    driver.invoke(graph, {"x": ["0"]}, thread())
    found = history(graph, thread())
    assert [(s.metadata["step"], s.values, s.next) for s in found] == [
        (2, {"x": ["0", "a", "b"]}, ()),
        (1, {"x": ["0", "a"]}, ("b",)),
        (0, {"x": ["0"]}, ("a",)),
        (-1, {"x": []}, ("__start__",)),
    ]


def test_get_state_of_a_past_checkpoint_is_that_checkpoint(
    driver: Any, saver: BaseCheckpointSaver
) -> None:
    graph = sequence(saver, Counter())
    driver.invoke(graph, {"x": ["0"]}, thread())
    step0 = by_step(history(graph, thread()), 0)
    state = graph.get_state(step0.config)
    assert state.values == {"x": ["0"]}
    assert state.next == ("a",)


def test_checkpoint_metadata(driver: Any, saver: BaseCheckpointSaver) -> None:
    graph = sequence(saver, Counter())
    config = {
        "configurable": {"thread_id": "m", "user": "u", "level": 3, "obj": object()},
        "metadata": {"tag": "t", "ratio": 0.5, "flag": True, "nested": [1], "deep": {"a": 1}},
    }
    driver.invoke(graph, {"x": []}, config)
    found = history(graph, thread("m"))
    run_ids = {s.metadata["run_id"] for s in found}
    assert len(run_ids) == 1
    (run_id,) = run_ids
    assert isinstance(run_id, str) and run_id
    for snap in found:
        meta = dict(snap.metadata)
        assert meta.pop("source") in ("input", "loop")
        assert isinstance(meta.pop("step"), int)
        assert meta == {
            "user": "u",
            "level": 3,
            "tag": "t",
            "ratio": 0.5,
            "flag": True,
            "parents": {},
            "run_id": run_id,
        }
    # Each run has its own run id.
    driver.invoke(graph, {"x": []}, thread("m"))
    assert len({s.metadata["run_id"] for s in history(graph, thread("m"))}) == 2


def test_history_filter_limit_before(driver: Any, saver: BaseCheckpointSaver) -> None:
    graph = sequence(saver, Counter(), "abc")
    driver.invoke(graph, {"x": []}, thread())
    everything = history(graph, thread())
    assert len(everything) == 5
    loops = history(graph, thread(), filter={"source": "loop"})
    assert [s.metadata["step"] for s in loops] == [3, 2, 1, 0]
    assert [s.metadata["step"] for s in history(graph, thread(), filter={"source": "input"})] == [
        -1
    ]
    assert history(graph, thread(), filter={"source": "update"}) == []
    assert [s.config for s in history(graph, thread(), limit=2)] == [
        s.config for s in everything[:2]
    ]
    before = history(graph, thread(), before=everything[1].config)
    assert [s.config for s in before] == [s.config for s in everything[2:]]
    limited = history(graph, thread(), before=everything[1].config, limit=1)
    assert [s.config for s in limited] == [everything[2].config]
    assert history(graph, thread("nobody")) == []


def test_checkpoint_ids_increase_along_every_branch(
    driver: Any, saver: BaseCheckpointSaver
) -> None:
    graph = sequence(saver, Counter(), "abc")
    driver.invoke(graph, {"x": []}, thread())
    first = history(graph, thread())
    # A fork (update_state on an old checkpoint) and a replay add branches.
    graph.update_state(by_step(first, 1).config, {"x": ["f"]}, as_node="a")
    driver.invoke(graph, None, by_step(first, 0).config)
    driver.invoke(graph, {"x": ["again"]}, thread())
    found = history(graph, thread())
    assert len(found) > len(first)
    ids = [ckpt_id(s.config) for s in found]
    assert len(set(ids)) == len(ids)
    for snap in found:
        if snap.parent_config is not None:
            assert ckpt_id(snap.config) > ckpt_id(snap.parent_config)
    # Newest first is also id order.
    assert ids == sorted(ids, reverse=True)


# -- get_state --------------------------------------------------------------------------


def test_get_state_of_a_fresh_thread(saver: BaseCheckpointSaver) -> None:
    graph = sequence(saver, Counter())
    state = graph.get_state(thread("fresh"))
    assert state.values == {}
    assert state.next == ()
    assert state.metadata is None
    assert state.tasks == ()
    assert state.parent_config is None
    assert history(graph, thread("fresh")) == []


def test_get_state_needs_a_checkpointer() -> None:
    graph = sequence(None, Counter())
    with pytest.raises(ValueError, match="checkpointer"):
        graph.get_state(thread())
    with pytest.raises(ValueError, match="checkpointer"):
        history(graph, thread())
    with pytest.raises(ValueError, match="checkpointer"):
        graph.update_state(thread(), {"x": ["u"]}, as_node="a")


def test_async_state_methods(saver: BaseCheckpointSaver) -> None:
    graph = sequence(saver, Counter())

    async def go() -> tuple[Any, list[Any], Any]:
        await graph.ainvoke({"x": ["0"]}, thread())
        state = await graph.aget_state(thread())
        found = [s async for s in graph.aget_state_history(thread(), limit=2)]
        updated = await graph.aupdate_state(thread(), {"x": ["u"]}, as_node="b")
        return state, found, updated

    state, found, updated = asyncio.run(go())
    assert state.values == {"x": ["0", "a", "b"]}
    assert [s.metadata["step"] for s in found] == [2, 1]
    assert graph.get_state(updated).values == {"x": ["0", "a", "b", "u"]}


# -- pending writes: a failed step keeps its finished tasks' writes ----------------------


@pytest.mark.parametrize("durability", DURABILITY)
def test_resume_after_a_failed_parallel_step_runs_only_the_failed_task(
    driver: Any, saver: BaseCheckpointSaver, durability: str
) -> None:
    calls: Counter[str] = Counter()
    graph = parallel_with_failure(saver, calls, failures=1)
    with pytest.raises(RuntimeError, match="bad failed"):
        driver.invoke(graph, {"x": ["in"]}, thread(), durability=durability)
    assert calls == {"ok": 1, "bad": 1}

    state = graph.get_state(thread())
    assert state.next == ("bad",)
    assert state.values == {"x": ["in", "ok"]}
    # The saved state is the last barrier: after START's step, before ok/bad's step.
    assert state.metadata["step"] == 0
    tasks = {t.name: t for t in state.tasks}
    assert set(tasks) == {"ok", "bad"}
    assert isinstance(tasks["bad"].error, Exception)
    assert "bad failed" in str(tasks["bad"].error)
    assert tasks["bad"].result is None
    assert tasks["ok"].error is None
    assert tasks["ok"].result == {"x": ["ok"]}
    steps = [s.metadata["step"] for s in history(graph, thread())]
    assert steps == ([0] if durability == "exit" else [0, -1])

    out = driver.invoke(graph, None, thread(), durability=durability)
    assert calls == {"ok": 1, "bad": 2, "after": 1}
    expected = parallel_with_failure(InMemorySaver(), Counter(), failures=0).invoke(
        {"x": ["in"]}, thread("clean")
    )
    assert out == expected == {"x": ["in", "bad", "ok", "after"]}
    assert graph.get_state(thread()).values == expected
    assert graph.get_state(thread()).next == ()


def test_exit_durability_after_a_later_failure_keeps_the_last_barrier(
    driver: Any, saver: BaseCheckpointSaver
) -> None:
    calls: Counter[str] = Counter()
    left = [1]

    def c(state: Log) -> dict[str, list[str]]:
        calls["c"] += 1
        if left[0]:
            left[0] -= 1
            raise RuntimeError("c failed")
        return {"x": ["c"]}

    g = StateGraph(Log)
    g.add_node("a", counted(calls, "a"))
    g.add_node("b", counted(calls, "b"))
    g.add_node("c", c)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    graph = g.compile(checkpointer=saver)
    with pytest.raises(RuntimeError, match="c failed"):
        driver.invoke(graph, {"x": ["in"]}, thread(), durability="exit")
    (saved,) = history(graph, thread())
    assert saved.metadata["step"] == 2  # the barrier after b: the last one reached
    assert saved.values == {"x": ["in", "a", "b"]}
    assert saved.next == ("c",)
    assert "c failed" in str(saved.tasks[0].error)

    assert driver.invoke(graph, None, thread(), durability="exit") == {"x": ["in", "a", "b", "c"]}
    assert calls == {"a": 1, "b": 1, "c": 2}
    assert [s.metadata["step"] for s in history(graph, thread())] == [3, 2]


@pytest.mark.parametrize("durability", DURABILITY)
def test_send_fan_out_is_saved_and_resumes_only_the_failed_send(
    driver: Any, saver: BaseCheckpointSaver, durability: str
) -> None:
    class MapState(TypedDict):
        items: list[int]
        out: Annotated[list[int], operator.add]

    def build(calls: Counter[int], fail: set[int]) -> Any:
        def work(arg: dict[str, int]) -> dict[str, list[int]]:
            calls[arg["v"]] += 1
            if arg["v"] in fail:
                fail.discard(arg["v"])
                raise RuntimeError(f"item {arg['v']} failed")
            return {"out": [arg["v"] * 10]}

        g = StateGraph(MapState)
        g.add_node("fan", lambda s: {})
        g.add_node("work", work)
        g.add_edge(START, "fan")
        g.add_conditional_edges("fan", lambda s: [Send("work", {"v": v}) for v in s["items"]])
        g.add_edge("work", END)
        return g

    calls: Counter[int] = Counter()
    graph = build(calls, {3}).compile(checkpointer=saver)
    with pytest.raises(RuntimeError, match="item 3 failed"):
        driver.invoke(graph, {"items": [1, 2, 3, 4]}, thread(), durability=durability)
    assert calls == {1: 1, 2: 1, 3: 1, 4: 1}

    saved = saver.get_tuple(thread())
    assert saved is not None
    sends = saved.checkpoint["channel_values"]["__pregel_tasks"]
    assert sends == [Send("work", {"v": v}) for v in (1, 2, 3, 4)]
    state = graph.get_state(thread())
    assert state.next == ("work",)
    assert [(t.path, t.error is not None, t.result) for t in state.tasks] == [
        (("__pregel_push", 0), False, {"out": [10]}),
        (("__pregel_push", 1), False, {"out": [20]}),
        (("__pregel_push", 2), True, None),
        (("__pregel_push", 3), False, {"out": [40]}),
    ]

    out = driver.invoke(graph, None, thread(), durability=durability)
    assert calls == {1: 1, 2: 1, 3: 2, 4: 1}
    expected = build(Counter(), set()).compile().invoke({"items": [1, 2, 3, 4]})
    assert out == expected == {"items": [1, 2, 3, 4], "out": [10, 20, 30, 40]}
    assert graph.get_state(thread()).values == expected


# -- durability ---------------------------------------------------------------------------


def test_exit_durability_stores_only_the_final_checkpoint(
    driver: Any, saver: BaseCheckpointSaver
) -> None:
    calls: Counter[str] = Counter()
    graph = sequence(saver, calls)
    assert driver.invoke(graph, {"x": ["0"]}, thread(), durability="exit") == {"x": ["0", "a", "b"]}
    (final,) = history(graph, thread())
    assert final.metadata["source"] == "loop"
    assert final.metadata["step"] == 2
    assert final.values == {"x": ["0", "a", "b"]}
    assert final.next == ()
    assert final.parent_config is None  # the run started from nothing
    assert list(saver.list(None)) != []
    assert all(not t.pending_writes for t in saver.list(None))

    # A second run's only checkpoint has the checkpoint it started from as parent.
    driver.invoke(graph, {"x": ["1"]}, thread(), durability="exit")
    second, first = history(graph, thread())
    assert first.config == final.config
    assert second.parent_config == final.config
    assert second.metadata["step"] == 6
    assert second.values == {"x": ["0", "a", "b", "1", "a", "b"]}


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_sync_and_async_durability_store_every_step(
    driver: Any, saver: BaseCheckpointSaver, durability: str
) -> None:
    graph = sequence(saver, Counter())
    driver.invoke(graph, {"x": ["0"]}, thread(), durability=durability)
    assert [s.metadata["step"] for s in history(graph, thread())] == [2, 1, 0, -1]
    assert graph.get_state(thread()).values == {"x": ["0", "a", "b"]}


def test_invalid_durability_is_a_value_error(driver: Any, saver: BaseCheckpointSaver) -> None:
    graph = sequence(saver, Counter())
    with pytest.raises(ValueError, match="durability"):
        driver.invoke(graph, {"x": []}, thread(), durability="never")
    with pytest.raises(ValueError, match="durability"):
        driver.stream(graph, {"x": []}, thread(), durability="SYNC")
    assert list(saver.list(thread())) == []


def test_async_durability_keeps_values_a_step_did_not_change(driver: Any) -> None:
    # Regression: the next checkpoint used to be prepared before the previous one was
    # stored, found no parent references, and dropped every unchanged channel.
    class Keys(TypedDict, total=False):
        given: str
        first: str
        second: str

    g = StateGraph(Keys)
    g.add_node("one", lambda s: {"first": "1"})
    g.add_node("two", lambda s: {"second": "2"})
    g.add_edge(START, "one")
    g.add_edge("one", "two")
    graph = g.compile(checkpointer=LaggingSaver())
    out = driver.invoke(graph, {"given": "g"}, thread(), durability="async")
    assert out == {"given": "g", "first": "1", "second": "2"}
    assert graph.get_state(thread()).values == out


# -- update_state: forks ----------------------------------------------------------------


def test_update_state_forks_an_old_checkpoint(driver: Any, saver: BaseCheckpointSaver) -> None:
    calls: Counter[str] = Counter()
    graph = sequence(saver, calls)
    driver.invoke(graph, {"x": ["0"]}, thread())
    before = history(graph, thread())
    step0 = by_step(before, 0)

    fork = graph.update_state(step0.config, {"x": ["forked"]}, as_node="a")
    assert fork["configurable"]["thread_id"] == "t"
    assert ckpt_id(fork) not in {ckpt_id(s.config) for s in before}
    state = graph.get_state(fork)
    # LangGraph's verified example (reference 6.3): the reducer applies and a's
    # outgoing edge fires.
    assert state.values == {"x": ["0", "forked"]}
    assert state.next == ("b",)
    assert state.metadata["source"] == "update"
    assert state.metadata["step"] == step0.metadata["step"] + 1
    assert state.parent_config == step0.config
    # The fork is the thread's latest checkpoint now.
    assert graph.get_state(thread()).config == fork

    # The original branch is intact: same checkpoints, same values.
    after = history(graph, thread())
    assert after[0].config == fork
    assert [(s.config, s.values, s.metadata) for s in after[1:]] == [
        (s.config, s.values, s.metadata) for s in before
    ]

    out = driver.invoke(graph, None, fork)
    assert out == {"x": ["0", "forked", "b"]}
    assert calls == {"a": 1, "b": 2}
    assert graph.get_state(thread()).values == out


def test_update_state_infers_the_only_node(driver: Any, saver: BaseCheckpointSaver) -> None:
    g = StateGraph(Log)
    g.add_node("only", lambda s: {"x": ["o"]})
    g.add_edge(START, "only")
    graph = g.compile(checkpointer=saver)
    driver.invoke(graph, {"x": ["in"]}, thread())
    updated = graph.update_state(thread(), {"x": ["u"]})
    state = graph.get_state(updated)
    assert state.values == {"x": ["in", "o", "u"]}
    assert state.next == ()
    assert state.metadata["source"] == "update"


def test_update_state_as_node_ambiguous_or_unknown(driver: Any, saver: BaseCheckpointSaver) -> None:
    g = StateGraph(Log)
    g.add_node("a", lambda s: {"x": ["a"]})
    g.add_node("b", lambda s: {"x": ["b"]})
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    graph = g.compile(checkpointer=saver)
    driver.invoke(graph, {"x": []}, thread())
    latest = graph.get_state(thread()).config
    # a and b ran in the same step: which one the update comes from is unclear.
    with pytest.raises(InvalidUpdateError, match="as_node"):
        graph.update_state(thread(), {"x": ["u"]})
    with pytest.raises(InvalidUpdateError, match="nope"):
        graph.update_state(thread(), {"x": ["u"]}, as_node="nope")
    assert graph.get_state(thread()).config == latest
    # With an explicit node it works.
    updated = graph.update_state(thread(), {"x": ["u"]}, as_node="b")
    assert graph.get_state(updated).values == {"x": ["a", "b", "u"]}


def test_update_state_copy_makes_a_fork_checkpoint(driver: Any, saver: BaseCheckpointSaver) -> None:
    calls: Counter[str] = Counter()
    graph = sequence(saver, calls)
    driver.invoke(graph, {"x": ["0"]}, thread())
    step1 = by_step(history(graph, thread()), 1)
    copy = graph.update_state(step1.config, None, as_node="__copy__")
    assert ckpt_id(copy) != ckpt_id(step1.config)
    state = graph.get_state(copy)
    assert state.metadata["source"] == "fork"
    assert state.values == {"x": ["0", "a"]}
    assert state.next == ("b",)
    # Continuing from the copy runs only what was left after step 1.
    assert driver.invoke(graph, None, copy) == {"x": ["0", "a", "b"]}
    assert calls == {"a": 1, "b": 2}


# -- replay -----------------------------------------------------------------------------


def test_replay_from_an_old_checkpoint_reruns_later_nodes_on_a_new_branch(
    driver: Any, saver: BaseCheckpointSaver
) -> None:
    calls: Counter[str] = Counter()
    graph = sequence(saver, calls, "abc")
    driver.invoke(graph, {"x": ["0"]}, thread())
    assert calls == {"a": 1, "b": 1, "c": 1}
    before = history(graph, thread())
    step1 = by_step(before, 1)  # a ran; b and c follow

    out = driver.invoke(graph, None, step1.config)
    assert out == {"x": ["0", "a", "b", "c"]}
    assert calls == {"a": 1, "b": 2, "c": 2}

    after = history(graph, thread())
    new = after[: len(after) - len(before)]
    assert [(s.config, s.values, s.metadata) for s in after[len(new) :]] == [
        (s.config, s.values, s.metadata) for s in before
    ]
    assert [(s.metadata["source"], s.metadata["step"]) for s in new] == [
        ("loop", 3),
        ("loop", 2),
        ("fork", 1),
    ]
    fork = new[-1]
    assert fork.parent_config == step1.config
    for child, parent in pairwise(new):
        assert child.parent_config == parent.config
    latest = graph.get_state(thread())
    assert latest.config == new[0].config
    assert latest.values == out


# -- values never alias live state ------------------------------------------------------


class Items(TypedDict):
    items: Annotated[list[Any], operator.add]
    other: list[str]


def test_mutating_returned_or_read_values_does_not_change_saved_state(
    driver: Any, saver: BaseCheckpointSaver
) -> None:
    returned: list[Any] = []

    def a(state: Items) -> dict[str, Any]:
        mine = ["a"]
        returned.append(mine)
        return {"items": mine, "other": ["o"]}

    def b(state: Items) -> dict[str, Any]:
        state["items"].append("sneaky")  # in place, not returned
        state["other"].append("sneaky")
        return {}

    g = StateGraph(Items)
    g.add_node("a", a)
    g.add_node("b", b)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    graph = g.compile(checkpointer=saver)
    out = driver.invoke(graph, {"items": [], "other": []}, thread())
    assert out == {"items": ["a"], "other": ["o"]}
    expected = {"items": ["a"], "other": ["o"]}
    assert graph.get_state(thread()).values == expected

    returned[0].append("later")
    out["items"].append("caller")
    got = graph.get_state(thread())
    got.values["items"].append("reader")
    got.values["other"].clear()
    assert graph.get_state(thread()).values == expected
    for snap in history(graph, thread()):
        assert "reader" not in snap.values.get("items", [])
    assert driver.invoke(graph, {"items": ["more"], "other": []}, thread()) == {
        "items": ["a", "more", "a"],
        "other": ["o"],
    }


@pytest.mark.parametrize(
    "durability",
    [
        "sync",
        "async",
        "exit",
    ],
)
def test_nested_in_place_mutation_does_not_reach_the_saved_checkpoint(
    driver: Any, saver: BaseCheckpointSaver, durability: str
) -> None:
    def a(state: Items) -> dict[str, Any]:
        return {"items": [{"k": [1]}], "other": ["o"]}

    def b(state: Items) -> dict[str, Any]:
        state["items"][0]["k"].append(2)
        return {"other": ["b"]}

    g = StateGraph(Items)
    g.add_node("a", a)
    g.add_node("b", b)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    graph = g.compile(checkpointer=saver)
    driver.invoke(graph, {"items": [], "other": []}, thread(), durability=durability)
    assert graph.get_state(thread()).values == {"items": [{"k": [1]}], "other": ["b"]}


# -- storage growth ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "durability",
    [
        "sync",
        "async",
        "exit",
    ],
)
def test_append_only_channel_storage_grows_linearly(durability: str) -> None:
    class Grow(TypedDict):
        items: Annotated[list[str], operator.add]
        n: int

    def grow(state: Grow) -> dict[str, Any]:
        return {"items": [f"{state['n']:04d}" + "x" * 1020], "n": state["n"] + 1}

    g = StateGraph(Grow)
    g.add_node("grow", grow)
    g.add_edge(START, "grow")
    g.add_conditional_edges("grow", lambda s: "grow" if s["n"] < 200 else END)
    saver = LaggingSaver() if durability == "async" else InMemorySaver()
    graph = g.compile(checkpointer=saver)
    out = graph.invoke({"items": [], "n": 0}, thread(), durability=durability)
    assert len(out["items"]) == 200
    assert graph.get_state(thread()).values == out
    final = len(saver.serde.dumps(out["items"]))
    total = sum(len(blob) for blob in saver._blob_store.values())
    # Without deltas every one of the ~200 checkpoints would store the whole list:
    # about 100x the final size. ("async" runs behind a saver that stores each
    # checkpoint only after the next one was prepared.)
    assert total < 3 * final + 200 * 200


# -- one run per thread at a time --------------------------------------------------------


def test_two_runs_on_one_thread_at_once(driver: Any, saver: BaseCheckpointSaver) -> None:
    entered = threading.Event()
    release = threading.Event()
    calls: Counter[str] = Counter()

    def hold(state: Log) -> dict[str, list[str]]:
        calls["hold"] += 1
        if calls["hold"] == 1:
            entered.set()
            assert release.wait(10)
        return {"x": ["h"]}

    g = StateGraph(Log)
    g.add_node("hold", hold)
    g.add_edge(START, "hold")
    graph = g.compile(checkpointer=saver)

    acquiring = threading.Semaphore(0)
    original = saver.acquire_thread

    def spy(*args: Any, **kwargs: Any) -> Any:
        acquiring.release()
        return original(*args, **kwargs)

    saver.acquire_thread = spy  # type: ignore[method-assign]
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(key: str, input: Any, config: dict[str, Any]) -> None:
        try:
            results[key] = driver.invoke(graph, input, config)
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=run, args=("first", {"x": ["1"]}, thread("busy")))
    first.start()
    try:
        assert entered.wait(10)
        with pytest.raises(ThreadBusyError):
            driver.invoke(graph, {"x": ["2"]}, thread("busy"))
        # Other threads are not blocked.
        assert driver.invoke(graph, {"x": ["o"]}, thread("other")) == {"x": ["o", "h"]}

        for _ in range(3):  # the three runs so far asked for a lease
            assert acquiring.acquire(timeout=10)
        waiting = threading.Thread(
            target=run, args=("second", {"x": ["2"]}, thread("busy", wait_for_thread=5))
        )
        waiting.start()
        assert acquiring.acquire(timeout=10)  # the waiting run is asking for the lease
    finally:
        release.set()
    first.join(10)
    waiting.join(10)
    assert errors == []
    assert results["first"] == {"x": ["1", "h"]}
    assert results["second"] == {"x": ["1", "h", "2", "h"]}
    assert calls == {"hold": 3}
    found = history(graph, thread("busy"))
    assert [(s.metadata["source"], s.metadata["step"]) for s in found] == [
        ("loop", 4),
        ("loop", 3),
        ("input", 2),
        ("loop", 1),
        ("loop", 0),
        ("input", -1),
    ]
    for child, parent in pairwise(found):
        assert child.parent_config == parent.config


# -- subgraphs --------------------------------------------------------------------------


def subgraph_parent(saver: BaseCheckpointSaver | None, calls: Counter[str], failures: int) -> Any:
    left = [failures]

    def s2(state: Log) -> dict[str, list[str]]:
        calls["s2"] += 1
        if left[0] > 0:
            left[0] -= 1
            raise RuntimeError("s2 failed")
        return {"x": ["s2"]}

    sub = StateGraph(Log)
    sub.add_node("s1", counted(calls, "s1"))
    sub.add_node("s2", s2)
    sub.add_edge(START, "s1")
    sub.add_edge("s1", "s2")
    parent = StateGraph(Log)
    parent.add_node("pre", counted(calls, "pre"))
    parent.add_node("child", sub.compile())
    parent.add_edge(START, "pre")
    parent.add_edge("pre", "child")
    return parent.compile(checkpointer=saver)


def test_subgraph_checkpoints_and_resume(driver: Any, saver: BaseCheckpointSaver) -> None:
    calls: Counter[str] = Counter()
    graph = subgraph_parent(saver, calls, failures=1)
    with pytest.raises(RuntimeError, match="s2 failed"):
        driver.invoke(graph, {"x": ["in"]}, thread())
    assert calls == {"pre": 1, "s1": 1, "s2": 1}

    state = graph.get_state(thread())
    assert state.next == ("child",)
    (task,) = state.tasks
    assert task.name == "child"
    assert "s2 failed" in str(task.error)
    ns = f"child:{task.id}"
    assert task.state == {"configurable": {"thread_id": "t", "checkpoint_ns": ns}}
    namespaces = {t.config["configurable"]["checkpoint_ns"] for t in saver.list(None)}
    assert namespaces == {"", ns}

    sub_history = history(graph, task.state)
    assert [s.metadata["step"] for s in sub_history] == [1, 0, -1]
    for snap in sub_history:
        assert snap.config["configurable"]["checkpoint_ns"] == ns
        assert snap.metadata["parents"] == {"": ckpt_id(state.config)}
    stored = list(saver.list({"configurable": {"thread_id": "t", "checkpoint_ns": ns}}))
    assert [t.config for t in stored] == [s.config for s in sub_history]

    nested = graph.get_state(thread(), subgraphs=True).tasks[0].state
    assert isinstance(nested, StateSnapshot)
    assert nested.values == {"x": ["in", "pre", "s1"]}
    assert nested.next == ("s2",)
    assert graph.get_state(task.state).values == nested.values

    out = driver.invoke(graph, None, thread())
    # The parent node runs again; the subgraph continues from its checkpoint.
    assert calls == {"pre": 1, "s1": 1, "s2": 2}
    expected = subgraph_parent(InMemorySaver(), Counter(), failures=0).invoke(
        {"x": ["in"]}, thread("clean")
    )
    assert out == expected
    assert graph.get_state(thread()).values == expected
    assert graph.get_state(thread()).next == ()


def test_a_subgraph_compiled_with_checkpointer_false_saves_nothing(
    driver: Any, saver: BaseCheckpointSaver
) -> None:
    sub = StateGraph(Log)
    sub.add_node("s", lambda s: {"x": ["s"]})
    sub.add_edge(START, "s")
    parent = StateGraph(Log)
    parent.add_node("child", sub.compile(checkpointer=False))
    parent.add_edge(START, "child")
    graph = parent.compile(checkpointer=saver)
    assert driver.invoke(graph, {"x": []}, thread()) == {"x": ["s"]}
    namespaces = {t.config["configurable"]["checkpoint_ns"] for t in saver.list(None)}
    assert namespaces == {""}


def test_unknown_subgraph_namespace(saver: BaseCheckpointSaver) -> None:
    graph = sequence(saver, Counter())
    with pytest.raises(ValueError, match="not found"):
        graph.get_state({"configurable": {"thread_id": "t", "checkpoint_ns": "zz:1"}})


# -- streams ----------------------------------------------------------------------------


def test_leaving_a_stream_early_leaves_a_resumable_thread(
    driver: Any, saver: BaseCheckpointSaver
) -> None:
    calls: Counter[str] = Counter()
    graph = sequence(saver, calls, "abc")
    seen: list[Any] = []
    if driver.kind == "sync":
        for chunk in graph.stream({"x": ["in"]}, thread()):
            seen.append(chunk)
            break
    else:

        async def go() -> None:
            async for chunk in graph.astream({"x": ["in"]}, thread()):
                seen.append(chunk)
                break

        asyncio.run(go())
    assert seen == [{"a": {"x": ["a"]}}]
    assert calls == {"a": 1}
    # a's writes were saved when it finished: they show in the state.
    assert graph.get_state(thread()).values == {"x": ["in", "a"]}

    # The lease was let go, and the run continues where it stopped.
    assert driver.invoke(graph, None, thread()) == {"x": ["in", "a", "b", "c"]}
    assert calls == {"a": 1, "b": 1, "c": 1}


# -- ids across machines, types, encryption ---------------------------------------------


def test_a_run_numbers_its_checkpoints_after_its_parent_even_if_the_clock_is_behind(
    driver: Any, saver: BaseCheckpointSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stepgraph.engine import _ids

    graph = sequence(saver, Counter())
    driver.invoke(graph, {"x": ["0"]}, thread("skew"))
    written = history(graph, thread("skew"))
    newest = ckpt_id(written[0].config)
    assert newest is not None
    # This machine's clock is a day behind the one that wrote the thread.
    real = _ids.time.time_ns
    monkeypatch.setattr(_ids.time, "time_ns", lambda: real() - 86_400 * 10**9)
    monkeypatch.setattr(_ids, "_last_ts", 0)
    driver.invoke(graph, {"x": ["1"]}, thread("skew"))
    later = history(graph, thread("skew"))
    new_ids = [ckpt_id(s.config) for s in later[: len(later) - len(written)]]
    assert all(i is not None and i > newest for i in new_ids)
    assert graph.get_state(thread("skew")).values["x"][-3:] == ["1", "a", "b"]


@dataclasses.dataclass
class Order:
    sku: str
    placed: dt.datetime


class Orders(TypedDict):
    orders: Annotated[list[Order], operator.add]


def test_compile_registers_the_state_schemas_types_with_the_saver(tmp_path: Any) -> None:
    # A saver with an empty registry of its own: only what compile() registers loads.
    saver = checkpoint_pkg.SqliteSaver(
        tmp_path / "types.db", serde=checkpoint_pkg.Serializer(checkpoint_pkg.TypeRegistry())
    )
    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)

    def place(state: Orders) -> dict[str, Any]:
        return {"orders": [Order("tea", when)]}

    def fan(state: Orders) -> list[Send]:
        return [Send("place", state)]

    g = StateGraph(Orders)
    g.add_node(place)
    g.add_conditional_edges(START, fan, ["place"])
    graph = g.compile(checkpointer=saver)
    graph.invoke({"orders": []}, thread("types"))
    saved = saver.get_tuple(thread("types"))
    assert saved is not None
    assert saved.checkpoint["channel_values"]["orders"] == [Order("tea", when)]


def test_values_can_be_encrypted_at_rest(tmp_path: Any) -> None:
    pytest.importorskip("cryptography")
    from stepgraph.checkpoint import AesGcmCipher, Serializer

    key = AesGcmCipher.generate_key()
    path = tmp_path / "sealed.db"
    saver = checkpoint_pkg.SqliteSaver(path, serde=Serializer(cipher=AesGcmCipher(key)))
    graph = sequence(saver, Counter())
    graph.invoke({"x": ["secret-value"]}, thread("sealed"))
    saver.close()
    assert b"secret-value" not in path.read_bytes()
    for extra in path.parent.glob("sealed.db-*"):
        assert b"secret-value" not in extra.read_bytes()
    reopened = checkpoint_pkg.SqliteSaver(path, serde=Serializer(cipher=AesGcmCipher(key)))
    assert sequence(reopened, Counter()).get_state(thread("sealed")).values == {
        "x": ["secret-value", "a", "b"]
    }
    wrong = checkpoint_pkg.SqliteSaver(
        path, serde=Serializer(cipher=AesGcmCipher(AesGcmCipher.generate_key()))
    )
    with pytest.raises(checkpoint_pkg.DeserializationError):
        sequence(wrong, Counter()).get_state(thread("sealed"))


def test_a_value_that_cannot_be_saved_names_its_path_and_node() -> None:
    class Opaque:
        pass

    class Box(TypedDict):
        things: list[Any]

    def put(state: Box) -> dict[str, Any]:
        return {"things": [1, Opaque()]}

    g = StateGraph(Box)
    g.add_node(put)
    g.add_edge(START, "put")
    graph = g.compile(checkpointer=InMemorySaver())
    with pytest.raises(checkpoint_pkg.SerializationError) as info:
        graph.invoke({"things": []}, thread("opaque"), durability="sync")
    assert info.value.path == "writes.things[1]"
    assert "Opaque" in str(info.value)
    assert any("'put'" in note for note in info.value.__notes__)


def test_update_state_as_input_makes_an_input_checkpoint(saver: BaseCheckpointSaver) -> None:
    graph = sequence(saver, Counter())
    graph.invoke({"x": ["0"]}, thread("inp"))
    new = graph.update_state(thread("inp"), {"x": ["more"]}, as_node="__input__")
    state = graph.get_state(new)
    assert state.metadata["source"] == "input"
    assert state.next == ("__start__",)
    assert graph.invoke(None, thread("inp"))["x"] == ["0", "a", "b", "more", "a", "b"]


def test_get_state_of_an_unknown_checkpoint_id_is_an_error(saver: BaseCheckpointSaver) -> None:
    graph = sequence(saver, Counter())
    graph.invoke({"x": []}, thread("ids"))
    missing = {"configurable": {"thread_id": "ids", "checkpoint_id": "no-such-checkpoint"}}
    with pytest.raises(ValueError, match="no checkpoint 'no-such-checkpoint'"):
        graph.get_state(missing)


def test_an_async_run_reads_and_stores_off_the_event_loop(tmp_path: Any) -> None:
    # Each gated call waits for a coroutine on the event loop to open its gate: had the
    # driver made the call on the event loop's thread, the gate would never open.
    gates = {name: threading.Event() for name in ("get_tuple", "release")}

    class Gated(checkpoint_pkg.SqliteSaver):
        def get_tuple(self, config: Any) -> Any:
            assert gates["get_tuple"].wait(5), "the checkpoint was read on the event loop"
            return super().get_tuple(config)

        def _lease_release(self, thread: str, owner: str) -> None:
            assert gates["release"].wait(5), "the thread was released on the event loop"
            super()._lease_release(thread, owner)

    class State(TypedDict):
        log: Annotated[list[str], operator.add]

    graph = StateGraph(State)
    graph.add_node("a", lambda s: {"log": ["a"]})
    graph.add_edge(START, "a")
    saver = Gated(tmp_path / "gated.db")

    async def main() -> dict[str, Any]:
        async def open_gates() -> None:
            for gate in gates.values():
                await asyncio.sleep(0.05)
                gate.set()

        run = graph.compile(checkpointer=saver).ainvoke(
            {"log": []}, {"configurable": {"thread_id": "gated"}}
        )
        result, _ = await asyncio.gather(run, open_gates())
        return result

    try:
        assert asyncio.run(main()) == {"log": ["a"]}
    finally:
        saver.close()


def test_an_async_run_with_sync_durability_stores_off_the_event_loop(tmp_path: Any) -> None:
    # Every store of the run waits for a coroutine on the event loop to let it through;
    # a store made on the event loop's thread would wait forever (here: fail after 5 s).
    through = threading.Semaphore(0)
    stored: list[str] = []

    class Gated(checkpoint_pkg.SqliteSaver):
        def commit(self, prepared: Any) -> Any:
            assert through.acquire(timeout=5), "a checkpoint was stored on the event loop"
            stored.append(prepared.checkpoint_id)
            return super().commit(prepared)

    class State(TypedDict):
        log: Annotated[list[str], operator.add]

    graph = StateGraph(State)
    graph.add_node("a", lambda s: {"log": ["a"]})
    graph.add_node("b", lambda s: {"log": ["b"]})
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    saver = Gated(tmp_path / "gated.db")

    async def main() -> dict[str, Any]:
        done = asyncio.Event()

        async def let_through() -> None:
            while not done.is_set():
                through.release()
                await asyncio.sleep(0.01)

        run = graph.compile(checkpointer=saver).ainvoke(
            {"log": []}, {"configurable": {"thread_id": "gated"}}, durability="sync"
        )
        opener = asyncio.ensure_future(let_through())
        try:
            return await run
        finally:
            done.set()
            await opener

    try:
        assert asyncio.run(main()) == {"log": ["a", "b"]}
        history = list(saver.list({"configurable": {"thread_id": "gated"}}))
        assert len(stored) == len(history) == 4  # the input and three steps
    finally:
        saver.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_stores_in_the_background_too(tmp_path: Any) -> None:
    # The parent's background store threads do not exist in a forked child; the child
    # must get threads of its own, not wait forever for the parent's.
    class State(TypedDict):
        log: Annotated[list[str], operator.add]

    graph = StateGraph(State)
    graph.add_node("a", lambda s: {"log": ["a"]})
    graph.add_edge(START, "a")

    def run(name: str) -> dict[str, Any]:
        with checkpoint_pkg.SqliteSaver(tmp_path / f"{name}.db") as saver:
            return graph.compile(checkpointer=saver).invoke(
                {"log": []}, {"configurable": {"thread_id": name}}, durability="async"
            )

    assert run("parent") == {"log": ["a"]}  # the parent's store threads exist now
    pid = os.fork()
    if pid == 0:  # the child: exit 0 if its run stored and returned
        code = 1
        try:
            code = 0 if run("child") == {"log": ["a"]} else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's run never finished storing")

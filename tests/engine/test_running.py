"""Running: stream modes and shapes, errors, recursion limit, config, batch, parallelism."""

from __future__ import annotations

import operator
import random
import threading
import time
from typing import Annotated, Any, TypedDict

import pytest

from stepgraph.engine import (
    END,
    START,
    EmptyInputError,
    GraphRecursionError,
    GraphWarning,
    Send,
    StateGraph,
    get_config,
    get_stream_writer,
)


class Log(TypedDict):
    log: Annotated[list[str], operator.add]


def node(name: str) -> Any:
    def run(state: Any) -> dict[str, list[str]]:
        return {"log": [name]}

    return run


def two_step() -> Any:
    g = StateGraph(Log)
    g.add_node("a", node("a"))
    g.add_node("b", node("b"))
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    return g.compile()


def test_stream_values(driver: Any) -> None:
    chunks = driver.stream(two_step(), {"log": ["in"]}, stream_mode="values")
    assert chunks == [{"log": ["in"]}, {"log": ["in", "a"]}, {"log": ["in", "a", "b"]}]


def test_stream_updates_is_the_default_for_state_graphs(driver: Any) -> None:
    assert driver.stream(two_step(), {"log": []}) == [{"a": {"log": ["a"]}}, {"b": {"log": ["b"]}}]


def test_updates_of_a_node_that_wrote_nothing_is_none(driver: Any) -> None:
    g = StateGraph(Log)
    g.add_node("quiet", lambda s: None)
    g.add_edge(START, "quiet")
    assert driver.stream(g.compile(), {"log": []}) == [{"quiet": None}]


def test_several_modes_give_mode_payload_pairs(driver: Any) -> None:
    chunks = driver.stream(two_step(), {"log": []}, stream_mode=["updates", "values"])
    assert chunks == [
        ("values", {"log": []}),
        ("updates", {"a": {"log": ["a"]}}),
        ("values", {"log": ["a"]}),
        ("updates", {"b": {"log": ["b"]}}),
        ("values", {"log": ["a", "b"]}),
    ]


def test_tasks_and_debug_modes(driver: Any) -> None:
    chunks = driver.stream(two_step(), {"log": []}, stream_mode=["tasks", "debug"])
    tasks = [p for m, p in chunks if m == "tasks"]
    debug = [p for m, p in chunks if m == "debug"]
    assert [(t["name"], "input" in t) for t in tasks] == [
        ("a", True),
        ("a", False),
        ("b", True),
        ("b", False),
    ]
    start, end = tasks[0], tasks[1]
    assert start["input"] == {"log": []} and start["triggers"] == ("branch:to:a",)
    assert end == {
        "id": start["id"],
        "name": "a",
        "error": None,
        "result": {"log": ["a"]},
        "interrupts": [],
    }
    assert [(d["type"], d["step"]) for d in debug] == [
        ("task", 1),
        ("task_result", 1),
        ("task", 2),
        ("task_result", 2),
    ]
    assert debug[1]["payload"] == end


def test_custom_mode_streams_while_tasks_run(driver: Any) -> None:
    def talk(state: Log) -> None:
        write = get_stream_writer()
        write("one")
        write({"two": 2})

    g = StateGraph(Log)
    g.add_node(talk)
    g.add_edge(START, "talk")
    chunks = driver.stream(g.compile(), {"log": []}, stream_mode=["custom", "updates"])
    assert chunks == [("custom", "one"), ("custom", {"two": 2}), ("updates", {"talk": None})]


def test_writer_is_a_no_op_without_custom_mode(driver: Any) -> None:
    def talk(state: Log) -> dict[str, list[str]]:
        get_stream_writer()("ignored")
        return {"log": ["t"]}

    g = StateGraph(Log)
    g.add_node(talk)
    g.add_edge(START, "talk")
    assert driver.stream(g.compile(), {"log": []}, stream_mode="updates") == [
        {"talk": {"log": ["t"]}}
    ]


def test_subgraph_streaming_adds_namespaces(driver: Any) -> None:
    inner = StateGraph(Log)
    inner.add_node("i", node("i"))
    inner.add_edge(START, "i")
    g = StateGraph(Log)
    g.add_node("sub", inner.compile())
    g.add_edge(START, "sub")
    app = g.compile()
    chunks = driver.stream(app, {"log": []}, stream_mode="updates", subgraphs=True)
    (ns, first), (root_ns, last) = chunks
    assert len(ns) == 1 and ns[0].startswith("sub:")
    assert first == {"i": {"log": ["i"]}}
    assert root_ns == () and last == {"sub": {"log": ["i"]}}
    multi = driver.stream(app, {"log": []}, stream_mode=["updates"], subgraphs=True)
    assert [c[1] for c in multi] == ["updates", "updates"]
    # Without subgraphs=True, only the parent's chunks appear.
    assert driver.stream(app, {"log": []}, stream_mode="updates") == [{"sub": {"log": ["i"]}}]


def test_unknown_stream_mode(driver: Any) -> None:
    with pytest.raises(ValueError, match="unknown stream mode"):
        driver.stream(two_step(), {"log": []}, stream_mode="messages")


def test_invoke_with_other_stream_mode_returns_chunks(driver: Any) -> None:
    out = driver.invoke(two_step(), {"log": []}, stream_mode="updates")
    assert out == [{"a": {"log": ["a"]}}, {"b": {"log": ["b"]}}]


def test_no_input_is_an_error(driver: Any) -> None:
    with pytest.raises(EmptyInputError):
        driver.invoke(two_step(), None)


# -- failures ---------------------------------------------------------------------


def boom(message: str) -> Any:
    def run(state: Any) -> None:
        raise ValueError(message)

    return run


def test_node_error_reaches_caller_with_a_note(driver: Any) -> None:
    g = StateGraph(Log)
    g.add_node("bad", boom("nope"))
    g.add_edge(START, "bad")
    with pytest.raises(ValueError, match="nope") as info:
        driver.invoke(g.compile(), {"log": []})
    (note,) = info.value.__notes__
    assert "'bad'" in note and "superstep 1" in note and "task" in note


def test_several_failures_arrive_together_and_nothing_is_committed(driver: Any) -> None:
    g = StateGraph(Log)
    g.add_node("ok", node("ok"))
    g.add_node("bad1", boom("one"))
    g.add_node("bad2", boom("two"))
    for n in ("ok", "bad1", "bad2"):
        g.add_edge(START, n)
    chunks: list[Any] = []
    with pytest.raises(ExceptionGroup) as info:
        driver.stream_into(chunks, g.compile(), {"log": ["in"]}, stream_mode=["values", "updates"])
    group = info.value
    assert [str(e) for e in group.exceptions] == ["one", "two"]
    assert "superstep 1" in str(group) and "no writes" in str(group)
    assert all(e.__notes__ for e in group.exceptions)
    # "ok" finished and was streamed, but its write never became state.
    assert chunks == [("values", {"log": ["in"]}), ("updates", {"ok": {"log": ["ok"]}})]


def test_recursion_limit_stops_before_the_extra_step(driver: Any) -> None:
    calls: list[int] = []

    def loop(state: Log) -> dict[str, list[str]]:
        calls.append(1)
        return {"log": ["x"]}

    g = StateGraph(Log)
    g.add_node("loop", loop)
    g.add_edge(START, "loop")
    g.add_edge("loop", "loop")
    with pytest.warns(GraphWarning, match="'loop' cannot reach END"):
        compiled = g.compile()  # the loop has no exit on purpose
    with pytest.raises(GraphRecursionError) as info:
        driver.invoke(compiled, {"log": []}, {"recursion_limit": 5})
    err = info.value
    # START is superstep 0, so 5 supersteps ran "loop" 4 times; the 6th never started.
    assert len(calls) == 4
    assert err.limit == 5 and err.steps == 5 and err.pending == ("loop",)
    assert "recursion_limit" in str(err) and isinstance(err, RecursionError)


def test_recursion_limit_exactly_enough(driver: Any) -> None:
    # 2 nodes + START = 3 supersteps.
    assert driver.invoke(two_step(), {"log": []}, {"recursion_limit": 3}) == {"log": ["a", "b"]}
    with pytest.raises(GraphRecursionError):
        driver.invoke(two_step(), {"log": []}, {"recursion_limit": 2})


@pytest.mark.parametrize(
    "config, match",
    [
        ({"recursion_limit": 0}, "positive integer"),
        ({"configurable": {"max_concurrency": 2}}, "top level"),
        ({"max_concurrency": 0}, "positive integer"),
    ],
)
def test_bad_config_is_rejected(driver: Any, config: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        driver.invoke(two_step(), {"log": []}, config)


def test_config_reaches_nodes(driver: Any) -> None:
    seen: dict[str, Any] = {}

    def look(state: Log) -> None:
        conf = get_config()
        seen.update(
            thread=conf["configurable"]["thread_id"],
            tags=conf["tags"],
            meta=conf["metadata"]["team"],
            step=conf["metadata"]["langgraph_step"],
            limit=conf["recursion_limit"],
        )

    g = StateGraph(Log)
    g.add_node(look)
    g.add_edge(START, "look")
    config = {
        "configurable": {"thread_id": 7},
        "tags": ["t"],
        "metadata": {"team": "x"},
        "recursion_limit": 9,
    }
    driver.invoke(g.compile(), {"log": []}, config)
    assert seen == {"thread": 7, "tags": ["t"], "meta": "x", "step": 1, "limit": 9}


def test_get_config_outside_a_node() -> None:
    with pytest.raises(RuntimeError, match="while a graph node is running"):
        get_config()


# -- parallelism and determinism ----------------------------------------------------


class Fan(TypedDict):
    n: int
    out: Annotated[list[int], operator.add]


def fan_graph(work: Any) -> Any:
    g = StateGraph(Fan)
    g.add_node("work", work)
    g.add_conditional_edges(START, lambda s: [Send("work", i) for i in range(s["n"])], ["work"])
    return g.compile()


def test_max_concurrency_bounds_parallel_tasks(driver: Any) -> None:
    lock = threading.Lock()
    running = [0, 0]  # now, peak

    def work(i: int) -> dict[str, list[int]]:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return {"out": [i]}

    out = driver.invoke(fan_graph(work), {"n": 8}, {"max_concurrency": 2})
    assert out["out"] == list(range(8))
    assert running[1] == 2


def test_tasks_of_a_step_run_in_parallel(driver: Any) -> None:
    barrier = threading.Barrier(3, timeout=5)

    def work(i: int) -> dict[str, list[int]]:
        barrier.wait()  # deadlocks (then times out) unless all three run at once
        return {"out": [i]}

    assert driver.invoke(fan_graph(work), {"n": 3})["out"] == [0, 1, 2]


def test_result_does_not_depend_on_completion_order(driver: Any) -> None:
    rng = random.Random(1234)
    delays = [rng.random() * 0.01 for _ in range(12)]

    def work(i: int) -> dict[str, list[int]]:
        time.sleep(delays[i])
        return {"out": [i]}

    for _ in range(3):
        assert driver.invoke(fan_graph(work), {"n": 12})["out"] == list(range(12))


def test_task_ids_are_deterministic_for_the_same_checkpoint(driver: Any) -> None:
    ids = [t["id"] for t in driver.stream(two_step(), {"log": []}, stream_mode="tasks")]
    again = [t["id"] for t in driver.stream(two_step(), {"log": []}, stream_mode="tasks")]
    # Each run has fresh checkpoint ids, so ids differ across runs but pair up
    # start/end within a run.
    assert ids[0] == ids[1] and ids[2] == ids[3]
    assert ids[0] != again[0]


def test_batch(driver: Any) -> None:
    outs = driver.batch(two_step(), [{"log": ["1"]}, {"log": ["2"]}], {"max_concurrency": 1})
    assert outs == [{"log": ["1", "a", "b"]}, {"log": ["2", "a", "b"]}]


def test_batch_return_exceptions(driver: Any) -> None:
    outs = driver.batch(two_step(), [{"log": []}, {"nope": 1}], return_exceptions=True)
    assert outs[0] == {"log": ["a", "b"]}
    assert isinstance(outs[1], Exception) and "nope" in str(outs[1])


def test_end_edges_are_no_ops(driver: Any) -> None:
    g = StateGraph(Log)
    g.add_node("a", node("a"))
    g.add_edge(START, "a")
    g.add_edge("a", END)
    assert driver.invoke(g.compile(), {"log": []}) == {"log": ["a"]}


class Question(TypedDict):
    q: str


class Answer(TypedDict):
    a: str


class Everything(Question, Answer):
    notes: str


class Secret(TypedDict):
    secret: str


def secret_graph() -> Any:
    def think(state: Question) -> dict[str, str]:
        return {"notes": "n", "secret": "s"}

    def respond(state: Secret) -> dict[str, str]:
        return {"a": state["secret"].upper()}

    g = StateGraph(Everything, input_schema=Question, output_schema=Answer)
    g.add_node(think)
    g.add_node(respond)
    g.add_edge(START, "think")
    g.add_edge("think", "respond")
    return g.compile()


def test_values_stream_shows_the_whole_state_and_invoke_the_output(driver: Any) -> None:
    app = secret_graph()
    assert driver.invoke(app, {"q": "x"}) == {"a": "S"}
    assert driver.stream(app, {"q": "x"}, stream_mode="values") == [
        {"q": "x"},
        {"q": "x", "notes": "n", "secret": "s"},
        {"q": "x", "a": "S", "notes": "n", "secret": "s"},
    ]
    # invoke() with another mode shows updates through the output schema.
    assert driver.invoke(app, {"q": "x"}, stream_mode="updates") == [
        {"think": None},
        {"respond": {"a": "S"}},
    ]


def test_tasks_stream_input_is_what_the_node_receives(driver: Any) -> None:
    from pydantic import BaseModel

    class P(BaseModel):
        name: str
        count: int = 0

    g = StateGraph(P)
    g.add_node("n", lambda s: {"count": s.count + 1})
    g.add_edge(START, "n")
    (start, _end) = driver.stream(g.compile(), {"name": "x"}, stream_mode="tasks")
    assert start["input"] == P(name="x", count=0)

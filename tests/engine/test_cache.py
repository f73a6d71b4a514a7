"""Caching node results: hits skip the node, keys, expiry, clearing, persistence."""

from __future__ import annotations

import asyncio
import operator
import threading
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from pydantic import BaseModel

from stepgraph.channels import EphemeralValue, LastValue
from stepgraph.checkpoint import (
    BaseCache,
    InMemoryCache,
    InMemorySaver,
    SerializationError,
    SqliteCache,
)
from stepgraph.engine import (
    END,
    START,
    CachePolicy,
    GraphBuildError,
    NodeBuilder,
    Pregel,
    RetryPolicy,
    Send,
    StateGraph,
)
from stepgraph.engine.testing import FakeClock


class S(TypedDict):
    n: int
    items: Annotated[list[str], operator.add]


class Counter:
    """A node that counts its calls and reports the input it saw."""

    def __init__(self, name: str = "a") -> None:
        self.name = name
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, state: Any) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
        return {"items": [f"{self.name}{state['n']}"]}


def graph(
    node: Any, cache: BaseCache | None, policy: CachePolicy | None = None, **compile_kw: Any
) -> Any:
    g = StateGraph(S)
    g.add_node("a", node, cache_policy=policy or CachePolicy())
    g.add_edge(START, "a")
    return g.compile(cache=cache, **compile_kw)


def test_a_hit_skips_the_node_and_is_marked(driver: Any) -> None:
    node = Counter()
    g = graph(node, InMemoryCache())
    first = driver.stream(g, {"n": 1, "items": []}, stream_mode="updates")
    second = driver.stream(g, {"n": 1, "items": []}, stream_mode="updates")
    assert node.calls == 1
    assert first == [{"a": {"items": ["a1"]}}]
    assert second == [{"a": {"items": ["a1"]}, "__metadata__": {"cached": True}}]
    assert driver.invoke(g, {"n": 1, "items": ["x"]}) == {"n": 1, "items": ["x", "a1"]}
    assert node.calls == 2  # a different input: items differ


def test_different_inputs_miss(driver: Any) -> None:
    node = Counter()
    g = graph(node, InMemoryCache())
    for n in (1, 2, 1, 2, 3):
        driver.invoke(g, {"n": n, "items": []})
    assert node.calls == 3


def test_entries_expire_after_their_ttl(driver: Any) -> None:
    clock = FakeClock(start=1000.0)
    node = Counter()
    g = graph(node, InMemoryCache(clock=clock), CachePolicy(ttl=10))
    driver.invoke(g, {"n": 1, "items": []})
    clock.advance(9.9)
    driver.invoke(g, {"n": 1, "items": []})
    assert node.calls == 1
    clock.advance(0.2)
    driver.invoke(g, {"n": 1, "items": []})
    assert node.calls == 2


def test_clear_cache_drops_the_graph_entries(driver: Any) -> None:
    a, b = Counter("a"), Counter("b")
    gr = StateGraph(S)
    gr.add_node("a", a, cache_policy=CachePolicy())
    gr.add_node("b", b, cache_policy=CachePolicy())
    gr.add_edge(START, "a")
    gr.add_edge("a", "b")
    g = gr.compile(cache=InMemoryCache())
    inp = {"n": 1, "items": []}
    driver.invoke(g, inp)
    driver.invoke(g, inp)
    assert (a.calls, b.calls) == (1, 1)
    g.clear_cache(["b"])
    driver.invoke(g, inp)
    assert (a.calls, b.calls) == (1, 2)
    g.clear_cache()
    driver.invoke(g, inp)
    assert (a.calls, b.calls) == (2, 3)


def test_clear_cache_checks_its_arguments() -> None:
    g = graph(Counter(), InMemoryCache())
    with pytest.raises(ValueError, match=r"unknown node\(s\) \['nope'\]"):
        g.clear_cache(["nope"])
    plain = StateGraph(S)
    plain.add_node("a", Counter())
    plain.add_edge(START, "a")
    with pytest.raises(ValueError, match="no cache"):
        plain.compile().clear_cache()


def test_aclear_cache() -> None:
    node = Counter()
    g = graph(node, InMemoryCache())

    async def main() -> None:
        await g.ainvoke({"n": 1, "items": []})
        await g.aclear_cache(["a"])
        await g.ainvoke({"n": 1, "items": []})
        await g.ainvoke({"n": 1, "items": []})

    asyncio.run(main())
    assert node.calls == 2


def test_a_cache_policy_needs_a_cache() -> None:
    with pytest.raises(GraphBuildError, match=r"pass one: compile\(cache=InMemoryCache\(\)\)"):
        graph(Counter(), None)
    with pytest.raises(GraphBuildError, match=r"cache must be a stepgraph\.checkpoint\.BaseCache"):
        graph(Counter(), {})  # type: ignore[arg-type]


def test_a_custom_key_func_decides_what_is_equal(driver: Any) -> None:
    node = Counter()
    g = graph(node, InMemoryCache(), CachePolicy(key_func=lambda s: str(s["n"] % 2)))
    results = [driver.invoke(g, {"n": n, "items": []})["items"] for n in (1, 3, 2)]
    assert results == [["a1"], ["a1"], ["a2"]]  # 3 reused the result cached for 1
    assert node.calls == 2


def test_a_key_func_must_return_str_or_bytes(driver: Any) -> None:
    g = graph(Counter(), InMemoryCache(), CachePolicy(key_func=lambda s: s["n"]))
    with pytest.raises(TypeError, match="key_func of node 'a' returned int"):
        driver.invoke(g, {"n": 1, "items": []})
    g = graph(Counter(), InMemoryCache(), CachePolicy(key_func=lambda s: b"same"))
    driver.invoke(g, {"n": 1, "items": []})


class Opaque:
    pass


class Loose(TypedDict):
    thing: Any
    items: Annotated[list[str], operator.add]


def test_input_the_serializer_cannot_key_needs_a_key_func(driver: Any) -> None:
    calls = []
    g = StateGraph(Loose)
    g.add_node("a", lambda s: calls.append(1) or {"items": ["a"]}, cache_policy=CachePolicy())
    g.add_edge(START, "a")
    compiled = g.compile(cache=InMemoryCache())
    with pytest.raises(SerializationError) as info:
        driver.invoke(compiled, {"thing": Opaque(), "items": []})
    text = str(info.value)
    assert "cache key of node 'a'" in text and "key_func" in text and "input.thing" in text
    assert calls == []


def test_a_hit_needs_no_retries(driver: Any) -> None:
    node = Counter()
    g = StateGraph(S)
    g.add_node("a", node, cache_policy=CachePolicy(), retry_policy=RetryPolicy(jitter=False))
    g.add_edge(START, "a")
    compiled = g.compile(cache=InMemoryCache())
    driver.invoke(compiled, {"n": 1, "items": []})
    assert driver.invoke(compiled, {"n": 1, "items": []}) == {"n": 1, "items": ["a1"]}
    assert node.calls == 1


def test_failures_are_not_cached(driver: Any) -> None:
    calls = []

    def fails_once(state: S) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first")
        return {"items": ["ok"]}

    g = graph(fails_once, InMemoryCache())
    with pytest.raises(ValueError):
        driver.invoke(g, {"n": 1, "items": []})
    assert driver.invoke(g, {"n": 1, "items": []})["items"] == ["ok"]
    assert driver.invoke(g, {"n": 1, "items": []})["items"] == ["ok"]
    assert len(calls) == 2


def test_cached_writes_keep_their_routing(driver: Any) -> None:
    calls = []

    def pick(state: S) -> Any:
        calls.append(1)
        return {"items": ["pick"]}

    g = StateGraph(S)
    g.add_node("pick", pick, cache_policy=CachePolicy())
    g.add_node("left", lambda s: {"items": ["left"]})
    g.add_node("right", lambda s: {"items": ["right"]})
    g.add_edge(START, "pick")
    g.add_conditional_edges("pick", lambda s: "left" if s["n"] else "right", ["left", "right"])
    g.add_edge("left", END)
    compiled = g.compile(cache=InMemoryCache())
    for _ in range(2):
        assert driver.invoke(compiled, {"n": 1, "items": []})["items"] == ["pick", "left"]
    assert len(calls) == 1


def test_send_tasks_are_cached_per_argument(driver: Any) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> dict[str, Any]:
        with lock:
            seen.append(n)
        return {"items": [f"w{n}"]}

    g = StateGraph(S)
    g.add_node("fan", lambda s: None)
    g.add_node("worker", worker, cache_policy=CachePolicy())
    g.add_edge(START, "fan")
    g.add_conditional_edges("fan", lambda s: [Send("worker", n) for n in (1, 2, 1)], ["worker"])
    compiled = g.compile(cache=InMemoryCache())
    driver.invoke(compiled, {"n": 0, "items": []})
    # The two 1s run at the same time: the second may or may not find the first's entry.
    assert sorted(set(seen)) == [1, 2] and len(seen) in (2, 3)
    before = len(seen)
    out = driver.invoke(compiled, {"n": 0, "items": []})
    assert sorted(out["items"]) == ["w1", "w1", "w2"]
    assert len(seen) == before


def test_with_a_checkpointer_cached_writes_are_saved(driver: Any) -> None:
    node = Counter()
    g = graph(node, InMemoryCache(), checkpointer=InMemorySaver())
    for thread in ("t1", "t2"):
        config = {"configurable": {"thread_id": thread}}
        driver.invoke(g, {"n": 1, "items": []}, config)
        assert g.get_state(config).values == {"n": 1, "items": ["a1"]}
    assert node.calls == 1


def test_a_sqlite_cache_outlives_the_process_objects(driver: Any, tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    node = Counter()
    with SqliteCache(path) as cache:
        driver.invoke(graph(node, cache), {"n": 1, "items": []})
    with SqliteCache(path) as cache:
        out = driver.stream(graph(node, cache), {"n": 1, "items": []}, stream_mode="updates")
    assert out == [{"a": {"items": ["a1"]}, "__metadata__": {"cached": True}}]
    assert node.calls == 1


class Model(BaseModel):
    n: int
    label: str = ""


def test_pydantic_state_is_keyed_and_cached(driver: Any) -> None:
    calls = []

    def label(state: Model) -> dict[str, Any]:
        calls.append(state.n)
        return {"label": f"#{state.n}"}

    g = StateGraph(Model)
    g.add_node("labeller", label, cache_policy=CachePolicy())
    g.add_edge(START, "labeller")
    compiled = g.compile(cache=InMemoryCache())
    assert driver.invoke(compiled, {"n": 4}) == driver.invoke(compiled, {"n": 4})
    assert calls == [4]


def test_low_level_graphs_cache_too(driver: Any) -> None:
    calls = []

    def double(x: int) -> int:
        calls.append(x)
        return x * 2

    node = NodeBuilder().subscribe_only("a").do(double).write_to("b")
    g = Pregel(
        nodes={"double": node.add_cache_policy(CachePolicy())},
        channels={"a": EphemeralValue(int), "b": LastValue(int)},
        input_channels="a",
        output_channels="b",
        cache=InMemoryCache(),
    )
    assert [driver.invoke(g, x) for x in (3, 3, 4)] == [6, 6, 8]
    assert calls == [3, 4]
    with pytest.raises(GraphBuildError, match="have a cache_policy but the graph has no cache"):
        Pregel(
            nodes={"double": node},
            channels={"a": EphemeralValue(int), "b": LastValue(int)},
            input_channels="a",
            output_channels="b",
        )


calls: list[str] = []


def first_fn(state: S) -> dict[str, Any]:
    calls.append("first")
    return {"items": ["first"]}


def second_fn(state: S) -> dict[str, Any]:
    calls.append("second")
    return {"items": ["second"]}


def test_entries_are_namespaced_by_function_and_node_name(driver: Any) -> None:
    calls.clear()
    cache = InMemoryCache()
    inp = {"n": 1, "items": []}
    outputs = [
        driver.invoke(graph(first_fn, cache), inp)["items"],
        driver.invoke(graph(second_fn, cache), inp)["items"],  # same name, other function
        driver.invoke(graph(first_fn, cache), inp)["items"],  # a hit
    ]
    g = StateGraph(S)
    g.add_node("other", first_fn, cache_policy=CachePolicy())  # same function, other name
    g.add_edge(START, "other")
    outputs.append(driver.invoke(g.compile(cache=cache), inp)["items"])
    assert outputs == [["first"], ["second"], ["first"], ["first"]]
    assert calls == ["first", "second", "first"]
    assert len(cache) == 3
    graph(first_fn, cache).clear_cache()  # only that graph's node 'a' of first_fn
    assert len(cache) == 2

"""Retries and timeouts: which errors are retried, how long runs wait, what is kept."""

from __future__ import annotations

import asyncio
import operator
import sys
import threading
import types
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import pytest

from stepgraph.checkpoint import InMemorySaver
from stepgraph.engine import (
    END,
    START,
    GraphBuildError,
    NodeTimeoutError,
    RetryPolicy,
    Send,
    StateGraph,
    default_retry_on,
    interrupt,
)
from stepgraph.engine.errors import GraphBubbleUp
from stepgraph.engine.testing import FakeClock


class S(TypedDict):
    items: Annotated[list[str], operator.add]


@pytest.fixture(autouse=True)
def clock() -> Iterator[FakeClock]:
    """Backoff sleeps on a fake clock: recorded, never waited for (both drivers)."""
    with FakeClock().install() as fake:
        yield fake


@pytest.fixture
def slept(clock: FakeClock) -> list[float]:
    """Every backoff wait, in order."""
    return clock.sleeps


class Flaky:
    """A node that raises ``errors[i]`` on call ``i`` and then succeeds."""

    def __init__(self, *errors: BaseException, name: str = "a") -> None:
        self.errors = list(errors)
        self.calls = 0
        self.name = name
        self.lock = threading.Lock()

    def __call__(self, state: Any) -> dict[str, list[str]]:
        with self.lock:
            self.calls += 1
            n = self.calls
        if n <= len(self.errors):
            raise self.errors[n - 1]
        return {"items": [self.name]}


def one_node(fn: Any, **node_kw: Any) -> Any:
    compile_kw = node_kw.pop("compile", {})
    g = StateGraph(S)
    g.add_node("a", fn, **node_kw)
    g.add_edge(START, "a")
    return g.compile(**compile_kw)


FAST = RetryPolicy(initial_interval=0.001, jitter=False)


def test_a_flaky_node_succeeds_on_the_third_attempt(driver: Any, slept: list[float]) -> None:
    node = Flaky(ConnectionError("1"), ConnectionError("2"))
    out = driver.invoke(one_node(node, retry_policy=FAST), {"items": []})
    assert out == {"items": ["a"]}
    assert node.calls == 3
    assert slept == [0.001, 0.002]


def test_without_a_policy_nothing_is_retried(driver: Any, slept: list[float]) -> None:
    node = Flaky(ConnectionError("down"))
    with pytest.raises(ConnectionError, match="down"):
        driver.invoke(one_node(node), {"items": []})
    assert node.calls == 1 and slept == []


def test_backoff_grows_by_the_factor_up_to_the_cap(driver: Any, slept: list[float]) -> None:
    policy = RetryPolicy(
        initial_interval=1.0, backoff_factor=3.0, max_interval=5.0, max_attempts=5, jitter=False
    )
    node = Flaky(*[ConnectionError(str(i)) for i in range(5)])
    with pytest.raises(ConnectionError):
        driver.invoke(one_node(node, retry_policy=policy), {"items": []})
    assert slept == [1.0, 3.0, 5.0, 5.0]
    assert node.calls == 5


def test_jitter_adds_the_random_draw_to_each_wait(driver: Any) -> None:
    policy = RetryPolicy(initial_interval=0.5, max_attempts=3)
    node = Flaky(ConnectionError(), ConnectionError())
    with FakeClock().install(jitter=0.25) as clock:
        driver.invoke(one_node(node, retry_policy=policy), {"items": []})
    assert clock.sleeps == [0.75, 1.25]


def test_jitter_stays_within_one_second() -> None:
    policy = RetryPolicy(initial_interval=0.5, max_interval=1.0)
    waits = [policy.interval(k) for k in (1, 2, 3) for _ in range(200)]
    assert all(0.5 <= w < 2.0 for w in waits)
    assert all(w >= 1.0 for w in waits[200:])  # capped base 1.0, plus jitter
    assert len(set(waits)) > 100  # really random
    assert RetryPolicy(initial_interval=0.5, jitter=False).interval(1) == 0.5


class Transient(Exception):
    pass


class Other(Exception):
    pass


@pytest.mark.parametrize(
    "retry_on",
    [
        Transient,
        (Transient, KeyError),
        [KeyError, Transient],
        lambda exc: isinstance(exc, Transient),
    ],
    ids=["class", "tuple", "list", "predicate"],
)
def test_retry_on_forms(driver: Any, retry_on: Any) -> None:
    policy = FAST._replace(retry_on=retry_on)
    accepted = Flaky(Transient())
    assert driver.invoke(one_node(accepted, retry_policy=policy), {"items": []}) == {"items": ["a"]}
    assert accepted.calls == 2
    refused = Flaky(Other())
    with pytest.raises(Other):
        driver.invoke(one_node(refused, retry_policy=policy), {"items": []})
    assert refused.calls == 1


@pytest.mark.parametrize(
    "error", [ValueError("bad"), KeyError("k"), TimeoutError(), RuntimeError()]
)
def test_the_default_policy_fails_at_once_on_bugs(
    driver: Any, slept: list[float], error: Exception
) -> None:
    node = Flaky(error)
    with pytest.raises(type(error)) as info:
        driver.invoke(one_node(node, retry_policy=FAST), {"items": []})
    assert node.calls == 1 and slept == []
    assert any("was not retried" in n for n in info.value.__notes__)


def test_the_last_error_is_raised_with_a_note(driver: Any) -> None:
    node = Flaky(*[ConnectionError(f"attempt {i}") for i in (1, 2, 3)])
    with pytest.raises(ConnectionError, match="attempt 3") as info:
        driver.invoke(one_node(node, retry_policy=FAST), {"items": []})
    notes = "\n".join(info.value.__notes__)
    assert "node 'a' failed 3 time(s)" in notes
    assert "RetryPolicy(initial_interval=0.001" in notes and "max_attempts=3" in notes
    assert "retry_on=default_retry_on" in notes


def test_a_retried_attempt_starts_clean(driver: Any) -> None:
    # The state writer records the node's write before the conditional edge fails:
    # without clearing, every failed attempt would leave its write behind.
    route_calls = []

    def route(state: S) -> str:
        route_calls.append(1)
        if len(route_calls) <= 2:
            raise ConnectionError("router down")
        return END

    g = StateGraph(S)
    g.add_node("a", lambda s: {"items": ["a"]}, retry_policy=FAST)
    g.add_edge(START, "a")
    g.add_conditional_edges("a", route)
    assert driver.invoke(g.compile(), {"items": []}) == {"items": ["a"]}
    assert len(route_calls) == 3


def test_control_signals_are_never_retried(driver: Any) -> None:
    class Halt(GraphBubbleUp):
        pass

    node = Flaky(Halt())
    policy = FAST._replace(retry_on=lambda exc: True)
    with pytest.raises(Halt):
        driver.invoke(one_node(node, retry_policy=policy), {"items": []})
    assert node.calls == 1


def test_an_interrupt_is_not_retried(driver: Any) -> None:
    calls = []

    def ask(state: S) -> dict[str, list[str]]:
        calls.append(1)
        return {"items": [interrupt("name?")]}

    graph = one_node(
        ask,
        retry_policy=FAST._replace(retry_on=lambda exc: True),
        compile={"checkpointer": InMemorySaver()},
    )
    chunks = driver.stream(graph, {"items": []}, {"configurable": {"thread_id": "t"}})
    assert "__interrupt__" in chunks[-1]
    assert len(calls) == 1


def test_a_node_policy_wins_over_the_graph_default(driver: Any) -> None:
    default = FAST._replace(max_attempts=2)
    plain = Flaky(*[ConnectionError()] * 5)
    with pytest.raises(ConnectionError):
        driver.invoke(one_node(plain, compile={"retry_policy": default}), {"items": []})
    assert plain.calls == 2

    own = Flaky(*[ConnectionError()] * 5)
    graph = one_node(
        own, retry_policy=FAST._replace(max_attempts=4), compile={"retry_policy": default}
    )
    with pytest.raises(ConnectionError):
        driver.invoke(graph, {"items": []})
    assert own.calls == 4


def test_of_several_policies_the_first_that_matches_decides(driver: Any) -> None:
    policies = [
        FAST._replace(max_attempts=2, retry_on=Transient),
        FAST._replace(max_attempts=4, retry_on=ConnectionError),
    ]
    node = Flaky(*[Transient()] * 5)
    with pytest.raises(Transient):
        driver.invoke(one_node(node, retry_policy=policies), {"items": []})
    assert node.calls == 2
    node = Flaky(*[ConnectionError()] * 5)
    with pytest.raises(ConnectionError):
        driver.invoke(one_node(node, retry_policy=policies), {"items": []})
    assert node.calls == 4


def test_send_tasks_use_the_target_node_policy(driver: Any) -> None:
    calls: dict[int, int] = {}
    lock = threading.Lock()

    def worker(n: int) -> dict[str, list[str]]:
        with lock:
            calls[n] = calls.get(n, 0) + 1
            first = calls[n] == 1
        if first:
            raise ConnectionError(f"worker {n}")
        return {"items": [f"w{n}"]}

    g = StateGraph(S)
    g.add_node("fan", lambda s: None)
    g.add_node("worker", worker, retry_policy=FAST)
    g.add_edge(START, "fan")
    g.add_conditional_edges("fan", lambda s: [Send("worker", n) for n in (1, 2, 3)], ["worker"])
    out = driver.invoke(g.compile(), {"items": []})
    assert sorted(out["items"]) == ["w1", "w2", "w3"]
    assert calls == {1: 2, 2: 2, 3: 2}


def test_attempts_show_in_the_tasks_and_debug_streams(driver: Any) -> None:
    node = Flaky(ConnectionError("1"), ConnectionError("2"))
    chunks = driver.stream(
        one_node(node, retry_policy=FAST), {"items": []}, stream_mode=["tasks", "debug"]
    )
    tasks = [p for mode, p in chunks if mode == "tasks"]
    assert [("attempt" in p, "result" in p, "input" in p) for p in tasks] == [
        (False, False, True),
        (True, False, False),
        (True, False, False),
        (False, True, False),
    ]
    assert [(p["attempt"], p["retry_in"], str(p["error"])) for p in tasks[1:3]] == [
        (1, 0.001, "1"),
        (2, 0.002, "2"),
    ]
    assert tasks[1]["id"] == tasks[0]["id"] and tasks[1]["name"] == "a"
    debug = [p for mode, p in chunks if mode == "debug"]
    assert [d["type"] for d in debug] == ["task", "task_retry", "task_retry", "task_result"]
    assert debug[1]["payload"] == tasks[1] and debug[1]["step"] == 1


def test_retry_chunks_arrive_from_parallel_tasks_too(driver: Any) -> None:
    a, b = Flaky(ConnectionError(), name="a"), Flaky(name="b")
    g = StateGraph(S)
    g.add_node("a", a, retry_policy=FAST)
    g.add_node("b", b)
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    chunks = driver.stream(g.compile(), {"items": []}, stream_mode="tasks")
    retries = [c for c in chunks if "attempt" in c]
    assert [(c["name"], c["attempt"]) for c in retries] == [("a", 1)]


def test_retry_chunks_arrive_when_tasks_run_one_at_a_time(driver: Any) -> None:
    # max_concurrency=1 runs every task in the driver's thread, without the queue.
    a, b = Flaky(ConnectionError(), name="a"), Flaky(ConnectionError(), name="b")
    g = StateGraph(S)
    g.add_node("a", a, retry_policy=FAST)
    g.add_node("b", b, retry_policy=FAST)
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    chunks = driver.stream(g.compile(), {"items": []}, {"max_concurrency": 1}, stream_mode="tasks")
    retries = sorted((c["name"], c["attempt"]) for c in chunks if "attempt" in c)
    assert retries == [("a", 1), ("b", 1)]


def test_with_a_checkpointer_only_the_final_attempt_is_saved(driver: Any) -> None:
    route_calls = []

    def route(state: S) -> str:
        route_calls.append(1)
        if len(route_calls) == 1:
            raise ConnectionError("once")
        return END

    saver = InMemorySaver()
    g = StateGraph(S)
    g.add_node("a", lambda s: {"items": ["a"]}, retry_policy=FAST)
    g.add_edge(START, "a")
    g.add_conditional_edges("a", route)
    graph = g.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "t"}}
    assert driver.invoke(graph, {"items": []}, config) == {"items": ["a"]}
    assert graph.get_state(config).values == {"items": ["a"]}
    history = list(graph.get_state_history(config))
    assert [h.values for h in history] == [{"items": ["a"]}, {"items": []}, {"items": []}]


def test_a_task_that_keeps_failing_saves_only_its_last_error(driver: Any) -> None:
    saver = InMemorySaver()
    node = Flaky(*[ConnectionError(f"attempt {i}") for i in (1, 2, 3)])
    graph = one_node(node, retry_policy=FAST, compile={"checkpointer": saver})
    config = {"configurable": {"thread_id": "t"}}
    with pytest.raises(ConnectionError):
        driver.invoke(graph, {"items": []}, config)
    (task,) = graph.get_state(config).tasks
    assert "attempt 3" in str(task.error)


# -- default_retry_on -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConnectionError(), True),
        (ConnectionResetError(), True),
        (NodeTimeoutError(node="n", timeout=1.0), True),
        (Exception(), True),
        (Transient(), True),
        (TimeoutError(), False),
        (OSError(), False),
        (ValueError(), False),
        (TypeError(), False),
        (ZeroDivisionError(), False),
        (ImportError(), False),
        (KeyError(), False),
        (IndexError(), False),
        (NameError(), False),
        (SyntaxError(), False),
        (RuntimeError(), False),
        (NotImplementedError(), False),
        (ReferenceError(), False),
        (StopIteration(), False),
        (StopAsyncIteration(), False),
        (KeyboardInterrupt(), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_default_retry_on(error: BaseException, retried: bool) -> None:
    assert default_retry_on(error) is retried


def fake_http_modules(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    class Response:
        def __init__(self, status: int) -> None:
            self.status_code = status

    httpx = types.ModuleType("httpx")

    class HTTPStatusError(Exception):
        def __init__(self, status: int) -> None:
            self.response = Response(status)

    httpx.HTTPStatusError = HTTPStatusError  # type: ignore[attr-defined]
    requests = types.ModuleType("requests")

    class HTTPError(OSError):  # requests' errors are OSErrors, checked before them
        def __init__(self, status: int | None) -> None:
            self.response = None if status is None else Response(status)

    requests.HTTPError = HTTPError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "httpx", httpx)
    monkeypatch.setitem(sys.modules, "requests", requests)
    return HTTPStatusError, HTTPError


def test_http_errors_are_retried_on_5xx_only(monkeypatch: pytest.MonkeyPatch) -> None:
    status_error, http_error = fake_http_modules(monkeypatch)
    assert default_retry_on(status_error(503)) is True
    assert default_retry_on(status_error(404)) is False
    assert default_retry_on(http_error(500)) is True
    assert default_retry_on(http_error(429)) is False
    assert default_retry_on(http_error(None)) is True


def test_http_libraries_are_only_consulted_once_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    _, http_error = fake_http_modules(monkeypatch)
    monkeypatch.delitem(sys.modules, "requests")
    assert default_retry_on(http_error(500)) is False  # now just an OSError


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": 0}, "max_attempts must be an integer >= 1"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"initial_interval": -1}, "initial_interval must be a number of seconds >= 0"),
        ({"max_interval": float("inf")}, "max_interval"),
        ({"backoff_factor": 0.5}, "backoff_factor must be a number >= 1"),
        ({"jitter": "yes"}, "jitter must be True or False"),
        ({"retry_on": "ValueError"}, "retry_on must be"),
        ({"retry_on": [ValueError, "x"]}, "retry_on must be"),
        ({"retry_on": []}, "retry_on must be"),
    ],
)
def test_retry_policy_arguments_are_checked(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        RetryPolicy(**kwargs)


def test_replace_checks_like_the_constructor() -> None:
    assert FAST._replace(max_attempts=5).max_attempts == 5
    with pytest.raises(ValueError, match="max_attempts"):
        FAST._replace(max_attempts=0)


def test_a_policy_pickles() -> None:
    import pickle

    policy = RetryPolicy(max_attempts=7, retry_on=(ConnectionError, TimeoutError))
    assert pickle.loads(pickle.dumps(policy)) == policy


def test_retry_policy_has_langgraph_defaults() -> None:
    policy = RetryPolicy()
    assert policy == (0.5, 2.0, 128.0, 3, True, default_retry_on)
    assert policy._fields == (
        "initial_interval",
        "backoff_factor",
        "max_interval",
        "max_attempts",
        "jitter",
        "retry_on",
    )


def test_a_bad_graph_default_policy_is_a_build_problem() -> None:
    with pytest.raises(GraphBuildError, match=r"compile\(retry_policy=...\) must be a RetryPolicy"):
        one_node(Flaky(), compile={"retry_policy": 3})


# -- timeouts ---------------------------------------------------------------------------


class Slow:
    """An async node that hangs on its first ``hangs`` calls."""

    def __init__(self, hangs: int) -> None:
        self.hangs = hangs
        self.calls = 0
        self.cancelled = 0

    async def __call__(self, state: Any) -> dict[str, list[str]]:
        self.calls += 1
        if self.calls <= self.hangs:
            try:
                await asyncio.Event().wait()  # never set
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return {"items": ["done"]}


def run(graph: Any, *args: Any, **kw: Any) -> Any:
    return asyncio.run(graph.ainvoke(*args, **kw))


def test_an_async_node_past_its_timeout_is_cancelled() -> None:
    node = Slow(hangs=1)
    graph = one_node(node, timeout=0.02)
    with pytest.raises(NodeTimeoutError) as info:
        run(graph, {"items": []})
    err = info.value
    assert isinstance(err, TimeoutError)
    assert (err.node, err.timeout, err.step) == ("a", 0.02, 1)
    assert "did not finish within its timeout of 0.02 s" in str(err)
    assert node.cancelled == 1


def test_a_timed_out_attempt_is_retried(slept: list[float]) -> None:
    node = Slow(hangs=2)
    graph = one_node(node, timeout=0.02, retry_policy=FAST)
    assert run(graph, {"items": []}) == {"items": ["done"]}
    assert (node.calls, node.cancelled, slept) == (3, 2, [0.001, 0.002])


def test_a_timeout_error_the_node_raises_itself_stays_as_it_is() -> None:
    async def impatient(state: S) -> None:
        raise TimeoutError("my own")

    with pytest.raises(TimeoutError, match="my own") as info:
        run(one_node(impatient, timeout=5, retry_policy=FAST), {"items": []})
    assert not isinstance(info.value, NodeTimeoutError)


def test_a_fast_node_is_unaffected_by_its_timeout() -> None:
    assert run(one_node(Slow(hangs=0), timeout=5), {"items": []}) == {"items": ["done"]}


def test_a_sync_node_cannot_have_a_timeout() -> None:
    with pytest.raises(GraphBuildError, match="timeouts need async nodes") as info:
        one_node(lambda s: None, timeout=1.0)
    assert "a thread cannot be cancelled" in str(info.value)


@pytest.mark.parametrize("bad", [0, -1, "1", float("nan")])
def test_a_timeout_must_be_a_positive_number(bad: Any) -> None:
    with pytest.raises(GraphBuildError, match="timeout of node 'a' must be a positive number"):
        one_node(Slow(0), timeout=bad)


def test_the_sync_driver_refuses_a_timeout_it_cannot_enforce() -> None:
    sub = one_node(Slow(0))
    g = StateGraph(S)
    g.add_node("sub", sub, timeout=1.0)
    g.add_edge(START, "sub")
    with pytest.raises(TypeError, match="only the async driver can enforce"):
        g.compile().invoke({"items": []})


def test_a_subgraph_node_can_time_out() -> None:
    slow = Slow(hangs=1)
    g = StateGraph(S)
    g.add_node("sub", one_node(slow), timeout=0.02, retry_policy=FAST)
    g.add_edge(START, "sub")
    assert run(g.compile(), {"items": []}) == {"items": ["done"]}
    assert (slow.calls, slow.cancelled) == (2, 1)

"""The functional API: @task futures, @entrypoint graphs, saved results, determinism."""

from __future__ import annotations

import asyncio
import operator
import threading
import time
from collections import Counter
from typing import Annotated, Any, TypedDict

import pytest

from stepgraph.checkpoint import InMemorySaver, SqliteSaver
from stepgraph.engine import (
    START,
    Command,
    DeterminismError,
    Interrupt,
    StateGraph,
    TaskFuture,
    entrypoint,
    get_stream_writer,
    interrupt,
    task,
)


def thread(name: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


def test_an_entrypoint_is_a_graph_and_tasks_return_futures(driver: Any) -> None:
    @task
    def double(x: int) -> int:
        return 2 * x

    seen: list[Any] = []

    @entrypoint()
    def workflow(n: int) -> list[int]:
        futures = [double(i) for i in range(n)]
        seen.extend(futures)
        return [f.result() for f in futures]

    assert driver.invoke(workflow, 3) == [0, 2, 4]
    assert all(isinstance(f, TaskFuture) and f.done() for f in seen)
    assert workflow.name == "workflow"


def test_tasks_called_before_waiting_run_in_parallel() -> None:
    both = threading.Barrier(2, timeout=5)

    @task
    def meet(i: int) -> int:
        both.wait()  # deadlocks (and times out) unless the two calls run at once
        return i

    @entrypoint()
    def workflow(_: None) -> list[int]:
        first, second = meet(1), meet(2)
        return [first.result(), second.result()]

    assert workflow.invoke(0) == [1, 2]


def test_async_tasks_are_awaited_and_overlap() -> None:
    @task
    async def slow(x: int) -> int:
        await asyncio.sleep(0.2)
        return x + 1

    @entrypoint()
    async def workflow(n: int) -> list[int]:
        futures = [slow(i) for i in range(n)]
        return [await f for f in futures]

    start = time.perf_counter()
    assert asyncio.run(workflow.ainvoke(5)) == [1, 2, 3, 4, 5]
    assert time.perf_counter() - start < 0.9  # five 0.2 s tasks, at once


def test_calling_a_task_outside_a_workflow_is_a_clear_error() -> None:
    @task
    def alone(x: int) -> int:
        return x

    with pytest.raises(RuntimeError, match="outside a workflow"):
        alone(1)
    assert alone.func(1) == 1


def test_generators_and_bad_signatures_are_refused() -> None:
    with pytest.raises(TypeError, match="generator"):

        @task
        def gen(x: int) -> Any:
            yield x

    with pytest.raises(TypeError, match="first positional parameter"):

        @entrypoint()
        def nothing() -> None:
            return None

    with pytest.raises(TypeError, match="cannot be given"):

        @entrypoint()
        def strange(x: int, *, mystery: int) -> None:
            return None


def test_previous_and_final(driver: Any) -> None:
    @entrypoint(checkpointer=InMemorySaver())
    def counter(step: int, *, previous: Any = None) -> Any:
        total = (previous or 0) + step
        return entrypoint.final(value=f"total {total}", save=total)

    assert driver.invoke(counter, 1, thread("c")) == "total 1"
    assert driver.invoke(counter, 5, thread("c")) == "total 6"
    assert counter.get_state(thread("c")).values == "total 6"
    assert driver.invoke(counter, 1, thread("other")) == "total 1"


def test_a_failed_workflow_resumes_without_rerunning_finished_tasks(
    driver: Any, tmp_path: Any
) -> None:
    calls: Counter[str] = Counter()
    flaky = [True]

    @task
    def fetch(x: int) -> int:
        calls["fetch"] += 1
        return x + 1

    @task
    def store(x: int) -> int:
        calls["store"] += 1
        if flaky[0]:
            raise ConnectionError("database away")
        return x * 10

    @entrypoint(checkpointer=SqliteSaver(tmp_path / "wf.db"))
    def workflow(x: int) -> int:
        return store(fetch(x).result()).result()

    with pytest.raises(ConnectionError):
        driver.invoke(workflow, 1, thread("w"))
    flaky[0] = False
    assert driver.invoke(workflow, None, thread("w")) == 20
    assert calls == Counter(fetch=1, store=2)


def test_interrupt_in_the_workflow_replays_saved_task_results(driver: Any) -> None:
    calls: Counter[str] = Counter()

    @task
    def write_draft(topic: str) -> str:
        calls["draft"] += 1
        return f"draft on {topic}"

    @entrypoint(checkpointer=InMemorySaver())
    def essay(topic: str) -> dict[str, Any]:
        draft = write_draft(topic).result()
        verdict = interrupt({"draft": draft, "question": "approve?"})
        return {"draft": draft, "approved": verdict}

    paused = driver.invoke(essay, "tides", thread("e"))
    [question] = paused["__interrupt__"]
    assert isinstance(question, Interrupt)
    assert question.value == {"draft": "draft on tides", "question": "approve?"}
    assert essay.get_state(thread("e")).next == ("essay",)
    done = driver.invoke(essay, Command(resume=True), thread("e"))
    assert done == {"draft": "draft on tides", "approved": True}
    assert calls["draft"] == 1


def test_interrupt_inside_a_task_is_answered_there(driver: Any) -> None:
    calls: Counter[str] = Counter()

    @task
    def ask(question: str) -> str:
        calls["ask"] += 1
        return str(interrupt(question))

    @task
    def before(x: int) -> int:
        calls["before"] += 1
        return x

    @entrypoint(checkpointer=InMemorySaver())
    def workflow(x: int) -> str:
        n = before(x).result()
        return f"{n}: {ask('name?').result()}"

    paused = driver.invoke(workflow, 7, thread("t"))
    assert [i.value for i in paused["__interrupt__"]] == ["name?"]
    assert driver.invoke(workflow, Command(resume="ada"), thread("t")) == "7: ada"
    assert calls == Counter(before=1, ask=2)


def test_a_changed_call_order_on_resume_is_a_determinism_error() -> None:
    which = ["first"]

    @task
    def step(name: str) -> str:
        return name

    @entrypoint(checkpointer=InMemorySaver())
    def workflow(_: int) -> str:
        got = step(which[0]).result()
        interrupt("continue?")
        return got

    workflow.invoke(0, thread("d"))
    which[0] = "second"
    with pytest.raises(DeterminismError) as info:
        workflow.invoke(Command(resume=True), thread("d"))
    err = info.value
    assert err.index == 0
    assert err.recorded[0] == "step" and err.new[0] == "step"
    assert "step('first')" in str(err) and "step('second')" in str(err)
    # The same call again resumes fine.
    which[0] = "first"
    assert workflow.invoke(Command(resume=True), thread("d")) == "first"


def test_a_different_task_at_a_position_is_a_determinism_error() -> None:
    flip = [False]

    @task
    def a() -> str:
        return "a"

    @task
    def b() -> str:
        return "b"

    @entrypoint(checkpointer=InMemorySaver())
    def workflow(_: int) -> str:
        got = (b if flip[0] else a)().result()
        interrupt("?")
        return got

    workflow.invoke(0, thread("x"))
    flip[0] = True
    with pytest.raises(DeterminismError, match="it was a\\(\\), now it is b\\(\\)"):
        workflow.invoke(Command(resume=1), thread("x"))


def test_task_results_stream_as_updates_and_custom_writes_work(driver: Any) -> None:
    @task
    def shout(word: str) -> str:
        get_stream_writer()(f"shouting {word}")
        return word.upper()

    @entrypoint()
    def workflow(words: list[str]) -> str:
        return " ".join(f.result() for f in [shout(w) for w in words])

    chunks = driver.stream(workflow, ["a", "b"], stream_mode=["updates", "custom"])
    updates = [c[1] for c in chunks if c[0] == "updates"]
    custom = sorted(c[1] for c in chunks if c[0] == "custom")
    assert sorted(map(str, updates[:-1])) == ["{'shout': 'A'}", "{'shout': 'B'}"]
    assert updates[-1] == {"workflow": "A B"}
    assert custom == ["shouting a", "shouting b"]


def test_task_errors_reach_the_caller_through_the_future() -> None:
    @task
    def boom() -> None:
        raise KeyError("missing")

    @entrypoint()
    def workflow(_: int) -> str:
        try:
            boom().result()
        except KeyError:
            return "handled"
        return "no error?"

    assert workflow.invoke(0) == "handled"


class SquaresState(TypedDict):
    out: Annotated[list[int], operator.add]


def test_tasks_inside_a_state_graph_node() -> None:
    @task
    def square(x: int) -> int:
        return x * x

    def node(state: SquaresState) -> dict[str, Any]:
        return {"out": [f.result() for f in [square(i) for i in range(4)]]}

    g = StateGraph(SquaresState)
    g.add_node(node)
    g.add_edge(START, "node")
    assert g.compile().invoke({"out": []}) == {"out": [0, 1, 4, 9]}


def test_history_of_an_entrypoint() -> None:
    @entrypoint(checkpointer=InMemorySaver())
    def echo(x: str) -> str:
        return x

    echo.invoke("one", thread("h"))
    echo.invoke("two", thread("h"))
    history = list(echo.get_state_history(thread("h")))
    assert [s.values for s in history][:1] == ["two"]
    assert {s.metadata["source"] for s in history} == {"input", "loop"}


def test_a_task_retry_policy_retries_only_the_failing_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stepgraph.engine import RetryPolicy, _policy

    waits: list[float] = []
    monkeypatch.setattr(_policy, "_sleep", waits.append)
    calls: Counter[str] = Counter()

    @task(retry_policy=RetryPolicy(initial_interval=0.01, jitter=False, max_attempts=3))
    def flaky(x: int) -> int:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError("try again")
        return x

    @task
    def steady(x: int) -> int:
        calls["steady"] += 1
        return x

    @entrypoint()
    def workflow(x: int) -> int:
        return steady(x).result() + flaky(x).result()

    assert workflow.invoke(2) == 4
    assert calls == Counter(flaky=3, steady=1)
    assert waits == [0.01, 0.02]


def test_a_task_that_keeps_failing_names_its_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    from stepgraph.engine import RetryPolicy, _policy

    monkeypatch.setattr(_policy, "_sleep", lambda s: None)

    @task(retry_policy=RetryPolicy(max_attempts=2, jitter=False))
    def down() -> None:
        raise ConnectionError("down")

    @entrypoint()
    def workflow(_: int) -> None:
        down().result()

    with pytest.raises(ConnectionError) as info:
        workflow.invoke(0)
    assert any("'down' failed 2 time(s)" in note for note in info.value.__notes__)


def test_a_task_cache_policy_skips_calls_seen_before() -> None:
    from stepgraph.checkpoint import InMemoryCache
    from stepgraph.engine import CachePolicy

    calls: Counter[int] = Counter()

    @task(cache_policy=CachePolicy())
    def expensive(x: int) -> int:
        calls[x] += 1
        return x * x

    @entrypoint(cache=InMemoryCache())
    def workflow(xs: list[int]) -> list[int]:
        return [f.result() for f in [expensive(x) for x in xs]]

    assert workflow.invoke([1, 2]) == [1, 4]
    assert workflow.invoke([2, 3]) == [4, 9]
    assert calls == Counter({1: 1, 2: 1, 3: 1})


def test_task_retries_show_in_the_tasks_stream_and_cache_hits_in_updates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stepgraph.checkpoint import InMemoryCache
    from stepgraph.engine import CachePolicy, RetryPolicy, _policy

    monkeypatch.setattr(_policy, "_sleep", lambda s: None)
    failures = [1]

    @task(retry_policy=RetryPolicy(jitter=False), cache_policy=CachePolicy())
    def fetch(x: int) -> int:
        if failures[0]:
            failures[0] -= 1
            raise ConnectionError("blip")
        return x

    @entrypoint(cache=InMemoryCache())
    def workflow(x: int) -> int:
        return fetch(x).result()

    first = list(workflow.stream(1, stream_mode=["tasks", "updates"]))
    retries = [p for mode, p in first if mode == "tasks" and "retry_in" in p]
    assert [(r["name"], r["attempt"], r["retry_in"]) for r in retries] == [("fetch", 1, 0.5)]
    again = list(workflow.stream(1, stream_mode="updates"))
    assert again[0] == {"fetch": 1, "__metadata__": {"cached": True}}


# -- found in review: each test names the defect it guards against -------------------


def test_a_task_that_asks_two_questions_gets_both_answers(driver: Any) -> None:
    @task
    def ask(prefix: str) -> tuple[Any, Any]:
        return interrupt(prefix + "1"), interrupt(prefix + "2")

    @entrypoint(checkpointer=InMemorySaver())
    def workflow(_: int) -> Any:
        return ask("q").result()

    first = driver.invoke(workflow, 1, thread("two"))
    assert [i.value for i in first["__interrupt__"]] == ["q1"]
    second = driver.invoke(workflow, Command(resume="A"), thread("two"))
    assert [i.value for i in second["__interrupt__"]] == ["q2"]
    assert driver.invoke(workflow, Command(resume="B"), thread("two")) == ("A", "B")


def test_an_encrypting_saver_does_not_break_the_determinism_check(tmp_path: Any) -> None:
    pytest.importorskip("cryptography")
    from stepgraph.checkpoint import AesGcmCipher, Serializer

    saver = SqliteSaver(tmp_path / "sealed.db", serde=Serializer(cipher=AesGcmCipher(b"k" * 32)))

    @task
    def fetch(x: int) -> int:
        return x

    @entrypoint(checkpointer=saver)
    def workflow(x: int) -> int:
        got = fetch(x).result()
        interrupt("ok?")
        return got

    workflow.invoke(2, thread("sealed"))
    assert workflow.invoke(Command(resume=True), thread("sealed")) == 2


def test_equal_arguments_hash_alike_whatever_their_order() -> None:
    from stepgraph.engine._policy import stable_bytes

    assert stable_bytes({"b", "a", "c"}) == stable_bytes({"c", "a", "b"})
    assert stable_bytes({"x": 1, "y": {2, 3}}) == stable_bytes({"y": {3, 2}, "x": 1})
    assert stable_bytes([1, (2,)]) != stable_bytes([1, [2]])  # tuples stay tuples


def test_a_retried_node_gets_its_finished_task_calls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stepgraph.engine import RetryPolicy, _policy

    monkeypatch.setattr(_policy, "_sleep", lambda s: None)
    calls: Counter[str] = Counter()

    @task
    def fetch(x: int) -> int:
        calls["fetch"] += 1
        return x

    def node(state: SquaresState) -> dict[str, Any]:
        calls["node"] += 1
        got = fetch(3).result()
        if calls["node"] == 1:
            raise ConnectionError("after the task")
        return {"out": [got]}

    g = StateGraph(SquaresState)
    g.add_node(node, retry_policy=RetryPolicy(jitter=False))
    g.add_edge(START, "node")
    graph = g.compile(checkpointer=InMemorySaver())
    updates = list(graph.stream({"out": []}, thread("retry"), stream_mode="updates"))
    assert calls == Counter(node=2, fetch=1)
    assert updates.count({"fetch": 3}) == 1


def test_task_calls_have_start_events_in_the_tasks_stream() -> None:
    @task
    def one(x: int) -> int:
        return x

    @entrypoint()
    def workflow(x: int) -> int:
        return one(x).result()

    events = [p for p in workflow.stream(5, stream_mode="tasks") if p["name"] == "one"]
    assert [("input" in e, "result" in e) for e in events] == [(True, False), (False, True)]
    assert events[0]["id"] == events[1]["id"]


def test_node_code_sees_its_attempt_number(monkeypatch: pytest.MonkeyPatch) -> None:
    from stepgraph.engine import RetryPolicy, _policy, get_runtime

    monkeypatch.setattr(_policy, "_sleep", lambda s: None)
    seen: list[int] = []

    def node(state: SquaresState) -> dict[str, Any]:
        seen.append(get_runtime().attempt)
        if len(seen) < 3:
            raise ConnectionError("again")
        return {"out": [len(seen)]}

    g = StateGraph(SquaresState)
    g.add_node(node, retry_policy=RetryPolicy(jitter=False))
    g.add_edge(START, "node")
    assert g.compile().invoke({"out": []}) == {"out": [3]}
    assert seen == [1, 2, 3]

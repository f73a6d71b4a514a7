"""Stepping through supersteps (graph.iter / graph.aiter) and stepgraph.engine.testing."""

from __future__ import annotations

import asyncio
import operator
import threading
from contextlib import aclosing
from typing import Annotated, Any, TypedDict

import pytest

from stepgraph.checkpoint import InMemoryCache, InMemorySaver
from stepgraph.engine import (
    END,
    START,
    CachePolicy,
    Command,
    RetryPolicy,
    Send,
    StateGraph,
    StepResult,
    StepTask,
    entrypoint,
    interrupt,
)
from stepgraph.engine.testing import (
    FakeClock,
    InlineExecutor,
    ShuffledExecutor,
    arun_steps,
    assert_state_after,
    assert_step_ran,
    run_steps,
)


class S(TypedDict):
    items: Annotated[list[str], operator.add]


def appender(name: str, log: list[str] | None = None) -> Any:
    def node(state: S) -> dict[str, list[str]]:
        if log is not None:
            log.append(name)
        return {"items": [name]}

    return node


def diamond(checkpointer: Any = None, **nodes: Any) -> Any:
    """START -> a, b (in parallel) -> c -> END."""
    g = StateGraph(S)
    for name in "abc":
        g.add_node(name, nodes.get(name) or appender(name))
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    g.add_edge(["a", "b"], "c")
    g.add_edge("c", END)
    return g.compile(checkpointer=checkpointer)


def thread(name: str = "t") -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


def collect(
    driver: Any,
    graph: Any,
    input: Any,
    config: Any = None,
    *,
    until: int | None = None,
    sink: list[StepResult] | None = None,
    **kw: Any,
) -> list[StepResult]:
    """graph.iter (sync) or graph.aiter (async) results; stop after step ``until``."""
    out: list[StepResult] = [] if sink is None else sink
    if driver.kind == "sync":
        for result in graph.iter(input, config, **kw):
            out.append(result)
            if until is not None and result.step >= until:
                break
        return out

    async def go() -> None:
        async with aclosing(graph.aiter(input, config, **kw)) as steps:
            async for result in steps:
                out.append(result)
                if until is not None and result.step >= until:
                    break

    asyncio.run(go())
    return out


# -- what a step result holds -------------------------------------------------------


def test_one_result_per_superstep(driver: Any) -> None:
    results = collect(driver, diamond(), {"items": []})
    assert [r.step for r in results] == [0, 1, 2]
    assert [r.nodes for r in results] == [("__start__",), ("a", "b"), ("c",)]
    assert [r.state for r in results] == [
        {"items": []},
        {"items": ["a", "b"]},
        {"items": ["a", "b", "c"]},
    ]
    assert [r.next for r in results] == [("a", "b"), ("c",), ()]
    assert all(r.checkpoint is None and r.interrupts == () for r in results)


def test_a_step_task_shows_its_input_triggers_writes_and_result(driver: Any) -> None:
    step1 = collect(driver, diamond(), {"items": ["x"]})[1]
    a = step1.task("a")
    assert isinstance(a, StepTask)
    assert a.input == {"items": ["x"]}
    assert a.triggers == ("branch:to:a",)
    assert ("items", ["a"]) in a.writes
    assert a.result == {"items": ["a"]}  # as the updates stream shows it
    assert (a.error, a.interrupts, a.cached, a.resumed) == (None, (), False, False)
    assert len(a.id) == 36 and a.id != step1.task("b").id
    assert "items" in step1.updated_channels
    with pytest.raises(KeyError, match="node 'c' did not run in step 1"):
        step1.task("c")


def test_task_ids_match_the_saved_history(driver: Any) -> None:
    graph = diamond(InMemorySaver())
    results = collect(driver, graph, {"items": []}, thread())
    for r in results:
        snapshot = graph.get_state(r.checkpoint)
        assert snapshot.config == r.checkpoint
        assert snapshot.values == r.state
        assert snapshot.next == r.next
    assert graph.get_state(thread()).config == results[-1].checkpoint
    # The tasks planned at step 0's checkpoint are the ones step 1 ran.
    planned = graph.get_state(results[0].checkpoint).tasks
    assert [t.id for t in planned] == [t.id for t in results[1].tasks]


def test_a_yielded_state_is_not_changed_by_later_steps(driver: Any) -> None:
    results = collect(driver, diamond(), {"items": []})
    results[1].state["items"].append("mine")
    assert results[1].state == {"items": ["a", "b", "mine"]}
    assert results[2].state == {"items": ["a", "b", "c"]}


def test_send_tasks_are_listed_in_path_order(driver: Any) -> None:
    g = StateGraph(S)
    g.add_node("work", lambda arg: {"items": [arg]})
    g.add_conditional_edges(START, lambda s: [Send("work", w) for w in ("x", "y", "z")])
    results = collect(driver, g.compile(), {"items": []})
    assert_step_ran(results, 1, ["work", "work", "work"])
    assert [t.input for t in results[1].tasks] == ["x", "y", "z"]
    assert [t.triggers for t in results[1].tasks] == [("__pregel_push",)] * 3
    assert_state_after(results, 1, {"items": ["x", "y", "z"]})


def test_the_functional_api_steps_too(driver: Any) -> None:
    @entrypoint()
    def double(x: int) -> int:
        return x * 2

    results = collect(driver, double, 21)
    assert [(r.step, r.nodes, r.state) for r in results] == [(0, ("double",), 42)]
    assert results[0].tasks[0].result == 42


def test_run_steps_and_arun_steps() -> None:
    graph = diamond()
    assert [r.nodes for r in run_steps(graph, {"items": []})] == [
        r.nodes for r in asyncio.run(arun_steps(graph, {"items": []}))
    ]


# -- stopping, changing the state, continuing ---------------------------------------


def test_breaking_out_leaves_a_resumable_checkpoint(driver: Any) -> None:
    log: list[str] = []
    graph = diamond(InMemorySaver(), c=appender("c", log))
    first = collect(driver, graph, {"items": []}, thread(), until=1)
    assert [r.step for r in first] == [0, 1] and log == []
    snapshot = graph.get_state(thread())
    assert snapshot.next == ("c",)
    assert snapshot.config == first[-1].checkpoint
    rest = collect(driver, graph, None, thread())
    assert [r.step for r in rest] == [2]  # the stored checkpoint is not a result
    assert rest[0].state == {"items": ["a", "b", "c"]} and log == ["c"]


def test_update_state_between_steps(driver: Any) -> None:
    graph = diamond(InMemorySaver())
    collect(driver, graph, {"items": []}, thread(), until=1)
    graph.update_state(thread(), {"items": ["edited"]}, as_node="b")
    rest = collect(driver, graph, None, thread())
    assert rest[-1].state == {"items": ["a", "b", "edited", "c"]}
    assert_step_ran(rest, rest[-1].step, {"c"})


def test_closing_the_generator_by_hand_also_saves() -> None:
    graph = diamond(InMemorySaver())
    steps = graph.iter({"items": []}, thread())
    assert next(steps).step == 0
    steps.close()
    assert graph.get_state(thread()).next == ("a", "b")
    assert run_steps(graph, None, thread())[-1].state == {"items": ["a", "b", "c"]}


# -- interrupts and breakpoints -----------------------------------------------------


def test_an_interrupt_ends_the_iteration_with_its_questions(driver: Any) -> None:
    def ask(state: S) -> dict[str, list[str]]:
        return {"items": [interrupt("ok?")]}

    graph = diamond(InMemorySaver(), b=ask)
    results = collect(driver, graph, {"items": []}, thread())
    last = results[-1]
    assert last.step == 1
    assert [i.value for i in last.interrupts] == ["ok?"]
    assert [i.value for i in last.task("b").interrupts] == ["ok?"]
    assert last.task("b").result is None and last.task("a").result == {"items": ["a"]}
    assert last.updated_channels == frozenset()
    assert last.state == {"items": []}  # nothing of the paused step is applied
    assert last.next == ("a", "b")

    resumed = collect(driver, graph, Command(resume="yes"), thread())
    assert resumed[0].step == 1
    assert resumed[0].task("a").resumed  # its writes were saved: it did not run again
    assert not resumed[0].task("b").resumed
    assert resumed[-1].state == {"items": ["a", "yes", "c"]}


def test_a_breakpoint_after_a_node_pauses_with_that_step(driver: Any) -> None:
    graph = diamond(InMemorySaver())
    results = collect(driver, graph, {"items": []}, thread(), interrupt_after=["a"])
    assert results[-1].step == 1
    assert results[-1].interrupts == () and results[-1].next == ("c",)
    assert collect(driver, graph, None, thread())[-1].state == {"items": ["a", "b", "c"]}


def test_a_breakpoint_before_a_node_ends_after_the_step_before(driver: Any) -> None:
    graph = diamond(InMemorySaver())
    results = collect(driver, graph, {"items": []}, thread(), interrupt_before=["c"])
    assert [r.step for r in results] == [0, 1] and results[-1].next == ("c",)
    assert [r.step for r in collect(driver, graph, None, thread())] == [2]


# -- failures -----------------------------------------------------------------------


class Breaks:
    def __init__(self) -> None:
        self.broken = True

    def __call__(self, state: S) -> dict[str, list[str]]:
        if self.broken:
            raise ValueError("b is broken")
        return {"items": ["b"]}


def test_a_failed_step_is_yielded_and_then_raised(driver: Any) -> None:
    b = Breaks()
    graph = diamond(InMemorySaver(), b=b)
    seen: list[StepResult] = []
    with pytest.raises(ValueError, match="b is broken"):
        collect(driver, graph, {"items": []}, thread(), sink=seen)
    failed = seen[-1]
    assert failed.step == 1
    assert isinstance(failed.task("b").error, ValueError)
    assert failed.errors == (failed.task("b").error,)
    assert failed.task("a").error is None and failed.task("a").result == {"items": ["a"]}
    assert failed.updated_channels == frozenset() and failed.state == {"items": []}
    assert failed.checkpoint == seen[0].checkpoint  # where a retry of the step starts

    b.broken = False
    again = collect(driver, graph, None, thread())
    assert again[0].step == 1 and again[0].task("a").resumed
    assert again[-1].state == {"items": ["a", "b", "c"]}


def test_without_a_checkpointer_a_failure_still_shows_its_step(driver: Any) -> None:
    seen: list[StepResult] = []
    with pytest.raises(ValueError):
        collect(driver, diamond(b=Breaks()), {"items": []}, sink=seen)
    assert [r.step for r in seen] == [0, 1] and seen[-1].checkpoint is None


def test_several_failures_are_yielded_then_raised_together(driver: Any) -> None:
    seen: list[StepResult] = []
    with pytest.raises(ExceptionGroup) as info:
        collect(driver, diamond(a=Breaks(), b=Breaks()), {"items": []}, sink=seen)
    assert len(info.value.exceptions) == 2
    assert [type(e) for e in seen[-1].errors] == [ValueError, ValueError]


def test_one_task_at_a_time(driver: Any) -> None:
    results = collect(driver, diamond(), {"items": []}, {"max_concurrency": 1})
    assert_step_ran(results, 1, {"a", "b"})
    assert_state_after(results, 2, {"items": ["a", "b", "c"]})


# -- executors ----------------------------------------------------------------------


def test_the_inline_executor_runs_every_task_in_the_calling_thread() -> None:
    threads: list[int] = []
    order: list[str] = []

    def node(name: str) -> Any:
        def run(state: S) -> dict[str, list[str]]:
            threads.append(threading.get_ident())
            order.append(name)
            return {"items": [name]}

        return run

    graph = diamond(a=node("a"), b=node("b"), c=node("c"))
    executor = InlineExecutor()
    invoked, stepped = set(), set()
    for _ in range(5):
        assert graph.invoke({"items": []}, executor=executor) == {"items": ["a", "b", "c"]}
        invoked.add(tuple(order))
        order.clear()
        run_steps(graph, {"items": []}, executor=executor)
        stepped.add(tuple(order))
        order.clear()
    assert set(threads) == {threading.get_ident()}
    # One fixed order per run method (invoke runs the first task itself, after
    # submitting the others; iter submits them all).
    assert len(invoked) == len(stepped) == 1
    assert stepped == {("a", "b", "c")}
    assert executor.submitted > 0


def test_the_inline_executor_reports_errors_through_its_futures() -> None:
    executor = InlineExecutor()
    future = executor.submit(operator.truediv, 1, 0)
    assert isinstance(future.exception(), ZeroDivisionError)
    assert executor.submit(operator.add, 1, 2).result() == 3
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(print)


def fan_out_graph() -> Any:
    """Ten parallel workers appending to one list, then a node that reads the order."""

    def work(arg: int) -> dict[str, list[str]]:
        return {"items": [f"w{arg}"]}

    g = StateGraph(S)
    g.add_node("work", work)
    g.add_node("x", appender("x"))
    g.add_node("y", appender("y"))
    g.add_node("join", lambda s: {"items": ["|".join(s["items"])]})
    g.add_conditional_edges(START, lambda s: [Send("work", i) for i in range(10)])
    g.add_edge(START, "x")
    g.add_edge(START, "y")
    g.add_edge(["work", "x", "y"], "join")
    return g.compile()


def test_the_state_does_not_depend_on_completion_order() -> None:
    # Writes apply in task-path order, never in completion order: whatever order the
    # shuffled executor finishes tasks in, every run ends in the same state.
    graph = fan_out_graph()
    expected = graph.invoke({"items": []}, executor=InlineExecutor())
    for seed in range(20):
        executor = ShuffledExecutor(seed)
        assert graph.invoke({"items": []}, executor=executor) == expected, seed
        results = run_steps(graph, {"items": []}, executor=ShuffledExecutor(seed))
        assert results[-1].state == expected, seed
        executor.shutdown()


def test_the_shuffled_executor_draws_its_delays_from_the_seed() -> None:
    def delays(seed: int) -> list[float]:
        executor = ShuffledExecutor(seed, max_delay=0.0001)
        futures = [executor.submit(operator.mul, i, 2) for i in range(5)]
        assert [f.result() for f in futures] == [0, 2, 4, 6, 8]
        executor.shutdown()
        return executor.delays

    assert delays(1) == delays(1) != delays(2)
    assert all(0 <= d < 0.0001 for d in delays(3))
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor = ShuffledExecutor(0)
        executor.shutdown()
        executor.submit(print)


# -- the fake clock -----------------------------------------------------------------


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, state: S) -> dict[str, list[str]]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls}")
        return {"items": ["ok"]}


def test_retries_sleep_on_the_fake_clock(driver: Any) -> None:
    g = StateGraph(S)
    node = Flaky(2)
    g.add_node("a", node, retry_policy=RetryPolicy(initial_interval=30.0, jitter=False))
    g.add_edge(START, "a")
    clock = FakeClock(start=100.0)
    with clock.install():
        results = collect(driver, g.compile(), {"items": []})
    assert clock.sleeps == [30.0, 60.0]  # recorded, never waited for
    assert clock.now() == 190.0
    assert node.calls == 3 and results[-1].state == {"items": ["ok"]}


def test_the_fake_clock_fixes_the_jitter_and_restores_the_hooks() -> None:
    from stepgraph.engine import _policy

    before = (_policy._sleep, _policy._asleep, _policy._random)
    policy = RetryPolicy(initial_interval=1.0)
    with FakeClock().install(jitter=0.5):
        assert policy.interval(1) == 1.5
    with FakeClock().install():
        draws = [policy.interval(1) for _ in range(3)]
    with FakeClock().install():
        assert [policy.interval(1) for _ in range(3)] == draws  # seeded: repeatable
    assert (_policy._sleep, _policy._asleep, _policy._random) == before
    with pytest.raises(ValueError, match="jitter must be in"), FakeClock().install(jitter=1.0):
        pass


def test_the_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock()
    assert clock() == clock.now() == 0.0
    assert clock.advance(5) == 5.0
    clock.sleep(1.5)
    asyncio.run(clock.asleep(0.5))
    assert (clock.now(), clock.sleeps) == (7.0, [1.5, 0.5])
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)


def test_cache_ttl_on_the_fake_clock(driver: Any) -> None:
    calls: list[int] = []

    def node(state: S) -> dict[str, list[str]]:
        calls.append(1)
        return {"items": ["a"]}

    clock = FakeClock()
    g = StateGraph(S)
    g.add_node("a", node, cache_policy=CachePolicy(ttl=60))
    g.add_edge(START, "a")
    graph = g.compile(cache=InMemoryCache(clock=clock))
    collect(driver, graph, {"items": []})
    clock.advance(59)
    hit = collect(driver, graph, {"items": []})
    assert hit[-1].task("a").cached and len(calls) == 1
    clock.advance(2)
    miss = collect(driver, graph, {"items": []})
    assert not miss[-1].task("a").cached and len(calls) == 2


# -- assertion helpers --------------------------------------------------------------


def test_assertion_helpers_pass_and_explain_their_failures() -> None:
    results = run_steps(diamond(), {"items": []})
    assert_step_ran(results, 1, {"a", "b"})
    assert_step_ran(results, 2, ["c"])
    assert_state_after(results, 2, {"items": ["a", "b", "c"]})

    with pytest.raises(AssertionError) as info:
        assert_step_ran(results, 1, {"a", "c"})
    message = str(info.value)
    assert "step 1 ran ['a', 'b'], expected ['a', 'c'] (missing ['c']; unexpected ['b'])" in message
    assert "step 0: __start__\n  step 1: a, b\n  step 2: c" in message

    with pytest.raises(AssertionError, match="different counts"):
        assert_step_ran(results, 1, ["a", "a", "b"])
    with pytest.raises(AssertionError, match="there is no step 7"):
        assert_step_ran(results, 7, {"a"})
    with pytest.raises(AssertionError) as info:
        assert_state_after(results, 1, {"items": ["b", "a"], "other": 1})
    message = str(info.value)
    assert "keys that differ (actual != expected)" in message
    assert "'items': ['a', 'b'] != ['b', 'a']" in message
    assert "'other': '<missing>' != 1" in message

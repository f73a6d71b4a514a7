"""The instrument hooks, and OpenTelemetry spans built on them."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest

from stepgraph.checkpoint import InMemorySaver
from stepgraph.engine import (
    START,
    Command,
    Instrument,
    RetryPolicy,
    RunInfo,
    StateGraph,
    install,
    interrupt,
    uninstall,
)


class State(TypedDict):
    log: Annotated[list[str], operator.add]


class Recorder(Instrument):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def run_start(self, run: RunInfo) -> None:
        self.events.append(("run_start", run.namespace))

    def run_end(self, run: RunInfo, error: BaseException | None) -> None:
        self.events.append(("run_end", run.namespace, type(error).__name__ if error else None))

    def step_start(self, run: RunInfo, step: int, tasks: Any) -> None:
        self.events.append(("step_start", step, tuple(t.name for t in tasks)))

    def step_end(self, run: RunInfo, step: int, error: BaseException | None) -> None:
        self.events.append(("step_end", step, type(error).__name__ if error else None))

    def task_start(self, run: RunInfo, task: Any) -> None:
        self.events.append(("task_start", task.name))

    def task_end(self, run: RunInfo, task: Any, error: BaseException | None) -> None:
        self.events.append(("task_end", task.name, type(error).__name__ if error else None))

    def task_retry(self, run: RunInfo, task: Any, error: Any, attempt: int, delay: float) -> None:
        self.events.append(("task_retry", task.name, attempt))

    def interrupt(self, run: RunInfo, interrupts: Any) -> None:
        self.events.append(("interrupt", tuple(i.value for i in interrupts)))

    def checkpoint(self, run: RunInfo, config: dict[str, Any], metadata: Any) -> None:
        self.events.append(("checkpoint", metadata["source"], metadata["step"]))


def chain() -> Any:
    g = StateGraph(State)
    g.add_node("a", lambda s: {"log": ["a"]})
    g.add_node("b", lambda s: {"log": ["b"]})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    return g


def test_hooks_follow_the_run(driver: Any) -> None:
    rec = Recorder()
    driver.invoke(chain().compile(), {"log": []}, instruments=[rec])
    names = [e for e in rec.events if e[0] in ("step_start", "task_end", "step_end")]
    assert names == [
        ("step_start", 0, ("__start__",)),
        ("task_end", "__start__", None),
        ("step_end", 0, None),
        ("step_start", 1, ("a",)),
        ("task_end", "a", None),
        ("step_end", 1, None),
        ("step_start", 2, ("b",)),
        ("task_end", "b", None),
        ("step_end", 2, None),
    ]
    assert rec.events[0] == ("run_start", "") and rec.events[-1] == ("run_end", "", None)


def test_checkpoints_interrupts_and_failures_are_reported() -> None:
    g = StateGraph(State)
    g.add_node("ask", lambda s: {"log": [interrupt("ok?")]})
    g.add_edge(START, "ask")
    graph = g.compile(checkpointer=InMemorySaver())
    rec = Recorder()
    config = {"configurable": {"thread_id": "i"}}
    graph.invoke({"log": []}, config, instruments=[rec])
    assert ("checkpoint", "input", -1) in rec.events
    assert ("checkpoint", "loop", 0) in rec.events
    assert ("interrupt", ("ok?",)) in rec.events
    rec.events.clear()
    graph.invoke(Command(resume="yes"), config, instruments=[rec])
    assert ("task_end", "ask", None) in rec.events

    def boom(state: State) -> dict[str, Any]:
        raise KeyError("nope")

    bad = StateGraph(State)
    bad.add_node("boom", boom)
    bad.add_edge(START, "boom")
    rec = Recorder()
    with pytest.raises(KeyError):
        bad.compile().invoke({"log": []}, instruments=[rec])
    assert ("task_end", "boom", "KeyError") in rec.events
    assert ("step_end", 1, "KeyError") in rec.events
    assert rec.events[-1] == ("run_end", "", "KeyError")


def test_retries_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from stepgraph.engine import _policy

    monkeypatch.setattr(_policy, "_sleep", lambda s: None)
    tries = [0]

    def flaky(state: State) -> dict[str, Any]:
        tries[0] += 1
        if tries[0] < 3:
            raise ConnectionError("blip")
        return {"log": ["ok"]}

    g = StateGraph(State)
    g.add_node("flaky", flaky, retry_policy=RetryPolicy(jitter=False))
    g.add_edge(START, "flaky")
    rec = Recorder()
    g.compile().invoke({"log": []}, instruments=[rec])
    assert [e for e in rec.events if e[0] == "task_retry"] == [
        ("task_retry", "flaky", 1),
        ("task_retry", "flaky", 2),
    ]


def test_installed_instruments_see_every_run_and_subgraphs_report_too() -> None:
    rec = install(Recorder())
    try:
        parent = StateGraph(State)
        parent.add_node("child", chain().compile())
        parent.add_edge(START, "child")
        parent.compile().invoke({"log": []})
    finally:
        uninstall(rec)
    nested = [e for e in rec.events if e[0] == "run_start"]
    assert nested[0] == ("run_start", "")
    assert nested[1][1].startswith("child:")
    chain().compile().invoke({"log": []})  # uninstalled: nothing more recorded
    assert sum(1 for e in rec.events if e[0] == "run_start") == 2


def test_a_failing_hook_warns_and_the_run_goes_on() -> None:
    class Broken(Instrument):
        def task_end(self, run: RunInfo, task: Any, error: BaseException | None) -> None:
            raise RuntimeError("bug in my instrument")

    with pytest.warns(RuntimeWarning, match="bug in my instrument"):
        out = chain().compile().invoke({"log": []}, instruments=[Broken()])
    assert out == {"log": ["a", "b"]}


def test_instruments_must_be_instruments() -> None:
    with pytest.raises(TypeError, match="Instrument"):
        install(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Instrument"):
        chain().compile().invoke({"log": []}, instruments=[object()])  # type: ignore[list-item]


def test_opentelemetry_spans_for_runs_steps_and_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from stepgraph.engine import _policy
    from stepgraph.engine.otel import OpenTelemetryInstrument

    monkeypatch.setattr(_policy, "_sleep", lambda s: None)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel = OpenTelemetryInstrument(tracer_provider=provider)
    tries = [0]

    def flaky(state: State) -> dict[str, Any]:
        tries[0] += 1
        if tries[0] == 1:
            raise ConnectionError("blip")
        return {"log": ["ok"]}

    g = StateGraph(State)
    g.add_node("flaky", flaky, retry_policy=RetryPolicy(jitter=False))
    g.add_edge(START, "flaky")
    graph = g.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "traced"}}
    graph.invoke({"log": []}, config, instruments=[otel])
    spans = {s.name: s for s in exporter.get_finished_spans()}
    run, step, task = spans["run LangGraph"], spans["superstep 1"], spans["task flaky"]
    assert step.parent is not None and step.parent.span_id == run.context.span_id
    assert task.parent is not None and task.parent.span_id == step.context.span_id
    assert task.attributes["stepgraph.node"] == "flaky"
    assert task.attributes["stepgraph.step"] == 1
    assert task.attributes["stepgraph.attempt"] == 2
    assert task.attributes["stepgraph.thread_id"] == "traced"
    assert task.attributes["stepgraph.task_id"]
    assert task.attributes["stepgraph.checkpoint_id"] == step.attributes["stepgraph.checkpoint_id"]
    assert [e.name for e in task.events] == ["stepgraph.retry"]
    assert run.attributes["stepgraph.checkpoint_id"]
    assert run.attributes["stepgraph.run_id"]

    def boom(state: State) -> dict[str, Any]:
        raise KeyError("nope")

    bad = StateGraph(State)
    bad.add_node("boom", boom)
    bad.add_edge(START, "boom")
    exporter.clear()
    with pytest.raises(KeyError):
        bad.compile().invoke({"log": []}, instruments=[otel])
    failed = {s.name: s for s in exporter.get_finished_spans()}
    assert failed["task boom"].status.status_code == StatusCode.ERROR
    assert failed["run LangGraph"].status.status_code == StatusCode.ERROR
    assert any(e.name == "exception" for e in failed["task boom"].events)

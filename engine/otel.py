"""OpenTelemetry tracing for stepgraph runs (the ``stepgraph[otel]`` extra).

``OpenTelemetryInstrument`` turns the engine's instrument hooks into spans: one per run,
one per superstep inside it, one per task inside its superstep (a subgraph's run nests
under the task that runs it). Attributes carry the graph, node, step, task id, attempt,
thread and checkpoint ids; failures are recorded on their spans, retries as span
events, interrupts as an event on the run.

    from stepgraph.engine import install
    from stepgraph.engine.otel import OpenTelemetryInstrument

    install(OpenTelemetryInstrument())          # every run in the process

Spans go to the global tracer provider unless you pass ``tracer_provider=``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import trace
    from opentelemetry.trace import Span, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "stepgraph.engine.otel needs OpenTelemetry: pip install 'stepgraph[otel]' "
        "(or opentelemetry-api)"
    ) from exc

from ._instrument import Instrument, RunInfo

if TYPE_CHECKING:
    from ._task import Task

__all__ = ["OpenTelemetryInstrument"]

_PREFIX = "stepgraph"


class OpenTelemetryInstrument(Instrument):
    """Spans for runs, supersteps and tasks.

    Args:
        tracer_provider: where spans go (default: the global provider).
        record_inputs: also put a short repr of each task's input on its span (off by
            default: inputs may hold personal data).
    """

    def __init__(self, tracer_provider: Any = None, *, record_inputs: bool = False) -> None:
        self.tracer = trace.get_tracer("stepgraph", tracer_provider=tracer_provider)
        self.record_inputs = record_inputs
        self._lock = threading.Lock()
        self._runs: dict[int, Span] = {}
        self._steps: dict[tuple[int, int], Span] = {}
        self._tasks: dict[int, Span] = {}

    # -- runs -------------------------------------------------------------------------

    def run_start(self, run: RunInfo) -> None:
        parent_span = self._parent_of(run)
        context = trace.set_span_in_context(parent_span) if parent_span is not None else None
        span = self.tracer.start_span(f"run {run.graph}", context=context)
        span.set_attribute(f"{_PREFIX}.graph", run.graph)
        if run.namespace:
            span.set_attribute(f"{_PREFIX}.namespace", run.namespace)
        if run.thread_id is not None:
            span.set_attribute(f"{_PREFIX}.thread_id", run.thread_id)
        if run.run_id is not None:
            span.set_attribute(f"{_PREFIX}.run_id", run.run_id)
        with self._lock:
            self._runs[id(run)] = span

    def run_end(self, run: RunInfo, error: BaseException | None) -> None:
        with self._lock:
            span = self._runs.pop(id(run), None)
            stale = [k for k in self._steps if k[0] == id(run)]
            steps = [self._steps.pop(k) for k in stale]
        for step in steps:  # a run ended mid-step (an error, a break out of a stream)
            step.end()
        if span is not None:
            _finish(span, error)

    def interrupt(self, run: RunInfo, interrupts: Sequence[Any]) -> None:
        span = self._runs.get(id(run))
        if span is not None:
            span.add_event(
                f"{_PREFIX}.interrupt",
                {f"{_PREFIX}.interrupt_ids": [str(getattr(i, "id", i)) for i in interrupts]},
            )

    def checkpoint(self, run: RunInfo, config: dict[str, Any], metadata: Any) -> None:
        span = self._runs.get(id(run))
        if span is not None:
            cid = str((config.get("configurable") or {}).get("checkpoint_id", ""))
            step = (metadata or {}).get("step", -1) if isinstance(metadata, dict) else -1
            span.add_event(
                f"{_PREFIX}.checkpoint",
                {f"{_PREFIX}.checkpoint_id": cid, f"{_PREFIX}.step": int(step)},
            )
            span.set_attribute(f"{_PREFIX}.checkpoint_id", cid)

    # -- supersteps -------------------------------------------------------------------

    def step_start(self, run: RunInfo, step: int, tasks: Sequence[Task]) -> None:
        parent = self._runs.get(id(run))
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(f"superstep {step}", context=context)
        span.set_attribute(f"{_PREFIX}.step", step)
        span.set_attribute(f"{_PREFIX}.tasks", len(tasks))
        if tasks:  # the checkpoint the superstep starts from
            first = tasks[0]
            span.set_attribute(f"{_PREFIX}.checkpoint_id", first.core.checkpoint_id_of(first.seq))
        with self._lock:
            self._steps[(id(run), step)] = span

    def step_end(self, run: RunInfo, step: int, error: BaseException | None) -> None:
        with self._lock:
            span = self._steps.pop((id(run), step), None)
        if span is not None:
            _finish(span, error)

    # -- tasks ------------------------------------------------------------------------

    def task_start(self, run: RunInfo, task: Task) -> None:
        parent = self._steps.get((id(run), task.step)) or self._runs.get(id(run))
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(f"task {task.name}", context=context)
        span.set_attribute(f"{_PREFIX}.node", task.name)
        span.set_attribute(f"{_PREFIX}.step", task.step)
        span.set_attribute(f"{_PREFIX}.task_id", task.id)
        span.set_attribute(f"{_PREFIX}.checkpoint_id", task.core.checkpoint_id_of(task.seq))
        if run.thread_id is not None:
            span.set_attribute(f"{_PREFIX}.thread_id", run.thread_id)
        if self.record_inputs:
            span.set_attribute(f"{_PREFIX}.input", repr(task.input)[:500])
        with self._lock:
            self._tasks[id(task)] = span

    def task_retry(
        self, run: RunInfo, task: Task, error: BaseException, attempt: int, delay: float
    ) -> None:
        span = self._tasks.get(id(task))
        if span is not None:
            span.add_event(
                f"{_PREFIX}.retry",
                {
                    f"{_PREFIX}.attempt": attempt,
                    f"{_PREFIX}.retry_in": float(delay),
                    "exception.type": type(error).__qualname__,
                    "exception.message": str(error),
                },
            )

    def task_end(self, run: RunInfo, task: Task, error: BaseException | None) -> None:
        with self._lock:
            span = self._tasks.pop(id(task), None)
        if span is None:
            return
        span.set_attribute(f"{_PREFIX}.attempt", int(getattr(task, "attempt", 1)))
        if getattr(task, "cached", False):
            span.set_attribute(f"{_PREFIX}.cached", True)
        from ._interrupt import GraphInterrupt

        if isinstance(error, GraphInterrupt):
            span.add_event(f"{_PREFIX}.interrupt")
            error = None
        _finish(span, error if isinstance(error, Exception) else None)

    # -- helpers ----------------------------------------------------------------------

    def _parent_of(self, run: RunInfo) -> Span | None:
        # A subgraph's run nests under the span of the task that runs it.
        if run.parent is None:
            return None
        with self._lock:
            for span in self._tasks.values():
                ns = dict(getattr(span, "attributes", None) or {})
                task_id = ns.get(f"{_PREFIX}.task_id")
                if task_id and run.namespace.split("|")[-1].endswith(str(task_id)):
                    return span
            return self._runs.get(id(run.parent))


def _finish(span: Span, error: BaseException | None) -> None:
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()

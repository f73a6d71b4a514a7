"""The ``tasks``, ``debug`` and ``checkpoints`` stream modes, built on the instrument hooks.

A run that streams any of these modes gets one `StreamEvents` instrument of its own;
it turns the hooks into chunks in LangGraph's shapes. Runs that stream none of them
have no such instrument, and so pay nothing for these modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._instrument import Instrument, RunInfo
from ._interrupt import GraphInterrupt

if TYPE_CHECKING:
    from ._loop import RunLoop
    from ._task import Task

STREAM_EVENT_MODES = frozenset(("tasks", "debug", "checkpoints"))


class StreamEvents(Instrument):
    """Emits task, retry and checkpoint events into one run's stream."""

    def __init__(self, loop: RunLoop) -> None:
        self.loop = loop
        modes = loop.modes
        self.tasks = "tasks" in modes
        self.debug = "debug" in modes
        self.checkpoints = "checkpoints" in modes

    def _emit(self, mode: str, payload: Any, step: int, kind: str) -> None:
        # Hooks run in the driver's thread or (retries, task calls) in a task's thread.
        loop = self.loop
        if (mode == "tasks" and self.tasks) or (mode == "checkpoints" and self.checkpoints):
            loop.send((loop.ns, mode, payload))
        if self.debug:
            stamp = datetime.now(UTC).isoformat()
            event = {"step": step, "timestamp": stamp, "type": kind, "payload": payload}
            loop.send((loop.ns, "debug", event))

    def task_start(self, run: RunInfo, task: Task) -> None:
        if task.node.hidden:
            return
        payload = {"id": task.id, "name": task.name, "input": task.input, "triggers": task.triggers}
        self._emit("tasks", payload, task.step, "task")

    def task_end(self, run: RunInfo, task: Task, error: BaseException | None) -> None:
        if task.node.hidden:
            return
        interrupts: list[Any] = []
        if isinstance(error, GraphInterrupt):
            interrupts = list(error.interrupts)
            error = None  # a pause, not a failure
        elif error is not None and not isinstance(error, Exception):
            return  # other control signals are not task results
        payload = {
            "id": task.id,
            "name": task.name,
            "error": error,
            "result": self.loop.task_result(task) if error is None and not interrupts else {},
            "interrupts": interrupts,
        }
        self._emit("tasks", payload, task.step, "task_result")

    def task_retry(
        self, run: RunInfo, task: Task, error: BaseException, attempt: int, delay: float
    ) -> None:
        if task.node.hidden:
            return
        payload = {
            "id": task.id,
            "name": task.name,
            "error": error,
            "attempt": attempt,
            "retry_in": delay,
        }
        self._emit("tasks", payload, task.step, "task_retry")

    def checkpoint(self, run: RunInfo, config: dict[str, Any], metadata: Any) -> None:
        if not (self.checkpoints or self.debug):
            return
        loop = self.loop
        p = loop.persistence
        parent = p.last_saved[0] if p is not None and p.last_saved else None
        planned = loop.core.plan()
        payload = {
            "config": config,
            "parent_config": parent,
            "values": loop.graph._read(loop.core, loop.graph._stream_keys()),
            "metadata": metadata,
            "next": [t.name for t in planned],
            "tasks": [
                {"id": t.id, "name": t.name, "interrupts": (), "state": None} for t in planned
            ],
        }
        self._emit("checkpoints", payload, loop.core.step, "checkpoint")


def with_stream_events(loop: RunLoop, instruments: Sequence[Instrument]) -> tuple[Instrument, ...]:
    """The run's instruments: ``instruments`` (without another run's stream events), plus
    this run's own if it streams tasks, debug or checkpoints."""
    own = tuple(i for i in instruments if not isinstance(i, StreamEvents))
    if loop.modes.isdisjoint(STREAM_EVENT_MODES):
        return own
    return (*own, StreamEvents(loop))

"""Stepping through a run: ``graph.iter()`` / ``graph.aiter()`` yield one result per superstep.

This is a third driver over ``RunLoop``, next to the two in ``_drivers``: it starts the
run, and for each superstep plans it (``tick``), runs its tasks, reports them
(``task_done``), commits the barrier (``after_tick``) and then yields a ``StepResult``
describing what happened. It streams nothing: the result is the report.

Between two results no task runs, so the caller may stop (the run is closed like any
other: what it saved is a resumable checkpoint), change the state with
``update_state`` and continue with ``iter(None, config)``.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import AsyncGenerator, Generator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ._core import _detach
from ._drivers import _aworker, _bind, _close, _Done, _unbind, _worker
from ._interrupt import GraphInterrupt, Interrupt
from ._loop import RunLoop
from ._runner import run_sync
from ._task import Task

__all__ = ["StepResult", "StepTask"]


@dataclass(frozen=True, slots=True)
class StepTask:
    """One task of a superstep, as it ended.

    Attributes:
        node: the node's name (``"__start__"`` for the START task of a StateGraph,
            which applies the input in step 0).
        id: the deterministic task id.
        input: what the node received (channel values, or a Send's argument).
        triggers: the channels that made it run, or ``("__pregel_push",)`` for a Send.
        writes: the ``(channel, value)`` pairs it wrote, in order (routing included).
        result: its update as the ``updates`` stream mode shows it (``None`` when it
            failed or was interrupted).
        error: the exception it raised, or ``None``.
        interrupts: the questions it paused on with ``interrupt()``.
        cached: its writes came from the cache: the node did not run.
        resumed: its writes were saved by an earlier run of this step (a resumed or
            retried step): it did not run again.
    """

    node: str
    id: str
    input: Any
    triggers: tuple[str, ...]
    writes: tuple[tuple[str, Any], ...]
    result: Any
    error: BaseException | None
    interrupts: tuple[Interrupt, ...]
    cached: bool = False
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one superstep did, yielded by ``graph.iter()`` after its barrier.

    Attributes:
        step: the superstep number (the input checkpoint is step -1 and is not a
            result; the first result is step 0).
        tasks: the step's tasks in task-path order (the order their writes apply).
        updated_channels: the channels the barrier gave a new value (empty for a
            step that failed or paused on an interrupt: nothing of it was applied).
        state: the graph's values after the barrier, as a ``values`` chunk shows them.
        checkpoint: with a checkpointer, the config of the checkpoint to continue
            from: the one saved at this barrier, or, for a step that failed or paused,
            the one the step started from (which holds its finished tasks' writes).
            ``None`` without a checkpointer. (With ``durability="exit"`` it is stored
            when the run ends or is stopped.)
        interrupts: the questions the run paused on at this step (then it is the
            last result). A breakpoint (``interrupt_after``) pauses with none.
        next: the nodes planned for the next superstep; non-empty on the last result
            when the run paused (an interrupt or a breakpoint) rather than finished.
    """

    step: int
    tasks: tuple[StepTask, ...]
    updated_channels: frozenset[str]
    state: Any
    checkpoint: dict[str, Any] | None
    interrupts: tuple[Interrupt, ...]
    next: tuple[str, ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        """The names of the nodes that ran in this step, in task order."""
        return tuple(t.node for t in self.tasks)

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """The errors of the step's failed tasks."""
        return tuple(t.error for t in self.tasks if t.error is not None)

    def task(self, node: str) -> StepTask:
        """The step's (first) task of ``node``.

        Raises:
            KeyError: no task of that node ran in this step.
        """
        for t in self.tasks:
            if t.node == node:
                return t
        raise KeyError(f"node {node!r} did not run in step {self.step} (it ran {self.nodes})")


class _Step:
    """The outcomes of the superstep being run: what ``task_done`` was told."""

    __slots__ = ("errors", "planned", "ran")

    def __init__(self, loop: RunLoop) -> None:
        self.planned: list[Task] = list(loop.tasks)  # every task, saved writes included
        self.ran: set[int] = set()
        self.errors: dict[int, BaseException] = {}

    def done(self, loop: RunLoop, task: Task, error: BaseException | None) -> None:
        loop.task_done(task, error)
        self.ran.add(id(task))
        if error is not None:
            self.errors[id(task)] = error

    def result(self, loop: RunLoop, committed: bool) -> StepResult:
        tasks = tuple(self._task(loop, t) for t in self.planned)
        p = loop.persistence
        planned = loop.core.plan()
        return StepResult(
            step=self.planned[0].step,
            tasks=tasks,
            updated_channels=loop.core.updated if committed else frozenset(),
            state=_state(loop),
            checkpoint=None if p is None or p.parent_config is None else dict(p.parent_config),
            interrupts=tuple(loop.interrupted or ()),
            next=tuple(t.name for t in planned if not t.node.hidden),
        )

    def _task(self, loop: RunLoop, task: Task) -> StepTask:
        error = self.errors.get(id(task))
        interrupts: tuple[Interrupt, ...] = ()
        if isinstance(error, GraphInterrupt):
            interrupts, error = error.interrupts, None
        ok = error is None and not interrupts
        return StepTask(
            node=task.name,
            id=task.id,
            input=task.input,
            triggers=task.triggers,
            writes=tuple((ch, _detach(v)) for ch, v in task.writes),
            result=_detach_update(loop._task_update(task)) if ok else None,
            error=error,
            interrupts=interrupts,
            cached=task.cached,
            resumed=id(task) not in self.ran,
        )


def _state(loop: RunLoop) -> Any:
    # Detached like node inputs: later supersteps cannot change a result already yielded.
    values = loop.graph._read(loop.core, loop.output_keys)
    if isinstance(values, dict):
        return {k: _detach(v) for k, v in values.items()}
    return _detach(values)


def _detach_update(update: Any) -> Any:
    if isinstance(update, dict):
        return {k: _detach(v) for k, v in update.items()}
    if isinstance(update, list):
        return [_detach_update(u) for u in update]
    return _detach(update)


def _failing(step: _Step) -> bool:
    # A step whose tasks failed (not merely paused) yields its result, then raises.
    # Control signals other than interrupts (a parent command, KeyboardInterrupt)
    # are raised as they are.
    errors = [e for e in step.errors.values() if not isinstance(e, GraphInterrupt)]
    return bool(errors) and all(isinstance(e, Exception) for e in errors)


# -- the sync driver ------------------------------------------------------------------


def iter_steps(
    loop: RunLoop, input: Any, executor: Executor | None, max_concurrency: int | None
) -> Generator[StepResult, None, None]:
    """Run ``loop`` one superstep per ``next()``, yielding each step's result."""
    stopped = False
    try:
        yield from _sync_steps(loop, input, executor, max_concurrency)
    except GeneratorExit:
        stopped = True  # the caller stopped iterating: a pause, not a failure
    finally:
        if not stopped:
            _close(loop)
    if stopped:
        _close(loop)


def _sync_steps(
    loop: RunLoop, input: Any, executor: Executor | None, max_concurrency: int | None
) -> Generator[StepResult, None, None]:
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    loop.ts_sink = events.put
    owned: ThreadPoolExecutor | None = None
    try:
        if executor is not None:
            _bind(loop, executor)
        loop.start(input)
        loop.out.clear()
        while tasks := loop.tick():
            step = _Step(loop)
            if len(tasks) == 1 or max_concurrency == 1:
                for task in tasks:
                    step.done(loop, task, _run_here(task, loop))
            else:
                if executor is None:
                    executor = owned = ThreadPoolExecutor(
                        max_workers=max_concurrency, thread_name_prefix="stepgraph"
                    )
                for task in tasks:
                    executor.submit(contextvars.copy_context().run, _worker, task, loop, events.put)
                remaining = len(tasks)
                while remaining:
                    item = events.get()
                    if type(item) is _Done:
                        step.done(loop, item.task, item.error)
                        remaining -= 1
            loop.out.clear()
            try:
                loop.after_tick()
            except BaseException:
                if _failing(step):
                    yield step.result(loop, committed=False)
                raise
            loop.out.clear()
            yield step.result(loop, committed=not step.errors)
    finally:
        if owned is not None:
            owned.shutdown(wait=False, cancel_futures=True)
        if loop.remote is not None:
            _unbind(loop)


def _run_here(task: Task, loop: RunLoop) -> BaseException | None:
    try:
        run_sync(task, loop)
    except BaseException as exc:  # every failure is reported to the loop
        return exc
    return None


# -- the async driver -----------------------------------------------------------------


async def aiter_steps(
    loop: RunLoop, input: Any, max_concurrency: int | None
) -> AsyncGenerator[StepResult, None]:
    """Async twin of ``iter_steps``: tasks run as asyncio tasks (sync nodes in threads)."""
    stopped = False
    try:
        async for result in _async_steps(loop, input, max_concurrency):
            yield result
    except GeneratorExit:
        stopped = True
    finally:
        if not stopped:
            _close(loop)
    if stopped:
        _close(loop)


async def _async_steps(
    loop: RunLoop, input: Any, max_concurrency: int | None
) -> AsyncGenerator[StepResult, None]:
    events: asyncio.Queue[Any] = asyncio.Queue()
    aio = asyncio.get_running_loop()
    home = threading.get_ident()

    def put(item: Any) -> None:
        if threading.get_ident() == home:
            events.put_nowait(item)
        else:
            aio.call_soon_threadsafe(events.put_nowait, item)

    loop.ts_sink = put
    loop.is_async = True
    sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    running: list[asyncio.Task[None]] = []
    try:
        if loop.persistence is not None:
            await loop.persistence.aopen()  # off the event loop, as drive_async does
        loop.start(input)
        loop.out.clear()
        while tasks := loop.tick():
            step = _Step(loop)
            running = [asyncio.create_task(_aworker(t, loop, put, sem)) for t in tasks]
            remaining = len(tasks)
            while remaining:
                item = await events.get()
                if type(item) is _Done:
                    step.done(loop, item.task, item.error)
                    remaining -= 1
            running = []
            loop.out.clear()
            try:
                loop.after_tick()
            except BaseException:
                if _failing(step):
                    yield step.result(loop, committed=False)
                raise
            loop.out.clear()
            yield step.result(loop, committed=not step.errors)
        if loop.persistence is not None:
            await loop.persistence.aclose()  # the last stores, off the event loop
    finally:
        for pending in running:
            pending.cancel()

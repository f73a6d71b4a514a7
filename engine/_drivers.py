"""The two drivers: thin loops over ``RunLoop`` that differ only in how they wait.

The sync driver runs a superstep's tasks on a ``concurrent.futures.Executor`` (a
thread pool bounded by ``max_concurrency`` unless one is injected) and the async
driver runs them as asyncio tasks (sync nodes in worker threads). Both collect
completions and stream chunks from one queue, so chunks reach the caller while
tasks are still running, in the order they were produced.

A superstep with one task and no live stream mode runs inline in the calling
thread: no hand-off, which is most of a sequential graph's cost.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ._loop import Chunk, RunLoop
from ._runner import run_async, run_sync
from ._task import Task

if TYPE_CHECKING:
    from ._checkpointing import Persistence


class _Done:
    __slots__ = ("error", "task")

    def __init__(self, task: Task, error: BaseException | None) -> None:
        self.task = task
        self.error = error


def _close(loop: RunLoop) -> None:
    # Runs in a ``finally``: if the run is already failing, a failure to store its
    # last writes is attached to that error instead of replacing it.
    failing = sys.exc_info()[1]
    try:
        loop.close(failing)
    except Exception as exc:
        if failing is None:
            raise
        failing.add_note(f"saving the run's last writes also failed: {exc!r}")


def _flush(loop: RunLoop) -> Iterator[Chunk]:
    out = loop.out
    while out:
        yield out.popleft()


def _live(loop: RunLoop) -> bool:
    # Chunks produced inside tasks must reach the caller while the tasks run.
    return loop.subgraphs or "custom" in loop.modes


_PER_TASK = frozenset(("custom", "updates", "tasks", "debug"))


def _quiet(loop: RunLoop) -> bool:
    # Nothing is streamed per task: the caller cannot tell when each task finished,
    # so the driver thread may run one of the tasks itself instead of waiting idle.
    return not loop.subgraphs and loop.modes.isdisjoint(_PER_TASK)


def _run_inline(task: Task, loop: RunLoop) -> None:
    try:
        run_sync(task, loop)
    except BaseException as exc:  # every failure is reported to the loop
        loop.task_done(task, exc)
    else:
        loop.task_done(task, None)


def _worker(task: Task, loop: RunLoop, put: Callable[[Any], None]) -> None:
    try:
        run_sync(task, loop)
    except BaseException as exc:
        put(_Done(task, exc))
    else:
        put(_Done(task, None))


def _bind(loop: RunLoop, executor: Executor | None) -> None:
    # An executor that runs node functions elsewhere (``stepgraph.engine.ray``) says
    # so with this hook; everything else about the run (retries, writers, the
    # barrier, checkpoints) stays here. A plain executor has no hook.
    bind = getattr(executor, "_stepgraph_bind", None)
    if bind is not None:
        loop.remote = bind(loop)


def _unbind(loop: RunLoop) -> None:
    # The run is over, however it ended: the executor cancels what it still runs for
    # it and lets go of what it holds for it. Called only when ``loop.remote`` is set.
    close = getattr(loop.remote, "close", None)
    if close is not None:
        close()


def drive_sync(
    loop: RunLoop, input: Any, executor: Executor | None, max_concurrency: int | None
) -> Iterator[Chunk]:
    """Run ``loop`` to the end in this thread, yielding stream chunks as they come."""
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    loop.ts_sink = events.put
    owned: ThreadPoolExecutor | None = None
    try:
        if executor is not None:
            _bind(loop, executor)
        loop.start(input)
        yield from _flush(loop)
        while tasks := loop.tick():
            yield from _flush(loop)
            if (len(tasks) == 1 and not _live(loop)) or max_concurrency == 1:
                # No hand-off to a thread and no queue round trip. Chunks the tasks
                # send from this thread (custom, retries) go straight to the stream.
                loop.ts_sink = loop.on_chunk
                try:
                    for task in tasks:
                        _run_inline(task, loop)
                finally:
                    loop.ts_sink = events.put
                remaining = 0
                yield from _flush(loop)
            else:
                inline = tasks[0] if _quiet(loop) else None
                if executor is None:
                    workers = max_concurrency - 1 if max_concurrency and inline else max_concurrency
                    executor = owned = ThreadPoolExecutor(
                        max_workers=workers, thread_name_prefix="stepgraph"
                    )
                others = tasks[1:] if inline is not None else tasks
                for each in others:
                    executor.submit(contextvars.copy_context().run, _worker, each, loop, events.put)
                remaining = len(others)
                if inline is not None:
                    _run_inline(inline, loop)
            while remaining:
                item = events.get()
                if type(item) is _Done:
                    loop.task_done(item.task, item.error)
                    remaining -= 1
                else:
                    loop.on_chunk(item)
                yield from _flush(loop)
            loop.after_tick()
            yield from _flush(loop)
        yield from _flush(loop)  # a breakpoint's chunk, queued by the last tick
    finally:
        if owned is not None:
            owned.shutdown(wait=False, cancel_futures=True)
        if loop.remote is not None:
            _unbind(loop)
        _close(loop)


async def _aworker(
    task: Task, loop: RunLoop, put: Callable[[Any], None], sem: asyncio.Semaphore | None
) -> None:
    try:
        if sem is None:
            await run_async(task, loop)
        else:
            async with sem:
                await run_async(task, loop)
    except BaseException as exc:
        put(_Done(task, exc))
        if isinstance(exc, asyncio.CancelledError):
            raise
    else:
        put(_Done(task, None))


async def _await_step(
    loop: RunLoop, remaining: int, events: asyncio.Queue[Any], store: Persistence | None
) -> AsyncIterator[Chunk]:
    """Hand each finished task and chunk of a superstep to the loop, yielding chunks."""
    while remaining:
        item = await events.get()
        if type(item) is _Done:
            loop.task_done(item.task, item.error)
            remaining -= 1
            if store is not None:
                await store.astore()  # its writes, while its siblings run
        else:
            loop.on_chunk(item)
        for chunk in _flush(loop):
            yield chunk


async def drive_async(
    loop: RunLoop, input: Any, max_concurrency: int | None
) -> AsyncIterator[Chunk]:
    """Run ``loop`` to the end on the running event loop, yielding stream chunks."""
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
    running: set[asyncio.Task[None]] = set()
    try:
        p = loop.persistence
        if p is not None:
            # Waiting for the thread and reading its checkpoint happen in worker
            # threads: other runs on this event loop go on meanwhile.
            await p.aopen(defer_sync=True)
        store = p if p is not None and p.defer_sync else None
        loop.start(input)
        if store is not None:
            await store.astore()  # the input checkpoint
        for chunk in _flush(loop):
            yield chunk
        while tasks := loop.tick():
            for chunk in _flush(loop):
                yield chunk
            for task in tasks:
                running.add(asyncio.create_task(_aworker(task, loop, put, sem)))
            async for chunk in _await_step(loop, len(tasks), events, store):
                yield chunk
            running.clear()
            loop.after_tick()
            if store is not None:
                await store.astore()  # the step's checkpoint, before the next step
            for chunk in _flush(loop):
                yield chunk
        for chunk in _flush(loop):  # a breakpoint's chunk, queued by the last tick
            yield chunk
        if p is not None:
            await p.aclose()  # the last stores, off the event loop
    finally:
        for pending in running:
            pending.cancel()
        _close(loop)

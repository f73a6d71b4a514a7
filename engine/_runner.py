"""Running one task, written once for both drivers.

``task_steps`` is a generator: it calls the node and its writers, and whenever one
of them returns an awaitable it yields it and expects the result back. The sync
driver runs the generator to the end and refuses awaitables (an async node needs
``ainvoke``/``astream``); the async driver awaits them, running sync nodes in a
worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any

from ._runtime import TaskContext, current_task
from ._task import Task
from ._types import Command
from .errors import ParentCommand

if TYPE_CHECKING:
    from ._loop import RunLoop

Steps = Generator[Awaitable[Any], Any, None]


def task_steps(task: Task, run: RunLoop) -> Steps:
    """Call the node, then its writers; yield every awaitable they return."""
    node = task.node
    try:
        output = node.proc(task.input)
        if output is not None and type(output) is not dict and inspect.isawaitable(output):
            output = yield output
    except ParentCommand as bubble:
        # A subgraph run inside this task handed a command to its parent: that is
        # this graph, so apply it as if the node had returned it.
        cmd = bubble.command
        output = Command(update=cmd.update, goto=cmd.goto, resume=cmd.resume)
    for writer in node.writers:
        result = writer(task, output)
        if result is not None and inspect.isawaitable(result):
            yield result


def run_sync(task: Task, run: RunLoop) -> None:
    """Run a task to completion in the calling thread."""
    token = current_task.set(TaskContext(task, run, run.writer_for(task)))
    try:
        steps = task_steps(task, run)
        try:
            awaitable = next(steps)
        except StopIteration:
            return
        _close(awaitable)
        steps.close()
    finally:
        current_task.reset(token)
    raise TypeError(
        f"node {task.name!r} is async (it returned an awaitable) but the graph was run "
        "with invoke()/stream(); use ainvoke()/astream() for graphs with async nodes"
    )


async def run_async(task: Task, run: RunLoop) -> None:
    """Run a task on the event loop; sync node code goes to a worker thread.

    Called inside its own asyncio task, so the context variable set here is seen by
    the node, by code it awaits, and by worker threads (``to_thread`` copies it).
    """
    token = current_task.set(TaskContext(task, run, run.writer_for(task)))
    try:
        steps = task_steps(task, run)
        in_thread = not task.node.is_async
        send: Any = None
        error: BaseException | None = None
        first = True
        while True:
            if in_thread:
                awaitable = await asyncio.to_thread(_advance, steps, send, error, first)
            else:
                awaitable = _advance(steps, send, error, first)
            if awaitable is None:
                return
            first = False
            try:
                send, error = await awaitable, None
            except BaseException as exc:
                send, error = None, exc
    finally:
        current_task.reset(token)


def _advance(
    steps: Steps, send: Any, error: BaseException | None, first: bool
) -> Awaitable[Any] | None:
    # StopIteration cannot cross a Future (to_thread), so end-of-steps is None.
    # An awaitable that failed is thrown back in, where the node's code can see it.
    try:
        if first:
            return next(steps)
        return steps.send(send) if error is None else steps.throw(error)
    except StopIteration:
        return None


def _close(awaitable: Awaitable[Any]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()

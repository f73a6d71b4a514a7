"""Running one task, written once for both drivers.

``task_steps`` is a generator: it calls the node and its writers, and whenever one
of them returns an awaitable it yields it and expects the result back. The sync
driver runs the generator to the end and refuses awaitables (an async node needs
``ainvoke``/``astream``); the async driver awaits them, running sync nodes in a
worker thread so the event loop never blocks.

Around the attempts, ``run_sync``/``run_async`` apply the node's policies, in
this order:

* cache: with a ``CachePolicy`` and a graph cache, a task whose input was seen
  before gets the cached writes and its node is not called at all; a task that
  succeeds stores its writes;
* retry: an attempt that raises an error its ``RetryPolicy`` accepts is run again
  after a backoff, from a clean slate (its writes are cleared; nothing of a failed
  attempt is saved or applied). The last error reaches the caller as it was raised,
  with a note saying how many attempts were made;
* timeout (async only): an attempt of an async node that runs past ``timeout=``
  is cancelled and fails with ``NodeTimeoutError``, which the default policy retries.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Generator, Sequence
from typing import TYPE_CHECKING, Any

from stepgraph.checkpoint import DeserializationError, SerdeError

from . import _policy
from ._policy import RetryPolicy, cache_key, cache_namespace, pick_policy, retry_policies
from ._runtime import TaskContext, current_task
from ._task import Task
from ._types import Command
from .errors import NodeTimeoutError, ParentCommand

if TYPE_CHECKING:
    from stepgraph.checkpoint import BaseCache
    from stepgraph.checkpoint._cache import CacheKey

    from ._loop import RunLoop

Steps = Generator[Awaitable[Any], Any, None]


def task_steps(task: Task, run: RunLoop) -> Steps:
    """Call the node, then its writers; yield every awaitable they return."""
    node = task.node
    try:
        remote = run.remote
        output = node.proc(task.input) if remote is None else remote(task)
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


# -- the sync driver ----------------------------------------------------------------


def run_sync(task: Task, run: RunLoop) -> None:
    """Run a task to completion in the calling thread: cache, retries, the node."""
    node = task.node
    if node.timeout is not None:
        raise TypeError(
            f"node {task.name!r} has timeout={node.timeout:g}, which only the async driver "
            "can enforce (a running thread cannot be cancelled); run the graph with "
            "ainvoke()/astream()"
        )
    slot = _CacheSlot.of(task, run)
    if slot is not None and slot.lookup(task, run):
        return
    while True:
        try:
            finished = _attempt_sync(task, run)
        except Exception as exc:
            delay = _retry_delay(task, run, exc)
            if delay is None:
                raise
        else:
            break
        _policy._sleep(delay)
        _next_attempt(task)
    if not finished:
        raise TypeError(
            f"node {task.name!r} is async (it returned an awaitable) but the graph was run "
            "with invoke()/stream(); use ainvoke()/astream() for graphs with async nodes"
        )
    if slot is not None:
        slot.store(task)


def _attempt_sync(task: Task, run: RunLoop) -> bool:
    """One attempt; False if the node turned out to be async (nothing was awaited)."""
    token = current_task.set(TaskContext(task, run, run.writer_for(task)))
    try:
        steps = task_steps(task, run)
        try:
            awaitable = next(steps)
        except StopIteration:
            return True
        _close(awaitable)
        steps.close()
        return False
    finally:
        current_task.reset(token)


# -- the async driver ---------------------------------------------------------------


async def run_async(task: Task, run: RunLoop) -> None:
    """Run a task on the event loop (sync node code in a worker thread)."""
    slot = _CacheSlot.of(task, run)
    if slot is not None and await slot.alookup(task, run):
        return
    while True:
        try:
            await _attempt_async(task, run)
        except Exception as exc:
            delay = _retry_delay(task, run, exc)
            if delay is None:
                raise
        else:
            break
        await _policy._asleep(delay)
        _next_attempt(task)
    if slot is not None:
        await slot.astore(task)


async def _attempt_async(task: Task, run: RunLoop) -> None:
    timeout = task.node.timeout
    if timeout is None:
        await _steps_async(task, run)
        return
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            await _steps_async(task, run)
    except TimeoutError as exc:
        if scope.expired():  # ours, not a TimeoutError the node raised itself
            raise NodeTimeoutError(node=task.name, timeout=timeout, step=task.step) from exc
        raise


async def _steps_async(task: Task, run: RunLoop) -> None:
    """One attempt. Called inside the task's own asyncio task, so the context variable
    set here is seen by the node, by code it awaits, and by worker threads
    (``to_thread`` copies it)."""
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


# -- retries ------------------------------------------------------------------------


def _policies(task: Task, run: RunLoop) -> Sequence[RetryPolicy]:
    # The node's own policy wins; otherwise the graph's default. Both were checked
    # when the graph was compiled.
    own = task.node.retry_policy
    found = retry_policies(own if own is not None else run.graph.retry_policy, "retry_policy")
    return found if isinstance(found, tuple) else ()


def _next_attempt(task: Task) -> None:
    task.attempt += 1
    task.writes.clear()  # a retried attempt starts clean: no write is kept twice


def _retry_delay(
    task: Task,
    run: RunLoop,
    exc: Exception,
    policies: Sequence[RetryPolicy] | None = None,
) -> float | None:
    """Seconds to wait before the next attempt, or None to give up (with a note).

    ``policies`` default to the node's (or the graph's); they are looked up only when
    an attempt failed, so a task that succeeds never pays for them.
    """
    if policies is None:
        policies = _policies(task, run)
    if not policies:
        return None
    attempt = task.attempt
    policy = pick_policy(policies, exc)
    if policy is None:
        exc.add_note(
            f"node {task.name!r} was not retried: its retry policy does not retry "
            f"{type(exc).__name__} ({', '.join(map(repr, policies))})"
        )
        return None
    if attempt >= policy.max_attempts:
        exc.add_note(
            f"node {task.name!r} failed {attempt} time(s) and was not retried again: "
            f"{policy!r} allows {policy.max_attempts} attempt(s)"
        )
        return None
    delay = policy.interval(attempt)
    _report_retry(task, run, exc, attempt, delay)
    return delay


def _report_retry(task: Task, run: RunLoop, error: Exception, attempt: int, delay: float) -> None:
    """Tell the run's instruments (the tasks/debug streams among them) about a retry."""
    if run._inst:
        from ._instrument import call

        call(run._inst, "task_retry", run.info, task, error, attempt, delay)


# -- caching ------------------------------------------------------------------------


class _CacheSlot:
    """Where one task's result lives in the graph's cache."""

    __slots__ = ("cache", "key", "ttl")

    def __init__(self, cache: BaseCache, key: CacheKey, ttl: float | None) -> None:
        self.cache = cache
        self.key = key
        self.ttl = ttl

    @classmethod
    def of(cls, task: Task, run: RunLoop) -> _CacheSlot | None:
        policy = task.node.cache_policy
        if policy is None:
            return None
        cache: BaseCache | None = run.graph.cache
        if cache is None:
            return None
        key = cache_key(policy, task.name, task.input, cache.key_serde)
        return cls(cache, (cache_namespace(task.node), key), policy.ttl)

    def lookup(self, task: Task, run: RunLoop) -> bool:
        """Give the task its cached writes, if there are usable ones."""
        try:
            found = self.cache.get([self.key])
        except SerdeError as exc:
            _note(exc, task, "reading")
            raise
        return self._use(task, run, found)

    async def alookup(self, task: Task, run: RunLoop) -> bool:
        try:
            found = await self.cache.aget([self.key])
        except SerdeError as exc:
            _note(exc, task, "reading")
            raise
        return self._use(task, run, found)

    def store(self, task: Task) -> None:
        try:
            self.cache.set(self._entry(task))
        except SerdeError as exc:
            _note(exc, task, "storing")
            raise

    async def astore(self, task: Task) -> None:
        try:
            await self.cache.aset(self._entry(task))
        except SerdeError as exc:
            _note(exc, task, "storing")
            raise

    def _use(self, task: Task, run: RunLoop, found: dict[CacheKey, Any]) -> bool:
        if self.key not in found:
            return False
        writes = found[self.key]
        channels = run.graph.program.channels
        try:
            pairs = [(ch, value) for ch, value in writes]
        except (TypeError, ValueError):
            pairs = None
        if pairs is None or not all(type(ch) is str for ch, _ in pairs):
            raise DeserializationError(
                f"the cached entry of node {task.name!r} is not a list of writes; it was "
                "stored by something else under the same key",
                path=f"cache[{task.name}]",
                hint=f"Clear it with graph.clear_cache([{task.name!r}]).",
            )
        if not all(ch in channels for ch, _ in pairs):
            return False  # written by an older version of the graph: run the node again
        task.writes = pairs
        task.cached = True
        return True

    def _entry(self, task: Task) -> dict[CacheKey, tuple[Any, float | None]]:
        return {self.key: (list(task.writes), self.ttl)}


def _note(exc: SerdeError, task: Task, doing: str) -> None:
    exc.add_note(
        f"while {doing} the cached result of node {task.name!r} in superstep {task.step}"
        + (f"; graph.clear_cache([{task.name!r}]) drops it" if doing == "reading" else "")
    )

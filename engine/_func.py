"""The functional API: ``@task`` and ``@entrypoint``, workflows as plain functions.

``@entrypoint`` turns a function into a one-node graph with the whole run API
(``invoke``, ``stream``, ``get_state``, history, ``update_state``). Inside it (or inside
any graph node), calling a ``@task`` function returns a ``TaskFuture`` at once and runs
the task in parallel with everything else until ``.result()`` (or ``await``) asks for
its value.

Every finished task's result is saved at once, under an id made from the calling
task's id and the call's position. When the workflow runs again on the same step
(after an interrupt, an error or a crash), the function runs from its start, and
each task call returns the saved result instead of running again. Because results are
matched by position, the calls must come in the same order with the same arguments:
if they do not, the call fails with a ``DeterminismError`` that shows the recorded call
and the new one, instead of handing back another call's result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import xxhash

from stepgraph.channels import EphemeralValue, LastValue

from ._ids import _as_uuid
from ._interrupt import GraphInterrupt, _Scratch
from ._policy import stable_bytes
from ._program import NodeSpec
from ._runtime import TaskContext, current_task
from ._task import PUSH, Task
from ._types import START
from .errors import GraphRunError

if TYPE_CHECKING:
    from ._pregel import Pregel

T = TypeVar("T")
R = TypeVar("R")

CALL = "__call__"  # a task call's record: [task name, argument hash]
RETURN = "__return__"  # a task call's result
END_CHANNEL = "__end__"
PREVIOUS = "__previous__"


class DeterminismError(GraphRunError):
    """A resumed workflow called its tasks differently from the run it resumes.

    Saved task results are matched to calls by position; a different call at a
    position would get another call's result, so it fails instead.

    Attributes:
        index: the call's position among the calling task's task calls (0-based).
        recorded: ``(task name, argument hash, arguments shown)`` of the saved call.
        new: the same for the call made now.
    """

    def __init__(self, index: int, recorded: Any, new: Any, caller: str) -> None:
        self.index = index
        self.recorded = tuple(recorded)
        self.new = tuple(new)
        was = f"{self.recorded[0]}{self.recorded[2] if len(self.recorded) > 2 else ''}"
        now = f"{self.new[0]}{self.new[2] if len(self.new) > 2 else ''}"
        super().__init__(
            f"task call #{index} in {caller!r} differs from the saved run: it was "
            f"{was}, now it is {now}. Resuming returns saved "
            "results by position, so calls must come in the same order with the same "
            "arguments: move randomness, time and I/O into tasks, and do not branch on "
            "them outside a task"
        )


# -- futures -------------------------------------------------------------------------


class TaskFuture(Generic[T]):
    """The pending result of a task call: ``.result()`` in sync code, ``await`` in async."""

    __slots__ = ("_fut", "_name", "_owner")

    def __init__(
        self, fut: concurrent.futures.Future[T] | asyncio.Future[T], name: str, owner: Any
    ) -> None:
        self._fut = fut
        self._name = name
        self._owner = owner  # the calling task's context: its interrupt answers

    def done(self) -> bool:
        return self._fut.done()

    def result(self, timeout: float | None = None) -> T:
        """Wait for the task and return its result (or raise its error)."""
        fut = self._fut
        if isinstance(fut, asyncio.Future):
            if not fut.done():
                raise RuntimeError(
                    f"task {self._name!r} is async and still running: `await` its future "
                    "instead of calling .result()"
                )
            return self._unwrap(fut.result)
        return self._unwrap(lambda: fut.result(timeout))

    def __await__(self) -> Generator[Any, None, T]:
        fut = self._fut
        if not isinstance(fut, asyncio.Future):
            fut = asyncio.wrap_future(fut)
        try:
            return (yield from fut.__await__())
        except GraphInterrupt as gi:
            raise self._reraise(gi) from None

    def _unwrap(self, get: Callable[[], T]) -> T:
        try:
            return get()
        except GraphInterrupt as gi:
            raise self._reraise(gi) from None

    def _reraise(self, gi: GraphInterrupt) -> GraphInterrupt:
        # The task asked a question: the caller pauses with it, keeping the answers the
        # caller itself had already received.
        scratch = getattr(self._owner, "scratch", None)
        return GraphInterrupt(gi.interrupts, scratch.answers if scratch else ())

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"TaskFuture({self._name!r}, {state})"


def _done_future(value: Any) -> concurrent.futures.Future[Any]:
    fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
    fut.set_result(value)
    return fut


# -- @task ---------------------------------------------------------------------------


class _Calls:
    """Per calling task attempt: how many task calls it has made."""

    __slots__ = ("count", "lock")

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def next(self) -> int:
        with self.lock:
            n = self.count
            self.count += 1
            return n


class TaskFunction(Generic[R]):
    """A function decorated with ``@task``; call it inside an entrypoint or a node."""

    def __init__(
        self,
        func: Callable[..., R],
        *,
        name: str | None = None,
        retry_policy: Any = None,
        cache_policy: Any = None,
    ) -> None:
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"@task cannot wrap the generator {func.__qualname__}: a task's result is "
                "saved as one value; return a list instead"
            )
        self.func = func
        self.name: str = name or str(getattr(func, "__name__", "task"))
        self.retry_policy = retry_policy
        self.cache_policy = cache_policy
        self.is_async = inspect.iscoroutinefunction(func)
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> TaskFuture[R]:
        ctx = current_task.get()
        if ctx is None:
            raise RuntimeError(
                f"task {self.name!r} was called outside a workflow: call @task functions "
                "inside an @entrypoint function or a graph node (to test one alone, call "
                f"{self.name}.func(...))"
            )
        return _call(self, ctx, args, kwargs)

    def __repr__(self) -> str:
        return f"<task {self.name}>"


@overload
def task(func: Callable[..., R]) -> TaskFunction[R]: ...


@overload
def task(
    *, name: str | None = None, retry_policy: Any = None, cache_policy: Any = None
) -> Callable[[Callable[..., R]], TaskFunction[R]]: ...


def task(
    func: Callable[..., R] | None = None,
    *,
    name: str | None = None,
    retry_policy: Any = None,
    cache_policy: Any = None,
) -> TaskFunction[R] | Callable[[Callable[..., R]], TaskFunction[R]]:
    """Make a function a task: its calls run in parallel and their results are saved.

    Use it bare (``@task``) or with options (``@task(name=..., retry_policy=...)``).
    Calling the task returns a `TaskFuture`; several calls made before waiting run
    at the same time. A finished call's result is saved at once, so a resumed
    workflow gets it back without running the task again.
    """

    def wrap(f: Callable[..., R]) -> TaskFunction[R]:
        return TaskFunction(f, name=name, retry_policy=retry_policy, cache_policy=cache_policy)

    return wrap(func) if func is not None else wrap


def _signature(
    tf: TaskFunction[Any], run: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Any]:
    """``[task name, argument hash, argument repr]``; the first two are compared."""
    registry = getattr(
        getattr(getattr(run.persistence, "saver", None), "serde", None), "registry", None
    )
    try:
        data = stable_bytes([list(args), kwargs], registry, path="task arguments")
    except Exception:
        data = None
    if data is None:
        # Arguments that cannot be serialized are compared by their types only.
        data = repr([type(a).__qualname__ for a in args] + sorted(kwargs)).encode()
    shown = ", ".join([*map(_short, args), *(f"{k}={_short(v)}" for k, v in kwargs.items())])
    return [tf.name, xxhash.xxh3_64_hexdigest(data), f"({shown})"]


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__qualname__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _call(
    tf: TaskFunction[Any], ctx: TaskContext, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> TaskFuture[Any]:
    run = ctx.run
    parent = ctx.task
    calls = ctx.calls
    if calls is None:
        calls = ctx.calls = _Calls()
    index = calls.next()
    child_id = _as_uuid(xxhash.xxh3_128_hexdigest(f"{parent.id}\x00call\x00{index}".encode()))
    signature = _signature(tf, run, args, kwargs)
    p = run.persistence
    saved = run.call_results.get(child_id)
    if saved is None and p is not None:
        saved = p.pending.get(child_id)
    if saved is not None:  # a saved call: check it is the same call, return its result
        recorded = next((v for ch, v in saved if ch == CALL), None)
        if recorded is not None and list(recorded)[:2] != signature[:2]:
            raise DeterminismError(index, recorded, signature, parent.name)
        for ch, value in saved:
            if ch == RETURN:
                return TaskFuture(_done_future(value), tf.name, ctx)
    child = Task(
        core=parent.core,
        seq=parent.seq,
        node=NodeSpec(name=tf.name, triggers=(), reads=(), proc=tf.func, is_async=tf.is_async),
        input=(args, kwargs),
        triggers=("__pregel_push",),
        path=(2, str(parent.path), index),
        step=parent.step,
        parent_ns=parent.parent_ns,
        kind=PUSH,
    )
    child._id = child_id
    if run._inst:
        from ._instrument import call

        call(run._inst, "task_start", run.info, child)
    cached = _cache_slot(tf, run, args, kwargs)
    if cached is not None:
        found = cached[0].get([cached[1]])
        if cached[1] in found:
            child.cached = True
            run.task_call_done(child, signature, result=found[cached[1]])
            return TaskFuture(_done_future(found[cached[1]]), tf.name, ctx)
    job = functools.partial(_run_child, tf, child, run, signature, args, kwargs, cached)
    if tf.is_async and _running_loop() is not None:
        fut: Any = asyncio.ensure_future(
            _arun_child(tf, child, run, signature, args, kwargs, cached)
        )
    else:
        fut = run.call_pool().submit(job)
    return TaskFuture(fut, tf.name, ctx)


def _cache_slot(
    tf: TaskFunction[Any], run: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Any, float | None] | None:
    """``(cache, key, ttl)`` for a task call with a cache policy, or None."""
    policy = tf.cache_policy
    cache = getattr(run.graph, "cache", None)
    if policy is None or cache is None:
        return None
    from ._policy import cache_key, node_identity

    key = cache_key(policy, tf.name, [list(args), kwargs], cache.key_serde)
    return cache, ((node_identity(tf.func), tf.name), key), policy.ttl


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _enter(child: Task, run: Any) -> Any:
    ctx = TaskContext(child, run, run.writer_for(child))
    p = run.persistence
    if p is not None and child.id in p.resumes:
        ctx.scratch = _Scratch(list(p.resumes[child.id]))
    return current_task.set(ctx)


def _run_child(
    tf: TaskFunction[Any],
    child: Task,
    run: Any,
    signature: list[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    cached: tuple[Any, Any, float | None] | None = None,
) -> Any:
    with _call_scope(child, run, signature) as outcome:
        result = _with_retries(tf, child, lambda: _once(tf, args, kwargs))
        if cached is not None:
            cached[0].set({cached[1]: (result, cached[2])})
        outcome.append(result)
    return result


@contextlib.contextmanager
def _call_scope(child: Task, run: Any, signature: list[Any]) -> Iterator[list[Any]]:
    """Run a task call as the current task; save and stream how it ended."""
    token = _enter(child, run)
    outcome: list[Any] = []
    try:
        yield outcome
    except GraphInterrupt as gi:
        run.task_call_done(child, signature, interrupted=gi)
        raise
    except BaseException as exc:
        run.task_call_done(child, signature, error=exc)
        raise
    finally:
        current_task.reset(token)
    run.task_call_done(child, signature, result=outcome[0])


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _run_of() -> Any:
    ctx = current_task.get()
    assert ctx is not None  # set by _enter for the call's whole run
    return ctx.run


def _once(tf: TaskFunction[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = tf.func(*args, **kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return result


def _policies(tf: TaskFunction[Any]) -> tuple[Any, ...]:
    from ._policy import RetryPolicy

    policy = tf.retry_policy
    if policy is None:
        return ()
    return (policy,) if isinstance(policy, RetryPolicy) else tuple(policy)


def _with_retries(tf: TaskFunction[Any], child: Task, attempt: Callable[[], Any]) -> Any:
    """Run a task call, retrying per its ``retry_policy`` (sync: waits in this thread)."""
    from . import _policy
    from ._runner import _retry_delay

    child.attempt = 1
    while True:
        try:
            return attempt()
        except Exception as exc:
            delay = _retry_delay(child, _run_of(), exc, _policies(tf))
            if delay is None:
                raise
        _policy._sleep(delay)
        child.attempt += 1


async def _awith_retries(tf: TaskFunction[Any], child: Task, attempt: Callable[[], Any]) -> Any:
    """The same for async task calls (waits with ``asyncio.sleep``)."""
    from . import _policy
    from ._runner import _retry_delay

    child.attempt = 1
    while True:
        try:
            return await attempt()
        except Exception as exc:
            delay = _retry_delay(child, _run_of(), exc, _policies(tf))
            if delay is None:
                raise
        await _policy._asleep(delay)
        child.attempt += 1


async def _arun_child(
    tf: TaskFunction[Any],
    child: Task,
    run: Any,
    signature: list[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    cached: tuple[Any, Any, float | None] | None = None,
) -> Any:
    with _call_scope(child, run, signature) as outcome:
        result = await _awith_retries(tf, child, lambda: tf.func(*args, **kwargs))
        if cached is not None:
            cached[0].set({cached[1]: (result, cached[2])})
        outcome.append(result)
    return result


# -- @entrypoint ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Final(Generic[T, R]):
    value: T
    save: R


class entrypoint:
    """Make a function a workflow: a runnable graph of one node that calls tasks.

    ``@entrypoint(checkpointer=...)`` returns a graph with ``invoke``, ``stream``,
    ``get_state``, ``get_state_history`` and ``update_state``, async twins included.
    The function takes the input as its first parameter and may ask for ``previous``
    (the value saved by the last run on this thread), ``config``, ``writer`` and
    ``runtime``. Returning ``entrypoint.final(value=..., save=...)`` hands ``value``
    to the caller and saves ``save`` as the next run's ``previous``.

    Args:
        checkpointer: where runs are saved (needed for ``previous``, interrupts and
            resuming without redoing finished tasks).
        name: the graph's (and node's) name; defaults to the function's name.
    """

    def __init__(
        self,
        checkpointer: Any = None,
        *,
        name: str | None = None,
        retry_policy: Any = None,
        cache_policy: Any = None,
        cache: Any = None,
    ) -> None:
        self.checkpointer = checkpointer
        self.name = name
        self.retry_policy = retry_policy
        self.cache_policy = cache_policy
        self.cache = cache

    @staticmethod
    def final(*, value: Any, save: Any) -> _Final[Any, Any]:
        """Return ``value`` to the caller, but save ``save`` as the next ``previous``."""
        return _Final(value, save)

    def __call__(self, func: Callable[..., Any]) -> Pregel:
        return build_entrypoint(self, func)


def build_entrypoint(options: entrypoint, func: Callable[..., Any]) -> Pregel:
    from ._state_compile import _check_checkpointer

    wanted = _entrypoint_params(func)
    saver = _check_checkpointer(options.checkpointer)
    name: str = options.name or str(getattr(func, "__name__", "entrypoint"))
    is_async = inspect.iscoroutinefunction(func)
    return _entrypoint_graph(options, func, wanted, saver, name, is_async)


def _entrypoint_params(func: Callable[..., Any]) -> set[str]:
    """The injectable parameters an entrypoint function asks for (checked)."""
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(f"@entrypoint cannot wrap the generator {func.__qualname__}")
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        params = []
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TypeError(
            f"@entrypoint function {getattr(func, '__qualname__', func)!r} must take the "
            "input as its first positional parameter"
        )
    wanted = {p.name for p in params[1:]}
    unknown = wanted - {"previous", "config", "writer", "runtime", "store"}
    required = [
        p.name for p in params[1:] if p.name in unknown and p.default is inspect.Parameter.empty
    ]
    if required:
        raise TypeError(
            f"@entrypoint function {func.__qualname__!r} has parameters {required} that "
            "cannot be given: it may take the input, then previous, config, writer, "
            "runtime"
        )
    return wanted


def _entrypoint_graph(
    options: entrypoint,
    func: Callable[..., Any],
    wanted: set[str],
    saver: Any,
    name: str,
    is_async: bool,
) -> Pregel:
    from ._pregel import Pregel
    from ._types import register_engine_types

    def proc(value: Any) -> Any:
        ctx = current_task.get()
        kwargs: dict[str, Any] = {}
        if "previous" in wanted:
            kwargs["previous"] = value.get(PREVIOUS)
        if ctx is not None:
            if "config" in wanted:
                kwargs["config"] = ctx.config
            if "writer" in wanted:
                kwargs["writer"] = ctx.writer
            if "runtime" in wanted:
                kwargs["runtime"] = ctx.runtime()
        if "store" in wanted:
            kwargs["store"] = None
        return func(value.get(START), **kwargs)

    def write(task: Task, output: Any) -> None:
        if isinstance(output, _Final):
            task.write(END_CHANNEL, output.value)
            task.write(PREVIOUS, output.save)
        else:
            task.write(END_CHANNEL, output)
            task.write(PREVIOUS, output)

    node = NodeSpec(
        name=name,
        triggers=(START,),
        reads=(START, PREVIOUS),
        proc=proc,
        writers=(write,),
        retry_policy=options.retry_policy,
        cache_policy=options.cache_policy,
        is_async=is_async,
    )
    graph = Pregel(
        nodes={name: node},
        channels={
            START: EphemeralValue(Any),
            END_CHANNEL: LastValue(Any),
            PREVIOUS: LastValue(Any),
        },
        input_channels=START,
        output_channels=END_CHANNEL,
        stream_channels=[END_CHANNEL],
        stream_mode="updates",
        name=name,
        checkpointer=saver if saver is not False else None,
        retry_policy=options.retry_policy,
        cache=options.cache,
    )
    if saver is False:
        graph.checkpointer = False
    registry = getattr(getattr(saver, "serde", None), "registry", None)
    if registry is not None:
        register_engine_types(registry)
    graph.stream_eager = True  # task results stream while the workflow runs
    functools.update_wrapper(graph, func, updated=())  # type: ignore[arg-type]
    return graph

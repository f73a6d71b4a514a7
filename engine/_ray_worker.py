"""The worker side of `stepgraph.engine.ray`: what runs in a Ray worker process.

`_run_on_worker` is the Ray task. It calls the node's function with a stand-in for the
driver's task context (`_WorkerContext`), so the node can read its config, runtime
and stream writer there, and it sends back the output and the custom chunks,
pickled here so that a value that cannot travel fails with an error that says so.
Whatever needs the driver's run raises `DriverOnlyError`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

import ray

from ._loop import task_config
from ._runtime import Runtime, TaskContext, _no_op_writer, current_task
from .errors import GraphRunError

# The way out of every "cannot be shipped" error.
_KEEP_IN_DRIVER = (
    "keep the node in the driver: RayExecutor(nodes=[...]) naming only the nodes to ship"
)


class DriverOnlyError(GraphRunError):
    """Node code running on a Ray worker used something only the driver has.

    ``interrupt()``, ``@task`` calls and graphs run inside a node need the run that
    lives in the driver process. So does ``get_config()``/``get_runtime()`` when the
    run's config or context could not be sent to the workers. Not retried by the
    default retry policy (a ``RuntimeError``).

    Attributes:
        node: the node that was running.
        message: the full explanation.
    """

    def __init__(self, message: str, *, node: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:  # it travels back from the worker
        # The state keeps what was attached on the way (notes, the task's chunks).
        return (_rebuild_driver_only, (self.message, self.node), self.__dict__)


def _rebuild_driver_only(message: str, node: str) -> DriverOnlyError:
    return DriverOnlyError(message, node=node)


class _TaskInfo(NamedTuple):
    """What a worker needs to know about the task besides its input (small, per task)."""

    name: str
    step: int
    attempt: int
    triggers: tuple[str, ...]
    path: tuple[Any, ...]
    namespace: str
    stream: bool  # the caller streams "custom": keep the node's chunks


class _Shared(NamedTuple):
    """The run's config and context, sent once per run."""

    config: dict[str, Any]
    limit: int
    context: Any


class _NotShipped(NamedTuple):
    """Stands in for ``_Shared`` when the run's config or context cannot be pickled."""

    reason: str


class _WorkerContext:
    """The driver's ``TaskContext`` as far as a worker can have it.

    Installed in ``current_task`` while the node runs, so ``get_config()``,
    ``get_runtime()``, ``get_stream_writer()`` and injected ``config``/``runtime``/
    ``writer`` parameters work. Everything else (``task``, ``run``, ``scratch``,
    ``calls``) belongs to the driver: touching it raises ``DriverOnlyError``.
    """

    __slots__ = ("chunks", "info", "metadata", "shared", "tags", "writer")

    def __init__(
        self,
        info: _TaskInfo,
        metadata: Mapping[str, Any],
        tags: tuple[str, ...],
        shared: _Shared | _NotShipped,
    ) -> None:
        self.info = info
        self.metadata = metadata
        self.tags = tags
        self.shared = shared
        self.chunks: list[Any] = []
        self.writer: Callable[[Any], None] = self.chunks.append if info.stream else _no_op_writer

    def _shared(self, what: str) -> _Shared:
        shared = self.shared
        if isinstance(shared, _NotShipped):
            raise DriverOnlyError(
                f"node {self.info.name!r} runs on a Ray worker and asked for {what}, but the "
                f"run's config and context could not be sent to the workers "
                f"({shared.reason}); make them picklable, or {_KEEP_IN_DRIVER}",
                node=self.info.name,
            )
        return shared

    @property
    def config(self) -> dict[str, Any]:
        shared = self._shared("its config")
        return task_config(shared.config, shared.limit, self.info, self.metadata, self.tags)

    def runtime(self) -> Runtime[Any]:
        info = self.info
        return Runtime(
            context=self._shared("its runtime context").context,
            stream_writer=self.writer,
            step=info.step,
            node=info.name,
            attempt=info.attempt,
        )

    def _driver_only(self) -> DriverOnlyError:
        name = self.info.name
        return DriverOnlyError(
            f"node {name!r} runs on a Ray worker (RayExecutor), where interrupt(), @task "
            "calls and graphs run inside a node are not available: they need the run in "
            "the driver process. Keep the node in the driver with RayExecutor(nodes=[...]) "
            f"naming only the nodes to ship (not {name!r})",
            node=name,
        )

    def _refuse(self) -> Any:
        raise self._driver_only()

    task = run = scratch = calls = property(_refuse)


# An error raised on a worker carries the custom chunks its attempt wrote (the driver
# streams them before raising it, as a thread pool would have streamed them).
_CHUNKS = "_stepgraph_chunks"


def _run_on_worker(
    node: tuple[Callable[[Any], Any], Mapping[str, Any], tuple[str, ...]],
    input: Any,
    info: _TaskInfo,
    shared: _Shared | _NotShipped,
) -> bytes:
    """The Ray task: call the node's function; return its output and its custom chunks.

    They are pickled here rather than by Ray, so that a value that cannot be sent back
    fails with an error saying so (Ray's own would read as if the node raised it).
    """
    proc, metadata, tags = node
    ctx = _WorkerContext(info, metadata, tags, shared)
    token = current_task.set(cast(TaskContext, ctx))  # duck-typed: see _WorkerContext
    try:
        output = proc(input)
    except BaseException as exc:
        if ctx.chunks:
            with contextlib.suppress(Exception):  # one that takes no attributes
                setattr(exc, _CHUNKS, ctx.chunks)
        raise
    finally:
        current_task.reset(token)
    if inspect.isawaitable(output):
        close = getattr(output, "close", None)
        if close is not None:
            close()
        raise TypeError(
            f"node {info.name!r} returned an awaitable on a Ray worker; the RayExecutor "
            "runs sync nodes only (invoke()/stream()/iter()/batch())"
        )
    try:
        return ray.cloudpickle.dumps((output, ctx.chunks))
    except Exception as exc:
        raise _unsendable(info.name, output, exc) from None


def _unsendable(node: str, output: Any, exc: Exception) -> TypeError:
    try:
        ray.cloudpickle.dumps(output)
    except Exception:
        what = "its return value"
    else:
        what = "a chunk it wrote to the custom stream"
    return TypeError(
        f"node {node!r} ran on a Ray worker, but {what} could not be sent back to the "
        f"driver ({_summary(exc)}); return only picklable values (no locks, open files, "
        f"connections or generators), or {_KEEP_IN_DRIVER}"
    )


def _summary(exc: BaseException) -> str:
    # Ray reports a pickling error as a long inspection report that chains the error
    # itself; that one says what failed. (The whole report stays chained.)
    root = exc.__cause__ if exc.__cause__ is not None else exc
    first = str(root).strip().split("\n", 1)[0]
    return f"{type(root).__name__}: {first[:300]}"

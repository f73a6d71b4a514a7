"""What a running node can ask for: its config, a stream writer, the runtime context.

The engine sets one context variable per running task. ``get_config()`` and
``get_stream_writer()`` read it, and nodes that declare a ``config``, ``writer``
or ``runtime`` parameter get the same objects passed in. The config dict is built
only when somebody asks for it, so cheap nodes pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from ._loop import RunLoop
    from ._task import Task

ContextT = TypeVar("ContextT")

StreamWriter = Callable[[Any], None]
"""A callable that sends a chunk to the ``custom`` stream."""


def _no_op_writer(chunk: Any) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Runtime(Generic[ContextT]):
    """Run-scoped things a node can declare as a ``runtime`` parameter.

    Attributes:
        context: the ``context=`` value given to ``invoke``/``stream``, coerced to
            the graph's ``context_schema`` when that is a dataclass or pydantic model.
        stream_writer: sends chunks to the ``custom`` stream mode.
        step: the superstep number of the running task.
        node: the running node's name.
        attempt: which attempt of the task this is (1 unless a retry policy retried it).
    """

    context: ContextT
    stream_writer: StreamWriter = field(default=_no_op_writer)
    step: int = 0
    node: str = ""
    attempt: int = 1


class TaskContext:
    """Per-task runtime state, reachable from node code through a context variable."""

    __slots__ = ("_config", "calls", "run", "scratch", "task", "writer")

    def __init__(self, task: Task, run: RunLoop, writer: StreamWriter) -> None:
        self.task = task
        self.run = run
        self.writer = writer
        self._config: dict[str, Any] | None = None
        self.scratch: Any = None  # interrupt() bookkeeping of this attempt, made on first use
        self.calls: Any = None  # @task call counter of this attempt, made on first use

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = self.run.task_config(self.task)
        return self._config

    def runtime(self) -> Runtime[Any]:
        return Runtime(
            context=self.run.context,
            stream_writer=self.writer,
            step=self.task.step,
            node=self.task.name,
            attempt=getattr(self.task, "attempt", 1),
        )


current_task: ContextVar[TaskContext | None] = ContextVar("stepgraph_task", default=None)


def _require(what: str) -> TaskContext:
    ctx = current_task.get()
    if ctx is None:
        raise RuntimeError(
            f"{what} can only be called while a graph node is running "
            "(inside a node function, a conditional edge, or code they call)"
        )
    return ctx


def get_config() -> dict[str, Any]:
    """The config of the running task (LangGraph's ``RunnableConfig`` shape).

    It carries ``configurable`` (``thread_id`` and your own keys), ``metadata``
    (yours plus ``langgraph_step``, ``langgraph_node``, ``langgraph_triggers``,
    ``langgraph_path`` and ``langgraph_checkpoint_ns``), ``tags`` and
    ``recursion_limit``.

    Raises:
        RuntimeError: when called outside a running node.
    """
    return _require("get_config()").config


def get_stream_writer() -> StreamWriter:
    """A callable that sends chunks to the ``custom`` stream of the current run.

    It does nothing unless the caller streams with ``stream_mode`` including
    ``"custom"``, so it is safe to call unconditionally.

    Raises:
        RuntimeError: when called outside a running node.
    """
    return _require("get_stream_writer()").writer


def get_runtime() -> Runtime[Any]:
    """The ``Runtime`` of the running task (context, stream writer, step, node).

    Raises:
        RuntimeError: when called outside a running node.
    """
    return _require("get_runtime()").runtime()

"""The lean task struct the core plans and the drivers run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._ids import task_id

if TYPE_CHECKING:
    from ._core import Core
    from ._program import NodeSpec

PULL = "pull"  # triggered by channel updates; reads its input from channels
PUSH = "push"  # created by a Send; its input is the Send's argument


class Task:
    """One node execution planned for one superstep.

    Attributes:
        id: deterministic task id.
        name: the node's name.
        node: the node spec.
        input: what the node receives (channel values, or a Send's argument).
        triggers: the channels that made it run (PULL), or ``("__pregel_push",)``.
        path: sort key for applying writes: PULL tasks by name, then PUSH by index.
        step: the superstep number.
        writes: ``(channel, value)`` pairs collected while it ran.
        namespace: the task's checkpoint namespace, ``"<node>:<task id>"`` under
            the parent's namespace.
        attempt: which attempt is running (1 for the first; retries count up).
        cached: the writes came from the cache; the node did not run.
    """

    __slots__ = (
        "_id",
        "attempt",
        "cached",
        "core",
        "input",
        "kind",
        "name",
        "node",
        "parent_ns",
        "path",
        "seq",
        "step",
        "triggers",
        "writes",
    )

    def __init__(
        self,
        *,
        core: Core,
        seq: int,
        node: NodeSpec,
        input: Any,
        triggers: tuple[str, ...],
        path: tuple[Any, ...],
        step: int,
        parent_ns: str,
        kind: str,
    ) -> None:
        self._id: str | None = None
        self.core = core
        self.seq = seq
        self.name = node.name
        self.node = node
        self.input = input
        self.triggers = triggers
        self.path = path
        self.step = step
        self.writes: list[tuple[str, Any]] = []
        self.parent_ns = parent_ns
        self.kind = kind
        self.attempt = 1
        self.cached = False

    @property
    def id(self) -> str:
        """The deterministic task id (computed on first use: cheap tasks never pay for it)."""
        if self._id is None:
            parts = self.triggers if self.kind == PULL else (str(self.path[1]),)
            ckpt = self.core.checkpoint_id_of(self.seq)
            self._id = task_id(ckpt, self.core.namespace, self.step, self.name, self.kind, *parts)
        return self._id

    @property
    def namespace(self) -> str:
        """The task's checkpoint namespace: ``"<node>:<id>"``, ``|``-joined under its parent's."""
        own = f"{self.name}:{self.id}"
        return f"{self.parent_ns}|{own}" if self.parent_ns else own

    def write(self, channel: str, value: Any) -> None:
        """Record a write; it is applied at the barrier that ends the superstep."""
        self.writes.append((channel, value))

    def read_fresh(self, select: Sequence[str] | str) -> Any:
        """Read channels as this task's own writes so far would leave them."""
        return self.core.read_fresh(self, select)

    def __repr__(self) -> str:
        return f"Task(name={self.name!r}, step={self.step}, id={self.id!r})"

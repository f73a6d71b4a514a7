"""Core value types of the authoring API: START, END, Send, Command."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

START: str = sys.intern("__start__")
"""The virtual node a graph starts from; edges from START pick the first nodes."""

END: str = sys.intern("__end__")
"""The virtual node a graph ends at; edges to END stop a branch."""

# Reserved channel names. They start with "__" so they can never clash with a
# state key a user declares (compile() rejects user keys with that prefix).
TASKS = "__pregel_tasks"  # Topic of Send packets, consumed by the next superstep
INPUT = START  # the channel the input is written to

StreamMode = Literal["values", "updates", "custom", "tasks", "debug", "checkpoints"]
STREAM_MODES: frozenset[str] = frozenset(
    ("values", "updates", "custom", "tasks", "debug", "checkpoints")
)


class Send:
    """A packet that runs ``node`` with ``arg`` as its input in the next superstep.

    Return Sends from a conditional edge (or in ``Command(goto=...)``) to fan out:
    each Send becomes its own task, so ``[Send("grade", x) for x in items]`` runs
    ``grade`` once per item, in parallel. The argument is passed as is, not read
    from the graph state.

    Example:
        >>> Send("grade", {"essay": "..."})
        Send(node='grade', arg={'essay': '...'})
    """

    __slots__ = ("arg", "node")

    def __init__(self, node: str, arg: Any) -> None:
        self.node = node
        self.arg = arg

    def __repr__(self) -> str:
        return f"Send(node={self.node!r}, arg={self.arg!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Send) and self.node == other.node and self.arg == other.arg

    def __hash__(self) -> int:
        try:
            return hash((self.node, self.arg))
        except TypeError:
            return hash(self.node)


N = TypeVar("N")


@dataclass(frozen=True, kw_only=True, slots=True)
class Command(Generic[N]):
    """What a node returns to update state and choose where to go next, in one value.

    Annotate a node ``-> Command[Literal["a", "b"]]`` to declare where it can go
    (used to check the graph and to draw it).

    Attributes:
        update: state updates, as a node would return them (a dict, a list of
            ``(key, value)`` pairs, or a pydantic/dataclass instance of the state).
        goto: a node name, a ``Send``, or a sequence of either: where to go next.
            ``END`` is allowed and means "nowhere".
        graph: ``None`` for the current graph, or ``Command.PARENT`` to hand the
            command to the graph that runs this (sub)graph as a node.
        resume: the value(s) that answer pending interrupts.
    """

    PARENT: ClassVar[Literal["__parent__"]] = "__parent__"

    update: Any | None = None
    goto: str | Send | Sequence[str | Send] = ()
    graph: str | None = None
    resume: Any | None = None

    def goto_targets(self) -> tuple[str | Send, ...]:
        """The ``goto`` value as a tuple of node names and Sends (END removed)."""
        goto = self.goto
        if isinstance(goto, str | Send):
            items: tuple[str | Send, ...] = (goto,)
        else:
            items = tuple(goto)
        return tuple(g for g in items if g != END)

    def update_items(self) -> list[tuple[str, Any]] | None:
        """The ``update`` value as ``(key, value)`` pairs, or None if it is not key-shaped."""
        upd = self.update
        if upd is None:
            return []
        if isinstance(upd, dict):
            return list(upd.items())
        if isinstance(upd, list | tuple) and all(
            isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], str) for t in upd
        ):
            return list(upd)
        return None


def is_send_list(value: object) -> bool:
    """True for a non-empty list/tuple made only of ``Send`` objects."""
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(v, Send) for v in value)
    )


def register_engine_types(registry: Any = None) -> None:
    """Allow the engine's own types in ``registry`` (default: the process-wide one).

    Sends wait in the task topic between steps and Commands can be resume input: both
    are saved in checkpoints, so both must load again.
    """
    from stepgraph.checkpoint import default_registry

    registry = default_registry() if registry is None else registry
    if Send not in registry:
        registry.register(
            Send,
            name="stepgraph.Send",
            encode=lambda s: [s.node, s.arg],
            decode=lambda v: Send(v[0], v[1]),
        )
    from ._interrupt import Interrupt

    if Interrupt not in registry:
        registry.register(
            Interrupt,
            name="stepgraph.Interrupt",
            encode=lambda i: [i.value, i.id],
            decode=lambda v: Interrupt(v[0], v[1]),
        )
    if Command not in registry:
        registry.register(
            Command,
            name="stepgraph.Command",
            encode=lambda c: {
                "update": c.update,
                "goto": c.goto,
                "graph": c.graph,
                "resume": c.resume,
            },
            decode=lambda v: Command(**v),
        )


register_engine_types()

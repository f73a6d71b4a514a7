"""The compiled, immutable description of a graph that the superstep core runs.

A ``Program`` is what every authoring API (``StateGraph``, ``NodeBuilder``, later
``@entrypoint``) compiles into. Everything that can be computed once is computed
here, so that a superstep never scans all nodes or all channels:

* ``trigger_to_nodes``: which nodes each channel can trigger;
* ``consume_channels`` / ``finish_channels``: the only channels whose ``consume()``
  or ``finish()`` do anything (barriers and after-finish channels);
* the channel specs, from which each run makes its own channel instances lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from stepgraph.channels import BaseChannel

if TYPE_CHECKING:
    from ._task import Task


Writer = Callable[["Task", Any], Any]
"""Turns a task's output into channel writes (``task.write(channel, value)``); may
return an awaitable, which the async driver awaits."""


class ManagedValue(Protocol):
    """A value computed for a node at read time instead of stored in a channel."""

    @staticmethod
    def compute(step: int, stop: int) -> Any: ...


@dataclass(frozen=True, slots=True, eq=False)
class NodeSpec:
    """One node of a compiled program.

    Attributes:
        name: unique node name.
        triggers: channels whose update makes the node run.
        reads: the channel(s) read as the node's input: one name gives the bare
            value, a tuple gives a dict of the available ones.
        proc: the node's function, called with the (mapped) input; may be async.
        mapper: turns the raw input dict of a PULL task into what ``proc`` expects
            (for example a pydantic model), or None; applied when the task is planned.
        writers: run after ``proc``, in order, to turn its output into writes.
        managed: state keys computed at read time (remaining steps, last step).
        hidden: internal node (START), left out of streams and drawings.
        subgraph: the compiled graph, when the node is a graph used as a node.
        metadata: user metadata, passed to ``get_config()``.
        retry_policy: a ``RetryPolicy`` or a sequence of them (the first whose
            ``retry_on`` matches an error decides), or None for the graph's default.
        cache_policy: a ``CachePolicy``, used with the graph's cache.
        timeout: seconds one attempt of an async node may take, or None.
    """

    name: str
    triggers: tuple[str, ...]
    reads: str | tuple[str, ...]
    proc: Callable[..., Any]
    mapper: Callable[[Any], Any] | None = None
    writers: tuple[Writer, ...] = ()
    managed: Mapping[str, type[ManagedValue]] = field(default_factory=dict)
    hidden: bool = False
    subgraph: Any | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    retry_policy: Any | None = None
    cache_policy: Any | None = None
    is_async: bool = False
    timeout: float | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Program:
    """A compiled graph: node specs, channel specs and the indexes the core needs."""

    nodes: Mapping[str, NodeSpec]
    channels: Mapping[str, BaseChannel[Any, Any, Any]]
    input_channels: str | tuple[str, ...]
    output_channels: str | tuple[str, ...]
    stream_channels: tuple[str, ...]
    trigger_to_nodes: Mapping[str, tuple[str, ...]]
    consume_channels: frozenset[str]
    finish_channels: tuple[str, ...]
    clearing_channels: frozenset[str]

    @classmethod
    def build(
        cls,
        nodes: Mapping[str, NodeSpec],
        channels: Mapping[str, BaseChannel[Any, Any, Any]],
        input_channels: str | Sequence[str],
        output_channels: str | Sequence[str],
        stream_channels: Sequence[str] | None = None,
    ) -> Program:
        """Compute the indexes once and freeze everything."""
        # Triggers are kept sorted: they are part of task ids and must not depend
        # on declaration order.
        nodes = {k: replace(n, triggers=tuple(sorted(n.triggers))) for k, n in nodes.items()}
        t2n: dict[str, list[str]] = {}
        for name in sorted(nodes):
            for ch in nodes[name].triggers:
                t2n.setdefault(ch, []).append(name)
        consume = frozenset(
            k for k, c in channels.items() if type(c).consume is not BaseChannel.consume
        )
        finish = tuple(
            sorted(k for k, c in channels.items() if type(c).finish is not BaseChannel.finish)
        )
        clearing = frozenset(
            k for k, c in channels.items() if getattr(c, "clears_on_empty_update", False)
        )
        outs = output_channels if isinstance(output_channels, str) else tuple(output_channels)
        if stream_channels is None:
            stream = (outs,) if isinstance(outs, str) else outs
        else:
            stream = tuple(stream_channels)
        return cls(
            nodes=dict(nodes),
            channels=dict(channels),
            input_channels=(
                input_channels if isinstance(input_channels, str) else tuple(input_channels)
            ),
            output_channels=outs,
            stream_channels=stream,
            trigger_to_nodes={k: tuple(v) for k, v in t2n.items()},
            consume_channels=consume,
            finish_channels=finish,
            clearing_channels=clearing,
        )

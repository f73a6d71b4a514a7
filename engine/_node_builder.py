"""``NodeBuilder``: the low-level way to define a node without ``StateGraph``.

A node subscribes to channels (its triggers), reads channels, runs functions and
writes its result to channels::

    node = (
        NodeBuilder()
        .subscribe_only("numbers")          # run when "numbers" changes; input = its value
        .do(lambda xs: sum(xs))             # functions run in order, each on the last's result
        .write_to("total", doubled=lambda s: s * 2)
    )
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._program import NodeSpec

if TYPE_CHECKING:
    from ._task import Task


class NodeBuilder:
    """Fluent builder of a low-level node; ``Pregel(nodes={name: builder})`` builds it."""

    def __init__(self) -> None:
        self._triggers: list[str] = []
        self._reads: str | list[str] | None = None
        self._funcs: list[Callable[[Any], Any]] = []
        self._writes: list[tuple[str, Any]] = []
        self._tags: list[str] = []
        self._metadata: dict[str, Any] = {}
        self._retry: Any = None
        self._cache: Any = None

    def subscribe_only(self, channel: str) -> NodeBuilder:
        """Run when ``channel`` is updated; the input is that channel's bare value."""
        if self._reads is not None:
            raise ValueError("subscribe_only() must be the only subscription of a node")
        self._triggers.append(channel)
        self._reads = channel
        return self

    def subscribe_to(self, *channels: str, read: bool = True) -> NodeBuilder:
        """Run when any of ``channels`` is updated; the input is a dict of channels read."""
        if isinstance(self._reads, str):
            raise ValueError("subscribe_to() cannot follow subscribe_only()")
        self._triggers.extend(channels)
        if read:
            self._reads = [*(self._reads or []), *channels]
        return self

    def read_from(self, *channels: str) -> NodeBuilder:
        """Also read ``channels`` into the input dict, without being triggered by them."""
        if isinstance(self._reads, str):
            raise ValueError(
                "read_from() cannot follow subscribe_only(): the input is a bare value"
            )
        self._reads = [*(self._reads or []), *channels]
        return self

    def do(self, func: Callable[[Any], Any]) -> NodeBuilder:
        """Add a function; functions run in order, each getting the previous result."""
        self._funcs.append(func)
        return self

    def write_to(self, *channels: str, **mapped: Any) -> NodeBuilder:
        """Write the result to ``channels``; ``name=value`` writes a fixed value, or
        ``name=callable`` writes ``callable(result)``. A ``None`` result writes nothing,
        so a node stops a cycle by returning None."""
        self._writes += [(ch, _PASSTHROUGH) for ch in channels]
        self._writes += list(mapped.items())
        return self

    def meta(self, *tags: str, **metadata: Any) -> NodeBuilder:
        """Attach tags and metadata, visible to the node through ``get_config()``."""
        self._tags += tags
        self._metadata.update(metadata)
        return self

    def add_retry_policies(self, *policies: Any) -> NodeBuilder:
        """Attach retry policies (applied by the retry feature)."""
        self._retry = policies
        return self

    def add_cache_policy(self, policy: Any) -> NodeBuilder:
        """Attach a cache policy (applied by the caching feature)."""
        self._cache = policy
        return self

    def build(self, name: str) -> NodeSpec:
        """Freeze into a node spec named ``name``."""
        if not self._triggers:
            raise ValueError(f"node {name!r} subscribes to no channel, so it could never run")
        reads: str | tuple[str, ...] = (
            self._reads if isinstance(self._reads, str) else tuple(dict.fromkeys(self._reads or ()))
        )
        funcs = tuple(self._funcs)
        is_async = any(inspect.iscoroutinefunction(f) for f in funcs)
        return NodeSpec(
            name=name,
            triggers=tuple(dict.fromkeys(self._triggers)),
            reads=reads,
            proc=_chain(funcs),
            writers=(_ChannelWriter(tuple(self._writes)),) if self._writes else (),
            tags=tuple(self._tags),
            metadata=dict(self._metadata),
            retry_policy=self._retry,
            cache_policy=self._cache,
            is_async=is_async,
        )


_PASSTHROUGH = object()


def _chain(funcs: Sequence[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    if not funcs:
        return _identity
    if len(funcs) == 1:
        return funcs[0]
    if not any(inspect.iscoroutinefunction(f) for f in funcs):

        def run(value: Any) -> Any:
            for f in funcs:
                value = f(value)
            return value

        return run

    async def arun(value: Any) -> Any:
        for f in funcs:
            value = f(value)
            if inspect.isawaitable(value):
                value = await value
        return value

    return arun


def _identity(value: Any) -> Any:
    return value


class _ChannelWriter:
    __slots__ = ("entries",)

    def __init__(self, entries: tuple[tuple[str, Any], ...]) -> None:
        self.entries = entries

    def __call__(self, task: Task, output: Any) -> None:
        if output is None:
            return
        for channel, how in self.entries:
            if how is _PASSTHROUGH:
                value = output
            elif callable(how):
                value = how(output)
            else:
                value = how
            task.write(channel, value)

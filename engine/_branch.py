"""Conditional edges: a path function picks where to go after a node ran."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

from stepgraph.channels import InvalidUpdateError

from ._types import END, START, TASKS, Send
from ._util import call_with_injection, injection_for

if TYPE_CHECKING:
    from ._task import Task


def literal_destinations(func: Callable[..., Any]) -> tuple[str, ...] | None:
    """Node names from a ``Literal[...]`` (or ``Command[Literal[...]]``) return annotation."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        hints = getattr(func, "__annotations__", {}) or {}
    ret = hints.get("return")
    if ret is None:
        return None
    return _literal_names(ret)


def _literal_names(ann: Any) -> tuple[str, ...] | None:
    origin = get_origin(ann)
    if origin is Literal:
        return tuple(a for a in get_args(ann) if isinstance(a, str))
    names: list[str] = []
    found = False
    for arg in get_args(ann):  # unions, Command[Literal[...]], list[Literal[...]]
        sub = _literal_names(arg)
        if sub is not None:
            found = True
            names.extend(sub)
    return tuple(dict.fromkeys(names)) if found else None


@dataclass(frozen=True)
class Branch:
    """A conditional edge from one node.

    Attributes:
        source: the node it leaves from (or START).
        name: the branch's name (the path function's name).
        path: the path function; gets the state, returns node name(s) or Send(s).
        path_map: maps path results to node names, or None for "results are names".
        ends: every destination the branch can reach, for validation and drawing,
            or None when unknown (no path_map and no ``Literal`` annotation).
    """

    source: str
    name: str
    path: Callable[..., Any]
    path_map: dict[Hashable, str] | None
    ends: tuple[str, ...] | None

    @classmethod
    def create(
        cls,
        source: str,
        path: Callable[..., Any],
        path_map: dict[Hashable, str] | Sequence[str] | None,
    ) -> Branch:
        name = getattr(path, "__name__", type(path).__name__)
        if name == "<lambda>":
            name = "condition"
        mapping: dict[Hashable, str] | None
        if path_map is None:
            mapping = None
            ends = literal_destinations(path)
        elif isinstance(path_map, dict):
            mapping = dict(path_map)
            ends = tuple(dict.fromkeys(mapping.values()))
        else:
            mapping = {p: p for p in path_map}
            ends = tuple(path_map)
        return cls(source, name, path, mapping, ends)

    def writer(
        self,
        state_keys: Sequence[str],
        to_state: Callable[[Any], Any] | None,
        nodes: frozenset[str],
        managed: Mapping[str, Any],
    ) -> Callable[[Task, Any], Any]:
        """The node writer that evaluates this branch after its source node ran.

        The path function sees the state as the source node's own writes left it,
        plus the managed values (remaining steps, last step) of that superstep.
        """
        inject = injection_for(self.path)
        branch = self

        def write(task: Task, output: Any) -> Any:
            state = task.read_fresh(state_keys)
            for key, manager in managed.items():
                state[key] = manager.compute(task.step, task.core.stop)
            if to_state is not None:
                state = to_state(state)
            result = call_with_injection(branch.path, state, inject)
            if inspect.isawaitable(result):
                return _finish_async(branch, task, result, nodes)
            branch.route(task, result, nodes)
            return None

        return write

    def route(self, task: Task, result: Any, nodes: frozenset[str]) -> None:
        """Turn a path result into writes: trigger nodes, or queue Sends."""
        items = result if isinstance(result, list | tuple) else [result]
        for item in items:
            if isinstance(item, Send):
                if item.node == END:
                    raise InvalidUpdateError(
                        TASKS,
                        f"branch {self.name!r} of node {self.source!r} sent a packet to END",
                        "Send packets only to nodes; return END (not a Send) to stop",
                    )
                task.write(TASKS, item)
                continue
            dest = self._map(item, nodes)
            if dest != END:
                task.write(f"branch:to:{dest}", None)

    def _map(self, item: Any, nodes: frozenset[str]) -> str:
        if self.path_map is not None:
            try:
                dest = self.path_map[item]
            except (KeyError, TypeError):
                raise ValueError(
                    f"branch {self.name!r} of node {self.source!r} returned {item!r}, which is "
                    f"not in its path_map (keys: {list(self.path_map)!r})"
                ) from None
        else:
            dest = item
        if dest is None or dest == START or not isinstance(dest, str):
            raise ValueError(
                f"branch {self.name!r} of node {self.source!r} returned {item!r}; a path "
                "function must return a node name, END, a Send, or a list of those"
            )
        if dest != END and dest not in nodes:
            raise ValueError(
                f"branch {self.name!r} of node {self.source!r} returned {dest!r}, which is not "
                f"a node of this graph (nodes: {sorted(nodes)!r})"
            )
        return dest


async def _finish_async(branch: Branch, task: Task, result: Any, nodes: frozenset[str]) -> None:
    branch.route(task, await result, nodes)

"""``StateGraph``: build a graph of nodes that read and update a shared state.

The builder only records what you declare; problems are collected and reported
together by ``compile()`` in one ``GraphBuildError``, so a single run shows
everything that needs fixing.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._branch import Branch, literal_destinations
from ._schema import Schema, is_schema
from ._types import END, START

if TYPE_CHECKING:
    from stepgraph.checkpoint import BaseCache

    from ._policy import CachePolicy, RetryPolicy
    from ._state_compile import CompiledStateGraph


@dataclass
class NodeDef:
    """A node as declared with ``add_node``."""

    name: str
    action: Any
    input_schema: type | None = None
    defer: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    retry_policy: Any = None
    cache_policy: Any = None
    destinations: tuple[str, ...] | None = None
    timeout: float | None = None
    writes: tuple[str, ...] | None = None


class StateGraph:
    """A graph whose nodes read the state and return updates to it.

    Args:
        state_schema: a TypedDict, dataclass or pydantic model; each key is a
            channel (``Annotated[T, reducer]`` merges concurrent updates).
        context_schema: the type of the run-scoped ``context=`` value.
        input_schema: the keys the graph accepts as input (default: the state).
        output_schema: the keys the graph returns (default: the state).

    Example:
        >>> import operator
        >>> from typing import Annotated, TypedDict
        >>> class State(TypedDict):
        ...     steps: Annotated[list[str], operator.add]
        >>> g = StateGraph(State)
        >>> g.add_node("hello", lambda s: {"steps": ["hello"]})
        <...StateGraph object at ...>
        >>> g.add_edge(START, "hello")
        <...StateGraph object at ...>
        >>> g.compile().invoke({"steps": []})
        {'steps': ['hello']}
    """

    def __init__(
        self,
        state_schema: type,
        context_schema: type | None = None,
        *,
        input_schema: type | None = None,
        output_schema: type | None = None,
    ) -> None:
        self.problems: list[str] = []
        self.state_schema = state_schema
        self.context_schema = context_schema
        self.input_schema = input_schema or state_schema
        self.output_schema = output_schema or state_schema
        self.schemas: dict[type, Schema] = {}
        for schema in (state_schema, self.input_schema, self.output_schema):
            self._add_schema(schema)
        self.nodes: dict[str, NodeDef] = {}
        self.edges: set[tuple[str, str]] = set()
        self.waiting_edges: set[tuple[tuple[str, ...], str]] = set()
        self.branches: dict[str, dict[str, Branch]] = {}
        self.compiled = False

    def _add_schema(self, schema: type) -> None:
        if schema in self.schemas:
            return
        if not is_schema(schema):
            self.problems.append(
                f"{schema!r} is not a state schema: use a TypedDict, a dataclass or a "
                "pydantic model whose annotations name the state keys"
            )
            return
        self.schemas[schema] = Schema(schema)

    # -- nodes --------------------------------------------------------------------

    def add_node(
        self,
        node: str | Callable[..., Any] | Any,
        action: Callable[..., Any] | Any | None = None,
        *,
        defer: bool = False,
        metadata: dict[str, Any] | None = None,
        input_schema: type | None = None,
        retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
        cache_policy: CachePolicy | None = None,
        destinations: dict[str, str] | Sequence[str] | None = None,
        timeout: float | None = None,
        writes: Sequence[str] | None = None,
    ) -> StateGraph:
        """Add a node: ``add_node(fn)`` (named after the function) or ``add_node(name, fn)``.

        Args:
            node: the node's name, or the function itself.
            action: the function (sync or async) or a compiled graph (a subgraph).
            defer: run the node only when the run would otherwise end (after every
                other pending branch finished).
            metadata: passed to the node's config (``get_config()["metadata"]``).
            input_schema: the state keys the node reads; inferred from the first
                parameter's type annotation when that is a schema class.
            retry_policy: a ``RetryPolicy``, or a sequence of them (the first whose
                ``retry_on`` matches an error decides); default: the graph's
                ``compile(retry_policy=...)``, else no retries.
            cache_policy: a ``CachePolicy``: reuse the node's writes for an input
                seen before (needs ``compile(cache=...)``).
            destinations: for nodes that route with ``Command(goto=...)``: where
                they can go (used for validation and drawing).
            timeout: seconds one attempt of an async node (or subgraph) may run
                before it is cancelled with ``NodeTimeoutError``; the async driver
                enforces it. Sync function nodes cannot have one.
            writes: the state keys the node writes, for ``compile()``'s static
                analysis (default: from a TypedDict return annotation, else unknown).
        """
        if action is None:
            action = node
            name = _callable_name(node)
            if name is None:
                self.problems.append(
                    f"cannot infer a name for node {node!r}; use add_node('name', action)"
                )
                return self
        elif isinstance(node, str):
            name = node
        else:
            self.problems.append(f"add_node() got {node!r} as the name; pass a string")
            return self
        if self.compiled:
            self.problems.append(f"node {name!r} was added after compile(); compile again")
        self._check_name(name)
        if name in self.nodes:
            self.problems.append(f"node {name!r} is added twice; node names must be unique")
            return self
        if input_schema is None:
            input_schema = _first_param_schema(action)
        if input_schema is not None:
            self._add_schema(input_schema)
        written: tuple[str, ...] | None = None
        if writes is not None:
            written = (writes,) if isinstance(writes, str) else tuple(writes)
            self._check_writes(name, written)
        if destinations is None:
            found = literal_destinations(action) if callable(action) else None
            dests = tuple(found) if found else None
        else:
            dests = tuple(destinations)
        self.nodes[name] = NodeDef(
            name=name,
            action=action,
            input_schema=input_schema,
            defer=defer,
            metadata=dict(metadata or {}),
            retry_policy=retry_policy,
            cache_policy=cache_policy,
            destinations=dests,
            timeout=timeout,
            writes=written,
        )
        return self

    def _check_writes(self, name: str, writes: tuple[str, ...]) -> None:
        known = {k for schema in self.schemas.values() for k in schema.keys}
        unknown = [k for k in writes if k not in known]
        if unknown:
            self.problems.append(
                f"add_node({name!r}, writes=...) names {unknown!r}, which are not state keys "
                f"(state keys: {sorted(known)!r})"
            )

    def _check_name(self, name: str) -> None:
        if name in (START, END):
            self.problems.append(f"{name!r} is reserved and cannot be a node name")
        elif "|" in name or ":" in name:
            self.problems.append(
                f"node name {name!r} contains '|' or ':', which separate namespaces; rename it"
            )
        elif name.startswith("__"):
            self.problems.append(f"node name {name!r} starts with '__', which is reserved")

    def add_sequence(
        self, nodes: Sequence[Callable[..., Any] | tuple[str, Callable[..., Any]]]
    ) -> StateGraph:
        """Add nodes and chain them with edges, in order."""
        if not nodes:
            self.problems.append("add_sequence() needs at least one node")
            return self
        previous: str | None = None
        for item in nodes:
            if isinstance(item, tuple):
                name, fn = item
            else:
                name, fn = _callable_name(item) or repr(item), item
            self.add_node(name, fn)
            if previous is not None:
                self.add_edge(previous, name)
            previous = name
        return self

    # -- edges --------------------------------------------------------------------

    def add_edge(self, start_key: str | Sequence[str], end_key: str) -> StateGraph:
        """Run ``end_key`` after ``start_key``; a list of starts makes a join.

        With a list, ``end_key`` runs once all of the listed nodes have run (they
        may finish in different supersteps).
        """
        if self.compiled:
            self.problems.append(f"edge to {end_key!r} was added after compile(); compile again")
        if isinstance(start_key, str):
            if start_key == END:
                self.problems.append("END cannot be the start of an edge")
            if end_key == START:
                self.problems.append("START cannot be the end of an edge")
            self.edges.add((start_key, end_key))
            return self
        starts = tuple(start_key)
        if not starts:
            self.problems.append(f"add_edge() got an empty list of starts for {end_key!r}")
        for s in starts:
            if s == START:
                self.problems.append("START cannot be part of a join edge")
            if s == END:
                self.problems.append("END cannot be the start of an edge")
        if end_key in (START, END):
            self.problems.append(f"a join edge cannot end at {end_key!r}")
        self.waiting_edges.add((starts, end_key))
        return self

    def add_conditional_edges(
        self,
        source: str,
        path: Callable[..., Any],
        path_map: dict[Hashable, str] | Sequence[str] | None = None,
    ) -> StateGraph:
        """After ``source`` runs, call ``path(state)`` to choose the next node(s).

        ``path`` returns a node name, END, a ``Send``, or a list of those.
        ``path_map`` maps its results to node names (a dict), or lists the possible
        names; without it, a ``Literal[...]`` return annotation declares them.
        """
        branch = Branch.create(source, path, path_map)
        existing = self.branches.setdefault(source, {})
        if branch.name in existing:
            self.problems.append(
                f"node {source!r} already has a conditional edge named {branch.name!r}; "
                "use a different path function"
            )
        existing[branch.name] = branch
        return self

    def set_entry_point(self, key: str) -> StateGraph:
        """Same as ``add_edge(START, key)``."""
        return self.add_edge(START, key)

    def set_conditional_entry_point(
        self, path: Callable[..., Any], path_map: dict[Hashable, str] | Sequence[str] | None = None
    ) -> StateGraph:
        """Same as ``add_conditional_edges(START, path, path_map)``."""
        return self.add_conditional_edges(START, path, path_map)

    def set_finish_point(self, key: str) -> StateGraph:
        """Same as ``add_edge(key, END)``."""
        return self.add_edge(key, END)

    # -- compile ------------------------------------------------------------------

    def compile(
        self,
        checkpointer: Any = None,
        *,
        cache: BaseCache | None = None,
        retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        debug: bool = False,
        name: str | None = None,
        strict: bool = False,
    ) -> CompiledStateGraph:
        """Validate the graph and return a runnable ``CompiledStateGraph``.

        Args:
            checkpointer: where runs save their steps (``InMemorySaver()``,
                ``SqliteSaver(path)``); None lets a subgraph save through its parent.
            cache: where nodes with a ``cache_policy`` keep their results
                (``InMemoryCache()``, ``SqliteCache(path)``); required if any has one.
            retry_policy: the ``RetryPolicy`` (or sequence of them) of every node that
                has none of its own.
            interrupt_before / interrupt_after: nodes to pause before or after.
            name: the graph's name.
            strict: report the static analysis' findings (nodes that cannot reach
                END, keys written concurrently without a reducer, keys written and
                never read) as problems of the ``GraphBuildError`` instead of as
                ``GraphWarning`` warnings.

        Raises:
            GraphBuildError: listing every problem found, not just the first.
        """
        from ._state_compile import compile_state_graph

        compiled = compile_state_graph(
            self,
            checkpointer=checkpointer,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            name=name or "LangGraph",
            cache=cache,
            retry_policy=retry_policy,
            strict=strict,
        )
        self.compiled = True
        return compiled


def _callable_name(obj: Any) -> str | None:
    name = getattr(obj, "name", None) if not callable(obj) or hasattr(obj, "program") else None
    if isinstance(name, str) and name:
        return name
    name = getattr(obj, "__name__", None)
    if isinstance(name, str) and name != "<lambda>":
        return name
    return None


def _first_param_schema(action: Any) -> type | None:
    if not callable(action) or hasattr(action, "program"):
        return None
    try:
        hints = typing.get_type_hints(action, include_extras=True)
        import inspect

        params = list(inspect.signature(action).parameters)
    except Exception:
        return None
    if not params:
        return None
    ann = hints.get(params[0])
    return ann if is_schema(ann) else None

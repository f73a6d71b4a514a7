"""Lowering a ``StateGraph`` into a ``Program`` of nodes and channels.

* every state key becomes a channel (see ``_schema``);
* every node ``n`` gets a trigger channel ``branch:to:n``; an edge ``a -> n`` makes
  ``a`` write to it, and a deferred node's trigger only fires when the run would
  otherwise end (``LastValueAfterFinish``);
* a join ``[a, b] -> n`` is a ``NamedBarrierValue`` channel ``join:a+b:n`` that ``a``
  and ``b`` each write their name into; ``n`` runs once it has seen both;
* START is a hidden node triggered by the input channel ``__start__``: it checks the
  input and writes it into the state, then follows START's edges;
* ``Send`` packets go to the ``__pregel_tasks`` topic and become tasks next step.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import networkx as nx
from pydantic import BaseModel, ValidationError

from stepgraph.channels import (
    EphemeralValue,
    LastValueAfterFinish,
    NamedBarrierValue,
    NamedBarrierValueAfterFinish,
    Topic,
)
from stepgraph.checkpoint import BaseCache, BaseCheckpointSaver

from ._analysis import analyze, report
from ._policy import NodePolicies, RetryPolicy, policy_problems
from ._pregel import Pregel
from ._program import NodeSpec, Program, Writer
from ._runtime import current_task
from ._schema import PydanticValidator, Schema, is_pydantic, merge_channels
from ._types import END, START, TASKS, Command, Send, is_send_list, register_engine_types
from ._util import call_with_injection, injection_for, is_async_callable
from .errors import GraphBuildError, InvalidInputError, InvalidNodeReturnError, ParentCommand

if TYPE_CHECKING:
    from stepgraph.channels import BaseChannel

    from ._state import NodeDef, StateGraph
    from ._task import Task


class CompiledStateGraph(Pregel):
    """A compiled ``StateGraph``: run it with ``invoke``/``stream`` (or async twins)."""

    default_stream_mode = "updates"

    def __init__(
        self,
        builder: StateGraph,
        program: Program,
        *,
        name: str,
        input_keys: tuple[str, ...],
        input_schema: Schema,
        interrupt_before: Sequence[str],
        interrupt_after: Sequence[str],
    ) -> None:
        self.builder = builder
        self.program = program
        self.name = name
        self.input_keys = input_keys
        self._input_schema = input_schema
        self.interrupt_before = tuple(interrupt_before)
        self.interrupt_after = tuple(interrupt_after)
        self.default_stream_mode = "updates"

    def _input_writes(self, input: Any) -> list[tuple[str, Any]]:
        if isinstance(input, Command):
            return self._command_input(input)
        return super()._input_writes(input)

    def _command_input(self, cmd: Command) -> list[tuple[str, Any]]:
        if cmd.resume is not None:
            raise InvalidInputError(
                "Command(resume=...) continues an interrupted run, which needs a "
                "checkpointer; compile the graph with one"
            )
        if cmd.graph == Command.PARENT:
            raise InvalidInputError("Command(graph=Command.PARENT) cannot be a graph's input")
        writes: list[tuple[str, Any]] = []
        writer = _StateWriter(
            START,
            keys=frozenset(self.program.stream_channels),
            schemas=tuple(self.builder.schemas.values()),
            nodes=frozenset(self.builder.nodes),
            validator=None,
        )
        updates, gotos = writer.parse(cmd, step=-1)
        writes += updates
        for g in gotos:
            writes.append((TASKS, g) if isinstance(g, Send) else (f"branch:to:{g}", None))
        if not writes:
            from .errors import EmptyInputError

            raise EmptyInputError("received an empty Command as input: give update or goto")
        return writes

    def _map_update(self, writes: Sequence[tuple[str, Any]], keys: str | tuple[str, ...]) -> Any:
        pairs = [(ch, v) for ch, v in writes if ch in keys]
        if not pairs:
            return None
        names = [ch for ch, _ in pairs]
        if len(set(names)) < len(names):
            return [{ch: v} for ch, v in pairs]
        return dict(pairs)

    def _coerce_context(self, context: Any) -> Any:
        schema = self.builder.context_schema
        if isinstance(context, dict) and schema is not None:
            if is_pydantic(schema):
                return schema.model_validate(context)
            if dataclasses.is_dataclass(schema):
                return schema(**context)
        return context


def compile_state_graph(
    builder: StateGraph,
    *,
    checkpointer: Any,
    interrupt_before: Sequence[str] | str | None,
    interrupt_after: Sequence[str] | str | None,
    name: str,
    cache: BaseCache | None = None,
    retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
    strict: bool = False,
) -> CompiledStateGraph:
    saver = _check_checkpointer(checkpointer)
    channels, managed, problems = merge_channels(builder.schemas)
    problems = [*builder.problems, *problems]
    before = _interrupt_names(interrupt_before, builder, "interrupt_before", problems)
    after = _interrupt_names(interrupt_after, builder, "interrupt_after", problems)
    if (before or after) and saver is False:
        problems.append(
            "interrupt_before/interrupt_after pause the run and resume it later, which needs "
            "a checkpointer, but this graph was compiled with checkpointer=False"
        )
    problems += policy_problems(
        [
            NodePolicies(
                n.name,
                n.retry_policy,
                n.cache_policy,
                n.timeout,
                isinstance(n.action, Pregel) or is_async_callable(n.action),
            )
            for n in builder.nodes.values()
        ],
        retry_policy,
        cache,
    )
    problems += _validate(builder, channels)
    if not problems:  # static analysis of a valid graph: warnings, or problems if strict
        findings = analyze(builder, channels)
        if strict:
            problems += [f.message for f in findings]
        else:
            report(findings, graph=f"graph {name!r}")
    if problems:
        raise GraphBuildError(problems, graph=f"graph {name!r}")
    program = _lower(builder, channels, managed)
    input_schema = builder.schemas[builder.input_schema]
    if isinstance(saver, BaseCheckpointSaver):
        _register_types(saver, builder)
    if cache is not None:
        _register_types(cache, builder)  # cached writes hold the graph's types too
    compiled = CompiledStateGraph(
        builder,
        program,
        name=name,
        input_keys=input_schema.keys,
        input_schema=input_schema,
        interrupt_before=before,
        interrupt_after=after,
    )
    compiled.checkpointer = (
        saver if isinstance(saver, BaseCheckpointSaver) or saver is False else None
    )
    compiled.retry_policy = retry_policy
    compiled.cache = cache
    return compiled


def _check_checkpointer(checkpointer: Any) -> Any:
    # None and True: a subgraph saves where its parent saves; False: never saves.
    if checkpointer in (None, True, False) or isinstance(checkpointer, BaseCheckpointSaver):
        return None if checkpointer is True else checkpointer  # False stays False
    raise TypeError(
        f"checkpointer must be a saver such as InMemorySaver() or SqliteSaver(path) "
        f"(a stepgraph.checkpoint.BaseCheckpointSaver), got {type(checkpointer).__name__}"
    )


def _register_types(saver: BaseCheckpointSaver | BaseCache, builder: StateGraph) -> None:
    # Values of the graph's own types must load again: allow exactly those (and
    # everything their fields can hold), nothing else.
    registry = getattr(getattr(saver, "serde", None), "registry", None)
    if registry is None:
        return
    register_engine_types(registry)
    for schema in builder.schemas:
        registry.register_schema(schema)
    if builder.context_schema is not None:
        registry.register_schema(builder.context_schema)


def _interrupt_names(
    names: Sequence[str] | str | None, builder: StateGraph, what: str, problems: list[str]
) -> tuple[str, ...]:
    if names is None:
        return ()
    if names == "*":
        return ("*",)
    items = (names,) if isinstance(names, str) else tuple(names)
    for n in items:
        if n not in builder.nodes:
            problems.append(f"{what} names unknown node {n!r} (nodes: {sorted(builder.nodes)})")
    return items


# -- validation -------------------------------------------------------------------


def _validate(builder: StateGraph, channels: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    nodes = builder.nodes
    known = {*nodes, START, END}
    for key in channels:
        if key in nodes:
            problems.append(f"{key!r} is both a state key and a node name; rename one of them")
        if key.startswith("__"):
            problems.append(f"state key {key!r} starts with '__', which is reserved")
    problems += _unknown_nodes(builder, known)
    for src, branches in sorted(builder.branches.items()):
        if src not in known:
            problems.append(f"conditional edge from unknown node {src!r}")
        for b in branches.values():
            for end in b.ends or ():
                if end not in known:
                    problems.append(
                        f"conditional edge {b.name!r} from {src!r} can go to unknown node {end!r}"
                    )
    if not any(s == START for s, _ in builder.edges) and START not in builder.branches:
        problems.append(
            "the graph has no entry point: add an edge from START, e.g. "
            "add_edge(START, 'first_node') or set_entry_point('first_node')"
        )
    if not problems:
        problems += _unreachable(builder)
    return problems


def _unknown_nodes(builder: StateGraph, known: set[str]) -> list[str]:
    problems = []
    for src, dst in sorted(builder.edges):
        for n in (src, dst):
            if n not in known:
                problems.append(f"edge {src!r} -> {dst!r} uses unknown node {n!r}")
    for starts, dst in sorted(builder.waiting_edges):
        for n in (*starts, dst):
            if n not in known:
                problems.append(f"join edge {list(starts)!r} -> {dst!r} uses unknown node {n!r}")
    return problems


def _unreachable(builder: StateGraph) -> list[str]:
    """Nodes no path from START can reach (edges, joins, branches, Command targets)."""
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_nodes_from([START, *builder.nodes, END])
    everything = [*builder.nodes, END]
    g.add_edges_from(builder.edges)
    for starts, dst in builder.waiting_edges:
        g.add_edges_from((s, dst) for s in starts)
    for src, branches in builder.branches.items():
        for b in branches.values():
            g.add_edges_from((src, e) for e in (b.ends if b.ends is not None else everything))
    for name, node in builder.nodes.items():
        if node.destinations is not None:
            g.add_edges_from((name, d) for d in node.destinations)
        elif g.out_degree(name) == 0 and _may_route(node.action):
            # It may route with Command(goto=...) to anything we cannot see.
            g.add_edges_from((name, d) for d in everything)
    reachable = nx.descendants(g, START)
    return [
        f"node {n!r} can never run: no edge, conditional edge or declared Command "
        "destination leads to it from START (if a Send or Command reaches it, list it in "
        "the path_map or in add_node(..., destinations=...))"
        for n in builder.nodes
        if n not in reachable
    ]


def _may_route(action: Any) -> bool:
    """False only when a return annotation rules out returning a Command."""
    if isinstance(action, Pregel):
        return True
    try:
        ret = typing.get_type_hints(action).get("return", _MISSING)
    except Exception:
        ret = getattr(action, "__annotations__", {}).get("return", _MISSING)
    if ret is _MISSING:
        return True
    return "Command" in repr(ret) or ret is Any


_MISSING = object()


# -- lowering ---------------------------------------------------------------------


def _lower(
    builder: StateGraph,
    state_channels: dict[str, BaseChannel[Any, Any, Any]],
    managed: dict[str, type],
) -> Program:
    channels: dict[str, BaseChannel[Any, Any, Any]] = dict(state_channels)
    channels[START] = EphemeralValue(Any, key=START)
    channels[TASKS] = Topic(Send, key=TASKS)
    for name, node in builder.nodes.items():
        key = f"branch:to:{name}"
        channels[key] = (
            LastValueAfterFinish(Any, key=key)
            if node.defer
            else EphemeralValue(Any, False, key=key)
        )
    joins: dict[str, list[tuple[str, str]]] = {}  # source -> [(channel, own name)]
    join_triggers: dict[str, list[str]] = {}
    for starts, dst in sorted(builder.waiting_edges):
        key = f"join:{'+'.join(starts)}:{dst}"
        barrier = NamedBarrierValueAfterFinish if builder.nodes[dst].defer else NamedBarrierValue
        channels[key] = barrier(str, set(starts), key=key)
        join_triggers.setdefault(dst, []).append(key)
        for s in starts:
            joins.setdefault(s, []).append((key, s))
    state_keys = tuple(state_channels)
    state = builder.schemas[builder.state_schema]
    node_names = frozenset(builder.nodes)
    validator = None
    if is_pydantic(builder.state_schema):
        plain = {k for k in builder.state_schema.model_fields if k in state_channels}
        validator = PydanticValidator(builder.state_schema, plain)
    writer_args = {
        "keys": frozenset(state_channels),
        "schemas": tuple(builder.schemas.values()),
        "nodes": node_names,
        "validator": validator,
    }
    edges_from: dict[str, list[tuple[str, Any]]] = {}
    for s, d in sorted(builder.edges):
        if d != END:
            edges_from.setdefault(s, []).append((f"branch:to:{d}", None))
    specs: dict[str, NodeSpec] = {}
    for name in [START, *builder.nodes]:
        static = [*edges_from.get(name, ()), *joins.get(name, ())]
        writers: list[Writer] = []
        if static:
            writers.append(_StaticWriter(tuple(static)))
        for branch in builder.branches.get(name, {}).values():
            writers.append(branch.writer(state_keys, state.mapper(), node_names, state.managed))
        if name == START:
            specs[START] = _start_node(builder, writers)
        else:
            node = builder.nodes[name]
            sub = isinstance(node.action, Pregel)
            state_writer = _StateWriter(name, lenient=sub, **writer_args)  # type: ignore[arg-type]
            writers.insert(0, state_writer)
            specs[name] = _node_spec(builder, node, writers, join_triggers, managed)
    return Program.build(
        specs, channels, START, tuple(builder.schemas[builder.output_schema].keys), state_keys
    )


def _start_node(builder: StateGraph, writers: list[Writer]) -> NodeSpec:
    schema = builder.schemas[builder.input_schema]
    return NodeSpec(
        name=START,
        triggers=(START,),
        reads=START,
        proc=_identity,
        writers=(_InputWriter(schema), *writers),
        hidden=True,
    )


def _node_spec(
    builder: StateGraph,
    node: NodeDef,
    writers: list[Writer],
    join_triggers: Mapping[str, list[str]],
    managed: Mapping[str, type],
) -> NodeSpec:
    action = node.action
    schema = builder.schemas[node.input_schema or builder.state_schema]
    subgraph = action if isinstance(action, Pregel) else None
    if subgraph is not None:
        sub_keys = getattr(subgraph, "input_keys", None)
        reads = tuple(k for k in schema.keys if sub_keys is None or k in sub_keys)
        proc: Any = _SubgraphProc(subgraph)
        mapper = None
        is_async = True
    else:
        reads = schema.keys
        inject = injection_for(action)
        proc = action if not inject else _Injected(action, inject)
        mapper = schema.mapper()
        is_async = is_async_callable(action)
    return NodeSpec(
        name=node.name,
        triggers=(f"branch:to:{node.name}", *join_triggers.get(node.name, ())),
        reads=reads,
        proc=proc,
        mapper=mapper,
        writers=tuple(writers),
        managed={k: v for k, v in managed.items() if k in schema.managed},
        subgraph=subgraph,
        metadata=node.metadata,
        retry_policy=node.retry_policy,
        cache_policy=node.cache_policy,
        is_async=is_async,
        timeout=node.timeout,
    )


def _identity(value: Any) -> Any:
    return value


class _Injected:
    __slots__ = ("func", "inject")

    def __init__(self, func: Any, inject: tuple[str, ...]) -> None:
        self.func = func
        self.inject = inject

    def __call__(self, value: Any) -> Any:
        return call_with_injection(self.func, value, self.inject)


class _SubgraphProc:
    """Runs a compiled graph as a node, with the driver kind of the parent run."""

    __slots__ = ("graph",)

    def __init__(self, graph: Pregel) -> None:
        self.graph = graph

    def __call__(self, value: Any) -> Any:
        ctx = current_task.get()
        if ctx is not None and ctx.run.is_async:
            return self.graph.ainvoke(value)
        return self.graph.invoke(value)


class _StaticWriter:
    """Edges and joins: fixed writes after every run of the node."""

    __slots__ = ("writes",)

    def __init__(self, writes: tuple[tuple[str, Any], ...]) -> None:
        self.writes = writes

    def __call__(self, task: Task, output: Any) -> None:
        task.writes.extend(self.writes)


class _InputWriter:
    """START's writer: checks the input against the input schema, writes the state."""

    __slots__ = ("schema",)

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    def __call__(self, task: Task, value: Any) -> None:
        schema = self.schema
        if is_pydantic(schema.schema) and isinstance(value, dict):
            try:
                value = schema.schema.model_validate(value)
            except ValidationError as exc:
                raise InvalidInputError(f"the input does not match {schema.name}: {exc}") from exc
        pairs = schema.updates_from(value)
        if pairs is None:
            if not isinstance(value, dict):
                raise InvalidInputError(
                    f"the graph's input must be a dict (or a {schema.name}), got "
                    f"{type(value).__name__}"
                )
            unknown = [k for k in value if k not in schema.channels]
            if unknown:
                raise InvalidInputError(
                    f"input has keys that are not in the input schema {schema.name}: "
                    f"{unknown!r}; valid keys: {list(schema.channels)!r}"
                )
            pairs = list(value.items())
        task.writes.extend(pairs)


class _StateWriter:
    """Turns what a node returned into state writes and routing (Command.goto)."""

    __slots__ = ("keys", "lenient", "node", "nodes", "schemas", "validator")

    def __init__(
        self,
        node: str,
        *,
        keys: frozenset[str],
        schemas: tuple[Schema, ...],
        nodes: frozenset[str],
        validator: PydanticValidator | None,
        lenient: bool = False,
    ) -> None:
        self.node = node
        self.keys = keys
        self.schemas = schemas
        self.nodes = nodes
        self.validator = validator
        # Subgraph output: keys the parent does not have stay inside the subgraph.
        self.lenient = lenient

    def __call__(self, task: Task, output: Any) -> None:
        if output is None:
            return
        updates, gotos = self.parse(output, task.step)
        if output.__class__ is Command and output.graph == Command.PARENT:
            ctx = current_task.get()
            if ctx is None or ctx.run.parent is None:
                raise InvalidNodeReturnError(
                    f"node {self.node!r} returned Command(graph=Command.PARENT), but this "
                    "graph is not running as a subgraph, so there is no parent graph",
                    node=self.node,
                    step=task.step,
                )
            raise ParentCommand(Command(update=output.update, goto=output.goto))
        validate = self.validator
        for key, value in updates:
            if validate is not None:
                value = validate(self.node, task.step, key, value)
            task.writes.append((key, value))
        for g in gotos:
            if isinstance(g, Send):
                task.writes.append((TASKS, g))
            elif g in self.nodes:
                task.writes.append((f"branch:to:{g}", None))
            else:
                raise InvalidNodeReturnError(
                    f"node {self.node!r} returned Command(goto={g!r}), but there is no node "
                    f"named {g!r} (nodes: {sorted(self.nodes)})",
                    node=self.node,
                    step=task.step,
                )

    def parse(self, output: Any, step: int) -> tuple[list[tuple[str, Any]], list[str | Send]]:
        """Split a node's return value into state updates and goto targets."""
        if output is None:
            return [], []
        if isinstance(output, Command):
            if output.graph == Command.PARENT:
                return [], []
            items = output.update_items()
            if items is None:
                items = self._instance_updates(output.update, step)
            return self._check(items, step), list(output.goto_targets())
        if isinstance(output, dict):
            return self._check(list(output.items()), step), []
        if isinstance(output, Send):
            return [], [output]
        if isinstance(output, list | tuple) and output:
            if is_send_list(output):
                raise InvalidNodeReturnError(
                    f"node {self.node!r} returned a list of Send objects; to fan out from a "
                    "node, return Command(goto=[Send(...), ...]) or use a conditional edge",
                    node=self.node,
                    step=step,
                )
            updates: list[tuple[str, Any]] = []
            gotos: list[str | Send] = []
            for item in output:
                if not isinstance(item, dict | Command):
                    break
                u, g = self.parse(item, step)
                updates += u
                gotos += g
            else:
                return updates, gotos
        return self._instance_updates(output, step), []

    def _instance_updates(self, output: Any, step: int) -> list[tuple[str, Any]]:
        if isinstance(output, BaseModel) or (
            dataclasses.is_dataclass(output) and not isinstance(output, type)
        ):
            for schema in self.schemas:
                if isinstance(output, schema.schema):
                    pairs = schema.updates_from(output)
                    return self._check(pairs or [], step)
        raise InvalidNodeReturnError(
            f"node {self.node!r} returned {type(output).__name__} {output!r:.80}; a node must "
            "return a dict of state updates, a Command, an instance of the state schema, "
            "or None",
            node=self.node,
            step=step,
        )

    def _check(self, pairs: list[tuple[str, Any]], step: int) -> list[tuple[str, Any]]:
        keys = self.keys
        unknown = [k for k, _ in pairs if k not in keys]
        if not unknown:
            return pairs
        if self.lenient:
            return [(k, v) for k, v in pairs if k in keys]
        raise InvalidNodeReturnError(
            f"node {self.node!r} returned key(s) {unknown!r} in superstep {step}, which are "
            f"not in the state; valid keys: {sorted(keys)!r}. Add them to the state schema "
            "(or to a schema the graph knows) or stop returning them",
            node=self.node,
            step=step,
        )

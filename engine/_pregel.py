"""``Pregel``: a compiled graph you can run (invoke, stream, batch; sync and async)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Literal

from stepgraph.channels import BaseChannel
from stepgraph.checkpoint import BaseCache, BaseCheckpointSaver

from ._checkpointing import Durability
from ._core import Core
from ._drawing import DrawableGraph, build_graph
from ._drivers import drive_async, drive_sync
from ._history import StateSnapshot
from ._instrument import Instrument
from ._loop import Chunk, RunLoop
from ._node_builder import NodeBuilder
from ._policy import NodePolicies, RetryPolicy, cache_namespace, policy_problems
from ._program import NodeSpec, Program
from ._runtime import current_task
from ._stepping import StepResult, aiter_steps, iter_steps
from ._types import STREAM_MODES, TASKS, Command
from .errors import EmptyInputError, InvalidInputError

_TOP_LEVEL_ONLY = ("recursion_limit", "max_concurrency", "tags", "metadata")


def normalize_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a LangGraph-shaped config dict and return a shallow copy."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(
            f"config must be a dict like {{'configurable': {{'thread_id': '1'}}}}, "
            f"got {type(config).__name__}"
        )
    out = dict(config)
    conf = out.get("configurable")
    if conf is not None:
        if not isinstance(conf, Mapping):
            raise TypeError("config['configurable'] must be a dict")
        misplaced = [k for k in _TOP_LEVEL_ONLY if k in conf]
        if misplaced:
            keys = ", ".join(repr(k) for k in misplaced)
            raise ValueError(
                f"{keys} must be set at the top level of config, not inside "
                f"'configurable' (where it would be ignored), e.g. "
                f"{{'{misplaced[0]}': ..., 'configurable': {{...}}}}"
            )
        out["configurable"] = dict(conf)
    mc = out.get("max_concurrency")
    if mc is not None and (not isinstance(mc, int) or isinstance(mc, bool) or mc < 1):
        raise ValueError(f"max_concurrency must be a positive integer, got {mc!r}")
    return out


def _modes(stream_mode: str | Sequence[str]) -> tuple[bool, tuple[str, ...]]:
    single = isinstance(stream_mode, str)
    modes = (stream_mode,) if isinstance(stream_mode, str) else tuple(stream_mode)
    bad = [m for m in modes if m not in STREAM_MODES]
    if bad or not modes:
        raise ValueError(
            f"unknown stream mode(s) {bad!r}; choose from {sorted(STREAM_MODES)}"
            if bad
            else "stream_mode must name at least one mode"
        )
    return single, modes


class Pregel:
    """A compiled graph: nodes that talk only through channels, run in supersteps.

    ``StateGraph.compile()`` returns one (as ``CompiledStateGraph``); you can also
    build one directly from ``NodeBuilder`` nodes and channel instances::

        graph = Pregel(
            nodes={"double": NodeBuilder().subscribe_only("a").do(lambda x: x * 2).write_to("b")},
            channels={"a": EphemeralValue(int), "b": LastValue(int)},
            input_channels="a",
            output_channels="b",
        )
        graph.invoke(3)  # 6
    """

    default_stream_mode: str = "values"
    stream_eager: bool = False
    """Stream chunks made inside a lone task while it runs (the functional API's)."""
    checkpointer: BaseCheckpointSaver | Literal[False] | None = None
    """Where runs save their steps; None inherits the parent graph's, False never saves."""
    retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None
    """The retry policy of nodes that have none of their own."""
    cache: BaseCache | None = None
    """Where nodes with a ``CachePolicy`` keep their results."""

    def __init__(
        self,
        *,
        nodes: Mapping[str, NodeSpec | NodeBuilder],
        channels: Mapping[str, BaseChannel[Any, Any, Any]],
        input_channels: str | Sequence[str],
        output_channels: str | Sequence[str],
        stream_channels: Sequence[str] | None = None,
        stream_mode: str = "values",
        name: str = "LangGraph",
        checkpointer: BaseCheckpointSaver | None = None,
        retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
        cache: BaseCache | None = None,
    ) -> None:
        specs = {k: (v.build(k) if isinstance(v, NodeBuilder) else v) for k, v in nodes.items()}
        chans = dict(channels)
        for key, ch in chans.items():
            ch.key = key
        if TASKS not in chans:
            from stepgraph.channels import Topic

            chans[TASKS] = Topic(object)
            chans[TASKS].key = TASKS
        policies = [
            NodePolicies(k, s.retry_policy, s.cache_policy, s.timeout, s.is_async)
            for k, s in specs.items()
        ]
        self._check_low_level(
            specs,
            chans,
            input_channels,
            output_channels,
            policy_problems(policies, retry_policy, cache),
        )
        self.program = Program.build(specs, chans, input_channels, output_channels, stream_channels)
        self.default_stream_mode = stream_mode
        self.name = name
        self.checkpointer = checkpointer
        self.retry_policy = retry_policy
        self.cache = cache

    @staticmethod
    def _check_low_level(
        nodes: Mapping[str, NodeSpec],
        channels: Mapping[str, Any],
        inputs: str | Sequence[str],
        outputs: str | Sequence[str],
        extra: Sequence[str] = (),
    ) -> None:
        from .errors import GraphBuildError

        problems = []
        for name, node in nodes.items():
            reads = (node.reads,) if isinstance(node.reads, str) else node.reads
            for ch in (*node.triggers, *reads):
                if ch not in channels:
                    problems.append(f"node {name!r} uses unknown channel {ch!r}")
        for ch in [inputs] if isinstance(inputs, str) else inputs:
            if ch not in channels:
                problems.append(f"input channel {ch!r} is not declared in channels")
        for ch in [outputs] if isinstance(outputs, str) else outputs:
            if ch not in channels:
                problems.append(f"output channel {ch!r} is not declared in channels")
        problems += extra
        if problems:
            raise GraphBuildError(problems, graph="Pregel graph")

    # -- hooks that StateGraph overrides ------------------------------------------

    def _input_writes(self, input: Any) -> list[tuple[str, Any]]:
        if input is None:
            raise EmptyInputError(
                "received no input and there is no saved state to continue from; "
                "pass the graph's input"
            )
        if isinstance(input, Command):
            raise InvalidInputError("Command input is only supported by StateGraph graphs")
        chans = self.program.input_channels
        if isinstance(chans, str):
            return [(chans, input)]
        if not isinstance(input, Mapping):
            raise InvalidInputError(
                f"input must be a dict with keys from {list(chans)}, got {type(input).__name__}"
            )
        unknown = [k for k in input if k not in chans]
        if unknown:
            raise InvalidInputError(
                f"input has unknown keys {unknown!r}; the graph's input channels are {list(chans)}"
            )
        return list(input.items())

    def _read(self, core: Core, keys: str | tuple[str, ...]) -> Any:
        if isinstance(keys, str):
            ch = core.channel(keys)
            return ch.get() if ch.is_available() else None
        return core.read(keys, detach=False)

    def _map_update(self, writes: Sequence[tuple[str, Any]], keys: str | tuple[str, ...]) -> Any:
        if isinstance(keys, str):
            found = [v for ch, v in writes if ch == keys]
            return found[-1] if found else None
        update = {ch: v for ch, v in writes if ch in keys}
        return update or None

    # -- running ------------------------------------------------------------------

    def _loop(
        self,
        config: Mapping[str, Any] | None,
        modes: Sequence[str],
        context: Any,
        subgraphs: bool,
        output_keys: str | tuple[str, ...] | None = None,
        durability: Durability | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        instruments: Sequence[Instrument] | None = None,
    ) -> RunLoop:
        parent = current_task.get()
        conf = normalize_config(config)
        if parent is not None:
            # A graph run inside a node is that node's subgraph: it inherits the
            # parent's config (thread, tags, limits) unless it overrides them.
            inherited = parent.run.config
            conf = {
                **inherited,
                **conf,
                "configurable": {
                    **inherited.get("configurable", {}),
                    **conf.get("configurable", {}),
                },
            }
            if context is None:
                context = parent.run.context
        wanted = set(modes)
        return RunLoop(
            self,
            conf,
            modes=frozenset(wanted),
            context=self._coerce_context(context),
            parent=parent,
            subgraphs=subgraphs,
            output_keys=output_keys,
            durability=durability,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            instruments=instruments,
        )

    def _coerce_context(self, context: Any) -> Any:
        return context

    def _stream_keys(self) -> str | tuple[str, ...]:
        # A graph with a single output channel streams that channel's bare value.
        outs = self.program.output_channels
        return outs if isinstance(outs, str) else self.program.stream_channels

    def stream(
        self,
        input: Any,
        config: Mapping[str, Any] | None = None,
        *,
        context: Any = None,
        stream_mode: str | Sequence[str] | None = None,
        subgraphs: bool = False,
        executor: Executor | None = None,
        durability: Durability | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        instruments: Sequence[Instrument] | None = None,
    ) -> Iterator[Any]:
        """Run the graph, yielding stream chunks as supersteps progress.

        Args:
            input: the input (a dict of input keys for a StateGraph); ``None`` to
                continue a saved thread; ``Command(resume=...)`` to answer its
                interrupts.
            config: LangGraph-shaped config: ``configurable`` (``thread_id``, your
                keys), ``recursion_limit``, ``max_concurrency``, ``tags``, ``metadata``.
            context: the run's context, handed to nodes through ``Runtime``.
            stream_mode: one mode or a list of ``values``, ``updates``, ``custom``,
                ``tasks``, ``debug``, ``checkpoints``. One mode yields payloads;
                several yield ``(mode, payload)``.
            subgraphs: also stream from subgraphs; chunks gain a namespace tuple
                first: ``(ns, payload)`` or ``(ns, mode, payload)``.
            executor: run parallel tasks on this executor instead of a fresh thread
                pool (it is not shut down).
            durability: with a checkpointer, when steps are stored: ``"sync"``
                (before the next step starts), ``"async"`` (the default: serialized at
                once, stored in the background) or ``"exit"`` (only when the run ends).
            interrupt_before / interrupt_after: breakpoints for this run (node names
                or ``"*"``), added to those given to ``compile()``.
            instruments: `Instrument` objects watching this run, besides those
                installed with ``stepgraph.engine.install()``.
        """
        single, modes = _modes(stream_mode or self.default_stream_mode)
        loop = self._loop(
            config,
            modes,
            context,
            subgraphs,
            self._stream_keys(),
            durability,
            interrupt_before,
            interrupt_after,
            instruments,
        )
        mc = loop.config.get("max_concurrency")
        for chunk in drive_sync(loop, input, executor, mc):
            yield _shape(chunk, single, subgraphs)

    async def astream(
        self,
        input: Any,
        config: Mapping[str, Any] | None = None,
        *,
        context: Any = None,
        stream_mode: str | Sequence[str] | None = None,
        subgraphs: bool = False,
        durability: Durability | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        instruments: Sequence[Instrument] | None = None,
    ) -> AsyncIterator[Any]:
        """Async twin of ``stream``: tasks run as asyncio tasks, sync nodes in threads."""
        single, modes = _modes(stream_mode or self.default_stream_mode)
        loop = self._loop(
            config,
            modes,
            context,
            subgraphs,
            self._stream_keys(),
            durability,
            interrupt_before,
            interrupt_after,
            instruments,
        )
        async for chunk in drive_async(loop, input, loop.config.get("max_concurrency")):
            yield _shape(chunk, single, subgraphs)

    def invoke(
        self,
        input: Any,
        config: Mapping[str, Any] | None = None,
        *,
        context: Any = None,
        stream_mode: str | Sequence[str] = "values",
        executor: Executor | None = None,
        durability: Durability | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        instruments: Sequence[Instrument] | None = None,
    ) -> Any:
        """Run the graph to the end (or to an interrupt) and return its output.

        With the default ``stream_mode="values"`` this is the final state (the
        output keys); a run that paused on ``interrupt()`` adds the pending
        questions under ``"__interrupt__"``. With another mode, the list of that
        mode's chunks. See ``stream`` for the arguments.
        """
        breaks = (interrupt_before, interrupt_after, instruments)
        if stream_mode != "values":
            single, modes = _modes(stream_mode)
            loop = self._loop(config, modes, context, False, None, durability, *breaks)
            mc = loop.config.get("max_concurrency")
            return [_shape(c, single, False) for c in drive_sync(loop, input, executor, mc)]
        loop = self._loop(config, (), context, False, None, durability, *breaks)
        for _ in drive_sync(loop, input, executor, loop.config.get("max_concurrency")):
            pass
        return _with_interrupts(loop)

    async def ainvoke(
        self,
        input: Any,
        config: Mapping[str, Any] | None = None,
        *,
        context: Any = None,
        stream_mode: str | Sequence[str] = "values",
        durability: Durability | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        instruments: Sequence[Instrument] | None = None,
    ) -> Any:
        """Async twin of ``invoke``."""
        breaks = (interrupt_before, interrupt_after, instruments)
        if stream_mode != "values":
            single, modes = _modes(stream_mode)
            loop = self._loop(config, modes, context, False, None, durability, *breaks)
            mc = loop.config.get("max_concurrency")
            return [_shape(c, single, False) async for c in drive_async(loop, input, mc)]
        loop = self._loop(config, (), context, False, None, durability, *breaks)
        async for _ in drive_async(loop, input, loop.config.get("max_concurrency")):
            pass
        return _with_interrupts(loop)

    # -- stepping -----------------------------------------------------------------

    def iter(
        self,
        input: Any,
        config: Mapping[str, Any] | None = None,
        *,
        context: Any = None,
        executor: Executor | None = None,
        durability: Durability | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        instruments: Sequence[Instrument] | None = None,
    ) -> Generator[StepResult, None, None]:
        """Run the graph one superstep at a time, yielding a ``StepResult`` after each.

        The arguments are ``stream``'s. No task runs between two results: stop
        iterating (``break``, or ``close()`` the generator) to leave the run at a
        resumable checkpoint, change it with ``update_state``, and continue with
        ``iter(None, config)``. A step whose tasks failed is yielded (the errors on
        its tasks) and then its error is raised. A run that pauses on an interrupt
        or a breakpoint ends with the step that paused. See ``docs/stepping.md``.
        """
        loop = self._loop(
            config,
            (),
            context,
            False,
            output_keys=self._stream_keys(),
            durability=durability,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            instruments=instruments,
        )
        return iter_steps(loop, input, executor, loop.config.get("max_concurrency"))

    def aiter(
        self,
        input: Any,
        config: Mapping[str, Any] | None = None,
        *,
        context: Any = None,
        durability: Durability | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        instruments: Sequence[Instrument] | None = None,
    ) -> AsyncGenerator[StepResult, None]:
        """Async twin of ``iter``. To stop early and continue later, close the
        generator before the next run of the thread: ``async with
        contextlib.aclosing(graph.aiter(...)) as steps:`` (an abandoned async
        generator is closed only when the event loop gets to it)."""
        loop = self._loop(
            config,
            (),
            context,
            False,
            output_keys=self._stream_keys(),
            durability=durability,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            instruments=instruments,
        )
        return aiter_steps(loop, input, loop.config.get("max_concurrency"))

    # -- saved state --------------------------------------------------------------

    def get_state(self, config: Mapping[str, Any], *, subgraphs: bool = False) -> StateSnapshot:
        """The thread's state at its latest checkpoint (or the one ``config`` names).

        ``values`` include the writes of tasks that finished in a step that did not
        complete; ``next`` names the tasks still to run; ``tasks`` carry their errors
        and results. ``checkpoint_ns`` in the config reads a subgraph's state.

        Raises:
            ValueError: the graph has no checkpointer, or the config has no thread.
        """
        from ._history import get_state

        return get_state(self, config, subgraphs=subgraphs)

    async def aget_state(
        self, config: Mapping[str, Any], *, subgraphs: bool = False
    ) -> StateSnapshot:
        """Async twin of ``get_state`` (runs it in a worker thread)."""
        return await asyncio.to_thread(lambda: self.get_state(config, subgraphs=subgraphs))

    def get_state_history(
        self,
        config: Mapping[str, Any],
        *,
        filter: Mapping[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> Iterator[StateSnapshot]:
        """The thread's checkpoints as snapshots, newest first.

        Args:
            config: the thread (``checkpoint_ns`` for a subgraph's history).
            filter: metadata keys that must be equal, e.g. ``{"source": "loop"}``.
            before: only checkpoints saved before this config's checkpoint.
            limit: at most this many.
        """
        from ._history import get_state_history

        return get_state_history(self, config, filter=filter, before=before, limit=limit)

    async def aget_state_history(
        self,
        config: Mapping[str, Any],
        *,
        filter: Mapping[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[StateSnapshot]:
        """Async twin of ``get_state_history``."""
        found = await asyncio.to_thread(
            lambda: list(self.get_state_history(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    def update_state(
        self, config: Mapping[str, Any], values: Any, as_node: str | None = None
    ) -> dict[str, Any]:
        """Change a thread's state as if node ``as_node`` had returned ``values``.

        The update goes through the node's writers: reducers apply, and the node's
        edges decide what runs next. It is saved as a new checkpoint (source
        ``"update"``) whose parent is the checkpoint ``config`` names, or the latest:
        updating an old checkpoint forks the history and leaves the original branch
        as it was. ``as_node="__copy__"`` copies the checkpoint as a fork; ``as_node="__input__"``
        takes the values as new input (an input checkpoint);
        ``as_node=END`` with ``values=None`` drops the pending tasks.

        Returns:
            The config of the new checkpoint; ``invoke(None, that_config)`` continues
            from it.

        Raises:
            InvalidUpdateError: unknown node, or ``as_node`` needed but not given.
        """
        from ._history import update_state

        return update_state(self, config, values, as_node)

    async def aupdate_state(
        self, config: Mapping[str, Any], values: Any, as_node: str | None = None
    ) -> dict[str, Any]:
        """Async twin of ``update_state`` (runs it in a worker thread)."""
        return await asyncio.to_thread(self.update_state, config, values, as_node)

    # -- inspection ---------------------------------------------------------------

    def get_graph(
        self, config: Mapping[str, Any] | None = None, *, xray: bool | int = False
    ) -> DrawableGraph:
        """The graph's structure as a ``networkx.DiGraph`` that can draw itself.

        Nodes and edges carry attributes (kind, deferred, subgraph; conditional,
        label, join, send, command): see ``docs/drawing.md``. Draw it with
        ``draw_mermaid()``, ``draw_ascii()``, ``draw_dot()`` or ``draw_png()``.

        Args:
            config: accepted for LangGraph compatibility; the drawing does not use it.
            xray: expand subgraph nodes into their own nodes (``child:inner``):
                ``True`` at every depth, an int for that many levels.
        """
        return build_graph(self, xray)

    async def aget_graph(
        self, config: Mapping[str, Any] | None = None, *, xray: bool | int = False
    ) -> DrawableGraph:
        """Async twin of ``get_graph``."""
        return build_graph(self, xray)

    # -- cache --------------------------------------------------------------------

    def clear_cache(self, nodes: Sequence[str] | None = None) -> None:
        """Drop the cached results of this graph's nodes (all of them, or ``nodes``).

        Entries of other graphs sharing the cache are kept, unless they belong to a
        node with the same function and name.

        Raises:
            ValueError: the graph has no cache, or ``nodes`` names an unknown node.
        """
        cache = self.cache
        if cache is None:
            raise ValueError(
                "this graph has no cache to clear; compile it with cache=InMemoryCache()"
            )
        cache.clear(self._cache_namespaces(nodes))

    async def aclear_cache(self, nodes: Sequence[str] | None = None) -> None:
        """Async twin of ``clear_cache``."""
        cache = self.cache
        if cache is None:
            raise ValueError(
                "this graph has no cache to clear; compile it with cache=InMemoryCache()"
            )
        await cache.aclear(self._cache_namespaces(nodes))

    def _cache_namespaces(self, nodes: Sequence[str] | None) -> list[tuple[str, ...]]:
        specs = self.program.nodes
        if nodes is None:
            names = [n for n, s in specs.items() if s.cache_policy is not None]
        else:
            names = [nodes] if isinstance(nodes, str) else list(nodes)
            unknown = [n for n in names if n not in specs or specs[n].hidden]
            if unknown:
                known = sorted(n for n, s in specs.items() if not s.hidden)
                raise ValueError(
                    f"clear_cache() got unknown node(s) {unknown}; the nodes are {known}"
                )
        return [cache_namespace(specs[n]) for n in names]

    def batch(
        self,
        inputs: Sequence[Any],
        config: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        *,
        return_exceptions: bool = False,
        executor: Executor | None = None,
    ) -> list[Any]:
        """Invoke the graph on each input, in parallel threads (``max_concurrency``).

        ``executor`` is passed to every ``invoke``: each run's parallel tasks go there
        (a ``RayExecutor`` sends them to Ray).
        """
        configs = _per_input(config, len(inputs))
        if not inputs:
            return []
        workers = (configs[0] or {}).get("max_concurrency")

        def one(pair: tuple[Any, Mapping[str, Any] | None]) -> Any:
            try:
                return self.invoke(pair[0], pair[1], executor=executor)
            except Exception as exc:
                if return_exceptions:
                    return exc
                raise

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, zip(inputs, configs)))

    async def abatch(
        self,
        inputs: Sequence[Any],
        config: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        *,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Async twin of ``batch``: runs are asyncio tasks bounded by ``max_concurrency``."""
        configs = _per_input(config, len(inputs))
        limit = (configs[0] or {}).get("max_concurrency") if configs else None
        sem = asyncio.Semaphore(limit) if limit else None

        async def one(inp: Any, conf: Mapping[str, Any] | None) -> Any:
            if sem is None:
                return await self.ainvoke(inp, conf)
            async with sem:
                return await self.ainvoke(inp, conf)

        return list(
            await asyncio.gather(
                *(one(i, c) for i, c in zip(inputs, configs)), return_exceptions=return_exceptions
            )
        )


def _per_input(
    config: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None, n: int
) -> list[Mapping[str, Any] | None]:
    if config is None or isinstance(config, Mapping):
        return [config] * n
    configs: list[Mapping[str, Any] | None] = list(config)
    if len(configs) != n:
        raise ValueError(f"batch got {n} inputs but {len(configs)} configs; give one per input")
    return configs


def _with_interrupts(loop: RunLoop) -> Any:
    out = loop.output()
    if not loop.interrupted:
        return out
    if isinstance(out, dict):
        return {**out, "__interrupt__": list(loop.interrupted)}
    return {"__interrupt__": list(loop.interrupted)}  # a single-value graph, paused


def _shape(chunk: Chunk, single: bool, subgraphs: bool) -> Any:
    ns, mode, payload = chunk
    if subgraphs:
        return (ns, payload) if single else (ns, mode, payload)
    return payload if single else (mode, payload)

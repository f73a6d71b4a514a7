"""One run of a graph: the superstep core plus the run's options and its stream.

``RunLoop`` is the part of a run that both drivers share. It never waits: the
drivers call ``tick()`` to get the next superstep's tasks, run them however they
run things, report each finished task with ``task_done()``, and call
``after_tick()`` for the barrier. Stream chunks collect in ``out``; the drivers
hand them to the caller between those calls.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from stepgraph.checkpoint import BaseCheckpointSaver
from stepgraph.checkpoint._model import ERROR, INTERRUPT, RESUME

from ._checkpointing import Durability, Persistence, check_durability
from ._core import Core
from ._instrument import Instrument, RunInfo, call, for_run
from ._interrupt import GraphInterrupt, Interrupt, Resume
from ._runtime import StreamWriter, _no_op_writer
from ._streams import with_stream_events
from ._task import Task
from ._types import Command
from .errors import EmptyInputError, GraphBubbleUp, GraphRecursionError, InvalidInputError

if TYPE_CHECKING:
    from ._pregel import Pregel
    from ._runtime import TaskContext

Chunk = tuple[tuple[str, ...], str, Any]

DEFAULT_RECURSION_LIMIT = 10_000


class RunLoop:
    """The shared, non-blocking half of a run."""

    def __init__(
        self,
        graph: Pregel,
        config: dict[str, Any],
        *,
        modes: frozenset[str],
        context: Any = None,
        parent: TaskContext | None = None,
        subgraphs: bool = False,
        output_keys: str | tuple[str, ...] | None = None,
        durability: Durability | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        instruments: Sequence[Instrument] | None = None,
    ) -> None:
        self.graph = graph
        self.config = config
        self.context = context
        self.parent = parent
        namespace = parent.task.namespace if parent is not None else ""
        self.ns: tuple[str, ...] = tuple(namespace.split("|")) if namespace else ()
        self.limit = _recursion_limit(config)
        self.core = Core(graph.program, namespace=namespace)
        self.persistence = _persistence(graph, config, parent, namespace, durability)
        # A nested run whose parent streams with subgraphs=True sends its chunks up
        # to the parent, with its own namespace, in the parent's stream modes.
        self._forward: Callable[[Chunk], None] | None = None
        if parent is not None and parent.run.subgraphs:
            self._forward = parent.run.ts_sink
            modes = parent.run.modes
            subgraphs = True
        self.modes: frozenset[str] = modes
        self.subgraphs: bool = subgraphs
        # Checked for every task: decided once.
        self._updates = "updates" in modes
        self._values = "values" in modes
        self.out: deque[Chunk] = deque()
        self.ts_sink: Callable[[Chunk], None] = self.on_chunk  # the driver replaces it
        self.tasks: list[Task] = []
        self.errors: list[tuple[Task, BaseException]] = []
        self.is_async = False  # set by the async driver; subgraph nodes follow it
        self._first_step = 0
        # Human in the loop: the answers this run was resumed with (shared with its
        # subgraph runs), the breakpoints, and the interrupts it ended on.
        self.resume: Resume | None = parent.run.resume if parent is not None else None
        self.interrupted: list[Interrupt] | None = None
        self._before = _names(graph, interrupt_before, "interrupt_before")
        self._after = _names(graph, interrupt_after, "interrupt_after")
        self._skip_before = False  # a resumed run does not stop at the same breakpoint
        self._done = False
        self.home = threading.get_ident()
        # Instruments watching this run (a subgraph run reports to its parent's): an
        # empty tuple when none is installed, so every hook site costs one test.
        self._inst: tuple[Instrument, ...] = (
            parent.run._inst if parent is not None and not instruments else for_run(instruments)
        )
        self._info: RunInfo | None = None
        # The tasks/debug/checkpoints stream modes are an instrument of this run's own.
        self._inst = with_stream_events(self, self._inst)
        self._call_pool: ThreadPoolExecutor | None = None
        # Set by a driver whose executor runs node functions elsewhere (a Ray cluster):
        # called instead of ``node.proc(input)``. None (the default) costs one test per task.
        self.remote: Callable[[Task], Any] | None = None
        # task call id -> its writes, for calls finished in this run: a retried node
        # gets them back instead of running its finished task calls again
        self.call_results: dict[str, list[tuple[str, Any]]] = {}
        self._call_lock = threading.Lock()
        self._stream_keys = set(graph.program.stream_channels)
        # What "values" chunks and "updates" payloads show: the state keys when
        # streaming, the output keys when invoked (as LangGraph does).
        keys = graph.program.output_channels if output_keys is None else output_keys
        self.output_keys = keys
        self._output_set = {keys} if isinstance(keys, str) else set(keys)

    # -- stream -------------------------------------------------------------------

    def on_chunk(self, chunk: Chunk) -> None:
        """Deliver a chunk (from this thread or handed over by the driver)."""
        if self._forward is not None:
            self._forward(chunk)
        else:
            self.out.append(chunk)

    def send(self, chunk: Chunk) -> None:
        """Deliver a chunk from any thread (the driver's own delivers it at once)."""
        if threading.get_ident() == self.home:
            self.on_chunk(chunk)
        else:
            self.ts_sink(chunk)

    def emit(self, mode: str, payload: Any) -> None:
        if mode in self.modes:
            self.on_chunk((self.ns, mode, payload))

    def writer_for(self, task: Task) -> StreamWriter:
        """The ``custom`` stream writer handed to a task (a no-op if not streamed)."""
        if "custom" not in self.modes:
            return _no_op_writer
        sink, ns = self.ts_sink, self.ns

        def write(chunk: Any) -> None:
            sink((ns, "custom", chunk))

        return write

    # -- the superstep ------------------------------------------------------------

    def start(self, input: Any) -> None:
        """Load the thread (with a checkpointer), then apply the input as a barrier."""
        self.home = threading.get_ident()  # the thread that drives the run
        if self._inst:
            call(self._inst, "run_start", self.info)
        p = self.persistence
        command = isinstance(input, Command)
        resuming = command and input.resume is not None
        if p is None and (self._before or self._after):
            raise ValueError(
                "interrupt_before/interrupt_after pause the run to resume it later, which "
                "needs a checkpointer: compile(checkpointer=InMemorySaver()) or "
                "SqliteSaver(...), and pass a thread_id"
            )
        if p is None:
            if resuming:
                raise InvalidInputError(
                    "Command(resume=...) answers an interrupt of a saved run, but this graph "
                    "has no checkpointer: compile it with one (and pass a thread_id)"
                )
            self.core.apply_input(self.graph._input_writes(input))
        else:
            if p.lease is None:
                p.acquire()  # (the async driver took it already, without blocking)
            self.core = core = p.restore()
            # A Command continues a saved thread (as LangGraph has it): its update and
            # goto apply to the step that is waiting, and resume answers its questions.
            continuing = command and p.saved is not None and self.parent is None
            if input is None or resuming or continuing or self._resumes_subgraph(core):
                if p.saved is None:
                    raise EmptyInputError(
                        f"received no input and thread {p.thread!r} has no saved state to "
                        "continue from; pass the graph's input"
                    )
                if p.replaying:
                    p.fork_for_replay(core)
                elif p.null_writes:
                    core.apply_early(p.null_writes)  # an earlier resume's update, unsaved
                if command and self.parent is None:
                    self._continue_with(input, core, p)
                self._skip_before = True
                if self._values and self.parent is None:
                    # A continued run shows where it starts from, as LangGraph does.
                    self.emit("values", self.graph._read(self.core, self.output_keys))
            else:
                writes = self.graph._input_writes(input)
                if p.ns and p.saved is not None:
                    # A subgraph run again in the same task after finishing: start afresh,
                    # numbering versions after the saved ones.
                    self.core = core = _fresh_after(core)
                core.apply_input(writes)
                p.barrier(core, "input")
                if self._inst and p.parent_config is not None:
                    meta = p.last_saved[1] if p.last_saved else None
                    call(self._inst, "checkpoint", self.info, p.parent_config, meta)
        self._first_step = self.core.step + 1
        self.core.stop = self._first_step + self.limit

    @property
    def info(self) -> RunInfo:
        """What instruments are told about this run (made on first use)."""
        if self._info is None:
            conf = self.config.get("configurable") or {}
            p = self.persistence
            parent = self.parent.run.info if self.parent is not None else None
            thread = conf.get("thread_id")
            self._info = RunInfo(
                graph=self.graph.name,
                namespace="|".join(self.ns),
                thread_id=None if thread is None else str(thread),
                run_id=p.run_id if p is not None else None,
                parent=parent,
            )
        return self._info

    def _continue_with(self, cmd: Command[Any], core: Core, p: Persistence) -> None:
        """Apply a Command given to a saved thread: answers, update, goto."""
        if cmd.resume is not None:
            self.resume = Resume.of(cmd.resume, p.pending_interrupts())
        if cmd.update is None and not cmd.goto:
            return
        plain: Command[Any] = Command(update=cmd.update, goto=cmd.goto)
        writes = self.graph._input_writes(plain)
        core.apply_early(writes)
        p.save_null(writes)  # kept with the checkpoint until a barrier includes them
        if not core.plan():
            # Nothing waits and nothing was triggered: store the update as a step.
            core.commit([])
            p.barrier(core, "update")

    def _resumes_subgraph(self, core: Core) -> bool:
        # A subgraph whose namespace has unfinished work is being resumed by its
        # parent (same task, same namespace): it continues instead of starting over.
        p = self.persistence
        return bool(p and p.ns and p.saved is not None and core.plan())

    def close(self, error: BaseException | None = None) -> None:
        """End the run: store held-back or in-flight writes, release the thread."""
        pool, self._call_pool = self._call_pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        try:
            if self.persistence is not None:
                self.persistence.close()
        finally:
            if self._inst:
                call(self._inst, "run_end", self.info, error)

    # -- task calls (the functional API) -----------------------------------------

    def call_pool(self) -> ThreadPoolExecutor:
        """The threads that run this run's @task calls (made on first use)."""
        with self._call_lock:
            if self._call_pool is None:
                self._call_pool = ThreadPoolExecutor(
                    max_workers=self.config.get("max_concurrency"),
                    thread_name_prefix="stepgraph-task",
                )
            return self._call_pool

    def task_call_done(
        self,
        child: Task,
        signature: list[Any],
        *,
        result: Any = None,
        error: BaseException | None = None,
        interrupted: GraphInterrupt | None = None,
    ) -> None:
        """Save and stream a finished @task call (called from the thread that ran it)."""
        from ._func import CALL, RETURN

        p = self.persistence
        if p is not None:
            writes: list[tuple[str, Any]] = [(CALL, signature)]
            if interrupted is not None:
                writes.append((INTERRUPT, list(interrupted.interrupts)))
                if interrupted.answers:
                    writes.append((RESUME, list(interrupted.answers)))
            elif error is not None:
                if isinstance(error, Exception):
                    writes.append((ERROR, error))
            else:
                writes.append((RETURN, result))
            p.save_call(child.id, writes)
        if error is None and interrupted is None:
            self.call_results[child.id] = [(CALL, signature), (RETURN, result)]
        if error is None and interrupted is None and self._updates:
            update: dict[str, Any] = {child.name: result}
            if child.cached:
                update["__metadata__"] = {"cached": True}
            self.ts_sink((self.ns, "updates", update))
        if self._inst:
            if error is None and interrupted is None:
                child.writes = [(RETURN, result)]
            call(self._inst, "task_end", self.info, child, interrupted or error)

    def tick(self) -> list[Task]:
        """Plan the next superstep; an empty list means the run is over.

        Tasks whose writes were saved by an earlier, interrupted run of the same step
        get those writes back and are not returned: only the others run.
        """
        if self._done:
            self.tasks = []
            return []
        while True:
            tasks = self.core.plan()
            if not tasks:
                self.tasks = []
                return tasks
            step = self.core.step + 1
            if step >= self.core.stop:
                raise GraphRecursionError(
                    limit=self.limit,
                    steps=step - self._first_step,
                    pending=[t.name for t in tasks],
                )
            self.tasks = tasks
            self.errors = []
            p = self.persistence
            if p is not None and p.pending:
                to_run = []
                for t in tasks:
                    saved = p.saved_writes(t)
                    if saved is None:
                        to_run.append(t)
                    else:
                        t.writes = saved
                if not to_run:
                    self.after_tick()
                    continue
                tasks = to_run
            if p is not None:
                p.step_tasks = len(tasks)
            break
        skip, self._skip_before = self._skip_before, False
        if self._before and not skip and any(self._matches(self._before, t) for t in tasks):
            self.tasks = []
            self._pause([])  # a breakpoint: stop before the step, nothing of it runs
            return []
        if self._inst:  # instruments, and the tasks/debug streams, hear of the step
            call(self._inst, "step_start", self.info, step, tasks)
            for t in tasks:
                call(self._inst, "task_start", self.info, t)
        return tasks

    def task_done(self, task: Task, error: BaseException | None) -> None:
        """Record a finished task, save its writes, and stream its result."""
        try:
            self._task_done(task, error)
        finally:
            if self._inst:
                call(self._inst, "task_end", self.info, task, error)

    def _task_done(self, task: Task, error: BaseException | None) -> None:
        if self.persistence is not None:
            self.persistence.task_done(task, error)
        interrupts: list[Interrupt] = []
        if error is not None:
            self.errors.append((task, error))
            if isinstance(error, GraphInterrupt):
                interrupts = list(error.interrupts)
                error = None  # a pause, not a failure: streamed as the task's interrupts
            elif isinstance(error, GraphBubbleUp):
                return
            else:
                error.add_note(
                    f"while running node {task.name!r} in superstep {task.step} (task {task.id})"
                )
        if task.node.hidden:
            return
        if error is None and self._updates and not interrupts:
            update: dict[str, Any] = {task.name: self._task_update(task)}
            if task.cached:  # the node did not run: its writes came from the cache
                update["__metadata__"] = {"cached": True}
            self.emit("updates", update)

    def after_tick(self) -> None:
        """The barrier: raise the step's errors, or commit its writes."""
        p = self.persistence
        if self.errors:
            if p is not None:
                p.flush_step()
            paused = [e for _, e in self.errors if isinstance(e, GraphInterrupt)]
            if len(paused) < len(self.errors):
                if self._inst:
                    failed = next(e for _, e in self.errors if not isinstance(e, GraphInterrupt))
                    call(self._inst, "step_end", self.info, self.core.step + 1, failed)
                self._raise_errors()  # real failures win; the interrupts are saved
            if self._inst:
                call(self._inst, "step_end", self.info, self.core.step + 1, None)
            self._pause([i for e in paused for i in e.interrupts])
            return
        if p is None:
            updated = self.core.commit(self.tasks)
        else:
            try:
                updated = self.core.commit(self.tasks)
            except BaseException:
                p.flush_step()  # the finished tasks' writes survive a rejected barrier
                raise
            p.barrier(self.core)
            if self._inst and p.parent_config is not None:
                meta = p.last_saved[1] if p.last_saved else None
                call(self._inst, "checkpoint", self.info, p.parent_config, meta)
        if self._inst:
            call(self._inst, "step_end", self.info, self.core.step, None)
        if self._values and not updated.isdisjoint(self._output_set):
            self.emit("values", self.graph._read(self.core, self.output_keys))
        if self._after and any(self._matches(self._after, t) for t in self.tasks):
            self._pause([])  # after the step is saved: resuming starts with the next one

    def _pause(self, interrupts: list[Interrupt]) -> None:
        """End the run here, resumable: on interrupts, or at a breakpoint."""
        self.interrupted = interrupts
        self._done = True
        if self._inst and self.parent is None:
            call(self._inst, "interrupt", self.info, interrupts)
        if self.parent is not None:
            # A subgraph pauses its parent: the parent task stops with the same
            # interrupts, and resuming it resumes this run from its checkpoint.
            raise GraphInterrupt(interrupts)
        if self._updates:
            self.on_chunk((self.ns, "updates", {"__interrupt__": tuple(interrupts)}))
        if self._values and interrupts:
            self.on_chunk((self.ns, "values", {"__interrupt__": tuple(interrupts)}))

    def _matches(self, names: frozenset[str], task: Task) -> bool:
        return not task.node.hidden and ("*" in names or task.name in names)

    def _raise_errors(self) -> None:
        errors = sorted(
            (e for e in self.errors if not isinstance(e[1], GraphInterrupt)),
            key=lambda e: e[0].path,
        )
        plain: list[Exception] = []
        for _, exc in errors:
            if not isinstance(exc, Exception):
                raise exc  # control signals, KeyboardInterrupt, SystemExit: as they are
            plain.append(exc)
        if len(plain) == 1:
            raise plain[0]
        names = ", ".join(repr(t.name) for t, _ in errors)
        raise ExceptionGroup(
            f"{len(plain)} tasks failed in superstep {errors[0][0].step} ({names}); "
            "no writes of this superstep were applied",
            plain,
        )

    # -- reading ------------------------------------------------------------------

    def output(self) -> Any:
        """The run's output: the output channel's value, or a dict of output keys."""
        return self.graph._read(self.core, self.graph.program.output_channels)

    def _task_update(self, task: Task) -> Any:
        return self.graph._map_update(task.writes, self.output_keys)

    def task_result(self, task: Task) -> dict[str, Any]:
        """A task's writes to the streamed keys (``$writes`` lists several to one key)."""
        if task.path and task.path[0] == 2:  # a @task call: its return value
            return dict(task.writes)
        result: dict[str, Any] = {}
        for ch, value in task.writes:
            if ch in self._stream_keys:
                if ch in result:
                    prev = result[ch]
                    if isinstance(prev, dict) and "$writes" in prev:
                        prev["$writes"].append(value)
                    else:
                        result[ch] = {"$writes": [prev, value]}
                else:
                    result[ch] = value
        return result

    def task_config(self, task: Task) -> dict[str, Any]:
        """The config a task sees through ``get_config()`` or a ``config`` parameter."""
        return task_config(self.config, self.limit, task, task.node.metadata, task.node.tags)


class TaskFields(Protocol):
    """What ``task_config`` reads of a task: a `Task`, or its copy sent to a worker."""

    @property
    def name(self) -> str: ...
    @property
    def step(self) -> int: ...
    @property
    def triggers(self) -> tuple[str, ...]: ...
    @property
    def path(self) -> tuple[Any, ...]: ...
    @property
    def namespace(self) -> str: ...


def task_config(
    base: dict[str, Any],
    limit: int,
    task: TaskFields,
    metadata: Mapping[str, Any],
    tags: Sequence[str],
) -> dict[str, Any]:
    """A task's config from its run's config, the task's fields and its node's.

    Plain values only, so that a node running in another process (on a Ray worker)
    can be given the same config as one running here.
    """
    name, path, namespace = task.name, task.path, task.namespace
    meta = {
        **base.get("metadata", {}),
        **metadata,
        "langgraph_step": task.step,
        "langgraph_node": name,
        "langgraph_triggers": task.triggers,
        "langgraph_path": (
            ("__pregel_pull", name) if path[0] == 0 else ("__pregel_push", path[1], False)
        ),
        "langgraph_checkpoint_ns": namespace,
    }
    return {
        **base,
        "configurable": {**base.get("configurable", {}), "checkpoint_ns": namespace},
        "metadata": meta,
        "tags": [*base.get("tags", []), *tags],
        "recursion_limit": limit,
    }


def _persistence(
    graph: Pregel,
    config: dict[str, Any],
    parent: TaskContext | None,
    namespace: str,
    durability: Durability | None,
) -> Persistence | None:
    saver = graph.checkpointer
    if durability is not None:
        check_durability(durability)
    if saver is False:
        return None  # compiled with checkpointer=False: this graph never saves
    parents: dict[str, str] = {}
    if parent is not None:
        up = parent.run.persistence
        if saver is None and up is not None:
            saver = up.saver  # a subgraph saves where its parent saves
        if up is not None:
            durability = durability or up.durability
            parents = dict(up.parents)
            if up.parent_config is not None:
                parents[up.ns] = up.parent_config["configurable"]["checkpoint_id"]
    if not isinstance(saver, BaseCheckpointSaver):
        return None
    mode = check_durability(durability or "async")
    return Persistence(
        saver, graph.program, config, namespace=namespace, durability=mode, parents=parents
    )


def _names(graph: Pregel, given: Sequence[str] | str | None, what: str) -> frozenset[str]:
    """Breakpoint node names: the graph's own (compile time) plus the run's."""
    compiled = getattr(graph, what, ()) or ()
    names = set(compiled)
    if given is not None:
        items = (given,) if isinstance(given, str) else tuple(given)
        nodes = graph.program.nodes
        unknown = [n for n in items if n != "*" and n not in nodes]
        if unknown:
            known = sorted(n for n, spec in nodes.items() if not spec.hidden)
            raise ValueError(f"{what} names unknown node(s) {unknown}; the nodes are {known}")
        names.update(items)
    return frozenset(names)


def _fresh_after(core: Core) -> Core:
    fresh = Core(
        core.program,
        namespace=core.namespace,
        step=core.step,
        checkpoint_id=core.checkpoint_id,
        new_checkpoint_id=core._new_id,
    )
    fresh.max_version = core.max_version
    return fresh


def _recursion_limit(config: dict[str, Any]) -> int:
    limit = config.get("recursion_limit", DEFAULT_RECURSION_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(
            f"recursion_limit must be a positive integer, got {limit!r}; it is the most "
            "supersteps one run may execute"
        )
    return limit

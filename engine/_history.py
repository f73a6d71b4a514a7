"""Reading and changing a thread's saved state: get_state, history, update_state.

Everything here works on checkpoints only: it rebuilds a core from a saved
checkpoint, plans what would run next (without running it), and, for
``update_state``, applies writes as if a node had made them and saves the result as a
new checkpoint whose parent is the one it started from. Updating an old checkpoint
therefore starts a new branch and leaves the original history as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from stepgraph.checkpoint import BaseCheckpointSaver, CheckpointTuple

from ._checkpointing import Persistence, SavedWrites, restore_core
from ._core import Core
from ._runtime import TaskContext, _no_op_writer, current_task
from ._task import PULL, Task
from ._types import END, START
from .errors import InvalidUpdateError

if TYPE_CHECKING:
    from ._pregel import Pregel


class PregelTask(NamedTuple):
    """A task of a saved step: what would run next, or what ran and how it ended.

    Attributes:
        id: the task id (the one its saved writes are stored under).
        name: the node.
        path: where the task comes from: ``("__pregel_pull", node)`` or
            ``("__pregel_push", index)``.
        error: the error it failed with, if it failed.
        interrupts: the interrupts it raised.
        state: for a subgraph node, the config of the subgraph's checkpoints (or its
            ``StateSnapshot`` with ``get_state(..., subgraphs=True)``).
        result: its writes as a node update, if it finished.
    """

    id: str
    name: str
    path: tuple[Any, ...]
    error: Any = None
    interrupts: tuple[Any, ...] = ()
    state: Any = None
    result: Any = None


class StateSnapshot(NamedTuple):
    """A thread's state at one checkpoint.

    Attributes:
        values: the state (the graph's state keys and their values).
        next: the nodes that would run next and have not finished yet.
        config: the config addressing this checkpoint.
        metadata: how the checkpoint came to be (source, step, parents, run id, ...).
        created_at: when it was saved, ISO-8601 UTC.
        parent_config: the config of the checkpoint before it, or None.
        tasks: the tasks of the next step, with errors, interrupts and results.
        interrupts: every pending interrupt of those tasks.
    """

    values: Any
    next: tuple[str, ...]
    config: dict[str, Any]
    metadata: Any
    created_at: str | None
    parent_config: dict[str, Any] | None
    tasks: tuple[PregelTask, ...]
    interrupts: tuple[Any, ...] = ()


def saver_of(graph: Pregel) -> BaseCheckpointSaver:
    saver = graph.checkpointer
    if not isinstance(saver, BaseCheckpointSaver):
        raise ValueError(
            "this graph has no checkpointer, so it keeps no state between runs: compile "
            "it with one, e.g. compile(checkpointer=SqliteSaver('state.db'))"
        )
    return saver


def graph_for_namespace(graph: Pregel, ns: str) -> Pregel:
    """The (sub)graph whose checkpoints live under ``ns`` (``node:task|node:task``)."""
    current = graph
    if not ns:
        return current
    for part in ns.split("|"):
        name = part.split(":", 1)[0]
        node = current.program.nodes.get(name)
        sub = node.subgraph if node is not None else None
        if sub is None:
            raise ValueError(
                f"subgraph {ns!r} not found: {name!r} is not a subgraph node of graph "
                f"{current.name!r}"
            )
        current = sub
    return current


def snapshot(
    graph: Pregel,
    saved: CheckpointTuple,
    *,
    subgraphs: bool = False,
    ns: str = "",
    apply_writes: bool = False,
) -> StateSnapshot:
    """The state a saved checkpoint holds, with the tasks that would run next.

    With ``apply_writes`` (the thread's latest checkpoint, as ``get_state`` shows it),
    the writes of tasks that finished after it are shown in ``values`` and those
    tasks are left out of ``next``; a past checkpoint is shown as it was saved.
    """
    core = restore_core(graph.program, saved, namespace=ns)
    found = SavedWrites.of(saved)
    if apply_writes and found.null:
        # A resume's update that no step has saved yet is part of the state to come.
        with contextlib.suppress(Exception):
            core.apply_early(found.null)
    tasks = core.plan()
    writes, errors, interrupts = found.writes, found.errors, found.interrupts
    done = [t for t in tasks if t.id in writes] if apply_writes else []
    values = _values_with(graph, core, done, writes)
    thread = saved.config["configurable"]["thread_id"]
    out_tasks = []
    for t in tasks:
        state: Any = None
        if t.node.subgraph is not None:
            sub_ns = t.namespace
            sub_config = {"configurable": {"thread_id": thread, "checkpoint_ns": sub_ns}}
            state = sub_config
            if subgraphs:
                sub_saved = saver_of(graph).get_tuple(sub_config)
                if sub_saved is not None:
                    state = snapshot(
                        t.node.subgraph, sub_saved, subgraphs=True, ns=sub_ns, apply_writes=True
                    )
        result = graph._map_update(writes[t.id], graph._stream_keys()) if t.id in writes else None
        out_tasks.append(
            PregelTask(
                id=t.id,
                name=t.name,
                path=_path(t),
                error=errors.get(t.id),
                interrupts=tuple(interrupts.get(t.id, ())),
                state=state,
                result=result,
            )
        )
    return StateSnapshot(
        values=values,
        next=tuple(t.name for t in tasks if not (apply_writes and t.id in writes)),
        config=saved.config,
        metadata=saved.metadata,
        created_at=saved.checkpoint["ts"],
        parent_config=saved.parent_config,
        tasks=tuple(out_tasks),
        interrupts=tuple(i for t in out_tasks for i in t.interrupts),
    )


def _values_with(
    graph: Pregel, core: Core, done: list[Task], writes: Mapping[str, list[tuple[str, Any]]]
) -> Any:
    # Writes of tasks that finished in a step that did not complete are shown in the
    # values (as LangGraph does), applied to copies: the core itself stays as saved.
    if done:
        grouped: dict[str, list[Any]] = {}
        for t in sorted(done, key=lambda t: t.path):
            for ch, value in writes[t.id]:
                if ch in core.program.channels:
                    grouped.setdefault(ch, []).append(value)
        for ch, values in grouped.items():
            copy = core.channel(ch).copy()
            try:
                copy.update(values)
            except Exception:
                continue  # the barrier would reject them too; show the saved value
            core.channels[ch] = copy
    return graph._read(core, graph._stream_keys())


def _path(task: Task) -> tuple[Any, ...]:
    if task.kind == PULL:
        return ("__pregel_pull", task.name)
    return ("__pregel_push", task.path[1])


def get_state(
    graph: Pregel, config: Mapping[str, Any], *, subgraphs: bool = False
) -> StateSnapshot:
    saver = saver_of(graph)
    conf = dict(config.get("configurable") or {})
    if conf.get("thread_id") is None:
        raise ValueError("get_state needs a thread: config={'configurable': {'thread_id': ...}}")
    ns = str(conf.get("checkpoint_ns") or "")
    target = graph_for_namespace(graph, ns)
    saved = saver.get_tuple({"configurable": {**conf, "checkpoint_ns": ns}})
    if saved is None and conf.get("checkpoint_id") is not None:
        raise ValueError(
            f"thread {conf['thread_id']!r} has no checkpoint {conf['checkpoint_id']!r} "
            f"in namespace {ns!r}; list the thread's checkpoints with get_state_history()"
        )
    if saved is None:
        return StateSnapshot(
            values={} if not isinstance(graph._stream_keys(), str) else None,
            next=(),
            config={"configurable": {**conf, "checkpoint_ns": ns}},
            metadata=None,
            created_at=None,
            parent_config=None,
            tasks=(),
        )
    latest = conf.get("checkpoint_id") is None
    return snapshot(target, saved, subgraphs=subgraphs, ns=ns, apply_writes=latest)


def get_state_history(
    graph: Pregel,
    config: Mapping[str, Any],
    *,
    filter: Mapping[str, Any] | None = None,
    before: Mapping[str, Any] | None = None,
    limit: int | None = None,
) -> Iterator[StateSnapshot]:
    saver = saver_of(graph)
    conf = dict(config.get("configurable") or {})
    if conf.get("thread_id") is None:
        raise ValueError(
            "get_state_history needs a thread: config={'configurable': {'thread_id': ...}}"
        )
    ns = str(conf.get("checkpoint_ns") or "")
    conf["checkpoint_ns"] = ns
    target = graph_for_namespace(graph, ns)
    found = list(saver.list({"configurable": conf}, filter=filter, before=before, limit=limit))
    for saved in found:
        yield snapshot(target, saved, ns=ns)


def update_state(
    graph: Pregel,
    config: Mapping[str, Any],
    values: Any,
    as_node: str | None = None,
) -> dict[str, Any]:
    saver = saver_of(graph)
    conf = dict(config.get("configurable") or {})
    ns = str(conf.get("checkpoint_ns") or "")
    target = graph_for_namespace(graph, ns)
    loop = target._loop(config, (), None, False, None, "sync")
    if loop.persistence is None or loop.persistence.saver is not saver:
        # A subgraph's state: it is saved by the root graph's checkpointer.
        loop.persistence = Persistence(
            saver, target.program, loop.config, namespace=ns, durability="sync", parents={}
        )
    p = loop.persistence
    p.ns = ns
    p.wanted_id = conf.get("checkpoint_id")
    p.acquire()
    try:
        core = loop.core = p.restore()
        saved = p.saved
        if as_node == "__copy__":
            if saved is None:
                raise InvalidUpdateError(
                    "__copy__", "there is no checkpoint to copy", "run the graph first"
                )
            p.replaying = True
            p.fork_for_replay(core)
            return p.config
        if as_node == "__input__":
            # The values are new input, as if given to invoke(): an input checkpoint.
            core.apply_input(target._input_writes(values))
            p.barrier(core, "input")
            return p.config
        node_name = _as_node(target, core, saved, as_node)
        if node_name == END:
            if values is not None:
                raise InvalidUpdateError(
                    END, "as_node=END takes values=None", "pass None to clear the pending tasks"
                )
            tasks = core.plan()
            for t in tasks:
                t.writes = []
            core.commit(tasks)
            p.barrier(core, "update")
            return p.config
        source = "input" if node_name == START and saved is None else "update"
        node = target.program.nodes[node_name]
        if not node.writers:
            raise InvalidUpdateError(
                node_name, f"node {node_name!r} has no writers, so it cannot make updates"
            )
        task = core._make_task(node, None, node.triggers, (0, node_name), core.step + 1, PULL)
        token = current_task.set(TaskContext(task, loop, _no_op_writer))
        try:
            for writer in node.writers:
                result = writer(task, values)
                if result is not None and hasattr(result, "__await__"):
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
                    raise TypeError(
                        f"node {node_name!r} has async writers (async conditional edges); "
                        "use aupdate_state()"
                    )
        finally:
            current_task.reset(token)
        core.commit([task])
        p.barrier(core, source)  # type: ignore[arg-type]
        return p.config
    finally:
        p.close()


def _as_node(graph: Pregel, core: Core, saved: CheckpointTuple | None, as_node: str | None) -> str:
    nodes = graph.program.nodes
    if as_node is not None:
        if as_node not in nodes and as_node != END:
            known = sorted(n for n in nodes if not nodes[n].hidden)
            raise InvalidUpdateError(
                as_node,
                f"node {as_node!r} does not exist (nodes: {known})",
                "pass as_node= one of the graph's node names",
            )
        return as_node
    visible = [n for n, spec in nodes.items() if not spec.hidden]
    if len(visible) == 1:
        return visible[0]
    if saved is None:
        if START in nodes:
            return START
        raise InvalidUpdateError(
            "as_node", "the thread has no state yet", "pass as_node= the node to update as"
        )
    # The node that ran last: the one that saw the newest version of anything.
    last: dict[str, int] = {
        name: max(seen.values(), default=0)
        for name, seen in core.versions_seen.items()
        if name in nodes
    }
    if last:
        top = max(last.values())
        winners = [n for n, v in last.items() if v == top]
        if len(winners) == 1:
            return winners[0]
    raise InvalidUpdateError(
        "as_node",
        "ambiguous update: several nodes ran last, so it is unclear which node the update "
        "comes from",
        "pass as_node= the node whose update this is",
    )

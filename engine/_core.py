"""The superstep core: a pure state machine, no threads, no awaits, no I/O.

It owns the channels, their versions and each node's versions-seen for one run at
one namespace, and exposes the superstep in the shape of
``graphlib.TopologicalSorter``:

* ``apply_input(writes)`` applies the run's input as a barrier with no tasks;
* ``plan()`` returns the tasks of the next superstep: one per ``Send`` written in
  the previous step, then every node with a trigger channel whose version is newer
  than the one the node last saw;
* ``commit(tasks)`` is the barrier: it applies all writes in task-path order (never
  in completion order), bumps versions, clears ephemeral channels, and when nothing
  else would run calls ``finish()`` on the after-finish channels so deferred nodes
  get their turn.

Per-step cost is proportional to the step's work: ``plan()`` looks only at the nodes
triggered by the channels the last barrier updated (computed during ``commit``), and
``commit()`` touches only written channels, the ephemeral channels that hold a value,
and the few channels whose ``consume``/``finish`` matter (listed by the Program).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from stepgraph.channels import MISSING, BaseChannel, EmptyChannelError, InvalidUpdateError

from . import _ids
from ._program import NodeSpec, Program
from ._task import PULL, PUSH, Task
from ._types import TASKS, Send

_PUSH_TRIGGERS = ("__pregel_push",)
_MUTABLE = (list, dict, set, bytearray)


def _detach(value: Any) -> Any:
    # Nodes get their own top-level containers, so `state["items"].append(x)` in a
    # node cannot change the channel (or a sibling task's input). Nested objects
    # are shared: copying them deeply would make every read O(state size).
    kind = type(value)
    if kind is list or kind is dict or kind is set:
        return value.copy()
    return copy.copy(value) if isinstance(value, _MUTABLE) else value


class Core:
    """The channels and versions of one run, advanced one superstep at a time."""

    def __init__(
        self,
        program: Program,
        *,
        namespace: str = "",
        step: int = -2,
        channel_values: Mapping[str, Any] | None = None,
        versions: Mapping[str, int] | None = None,
        versions_seen: Mapping[str, Mapping[str, int]] | None = None,
        checkpoint_id: str | None = None,
        new_checkpoint_id: Callable[[int], str] | None = None,  # seq -> id
    ) -> None:
        self.program = program
        self.namespace = namespace
        self.step = step
        self.versions: dict[str, int] = dict(versions or {})
        self.versions_seen: dict[str, dict[str, int]] = {
            k: dict(v) for k, v in (versions_seen or {}).items()
        }
        self.max_version = max(self.versions.values(), default=0)
        # Checkpoint ids are made lazily (most runs never look at them) but fixed at
        # the barrier: id number ``seq`` is always built from the same inputs.
        self._new_id = new_checkpoint_id or _ids.CheckpointIds()
        self._seq = 0
        self._ids: dict[int, str] = {0: checkpoint_id} if checkpoint_id else {}
        self.channels: dict[str, BaseChannel[Any, Any, Any]] = {}
        self._live_clearing: set[str] = set()
        for key, value in (channel_values or {}).items():
            ch = self._channel(key).from_checkpoint(value)
            self.channels[key] = ch
            if key in program.clearing_channels and ch.is_available():
                self._live_clearing.add(key)
        # Nodes worth checking in the next plan(); None means "check them all",
        # which only happens right after restoring from a checkpoint.
        self._candidates: set[str] | None = None if channel_values else set()
        self.updated: frozenset[str] = frozenset()
        # Every channel whose version the last barrier bumped (also those it emptied).
        self.changed: frozenset[str] = frozenset()
        # Channels written by apply_early(): saved with the next barrier's checkpoint.
        self._early: set[str] = set()
        # The first superstep this run may not execute; the run loop sets it once
        # the input is applied (recursion limit). Managed values read it.
        self.stop = step + 1 + 10_000

    @property
    def checkpoint_id(self) -> str:
        """The id of the checkpoint the next superstep starts from."""
        return self.checkpoint_id_of(self._seq)

    def checkpoint_id_of(self, seq: int) -> str:
        cid = self._ids.get(seq)
        if cid is None:
            cid = self._ids[seq] = self._new_id(seq)
        return cid

    # -- channels -----------------------------------------------------------------

    def channel(self, key: str) -> BaseChannel[Any, Any, Any]:
        """The run's instance of channel ``key`` (made on first use)."""
        return self.channels.get(key) or self._channel(key)

    def _channel(self, key: str) -> BaseChannel[Any, Any, Any]:
        ch = self.channels.get(key)
        if ch is None:
            spec = self.program.channels.get(key)
            if spec is None:
                raise InvalidUpdateError(
                    key,
                    "there is no channel with this name in the graph",
                    f"declare a channel named {key!r} or write to one of the graph's channels",
                )
            ch = self.channels[key] = spec.from_checkpoint(MISSING)
        return ch

    def read(self, select: Sequence[str] | str, *, detach: bool = True) -> Any:
        """The current value of one channel, or a dict of the available ones."""
        wrap = _detach if detach else _identity
        if isinstance(select, str):
            return wrap(self._channel(select).get())
        out: dict[str, Any] = {}
        channels = self.channels
        for key in select:
            ch = channels.get(key) or self._channel(key)
            if ch.is_available():
                out[key] = wrap(ch.get())
        return out

    def read_fresh(self, task: Task, select: Sequence[str] | str) -> Any:
        """Read channels as if only ``task``'s writes so far had been applied."""
        written: dict[str, list[Any]] = {}
        for name, value in task.writes:
            if name in self.program.channels:
                written.setdefault(name, []).append(value)
        keys = [select] if isinstance(select, str) else select
        local: dict[str, Any] = {}
        for key in keys:
            ch = self._channel(key)
            if key in written:
                ch = ch.copy()
                ch.update(written[key])
            if ch.is_available():
                local[key] = ch.get()
        if isinstance(select, str):
            if select not in local:
                raise EmptyChannelError(select)
            return local[select]
        return local

    # -- planning -----------------------------------------------------------------

    def plan(self) -> list[Task]:
        """The tasks of the next superstep, PULL tasks by name, then PUSH tasks."""
        step = self.step + 1
        tasks: list[Task] = []
        candidates = self.program.nodes.keys() if self._candidates is None else self._candidates
        for name in sorted(candidates) if len(candidates) > 1 else candidates:
            node = self.program.nodes[name]
            if self._triggered(node):
                tasks.append(self._pull_task(node, step))
        tasks_ch = self.channels.get(TASKS)
        if tasks_ch is not None and tasks_ch.is_available():
            for idx, packet in enumerate(tasks_ch.get()):
                tasks.append(self._push_task(packet, idx, step))
        return tasks

    def _triggered(self, node: NodeSpec) -> bool:
        seen = self.versions_seen.get(node.name, {})
        for ch in node.triggers:
            version = self.versions.get(ch)
            if version is not None and version > seen.get(ch, 0):
                c = self.channels.get(ch)
                if c is not None and c.is_available():
                    return True
        return False

    def _pull_task(self, node: NodeSpec, step: int) -> Task:
        # A PULL task's triggers are all of its node's trigger channels (sorted), and
        # the barrier marks all of them seen: the node has caught up with everything.
        value = self.read(node.reads)
        if node.managed:
            for key, managed in node.managed.items():
                value[key] = managed.compute(step, self.stop)
        if node.mapper is not None:
            value = node.mapper(value)
        return self._make_task(node, value, node.triggers, (0, node.name), step, PULL)

    def _push_task(self, packet: Send, idx: int, step: int) -> Task:
        node = self.program.nodes.get(packet.node)
        if node is None:
            known = ", ".join(sorted(n for n in self.program.nodes if not n.startswith("__")))
            raise InvalidUpdateError(
                TASKS,
                reason=f"Send targets unknown node {packet.node!r} (known nodes: {known})",
                hint="Send to one of the graph's node names",
            )
        return self._make_task(node, packet.arg, _PUSH_TRIGGERS, (1, idx), step, PUSH)

    def _make_task(
        self,
        node: NodeSpec,
        value: Any,
        triggers: tuple[str, ...],
        path: tuple[Any, ...],
        step: int,
        kind: str,
    ) -> Task:
        return Task(
            core=self,
            seq=self._seq,
            node=node,
            input=value,
            triggers=triggers,
            path=path,
            step=step,
            parent_ns=self.namespace,
            kind=kind,
        )

    # -- the barrier --------------------------------------------------------------

    def apply_input(self, writes: Iterable[tuple[str, Any]]) -> frozenset[str]:
        """Apply the run's input as a barrier with no tasks (the input checkpoint)."""
        return self._apply((), (("__input__", list(writes)),))

    def commit(self, tasks: Sequence[Task]) -> frozenset[str]:
        """End the superstep: apply every task's writes in task-path order.

        Returns the channels whose new value is available. If this raises (a channel
        rejected the writes), the core is left part-way and must be discarded; the
        run restarts from the last saved checkpoint.
        """
        ordered = sorted(tasks, key=_path_key) if len(tasks) > 1 else tasks
        versions = self.versions
        for task in ordered:
            if task.kind == PULL:
                seen = self.versions_seen.get(task.name)
                if seen is None:
                    seen = self.versions_seen[task.name] = {}
                for ch in task.triggers:
                    version = versions.get(ch)
                    if version is not None:
                        seen[ch] = version
        return self._apply(ordered, [(t.name, t.writes) for t in ordered])

    def apply_early(self, writes: Sequence[tuple[str, Any]]) -> frozenset[str]:
        """Apply writes now, before the next superstep is planned, without a barrier.

        A resume command's ``update``/``goto`` take effect this way: the resumed step
        sees them (and the nodes they trigger run in it), and nothing is cleared, so
        the interrupted tasks are planned again as they were. The channels count as
        changed by the next barrier.
        """
        grouped: dict[str, list[Any]] = {}
        for ch, value in writes:
            grouped.setdefault(ch, []).append(value)
        changed = set()
        for ch, values in grouped.items():
            c = self._channel(ch)
            try:
                if c.update(values):
                    changed.add(ch)
            except InvalidUpdateError as exc:
                raise exc.with_context(self.step + 1, ["__resume__"]) from None
        if changed:
            version = self.max_version = self.max_version + 1
            for ch in changed:
                self.versions[ch] = version
            self._early |= changed
            if self._candidates is not None:
                available = [ch for ch in changed if self.channels[ch].is_available()]
                self._candidates |= self._nodes_to_check(available)
            for ch in changed:
                if ch in self.program.clearing_channels and self.channels[ch].is_available():
                    self._live_clearing.add(ch)
        return frozenset(changed)

    def _apply(
        self, tasks: Sequence[Task], batches: Sequence[tuple[str, Sequence[tuple[str, Any]]]]
    ) -> frozenset[str]:
        self.step += 1
        program = self.program
        channels = self.channels
        changed: set[str] = set()
        early, self._early = self._early, set()
        if program.consume_channels:
            consumable = program.consume_channels
            for ch in {c for t in tasks for c in t.triggers if c in consumable}:
                if self._channel(ch).consume():
                    changed.add(ch)
        grouped: dict[str, list[Any]] = {}
        for _, writes in batches:
            for ch, value in writes:
                values = grouped.get(ch)
                if values is None:
                    grouped[ch] = [value]
                else:
                    values.append(value)
        for ch, values in grouped.items():
            c = channels.get(ch) or self._channel(ch)
            try:
                if c.update(values):
                    changed.add(ch)
            except InvalidUpdateError as exc:
                writers = [name for name, ws in batches for w in ws if w[0] == ch]
                raise exc.with_context(self.step, writers) from None
        if batches:
            self._clear_ephemeral(grouped, changed)
        updated = {ch for ch in changed if channels[ch].is_available()}
        self._candidates = self._nodes_to_check(updated)
        if tasks and program.finish_channels and not self._has_work(updated):
            self._finish(changed, updated)
        if changed:
            version = self.max_version = self.max_version + 1
            versions = self.versions
            for ch in changed:
                versions[ch] = version
        self._seq += 1
        self._ids.pop(self._seq - 2, None)  # tasks of the last step may still ask for theirs
        self.updated = frozenset(updated)
        self.changed = frozenset(changed | early) if early else frozenset(changed)
        return self.updated

    def _finish(self, changed: set[str], updated: set[str]) -> None:
        # Nothing would run next: tell the after-finish channels (deferred nodes and
        # their joins) so they become available and get one more superstep.
        for ch in self.program.finish_channels:
            c = self.channels.get(ch)
            if c is not None and c.finish():
                changed.add(ch)
                if c.is_available():
                    updated.add(ch)
        self._candidates = self._nodes_to_check(updated)

    def _clear_ephemeral(self, grouped: dict[str, list[Any]], changed: set[str]) -> None:
        # Channels that clear themselves when a step passes without writes to them
        # (EphemeralValue, non-accumulating Topic): only those holding a value now.
        channels = self.channels
        live = self._live_clearing
        if live:
            for ch in tuple(live):
                c = channels[ch]
                if ch not in grouped and c.update([]):
                    changed.add(ch)
                if not c.is_available():
                    live.discard(ch)
        clearing = self.program.clearing_channels
        for ch in grouped:  # the written channels, never the graph-sized set
            if ch in clearing and channels[ch].is_available():
                live.add(ch)

    def _nodes_to_check(self, updated: Iterable[str]) -> set[str]:
        t2n = self.program.trigger_to_nodes
        out: set[str] = set()
        for ch in updated:
            nodes = t2n.get(ch)
            if nodes:
                out.update(nodes)
        return out

    def _has_work(self, updated: set[str]) -> bool:
        if TASKS in updated:
            return True
        # Versions are not bumped yet, so compare against the pending version.
        pending = self.max_version + 1
        channels = self.channels
        for name in self._candidates or ():
            node = self.program.nodes[name]
            seen = self.versions_seen.get(name, {})
            for ch in node.triggers:
                v = pending if ch in updated else self.versions.get(ch)
                if v is not None and v > seen.get(ch, 0):
                    c = channels.get(ch)
                    if c is not None and c.is_available():
                        return True
        return False

    # -- snapshots ----------------------------------------------------------------

    def checkpoint_values(self) -> dict[str, Any]:
        """Every persistent channel's checkpoint value (O(channels): on demand only)."""
        out: dict[str, Any] = {}
        for key, ch in self.channels.items():
            if ch.persistent:
                value = ch.checkpoint()
                if value is not MISSING:
                    out[key] = value
        return out


def _identity(value: Any) -> Any:
    return value


def _path_key(task: Task) -> tuple[Any, ...]:
    return task.path

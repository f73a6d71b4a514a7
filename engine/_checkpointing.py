"""A run's persistence: load the thread, save writes and checkpoints, finish cleanly.

``Persistence`` is what ``RunLoop`` asks when a graph has a checkpointer. It never
runs tasks and never decides what runs; it only moves the core's state to and from a
saver at the points the loop tells it about:

* ``restore()``: before the run, load the checkpoint the config names (or the
  thread's latest), rebuild the core from it, and keep the pending writes of tasks
  that finished after it, so they are not run again;
* ``task_done()``: save a finished task's writes (or its error) at once;
* ``barrier()``: after the core applied a superstep, save the new checkpoint (only
  the channels that changed, and only the new items of append-only channels);
* ``close()``: wait for writes still in flight, save what ``durability="exit"``
  kept back, let go of the thread.

Durability modes:

``sync``
    every write is stored before the run moves on;
``async`` (default)
    values are serialized before the run moves on (so nothing a later step does can
    change them), and stored on a background thread, in order;
``exit``
    nothing is stored until the run ends; then the last checkpoint and the writes
    of a failed step are stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from stepgraph.channels import MISSING, BinaryOperatorAggregate, Topic
from stepgraph.checkpoint import (
    FORMAT_VERSION,
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    StoredSaver,
)
from stepgraph.checkpoint._blobs import appended_prefix
from stepgraph.checkpoint._model import ERROR, INTERRUPT, RESUME, SCHEDULED, metadata_from_config

from . import _ids
from ._core import Core
from ._program import Program

if TYPE_CHECKING:
    from ._task import Task

Durability = Literal["sync", "async", "exit"]
DURABILITY_MODES: tuple[str, ...] = ("sync", "async", "exit")
SPECIAL_WRITES = frozenset((ERROR, INTERRUPT, RESUME, SCHEDULED))
_APPENDING_OPS: tuple[Any, ...] = ()


def _appending_ops() -> tuple[Any, ...]:
    global _APPENDING_OPS
    if not _APPENDING_OPS:
        import operator

        _APPENDING_OPS = (operator.add, operator.iadd, operator.concat, operator.iconcat)
    return _APPENDING_OPS


def append_only_channels(program: Program) -> frozenset[str]:
    """Channels whose value only ever grows at the end: saved as deltas."""
    ops = _appending_ops()
    out = set()
    for key, ch in program.channels.items():
        if (isinstance(ch, Topic) and ch.accumulate) or (
            isinstance(ch, BinaryOperatorAggregate) and ch.operator in ops
        ):
            out.add(key)
    return frozenset(out)


def check_durability(value: Any) -> Durability:
    if value not in DURABILITY_MODES:
        raise ValueError(
            f"durability must be one of {list(DURABILITY_MODES)}, got {value!r}: 'sync' "
            "saves every step before the next starts, 'async' saves in the background, "
            "'exit' saves only when the run ends"
        )
    return value


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def restore_core(
    program: Program,
    saved: CheckpointTuple | None,
    *,
    namespace: str = "",
) -> Core:
    """A core holding a saved checkpoint's state (or a fresh one for ``None``)."""
    if saved is None:
        return Core(program, namespace=namespace)
    ckpt = saved.checkpoint
    step = saved.metadata.get("step", -1)
    return Core(
        program,
        namespace=namespace,
        step=step,
        channel_values=_known(program, ckpt["channel_values"]),
        versions=_int_versions(ckpt["channel_versions"]),
        versions_seen={k: _int_versions(v) for k, v in ckpt["versions_seen"].items()},
        checkpoint_id=ckpt["id"],
        new_checkpoint_id=_ids.CheckpointIds(after=ckpt["id"]),
    )


def _known(program: Program, values: Mapping[str, Any]) -> dict[str, Any]:
    # A channel the graph no longer declares is left out (and kept in storage), rather
    # than failing the whole restore: graphs evolve between runs.
    return {k: v for k, v in values.items() if k in program.channels}


def _int_versions(versions: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in versions.items():
        out[k] = v if isinstance(v, int) else int(str(v).split(".")[0])
    return out


class Persistence:
    """The saver side of one run at one namespace."""

    def __init__(
        self,
        saver: BaseCheckpointSaver,
        program: Program,
        config: Mapping[str, Any],
        *,
        namespace: str,
        durability: Durability,
        parents: Mapping[str, str],
        run_id: str | None = None,
    ) -> None:
        conf = config.get("configurable") or {}
        if conf.get("thread_id") is None:
            raise ValueError(
                "this graph has a checkpointer, so each run needs a thread: pass "
                "config={'configurable': {'thread_id': '<any id>'}} (runs with the same "
                "thread_id continue the same conversation)"
            )
        self.saver = saver
        self.program = program
        self.thread = str(conf["thread_id"])
        self.ns = namespace
        self.durability = durability
        self.parents = dict(parents)
        self.run_id = run_id or str(uuid.uuid4())
        self.wanted_id: str | None = conf.get("checkpoint_id") if not namespace else None
        self.user_metadata = metadata_from_config(config)
        self.stored = isinstance(saver, StoredSaver)
        self.append_only = append_only_channels(program) if self.stored else frozenset()
        self.wait = conf.get("wait_for_thread", 0.0)
        self.lease: Any = None
        self.saved: CheckpointTuple | None = None
        self.pending: dict[str, list[tuple[str, Any]]] = {}  # task id -> saved writes
        self.errors: dict[str, Any] = {}  # task id -> saved error
        self.replaying = False
        self.parent_config: dict[str, Any] | None = None  # config of the last saved checkpoint
        self._last_values: dict[str, Any] = {}  # append-only channel -> last saved value
        self._bg: ThreadPoolExecutor | None = None
        self._inflight: list[Future[Any]] = []
        self._held_back: list[Callable[[], Any]] = []  # durability="exit"
        self._held_checkpoint: tuple[Any, ...] | None = None

    # -- before the run -----------------------------------------------------------

    def acquire(self) -> None:
        if self.ns:
            return  # a subgraph runs inside its parent's lease
        self.lease = self.saver.acquire_thread(self.thread, wait=self.wait)

    def restore(self) -> Core:
        """Load the thread's checkpoint and build the core from it."""
        base = {"configurable": {"thread_id": self.thread, "checkpoint_ns": self.ns}}
        if self.wanted_id is not None:
            cfg = {"configurable": {**base["configurable"], "checkpoint_id": self.wanted_id}}
            saved = self.saver.get_tuple(cfg)
            if saved is None:
                raise ValueError(
                    f"thread {self.thread!r} has no checkpoint {self.wanted_id!r}; list "
                    "the thread's checkpoints with get_state_history(config)"
                )
            latest = self.saver.get_tuple(base)
            self.replaying = latest is None or latest.config != saved.config
        else:
            saved = self.saver.get_tuple(base)
        self.saved = saved
        if saved is not None:
            self.parent_config = saved.config
            if not self.replaying:
                for task_id, channel, value in saved.pending_writes or ():
                    if channel == ERROR:
                        self.errors[task_id] = value
                    elif channel not in SPECIAL_WRITES:
                        self.pending.setdefault(task_id, []).append((channel, value))
            for ch in self.append_only:
                if ch in saved.checkpoint["channel_values"]:
                    self._last_values[ch] = saved.checkpoint["channel_values"][ch]
        return restore_core(self.program, saved, namespace=self.ns)

    def fork_for_replay(self, core: Core) -> None:
        """Replaying an old checkpoint: start a new branch with a copy of it."""
        saved = self.saved
        assert saved is not None
        core._seq += 1  # the copy gets the next id; tasks planned from it use that id
        ckpt = self._checkpoint(core, dict(saved.checkpoint["channel_values"]), full=True)
        ckpt["updated_channels"] = saved.checkpoint.get("updated_channels")
        meta = self._metadata("fork", core.step)
        self._save_checkpoint(ckpt, meta, {}, appends={})

    # -- during the run -----------------------------------------------------------

    def saved_writes(self, task: Task) -> list[tuple[str, Any]] | None:
        """The writes a task saved in an earlier run of this step, if any."""
        if not self.pending:
            return None
        return self.pending.pop(task.id, None)

    def task_done(self, task: Task, error: BaseException | None) -> None:
        """Save a finished task's writes (or its error) against the current checkpoint."""
        if self.parent_config is None:
            return  # nothing to attach them to (a subgraph's first step with exit mode)
        if error is None:
            writes = list(task.writes)
        elif isinstance(error, Exception):
            writes = [(ERROR, error)]
        else:
            return  # control signals and interpreter exits are not task results
        self._save_writes(self.parent_config, writes, task.id, _task_path(task))

    def barrier(self, core: Core, source: Literal["input", "loop", "update"] = "loop") -> None:
        """Save the checkpoint the core reached at the barrier it just applied."""
        changed = core.changed
        values: dict[str, Any] = {}
        appends: dict[str, int] = {}
        if self.stored and self.durability != "exit":
            for ch in changed:
                c = core.channels.get(ch)
                if c is None or not c.persistent:
                    continue
                value = c.checkpoint()
                if value is MISSING:
                    continue
                values[ch] = value
                if ch in self.append_only:
                    n = appended_prefix(self._last_values.get(ch), value)
                    if n:
                        appends[ch] = n
                    self._last_values[ch] = value
            ckpt = self._checkpoint(core, values, full=False)
        else:
            ckpt = self._checkpoint(core, core.checkpoint_values(), full=True)
        new_versions = {ch: core.versions[ch] for ch in changed if ch in core.versions}
        meta = self._metadata(source, core.step)
        self._save_checkpoint(ckpt, meta, new_versions, appends)

    # -- after the run ------------------------------------------------------------

    def close(self) -> None:
        """Store what is held back or in flight, then release the thread."""
        try:
            if self._held_checkpoint is not None:
                self._commit_checkpoint(*self._held_checkpoint)
                self._held_checkpoint = None
            for save in self._held_back:
                save()
            self._held_back.clear()
            self.flush()
        finally:
            if self._bg is not None:
                self._bg.shutdown(wait=True)
                self._bg = None
            if self.lease is not None:
                self.lease.release()
                self.lease = None

    def flush(self) -> None:
        """Wait for background writes; raise the first that failed."""
        inflight, self._inflight = self._inflight, []
        first: BaseException | None = None
        for fut in inflight:
            exc = fut.exception()
            if exc is not None and first is None:
                first = exc
        if first is not None:
            raise first

    # -- internals ----------------------------------------------------------------

    def _checkpoint(self, core: Core, values: dict[str, Any], *, full: bool) -> Checkpoint:
        return Checkpoint(
            v=FORMAT_VERSION,
            id=core.checkpoint_id,
            ts=now_iso(),
            channel_values=values,
            channel_versions=dict(core.versions),
            versions_seen={k: dict(v) for k, v in core.versions_seen.items()},
            updated_channels=sorted(core.updated) if core.updated else None,
        )

    def _metadata(self, source: str, step: int) -> CheckpointMetadata:
        meta: dict[str, Any] = dict(self.user_metadata)
        meta.update(source=source, step=step, parents=dict(self.parents), run_id=self.run_id)
        return meta  # type: ignore[return-value]

    def _save_checkpoint(
        self,
        ckpt: Checkpoint,
        meta: CheckpointMetadata,
        new_versions: dict[str, Any],
        appends: dict[str, int],
    ) -> None:
        parent = self.parent_config or {
            "configurable": {"thread_id": self.thread, "checkpoint_ns": self.ns}
        }
        self.parent_config = {
            "configurable": {
                "thread_id": self.thread,
                "checkpoint_ns": self.ns,
                "checkpoint_id": ckpt["id"],
            }
        }
        if self.durability == "exit":
            # Keep only the newest: it is all that is stored when the run ends. Its
            # parent is the checkpoint the run started from; every change since then
            # is in it, so nothing incremental may be assumed.
            start = self.saved.config if self.saved is not None else parent
            held = self._held_checkpoint
            if held is not None:
                start = held[0]
                merged = {**held[3], **new_versions}
            else:
                merged = dict(new_versions)
            self._held_checkpoint = (start, ckpt, meta, merged, {})
            self._held_back.clear()  # writes of earlier steps are folded into it
            return
        if self.lease is not None:
            self.lease.renew()
        self._commit_checkpoint(parent, ckpt, meta, new_versions, appends)

    def _commit_checkpoint(
        self,
        parent: Mapping[str, Any],
        ckpt: Checkpoint,
        meta: CheckpointMetadata,
        new_versions: dict[str, Any],
        appends: dict[str, int],
    ) -> None:
        saver = self.saver
        if isinstance(saver, StoredSaver):
            prepared = saver.prepare(parent, ckpt, meta, new_versions, appends=appends)
            self._run(lambda: saver.commit(prepared))
        else:
            self._run_now(lambda: saver.put(parent, ckpt, meta, new_versions))

    def _save_writes(
        self, config: dict[str, Any], writes: list[tuple[str, Any]], task_id: str, path: str
    ) -> None:
        saver = self.saver
        if isinstance(saver, StoredSaver):
            prepared = saver.prepare_writes(config, writes, task_id, path)
            save: Callable[[], Any] = lambda: saver.commit_writes(prepared)  # noqa: E731
        else:
            save = lambda: saver.put_writes(config, writes, task_id, path)  # noqa: E731
        if self.durability == "exit":
            self._held_back.append(save)
        elif isinstance(saver, StoredSaver):
            self._run(save)
        else:
            self._run_now(save)

    def _run(self, job: Callable[[], Any]) -> None:
        if self.durability != "async":
            job()
            return
        if self._bg is None:
            self._bg = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stepgraph-save")
        self._inflight = [f for f in self._inflight if not f.done() or f.exception()]
        self._inflight.append(self._bg.submit(job))

    def _run_now(self, job: Callable[[], Any]) -> None:
        # A saver that cannot serialize ahead of time gets the live values: it must
        # store them before the run moves on, so it always runs in this thread.
        self.flush()
        job()


def _task_path(task: Task) -> str:
    return "~".join(str(p) for p in task.path)

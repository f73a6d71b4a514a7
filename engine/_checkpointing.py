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

import asyncio
import dataclasses
import operator
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from stepgraph.channels import MISSING, BinaryOperatorAggregate, Topic
from stepgraph.checkpoint import (
    FORMAT_VERSION,
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    InMemorySaver,
    PreparedPut,
    SerdeError,
    StoredSaver,
)
from stepgraph.checkpoint._blobs import appended_prefix, links
from stepgraph.checkpoint._model import ERROR, INTERRUPT, RESUME, SCHEDULED, metadata_from_config

from . import _ids
from ._core import Core
from ._interrupt import GraphInterrupt
from ._program import Program
from ._storing import _in_io_thread, _run_batch, _Writer

if TYPE_CHECKING:
    from ._task import Task

Durability = Literal["sync", "async", "exit"]
DURABILITY_MODES: tuple[str, ...] = ("sync", "async", "exit")
SPECIAL_WRITES = frozenset((ERROR, INTERRUPT, RESUME, SCHEDULED))
NULL_TASK = "~null~"  # task id prefix of writes made by no task (sorts after task ids)
_APPENDING_OPS = (operator.add, operator.iadd, operator.concat, operator.iconcat)


def append_only_channels(program: Program) -> frozenset[str]:
    """Channels whose value only ever grows at the end: saved as deltas."""
    ops = _APPENDING_OPS
    out = set()
    for key, ch in program.channels.items():
        if (isinstance(ch, Topic) and ch.accumulate) or (
            isinstance(ch, BinaryOperatorAggregate) and ch.operator in ops
        ):
            out.add(key)
    return frozenset(out)


@dataclasses.dataclass
class SavedWrites:
    """The pending writes of a checkpoint, sorted by what they are for.

    Attributes:
        writes: task id -> the task's ordinary writes (finished tasks, and @task call
            records).
        errors: task id -> the error the task failed with.
        interrupts: task id -> its unanswered interrupts.
        resumes: task id -> the answers it received before its latest question.
        null: writes of no task (a resume's update), in the order they were made.
    """

    writes: dict[str, list[tuple[str, Any]]]
    errors: dict[str, Any]
    interrupts: dict[str, list[Any]]
    resumes: dict[str, list[Any]]
    null: list[tuple[str, Any]]

    @classmethod
    def of(cls, saved: CheckpointTuple) -> SavedWrites:
        out = cls({}, {}, {}, {}, [])
        for task_id, channel, value in saved.pending_writes or ():
            if channel == ERROR:
                out.errors[task_id] = value
            elif channel == INTERRUPT:
                out.interrupts[task_id] = list(value or ())
            elif channel == RESUME:
                out.resumes[task_id] = list(value or ())
            elif channel not in SPECIAL_WRITES:
                out.writes.setdefault(task_id, []).append((channel, value))
        for task_id in sorted(k for k in out.writes if k.startswith(NULL_TASK)):
            out.null += out.writes.pop(task_id)
        # A task that asked a question and later finished has answered it: its
        # interrupt is no longer pending, and its recorded answers are spent.
        for task_id, writes in out.writes.items():
            if any(ch != "__call__" for ch, _ in writes):  # finished, not just recorded
                out.interrupts.pop(task_id, None)
                out.resumes.pop(task_id, None)
        return out


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
        self.interrupts: dict[str, list[Any]] = {}  # task id -> its pending Interrupts
        self.resumes: dict[str, list[Any]] = {}  # task id -> answers it already received
        self.null_writes: list[tuple[str, Any]] = []  # resume updates not in a checkpoint yet
        self.replaying = False
        self.parent_config: dict[str, Any] | None = None  # config of the last saved checkpoint
        self._last_values: dict[str, Any] = {}  # append-only channel -> last saved value
        self.step_tasks = 0  # tasks running in the current superstep (set by the loop)
        self._call_lock = threading.Lock()  # task calls save from worker threads
        # (parent config, metadata) of the newest checkpoint, for the checkpoints stream
        self.last_saved: tuple[dict[str, Any] | None, CheckpointMetadata] | None = None
        self._jobs: list[Callable[[], Any]] = []  # stored together at the next flush
        self._writer: _Writer | None = None  # durability="async"
        # durability="exit": the newest checkpoint, serialized, and what it needs
        self._held: PreparedPut | None = None
        self._held_blobs: dict[str, bytes] = {}
        self._held_plain: tuple[Checkpoint, CheckpointMetadata] | None = None
        self._held_writes: list[Callable[[], Any]] = []
        # Async runs make the saver's calls that wait on storage in a worker thread, so
        # the event loop goes on with other runs meanwhile; not for process memory.
        self.offload = not isinstance(saver, InMemorySaver)
        # Set by the async driver when it calls ``astore`` after each task and barrier.
        self.defer_sync = False
        self._loaded: tuple[CheckpointTuple | None, bool] | BaseException | None = None

    # -- before the run -----------------------------------------------------------

    def acquire(self) -> None:
        if self.ns:
            return  # a subgraph runs inside its parent's lease
        self.lease = self.saver.acquire_thread(self.thread, wait=self.wait)

    async def aopen(self, *, defer_sync: bool = False) -> None:
        """Take the thread and read what ``restore`` needs, for async runs.

        With a saver that waits on storage, both happen in one worker thread, so the
        event loop goes on with other runs meanwhile. ``defer_sync``: the driver calls
        ``astore`` after each task and barrier, so that with ``durability="sync"``
        those stores happen in a worker thread too.
        """
        self.defer_sync = defer_sync and self.offload and self.durability == "sync"
        if not self.offload:  # process memory: only waiting for the thread takes time
            if self.wait:
                await asyncio.to_thread(self.acquire)
            else:
                self.acquire()
            return

        def take_and_load() -> None:
            self.acquire()
            try:
                self._loaded = self._load()
            except Exception as exc:  # raised by restore(), inside the run, as sync runs do
                self._loaded = exc

        await _in_io_thread(take_and_load)

    def _load(self) -> tuple[CheckpointTuple | None, bool]:
        """The checkpoint to continue from, and whether that is replaying an older one."""
        base = {"configurable": {"thread_id": self.thread, "checkpoint_ns": self.ns}}
        if self.wanted_id is None:
            return self.saver.get_tuple(base), False
        cfg = {"configurable": {**base["configurable"], "checkpoint_id": self.wanted_id}}
        saved = self.saver.get_tuple(cfg)
        if saved is None:
            raise ValueError(
                f"thread {self.thread!r} has no checkpoint {self.wanted_id!r}; list "
                "the thread's checkpoints with get_state_history(config)"
            )
        latest = self.saver.get_tuple(base)
        return saved, latest is None or latest.config != saved.config

    def restore(self) -> Core:
        """Load the thread's checkpoint and build the core from it."""
        loaded, self._loaded = self._loaded, None
        if isinstance(loaded, BaseException):
            raise loaded
        saved, self.replaying = loaded if loaded is not None else self._load()
        self.saved = saved
        if saved is not None:
            self.parent_config = saved.config
            if not self.replaying:
                found = SavedWrites.of(saved)
                self.pending = found.writes
                self.interrupts = found.interrupts
                self.resumes = found.resumes
                self.null_writes = found.null
            for ch in self.append_only:
                if ch in saved.checkpoint["channel_values"]:
                    self._last_values[ch] = saved.checkpoint["channel_values"][ch]
        return restore_core(self.program, saved, namespace=self.ns)

    def fork_for_replay(self, core: Core) -> None:
        """Replaying an old checkpoint: start a new branch with a copy of it."""
        saved = self.saved
        assert saved is not None
        core._seq += 1  # the copy gets the next id; tasks planned from it use that id
        ckpt = self._checkpoint(core, dict(saved.checkpoint["channel_values"]))
        ckpt["updated_channels"] = saved.checkpoint.get("updated_channels")
        meta = self._metadata("fork", core.step)
        parent = self._advance(ckpt["id"])
        saver = self.saver
        if isinstance(saver, StoredSaver):
            prepared = saver.prepare(parent, ckpt, meta, {})
            if self.durability == "exit":
                self._held = prepared
                return
            saver.commit(prepared)
        else:
            saver.put(parent, ckpt, meta, {})

    # -- during the run -----------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The config of the newest checkpoint of this run (one must have been made)."""
        if self.parent_config is None:
            raise RuntimeError("no checkpoint has been made in this namespace yet")
        return self.parent_config

    def pending_interrupts(self) -> list[Any]:
        """Every interrupt saved against the checkpoint the run starts from (once each).

        An interrupt raised in a task call is saved under the call and again under the
        task that waited for it; it is one question.
        """
        seen: dict[str, Any] = {}
        for found in self.interrupts.values():
            for i in found:
                seen.setdefault(getattr(i, "id", repr(i)), i)
        return list(seen.values())

    def save_null(self, writes: list[tuple[str, Any]]) -> None:
        """Save writes that belong to no task (a resume's update) with the checkpoint."""
        if self.parent_config is not None and writes:
            self.save_call(f"{NULL_TASK}{time.time_ns():020d}", writes)

    def save_call(self, task_id: str, writes: list[tuple[str, Any]]) -> None:
        """Save a task call's record and result at once (from any thread)."""
        config = self.parent_config
        if config is None:
            return
        saver = self.saver
        with self._call_lock:
            if isinstance(saver, StoredSaver):
                prepared = saver.prepare_writes(config, writes, task_id, "")
                job: Callable[[], Any] = lambda: saver.commit_writes(prepared)  # noqa: E731
            else:
                job = lambda: saver.put_writes(config, writes, task_id, "")  # noqa: E731
            if self.durability == "exit":
                self._held_writes.append(job)
            elif self.durability == "async" and isinstance(saver, StoredSaver):
                if self._writer is None:
                    self._writer = _Writer(saver)
                self._writer.submit([job])
            else:
                job()

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
        elif isinstance(error, GraphInterrupt):
            # The question, and the answers the task had had so far: a re-run of the
            # task gets those answers back from its earlier interrupt() calls.
            writes = [(INTERRUPT, list(error.interrupts))]
            if error.answers:
                writes.append((RESUME, list(error.answers)))
        else:
            return  # other control signals and interpreter exits are not task results
        try:
            self._save_writes(self.parent_config, writes, task.id, _task_path(task))
        except SerdeError as exc:
            exc.add_note(
                f"while saving the writes of node {task.name!r} in superstep {task.step} "
                f"(task {task.id}) on thread {self.thread!r}"
            )
            raise

    def barrier(self, core: Core, source: Literal["input", "loop", "update"] = "loop") -> None:
        """Save the checkpoint the core reached at the barrier it just applied."""
        changed = core.changed
        new_versions = {ch: core.versions[ch] for ch in changed if ch in core.versions}
        meta = self._metadata(source, core.step)
        parent = self._advance(core.checkpoint_id)
        self.last_saved = (parent if "checkpoint_id" in parent["configurable"] else None, meta)
        saver = self.saver
        if not isinstance(saver, StoredSaver):
            ckpt = self._checkpoint(core, core.checkpoint_values())
            if self.durability == "exit":
                self._held_plain = (ckpt, meta)
                self._held_writes.clear()
                return
            self._now(lambda: saver.put(parent, ckpt, meta, new_versions))
            return
        values: dict[str, Any] = {}
        appends: dict[str, int] = {}
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
        # Serialized now, stored now, later in the background, or at the end of the run:
        # either way nothing the next steps do can change what is saved.
        try:
            prepared = saver.prepare(
                parent, self._checkpoint(core, values), meta, new_versions, appends=appends
            )
        except SerdeError as exc:
            exc.add_note(f"while saving the checkpoint after superstep {core.step}")
            raise
        if self.durability == "exit":
            self._held_blobs.update(prepared.blobs)
            self._held = prepared
            self._held_writes.clear()  # a later checkpoint holds their effect
            return
        if self.lease is not None:
            self.lease.renew()
        self._queue(lambda: saver.commit(prepared))
        self._store_soon()

    def _store_soon(self) -> None:
        # An async run with durability="sync" stores what is queued with ``astore``,
        # from a worker thread, before it goes on: not here, on the event loop.
        if not self.defer_sync:
            self._flush_queue()

    async def astore(self) -> None:
        """Store what is queued, off the event loop (async runs, ``durability="sync"``)."""
        if self._jobs:
            await _in_io_thread(self._flush_queue)

    def flush_step(self) -> None:
        """Store the writes of a step that will not reach its barrier (it failed)."""
        self._flush_queue()

    # -- after the run ------------------------------------------------------------

    async def aclose(self) -> None:
        """``close`` for async runs that ended well: the waiting happens in a worker thread.

        (The driver's ``close`` still runs afterwards and finds nothing left to do.)
        """
        if self.offload:
            await _in_io_thread(self.close)

    def close(self) -> None:
        """Store what is held back or in flight, then release the thread."""
        try:
            self._flush_queue()
            if self.durability == "exit":
                self._store_held()
            if self._writer is not None:
                self._writer.flush()
        finally:
            if self._writer is not None:
                self._writer.wait()
                self._writer = None
            if self.lease is not None:
                self.lease.release()
                self.lease = None

    # -- internals ----------------------------------------------------------------

    def _advance(self, checkpoint_id: str) -> dict[str, Any]:
        """Make ``checkpoint_id`` the current checkpoint; return the previous one's config."""
        parent = self.parent_config or {
            "configurable": {"thread_id": self.thread, "checkpoint_ns": self.ns}
        }
        self.parent_config = {
            "configurable": {
                "thread_id": self.thread,
                "checkpoint_ns": self.ns,
                "checkpoint_id": checkpoint_id,
            }
        }
        return parent

    def _checkpoint(self, core: Core, values: dict[str, Any]) -> Checkpoint:
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

    def _save_writes(
        self, config: dict[str, Any], writes: list[tuple[str, Any]], task_id: str, path: str
    ) -> None:
        saver = self.saver
        if not isinstance(saver, StoredSaver):
            job: Callable[[], Any] = lambda: saver.put_writes(config, writes, task_id, path)  # noqa: E731
            if self.durability == "exit":
                self._held_writes.append(job)
            else:
                self._now(job)
            return
        prepared = saver.prepare_writes(config, writes, task_id, path)
        job = lambda: saver.commit_writes(prepared)  # noqa: E731
        if self.durability == "exit":
            self._held_writes.append(job)
            return
        self._queue(job)
        if self.step_tasks > 1:
            # Siblings still run: this task's writes must be stored before they end, so a
            # crash now does not run it again. A lone task's writes go with the barrier.
            self._store_soon()

    def _queue(self, job: Callable[[], Any]) -> None:
        self._jobs.append(job)

    def _flush_queue(self) -> None:
        jobs, self._jobs = self._jobs, []
        if not jobs:
            return
        if self.durability == "async":
            if self._writer is None:
                self._writer = _Writer(self.saver)
            self._writer.submit(jobs)
        else:
            _run_batch(self.saver, jobs)

    def _store_held(self) -> None:
        held, self._held = self._held, None
        saver = self.saver
        if held is not None and isinstance(saver, StoredSaver):
            # The run's last checkpoint goes straight under the one it started from,
            # with every blob written since then that it still needs.
            start = self.saved.checkpoint["id"] if self.saved is not None else None
            blobs = _reachable(held, self._held_blobs)
            final = dataclasses.replace(held, parent_id=start, blobs=blobs)
            self._held_blobs = {}
            _run_batch(saver, [lambda: saver.commit(final), *self._held_writes])
        elif self._held_plain is not None:
            ckpt, meta = self._held_plain
            start_cfg = (
                self.saved.config
                if self.saved is not None
                else {"configurable": {"thread_id": self.thread, "checkpoint_ns": self.ns}}
            )
            versions = dict(ckpt["channel_versions"])
            self._held_plain = None
            self.saver.put(start_cfg, ckpt, meta, versions)
            for job in self._held_writes:
                job()
        else:
            _run_batch(saver, self._held_writes)
        self._held_writes = []

    def _now(self, job: Callable[[], Any]) -> None:
        # A saver that cannot serialize ahead of time gets the live values: it must
        # store them before the run moves on, so it always runs in this thread.
        if self._writer is not None:
            self._writer.flush()
        job()


def _reachable(prepared: PreparedPut, blobs: Mapping[str, bytes]) -> dict[str, bytes]:
    """The blobs of ``blobs`` that ``prepared``'s references need, through delta chains."""
    out: dict[str, bytes] = {}
    todo = [ref[0] for ref in prepared.refs.values()]
    while todo:
        key = todo.pop()
        data = blobs.get(key)
        if data is None or key in out:
            continue
        out[key] = data
        todo.extend(links(data))
    return out


def _task_path(task: Task) -> str:
    return "~".join(str(p) for p in task.path)

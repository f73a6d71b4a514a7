"""The saver protocol: one set of sync methods, async twins derived from them.

A saver stores checkpoints, their metadata and the pending writes of finished tasks,
addressed by LangGraph-shaped configs: ``{"configurable": {"thread_id": ...,
"checkpoint_ns": ..., "checkpoint_id": ...}}``. Implementations write the sync methods
only; every ``a``-method runs its sync twin in a worker thread, so there is one source
of truth and no hand-written copy that can drift.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Literal

from ._model import ChannelVersion, Checkpoint, CheckpointMetadata, CheckpointTuple
from .errors import ThreadBusyError

PruneStrategy = Literal["keep_latest", "delete"]
_LEASE_LOCK = threading.Lock()


def thread_of(config: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """``(thread_id, checkpoint_ns, checkpoint_id)`` from a config.

    Raises:
        ValueError: when the config names no thread.
    """
    conf = config.get("configurable") or {}
    thread = conf.get("thread_id")
    if thread is None:
        raise ValueError(
            "a checkpointer needs a thread: pass config={'configurable': {'thread_id': "
            "'<any id>'}} so the run's checkpoints have somewhere to go"
        )
    return str(thread), str(conf.get("checkpoint_ns", "")), conf.get("checkpoint_id")


def checkpoint_config(thread: str, ns: str, checkpoint_id: str) -> dict[str, Any]:
    """The config that addresses one checkpoint."""
    return {
        "configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}
    }


LEASE_TTL = 60.0
"""Seconds a thread lease lasts without renewal; a run renews it as it saves."""

_HOST = socket.gethostname()


def new_lease_owner() -> str:
    """A lease owner name: ``host:pid:random``, so stale leases can be recognised."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` is a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class ThreadLease:
    """The right to advance one thread, held by one run (see ``acquire_thread``).

    Use it as a context manager, or call ``release()``. ``renew()`` is cheap to call
    often: it only touches storage once a third of the lease's lifetime has passed.
    """

    __slots__ = ("_renewed", "owner", "released", "saver", "thread_id")

    def __init__(self, saver: BaseCheckpointSaver, thread_id: str, owner: str) -> None:
        self.saver = saver
        self.thread_id = thread_id
        self.owner = owner
        self.released = False
        self._renewed = time.monotonic()

    def renew(self) -> None:
        now = time.monotonic()
        if now - self._renewed >= LEASE_TTL / 3 and not self.released:
            self._renewed = now
            self.saver._lease_try(self.thread_id, self.owner, LEASE_TTL)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.saver._lease_release(self.thread_id, self.owner)

    def __enter__(self) -> ThreadLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class BaseCheckpointSaver(ABC):
    """Where checkpoints live. Subclass it and implement the sync methods."""

    _local_leases: dict[str, tuple[str, float]]

    # -- required -----------------------------------------------------------------

    @abstractmethod
    def get_tuple(self, config: Mapping[str, Any]) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or the thread's latest; None if none."""

    @abstractmethod
    def list(
        self,
        config: Mapping[str, Any] | None,
        *,
        filter: Mapping[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first; ``config`` None lists every thread.

        Args:
            config: the thread (and optionally namespace) to list.
            filter: metadata keys that must be equal.
            before: only checkpoints created before this one.
            limit: at most this many.
        """

    @abstractmethod
    def put(
        self,
        config: Mapping[str, Any],
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: Mapping[str, ChannelVersion],
    ) -> dict[str, Any]:
        """Store a checkpoint; its parent is ``config``'s ``checkpoint_id``.

        ``new_versions`` names the channels whose value changed since the parent: only
        those are stored again. Returns the config addressing the new checkpoint.
        """

    @abstractmethod
    def put_writes(
        self,
        config: Mapping[str, Any],
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a finished task's writes against the checkpoint ``config`` names."""

    @abstractmethod
    def delete_thread(self, thread_id: str) -> None:
        """Remove a thread: every namespace, checkpoint and write."""

    @abstractmethod
    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread's whole history under another thread id."""

    @abstractmethod
    def prune(
        self, thread_ids: Sequence[str], *, strategy: PruneStrategy = "keep_latest", keep: int = 1
    ) -> None:
        """Retention: keep the latest ``keep`` checkpoints per namespace, or delete all."""

    # -- provided -----------------------------------------------------------------

    def acquire_thread(
        self, thread_id: str, *, wait: float | None = 0.0, owner: str | None = None
    ) -> ThreadLease:
        """Take the right to advance ``thread_id``; a run holds it while it runs.

        Args:
            thread_id: the thread.
            wait: seconds to wait for another run to let go (0: fail at once; None:
                wait as long as it takes).
            owner: the holder's name (default: ``host:pid:random``).

        Raises:
            ThreadBusyError: another live run holds the thread.
        """
        owner = owner or new_lease_owner()
        thread = str(thread_id)
        start = time.monotonic()
        delay = 0.005
        while True:
            holder = self._lease_try(thread, owner, LEASE_TTL)
            if holder is None:
                return ThreadLease(self, thread, owner)
            waited = time.monotonic() - start
            if wait is not None and waited >= wait:
                raise ThreadBusyError(thread, holder, waited if wait else 0.0)
            pause = delay if wait is None else min(delay, max(wait - waited, 0.0))
            time.sleep(pause)
            delay = min(delay * 2, 0.25)

    def _lease_try(self, thread: str, owner: str, ttl: float) -> str | None:
        """Take or renew the lease; None on success, else the current holder.

        This default keeps leases in the saver object, which protects a thread within
        one process; savers whose storage is shared between processes override it
        (and ``_lease_release``) to keep the lease in that storage.
        """
        now = time.time()
        with _LEASE_LOCK:
            leases = self.__dict__.setdefault("_local_leases", {})
            held = leases.get(thread)
            if (
                held is not None
                and held[0] != owner
                and held[1] > now
                and not owner_is_dead(held[0])
            ):
                return held[0]
            leases[thread] = (owner, now + ttl)
        return None

    def _lease_release(self, thread: str, owner: str) -> None:
        with _LEASE_LOCK:
            leases = self.__dict__.setdefault("_local_leases", {})
            held = leases.get(thread)
            if held is not None and held[0] == owner:
                del leases[thread]

    def get(self, config: Mapping[str, Any]) -> Checkpoint | None:
        """The checkpoint alone (see ``get_tuple``)."""
        found = self.get_tuple(config)
        return found.checkpoint if found else None

    def get_next_version(self, current: ChannelVersion | None, channel: str | None) -> int:
        """The version after ``current`` (integers, starting at 1)."""
        if current is None:
            return 1
        return int(str(current).split(".")[0]) + 1

    # -- async twins, derived -------------------------------------------------------

    async def aget_tuple(self, config: Mapping[str, Any]) -> CheckpointTuple | None:
        """Async ``get_tuple`` (runs in a worker thread)."""
        return await asyncio.to_thread(self.get_tuple, config)

    async def aget(self, config: Mapping[str, Any]) -> Checkpoint | None:
        """Async ``get``."""
        return await asyncio.to_thread(self.get, config)

    async def alist(
        self,
        config: Mapping[str, Any] | None,
        *,
        filter: Mapping[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async ``list``."""
        items = await asyncio.to_thread(
            lambda: builtins.list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in items:
            yield item

    async def aput(
        self,
        config: Mapping[str, Any],
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: Mapping[str, ChannelVersion],
    ) -> dict[str, Any]:
        """Async ``put``."""
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: Mapping[str, Any],
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async ``put_writes``."""
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async ``delete_thread``."""
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async ``copy_thread``."""
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(
        self, thread_ids: Sequence[str], *, strategy: PruneStrategy = "keep_latest", keep: int = 1
    ) -> None:
        """Async ``prune``."""
        await asyncio.to_thread(lambda: self.prune(thread_ids, strategy=strategy, keep=keep))

"""Storing a run's checkpoints and writes off the thread that drives it.

`_Writer` stores a run's jobs in the background (``durability="async"``) on a thread
pool every run shares; `_in_io_thread` runs an async run's saver calls that wait
(reading the thread, the stores of ``durability="sync"``, the last stores) on a pool
of their own; `_run_batch` stores jobs in one transaction when the saver can.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from stepgraph.checkpoint import BaseCheckpointSaver


def _run_batch(saver: BaseCheckpointSaver, jobs: list[Callable[[], Any]]) -> None:
    """Run jobs in one transaction; if that fails, one by one (each is idempotent)."""
    if not jobs:
        return
    batch = getattr(saver, "batch", None)
    if batch is None or len(jobs) == 1:
        for job in jobs:
            job()
        return
    try:
        with batch():
            for job in jobs:
                job()
    except Exception:
        for job in jobs:
            job()


_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _forget_pools() -> None:
    # A forked child has none of its parent's threads: its pools must be made anew,
    # or work handed to them would wait for threads that do not exist there.
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)


def _pool(name: str, size: int) -> ThreadPoolExecutor:
    """A thread pool shared by every run of this process (made on first use)."""
    pool = _pools.get(name)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(name)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)
                _pools[name] = pool
    return pool


def _save_pool() -> ThreadPoolExecutor:
    """The threads that run every run's background stores."""
    return _pool("stepgraph-save", 32)


async def _in_io_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` (the saver calls of an async run that wait) on a thread of its own pool.

    Not on the event loop's default executor, which runs sync node functions: they
    would queue behind runs waiting there. Nor on the save pool: a run waiting there
    for its stores would hold a thread its stores need.
    """
    ctx = contextvars.copy_context()
    pool = _pool("stepgraph-io", 64)
    return await asyncio.get_running_loop().run_in_executor(pool, ctx.run, fn)


class _Writer:
    """Stores a run's job batches in the background, in order, a transaction per round.

    A round runs on a thread of a pool all runs share, and the rounds of one run never
    overlap, so its jobs are stored in the order they came. Jobs that pile up while a
    commit is running are stored together by the next round: the busier the run, the
    fewer commits per step. No thread is started per run: starting one costs the
    run's own thread a wait for the new thread to get going.
    """

    def __init__(self, saver: BaseCheckpointSaver) -> None:
        self.saver = saver
        self._cond = threading.Condition()
        self._jobs: list[Callable[[], Any]] = []
        self._busy = False  # a round is scheduled or running
        self._error: BaseException | None = None

    def submit(self, jobs: list[Callable[[], Any]]) -> None:
        with self._cond:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            self._jobs.extend(jobs)
            if self._busy:
                return  # the round in progress takes them
            self._busy = True
        try:
            _save_pool().submit(self._rounds)
        except RuntimeError:  # the interpreter is shutting down: store them here
            self._rounds()

    def flush(self) -> None:
        """Wait until everything submitted is stored; raise the first failure."""
        self.wait()
        with self._cond:
            if self._error is not None:
                error, self._error = self._error, None
                raise error

    def wait(self) -> None:
        """Wait until everything submitted is stored."""
        with self._cond:
            while self._busy:
                self._cond.wait()

    def _rounds(self) -> None:
        while True:
            with self._cond:
                jobs, self._jobs = self._jobs, []
                if not jobs:
                    self._busy = False
                    self._cond.notify_all()
                    return
            try:
                _run_batch(self.saver, jobs)
            except BaseException as exc:
                with self._cond:
                    if self._error is None:
                        self._error = exc

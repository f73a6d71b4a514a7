"""One small interface for watching runs: runs, supersteps, tasks, retries, pauses, saves.

Subclass `Instrument` and override the hooks you need; every hook does nothing by
default. Install an instrument for every run in the process with `install()`, or for
one run with ``invoke(..., instruments=[...])``. With none installed the engine makes
no call at all: each call site is behind one truth test of an empty tuple.

Hooks run in the thread that drives the run (``task_retry`` in the task's thread),
while the run waits: keep them quick, and do not raise from them (an exception in a
hook is reported as a warning and otherwise ignored, so an instrument cannot break a
run).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._task import Task


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What an instrument knows about a run.

    Attributes:
        graph: the graph's name.
        namespace: ``""`` for a top-level run, ``"node:<task id>|..."`` for a subgraph's.
        thread_id: the ``configurable.thread_id``, or None.
        run_id: the run's id (as saved in checkpoint metadata), or None without a
            checkpointer.
        parent: the enclosing run for a subgraph run, else None.
    """

    graph: str
    namespace: str
    thread_id: str | None
    run_id: str | None
    parent: RunInfo | None = None


class Instrument:
    """Hooks called as runs progress; override the ones you need."""

    def run_start(self, run: RunInfo) -> None:
        """A run begins (after its saved state, if any, is loaded)."""

    def run_end(self, run: RunInfo, error: BaseException | None) -> None:
        """A run ends: finished, paused, or failed with ``error``."""

    def step_start(self, run: RunInfo, step: int, tasks: Sequence[Task]) -> None:
        """A superstep begins with these tasks."""

    def step_end(self, run: RunInfo, step: int, error: BaseException | None) -> None:
        """A superstep's barrier: committed, or failed with ``error`` (nothing applied)."""

    def task_start(self, run: RunInfo, task: Task) -> None:
        """A task is about to run (``task.name``, ``task.id``, ``task.step``)."""

    def task_end(self, run: RunInfo, task: Task, error: BaseException | None) -> None:
        """A task finished (its writes are in ``task.writes``), or failed."""

    def task_retry(
        self, run: RunInfo, task: Task, error: BaseException, attempt: int, delay: float
    ) -> None:
        """Attempt number ``attempt`` of a task failed; it runs again after ``delay`` s."""

    def interrupt(self, run: RunInfo, interrupts: Sequence[Any]) -> None:
        """The run paused: on these interrupts, or at a breakpoint (empty)."""

    def checkpoint(self, run: RunInfo, config: dict[str, Any], metadata: Any) -> None:
        """A checkpoint was made (stored, or queued to be stored) at a barrier."""


_lock = threading.Lock()
_installed: tuple[Instrument, ...] = ()


def install(instrument: Instrument) -> Instrument:
    """Watch every run in this process with ``instrument``; returns it."""
    global _installed
    if not isinstance(instrument, Instrument):
        raise TypeError(
            f"install() takes an Instrument (subclass stepgraph.engine.Instrument), got "
            f"{type(instrument).__name__}"
        )
    with _lock:
        if instrument not in _installed:
            _installed = (*_installed, instrument)
    return instrument


def uninstall(instrument: Instrument) -> None:
    """Stop watching runs with ``instrument`` (no error if it was not installed)."""
    global _installed
    with _lock:
        _installed = tuple(i for i in _installed if i is not instrument)


def installed() -> tuple[Instrument, ...]:
    """The instruments installed with `install()`."""
    return _installed


def for_run(extra: Sequence[Instrument] | None) -> tuple[Instrument, ...]:
    if not extra:
        return _installed
    for inst in extra:
        if not isinstance(inst, Instrument):
            raise TypeError(f"instruments= takes Instrument objects, got {type(inst).__name__}")
    return (*_installed, *extra)


def call(instruments: tuple[Instrument, ...], hook: str, *args: Any) -> None:
    """Call ``hook`` on each instrument; a failing hook warns instead of failing the run."""
    for inst in instruments:
        try:
            getattr(inst, hook)(*args)
        except Exception as exc:
            warnings.warn(
                f"instrument {type(inst).__name__}.{hook} raised {exc!r}; the run goes on",
                RuntimeWarning,
                stacklevel=2,
            )

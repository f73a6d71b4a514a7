"""Tools for testing graphs: executors that fix or shuffle task order, a fake clock, assertions.

Nothing here needs pytest; use it from any test runner.

* `InlineExecutor` runs a superstep's parallel tasks one by one in the calling
  thread, in the order they were submitted: ``graph.invoke(..., executor=InlineExecutor())``.
* `ShuffledExecutor` runs each task in its own thread after a random delay drawn from
  a seeded generator, so tasks finish in varying orders. Code whose result depends on
  thread timing shows up as results that change with the seed. (A graph's own state
  never does: stepgraph applies writes in task-path order, not completion order.)
* `FakeClock` is a clock that moves only when told to. ``clock.install()`` makes
  retry backoff sleep on it (recorded, never waited for); pass it as a cache's
  ``clock=`` for TTLs.
* `run_steps` / `arun_steps` collect ``graph.iter()`` / ``graph.aiter()`` results, and
  `assert_step_ran` / `assert_state_after` check them with messages that show the run.

Example::

    results = run_steps(graph, {"items": []})
    assert_step_ran(results, 1, {"a", "b"})
    assert_state_after(results, 1, {"items": ["a", "b"]})
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence, Set
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from . import _policy
from ._stepping import StepResult

__all__ = [
    "InlineExecutor",
    "ShuffledExecutor",
    "FakeClock",
    "run_steps",
    "arun_steps",
    "assert_step_ran",
    "assert_state_after",
]

P = ParamSpec("P")
T = TypeVar("T")


# -- executors ----------------------------------------------------------------------


class InlineExecutor(Executor):
    """Runs each submitted callable at once, in the calling thread, in submission order.

    With it a run has one thread: tasks of a superstep run one after another, always
    in the same order, and a debugger or ``pdb.set_trace()`` inside a node just works.
    (Calls of ``@task`` functions run on the run's own pool, not on this executor.)
    """

    def __init__(self) -> None:
        self._shutdown = False
        self.submitted = 0
        """How many callables it has run."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        if self._shutdown:
            raise RuntimeError("cannot submit to an InlineExecutor after shutdown()")
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        self.submitted += 1
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


class ShuffledExecutor(Executor):
    """Runs each submitted callable in its own thread, started after a random delay.

    The delays come from ``random.Random(seed)``, so tasks of a superstep start (and
    usually finish) in an order that changes with the seed. Run a test under many
    seeds to expose code that depends on which task finishes first::

        for seed in range(20):
            assert graph.invoke(inp, executor=ShuffledExecutor(seed)) == expected

    The seed fixes the delays, not the threads' interleaving: an order-dependent
    failure seen with one seed is likely, not certain, to recur with it.

    Args:
        seed: seeds the delays.
        max_delay: the longest delay in seconds (each is uniform in ``[0, max_delay)``).
    """

    def __init__(self, seed: int | None = None, *, max_delay: float = 0.002) -> None:
        if max_delay < 0:
            raise ValueError(f"max_delay must be at least 0 seconds, got {max_delay!r}")
        self._rng = random.Random(seed)
        self._max_delay = max_delay
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._shutdown = False
        self.delays: list[float] = []
        """The delay drawn for each submission, in submission order."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a ShuffledExecutor after shutdown()")
            delay = self._rng.random() * self._max_delay
            self.delays.append(delay)
            self._threads = [t for t in self._threads if t.is_alive()]

            def run() -> None:
                time.sleep(delay)
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)

            thread = threading.Thread(target=run, name="stepgraph-shuffled", daemon=True)
            self._threads.append(thread)
        thread.start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()


# -- the clock ----------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told to: by ``advance()`` or by sleeping on it.

    Call it (or ``now()``) for the time in seconds. ``sleep(s)`` and ``asleep(s)``
    record ``s`` in ``sleeps`` and move the clock on at once. Hand it to a cache for
    TTLs (``InMemoryCache(clock=clock)``) and ``install()`` it for retry backoff::

        clock = FakeClock()
        with clock.install():
            graph.invoke(inp)          # retries "wait" without waiting
        assert clock.sleeps == [0.5, 1.0]

    It is thread-safe: tasks retrying in parallel threads sleep on it together.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        """Every sleep asked of the clock, in the order asked."""

    def now(self) -> float:
        """The current fake time, in seconds."""
        return self._now

    __call__ = now

    def advance(self, seconds: float) -> float:
        """Move the clock on by ``seconds`` (without recording a sleep); the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds!r})")
        with self._lock:
            self._now += seconds
            return self._now

    def sleep(self, seconds: float) -> None:
        """Record a sleep and move the clock on by it, without waiting."""
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    async def asleep(self, seconds: float) -> None:
        """``sleep`` for async code: yields to the event loop once, waits no time."""
        self.sleep(seconds)
        await asyncio.sleep(0)

    @contextmanager
    def install(self, *, jitter: float | None = None) -> Iterator[FakeClock]:
        """Make retry backoff sleep on this clock while the block runs.

        Replaces the engine's backoff hooks (sync and async) for the whole process,
        and restores them on exit; do not install two clocks at once.

        Args:
            jitter: the value every jitter draw returns (``RetryPolicy(jitter=True)``
                adds a draw in ``[0, 1)`` to each wait). ``None`` draws from
                ``random.Random(0)``: still deterministic, no real randomness.
        """
        if jitter is not None and not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), like a random draw; got {jitter!r}")
        saved = (_policy._sleep, _policy._asleep, _policy._random)
        if jitter is None:
            draw: Callable[[], float] = random.Random(0).random
        else:
            fixed = jitter

            def draw() -> float:
                return fixed

        _policy._sleep, _policy._asleep, _policy._random = self.sleep, self.asleep, draw
        try:
            yield self
        finally:
            _policy._sleep, _policy._asleep, _policy._random = saved

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r}, sleeps={len(self.sleeps)})"


# -- stepping and assertions --------------------------------------------------------


def run_steps(
    graph: Any, input: Any, config: Mapping[str, Any] | None = None, **kwargs: Any
) -> list[StepResult]:
    """All of ``graph.iter(input, config, **kwargs)``'s results, as a list.

    If a step fails its error is raised; its result is lost with the list, so iterate
    ``graph.iter()`` yourself to look at a failed step.
    """
    return list(graph.iter(input, config, **kwargs))


async def arun_steps(
    graph: Any, input: Any, config: Mapping[str, Any] | None = None, **kwargs: Any
) -> list[StepResult]:
    """Async twin of ``run_steps`` (over ``graph.aiter()``)."""
    return [r async for r in graph.aiter(input, config, **kwargs)]


def _summary(results: Sequence[StepResult]) -> str:
    lines = [f"  step {r.step}: {', '.join(r.nodes) or '(no tasks)'}" for r in results]
    return "\n".join(lines) or "  (no steps)"


def _find(results: Sequence[StepResult], step: int) -> StepResult:
    for r in results:
        if r.step == step:
            return r
    raise AssertionError(
        f"there is no step {step} in these results; the run had:\n{_summary(results)}"
    )


def assert_step_ran(results: Sequence[StepResult], step: int, nodes: Collection[str]) -> None:
    """Assert that superstep ``step`` ran exactly ``nodes``.

    A set compares names only; a list or tuple also compares how often each node ran
    (a node sent to three times runs three times), in any order.
    """
    found = _find(results, step)
    ran = found.nodes
    if isinstance(nodes, Set):
        ok = set(ran) == set(nodes)
        want = sorted(nodes)
    else:
        ok = sorted(ran) == sorted(nodes)
        want = sorted(nodes)
    if not ok:
        missing = sorted(set(nodes) - set(ran))
        extra = sorted(set(ran) - set(nodes))
        detail = "; ".join(
            part
            for part in (
                f"missing {missing}" if missing else "",
                f"unexpected {extra}" if extra else "",
            )
            if part
        )
        raise AssertionError(
            f"step {step} ran {sorted(ran)}, expected {want}"
            + (f" ({detail})" if detail else " (different counts)")
            + f"; the run had:\n{_summary(results)}"
        )


def assert_state_after(results: Sequence[StepResult], step: int, expected: Any) -> None:
    """Assert that the state after superstep ``step``'s barrier equals ``expected``."""
    found = _find(results, step)
    state = found.state
    if state == expected:
        return
    message = f"the state after step {step} is {state!r}, expected {expected!r}"
    if isinstance(state, Mapping) and isinstance(expected, Mapping):
        diffs = [
            f"  {key!r}: {state.get(key, '<missing>')!r} != {expected.get(key, '<missing>')!r}"
            for key in sorted({*state, *expected}, key=repr)
            if key not in state or key not in expected or state[key] != expected[key]
        ]
        message += "; keys that differ (actual != expected):\n" + "\n".join(diffs)
    raise AssertionError(message)

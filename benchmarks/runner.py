"""Timing: warm up, then interleave the engines repeat by repeat and keep every sample.

Interleaving (and alternating which engine goes first) means a noisy stretch on the
machine hits both engines alike instead of skewing one engine's whole series.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .engines import Api
from .workloads import Workload

MIN_REPEATS = 3
WARMUP_SECONDS = 1.0
"""A second warm-up run is made only when the first one took less than this."""


class Driver(Protocol):
    label: str

    def run(self, graph: Any, inp: Any, config: dict[str, Any]) -> tuple[float, Any]:
        """Run the graph once; return (seconds, output)."""
        ...


class SyncDriver:
    label = "sync invoke"

    def run(self, graph: Any, inp: Any, config: dict[str, Any]) -> tuple[float, Any]:
        start = time.perf_counter()
        output = graph.invoke(inp, config)
        return time.perf_counter() - start, output


class AsyncDriver:
    """``ainvoke`` on one event loop that lives as long as the driver."""

    label = "async ainvoke"

    def __init__(self) -> None:
        self._runner = asyncio.Runner()

    def close(self) -> None:
        self._runner.close()

    def run(self, graph: Any, inp: Any, config: dict[str, Any]) -> tuple[float, Any]:
        return self._runner.run(self._timed(graph, inp, config))

    @staticmethod
    async def _timed(graph: Any, inp: Any, config: dict[str, Any]) -> tuple[float, Any]:
        start = time.perf_counter()
        output = await graph.ainvoke(inp, config)
        return time.perf_counter() - start, output


@dataclass
class Timing:
    """One engine's samples for one (workload, n); ``error`` is set when it could not run."""

    engine: str
    samples_ms: list[float] = field(default_factory=list)
    planned: int = 0
    error: str | None = None

    @property
    def median_ms(self) -> float | None:
        if self.error is not None or not self.samples_ms:
            return None
        return statistics.median(self.samples_ms)


@dataclass
class CaseResult:
    workload: str
    n: int
    supersteps: int
    timings: dict[str, Timing]

    def median(self, engine: str) -> float | None:
        timing = self.timings.get(engine)
        return None if timing is None else timing.median_ms

    def per_step_us(self, engine: str) -> float | None:
        median = self.median(engine)
        return None if median is None else median * 1000 / self.supersteps


@dataclass
class _Prepared:
    api: Api
    graph: Any
    inp: Any
    config: dict[str, Any]


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _prepare(
    workload: Workload, n: int, api: Api, driver: Driver, timing: Timing
) -> tuple[_Prepared, float] | None:
    """Build, warm up and verify; on failure record the error on ``timing`` and return None."""
    try:
        graph, inp, config = workload.build(api, n)
        prepared = _Prepared(api, graph, inp, config)
        first, output = driver.run(graph, copy.deepcopy(inp), config)
        if first < WARMUP_SECONDS:
            driver.run(graph, copy.deepcopy(inp), config)
    except Exception as exc:  # an engine bug must not stop the other engine's numbers
        timing.error = _short(f"{type(exc).__name__}: {exc}")
        return None
    problems = workload.verify(output, n)
    if problems:
        timing.error = _short("wrong output: " + "; ".join(problems))
        return None
    return prepared, first


def run_case(
    workload: Workload,
    n: int,
    apis: list[Api],
    driver: Driver,
    repeat: int,
    budget_s: float,
) -> CaseResult:
    """Time every engine on ``workload`` at size ``n``.

    An engine whose warm-up run suggests ``repeat`` runs would take longer than
    ``budget_s`` gets fewer repeats (never fewer than ``MIN_REPEATS``); the report
    prints the planned count next to each median.
    """
    timings = {api.name: Timing(api.name) for api in apis}
    ready: list[_Prepared] = []
    for api in apis:
        outcome = _prepare(workload, n, api, driver, timings[api.name])
        if outcome is None:
            continue
        prepared, first = outcome
        affordable = max(MIN_REPEATS, int(budget_s / max(first, 1e-9)))
        timings[api.name].planned = min(repeat, affordable)
        ready.append(prepared)

    rounds = max((timings[p.api.name].planned for p in ready), default=0)
    for r in range(rounds):
        order = ready if r % 2 == 0 else ready[::-1]
        for prepared in order:
            timing = timings[prepared.api.name]
            if timing.error is not None or r >= timing.planned:
                continue
            inp = copy.deepcopy(prepared.inp)
            gc.collect()
            try:
                seconds, _ = driver.run(prepared.graph, inp, prepared.config)
            except Exception as exc:  # flaky after a good warm-up: report, keep going
                timing.error = _short(f"run {r + 1}: {type(exc).__name__}: {exc}")
                continue
            timing.samples_ms.append(seconds * 1000)
    return CaseResult(workload.name, n, workload.supersteps(n), timings)

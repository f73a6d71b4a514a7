"""The benchmark workloads still build and compute the right answer (no timing here)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

# benchmarks/ is a folder of the repository, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import workloads
from benchmarks.engines import load_stepgraph


@pytest.mark.parametrize("workload", workloads.WORKLOADS, ids=lambda w: w.name)
def test_workload_runs_correctly_on_stepgraph(workload: workloads.Workload) -> None:
    api = load_stepgraph()
    n = workload.sizes[0]
    graph, inp, config = workload.build(api, n)  # type: ignore[arg-type]
    assert workload.verify(graph.invoke(inp, config), n) == []
    graph, inp, config = workload.build(api, n)  # type: ignore[arg-type]
    assert workload.verify(asyncio.run(graph.ainvoke(inp, config)), n) == []

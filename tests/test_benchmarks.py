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


def test_ray_fanout_times_every_case_and_leaves_ray_as_it_found_it() -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'stepgraph[ray]'")
    from benchmarks import ray_fanout

    running = ray.is_initialized()
    result = ray_fanout.measure(tasks=8, ms=1, repeat=1, ray_cpus=2, langgraph=False)
    assert ray.is_initialized() == running  # started and stopped here, or left running
    rows = result["rows"]
    assert list(rows) == ["sleep", "cpu", "empty"]
    for kind, cases in rows.items():
        assert list(cases) == ["threads", "threads(N)", "ray", "langgraph"]
        timed = ["threads", "ray"] + ([] if kind == "cpu" else ["threads(N)"])
        assert all(cases[c] is not None and cases[c] > 0 for c in timed), cases
    assert result["in_flight"] >= 16 and result["ray_cpus"] >= 1
    lines = ray_fanout.report(result, tasks=8, ms=1, repeat=1, cmd="test")
    table = lines[lines.index("") + 1 :]
    assert table[0].split()[:3] == ["row", "threads", f"threads({result['in_flight']})"]
    assert [line.split()[0] for line in table[1:4]] == ["sleep", "cpu", "empty"]
    assert table[-1].startswith("  ray's cost per task")


def test_postgres_benchmark_reports_its_three_figures(
    postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import postgres

    args = ["--dsn", postgres_dsn, "--no-langgraph", "--processes", "1,2"]
    args += ["--concurrency", "2", "--seconds", "0.3", "--steps", "5", "--repeat", "1"]
    args += ["--async-runs", "4", "--async-concurrency", "2"]
    assert postgres.main(args) == 0
    out = capsys.readouterr().out
    assert "# server: PostgreSQL" in out
    rates = next(line for line in out.splitlines() if line.startswith("  stepgraph "))
    runs_1, runs_2 = (float(x) for x in rates.split()[1:3])
    assert runs_1 > 0 and runs_2 > 0  # every worker process finished runs
    assert "async runs per second" in out
    assert "postgres sync" in out and "pg/sqlite sync" in out

"""Checkpoint size and checkpoint cost, stepgraph next to LangGraph, on the same loop.

The workload is a loop of ``n`` supersteps; each appends one distinct item of about
1 KB to a list kept with ``operator.add``. That is the shape of a chat history or an
agent's scratchpad, and the shape on which saving the whole state at every step costs
O(n^2) bytes.

Two figures:

* **storage**: bytes on disk after one run with each engine's SQLite saver (the file
  size once the WAL is folded in and the file vacuumed), next to the size of the final
  state itself;
* **cost per step**: the time a run takes with a saver minus the time it takes without
  one, divided by the number of supersteps; medians over ``--repeat`` runs, engines
  interleaved run by run.

Run from the repository root::

    python -m benchmarks.checkpoints                 # n = 1000, 3 repeats
    python -m benchmarks.checkpoints --steps 300 --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import operator
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from .engines import Api, Unavailable, load_langgraph, load_stepgraph

ITEM_BYTES = 1024


class AppendState(TypedDict):
    items: Annotated[list[str], operator.add]
    n: int


def build_append(api: Api, n: int, checkpointer: Any) -> Any:
    """A one-node loop that appends a distinct ~1 KB item per superstep until n items."""

    def step(state: AppendState) -> dict[str, Any]:
        i = len(state["items"])
        return {"items": [f"{i:08d}" + "x" * (ITEM_BYTES - 8)]}

    def more(state: AppendState) -> Literal["step", "__end__"]:
        return "step" if len(state["items"]) < state["n"] else "__end__"

    builder = api.StateGraph(AppendState)
    builder.add_node("step", step)
    builder.add_edge(api.START, "step")
    builder.add_conditional_edges("step", more)
    return builder.compile(checkpointer=checkpointer)


# -- savers per engine -----------------------------------------------------------------


def stepgraph_savers() -> dict[str, Callable[[Path], Any]]:
    from stepgraph.checkpoint import InMemorySaver, SqliteSaver

    return {
        "none": lambda path: None,
        "memory": lambda path: InMemorySaver(),
        "sqlite": lambda path: SqliteSaver(path),
    }


def langgraph_savers() -> dict[str, Callable[[Path], Any]]:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    return {
        "none": lambda path: None,
        "memory": lambda path: InMemorySaver(),
        "sqlite": lambda path: SqliteSaver(sqlite3.connect(path, check_same_thread=False)),
    }


def close_saver(saver: Any) -> None:
    conn = getattr(saver, "conn", None)
    close = getattr(saver, "close", None)
    if callable(close):
        close()
    elif conn is not None:
        conn.close()


def file_bytes(path: Path) -> int:
    """The database's size once the WAL is folded in and free pages are dropped."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
    finally:
        conn.close()
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def one_run(api: Api, saver: Any, n: int, durability: str | None = None) -> tuple[float, Any]:
    """One timed run of the append loop (``durability``: the engine's default if None)."""
    graph = build_append(api, n, saver)
    config = {"recursion_limit": n + 10, "configurable": {"thread_id": uuid.uuid4().hex}}
    kwargs = {} if durability is None else {"durability": durability}
    gc.collect()
    start = time.perf_counter()
    out = graph.invoke({"items": [], "n": n}, config, **kwargs)
    elapsed = time.perf_counter() - start
    if len(out["items"]) != n:
        raise AssertionError(f"{api.name}: {len(out['items'])} items, expected {n}")
    return elapsed, out


# -- the report ------------------------------------------------------------------------


def storage(apis: dict[str, Api], n: int, tmp: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for name, api in apis.items():
        path = tmp / f"{name}-storage.db"
        factory = (stepgraph_savers if name == "stepgraph" else langgraph_savers)()["sqlite"]
        saver = factory(path)
        try:
            one_run(api, saver, n)
        finally:
            close_saver(saver)
        sizes[name] = file_bytes(path)
    return sizes


def timings(apis: dict[str, Api], n: int, repeat: int, tmp: Path) -> dict[tuple[str, str], float]:
    """Median seconds per run for each (engine, saver kind), interleaved."""
    kinds = ("none", "memory", "sqlite")
    factories = {
        name: (stepgraph_savers if name == "stepgraph" else langgraph_savers)() for name in apis
    }
    samples: dict[tuple[str, str], list[float]] = {(e, k): [] for e in apis for k in kinds}
    order = list(apis)
    for r in range(repeat + 1):  # round 0 warms up
        for engine in order if r % 2 == 0 else order[::-1]:
            for kind in kinds:
                path = tmp / f"{engine}-{kind}-{r}.db"
                saver = factories[engine][kind](path)
                try:
                    elapsed, _ = one_run(apis[engine], saver, n)
                finally:
                    if saver is not None:
                        close_saver(saver)
                for leftover in tmp.glob(path.name + "*"):
                    leftover.unlink()
                if r:
                    samples[(engine, kind)].append(elapsed)
    return {key: statistics.median(vals) for key, vals in samples.items()}


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checkpoints")
    parser.add_argument("--steps", type=int, default=1000, help="supersteps per run (1000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (3)")
    parser.add_argument("--no-langgraph", action="store_true", help="stepgraph only")
    args = parser.parse_args(argv)
    n = args.steps
    apis: dict[str, Api] = {}
    for loaded in (load_stepgraph(), None if args.no_langgraph else load_langgraph()):
        if isinstance(loaded, Api):
            apis[loaded.name] = loaded
        elif isinstance(loaded, Unavailable):
            print(f"# {loaded.name} unavailable: {loaded.reason}")
    cmd = " ".join(["python -m benchmarks.checkpoints", *(argv or sys.argv[1:])])
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, ")
    print(f"# {os.cpu_count()} cpus, git {git_revision()}, command: {cmd}")
    versions = ", ".join(f"{a.name} {a.version}" for a in apis.values())
    print(f"# engines: {versions}")
    print(f"# workload: {n} supersteps, each appends one distinct {ITEM_BYTES} B item")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        final_state = n * ITEM_BYTES
        sizes = storage(apis, n, tmp)
        print()
        print("storage (SQLite file after the run)        bytes   x final state")
        for name, size in sizes.items():
            print(f"  {name:<36} {size:>12,}   {size / final_state:>8.2f}x")
        if len(sizes) == 2:
            ratio = sizes["langgraph"] / sizes["stepgraph"]
            print(f"  langgraph / stepgraph: {ratio:.1f}x")
        t = timings(apis, n, args.repeat, tmp)
    print()
    print("cost per superstep (run time with the saver minus without, / steps)")
    print(f"  {'engine':<10} {'no saver':>12} {'memory':>12} {'sqlite':>12}   sqlite/memory")
    per_step: dict[tuple[str, str], float] = {}
    for name in apis:
        base = t[(name, "none")]
        for kind in ("memory", "sqlite"):
            per_step[(name, kind)] = (t[(name, kind)] - base) / n * 1e6
        none_us = base / n * 1e6
        mem, sql = per_step[(name, "memory")], per_step[(name, "sqlite")]
        print(
            f"  {name:<10} {none_us:>9.1f} us {mem:>9.1f} us {sql:>9.1f} us   "
            f"{sql / mem if mem > 0 else float('nan'):>8.2f}x"
        )
    if len(apis) == 2:
        lg, sg = per_step[("langgraph", "sqlite")], per_step[("stepgraph", "sqlite")]
        print(f"  sqlite cost per step, langgraph / stepgraph: {lg / sg:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

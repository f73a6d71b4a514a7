"""A Send fan-out of slow tasks on threads and on Ray: where ``RayExecutor`` pays, and where not.

The workload is one superstep of ``--tasks`` tasks: a conditional edge from START
returns one ``Send("work", {...})`` per task, and each task works ``--ms``
milliseconds. Three kinds of task, one row each:

* ``sleep``: ``time.sleep`` (a call that waits on I/O, releasing the GIL);
* ``cpu``: a pure-Python loop, calibrated on this machine to take ``--ms`` (holds
  the GIL);
* ``empty``: no work at all, so the row measures what handing a task out costs.

Each row runs on:

* ``threads``: ``invoke`` with no executor (the default thread pool);
* ``threads(N)``: the same with ``max_concurrency=N``, N being the RayExecutor's
  ``max_in_flight`` (``sleep`` and ``empty`` rows: more threads cannot get past
  the GIL on the ``cpu`` row);
* ``ray``: ``invoke(..., executor=RayExecutor())`` on a local Ray started with
  ``num_cpus = --ray-cpus`` (default: every CPU) and default task options
  (``num_cpus=1`` per task, ``--ray-task-cpus`` to change it: Ray runs as many
  tasks at once as their ``num_cpus`` fit in its CPUs). Ray's start-up is timed
  once and reported apart;
* ``langgraph``: LangGraph's own thread pool on the same graph, if LangGraph can
  be imported (it has no Ray executor); ``-`` otherwise. Not on the ``cpu`` row
  either: its threads meet the same GIL, and leaving it out keeps the default run
  near two minutes on 2 cores.

Every case first runs the ``empty`` row once untimed (Ray starts its worker
processes then). Each row then gets ``--repeat`` timed rounds, the order of the
cases alternating from round to round; medians are printed. Run from the repository root::

    python -m benchmarks.ray_fanout                 # 200 tasks x 50 ms, 3 repeats
    python -m benchmarks.ray_fanout --quick         # 40 tasks x 20 ms, 1 repeat
    python -m benchmarks.ray_fanout --ray-task-cpus 0.125   # 8 Ray tasks per CPU
"""

from __future__ import annotations

import argparse
import gc
import operator
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypedDict

from .checkpoints import git_revision
from .engines import Api, Unavailable, load_langgraph, load_stepgraph

KINDS = ("sleep", "cpu", "empty")
CASES = ("threads", "threads(N)", "ray", "langgraph")


class FanState(TypedDict):
    tasks: int
    kind: str
    ms: float
    spins: int
    done: Annotated[list[int], operator.add]


def spin(n: int) -> int:
    """Pure-Python work that holds the GIL: about ``n`` loop turns."""
    total = 0
    for i in range(n):
        total += i % 7
    return total


def work(arg: dict[str, Any]) -> dict[str, Any]:
    """One task: sleep, spin or do nothing, then report its index."""
    if arg["kind"] == "sleep" and arg["ms"] > 0:
        time.sleep(arg["ms"] / 1000)
    elif arg["kind"] == "cpu":
        spin(arg["spins"])
    return {"done": [arg["i"]]}


def build(api: Api) -> Any:
    """START --Send x tasks--> work."""

    def fan(state: FanState) -> list[Any]:  # runs in the driver
        keys = {"kind": state["kind"], "ms": state["ms"], "spins": state["spins"]}
        return [api.Send("work", {"i": i, **keys}) for i in range(state["tasks"])]

    builder = api.StateGraph(FanState)
    builder.add_node("work", work)
    builder.add_conditional_edges(api.START, fan, ["work"])
    return builder.compile()


def calibrate(ms: float) -> int:
    """How many turns of ``spin`` take ``ms`` milliseconds here (median of five).

    Probes of about 50 ms each: on a shared machine, shorter bursts run faster than
    the sustained load of the runs.
    """
    probe = 1_000_000
    typical = statistics.median(_timed(lambda: spin(probe)) for _ in range(5))
    return max(1, round(probe * (ms / 1000) / typical))


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- one run ---------------------------------------------------------------------------


def one_run(api: Api, graph: Any, inp: FanState, **kw: Any) -> float:
    gc.collect()
    start = time.perf_counter()
    out = graph.invoke(dict(inp), **kw)
    elapsed = time.perf_counter() - start
    if sorted(out["done"]) != list(range(inp["tasks"])):
        raise AssertionError(f"{api.name}: wrong result for {inp['kind']}: {out['done'][:10]}")
    return elapsed


def measure(
    tasks: int,
    ms: float,
    repeat: int,
    ray_cpus: int | None = None,
    task_cpus: float = 1,
    langgraph: bool = True,
) -> dict[str, Any]:
    """Time every (kind, case); returns medians in seconds and the setup it used.

    Starts a local Ray unless one is running in this process, and stops it again if
    it started it. The keys: ``rows`` (kind -> case -> median seconds, or None for a
    case not run), ``load`` (the 1-minute load average before the runs),
    ``ray_start`` (seconds, None if Ray was running), ``in_flight``, ``ray_cpus``,
    ``task_cpus``, ``spins``, ``cpu_ms`` (one cpu task, timed after the runs),
    ``engines`` (name -> version) and ``skipped`` (name -> reason).
    """
    import ray

    from stepgraph.engine.ray import RayExecutor

    load = os.getloadavg()[0]  # other work on the machine skews every figure
    sg = load_stepgraph()
    if not isinstance(sg, Api):
        raise RuntimeError(f"stepgraph unavailable: {sg.reason}")
    lg = load_langgraph() if langgraph else Unavailable("langgraph", "--no-langgraph")
    skipped = {} if isinstance(lg, Api) else {lg.name: lg.reason}
    spins = calibrate(ms)
    ray_start: float | None = None
    started = not ray.is_initialized()
    if started:
        cpus = ray_cpus or os.cpu_count() or 1
        ray_start = _timed(
            lambda: ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        )
    # The workers cannot import `benchmarks` (it is a folder, not an installed
    # package): the node function travels by value.
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    executor = None
    try:
        executor = RayExecutor(remote_options={"num_cpus": task_cpus})
        in_flight = executor.max_in_flight
        graphs = {"stepgraph": build(sg)}
        if isinstance(lg, Api):
            graphs["langgraph"] = build(lg)
        runs: dict[str, Callable[[FanState], float]] = {
            "threads": lambda inp: one_run(sg, graphs["stepgraph"], inp),
            "threads(N)": lambda inp: one_run(
                sg, graphs["stepgraph"], inp, config={"max_concurrency": in_flight}
            ),
            "ray": lambda inp: one_run(sg, graphs["stepgraph"], inp, executor=executor),
        }
        if isinstance(lg, Api):
            runs["langgraph"] = lambda inp: one_run(lg, graphs["langgraph"], inp)
        warm: FanState = {"tasks": tasks, "kind": "empty", "ms": 0, "spins": 0, "done": []}
        for run in runs.values():  # Ray starts its worker processes here
            run(warm)
        rows = {
            kind: _row(runs, kind, tasks, 0 if kind == "empty" else ms, spins, repeat)
            for kind in KINDS
        }
        cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
        # The machine's speed drifts (other work, CPU boost): what one task took at the end.
        cpu_ms = statistics.median(_timed(lambda: spin(spins)) for _ in range(3)) * 1e3
    finally:
        if executor is not None:
            executor.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(module)
        if started:
            ray.shutdown()
    engines = {sg.name: sg.version, "ray": ray.__version__}
    if isinstance(lg, Api):
        engines[lg.name] = lg.version
    return {
        "rows": rows,
        "load": load,
        "ray_start": ray_start,
        "in_flight": in_flight,
        "ray_cpus": cluster_cpus,
        "task_cpus": task_cpus,
        "spins": spins,
        "cpu_ms": cpu_ms,
        "engines": engines,
        "skipped": skipped,
    }


def _row(
    runs: dict[str, Callable[[FanState], float]],
    kind: str,
    tasks: int,
    ms: float,
    spins: int,
    repeat: int,
) -> dict[str, float | None]:
    inp: FanState = {"tasks": tasks, "kind": kind, "ms": ms, "spins": spins, "done": []}
    gil_bound = ("threads(N)", "langgraph")  # no faster than `threads` on the cpu row
    cases = [c for c in runs if not (kind == "cpu" and c in gil_bound)]
    samples: dict[str, list[float]] = {c: [] for c in cases}
    for r in range(repeat):
        for case in cases if r % 2 == 0 else cases[::-1]:
            samples[case].append(runs[case](inp))
    return {c: statistics.median(samples[c]) if c in samples else None for c in CASES}


# -- the report ------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _ratio(num: float | None, den: float | None) -> str:
    return "-" if num is None or den is None or den <= 0 else f"{num / den:.2f}x"


def report(result: dict[str, Any], tasks: int, ms: float, repeat: int, cmd: str) -> list[str]:
    """The printed lines: a ``#`` header, one line per kind, the per-task overhead."""
    rows, n = result["rows"], result["in_flight"]
    engines = ", ".join(f"{k} {v}" for k, v in result["engines"].items())
    start = result["ray_start"]
    lines = [
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} cpus, git {git_revision()}, "
        f"load average {result['load']:.1f} before the runs",
        f"# command: {cmd}",
        f"# engines: {engines}",
        *(f"# {name} unavailable: {why}" for name, why in result["skipped"].items()),
        f"# workload: one superstep of {tasks} Send tasks; median of {repeat} "
        f"run{'s' if repeat != 1 else ''} after a warm-up; "
        f"cpu task = {result['spins']:,} loop turns: {ms:g} ms when calibrated, "
        f"{result['cpu_ms']:.0f} ms after the runs",
        f"# ray: local, {result['ray_cpus']} cpus, num_cpus={result['task_cpus']:g} per task, "
        f"max_in_flight={n}; "
        + ("already running" if start is None else f"start-up {start:.2f} s (not in the runs)"),
        "",
        f"  {'row':<18}{'threads':>10}{f'threads({n})':>13}{'ray':>10}"
        f"{'threads/ray':>13}{f'threads({n})/ray':>17}{'langgraph':>11}",
    ]
    for kind in KINDS:
        r = rows[kind]
        label = f"{kind} {tasks} x {0 if kind == 'empty' else ms:g} ms"
        lines.append(
            f"  {label:<18}{_seconds(r['threads']):>10}{_seconds(r['threads(N)']):>13}"
            f"{_seconds(r['ray']):>10}{_ratio(r['threads'], r['ray']):>13}"
            f"{_ratio(r['threads(N)'], r['ray']):>17}{_seconds(r['langgraph']):>11}"
        )
    empty = rows["empty"]
    per_task = (empty["ray"] - empty["threads"]) / tasks * 1e3
    lines.append("")
    lines.append(f"  ray's cost per task (empty row, ray - threads, / tasks): {per_task:.2f} ms")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ray_fanout")
    parser.add_argument("--tasks", type=int, default=200, help="Send tasks in the step (200)")
    parser.add_argument("--ms", type=float, default=50, help="work per task, ms (50)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (3)")
    parser.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray")
    parser.add_argument(
        "--ray-task-cpus", type=float, default=1, help="num_cpus of each Ray task (1)"
    )
    parser.add_argument("--no-langgraph", action="store_true", help="stepgraph only")
    parser.add_argument("--quick", action="store_true", help="40 tasks x 20 ms, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.ms, args.repeat = 40, 20.0, 1
    cmd = " ".join(["python -m benchmarks.ray_fanout", *(sys.argv[1:] if argv is None else argv)])
    result = measure(
        args.tasks, args.ms, args.repeat, args.ray_cpus, args.ray_task_cpus, not args.no_langgraph
    )
    print("\n".join(report(result, args.tasks, args.ms, args.repeat, cmd)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line: ``python -m benchmarks [--only NAME] [--repeat K] [--quick] ...``."""

from __future__ import annotations

import argparse
import shlex
import sys
from contextlib import ExitStack
from pathlib import Path

from . import report
from .engines import Api, Unavailable, load_langgraph, load_stepgraph
from .runner import AsyncDriver, CaseResult, Driver, SyncDriver, run_case
from .workloads import WORKLOADS, Workload


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time the same graphs on stepgraph and LangGraph (no checkpointer).",
    )
    parser.add_argument("--only", metavar="NAME", help="run workloads whose name contains NAME")
    parser.add_argument("--repeat", type=int, default=5, metavar="K", help="repeats (default 5)")
    parser.add_argument(
        "--budget",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="per engine and case: cut repeats (to no fewer than 3) when K runs would take"
        " longer than this (default 20)",
    )
    parser.add_argument("--no-langgraph", action="store_true", help="time stepgraph only")
    parser.add_argument("--quick", action="store_true", help="smallest size of each workload")
    parser.add_argument("--async", dest="use_async", action="store_true", help="use ainvoke")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 unless stepgraph meets its speed targets"
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def selected(args: argparse.Namespace) -> list[tuple[Workload, tuple[int, ...]]]:
    chosen = [w for w in WORKLOADS if args.only is None or args.only in w.name]
    return [(w, w.sizes[:1] if args.quick else w.sizes) for w in chosen]


def _print(line: str) -> None:
    print(line, flush=True)


def run(args: argparse.Namespace, driver: Driver, command: str) -> int:
    engines: list[Api | Unavailable] = [load_stepgraph()]
    if not args.no_langgraph:
        engines.append(load_langgraph())
    apis = [e for e in engines if isinstance(e, Api)]
    head = report.header(engines, command, driver.label, args.repeat)
    for line in head:
        _print(line)
    plan = selected(args)
    if not plan:
        _print(f"# no workload matches --only {args.only!r}")
        return 2
    if not apis:
        _print("# no engine could be imported; nothing to time")
        return 2

    _print(report.COLUMNS)
    results: list[CaseResult] = []
    for workload, sizes in plan:
        mine = []
        for n in sizes:
            result = run_case(workload, n, apis, driver, args.repeat, args.budget)
            mine.append(result)
            _print(report.row(result, args.repeat))
        if workload.report_growth:
            _print(report.growth_line(workload.name, mine))
        results.extend(mine)

    verdicts = report.check(results) if args.check else None
    for verdict in verdicts or []:
        _print(verdict.line())
    if args.json is not None:
        report.write_json(args.json, head, results, verdicts)
    return 1 if verdicts and not all(v.ok for v in verdicts) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for workload in WORKLOADS:
            sizes = ", ".join(map(str, workload.sizes))
            print(f"{workload.name:<11} n = {sizes:<15} {workload.summary}")
        return 0
    arguments = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "benchmarks", *arguments])
    with ExitStack() as stack:
        driver: Driver = SyncDriver()
        if args.use_async:
            async_driver = AsyncDriver()
            stack.callback(async_driver.close)
            driver = async_driver
        return run(args, driver, command)

"""Formatting: a paste-ready header, one line per (workload, n), growth lines, JSON, targets."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engines import LANGGRAPH, STEPGRAPH, Api, Unavailable
from .runner import CaseResult

ROW = "{:<11} {:>5} {:>6} {:>10} {:>11} {:>8} {:>10} {:>10}  {:<5} {}"
COLUMNS = ROW.format(
    "workload", "n", "steps", "sg ms", "lg ms", "lg/sg", "sg us/st", "lg us/st", "runs", "notes"
)


def _git_revision() -> str | None:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def header(engines: list[Api | Unavailable], command: str, mode: str, repeat: int) -> list[str]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    parts = []
    for engine in engines:
        if isinstance(engine, Api):
            parts.append(f"{engine.name} {engine.version}")
        else:
            parts.append(f"{engine.name} not run ({engine.reason})")
    revision = _git_revision()
    source = f" | repo {revision}" if revision else ""
    return [
        f"# stepgraph benchmarks | {now} | {python} | {machine}{source}",
        f"# engines: {' | '.join(parts)}",
        f"# command: {command}",
        f"# method: {mode}, no checkpointer; warm-up, then median of {repeat} repeats with the"
        " engines interleaved",
        "# lg/sg = langgraph ms / stepgraph ms; us/st = median us per superstep (parent"
        " + subgraph supersteps); runs = sg/lg repeats",
    ]


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def ratio(result: CaseResult) -> float | None:
    """LangGraph's median divided by stepgraph's: above 1 means stepgraph is faster."""
    sg, lg = result.median(STEPGRAPH), result.median(LANGGRAPH)
    return None if sg is None or lg is None or sg == 0 else lg / sg


def row(result: CaseResult, repeat: int) -> str:
    notes = []
    runs = []
    for engine in (STEPGRAPH, LANGGRAPH):
        timing = result.timings.get(engine)
        if timing is None:
            runs.append("-")
            continue
        runs.append(str(len(timing.samples_ms)) if timing.samples_ms else "0")
        if timing.error is not None:
            notes.append(f"{engine}: {timing.error}")
        elif timing.planned < repeat:
            notes.append(f"{engine}: cut to {timing.planned} runs (--budget)")
    return ROW.format(
        result.workload,
        result.n,
        result.supersteps,
        _ms(result.median(STEPGRAPH)),
        _ms(result.median(LANGGRAPH)),
        _times(ratio(result)),
        _us(result.per_step_us(STEPGRAPH)),
        _us(result.per_step_us(LANGGRAPH)),
        "/".join(runs),
        "; ".join(notes),
    ).rstrip()


def growth(results: list[CaseResult], engine: str) -> tuple[int, int, float] | None:
    """(small n, large n, per-step cost at large n / at small n), over the sizes measured."""
    measured = [r for r in results if r.per_step_us(engine)]
    if len(measured) < 2:
        return None
    small = min(measured, key=lambda r: r.n)
    large = max(measured, key=lambda r: r.n)
    return small.n, large.n, (large.per_step_us(engine) or 0) / (small.per_step_us(engine) or 1)


def growth_line(workload: str, results: list[CaseResult]) -> str:
    parts = []
    for engine in (STEPGRAPH, LANGGRAPH):
        found = growth(results, engine)
        if found is None:
            parts.append(f"{engine} -")
        else:
            small, large, factor = found
            parts.append(f"{engine} {factor:.2f}x (n={large} vs n={small})")
    return f"{workload:<11} per-superstep growth: {', '.join(parts)}"


@dataclass(frozen=True)
class Verdict:
    target: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"# check {'PASS' if self.ok else 'FAIL'}: {self.target}: {self.detail}"


def _speedup_verdicts(
    results: list[CaseResult], workload: str, minimum: float, only_n: int | None = None
) -> list[Verdict]:
    cases = [r for r in results if r.workload == workload and only_n in (None, r.n)]
    label = f"{workload}{'' if only_n is None else f' n={only_n}'} lg/sg >= {minimum:g}x"
    verdicts = []
    for case in cases:
        found = ratio(case)
        if found is not None:
            verdicts.append(Verdict(f"{label} (n={case.n})", found >= minimum, f"{found:.1f}x"))
    return verdicts or [Verdict(label, False, "not measured (needs both engines and that n)")]


def check(results: list[CaseResult]) -> list[Verdict]:
    """The stepgraph performance targets; anything not measured counts as a miss."""
    verdicts = [
        *_speedup_verdicts(results, "sequential", 20, only_n=1000),
        *_speedup_verdicts(results, "fanout", 3),
        *_speedup_verdicts(results, "wide_state", 3),
    ]
    target = "sequential us/step n=3000 within 1.5x of n=100"
    sequential = [r for r in results if r.workload == "sequential" and r.n in (100, 3000)]
    found = growth(sequential, STEPGRAPH)
    if found is None or (found[0], found[1]) != (100, 3000):
        verdicts.append(Verdict(target, False, "not measured (needs stepgraph at both sizes)"))
    else:
        verdicts.append(Verdict(target, found[2] <= 1.5, f"{found[2]:.2f}x"))
    return verdicts


def _growth_json(results: list[CaseResult], engine: str) -> dict[str, float] | None:
    found = growth(results, engine)
    if found is None:
        return None
    small, large, factor = found
    return {"small_n": small, "large_n": large, "factor": factor}


def write_json(
    path: Path, head: list[str], results: list[CaseResult], verdicts: list[Verdict] | None
) -> None:
    def case(result: CaseResult) -> dict[str, Any]:
        return {
            "workload": result.workload,
            "n": result.n,
            "supersteps": result.supersteps,
            "ratio_lg_over_sg": ratio(result),
            "engines": {
                name: {
                    "median_ms": timing.median_ms,
                    "per_step_us": result.per_step_us(name),
                    "samples_ms": timing.samples_ms,
                    "error": timing.error,
                }
                for name, timing in result.timings.items()
            },
        }

    by_workload: dict[str, list[CaseResult]] = {}
    for result in results:
        by_workload.setdefault(result.workload, []).append(result)
    growths = {
        name: {engine: _growth_json(cases, engine) for engine in (STEPGRAPH, LANGGRAPH)}
        for name, cases in by_workload.items()
    }
    document = {
        "header": head,
        "results": [case(r) for r in results],
        "per_step_growth": growths,
        "check": None if verdicts is None else [v.__dict__ for v in verdicts],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")

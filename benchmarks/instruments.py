"""What watching a run costs: no instrument, an empty instrument, OpenTelemetry.

The workload is a chain of ``n`` no-op nodes (one task per superstep), run with:

* no instrument installed (the engine makes no hook call at all);
* an `Instrument` whose hooks do nothing (the cost of the calls themselves);
* `OpenTelemetryInstrument` with the OpenTelemetry SDK and a span processor that
  drops the spans (the cost of making spans, without any export).

It prints medians per task, and the extra cost per task over no instrument::

    python -m benchmarks.instruments            # n = 500, 7 repeats
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

from .engines import Api, load_stepgraph
from .workloads import build_sequential


def timed(graph: Any, inp: Any, config: dict[str, Any], **kw: Any) -> float:
    gc.collect()
    start = time.perf_counter()
    graph.invoke(dict(inp), config, **kw)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instruments")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    api = load_stepgraph()
    assert isinstance(api, Api), api
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    from stepgraph.engine import Instrument
    from stepgraph.engine.otel import OpenTelemetryInstrument

    class Drop(SpanProcessor):
        """Ends spans and forgets them: measures making spans, not exporting them."""

    provider = TracerProvider()
    provider.add_span_processor(Drop())
    cases: dict[str, list[Any]] = {
        "no instrument": [],
        "empty instrument": [Instrument()],
        "opentelemetry": [OpenTelemetryInstrument(tracer_provider=provider)],
    }
    graph, inp, config = build_sequential(api, args.steps)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(args.repeat + 1):  # round 0 warms up
        order = list(cases) if r % 2 == 0 else list(reversed(cases))
        for name in order:
            elapsed = timed(graph, inp, config, instruments=cases[name] or None)
            if r:
                samples[name].append(elapsed)
    tasks = args.steps + 1  # the chain plus the START task
    base = statistics.median(samples["no instrument"]) / tasks * 1e6
    print(f"# chain of {args.steps} no-op nodes, medians of {args.repeat} runs, per task")
    for name, values in samples.items():
        per_task = statistics.median(values) / tasks * 1e6
        print(f"  {name:<18} {per_task:8.1f} us/task   +{per_task - base:6.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

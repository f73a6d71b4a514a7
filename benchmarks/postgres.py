"""PostgreSQL savers, stepgraph next to LangGraph: throughput of many workers, cost per step.

Three figures, all on the PostgreSQL server ``--dsn`` names (default: the
``STEPGRAPH_POSTGRES_DSN`` or ``STEPGRAPH_TEST_POSTGRES_DSN`` environment variable, else
``postgresql://postgres@127.0.0.1:5432/postgres``):

* **runs per second** with 1, 2 and 4 worker processes. Each process opens one saver
  (a connection pool as large as its concurrency) and runs ``--concurrency`` Python
  threads; each thread runs short graphs (START -> a -> b -> c -> END, a small state),
  every run on a new thread id, for ``--seconds``. All processes start together (a
  barrier after their warm-up) and count the runs they finished; the figure is the sum
  over processes divided by the time. Medians over ``--repeat`` rounds; the engines
  alternate which goes first.
* **async runs per second**: the same short runs from one event loop, ``ainvoke``
  with ``--async-concurrency`` at a time (LangGraph with its ``AsyncPostgresSaver``);
* **cost per superstep**: after a short warm-up run on the same saver, the loop of
  ``benchmarks/checkpoints.py`` (each superstep
  appends a distinct 1 KB item to a list kept with ``operator.add``), run with no
  saver, with the SQLite saver and with the PostgreSQL saver; the cost is the run time
  with a saver minus the time without, divided by the steps. With ``durability="sync"``
  a step waits for its checkpoint to be stored, so that column is the write latency a
  step sees; the default (``"async"``) stores in the background on both engines.

Each engine gets its own fresh PostgreSQL schema, dropped at the end (LangGraph's
saver is pointed at it through the connection's ``search_path``). Run from the
repository root::

    pip install -e '.[bench]'            # psycopg, LangGraph and its savers
    python -m benchmarks.postgres                      # about 2 minutes on 2 cores
    python -m benchmarks.postgres --quick              # a smoke test
    python -m benchmarks.postgres --no-langgraph --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypedDict

from .checkpoints import (
    close_saver,
    git_revision,
    langgraph_savers,
    one_run,
    stepgraph_savers,
)
from .engines import LANGGRAPH, STEPGRAPH, Api, Unavailable, load_langgraph, load_stepgraph

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def default_dsn() -> str:
    return (
        os.environ.get("STEPGRAPH_POSTGRES_DSN")
        or os.environ.get("STEPGRAPH_TEST_POSTGRES_DSN")
        or DEFAULT_DSN
    )


def load(engine: str) -> Api | Unavailable:
    return load_stepgraph() if engine == STEPGRAPH else load_langgraph()


# -- savers on PostgreSQL, one schema per engine --------------------------------------


def with_search_path(dsn: str, schema: str) -> str:
    """``dsn`` with the connection's ``search_path`` set to ``schema``."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    options = f"{params.get('options') or ''} -csearch_path={schema}".strip()
    return make_conninfo(dsn, options=options)


def create_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def postgres_saver(engine: str, dsn: str, schema: str, pool_size: int) -> Iterator[Any]:
    """A saver of ``engine`` on ``schema`` with a pool of ``pool_size`` connections."""
    if engine == STEPGRAPH:
        from stepgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver(dsn, schema=schema, min_size=1, max_size=pool_size) as saver:
            yield saver
        return
    from langgraph.checkpoint.postgres import PostgresSaver as LangGraphPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    # What LangGraph's documentation asks for: autocommit and dict rows.
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    with ConnectionPool(
        with_search_path(dsn, schema), min_size=1, max_size=pool_size, kwargs=kwargs
    ) as pool:
        saver = LangGraphPostgresSaver(pool)  # type: ignore[arg-type]
        saver.setup()
        yield saver


# -- throughput: many processes, many short runs ----------------------------------------


class ShortState(TypedDict):
    request: str
    log: Annotated[list[str], lambda a, b: a + b]


def build_short(api: Api, saver: Any) -> Any:
    """START -> a -> b -> c -> END; each node appends a short line to ``log``."""

    def node(name: str) -> Callable[[ShortState], dict[str, Any]]:
        def run(state: ShortState) -> dict[str, Any]:
            return {"log": [f"{name}:{state['request']}:{len(state['log'])}"]}

        run.__name__ = name
        return run

    builder = api.StateGraph(ShortState)
    for name in ("a", "b", "c"):
        builder.add_node(name, node(name))
    builder.add_edge(api.START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", api.END)
    return builder.compile(checkpointer=saver)


def short_run(graph: Any, tag: str) -> None:
    config = {"configurable": {"thread_id": f"{tag}-{uuid.uuid4().hex}"}}
    out = graph.invoke({"request": tag, "log": []}, config)
    if len(out["log"]) != 3:
        raise AssertionError(f"a run logged {out['log']!r}, expected 3 lines")


def worker(
    engine: str,
    dsn: str,
    schema: str,
    concurrency: int,
    seconds: float,
    barrier: Any,
    results: Any,
) -> None:
    """One worker process: warm up, wait for the others, run for ``seconds``."""
    try:
        api = load(engine)
        if isinstance(api, Unavailable):
            raise RuntimeError(api.reason)
        with postgres_saver(engine, dsn, schema, concurrency) as saver:
            graph = build_short(api, saver)
            for _ in range(3):
                short_run(graph, "warm-up")
            barrier.wait(timeout=120)
            deadline = time.perf_counter() + seconds
            counts = [0] * concurrency
            errors: list[BaseException] = []

            def loop(slot: int) -> None:
                try:
                    while time.perf_counter() < deadline:
                        short_run(graph, f"p{os.getpid()}t{slot}")
                        counts[slot] += 1
                except BaseException as exc:  # reported by the parent
                    errors.append(exc)

            threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            results.put(("ok", sum(counts)))
    except BaseException as exc:
        barrier.abort()
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def throughput(
    engine: str, dsn: str, schema: str, processes: int, concurrency: int, seconds: float
) -> float:
    """Runs per second of ``processes`` worker processes together."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=worker, args=(engine, dsn, schema, concurrency, seconds, barrier, results)
        )
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=300) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
    failures = [detail for status, detail in outcomes if status != "ok"]
    if failures:
        raise RuntimeError(f"{engine} worker failed: {failures[0]}")
    return sum(count for _, count in outcomes) / seconds


# -- async: many concurrent runs in one event loop ----------------------------------------


@contextlib.asynccontextmanager
async def async_postgres_saver(engine: str, dsn: str, schema: str, pool_size: int) -> Any:
    """The saver each engine offers to async code, with a pool of ``pool_size``."""
    if engine == STEPGRAPH:
        from stepgraph.checkpoint.postgres import PostgresSaver

        # One saver for sync and async code: its a-methods run in worker threads.
        with PostgresSaver(dsn, schema=schema, min_size=1, max_size=pool_size) as saver:
            yield saver
        return
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(
        with_search_path(dsn, schema), min_size=1, max_size=pool_size, kwargs=kwargs
    ) as pool:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        yield saver


def async_rate(engine: str, dsn: str, schema: str, runs: int, concurrency: int) -> float:
    """Runs per second of ``runs`` short runs, ``concurrency`` at a time, in one event loop."""
    api = load(engine)
    if isinstance(api, Unavailable):
        raise RuntimeError(api.reason)

    async def go() -> float:
        async with async_postgres_saver(engine, dsn, schema, concurrency) as saver:
            graph = build_short(api, saver)
            gate = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with gate:
                    config = {"configurable": {"thread_id": uuid.uuid4().hex}}
                    out = await graph.ainvoke({"request": "r", "log": []}, config)
                    if len(out["log"]) != 3:
                        raise AssertionError(f"a run logged {out['log']!r}")

            await asyncio.gather(*(one() for _ in range(concurrency)))  # warm-up
            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(runs)))
            return runs / (time.perf_counter() - start)

    return asyncio.run(go())


def report_async(
    engines: Sequence[str],
    dsn: str,
    schemas: dict[str, str],
    runs: int,
    concurrency: int,
    repeat: int,
) -> dict[str, float]:
    samples: dict[str, list[float]] = {e: [] for e in engines}
    for r in range(repeat):
        for engine in engines if r % 2 == 0 else engines[::-1]:
            samples[engine].append(async_rate(engine, dsn, schemas[engine], runs, concurrency))
    rates = {e: statistics.median(v) for e, v in samples.items()}
    print()
    print(
        f"async runs per second (one process, one event loop, {runs} short runs, "
        f"{concurrency} at a time; LangGraph: AsyncPostgresSaver)"
    )
    for engine in engines:
        print(f"  {engine:<11}{rates[engine]:>12.1f}")
    if len(engines) == 2:
        print(f"  {'sg / lg':<11}{rates[STEPGRAPH] / rates[LANGGRAPH]:>11.1f}x")
    return rates


# -- cost per superstep -------------------------------------------------------------------


@contextmanager
def local_saver(engine: str, kind: str, tmp: Path) -> Iterator[Any]:
    if kind == "none":
        yield None
        return
    path = tmp / f"{engine}-{uuid.uuid4().hex}.db"
    savers = stepgraph_savers() if engine == STEPGRAPH else langgraph_savers()
    saver = savers[kind](path)
    try:
        yield saver
    finally:
        close_saver(saver)
        for leftover in tmp.glob(path.name + "*"):
            leftover.unlink()


def step_costs(
    apis: dict[str, Api],
    dsn: str,
    schemas: dict[str, str],
    n: int,
    repeat: int,
    tmp: Path,
) -> dict[tuple[str, str, str], float]:
    """Median seconds per run for each (engine, saver kind, durability), interleaved."""
    cases = [
        ("none", "async"),
        *((k, d) for k in ("sqlite", "postgres") for d in ("async", "sync")),
    ]
    samples: dict[tuple[str, str, str], list[float]] = {
        (e, k, d): [] for e in apis for k, d in cases
    }
    order = list(apis)
    for r in range(repeat + 1):  # round 0 warms up
        for engine in order if r % 2 == 0 else order[::-1]:
            for kind, durability in cases:
                if kind == "postgres":
                    opened = postgres_saver(engine, dsn, schemas[engine], 2)
                else:
                    opened = local_saver(engine, kind, tmp)
                with opened as saver:
                    mode = None if kind == "none" else durability
                    # A short run first, so that connections are open and statements
                    # prepared before the timed one (a long-lived worker's state).
                    one_run(apis[engine], saver, 3, mode)
                    elapsed, _ = one_run(apis[engine], saver, n, mode)
                if r:
                    samples[(engine, kind, durability)].append(elapsed)
    return {key: statistics.median(vals) for key, vals in samples.items()}


# -- the report -----------------------------------------------------------------------------


def report_throughput(
    engines: Sequence[str],
    dsn: str,
    schemas: dict[str, str],
    process_counts: Sequence[int],
    concurrency: int,
    seconds: float,
    repeat: int,
) -> dict[tuple[str, int], float]:
    rates: dict[tuple[str, int], float] = {}
    for procs in process_counts:
        samples: dict[str, list[float]] = {e: [] for e in engines}
        for r in range(repeat):
            for engine in engines if r % 2 == 0 else engines[::-1]:
                samples[engine].append(
                    throughput(engine, dsn, schemas[engine], procs, concurrency, seconds)
                )
        for engine in engines:
            rates[(engine, procs)] = statistics.median(samples[engine])
    print()
    print(
        f"runs per second (START -> a -> b -> c -> END, a new thread per run, "
        f"{concurrency} threads per process, {seconds:g} s per round)"
    )
    header = f"  {'engine':<11}" + "".join(f"{f'{p} proc':>12}" for p in process_counts)
    print(header + f"{'scaling':>12}")
    for engine in engines:
        first = rates[(engine, process_counts[0])]
        last = rates[(engine, process_counts[-1])]
        cells = "".join(f"{rates[(engine, p)]:>12.1f}" for p in process_counts)
        print(f"  {engine:<11}{cells}{last / first:>11.2f}x")
    if len(engines) == 2:
        cells = "".join(
            f"{rates[(STEPGRAPH, p)] / rates[(LANGGRAPH, p)]:>11.1f}x" for p in process_counts
        )
        print(f"  {'sg / lg':<11}{cells}")
    print(
        f"  (scaling: {process_counts[-1]} processes over {process_counts[0]}; this machine "
        f"has {os.cpu_count()} cpus and runs the PostgreSQL server too)"
    )
    return rates


def report_step_costs(
    apis: dict[str, Api], dsn: str, schemas: dict[str, str], n: int, repeat: int
) -> dict[tuple[str, str, str], float]:
    with tempfile.TemporaryDirectory() as tmpdir:
        medians = step_costs(apis, dsn, schemas, n, repeat, Path(tmpdir))
    print()
    print(f"cost per superstep (run time with the saver minus without, / {n} steps)")
    print(
        f"  {'engine':<11}{'no saver':>10}{'sqlite':>11}{'postgres':>11}"
        f"{'sqlite sync':>14}{'postgres sync':>15}{'pg/sqlite sync':>16}"
    )
    cost: dict[tuple[str, str, str], float] = {}
    for engine in apis:
        base = medians[(engine, "none", "async")]
        for kind in ("sqlite", "postgres"):
            for durability in ("async", "sync"):
                extra = medians[(engine, kind, durability)] - base
                cost[(engine, kind, durability)] = extra / n
        us = {k: v * 1e6 for k, v in cost.items() if k[0] == engine}
        print(
            f"  {engine:<11}{base / n * 1e6:>8.1f}us"
            f"{us[(engine, 'sqlite', 'async')]:>9.1f}us"
            f"{us[(engine, 'postgres', 'async')]:>9.1f}us"
            f"{us[(engine, 'sqlite', 'sync')]:>12.1f}us"
            f"{us[(engine, 'postgres', 'sync')]:>13.1f}us"
            f"{us[(engine, 'postgres', 'sync')] / us[(engine, 'sqlite', 'sync')]:>15.2f}x"
        )
    if len(apis) == 2:
        for kind in ("postgres",):
            for durability in ("async", "sync"):
                ratio = cost[(LANGGRAPH, kind, durability)] / cost[(STEPGRAPH, kind, durability)]
                print(f"  {kind} {durability} cost per step, langgraph / stepgraph: {ratio:.1f}x")
    return cost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.postgres")
    parser.add_argument("--dsn", default=default_dsn(), help="the PostgreSQL server to use")
    parser.add_argument(
        "--processes", default="1,2,4", help="worker process counts, comma-separated (1,2,4)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="threads per process (4)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of a round (3)")
    parser.add_argument(
        "--async-runs", type=int, default=300, help="runs of the async figure (300)"
    )
    parser.add_argument(
        "--async-concurrency", type=int, default=50, help="async runs at a time (50)"
    )
    parser.add_argument("--steps", type=int, default=200, help="supersteps of the loop (200)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per case (3)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--no-langgraph", action="store_true", help="stepgraph only")
    args = parser.parse_args(argv)
    if args.quick:
        args.processes, args.concurrency, args.seconds = "1,2", 2, 0.5
        args.steps, args.repeat = 10, 1
        args.async_runs, args.async_concurrency = 20, 5
    try:
        process_counts = [int(p) for p in args.processes.split(",")]
    except ValueError:
        parser.error(f"--processes takes numbers separated by commas, got {args.processes!r}")
    apis: dict[str, Api] = {}
    for engine in (STEPGRAPH,) if args.no_langgraph else (STEPGRAPH, LANGGRAPH):
        loaded = load(engine)
        if isinstance(loaded, Api):
            apis[engine] = loaded
        else:
            print(f"# {loaded.name} unavailable: {loaded.reason}")
    if LANGGRAPH in apis:
        try:
            import langgraph.checkpoint.postgres  # noqa: F401
        except ImportError as exc:
            print(f"# langgraph's PostgresSaver unavailable ({exc}): pip install -e '.[bench]'")
            del apis[LANGGRAPH]
    if STEPGRAPH not in apis:
        print("# stepgraph cannot be imported: nothing to measure")
        return 1
    try:
        import psycopg

        psycopg.connect(args.dsn, connect_timeout=5).close()
    except Exception as exc:
        print(f"# no PostgreSQL server at {args.dsn}: {exc}")
        return 1
    cmd = " ".join(["python -m benchmarks.postgres", *(argv if argv is not None else sys.argv[1:])])
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, ")
    print(f"# {os.cpu_count()} cpus, git {git_revision()}, command: {cmd}")
    print(f"# engines: {', '.join(f'{a.name} {a.version}' for a in apis.values())}")
    print(f"# server: {server_version(args.dsn)} (same machine)")
    schemas = {engine: f"bench_{engine}_{uuid.uuid4().hex[:8]}" for engine in apis}
    for schema in schemas.values():
        create_schema(args.dsn, schema)
    try:
        report_throughput(
            list(apis),
            args.dsn,
            schemas,
            process_counts,
            args.concurrency,
            args.seconds,
            args.repeat,
        )
        report_async(
            list(apis), args.dsn, schemas, args.async_runs, args.async_concurrency, args.repeat
        )
        report_step_costs(apis, args.dsn, schemas, args.steps, args.repeat)
    finally:
        for schema in schemas.values():
            drop_schema(args.dsn, schema)
    return 0


def server_version(dsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else 'unknown'}"


if __name__ == "__main__":
    sys.exit(main())

"""Map-reduce over a flaky service: Send fan-out, retries, and a cache.

Run it:  python examples/flaky_map_reduce.py [--failure-rate 0.4] [--seed 7]

A ``START --Send per city--> fetch_weather (parallel) --> summarize`` graph. The
weather "service" fails at random with ``ConnectionError``; ``fetch_weather`` has a
``RetryPolicy``, so each failing call is retried on its own (the other cities' results
are kept) and the ``tasks`` stream shows every retry. A ``CachePolicy`` keeps results:
the second run over the same cities asks the service nothing, and the ``updates``
stream marks those results as cached. Every step is saved in SQLite.
"""

from __future__ import annotations

import argparse
import operator
import random
import threading
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

from stepgraph.checkpoint import InMemoryCache, SqliteSaver
from stepgraph.engine import START, CachePolicy, RetryPolicy, Send, StateGraph

CITIES = ["Oslo", "Lima", "Pune", "Perth", "Quito"]


class Service:
    """Stands in for a weather API that fails now and then."""

    def __init__(self, failure_rate: float, seed: int) -> None:
        self.failure_rate = failure_rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = 0

    def temperature(self, city: str) -> int:
        with self.lock:
            self.requests += 1
            fails = self.random.random() < self.failure_rate
        if fails:
            raise ConnectionError(f"weather service timed out for {city}")
        return sum(map(ord, city)) % 35


class State(TypedDict):
    cities: list[str]
    readings: Annotated[list[tuple[str, int]], operator.add]
    summary: str


def build(
    service: Service, saver: SqliteSaver | None = None, cache: InMemoryCache | None = None
) -> Any:
    def fan_out(state: State) -> list[Send]:
        return [Send("fetch_weather", city) for city in state["cities"]]

    def fetch_weather(city: str) -> dict[str, Any]:
        return {"readings": [(city, service.temperature(city))]}

    def summarize(state: State) -> dict[str, Any]:
        warmest = max(state["readings"], key=lambda r: (r[1], r[0]))
        return {"summary": f"{len(state['readings'])} cities, warmest {warmest[0]}"}

    graph = StateGraph(State)
    graph.add_node(
        "fetch_weather",
        fetch_weather,
        retry_policy=RetryPolicy(
            initial_interval=0.01, max_attempts=10, jitter=False, retry_on=ConnectionError
        ),
        cache_policy=CachePolicy(ttl=3600),
    )
    graph.add_node(summarize)
    graph.add_conditional_edges(START, fan_out, ["fetch_weather"])
    graph.add_edge("fetch_weather", "summarize")
    return graph.compile(checkpointer=saver, cache=cache)


graph = build(Service(failure_rate=0.4, seed=7), cache=InMemoryCache())
"""The workflow, without a checkpointer: a target for ``stepgraph run`` (which supplies one)."""


def run_once(app: Any, label: str) -> str:
    config = {"configurable": {"thread_id": f"weather-{uuid.uuid4().hex[:8]}"}}
    summary = ""
    print(f"-- {label}")
    for mode, chunk in app.stream(
        {"cities": CITIES, "readings": []}, config, stream_mode=["tasks", "updates"]
    ):
        if mode == "tasks" and "retry_in" in chunk:
            print(f"  retry: {chunk['error']} (attempt {chunk['attempt']} failed)")
        elif mode == "updates" and "fetch_weather" in chunk:
            cached = " (cached)" if chunk.get("__metadata__", {}).get("cached") else ""
            [(city, temp)] = chunk["fetch_weather"]["readings"]
            print(f"  {city}: {temp} C{cached}")
        elif mode == "updates" and "summarize" in chunk:
            summary = chunk["summarize"]["summary"]
    print(f"  summary: {summary}")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Map-reduce over a flaky service.")
    parser.add_argument("--failure-rate", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", type=Path, default=Path(".stepgraph/examples.db"))
    args = parser.parse_args(argv)
    service = Service(args.failure_rate, args.seed)
    with SqliteSaver(args.db) as saver:
        app = build(service, saver, InMemoryCache())
        run_once(app, "first run")
        first_requests = service.requests
        run_once(app, "second run, same cities")
    print(f"service requests: {first_requests} in the first run, ", end="")
    print(f"{service.requests - first_requests} in the second")


if __name__ == "__main__":
    main()

"""Shared fixtures: one test body runs against both drivers."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest


class Driver:
    """Runs a compiled graph with the sync or the async driver, same call shape."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def invoke(
        self, graph: Any, input: Any, config: Mapping[str, Any] | None = None, **kw: Any
    ) -> Any:
        if self.kind == "sync":
            return graph.invoke(input, config, **kw)
        return asyncio.run(graph.ainvoke(input, config, **kw))

    def stream(
        self, graph: Any, input: Any, config: Mapping[str, Any] | None = None, **kw: Any
    ) -> list[Any]:
        if self.kind == "sync":
            return list(graph.stream(input, config, **kw))

        async def collect() -> list[Any]:
            return [c async for c in graph.astream(input, config, **kw)]

        return asyncio.run(collect())

    def stream_into(
        self, sink: list[Any], graph: Any, input: Any, config: Any = None, **kw: Any
    ) -> None:
        """Like ``stream``, but appends chunks to ``sink`` as they arrive (kept on errors)."""
        if self.kind == "sync":
            for chunk in graph.stream(input, config, **kw):
                sink.append(chunk)
            return

        async def collect() -> None:
            async for chunk in graph.astream(input, config, **kw):
                sink.append(chunk)

        asyncio.run(collect())

    def batch(self, graph: Any, inputs: list[Any], config: Any = None, **kw: Any) -> list[Any]:
        if self.kind == "sync":
            return graph.batch(inputs, config, **kw)
        return asyncio.run(graph.abatch(inputs, config, **kw))

    def __repr__(self) -> str:
        return f"Driver({self.kind})"


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> Driver:
    """The sync driver (invoke/stream) and the async one (ainvoke/astream)."""
    return Driver(request.param)


# -- PostgreSQL: a real server, or a skip that says why ----------------------------

POSTGRES_ENV = "STEPGRAPH_TEST_POSTGRES_DSN"


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The test server's DSN (``$STEPGRAPH_TEST_POSTGRES_DSN``); skips if none answers."""
    dsn = os.environ.get(POSTGRES_ENV)
    if not dsn:
        pytest.skip(f"no PostgreSQL to test against: set {POSTGRES_ENV} (.ci/run sets it)")
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed: pip install -e '.[dev]'")
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_ENV}={dsn!r}: {exc}")
    return dsn


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test, dropped afterwards."""
    import psycopg

    name = f"sgtest_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

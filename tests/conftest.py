"""Shared fixtures: one test body runs against both drivers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
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

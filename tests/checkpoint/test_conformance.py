"""The saver conformance suite (`stepgraph.checkpoint.testing`) against every saver."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite's assertions live in the library module: have pytest rewrite them so that
# failures show the values compared (only possible before the module is imported).
if "stepgraph.checkpoint.testing" not in sys.modules:
    pytest.register_assert_rewrite("stepgraph.checkpoint.testing")

import stepgraph.checkpoint as checkpoint
from stepgraph.checkpoint import BaseCheckpointSaver, InMemorySaver
from stepgraph.checkpoint.testing import SaverConformance


class TestInMemorySaver(SaverConformance):
    @pytest.fixture
    def saver(self) -> Iterator[BaseCheckpointSaver]:
        yield InMemorySaver()


class TestSqliteSaver(SaverConformance):
    @pytest.fixture
    def saver(self, tmp_path: Path) -> Iterator[BaseCheckpointSaver]:
        saver = checkpoint.SqliteSaver(tmp_path / "c.db")
        yield saver
        saver.close()


class TestPostgresSaver(SaverConformance):
    @pytest.fixture
    def saver(self, postgres_dsn: str, postgres_schema: str) -> Iterator[BaseCheckpointSaver]:
        from stepgraph.checkpoint.postgres import PostgresSaver

        saver = PostgresSaver(postgres_dsn, schema=postgres_schema, max_size=4)
        yield saver
        saver.close()

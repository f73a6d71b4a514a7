"""The low-level API: Pregel built from NodeBuilder nodes and channel instances."""

from __future__ import annotations

import asyncio
import operator
from typing import Any

import pytest

from stepgraph.channels import BinaryOperatorAggregate, EphemeralValue, LastValue, Topic
from stepgraph.engine import GraphBuildError, InvalidInputError, NodeBuilder, Pregel


def doubler() -> Pregel:
    return Pregel(
        nodes={"double": NodeBuilder().subscribe_only("a").do(lambda x: x * 2).write_to("b")},
        channels={"a": EphemeralValue(int), "b": LastValue(int)},
        input_channels="a",
        output_channels="b",
    )


def test_single_channel_in_and_out(driver: Any) -> None:
    assert driver.invoke(doubler(), 3) == 6
    assert driver.stream(doubler(), 3) == [6]


def test_dict_input_read_from_and_mapped_writes(driver: Any) -> None:
    node = (
        NodeBuilder()
        .subscribe_to("x")
        .read_from("y")
        .do(lambda d: d["x"] + d.get("y", 0))
        .write_to("sum", doubled=lambda s: s * 2, flag="done")
    )
    app = Pregel(
        nodes={"add": node},
        channels={
            "x": EphemeralValue(int),
            "y": LastValue(int),
            "sum": LastValue(int),
            "doubled": LastValue(int),
            "flag": LastValue(str),
        },
        input_channels=("x", "y"),
        output_channels=("sum", "doubled", "flag"),
    )
    assert driver.invoke(app, {"x": 2, "y": 5}) == {"sum": 7, "doubled": 14, "flag": "done"}
    with pytest.raises(InvalidInputError, match="'z'"):
        driver.invoke(app, {"z": 1})


def test_chained_functions_and_async_function() -> None:
    async def inc(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    app = Pregel(
        nodes={"n": NodeBuilder().subscribe_only("a").do(inc).do(lambda x: x * 10).write_to("b")},
        channels={"a": EphemeralValue(int), "b": LastValue(int)},
        input_channels="a",
        output_channels="b",
    )
    assert asyncio.run(app.ainvoke(1)) == 20


def test_cycle_until_no_writes(driver: Any) -> None:
    # "step" re-triggers itself by writing "counter" until it returns None.
    node = NodeBuilder().subscribe_only("counter").do(lambda c: c + 1 if c < 5 else None)
    node.write_to("counter", seen=lambda c: [c])
    app = Pregel(
        nodes={"step": node},
        channels={
            "counter": LastValue(int),
            "seen": BinaryOperatorAggregate(list, operator.add),
        },
        input_channels="counter",
        output_channels=("counter", "seen"),
    )
    assert driver.invoke(app, 1) == {"counter": 5, "seen": [2, 3, 4, 5]}


def test_topic_collects_writes_of_parallel_nodes(driver: Any) -> None:
    app = Pregel(
        nodes={
            n: NodeBuilder().subscribe_only("go").do(lambda x, n=n: f"{n}{x}").write_to("out")
            for n in ("p", "q")
        },
        channels={"go": EphemeralValue(int), "out": Topic(str, accumulate=True)},
        input_channels="go",
        output_channels="out",
    )
    assert driver.invoke(app, 1) == ["p1", "q1"]


def test_bad_definitions_are_reported_together() -> None:
    with pytest.raises(GraphBuildError) as info:
        Pregel(
            nodes={"n": NodeBuilder().subscribe_only("missing").write_to("b")},
            channels={"a": EphemeralValue(int)},
            input_channels="nope",
            output_channels="b",
        )
    text = str(info.value)
    assert "'missing'" in text and "'nope'" in text and "'b'" in text


def test_node_without_subscription() -> None:
    with pytest.raises(ValueError, match="subscribes to no channel"):
        NodeBuilder().do(lambda x: x).build("lonely")


def test_policies_are_checked_when_the_graph_is_built() -> None:
    node = NodeBuilder().subscribe_only("a").write_to("b").add_retry_policies(object())
    with pytest.raises(GraphBuildError, match="retry_policy of node 'n' must be a RetryPolicy"):
        Pregel(
            nodes={"n": node},
            channels={"a": EphemeralValue(int), "b": LastValue(int)},
            input_channels="a",
            output_channels="b",
        )

"""The superstep core on its own: no threads, no event loop, no executor."""

from __future__ import annotations

import operator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepgraph.channels import (
    BinaryOperatorAggregate,
    EphemeralValue,
    InvalidUpdateError,
    LastValue,
)
from stepgraph.engine import NodeBuilder, Pregel
from stepgraph.engine._core import Core
from stepgraph.engine._ids import task_id


def ring(n: int) -> Pregel:
    """n nodes in a chain; node i reads c{i} and writes c{i+1}; plus a sink 'total'."""
    nodes = {
        f"n{i}": NodeBuilder()
        .subscribe_only(f"c{i}")
        .do(lambda x: x + 1)
        .write_to(f"c{i + 1}", total=1)
        for i in range(n)
    }
    channels: dict[str, Any] = {f"c{i}": EphemeralValue(int) for i in range(n + 1)}
    channels["total"] = BinaryOperatorAggregate(int, operator.add)
    return Pregel(nodes=nodes, channels=channels, input_channels="c0", output_channels="total")


def run_by_hand(core: Core) -> list[list[str]]:
    """Drive the core like a driver would, running tasks inline; returns names per step."""
    steps = []
    while tasks := core.plan():
        steps.append([t.name for t in tasks])
        for t in tasks:
            out = t.node.proc(t.input)
            for w in t.node.writers:
                w(t, out)
        core.commit(tasks)
    return steps


def test_plan_commit_cycle_without_any_executor() -> None:
    core = Core(ring(3).program)
    core.apply_input([("c0", 10)])
    assert run_by_hand(core) == [["n0"], ["n1"], ["n2"]]
    assert core.read("total") == 3
    assert core.read("c3") == 13


def test_planning_looks_only_at_nodes_triggered_by_updated_channels() -> None:
    program = ring(500).program
    core = Core(program)
    core.apply_input([("c0", 0)])
    checked: list[int] = []
    while tasks := core.plan():
        checked.append(len(core._candidates or ()))
        for t in tasks:
            for w in t.node.writers:
                w(t, t.node.proc(t.input))
        core.commit(tasks)
    # One candidate per step, whatever the size of the graph.
    assert set(checked) == {1}


def test_ephemeral_channels_clear_after_a_step() -> None:
    core = Core(ring(2).program)
    core.apply_input([("c0", 1)])
    (task,) = core.plan()
    task.write("c1", 2)
    core.commit([task])
    assert core.channels["c0"].is_available() is False
    assert core.read("c1") == 2


def test_writes_apply_in_task_path_order_not_completion_order() -> None:
    program = Pregel(
        nodes={
            name: NodeBuilder().subscribe_only("start").write_to("log") for name in ("b", "c", "a")
        },
        channels={"start": EphemeralValue(Any), "log": BinaryOperatorAggregate(list, operator.add)},
        input_channels="start",
        output_channels="log",
    ).program
    core = Core(program)
    core.apply_input([("start", None)])
    tasks = core.plan()
    assert [t.name for t in tasks] == ["a", "b", "c"]
    for t in reversed(tasks):  # "finish" in reverse order
        t.write("log", [t.name])
    core.commit(list(reversed(tasks)))
    assert core.read("log") == ["a", "b", "c"]


@settings(max_examples=50, deadline=None)
@given(st.permutations(["a", "b", "c", "d", "e"]))
def test_any_completion_order_gives_the_same_state(order: list[str]) -> None:
    program = Pregel(
        nodes={n: NodeBuilder().subscribe_only("go").write_to("log") for n in "abcde"},
        channels={"go": EphemeralValue(Any), "log": BinaryOperatorAggregate(list, operator.add)},
        input_channels="go",
        output_channels="log",
    ).program
    core = Core(program)
    core.apply_input([("go", 1)])
    by_name = {t.name: t for t in core.plan()}
    finished = [by_name[n] for n in order]
    for t in finished:
        t.write("log", [t.name])
    core.commit(finished)
    assert core.read("log") == list("abcde")


def test_conflicting_writes_name_channel_step_and_writers() -> None:
    program = Pregel(
        nodes={n: NodeBuilder().subscribe_only("go").write_to("x") for n in "ab"},
        channels={"go": EphemeralValue(Any), "x": LastValue(int)},
        input_channels="go",
        output_channels="x",
    ).program
    core = Core(program)
    core.apply_input([("go", 1)])
    tasks = core.plan()
    for t in tasks:
        t.write("x", 1)
    with pytest.raises(InvalidUpdateError) as info:
        core.commit(tasks)
    assert (info.value.channel, info.value.step, info.value.writers) == ("x", 0, ("a", "b"))


def test_task_ids_are_a_pure_function_of_their_coordinates() -> None:
    a = task_id("ckpt", "", 3, "node", "pull", "branch:to:node")
    assert a == task_id("ckpt", "", 3, "node", "pull", "branch:to:node")
    assert a != task_id("ckpt", "", 4, "node", "pull", "branch:to:node")
    # Separators keep part boundaries apart: ("ab", "c") != ("a", "bc").
    assert task_id("c", "", 1, "ab", "c") != task_id("c", "", 1, "a", "bc")
    assert len(a) == 36 and a.count("-") == 4


def test_replanning_from_the_same_checkpoint_gives_the_same_ids() -> None:
    program = ring(2).program
    ids = []
    for _ in range(2):
        core = Core(program, checkpoint_id="fixed", new_checkpoint_id=lambda seq: f"id{seq}")
        core.apply_input([("c0", 1)])
        ids.append([t.id for t in core.plan()])
    assert ids[0] == ids[1]


def test_versions_increase_monotonically() -> None:
    core = Core(ring(3).program)
    core.apply_input([("c0", 1)])
    seen = [dict(core.versions)]
    run_by_hand(core)
    seen.append(dict(core.versions))
    assert all(seen[1][k] >= v for k, v in seen[0].items())
    assert core.max_version == max(core.versions.values())


def test_restore_from_checkpoint_values_continues_the_run() -> None:
    program = ring(3).program
    core = Core(program)
    core.apply_input([("c0", 1)])
    (task,) = core.plan()
    for w in task.node.writers:
        w(task, task.node.proc(task.input))
    core.commit([task])
    restored = Core(
        program,
        step=core.step,
        channel_values=core.checkpoint_values(),
        versions=core.versions,
        versions_seen=core.versions_seen,
    )
    assert run_by_hand(restored) == [["n1"], ["n2"]]
    assert restored.read("total") == 3


def test_nodes_get_their_own_copy_of_mutable_values() -> None:
    program = Pregel(
        nodes={"a": NodeBuilder().subscribe_to("items").write_to("out")},
        channels={"items": LastValue(list), "out": LastValue(Any)},
        input_channels="items",
        output_channels="out",
    ).program
    core = Core(program)
    core.apply_input([("items", [1, 2])])
    (task,) = core.plan()
    task.input["items"].append(3)  # a node mutating its input
    assert core.read("items", detach=False) == [1, 2]

"""compile() validates the whole graph and reports every problem in one error."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest

from stepgraph.engine import END, START, GraphBuildError, StateGraph


class S(TypedDict):
    x: Annotated[list[int], operator.add]


def noop(state: Any) -> None:
    return None


def problems_of(g: StateGraph, **kw: Any) -> tuple[str, ...]:
    with pytest.raises(GraphBuildError) as info:
        g.compile(**kw)
    assert isinstance(info.value, ValueError)
    return info.value.problems


def test_every_problem_is_reported_at_once() -> None:
    g = StateGraph(S)
    g.add_node("a", noop)
    g.add_node("a", noop)  # duplicate
    g.add_node(START, noop)  # reserved
    g.add_node("x", noop)  # clashes with a state key
    g.add_node("bad|name", noop)
    g.add_edge("a", "ghost")  # unknown node
    problems = problems_of(g, interrupt_before=["nobody"])
    text = "\n".join(problems)
    assert "added twice" in text
    assert "'__start__' is reserved" in text
    assert "'x' is both a state key and a node name" in text
    assert "'bad|name'" in text
    assert "unknown node 'ghost'" in text
    assert "interrupt_before names unknown node 'nobody'" in text
    assert "no entry point" in text
    assert len(problems) == 7
    assert str(len(problems)) in str(GraphBuildError(problems))


def test_unreachable_node() -> None:
    g = StateGraph(S)
    g.add_node("a", noop)
    g.add_node("island", noop)
    g.add_node("b", noop)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("island", "b")
    (problem,) = problems_of(g)
    assert "'island' can never run" in problem


def test_command_routers_without_destinations_are_not_flagged() -> None:
    g = StateGraph(S)
    g.add_node("router", lambda s: None)  # no edges, no annotation: may route with Command
    g.add_node("target", noop)
    g.add_edge(START, "router")
    g.compile()


def test_declared_destinations_are_used_for_reachability() -> None:
    g = StateGraph(S)
    g.add_node("router", noop, destinations=("a",))
    g.add_node("a", noop)
    g.add_node("b", noop)
    g.add_edge(START, "router")
    g.add_edge("b", END)
    assert any("'b' can never run" in p for p in problems_of(g))


def three(a: Any, b: Any, c: Any) -> Any:
    return a


class Bad(TypedDict):
    y: Annotated[int, three]


def test_invalid_reducer() -> None:
    g = StateGraph(Bad)
    g.add_node("a", noop)
    g.add_edge(START, "a")
    (problem,) = problems_of(g)
    assert "invalid reducer" in problem and "two positional arguments" in problem


def test_conflicting_channel_declarations() -> None:
    class Other(TypedDict):
        x: Annotated[list[int], operator.mul]

    g = StateGraph(S, input_schema=Other)
    g.add_node("a", noop)
    g.add_edge(START, "a")
    assert any("declared with different channels" in p for p in problems_of(g))


def test_bad_edges() -> None:
    g = StateGraph(S)
    g.add_node("a", noop)
    g.add_edge(START, "a")
    g.add_edge(END, "a")
    g.add_edge("a", START)
    g.add_edge([START, "a"], "a")
    text = "\n".join(problems_of(g))
    assert "END cannot be the start" in text
    assert "START cannot be the end" in text
    assert "START cannot be part of a join" in text


def test_branch_to_unknown_node() -> None:
    g = StateGraph(S)
    g.add_node("a", noop)
    g.add_edge(START, "a")
    g.add_conditional_edges("a", lambda s: "z", {"go": "zz"})
    assert any("unknown node 'zz'" in p for p in problems_of(g))


def test_not_a_schema() -> None:
    g = StateGraph(int)
    g.add_node("a", noop)
    g.add_edge(START, "a")
    assert any("is not a state schema" in p for p in problems_of(g))


def test_nameless_node_and_empty_sequence() -> None:
    g = StateGraph(S)
    g.add_node(lambda s: None)
    g.add_sequence([])
    text = "\n".join(problems_of(g))
    assert "cannot infer a name" in text and "add_sequence() needs" in text


def test_error_pickles() -> None:
    import pickle

    err = GraphBuildError(["one", "two"], graph="g")
    again = pickle.loads(pickle.dumps(err))
    assert again.problems == ("one", "two") and str(again) == str(err)


def test_policies_of_the_wrong_type_are_build_problems() -> None:
    g = StateGraph(S)
    g.add_node("a", noop, retry_policy=object(), cache_policy="yes")  # type: ignore[arg-type]
    g.add_edge(START, "a")
    with pytest.raises(GraphBuildError) as info:
        g.compile()
    text = str(info.value)
    assert "retry_policy of node 'a' must be a RetryPolicy" in text
    assert "cache_policy of node 'a' must be a CachePolicy" in text

"""compile()'s static analysis: GraphWarning findings, and problems with strict=True."""

from __future__ import annotations

import operator
import pickle
import warnings
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import pytest

from stepgraph.engine import END, START, Command, GraphBuildError, GraphWarning, Send, StateGraph


class State(TypedDict):
    x: str
    log: Annotated[list[str], operator.add]


def compile_quietly(g: StateGraph, **kwargs: Any) -> list[GraphWarning]:
    """Compile and return the GraphWarnings it emitted."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g.compile(**kwargs)
    found = [w.message for w in caught if isinstance(w.message, GraphWarning)]
    assert len(found) == len(caught), [str(w.message) for w in caught]
    return found


def kinds(g: StateGraph) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    return [(w.kind, w.nodes, w.keys) for w in compile_quietly(g)]


def noop(state: State) -> None:
    return None


def write_x(state: State) -> dict[str, Any]:
    return {"x": "x"}


# -- no path to END -------------------------------------------------------------------


def test_a_cycle_without_exit_is_reported_with_the_nodes_leading_into_it() -> None:
    g = StateGraph(State)
    for n in ("entry", "a", "b"):
        g.add_node(n, noop)
    g.add_edge(START, "entry")
    g.add_edge("entry", "a")
    g.add_edge("a", "b")
    g.add_edge("b", "a")
    [w] = compile_quietly(g)
    assert (w.kind, w.nodes, w.keys) == ("no_path_to_end", ("entry", "a", "b"), ())
    assert "add_edge('<node>', END)" in str(w)
    assert w.graph == "graph 'LangGraph'"


def test_a_conditional_edge_annotated_without_end_keeps_the_cycle_closed() -> None:
    def route(state: State) -> Literal["a", "b"]:
        return "a"

    g = StateGraph(State)
    g.add_node("a", noop)
    g.add_node("b", noop)
    g.add_edge(START, "a")
    g.add_edge("b", "a")
    g.add_conditional_edges("a", route)
    assert kinds(g) == [("no_path_to_end", ("a", "b"), ())]


@pytest.mark.parametrize(
    "variant", ["end_edge", "leaf", "route_end", "unannotated_route", "list_route", "dest_end"]
)
def test_graphs_that_can_finish_are_not_reported(variant: str) -> None:
    def route(state: State) -> Literal["a", "__end__"]:
        return END

    def maybe_none(state: State) -> list[Literal["a"]]:
        return []  # an empty fan-out ends the run

    g = StateGraph(State)
    g.add_node("a", noop)
    g.add_node("b", noop, destinations=(END,) if variant == "dest_end" else None)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    if variant == "end_edge":
        g.add_edge("b", END)
    elif variant == "route_end":
        g.add_conditional_edges("b", route)
    elif variant == "unannotated_route":
        g.add_conditional_edges("b", lambda s: "a", ["a"])
    elif variant == "list_route":
        g.add_conditional_edges("b", maybe_none)
    elif variant == "dest_end":
        g.add_edge("b", "a")  # leaves with Command(graph=Command.PARENT), say
    assert kinds(g) == []  # "leaf": no outgoing edge, the run ends after b


def test_a_node_routing_with_command_may_end_the_run() -> None:
    def hop(state: State) -> Command[Literal["a"]]:
        return Command(goto="a")

    g = StateGraph(State)
    g.add_node("a", noop)
    g.add_node("hop", hop)
    g.add_edge(START, "a")
    g.add_edge("a", "hop")
    assert kinds(g) == []  # a Command without goto ends the run


# -- concurrent writes without a reducer -----------------------------------------------


def fan_out(**nodes: Any) -> StateGraph:
    g = StateGraph(State)
    for name, spec in nodes.items():
        fn, kw = spec if isinstance(spec, tuple) else (spec, {})
        g.add_node(name, fn, **kw)
        g.add_edge(START, name)
    return g


def test_two_fanned_out_nodes_writing_a_plain_key_are_reported() -> None:
    g = fan_out(a=(write_x, {"writes": ["x"]}), b=(write_x, {"writes": ["x", "log"]}))
    [w] = compile_quietly(g)
    assert (w.kind, w.nodes, w.keys) == ("concurrent_write", ("a", "b"), ("x",))
    assert "Annotated[" in str(w) and "reducer" in str(w) and "the start" in str(w)


class XOut(TypedDict):  # module level, so that the string annotations resolve
    x: str
    log: NotRequired[list[str]]


def test_the_write_is_known_from_a_typeddict_return_annotation() -> None:
    def a(state: State) -> XOut:
        return {"x": "a"}

    def b(state: State) -> XOut:
        return {"x": "b"}

    assert kinds(fan_out(a=a, b=b)) == [("concurrent_write", ("a", "b"), ("x",))]


@pytest.mark.parametrize("variant", ["reducer", "unknown", "state_annotation", "deferred"])
def test_concurrent_writes_that_cannot_collide_are_not_reported(variant: str) -> None:
    def a(state: State) -> State:  # annotated with the state, returns part of it
        return {"x": "a"}  # type: ignore[typeddict-item]

    if variant == "reducer":
        g = fan_out(a=(write_x, {"writes": ["log"]}), b=(write_x, {"writes": ["log"]}))
    elif variant == "unknown":
        g = fan_out(a=(write_x, {"writes": ["x"]}), b=write_x)
    elif variant == "state_annotation":
        g = fan_out(a=a, b=a)
    else:
        g = fan_out(a=(write_x, {"writes": ["x"]}), b=(write_x, {"writes": ["x"], "defer": True}))
    assert kinds(g) == []


def test_a_router_picks_one_but_a_list_returning_path_fans_out() -> None:
    def one(state: State) -> Literal["a", "b"]:
        return "a"

    def many(state: State) -> list[Literal["a", "b"]]:
        return ["a", "b"]

    for path, expected in ((one, []), (lambda s: "a", []), (many, [("a", "b")])):
        g = StateGraph(State)
        g.add_node("a", write_x, writes=["x"])
        g.add_node("b", write_x, writes=["x"])
        g.add_node("src", noop)
        g.add_edge(START, "src")
        g.add_conditional_edges("src", path, ["a", "b"])
        assert [w[1] for w in kinds(g)] == expected, path


def test_an_edge_and_a_conditional_edge_of_one_node_fire_together() -> None:
    def route(state: State) -> Literal["b", "__end__"]:
        return "b"

    g = StateGraph(State)
    g.add_node("a", write_x, writes=["x"])
    g.add_node("b", write_x, writes=["x"])
    g.add_node("src", noop)
    g.add_edge(START, "src")
    g.add_edge("src", "a")
    g.add_conditional_edges("src", route)
    [w] = compile_quietly(g)
    assert (w.kind, w.nodes) == ("concurrent_write", ("a", "b"))
    assert "conditional edge 'route'" in str(w)


def test_a_send_fan_out_repeats_its_target_in_one_superstep() -> None:
    def spread(state: State) -> list[Send]:
        return [Send("work", {"x": "1"}), Send("work", {"x": "2"})]

    g = StateGraph(State)
    g.add_node("work", write_x, writes=["x"])
    g.add_conditional_edges(START, spread, ["work"])
    [w] = compile_quietly(g)
    assert (w.kind, w.nodes, w.keys) == ("concurrent_write", ("work",), ("x",))
    assert "several times" in str(w)


def test_writes_must_name_state_keys() -> None:
    g = StateGraph(State)
    g.add_node("a", write_x, writes=["x", "nope"])
    g.add_edge(START, "a")
    with pytest.raises(GraphBuildError, match=r"writes=\.\.\.\) names \['nope'\]"):
        g.compile()


# -- channels written and never read ------------------------------------------------------


class Full(TypedDict):
    question: str
    scratch: str
    answer: str


class Question(TypedDict):
    question: str


class Answer(TypedDict):
    answer: str


class Out(TypedDict):
    answer: str
    scratch: str


def answer(state: Question) -> Out:
    return {"answer": "42", "scratch": "notes"}


def test_a_key_nobody_reads_and_the_output_leaves_out_is_reported() -> None:
    g = StateGraph(Full, output_schema=Answer)
    g.add_node("respond", answer)
    g.add_edge(START, "respond")
    [w] = compile_quietly(g)
    assert (w.kind, w.nodes, w.keys) == ("unread_channel", ("respond",), ("scratch",))
    assert "output schema" in str(w)


@pytest.mark.parametrize("variant", ["whole_state_reader", "in_output", "branch"])
def test_unread_keys_are_only_reported_when_every_reader_is_known(variant: str) -> None:
    def read_all(state: Full) -> None:
        return None

    g = StateGraph(Full, output_schema=Out if variant == "in_output" else Answer)
    g.add_node("respond", answer)
    g.add_edge(START, "respond")
    if variant == "whole_state_reader":
        g.add_node("read_all", read_all)
        g.add_edge("respond", "read_all")
    elif variant == "branch":
        g.add_conditional_edges("respond", lambda s: END, [END])
    assert kinds(g) == []


# -- strict mode, the warning object -------------------------------------------------------


def test_strict_turns_every_finding_into_one_build_error() -> None:
    g = fan_out(a=(write_x, {"writes": ["x"]}), b=(write_x, {"writes": ["x"]}))
    g.add_edge("a", "b")
    g.add_edge("b", "a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # strict mode warns about nothing
        with pytest.raises(GraphBuildError) as info:
            g.compile(strict=True)
    problems = info.value.problems
    assert len(problems) == 2
    assert "cannot reach END" in problems[0] and "InvalidUpdateError" in problems[1]


def test_strict_compiles_a_clean_graph() -> None:
    def log(state: State) -> dict[str, Any]:
        return {"log": ["hi"]}

    g = fan_out(a=(log, {"writes": ["log"]}), b=(log, {"writes": ["log"]}))
    assert g.compile(strict=True).invoke({"x": "", "log": []}) == {"x": "", "log": ["hi", "hi"]}


def test_the_warning_points_at_the_compile_call_and_round_trips() -> None:
    g = fan_out(a=(write_x, {"writes": ["x"]}), b=(write_x, {"writes": ["x"]}))
    with pytest.warns(GraphWarning) as record:
        g.compile()
    assert record[0].filename == __file__
    w = record[0].message
    assert isinstance(w, GraphWarning) and isinstance(w, UserWarning)
    back = pickle.loads(pickle.dumps(w))
    assert (back.kind, back.nodes, back.keys, str(back)) == (w.kind, w.nodes, w.keys, str(w))

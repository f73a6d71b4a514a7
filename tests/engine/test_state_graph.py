"""StateGraph: schemas, reducers, nodes, edges, branches, Send, Command, subgraphs."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

import pytest
from pydantic import BaseModel, field_validator

from stepgraph.channels import LastValue, Topic
from stepgraph.engine import (
    END,
    START,
    Command,
    InvalidInputError,
    InvalidNodeReturnError,
    InvalidUpdateError,
    IsLastStep,
    Overwrite,
    RemainingSteps,
    Send,
    StateGraph,
)


class Log(TypedDict):
    log: Annotated[list[str], operator.add]


def append(name: str) -> Any:
    def node(state: Any) -> dict[str, list[str]]:
        return {"log": [name]}

    node.__name__ = name
    return node


def chain(*names: str) -> StateGraph:
    g = StateGraph(Log)
    g.add_sequence([append(n) for n in names])
    g.add_edge(START, names[0])
    return g


def test_sequence_runs_in_order(driver: Any) -> None:
    assert driver.invoke(chain("a", "b", "c").compile(), {"log": []}) == {"log": ["a", "b", "c"]}


def test_reducer_folds_parallel_writes_in_task_order(driver: Any) -> None:
    g = StateGraph(Log)
    for n in ("b", "a", "c"):
        g.add_node(append(n))
        g.add_edge(START, n)
    # Writes are applied in node-name order, whatever order the tasks finished in.
    assert driver.invoke(g.compile(), {"log": ["in"]}) == {"log": ["in", "a", "b", "c"]}


def test_parallel_writes_without_reducer_name_channel_step_and_writers(driver: Any) -> None:
    class S(TypedDict):
        x: int

    g = StateGraph(S)
    g.add_node("a", lambda s: {"x": 1})
    g.add_node("b", lambda s: {"x": 2})
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    with pytest.raises(InvalidUpdateError) as info:
        driver.invoke(g.compile(), {"x": 0})
    err = info.value
    assert err.channel == "x"
    assert err.step == 1
    assert err.writers == ("a", "b")
    assert "reducer" in str(err)


def test_channel_annotation_instance_and_class(driver: Any) -> None:
    class S(TypedDict):
        seen: Annotated[list[str], Topic(str, accumulate=True)]
        last: Annotated[int, LastValue]

    g = StateGraph(S)
    g.add_node("a", lambda s: {"seen": "a", "last": 1})
    g.add_node("b", lambda s: {"seen": ["b", "c"], "last": 2})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    assert driver.invoke(g.compile(), {"last": 0}) == {"seen": ["a", "b", "c"], "last": 2}


def test_overwrite_bypasses_reducer(driver: Any) -> None:
    g = chain("a", "b")
    g.add_node("reset", lambda s: {"log": Overwrite(["fresh"])})
    g.add_edge("b", "reset")
    assert driver.invoke(g.compile(), {"log": ["x"]}) == {"log": ["fresh"]}


def test_dataclass_state_with_defaults(driver: Any) -> None:
    @dataclass
    class S:
        name: str
        count: int = 0
        items: Annotated[list[str], operator.add] = field(default_factory=list)

    def visit(state: S) -> dict[str, Any]:
        assert isinstance(state, S)
        return {"count": state.count + 1, "items": [state.name]}

    g = StateGraph(S)
    g.add_node(visit)
    g.add_edge(START, "visit")
    assert driver.invoke(g.compile(), {"name": "n"}) == {"name": "n", "count": 1, "items": ["n"]}


class PState(BaseModel):
    text: str
    score: int = 0
    notes: Annotated[list[str], operator.add] = []

    @field_validator("score")
    @classmethod
    def non_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("score must be >= 0")
        return v


def test_pydantic_state_coerces_and_validates_updates(driver: Any) -> None:
    def grade(state: PState) -> dict[str, Any]:
        assert isinstance(state, PState)
        return {"score": "7", "notes": [state.text]}

    g = StateGraph(PState)
    g.add_node(grade)
    g.add_edge(START, "grade")
    assert driver.invoke(g.compile(), {"text": "hi"}) == {"text": "hi", "score": 7, "notes": ["hi"]}


def test_pydantic_invalid_update_names_node_key_and_step(driver: Any) -> None:
    g = StateGraph(PState)
    g.add_node("grade", lambda s: {"score": -1})
    g.add_edge(START, "grade")
    with pytest.raises(InvalidNodeReturnError) as info:
        driver.invoke(g.compile(), {"text": "hi"})
    msg = str(info.value)
    assert "'grade'" in msg and "PState.score" in msg and "superstep 1" in msg
    assert "score must be >= 0" in msg


def test_pydantic_invalid_input_is_rejected(driver: Any) -> None:
    g = StateGraph(PState)
    g.add_node("grade", lambda s: None)
    g.add_edge(START, "grade")
    with pytest.raises(InvalidInputError, match="PState"):
        driver.invoke(g.compile(), {"score": 1})


def test_unknown_returned_key_is_an_error_naming_node_key_and_valid_keys(driver: Any) -> None:
    g = StateGraph(Log)
    g.add_node("typo", lambda s: {"logs": ["x"]})
    g.add_edge(START, "typo")
    with pytest.raises(InvalidNodeReturnError) as info:
        driver.invoke(g.compile(), {"log": []})
    assert info.value.node == "typo"
    assert "'logs'" in str(info.value) and "['log']" in str(info.value)


def test_unknown_input_key_is_an_error(driver: Any) -> None:
    with pytest.raises(InvalidInputError, match="'lgo'"):
        driver.invoke(chain("a").compile(), {"lgo": []})


def test_non_dict_return_is_an_error(driver: Any) -> None:
    g = StateGraph(Log)
    g.add_node("bad", lambda s: 42)
    g.add_edge(START, "bad")
    with pytest.raises(InvalidNodeReturnError, match="returned int"):
        driver.invoke(g.compile(), {"log": []})


class In(TypedDict):
    question: str


class Out(TypedDict):
    answer: str


class Overall(In, Out):
    pass


class Private(TypedDict):
    scratch: str


def test_input_and_output_schemas_and_private_keys(driver: Any) -> None:
    # Private is known to the graph only through respond's annotation.
    def think(state: In) -> dict[str, str]:
        return {"scratch": state["question"].upper()}

    def respond(state: Private) -> dict[str, str]:
        return {"answer": state["scratch"] + "!"}

    g = StateGraph(Overall, input_schema=In, output_schema=Out)
    g.add_node(think)
    g.add_node(respond)
    g.add_edge(START, "think")
    g.add_edge("think", "respond")
    assert driver.invoke(g.compile(), {"question": "hi"}) == {"answer": "HI!"}


def test_conditional_edges_with_literal_annotation(driver: Any) -> None:
    class S(TypedDict):
        n: int
        log: Annotated[list[str], operator.add]

    def route(state: S) -> Literal["small", "big"]:
        return "small" if state["n"] < 10 else "big"

    g = StateGraph(S)
    g.add_node("check", lambda s: {"log": ["check"]})
    g.add_node("small", lambda s: {"log": ["small"]})
    g.add_node("big", lambda s: {"log": ["big"]})
    g.add_edge(START, "check")
    g.add_conditional_edges("check", route)
    app = g.compile()
    assert driver.invoke(app, {"n": 3})["log"] == ["check", "small"]
    assert driver.invoke(app, {"n": 30})["log"] == ["check", "big"]


def test_conditional_edges_path_map_dict_and_list_results(driver: Any) -> None:
    g = chain("start")
    g.add_node(append("x"))
    g.add_node(append("y"))
    g.add_conditional_edges("start", lambda s: ["one", "two"], {"one": "x", "two": "y"})
    assert driver.invoke(g.compile(), {"log": []}) == {"log": ["start", "x", "y"]}


def test_branch_sees_the_source_nodes_own_writes(driver: Any) -> None:
    g = chain("a")
    g.add_node(append("b"))
    g.add_conditional_edges("a", lambda s: "b" if s["log"] == ["a"] else END, ["b", END])
    assert driver.invoke(g.compile(), {"log": []}) == {"log": ["a", "b"]}


def test_branch_returning_unknown_node_is_an_error(driver: Any) -> None:
    g = chain("a")
    g.add_conditional_edges("a", lambda s: "nowhere")
    with pytest.raises(ValueError, match="'nowhere'"):
        driver.invoke(g.compile(), {"log": []})


def test_send_fan_out_and_reduce(driver: Any) -> None:
    class S(TypedDict):
        items: list[int]
        squares: Annotated[list[int], operator.add]

    g = StateGraph(S)
    g.add_node("square", lambda item: {"squares": [item * item]})
    g.add_conditional_edges(START, lambda s: [Send("square", i) for i in s["items"]], ["square"])
    out = driver.invoke(g.compile(), {"items": [3, 1, 2]})
    assert out == {"items": [3, 1, 2], "squares": [9, 1, 4]}  # Send order, not finish order


def test_send_to_end_is_an_error(driver: Any) -> None:
    g = chain("a")
    g.add_conditional_edges("a", lambda s: Send(END, 1))
    with pytest.raises(InvalidUpdateError, match="END"):
        driver.invoke(g.compile(), {"log": []})


def test_command_update_and_goto(driver: Any) -> None:
    def decide(state: Log) -> Command[Literal["yes", "no"]]:
        return Command(update={"log": ["decide"]}, goto="yes")

    g = StateGraph(Log)
    g.add_node(decide)
    g.add_node(append("yes"))
    g.add_node(append("no"))
    g.add_edge(START, "decide")
    assert driver.invoke(g.compile(), {"log": []}) == {"log": ["decide", "yes"]}


def test_command_goto_sends_and_unknown_node(driver: Any) -> None:
    g = StateGraph(Log)
    g.add_node("fan", lambda s: Command(goto=[Send("leaf", "p"), Send("leaf", "q")]))
    g.add_node("leaf", lambda arg: {"log": [arg]})
    g.add_edge(START, "fan")
    assert driver.invoke(g.compile(), {"log": []}) == {"log": ["p", "q"]}

    bad = StateGraph(Log)
    bad.add_node("fan", lambda s: Command(goto="ghost"), destinations=())
    bad.add_edge(START, "fan")
    with pytest.raises(InvalidNodeReturnError, match="'ghost'"):
        driver.invoke(bad.compile(), {"log": []})


def test_list_of_sends_returned_by_node_is_an_error(driver: Any) -> None:
    g = StateGraph(Log)
    g.add_node("fan", lambda s: [Send("leaf", 1)])
    g.add_node("leaf", lambda arg: None)
    g.add_edge(START, "fan")
    g.add_edge("fan", "leaf")
    with pytest.raises(InvalidNodeReturnError, match="Command"):
        driver.invoke(g.compile(), {"log": []})


def test_join_waits_for_all_sources(driver: Any) -> None:
    g = StateGraph(Log)
    for n in "abcj":
        g.add_node(append(n))
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    g.add_edge("b", "c")
    g.add_edge(["a", "c"], "j")
    assert driver.invoke(g.compile(), {"log": []}) == {"log": ["a", "b", "c", "j"]}


def test_deferred_node_runs_when_everything_else_is_done(driver: Any) -> None:
    g = StateGraph(Log)
    for n in "abcd":
        g.add_node(append(n))
    g.add_node(append("fin"), defer=True)
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    g.add_edge("b", "c")
    g.add_edge("c", "d")
    g.add_edge("a", "fin")
    g.add_edge("d", "fin")
    assert driver.invoke(g.compile(), {"log": []}) == {"log": ["a", "b", "c", "d", "fin"]}


def test_entry_and_finish_point_shortcuts(driver: Any) -> None:
    g = StateGraph(Log)
    g.add_node(append("only"))
    g.set_entry_point("only")
    g.set_finish_point("only")
    assert driver.invoke(g.compile(), {"log": []}) == {"log": ["only"]}

    g = StateGraph(Log)
    g.add_node(append("x"))
    g.add_node(append("y"))
    g.set_conditional_entry_point(lambda s: "y", ["x", "y"])
    assert driver.invoke(g.compile(), {"log": []}) == {"log": ["y"]}


def test_async_nodes_and_async_branches() -> None:
    import asyncio

    async def a(state: Log) -> dict[str, list[str]]:
        await asyncio.sleep(0)
        return {"log": ["a"]}

    async def route(state: Log) -> str:
        return "b"

    g = StateGraph(Log)
    g.add_node(a)
    g.add_node(append("b"))
    g.add_edge(START, "a")
    g.add_conditional_edges("a", route, ["b"])
    app = g.compile()
    assert asyncio.run(app.ainvoke({"log": []})) == {"log": ["a", "b"]}
    with pytest.raises(TypeError, match="ainvoke"):
        app.invoke({"log": []})


def test_node_parameters_config_writer_runtime(driver: Any) -> None:
    @dataclass
    class Ctx:
        user: str

    seen: dict[str, Any] = {}

    def node(state: Log, config: dict[str, Any], writer: Any, runtime: Any) -> dict[str, Any]:
        seen["thread"] = config["configurable"]["thread_id"]
        seen["node"] = config["metadata"]["langgraph_node"]
        seen["user"] = runtime.context.user
        writer({"progress": 1})
        return {"log": ["n"]}

    g = StateGraph(Log, context_schema=Ctx)
    g.add_node(node)
    g.add_edge(START, "node")
    chunks = driver.stream(
        g.compile(),
        {"log": []},
        {"configurable": {"thread_id": "t1"}},
        context={"user": "ann"},
        stream_mode="custom",
    )
    assert chunks == [{"progress": 1}]
    assert seen == {"thread": "t1", "node": "node", "user": "ann"}


def test_managed_values(driver: Any) -> None:
    class S(TypedDict):
        log: Annotated[list[str], operator.add]
        remaining: Annotated[int, RemainingSteps]
        last: Annotated[bool, IsLastStep]

    def step(state: S) -> dict[str, Any]:
        return {"log": [f"{state['remaining']}:{state['last']}"]}

    g = StateGraph(S)
    g.add_sequence([("a", step), ("b", step), ("c", step)])
    g.add_edge(START, "a")
    out = driver.invoke(g.compile(), {"log": []}, {"recursion_limit": 4})
    assert out == {"log": ["3:False", "2:False", "1:True"]}


def test_subgraph_node_shares_keys_with_parent(driver: Any) -> None:
    sub = chain("s1", "s2").compile()
    g = StateGraph(Log)
    g.add_node(append("before"))
    g.add_node("sub", sub)
    g.add_edge(START, "before")
    g.add_edge("before", "sub")
    # The subgraph returns its whole state; with operator.add the parent's items come
    # back too (the same behaviour as LangGraph's).
    assert driver.invoke(g.compile(), {"log": []}) == {"log": ["before", "before", "s1", "s2"]}


def test_command_parent_from_subgraph(driver: Any) -> None:
    class Sub(TypedDict):
        log: Annotated[list[str], operator.add]

    inner = StateGraph(Sub)
    inner.add_node(
        "escape", lambda s: Command(graph=Command.PARENT, goto="after", update={"log": ["escaped"]})
    )
    inner.add_edge(START, "escape")

    g = StateGraph(Log)
    g.add_node("sub", inner.compile(), destinations=("after",))
    g.add_node(append("after"))
    g.add_edge(START, "sub")
    assert driver.invoke(g.compile(), {"log": []}) == {"log": ["escaped", "after"]}


def test_command_parent_at_root_is_an_error(driver: Any) -> None:
    g = StateGraph(Log)
    g.add_node("escape", lambda s: Command(graph=Command.PARENT, goto="x"))
    g.add_edge(START, "escape")
    with pytest.raises(InvalidNodeReturnError, match="no parent graph"):
        driver.invoke(g.compile(), {"log": []})


def test_command_as_input_updates_and_routes(driver: Any) -> None:
    app = chain("a", "b").compile()
    out = driver.invoke(app, Command(update={"log": ["cmd"]}, goto="b"))
    assert out == {"log": ["cmd", "b"]}


class Managed(TypedDict):
    log: Annotated[list[str], operator.add]
    remaining: RemainingSteps
    last: IsLastStep


def test_managed_values_in_langgraph_spelling_reach_nodes_and_branches(driver: Any) -> None:
    def step(state: Managed) -> dict[str, Any]:
        return {"log": [f"{state['remaining']}/{state['last']}"]}

    def again(state: Managed) -> str:
        return END if state["remaining"] <= 2 else "step"

    g = StateGraph(Managed)
    g.add_node(step)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", again, ["step", END])
    out = driver.invoke(g.compile(), {"log": []}, {"recursion_limit": 6})
    assert out == {"log": ["5/False", "4/False", "3/False", "2/False"]}


def test_reducer_keys_start_from_their_empty_value(driver: Any) -> None:
    class S(TypedDict):
        n: int
        log: Annotated[list[str], operator.add]

    g = StateGraph(S)
    g.add_node("inc", lambda s: {"n": s["n"] + 1})
    g.add_edge(START, "inc")
    assert driver.invoke(g.compile(), {"n": 1}) == {"n": 2, "log": []}


def test_node_metadata_reaches_config(driver: Any) -> None:
    from stepgraph.engine import get_config

    seen = {}

    def look(state: Log) -> None:
        seen.update(get_config()["metadata"])

    g = StateGraph(Log)
    g.add_node(look, metadata={"kind": "first"})
    g.add_edge(START, "look")
    driver.invoke(g.compile(), {"log": []}, {"metadata": {"run": 1}})
    assert seen["kind"] == "first" and seen["run"] == 1 and seen["langgraph_node"] == "look"


def test_error_classes_fit_langgraph_style_handlers(driver: Any) -> None:
    g = StateGraph(PState)
    g.add_node("grade", lambda s: {"score": "lots"})
    g.add_edge(START, "grade")
    with pytest.raises(ValueError):  # pydantic users catch ValueError/ValidationError
        driver.invoke(g.compile(), {"text": "hi"})
    with pytest.raises(InvalidUpdateError):  # LangGraph users catch InvalidUpdateError
        driver.invoke(g.compile(), {"text": "hi"})
    with pytest.raises(ValueError):
        driver.invoke(g.compile(), {"score": 1})

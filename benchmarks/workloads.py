"""The workloads: one ``build(api, n) -> (graph, input, config)`` each, run on both engines.

Node bodies are kept trivial so that the time measured is the engine's own overhead.
Every workload also knows how many supersteps a run takes and how to check its output,
so a fast engine that computes the wrong thing is reported, not celebrated.
"""

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from . import wide_state
from .engines import Api

Built = tuple[Any, Any, dict[str, Any]]


@dataclass(frozen=True)
class Workload:
    name: str
    summary: str
    sizes: tuple[int, ...]
    build: Callable[[Api, int], Built]
    supersteps: Callable[[int], int]
    """Supersteps per run, summed over the parent graph and every subgraph run."""
    verify: Callable[[Any, int], list[str]]
    """Differences between a run's output and the expected one; empty when it is right."""
    report_growth: bool = False
    """Print how per-superstep cost grows from the smallest to the largest ``n``."""


# --- sequential: a chain of n no-op nodes ----------------------------------------------


class MessagesState(TypedDict):
    messages: Annotated[list[Any], operator.add]


def noop(state: MessagesState) -> None:
    return None


def build_sequential(api: Api, n: int) -> Built:
    builder = api.StateGraph(MessagesState)
    previous = api.START
    for i in range(n):
        name = f"node_{i}"
        builder.add_node(name, noop)
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, api.END)
    return builder.compile(), {"messages": []}, {"recursion_limit": n + 10}


def verify_sequential(output: Any, n: int) -> list[str]:
    return [] if output == {"messages": []} else [f"output {output!r} != {{'messages': []}}"]


# --- fanout: n Sends into a looping subgraph -------------------------------------------

JOKE_BUMPS = 10
SUBGRAPH_STEPS = 3 + JOKE_BUMPS  # its START step, edit, generate, then bump x 10


class JokeInput(TypedDict):
    subject: str


class JokeOutput(TypedDict):
    jokes: list[str]


class JokeState(TypedDict):
    subject: str
    jokes: list[str]
    count: int


class FanoutState(TypedDict):
    subjects: list[str]
    jokes: Annotated[list[str], operator.add]


def edit(state: JokeState) -> dict[str, Any]:
    return {"subject": state["subject"] + "!", "count": 0}


def generate(state: JokeState) -> dict[str, Any]:
    return {"jokes": [f"joke about {state['subject']}"]}


def bump(state: JokeState) -> dict[str, Any]:
    return {"jokes": [state["jokes"][0] + " a"], "count": state["count"] + 1}


def subjects(n: int) -> list[str]:
    return [f"subject {i}" for i in range(n)]


def build_fanout(api: Api, n: int) -> Built:
    def again(state: JokeState) -> str:
        return "bump" if state["count"] < JOKE_BUMPS else api.END

    def fan_out(state: FanoutState) -> list[Any]:
        return [api.Send("generate_joke", {"subject": s}) for s in state["subjects"]]

    sub = api.StateGraph(JokeState, input_schema=JokeInput, output_schema=JokeOutput)
    sub.add_node("edit", edit)
    sub.add_node("generate", generate)
    sub.add_node("bump", bump)
    sub.add_edge(api.START, "edit")
    sub.add_edge("edit", "generate")
    sub.add_edge("generate", "bump")
    sub.add_conditional_edges("bump", again, ["bump", api.END])

    builder = api.StateGraph(FanoutState)
    builder.add_node("generate_joke", sub.compile())
    builder.add_conditional_edges(api.START, fan_out, ["generate_joke"])
    builder.add_edge("generate_joke", api.END)
    config = {"recursion_limit": SUBGRAPH_STEPS + 10}
    return builder.compile(), {"subjects": subjects(n)}, config


def verify_fanout(output: Any, n: int) -> list[str]:
    want = sorted(f"joke about {s}!" + " a" * JOKE_BUMPS for s in subjects(n))
    got = sorted(output.get("jokes", []))
    if got == want:
        return []
    return [f"{len(got)} jokes (want {n}); first {got[:1]!r} (want {want[:1]!r})"]


# --- the registry ----------------------------------------------------------------------

WORKLOADS: tuple[Workload, ...] = (
    Workload(
        name="sequential",
        summary="linear chain of n no-op nodes",
        sizes=(100, 1000, 3000),
        build=build_sequential,
        supersteps=lambda n: n + 1,
        verify=verify_sequential,
        report_growth=True,
    ),
    Workload(
        name="fanout",
        summary=f"Send x n into a {SUBGRAPH_STEPS}-step looping subgraph",
        sizes=(10, 100, 1000),
        build=build_fanout,
        supersteps=lambda n: 2 + SUBGRAPH_STEPS * n,
        verify=verify_fanout,
    ),
    Workload(
        name="wide_state",
        summary="15-key dataclass state, 12 reducers, join, loop until n messages",
        sizes=(300, 600),
        build=wide_state.build_dataclass,
        supersteps=wide_state.supersteps,
        verify=wide_state.verify,
    ),
    Workload(
        name="wide_dict",
        summary="wide_state with a TypedDict state",
        sizes=(300, 600),
        build=wide_state.build_typeddict,
        supersteps=wide_state.supersteps,
        verify=wide_state.verify,
    ),
)

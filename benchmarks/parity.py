"""Behavioural parity with LangGraph: the same small programs, run on both engines.

Run from the repository root::

    .venv/bin/python -m benchmarks.parity                 # every scenario, sync and async
    .venv/bin/python -m benchmarks.parity --only send     # scenarios whose name contains "send"
    .venv/bin/python -m benchmarks.parity --sync-only     # or --async-only
    .venv/bin/python -m benchmarks.parity --show-intentional --show-order
    .venv/bin/python -m benchmarks.parity --only overwrite --dump   # every observation
    .venv/bin/python -m benchmarks.parity --list

Each scenario is written once, as ``scenario(api) -> list[Obs]``. ``api`` holds either
LangGraph's names or stepgraph's (``StateGraph``, ``START``, ``END``, ``Send``, ``Command``,
``Overwrite``, ``get_stream_writer``, ``get_config``, ``RemainingSteps``, ``IsLastStep``,
``Runtime``, ``StreamWriter``, ``Topic``, ...), plus ``api.is_async``: the helpers
``invoke``/``stream``/``batch`` below call ``invoke``/``stream``/``batch`` or
``ainvoke``/``astream``/``abatch`` accordingly. So every scenario runs four times:
{LangGraph, stepgraph} x {sync, async}, and LangGraph-sync is compared with
stepgraph-sync, LangGraph-async with stepgraph-async.

An observation is what a user can see: an ``invoke`` result, the chunks of ``stream`` in
one stream mode (or a list of modes, or with ``subgraphs=True``), or an exception (its type
name, the builtin classes it derives from, and whether its message mentions given facts).
Before comparing, both sides are normalized for things that legitimately differ: task ids
become ``<idN>`` (N = order of first appearance), namespace parts ``node:<task id>`` become
``node:*``, timestamps and checkpoint ids are blanked, and engine objects (``Send``,
``Command``, pydantic models, dataclasses, exceptions) become plain tuples.

Differences are sorted into three kinds:

* intentional: the scenario lists the observation as a documented, deliberate difference
  (recursion limit counting, unknown returned keys, compile-time error collection, ...);
* order-only: the same chunks in another order (tasks of one superstep finish in any
  order, so LangGraph's own order is not a contract);
* real: everything else. These are printed, and counted in the summary line
  ``N scenarios, K differ``.

This is a report, not a test: the exit status is 0 unless ``--strict`` is given.
"""

import argparse
import asyncio
import dataclasses
import difflib
import logging
import operator
import pprint
import re
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel

# -- the two engines ----------------------------------------------------------------


def load_api(engine: str, is_async: bool) -> SimpleNamespace:
    """The names a scenario may use, from LangGraph or from stepgraph."""
    if engine == "langgraph":
        from langgraph.channels import (
            BinaryOperatorAggregate,
            EphemeralValue,
            LastValue,
            Topic,
        )
        from langgraph.config import get_config, get_stream_writer
        from langgraph.graph import END, START, StateGraph
        from langgraph.managed import IsLastStep, RemainingSteps
        from langgraph.runtime import Runtime
        from langgraph.types import Command, Overwrite, Send, StreamWriter
    else:
        from stepgraph.channels import (  # type: ignore[assignment]
            BinaryOperatorAggregate,
            EphemeralValue,
            LastValue,
            Topic,
        )
        from stepgraph.engine import (  # type: ignore[assignment]
            END,
            START,
            Command,
            IsLastStep,
            Overwrite,
            RemainingSteps,
            Runtime,
            Send,
            StateGraph,
            StreamWriter,
            get_config,
            get_stream_writer,
        )
    return SimpleNamespace(
        engine=engine,
        is_async=is_async,
        StateGraph=StateGraph,
        START=START,
        END=END,
        Send=Send,
        Command=Command,
        Overwrite=Overwrite,
        get_stream_writer=get_stream_writer,
        get_config=get_config,
        RemainingSteps=RemainingSteps,
        IsLastStep=IsLastStep,
        Runtime=Runtime,
        StreamWriter=StreamWriter,
        Topic=Topic,
        LastValue=LastValue,
        EphemeralValue=EphemeralValue,
        BinaryOperatorAggregate=BinaryOperatorAggregate,
    )


# -- observations ---------------------------------------------------------------------


@dataclass
class Obs:
    """One observable outcome. ``note`` is shown with a difference but never compared."""

    label: str
    value: Any
    note: str = ""


_BUILTIN_BASES = (
    ValueError,
    TypeError,
    KeyError,
    RuntimeError,
    RecursionError,
    ExceptionGroup,
)


def describe_error(exc: BaseException, facts: Sequence[str] = ()) -> dict[str, Any]:
    """What a caller can rely on: type name, builtin bases, which facts the message names."""
    text = _full_message(exc).lower()
    return {
        "raised": type(exc).__name__,
        "is": [b.__name__ for b in _BUILTIN_BASES if isinstance(exc, b)],
        "mentions": {f: f.lower() in text for f in facts},
    }


def _full_message(exc: BaseException) -> str:
    parts = [str(exc), *getattr(exc, "__notes__", ())]
    if isinstance(exc, BaseExceptionGroup):
        parts += [_full_message(e) for e in exc.exceptions]
    return "\n".join(parts)


def _run_coro(make: Callable[[], Any]) -> Any:
    return asyncio.run(make())


def invoke(api: SimpleNamespace, graph: Any, inp: Any, config: Any = None, **kw: Any) -> Any:
    """``graph.invoke`` or ``graph.ainvoke``, as the api's mode says."""
    if api.is_async:
        return _run_coro(lambda: graph.ainvoke(inp, config, **kw))
    return graph.invoke(inp, config, **kw)


def stream(
    api: SimpleNamespace,
    graph: Any,
    inp: Any,
    config: Any = None,
    sink: list[Any] | None = None,
    **kw: Any,
) -> list[Any]:
    """All chunks of ``graph.stream`` or ``graph.astream``; they land in ``sink`` as they come."""
    out = [] if sink is None else sink
    if api.is_async:

        async def collect() -> None:
            async for chunk in graph.astream(inp, config, **kw):
                out.append(chunk)

        _run_coro(collect)
    else:
        out.extend(graph.stream(inp, config, **kw))
    return out


def batch(
    api: SimpleNamespace, graph: Any, inputs: list[Any], config: Any = None, **kw: Any
) -> Any:
    if api.is_async:
        return _run_coro(lambda: graph.abatch(inputs, config, **kw))
    return graph.batch(inputs, config, **kw)


def obs_invoke(
    api: SimpleNamespace,
    label: str,
    graph: Any,
    inp: Any,
    config: Any = None,
    facts: Sequence[str] = (),
    **kw: Any,
) -> Obs:
    """Observe ``invoke``: its result, or the error it raised."""
    try:
        return Obs(label, {"result": invoke(api, graph, inp, config, **kw)})
    except Exception as exc:  # every failure is an observation
        return Obs(label, describe_error(exc, facts), _full_message(exc))


def obs_stream(
    api: SimpleNamespace,
    label: str,
    graph: Any,
    inp: Any,
    config: Any = None,
    facts: Sequence[str] = (),
    **kw: Any,
) -> Obs:
    """Observe ``stream``: the chunks, and the error if one ended the stream."""
    chunks: list[Any] = []
    try:
        stream(api, graph, inp, config, sink=chunks, **kw)
    except Exception as exc:
        return Obs(label, {"chunks": chunks, **describe_error(exc, facts)}, _full_message(exc))
    return Obs(label, {"chunks": chunks})


def obs_call(label: str, fn: Callable[[], Any], facts: Sequence[str] = ()) -> Obs:
    """Observe any call (building, compiling, batch)."""
    try:
        return Obs(label, {"result": fn()})
    except Exception as exc:
        return Obs(label, describe_error(exc, facts), _full_message(exc))


STANDARD_MODES: tuple[Any, ...] = (
    None,  # the graph's default stream mode ("updates" for a compiled StateGraph)
    "values",
    "updates",
    "tasks",
    "debug",
    "custom",
    ("values", "updates", "custom"),
)


def standard(
    api: SimpleNamespace,
    graph: Any,
    inp: Any,
    config: Any = None,
    *,
    tag: str = "",
    modes: Sequence[Any] = STANDARD_MODES,
    **kw: Any,
) -> list[Obs]:
    """``invoke`` plus ``stream`` in each of ``modes``."""
    pre = f"{tag} " if tag else ""
    out = [obs_invoke(api, f"{pre}invoke", graph, inp, config, **kw)]
    for mode in modes:
        extra = dict(kw)
        if mode is not None:
            extra["stream_mode"] = list(mode) if isinstance(mode, tuple) else mode
        name = "default" if mode is None else (list(mode) if isinstance(mode, tuple) else mode)
        out.append(obs_stream(api, f"{pre}stream {name}", graph, inp, config, **extra))
    return out


def subgraph_streams(
    api: SimpleNamespace, graph: Any, inp: Any, config: Any = None, *, tag: str = ""
) -> list[Obs]:
    """``stream(..., subgraphs=True)`` in the modes whose shapes matter."""
    pre = f"{tag} " if tag else ""
    modes: list[Any] = ["values", "updates", "custom", "tasks", ["values", "updates", "custom"]]
    return [
        obs_stream(
            api, f"{pre}subgraphs stream {m}", graph, inp, config, stream_mode=m, subgraphs=True
        )
        for m in modes
    ]


# -- normalization --------------------------------------------------------------------

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_NS_PART = re.compile(r"([^\s|:'\"(),]+):" + _UUID)
_BARE_ID = re.compile(_UUID)
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")
_BLANK_KEYS = {"timestamp": "<ts>", "checkpoint_id": "<checkpoint>", "run_id": "<run>"}


class Normalizer:
    """Turns one engine's observations into plain, comparable data."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def text(self, s: str) -> str:
        s = _NS_PART.sub(lambda m: f"{m.group(1)}:*", s)
        s = _BARE_ID.sub(self._id, s)
        return _ADDRESS.sub(" at 0x?", s)

    def _id(self, m: re.Match[str]) -> str:
        return f"<id{self.ids.setdefault(m.group(0), len(self.ids))}>"

    def __call__(self, v: Any) -> Any:
        if isinstance(v, str):
            return self.text(v)
        if v is None or isinstance(v, bool | int | float):
            return v
        if isinstance(v, dict):
            return {
                self(k): (_BLANK_KEYS[k] if k in _BLANK_KEYS else self(x)) for k, x in v.items()
            }
        if isinstance(v, list):
            return [self(x) for x in v]
        if isinstance(v, tuple) and not hasattr(v, "_fields"):
            return tuple(self(x) for x in v)
        if isinstance(v, set | frozenset):
            return ("set", sorted((self(x) for x in v), key=repr))
        if isinstance(v, BaseException):
            return ("exception", type(v).__name__)
        if type(v).__name__ == "Send":
            return ("Send", self(v.node), self(v.arg))
        if type(v).__name__ == "Overwrite":
            return ("Overwrite", self(v.value))
        if isinstance(v, BaseModel):
            return ("pydantic", type(v).__name__, self(dict(v)))
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            fields = {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
            return (_kind(v), type(v).__name__, self(fields))
        if hasattr(v, "_fields"):  # named tuples
            return ("namedtuple", type(v).__name__, self(dict(zip(v._fields, v))))
        if isinstance(v, type):
            return ("class", v.__name__)
        return ("object", type(v).__name__, self.text(repr(v)))


def _kind(v: Any) -> str:
    module = type(v).__module__ or ""
    return "engine-object" if module.startswith(("langgraph", "stepgraph")) else "dataclass"


def normalize(observations: list[Obs]) -> list[Obs]:
    norm = Normalizer()
    return [Obs(o.label, norm(o.value), o.note) for o in observations]


# -- scenarios ------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    fn: Callable[[SimpleNamespace], list[Obs]]
    doc: str
    # observation label (or "*") -> why this difference is deliberate. A reason that
    # starts with "?" marks a difference that looks deliberate but is not documented.
    intentional: dict[str, str] = field(default_factory=dict)


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    intentional: dict[str, str] | None = None,
) -> Callable[[Callable[[SimpleNamespace], list[Obs]]], Callable[[SimpleNamespace], list[Obs]]]:
    def register(fn: Callable[[SimpleNamespace], list[Obs]]) -> Callable[..., list[Obs]]:
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        SCENARIOS[fn.__name__] = Scenario(fn.__name__, fn, doc, dict(intentional or {}))
        return fn

    return register


def _appender(name: str, key: str = "log") -> Callable[[Any], dict[str, Any]]:
    def node(state: Any) -> dict[str, Any]:
        return {key: [name]}

    node.__name__ = name
    return node


class LogState(TypedDict):
    log: Annotated[list[str], operator.add]


class CountState(TypedDict):
    log: Annotated[list[str], operator.add]
    n: int


# 1. plain edges ---------------------------------------------------------------------


@scenario()
def sequential_chain(api: SimpleNamespace) -> list[Obs]:
    """START -> a -> b -> c -> END, a reducer key and a LastValue key; also add_sequence."""

    def a(s: CountState) -> dict[str, Any]:
        return {"log": ["a"], "n": s["n"] + 1}

    def b(s: CountState) -> dict[str, Any]:
        return {"log": [f"b{s['n']}"], "n": s["n"] * 10}

    def c(s: CountState) -> dict[str, Any]:
        return {"log": ["c"]}

    g = api.StateGraph(CountState)
    g.add_node("a", a).add_node("b", b).add_node("c", c)
    g.add_edge(api.START, "a").add_edge("a", "b").add_edge("b", "c").add_edge("c", api.END)
    out = standard(api, g.compile(), {"log": [], "n": 1})
    seq = api.StateGraph(CountState)
    seq.add_sequence([a, b, ("last", c)])
    seq.add_edge(api.START, "a")
    out.append(obs_invoke(api, "add_sequence invoke", seq.compile(), {"log": ["x"], "n": 2}))
    # Keys missing from the input: a reducer key vs a plain key.
    out.append(
        obs_stream(api, "input without log, values", g.compile(), {"n": 1}, stream_mode="values")
    )
    out.append(obs_invoke(api, "input without n", seq.compile(), {"log": []}, facts=("n",)))
    only_n = api.StateGraph(CountState)
    only_n.add_node("bump", lambda s: {"n": s["n"] + 1}).add_edge(api.START, "bump")
    out.append(obs_invoke(api, "reducer key never written", only_n.compile(), {"n": 1}))
    out.append(
        obs_stream(
            api, "add_sequence updates", seq.compile(), {"log": [], "n": 2}, stream_mode="updates"
        )
    )
    return out


@scenario()
def parallel_fanout_reducer(api: SimpleNamespace) -> list[Obs]:
    """START -> (a, b) -> c: parallel writes folded by operator.add; c runs once."""
    g = api.StateGraph(LogState)
    for n in ("a", "b", "c"):
        g.add_node(n, _appender(n))
    g.add_edge(api.START, "a").add_edge(api.START, "b")
    g.add_edge("a", "c").add_edge("b", "c").add_edge("c", api.END)
    return standard(api, g.compile(), {"log": ["in"]})


@scenario()
def join_edges(api: SimpleNamespace) -> list[Obs]:
    """add_edge(["a", "b2"], "c"): c waits for branches of different lengths."""
    g = api.StateGraph(LogState)
    for n in ("a", "b1", "b2", "c"):
        g.add_node(n, _appender(n))
    g.add_edge(api.START, "a").add_edge(api.START, "b1").add_edge("b1", "b2")
    g.add_edge(["a", "b2"], "c").add_edge("c", api.END)
    return standard(api, g.compile(), {"log": []}, modes=(None, "values", "tasks"))


@scenario()
def deferred_node(api: SimpleNamespace) -> list[Obs]:
    """defer=True: the node fed by uneven branches runs once, when the run would end."""

    def d(s: LogState) -> dict[str, Any]:
        return {"log": [f"d saw {len(s['log'])}"]}

    out = []
    for defer in (True, False):
        g = api.StateGraph(LogState)
        for n in ("a", "b", "b2"):
            g.add_node(n, _appender(n))
        g.add_node("d", d, defer=defer)
        g.add_edge(api.START, "a").add_edge(api.START, "b").add_edge("b", "b2")
        g.add_edge("a", "d").add_edge("b2", "d")
        graph = g.compile()
        out += standard(api, graph, {"log": []}, tag=f"defer={defer}", modes=("updates", "tasks"))
    # A deferred join.
    g = api.StateGraph(LogState)
    for n in ("a", "b", "b2", "b3"):
        g.add_node(n, _appender(n))
    g.add_node("j", d, defer=True)
    g.add_edge(api.START, "a").add_edge(api.START, "b").add_edge("b", "b2").add_edge("b2", "b3")
    g.add_edge(["a", "b2"], "j")
    out.append(
        obs_stream(api, "deferred join updates", g.compile(), {"log": []}, stream_mode="updates")
    )
    return out


# 2. conditional edges ---------------------------------------------------------------


def _router_graph(api: SimpleNamespace, route: Any, path_map: Any, ends: Sequence[str]) -> Any:
    g = api.StateGraph(CountState)
    g.add_node("start_node", _appender("start_node"))
    for n in ends:
        g.add_node(n, _appender(n))
        g.add_edge(n, api.END)
    g.add_edge(api.START, "start_node")
    if path_map is None:
        g.add_conditional_edges("start_node", route)
    else:
        g.add_conditional_edges("start_node", route, path_map)
    return g.compile()


@scenario()
def conditional_path_map_dict(api: SimpleNamespace) -> list[Obs]:
    """path_map as a dict: the router's labels map to node names."""

    def route(s: CountState) -> str:
        return "hi" if s["n"] > 0 else "lo"

    graph = _router_graph(api, route, {"hi": "high", "lo": "low"}, ("high", "low"))
    out = standard(api, graph, {"log": [], "n": 1}, tag="n=1", modes=("updates", "tasks"))
    out += standard(api, graph, {"log": [], "n": 0}, tag="n=0", modes=("updates",))
    return out


@scenario()
def conditional_path_map_list(api: SimpleNamespace) -> list[Obs]:
    """path_map as a list of node names; a label outside it is an error."""

    def route(s: CountState) -> str:
        return ["x", "y", "nowhere"][s["n"]]

    graph = _router_graph(api, route, ["x", "y"], ("x", "y"))
    out = standard(api, graph, {"log": [], "n": 1}, modes=("updates",))
    out.append(
        obs_invoke(api, "label outside path_map", graph, {"log": [], "n": 2}, facts=("nowhere",))
    )
    return out


@scenario()
def conditional_literal(api: SimpleNamespace) -> list[Obs]:
    """No path_map: destinations come from a Literal[...] return annotation."""

    def route(s: CountState) -> Literal["x", "y"]:
        return "x" if s["n"] else "y"

    graph = _router_graph(api, route, None, ("x", "y"))
    return standard(api, graph, {"log": [], "n": 0}, modes=("updates", "tasks"))


@scenario()
def conditional_returns_list(api: SimpleNamespace) -> list[Obs]:
    """The router returns a list of nodes: they run in parallel, then both feed z."""

    def route(s: CountState) -> list[str]:
        return ["x", "y"] if s["n"] else [api.END]

    g = api.StateGraph(CountState)
    for n in ("start_node", "x", "y", "z"):
        g.add_node(n, _appender(n))
    g.add_edge(api.START, "start_node")
    g.add_conditional_edges("start_node", route, ["x", "y", api.END])
    g.add_edge("x", "z").add_edge("y", "z")
    graph = g.compile()
    out = standard(api, graph, {"log": [], "n": 1}, modes=("values", "updates", "tasks"))
    out.append(obs_invoke(api, "[END] invoke", graph, {"log": [], "n": 0}))
    return out


@scenario()
def conditional_loop_to_end(api: SimpleNamespace) -> list[Obs]:
    """A loop whose router returns END; the router sees the node's own fresh write."""
    seen: list[int] = []

    def inc(s: CountState) -> dict[str, Any]:
        return {"n": s["n"] + 1, "log": [f"inc{s['n']}"]}

    def again(s: CountState) -> str:
        seen.append(s["n"])
        return api.END if s["n"] >= 3 else "inc"

    g = api.StateGraph(CountState)
    g.add_node("inc", inc)
    g.add_edge(api.START, "inc")
    g.add_conditional_edges("inc", again)
    out = standard(api, g.compile(), {"log": [], "n": 0}, modes=("values", "updates", "debug"))
    seen.clear()
    invoke(api, g.compile(), {"log": [], "n": 0})
    out.append(Obs("router saw", list(seen)))
    return out


@scenario()
def conditional_entry_point(api: SimpleNamespace) -> list[Obs]:
    """set_conditional_entry_point / a branch from START, with a router taking config."""

    def route(s: CountState, config) -> str:  # type: ignore[no-untyped-def]
        return "x" if config["configurable"].get("pick") == "x" else "y"

    g = api.StateGraph(CountState)
    g.add_node("x", _appender("x")).add_node("y", _appender("y"))
    g.set_conditional_entry_point(route, {"x": "x", "y": "y"})
    graph = g.compile()
    return [
        obs_invoke(api, "pick x", graph, {"log": [], "n": 0}, {"configurable": {"pick": "x"}}),
        obs_stream(api, "pick y updates", graph, {"log": [], "n": 0}, stream_mode="updates"),
    ]


# 3. Send --------------------------------------------------------------------------


class MapState(TypedDict):
    items: list[int]
    results: Annotated[list[int], operator.add]
    total: int


@scenario()
def send_map_reduce(api: SimpleNamespace) -> list[Obs]:
    """A router returns Sends: one task per item, then a reducer node runs once."""

    def fan(s: MapState) -> list[Any]:
        return [api.Send("square", {"x": x}) for x in s["items"]]

    def square(p: dict[str, int]) -> dict[str, Any]:
        return {"results": [p["x"] ** 2]}

    def add_up(s: MapState) -> dict[str, Any]:
        return {"total": sum(s["results"])}

    g = api.StateGraph(MapState)
    g.add_node("square", square).add_node("add_up", add_up)
    g.add_conditional_edges(api.START, fan, ["square"])
    g.add_edge("square", "add_up").add_edge("add_up", api.END)
    out = standard(api, g.compile(), {"items": [1, 2, 3], "results": []})
    out.append(obs_invoke(api, "no items", g.compile(), {"items": [], "results": []}))
    return out


@scenario()
def send_to_subgraph(api: SimpleNamespace) -> list[Obs]:
    """Send to a compiled subgraph that has input and output schemas (map-reduce of jokes)."""

    class SubIn(TypedDict):
        subject: str

    class SubOut(TypedDict):
        jokes: list[str]

    class SubState(TypedDict):
        subject: str
        draft: str
        jokes: list[str]

    class Parent(TypedDict):
        subjects: list[str]
        jokes: Annotated[list[str], operator.add]

    def draft(s: SubState) -> dict[str, Any]:
        api.get_stream_writer()({"drafting": s["subject"]})
        return {"draft": f"{s['subject']}?"}

    def finish(s: SubState) -> dict[str, Any]:
        return {"jokes": [s["draft"] + "!"]}

    sub = api.StateGraph(SubState, input_schema=SubIn, output_schema=SubOut)
    sub.add_node("write_draft", draft).add_node("finish", finish)
    sub.add_edge(api.START, "write_draft").add_edge("write_draft", "finish")

    def fan(s: Parent) -> list[Any]:
        return [api.Send("joke", {"subject": x}) for x in s["subjects"]]

    g = api.StateGraph(Parent)
    g.add_node("joke", sub.compile())
    g.add_conditional_edges(api.START, fan, ["joke"])
    graph = g.compile()
    inp = {"subjects": ["cats", "dogs"], "jokes": []}
    return [*standard(api, graph, inp), *subgraph_streams(api, graph, inp)]


@scenario(
    intentional={
        "list of Sends updates": "? stepgraph raises InvalidNodeReturnError where LangGraph raises "
        "InvalidUpdateError (see invalid_return)",
    }
)
def send_from_node(api: SimpleNamespace) -> list[Obs]:
    """A node returns one Send (allowed); a list of Sends (an error); Send to END (an error)."""

    def one(s: LogState) -> Any:
        return api.Send("w", {"log": ["sent"]})

    def many(s: LogState) -> Any:
        return [api.Send("w", {"log": ["1"]}), api.Send("w", {"log": ["2"]})]

    def to_end(s: LogState) -> list[Any]:
        return [api.Send(api.END, {"log": []})]

    out = []
    for name, fn in (("one Send", one), ("list of Sends", many)):
        g = api.StateGraph(LogState)
        g.add_node("src", fn).add_node("w", _appender("w"))
        g.add_edge(api.START, "src")
        out.append(
            obs_stream(
                api,
                f"{name} updates",
                g.compile(),
                {"log": []},
                stream_mode="updates",
                facts=("Send",),
            )
        )
    g = api.StateGraph(LogState)
    g.add_node("src", _appender("src")).add_node("w", _appender("w"))
    g.add_edge(api.START, "src").add_conditional_edges("src", to_end, ["w"])
    out.append(obs_invoke(api, "Send to END", g.compile(), {"log": []}, facts=("END",)))
    return out


# 4. Command -----------------------------------------------------------------------


@scenario(
    intentional={
        "goto unknown node": "? stepgraph raises on a goto to a node that does not exist; "
        "LangGraph logs a warning and drops it (like unknown keys, §10.8)",
    }
)
def command_goto(api: SimpleNamespace) -> list[Obs]:
    """A node returns Command(update, goto): a name, a list, Sends, END; Command as input."""

    def a(s: CountState) -> Any:
        goto: Any = {0: "b", 1: ["b", "c"], 2: [api.Send("c", {"log": ["p"], "n": 7})], 3: api.END}[
            s["n"]
        ]
        return api.Command(update={"log": ["a"]}, goto=goto)

    g = api.StateGraph(CountState)
    g.add_node("a", a, destinations=("b", "c"))
    g.add_node("b", _appender("b")).add_node("c", _appender("c"))
    g.add_edge(api.START, "a")
    graph = g.compile()
    out = []
    for n in range(4):
        out.append(
            obs_stream(api, f"n={n} updates", graph, {"log": [], "n": n}, stream_mode="updates")
        )
        out.append(obs_invoke(api, f"n={n} invoke", graph, {"log": [], "n": n}))
    out.append(
        obs_stream(
            api,
            "Command input updates",
            graph,
            api.Command(update={"log": ["cmd"], "n": 0}, goto="c"),
            stream_mode=["updates", "values"],
        )
    )
    out.append(
        obs_invoke(
            api,
            "Command input, goto unknown node",
            g.compile(),
            api.Command(update={"log": [], "n": 0}, goto="zzz"),
            facts=("zzz",),
        )
    )
    bad = api.StateGraph(CountState)
    bad.add_node("a", lambda s: api.Command(goto="zzz")).add_edge(api.START, "a")
    out.append(
        obs_invoke(
            api, "node goto unknown node", bad.compile(), {"log": [], "n": 0}, facts=("zzz",)
        )
    )
    return out


@scenario()
def command_literal_annotation(api: SimpleNamespace) -> list[Obs]:
    """A node annotated ``-> Command[Literal["b", "c"]]`` with no outgoing edges."""

    def build() -> Any:
        def a(s: CountState) -> api.Command[Literal["b", "c"]]:
            return api.Command(update={"log": ["a"]}, goto="b" if s["n"] else "c")

        g = api.StateGraph(CountState)
        g.add_node("a", a).add_node("b", _appender("b")).add_node("c", _appender("c"))
        g.add_edge(api.START, "a")
        return g.compile()

    # If the annotation itself fails, the scenario raises and that is the observation.
    return standard(api, build(), {"log": [], "n": 1}, modes=("updates", "tasks"))


@scenario(
    intentional={
        "PARENT at the root": "? LangGraph leaks its internal ParentCommand; stepgraph raises "
        "InvalidNodeReturnError saying there is no parent graph",
    }
)
def command_parent(api: SimpleNamespace) -> list[Obs]:
    """Command(graph=Command.PARENT, goto=..., update=...) from inside a subgraph."""

    def inner(s: LogState) -> Any:
        return api.Command(graph=api.Command.PARENT, goto="after", update={"log": ["inner"]})

    sub = api.StateGraph(LogState)
    sub.add_node("inner", inner).add_node("unreached", _appender("unreached"))
    sub.add_edge(api.START, "inner").add_edge("inner", "unreached")
    g = api.StateGraph(LogState)
    g.add_node("sub", sub.compile()).add_node("after", _appender("after"))
    g.add_edge(api.START, "sub")
    graph = g.compile()
    out = standard(api, graph, {"log": ["in"]}, modes=("values", "updates", "tasks"))
    out += subgraph_streams(api, graph, {"log": ["in"]})
    root = api.StateGraph(LogState)
    root.add_node("inner", inner).add_node("after", _appender("after"))
    root.add_edge(api.START, "inner")
    out.append(
        obs_invoke(api, "PARENT at the root", root.compile(), {"log": []}, facts=("parent",))
    )
    return out


@scenario()
def same_key_twice(api: SimpleNamespace) -> list[Obs]:
    """A node writes one key twice: a list of Commands, a dict plus a Command, tuple pairs."""

    class S(TypedDict):
        log: Annotated[list[str], operator.add]
        x: int

    def cmds(s: S) -> Any:
        return [api.Command(update={"log": ["a1"]}), api.Command(update={"log": ["a2"]})]

    def mixed(s: S) -> Any:
        return [{"log": ["d"]}, api.Command(update={"log": ["e"]}, goto="tail")]

    def pairs(s: S) -> Any:
        return api.Command(update=[("log", ["p"]), ("log", ["q"]), ("x", 5)])

    def last_value_twice(s: S) -> Any:
        return [api.Command(update={"x": 1}), api.Command(update={"x": 2})]

    out = []
    for fn in (cmds, mixed, pairs, last_value_twice):
        g = api.StateGraph(S)
        g.add_node("node", fn).add_node("tail", _appender("tail"))
        g.add_edge(api.START, "node")
        graph = g.compile()
        out.append(
            obs_stream(
                api,
                f"{fn.__name__} updates",
                graph,
                {"log": [], "x": 0},
                stream_mode="updates",
                facts=("x",),
            )
        )
        out.append(
            obs_invoke(api, f"{fn.__name__} invoke", graph, {"log": [], "x": 0}, facts=("x",))
        )
        out.append(
            obs_stream(api, f"{fn.__name__} tasks", graph, {"log": [], "x": 0}, stream_mode="tasks")
        )
    return out


# 5. subgraphs -----------------------------------------------------------------------


@scenario()
def subgraph_shared_keys(api: SimpleNamespace) -> list[Obs]:
    """A compiled subgraph as a node over the parent's keys (the reducer duplication case)."""

    class S(TypedDict):
        x: int
        log: Annotated[list[str], operator.add]

    def s1(s: S) -> dict[str, Any]:
        api.get_stream_writer()({"in": "s1", "x": s["x"]})
        return {"x": s["x"] + 1, "log": ["s1"]}

    def p(name: str) -> Callable[[S], dict[str, Any]]:
        def node(s: S) -> dict[str, Any]:
            api.get_stream_writer()(name)
            return {"log": [name], "x": s["x"] * 10}

        return node

    sub = api.StateGraph(S)
    sub.add_node("s1", s1).add_node("s2", p("s2"))
    sub.add_edge(api.START, "s1").add_edge("s1", "s2")
    g = api.StateGraph(S)
    g.add_node("p1", p("p1")).add_node("sub", sub.compile()).add_node("p2", p("p2"))
    g.add_edge(api.START, "p1").add_edge("p1", "sub").add_edge("sub", "p2")
    graph = g.compile()
    inp = {"x": 1, "log": ["in"]}
    return [*standard(api, graph, inp), *subgraph_streams(api, graph, inp)]


@scenario()
def subgraph_nested_and_called(api: SimpleNamespace) -> list[Obs]:
    """Two levels of subgraph nodes, and a subgraph invoked from inside a node function."""

    class S(TypedDict):
        log: Annotated[list[str], operator.add]

    def leaf(s: S) -> dict[str, Any]:
        api.get_stream_writer()("leaf")
        return {"log": ["leaf"]}

    inner = api.StateGraph(S)
    inner.add_node("leaf", leaf).add_edge(api.START, "leaf")
    inner_c = inner.compile()
    mid = api.StateGraph(S)
    mid.add_node("inner", inner_c).add_edge(api.START, "inner")
    g = api.StateGraph(S)
    g.add_node("mid", mid.compile()).add_edge(api.START, "mid")
    graph = g.compile()
    out = subgraph_streams(api, graph, {"log": []}, tag="nested")

    def caller(s: S) -> dict[str, Any]:
        result = inner_c.invoke({"log": ["called"]})
        return {"log": [f"got {result['log']}"]}

    h = api.StateGraph(S)
    h.add_node("caller", caller).add_edge(api.START, "caller")
    out += subgraph_streams(api, h.compile(), {"log": []}, tag="called")
    out.append(obs_invoke(api, "called invoke", h.compile(), {"log": []}))
    return out


# 6. schemas -------------------------------------------------------------------------


@scenario(
    intentional={
        "extra input key": "? stepgraph rejects input keys outside the input schema; LangGraph "
        "drops them silently (not listed in the semantics doc)",
    }
)
def input_output_schemas(api: SimpleNamespace) -> list[Obs]:
    """input_schema / output_schema: what a run accepts and what it returns and streams."""

    class In(TypedDict):
        question: str

    class Out(TypedDict):
        answer: str

    class S(TypedDict):
        question: str
        notes: str
        answer: str

    def think(s: S) -> dict[str, Any]:
        return {"notes": s["question"].upper()}

    def answer(s: S) -> dict[str, Any]:
        return {"answer": s["notes"] + "!"}

    g = api.StateGraph(S, input_schema=In, output_schema=Out)
    g.add_node("think", think).add_node("respond", answer)
    g.add_edge(api.START, "think").add_edge("think", "respond")
    graph = g.compile()
    out = standard(api, graph, {"question": "why"}, modes=("values", "updates", "tasks"))
    out.append(
        obs_invoke(
            api, "invoke stream_mode=updates", graph, {"question": "why"}, stream_mode="updates"
        )
    )
    out.append(
        obs_invoke(
            api, "invoke stream_mode=[values]", graph, {"question": "why"}, stream_mode=["values"]
        )
    )
    out.append(obs_invoke(api, "extra input key", graph, {"question": "q", "notes": "n"}))
    return out


@scenario()
def private_state(api: SimpleNamespace) -> list[Obs]:
    """Private channels declared only by a node's input annotation (LangGraph docs pattern)."""

    class Overall(TypedDict):
        a: str

    class Private(TypedDict):
        secret: str

    def n1(state: Overall) -> Private:
        return {"secret": state["a"] + "!"}

    def n2(state: Private) -> Overall:
        return {"a": state["secret"] + "?" + ",".join(sorted(state))}

    g = api.StateGraph(Overall)
    g.add_node("n1", n1).add_node("n2", n2)
    g.add_edge(api.START, "n1").add_edge("n1", "n2")
    out = standard(api, g.compile(), {"a": "x"}, modes=("values", "updates", "tasks"))

    class Explicit(TypedDict):
        a: str
        hidden: int

    def n3(state: Any) -> dict[str, Any]:
        return {"a": f"{sorted(state)}"}

    g2 = api.StateGraph(Overall)
    g2.add_node("n3", n3, input_schema=Explicit).add_edge(api.START, "n3")
    out.append(obs_invoke(api, "add_node(input_schema=...) reads", g2.compile(), {"a": "x"}))
    return out


@scenario()
def pydantic_state(api: SimpleNamespace) -> list[Obs]:
    """A pydantic BaseModel state with defaults and a reducer; nodes get model instances."""

    class S(BaseModel):
        name: str
        count: int = 0
        tags: Annotated[list[str], operator.add] = []

    def a(s: S) -> dict[str, Any]:
        return {"count": s.count + 1, "tags": [f"{type(s).__name__}:{s.name}:{s.count}"]}

    def b(s: S) -> Any:
        return {"count": s.count * 10}

    g = api.StateGraph(S)
    g.add_node("a", a).add_node("b", b)
    g.add_edge(api.START, "a").add_edge("a", "b")
    graph = g.compile()
    out = standard(api, graph, {"name": "x"}, modes=("values", "updates", "tasks"))
    out.append(obs_invoke(api, "model instance input", graph, S(name="y", count=5)))
    out.append(
        obs_invoke(api, "invalid input", graph, {"name": "x", "count": "many"}, facts=("count",))
    )

    def bad(s: S) -> dict[str, Any]:
        return {"count": "lots"}

    g2 = api.StateGraph(S)
    g2.add_node("bad", bad).add_node("after", a)
    g2.add_edge(api.START, "bad").add_edge("bad", "after")
    out.append(
        obs_stream(
            api,
            "invalid node write",
            g2.compile(),
            {"name": "x"},
            stream_mode="updates",
            facts=("count",),
        )
    )
    return out


@scenario()
def dataclass_state(api: SimpleNamespace) -> list[Obs]:
    """A dataclass state with defaults: missing input keys, node input type, output."""

    @dataclass
    class S:
        name: str
        count: int = 0
        log: Annotated[list[str], operator.add] = field(default_factory=list)

    def a(s: S) -> dict[str, Any]:
        return {"log": [f"{type(s).__name__}:{s.name}:{s.count}:{s.log}"]}

    def b(s: S) -> Any:
        return {"count": s.count + 1}

    g = api.StateGraph(S)
    g.add_node("a", a).add_node("b", b)
    g.add_edge(api.START, "a").add_edge("a", "b")
    graph = g.compile()
    out = standard(api, graph, {"name": "x"}, modes=("values", "updates", "tasks"))
    out.append(obs_invoke(api, "instance input", graph, S(name="y", count=3)))
    return out


# 7. channels ------------------------------------------------------------------------


@scenario()
def overwrite(api: SimpleNamespace) -> list[Obs]:
    """Overwrite(...) and its raw dict form bypass a reducer; two in one step are an error."""

    class S(TypedDict):
        items: Annotated[list[int], operator.add]

    def w(update: Any) -> Callable[[S], dict[str, Any]]:
        return lambda s: {"items": update}

    g = api.StateGraph(S)
    g.add_node("a", w([1])).add_node("b", w(api.Overwrite([9])))
    g.add_node("c", w([2])).add_node("d", w({"__overwrite__": [5]}))
    g.add_edge(api.START, "a").add_edge("a", "b").add_edge("b", "c").add_edge("c", "d")
    out = standard(api, g.compile(), {"items": [0]}, modes=("values", "updates"))
    g2 = api.StateGraph(S)
    g2.add_node("x", w(api.Overwrite([1]))).add_node("y", w(api.Overwrite([2])))
    g2.add_edge(api.START, "x").add_edge(api.START, "y")
    out.append(
        obs_invoke(
            api,
            "two Overwrites in one step",
            g2.compile(),
            {"items": []},
            facts=("items", "overwrite"),
        )
    )
    g3 = api.StateGraph(S)
    g3.add_node("x", w(api.Overwrite([1]))).add_node("y", w([2]))
    g3.add_edge(api.START, "x").add_edge(api.START, "y")
    out.append(obs_invoke(api, "Overwrite and an append in one step", g3.compile(), {"items": []}))
    return out


@scenario()
def topic_channel(api: SimpleNamespace) -> list[Obs]:
    """Topic channels, accumulating and per-step, written by parallel nodes."""

    class S(TypedDict):
        events: Annotated[list[str], api.Topic(str, accumulate=True)]
        recent: Annotated[list[str], api.Topic(str)]
        log: Annotated[list[str], operator.add]

    def emit(name: str) -> Callable[[S], dict[str, Any]]:
        def node(s: S) -> dict[str, Any]:
            return {
                "events": [name, name + "'"],
                "recent": name,
                "log": [f"{name} saw {s.get('recent')}"],
            }

        return node

    def quiet(s: S) -> dict[str, Any]:
        return {"log": [f"quiet saw {s.get('recent')} {s.get('events')}"]}

    g = api.StateGraph(S)
    g.add_node("a", emit("a")).add_node("b", emit("b")).add_node("c", emit("c"))
    g.add_node("quiet", quiet)
    g.add_edge(api.START, "a").add_edge(api.START, "b").add_edge("a", "c").add_edge("b", "c")
    g.add_edge("c", "quiet")
    return standard(api, g.compile(), {"events": ["in"], "log": []}, modes=("values", "updates"))


@scenario()
def managed_values(api: SimpleNamespace) -> list[Obs]:
    """RemainingSteps and IsLastStep as seen by a loop that stops itself in time."""

    class S(TypedDict):
        log: Annotated[list[str], operator.add]
        remaining: api.RemainingSteps  # LangGraph's spelling: the alias is the annotation
        last: api.IsLastStep

    def loop(s: S) -> dict[str, Any]:
        return {"log": [f"{s['remaining']}/{s['last']}"]}

    def again(s: S) -> str:
        return api.END if s["remaining"] <= 2 else "loop"

    g = api.StateGraph(S)
    g.add_node("loop", loop).add_edge(api.START, "loop").add_conditional_edges("loop", again)
    out = [
        obs_invoke(api, f"loop limit={n}", g.compile(), {"log": []}, {"recursion_limit": n})
        for n in (3, 6)
    ]
    chain = api.StateGraph(S)
    chain.add_sequence([("a", loop), ("b", loop), ("c", loop)]).add_edge(api.START, "a")
    out += [
        obs_invoke(api, f"chain limit={n}", chain.compile(), {"log": []}, {"recursion_limit": n})
        for n in (4, 10)
    ]
    return out


@scenario(
    intentional={
        "*": "? stepgraph raises GraphRecursionError BEFORE running the superstep beyond the "
        "limit (LangGraph runs it, then raises); both succeed iff supersteps incl. START "
        "<= limit (semantics doc §10.8)",
    }
)
def recursion_limit(api: SimpleNamespace) -> list[Obs]:
    """GraphRecursionError: an endless loop, and a chain that needs exactly the limit."""

    def inc(s: CountState) -> dict[str, Any]:
        return {"n": s["n"] + 1, "log": [str(s["n"])]}

    g = api.StateGraph(CountState)
    g.add_node("inc", inc).add_edge(api.START, "inc").add_edge("inc", "inc")
    facts = ("recursion", "4")
    loop = g.compile()
    out = [
        obs_invoke(
            api, "loop invoke", loop, {"log": [], "n": 0}, {"recursion_limit": 4}, facts=facts
        ),
        obs_stream(
            api,
            "loop stream values",
            loop,
            {"log": [], "n": 0},
            {"recursion_limit": 4},
            stream_mode="values",
            facts=facts,
        ),
        obs_invoke(
            api,
            "limit=0",
            loop,
            {"log": [], "n": 0},
            {"recursion_limit": 0},
            facts=("recursion_limit",),
        ),
    ]
    chain = api.StateGraph(CountState)
    chain.add_sequence([("a", inc), ("b", inc), ("c", inc)]).add_edge(api.START, "a")
    for n in (2, 3, 4):
        out.append(
            obs_stream(
                api,
                f"3-node chain limit={n}",
                chain.compile(),
                {"log": [], "n": 0},
                {"recursion_limit": n},
                stream_mode="updates",
                facts=("recursion", str(n)),
            )
        )
    return out


# 8. what nodes can ask for --------------------------------------------------------


@scenario()
def config_in_nodes(api: SimpleNamespace) -> list[Obs]:
    """config parameter and get_config(): configurable, metadata, langgraph_* keys, tags."""

    class S(TypedDict):
        seen: Annotated[list[dict[str, Any]], operator.add]

    def facts(config: Any) -> dict[str, Any]:
        md = config["metadata"]
        return {
            "user": config["configurable"].get("user"),
            "node": md.get("langgraph_node"),
            "step": md.get("langgraph_step"),
            "triggers": list(md.get("langgraph_triggers", ())),
            "path": list(md.get("langgraph_path", ())),
            "ns": md.get("langgraph_checkpoint_ns"),
            "configurable ns": config["configurable"].get("checkpoint_ns"),
            "who": md.get("who"),
            "node meta": md.get("kind"),
            "tag t1": "t1" in config.get("tags", []),
            "recursion_limit": config.get("recursion_limit"),
        }

    def a(s: S, config) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        return {"seen": [facts(config)]}

    def c(s: S, config: RunnableConfig) -> dict[str, Any]:
        return {"seen": [{"annotated": facts(config)["node"]}]}

    def b(s: S) -> dict[str, Any]:
        return {"seen": [facts(api.get_config())]}

    def fan(s: S) -> list[Any]:
        return [api.Send("b", {"seen": []})]

    g = api.StateGraph(S)
    g.add_node("a", a, metadata={"kind": "first"}).add_node("b", b).add_node("c", c)
    g.add_edge(api.START, "a").add_edge("a", "b").add_conditional_edges("a", fan, ["b"])
    g.add_edge("b", "c")
    cfg = {
        "configurable": {"user": "u1"},
        "metadata": {"who": "me"},
        "tags": ["t1"],
        "recursion_limit": 50,
    }
    return [
        obs_invoke(api, "invoke", g.compile(), {"seen": []}, cfg),
        obs_invoke(api, "no config", g.compile(), {"seen": []}),
    ]


@scenario()
def custom_stream_writer(api: SimpleNamespace) -> list[Obs]:
    """get_stream_writer() and a `writer` parameter, in custom and mixed stream modes."""

    def a(s: LogState) -> dict[str, Any]:
        w = api.get_stream_writer()
        w({"progress": 0.5})
        w("text chunk")
        return {"log": ["a"]}

    def b(s: LogState, writer: api.StreamWriter) -> dict[str, Any]:
        writer({"from": "b", "n": len(s["log"])})
        return {"log": ["b"]}

    g = api.StateGraph(LogState)
    g.add_node("a", a).add_node("b", b)
    g.add_edge(api.START, "a").add_edge("a", "b")
    graph = g.compile()
    return [
        *standard(
            api,
            graph,
            {"log": []},
            modes=("custom", ("custom", "updates"), ("updates", "custom", "values")),
        ),
        obs_invoke(api, "invoke stream_mode=custom", graph, {"log": []}, stream_mode="custom"),
    ]


@scenario()
def runtime_context(api: SimpleNamespace) -> list[Obs]:
    """A `runtime: Runtime[Ctx]` parameter with context_schema; context as dict or instance."""

    @dataclass
    class Ctx:
        user: str
        level: int = 1

    def a(s: LogState, runtime: api.Runtime[Ctx]) -> dict[str, Any]:
        ctx = runtime.context
        runtime.stream_writer({"user": getattr(ctx, "user", None)})
        return {
            "log": [
                f"{type(ctx).__name__}:{getattr(ctx, 'user', ctx)}:{getattr(ctx, 'level', None)}"
            ]
        }

    g = api.StateGraph(LogState, context_schema=Ctx)
    g.add_node("a", a).add_edge(api.START, "a")
    graph = g.compile()
    return [
        obs_invoke(api, "context dict", graph, {"log": []}, context={"user": "u"}),
        obs_invoke(api, "context instance", graph, {"log": []}, context=Ctx("v", 2)),
        obs_invoke(api, "no context", graph, {"log": []}),
        obs_stream(
            api, "custom stream", graph, {"log": []}, context={"user": "w"}, stream_mode="custom"
        ),
    ]


# 9. return values and errors ------------------------------------------------------


@scenario()
def nodes_returning_none(api: SimpleNamespace) -> list[Obs]:
    """Nodes returning None or {}: updates chunks, values chunks, task results."""

    def none(s: LogState) -> None:
        return None

    def empty(s: LogState) -> dict[str, Any]:
        return {}

    g = api.StateGraph(LogState)
    g.add_node("none", none).add_node("empty", empty).add_node("some", _appender("some"))
    g.add_edge(api.START, "none").add_edge("none", "empty").add_edge("empty", "some")
    return standard(api, g.compile(), {"log": []})


@scenario(
    intentional={
        "*": "stepgraph raises on keys outside the state; LangGraph drops them silently "
        "(semantics doc §10.8)",
    }
)
def unknown_returned_key(api: SimpleNamespace) -> list[Obs]:
    """A node returns a key that is not in the state."""

    def a(s: LogState) -> dict[str, Any]:
        return {"log": ["a"], "typo": 1}

    g = api.StateGraph(LogState)
    g.add_node("a", a).add_edge(api.START, "a")
    return standard(api, g.compile(), {"log": []}, modes=("updates",))


@scenario(
    intentional={
        "*": "? stepgraph raises InvalidNodeReturnError (a RuntimeError) where LangGraph raises "
        "InvalidUpdateError; `except InvalidUpdateError` no longer catches it",
    }
)
def invalid_return(api: SimpleNamespace) -> list[Obs]:
    """A node returns something that is not an update (an int, a list of strings)."""
    out = []
    for label, value in (("int", 42), ("list of str", ["a", "b"]), ("str", "oops")):
        g = api.StateGraph(LogState)
        g.add_node("a", lambda s, v=value: v).add_edge(api.START, "a")
        out.append(obs_invoke(api, label, g.compile(), {"log": []}, facts=("a",)))
    return out


@scenario()
def concurrent_last_value(api: SimpleNamespace) -> list[Obs]:
    """Two parallel nodes write a key without a reducer: InvalidUpdateError."""

    class S(TypedDict):
        x: int

    g = api.StateGraph(S)
    g.add_node("a", lambda s: {"x": 1}).add_node("b", lambda s: {"x": 2})
    g.add_edge(api.START, "a").add_edge(api.START, "b")
    graph = g.compile()
    return [
        obs_invoke(api, "invoke", graph, {"x": 0}, facts=("x",)),
        obs_stream(api, "stream updates", graph, {"x": 0}, stream_mode="updates", facts=("x",)),
    ]


@scenario(
    intentional={
        "two failing nodes": "stepgraph raises all failures of a superstep together as an "
        "ExceptionGroup (DESIGN.md, Errors); LangGraph raises the first",
    }
)
def node_exception(api: SimpleNamespace) -> list[Obs]:
    """A node's own exception reaches the caller unchanged; two failing nodes in one step."""

    def boom(s: LogState) -> dict[str, Any]:
        raise KeyError("boom")

    def bang(s: LogState) -> dict[str, Any]:
        raise ValueError("bang")

    g = api.StateGraph(LogState)
    g.add_node("ok", _appender("ok")).add_node("boom", boom)
    g.add_edge(api.START, "ok").add_edge("ok", "boom")
    out = [
        obs_stream(
            api,
            "one failing node",
            g.compile(),
            {"log": []},
            stream_mode=["values", "updates"],
            facts=("boom",),
        )
    ]
    g2 = api.StateGraph(LogState)
    g2.add_node("boom", boom).add_node("bang", bang)
    g2.add_edge(api.START, "boom").add_edge(api.START, "bang")
    out.append(
        obs_invoke(api, "two failing nodes", g2.compile(), {"log": []}, facts=("boom", "bang"))
    )
    return out


@scenario(
    intentional={
        "*": "stepgraph collects build problems and reports them all at compile() as one "
        "GraphBuildError, a ValueError (DESIGN.md, Errors); LangGraph raises ValueError, "
        "some at add_node/add_edge",
    }
)
def build_errors(api: SimpleNamespace) -> list[Obs]:
    """Build-time mistakes: duplicate node, unknown edge target, no entry point."""

    def attempt(label: str, build: Callable[[Any], None], facts: Sequence[str]) -> list[Obs]:
        g = api.StateGraph(LogState)
        phase = "build"
        try:
            build(g)
            phase = "compile"
            g.compile()
        except Exception as exc:
            return [
                Obs(f"{label}", describe_error(exc, facts), _full_message(exc)),
                Obs(f"{label} phase", phase),
            ]
        return [Obs(label, "no error")]

    def dup(g: Any) -> None:
        g.add_node("a", _appender("a")).add_node("a", _appender("a"))
        g.add_edge(api.START, "a")

    def unknown(g: Any) -> None:
        g.add_node("a", _appender("a")).add_edge(api.START, "a").add_edge("a", "ghost")

    def no_entry(g: Any) -> None:
        g.add_node("a", _appender("a"))

    def reserved(g: Any) -> None:
        g.add_node("bad:name", _appender("x")).add_edge(api.START, "bad:name")

    return [
        *attempt("duplicate node", dup, ("a",)),
        *attempt("unknown edge target", unknown, ("ghost",)),
        *attempt("no entry point", no_entry, ("entry",)),
        *attempt("':' in a node name", reserved, ("bad:name",)),
    ]


@scenario(
    intentional={
        "not a dict": "? stepgraph checks the input type up front (InvalidInputError); "
        "LangGraph fails later with another error",
        "unknown stream mode": "? stepgraph rejects an unknown stream mode; LangGraph streams "
        "nothing",
    }
)
def bad_input(api: SimpleNamespace) -> list[Obs]:
    """None as input (EmptyInputError), a non-dict, an unknown stream mode."""
    g = api.StateGraph(LogState)
    g.add_node("a", _appender("a")).add_edge(api.START, "a")
    graph = g.compile()
    return [
        obs_invoke(api, "None input", graph, None, facts=("input",)),
        obs_invoke(api, "not a dict", graph, 5),
        obs_stream(
            api, "unknown stream mode", graph, {"log": []}, stream_mode="nope", facts=("nope",)
        ),
    ]


@scenario(
    intentional={
        "*": "? stepgraph rejects a node whose name is also a state key; LangGraph accepts it",
    }
)
def node_named_like_state_key(api: SimpleNamespace) -> list[Obs]:
    """A node and a state key share a name (LangGraph accepts this)."""

    class S(TypedDict):
        answer: str

    g = api.StateGraph(S)
    g.add_node("answer", lambda s: {"answer": s["answer"] + "!"}).add_edge(api.START, "answer")
    return [
        obs_call(
            "compile and invoke", lambda: g.compile().invoke({"answer": "a"}), facts=("answer",)
        )
    ]


@scenario()
def drawing(api: SimpleNamespace) -> list[Obs]:
    """get_graph(): edges drawn from edges, Literal routers and Command[Literal] nodes."""

    def route(s: CountState) -> Literal["x", "y"]:
        return "x"

    g = api.StateGraph(CountState)
    for n in ("start_node", "x", "y"):
        g.add_node(n, _appender(n))
    g.add_node("z", lambda s: api.Command(goto="x"), destinations=("x",))
    g.add_edge(api.START, "start_node").add_conditional_edges("start_node", route)
    g.add_edge("x", "z")
    graph = g.compile()
    return [
        obs_call(
            "edges",
            lambda: sorted((e.source, e.target, e.conditional) for e in graph.get_graph().edges),
        ),
    ]


# 10. running APIs -------------------------------------------------------------------


@scenario()
def batch_runs(api: SimpleNamespace) -> list[Obs]:
    """batch / abatch, one config for all, and return_exceptions=True."""

    def inc(s: CountState) -> dict[str, Any]:
        if s["n"] < 0:
            raise ValueError("negative")
        return {"n": s["n"] + 1, "log": [str(s["n"])]}

    g = api.StateGraph(CountState)
    g.add_node("inc", inc).add_edge(api.START, "inc")
    graph = g.compile()
    inputs = [{"log": [], "n": i} for i in (1, 2, -1)]
    return [
        obs_call("batch", lambda: batch(api, graph, inputs[:2])),
        obs_call(
            "batch with config", lambda: batch(api, graph, inputs[:2], {"recursion_limit": 5})
        ),
        obs_call(
            "batch return_exceptions", lambda: batch(api, graph, inputs, return_exceptions=True)
        ),
        obs_call("batch raising", lambda: batch(api, graph, inputs), facts=("negative",)),
        obs_call("batch empty", lambda: batch(api, graph, [])),
    ]


@scenario()
def stream_mode_shapes(api: SimpleNamespace) -> list[Obs]:
    """Single mode vs list of modes, one-element lists, invoke with non-values modes."""

    def a(s: LogState) -> dict[str, Any]:
        api.get_stream_writer()("hi")
        return {"log": ["a"]}

    g = api.StateGraph(LogState)
    g.add_node("a", a).add_node("b", _appender("b"))
    g.add_edge(api.START, "a").add_edge("a", "b")
    graph = g.compile()
    inp = {"log": []}
    out = [
        obs_stream(api, f"stream {m}", graph, inp, stream_mode=m)
        for m in (
            ["values"],
            ["updates"],
            ["values", "updates", "custom", "tasks"],
            ["debug", "values"],
        )
    ]
    out += [
        obs_invoke(api, f"invoke stream_mode={m}", graph, inp, stream_mode=m)
        for m in ("updates", "tasks", ["values", "updates"], ["values"])
    ]
    return out


@scenario()
def async_nodes(api: SimpleNamespace) -> list[Obs]:
    """async def nodes and routers (under the sync API too)."""

    async def a(s: CountState) -> dict[str, Any]:
        await asyncio.sleep(0)
        api.get_stream_writer()({"async": "a"})
        node = api.get_config()["metadata"]["langgraph_node"]
        return {"log": [f"a in {node}"], "n": s["n"] + 1}

    async def route(s: CountState) -> str:
        return "b" if s["n"] == 1 else api.END

    g = api.StateGraph(CountState)
    g.add_node("a", a).add_node("b", _appender("b"))
    g.add_edge(api.START, "a").add_conditional_edges("a", route, ["b", api.END])
    return standard(api, g.compile(), {"log": [], "n": 0}, modes=("updates", "custom"))


# -- running and comparing ------------------------------------------------------------


SCENARIO_TIMEOUT = 60.0


def run_scenario(sc: Scenario, engine: str, is_async: bool) -> list[Obs]:
    """Run one scenario on one engine; a crash or a hang becomes an observation."""
    result: list[Obs] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.extend(sc.fn(load_api(engine, is_async)))
        except BaseException as exc:  # reported as an observation
            error.append(exc)

    t = threading.Thread(target=target, daemon=True, name=f"parity-{sc.name}-{engine}")
    t.start()
    t.join(SCENARIO_TIMEOUT)
    if t.is_alive():
        return [*result, Obs("scenario", f"still running after {SCENARIO_TIMEOUT:.0f} s")]
    if error:
        exc = error[0]
        tb = "".join(traceback.format_exception(exc, limit=-3))
        return [
            *result,
            Obs(
                "scenario raised",
                describe_error(exc),
                f"{type(exc).__name__}: {_full_message(exc)}\n{tb}",
            ),
        ]
    return result


@dataclass
class Difference:
    label: str
    kind: str  # "real", "order", "intentional", "intentional?"
    lg: Obs | None
    sg: Obs | None
    reason: str = ""


def compare(sc: Scenario, lg: list[Obs], sg: list[Obs]) -> list[Difference]:
    lg_by = {o.label: o for o in normalize(lg)}
    sg_by = {o.label: o for o in normalize(sg)}
    labels = list(dict.fromkeys([*lg_by, *sg_by]))
    diffs = []
    for label in labels:
        a, b = lg_by.get(label), sg_by.get(label)
        if a is not None and b is not None:
            b = Obs(b.label, _forgive_extras(a.value, b.value), b.note)
            if a.value == b.value:
                continue
        reason = (
            ""
            if label == "scenario raised"
            else (sc.intentional.get(label) or _prefix_reason(sc, label))
        )
        if reason:
            kind = "intentional?" if reason.startswith("?") else "intentional"
            reason = reason.lstrip("? ")
        elif a is not None and b is not None and _same_multiset(a.value, b.value):
            kind = "order"
        else:
            kind = "real"
        diffs.append(Difference(label, kind, a, b, reason))
    return diffs


def _forgive_extras(lg: Any, sg: Any) -> Any:
    """An error that is *also* a ValueError, or names *more* facts, breaks no caller."""
    if not (isinstance(lg, dict) and isinstance(sg, dict) and "is" in lg and "is" in sg):
        return sg
    sg = dict(sg)
    if set(lg["is"]) <= set(sg["is"]):
        sg["is"] = lg["is"]
    sg["mentions"] = {k: v and lg["mentions"].get(k, v) for k, v in sg["mentions"].items()}
    return sg


def _prefix_reason(sc: Scenario, label: str) -> str:
    for key, reason in sc.intentional.items():
        if key == "*" or label.startswith(key + " ") or label.endswith(" " + key):
            return reason
    return ""


def _same_multiset(a: Any, b: Any) -> bool:
    """True if ``a`` and ``b`` hold the same chunks (or batch results) in another order."""

    def split(v: Any) -> tuple[Any, list[str]] | None:
        if not isinstance(v, dict):
            return None
        key = "chunks" if isinstance(v.get("chunks"), list) else "result"
        items = v.get(key)
        if not isinstance(items, list):
            return None
        rest = {k: x for k, x in v.items() if k != key}
        # Ids are numbered by first appearance, so a new order renumbers them.
        return rest, sorted(re.sub(r"<id\d+>", "<id>", repr(x)) for x in items)

    sa, sb = split(a), split(b)
    return sa is not None and sa == sb


def _pformat(o: Obs | None) -> list[str]:
    if o is None:
        return ["<not observed>"]
    return pprint.pformat(o.value, width=96, sort_dicts=False).splitlines()


def format_difference(d: Difference, verbose: bool) -> str:
    head = f"  * {d.label}  [{d.kind}]"
    if d.reason:
        head += f"  ({d.reason})"
    lines = [head]
    diff = list(
        difflib.unified_diff(
            _pformat(d.lg), _pformat(d.sg), "langgraph", "stepgraph", lineterm="", n=2
        )
    )
    lines += [f"      {x}" for x in diff]
    for who, o in (("langgraph", d.lg), ("stepgraph", d.sg)):
        if o is not None and o.note and (verbose or d.kind == "real"):
            note = o.note if verbose else o.note.splitlines()[0][:200]
            lines.append(f"      {who} says: {note}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.parity",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run scenarios whose name contains this (repeatable)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sync-only", action="store_true")
    mode.add_argument("--async-only", action="store_true")
    parser.add_argument(
        "--show-intentional", action="store_true", help="also print intentional differences in full"
    )
    parser.add_argument(
        "--show-order", action="store_true", help="also print differences in chunk order only"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print whole error messages")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--dump", action="store_true", help="print every normalized observation of both engines"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if any scenario differs in a way not marked intentional",
    )
    args = parser.parse_args(argv)
    # LangGraph logs writes to unknown channels; the observations already show their effect.
    logging.getLogger("langgraph").setLevel(logging.ERROR)

    chosen = [s for s in SCENARIOS.values() if not args.only or any(o in s.name for o in args.only)]
    if args.list:
        for s in chosen:
            print(f"{s.name:32} {s.doc}")
        return 0
    modes = [False] if args.sync_only else [True] if args.async_only else [False, True]
    differ: list[str] = []
    only_soft: list[str] = []
    for sc in chosen:
        kinds = _report_scenario(sc, modes, args)
        if "real" in kinds:
            differ.append(sc.name)
        elif kinds:
            only_soft.append(sc.name)
    print()
    print(
        f"{len(chosen)} scenarios, {len(differ)} differ"
        + (f" ({', '.join(differ)})" if differ else "")
    )
    if only_soft:
        print(
            f"{len(only_soft)} more differ only in intentional ways or in chunk order: "
            f"{', '.join(only_soft)}"
        )
    return 1 if args.strict and differ else 0


def _dump(sc: Scenario, is_async: bool, lg: list[Obs], sg: list[Obs]) -> None:
    for engine, observations in (("langgraph", lg), ("stepgraph", sg)):
        print(f"=== {sc.name} [{'async' if is_async else 'sync'}] {engine}")
        for o in normalize(observations):
            print(f"  * {o.label}")
            print("\n".join(f"      {x}" for x in _pformat(o)))


def _report_scenario(sc: Scenario, modes: Sequence[bool], args: argparse.Namespace) -> set[str]:
    kinds: set[str] = set()
    for is_async in modes:
        lg, sg = run_scenario(sc, "langgraph", is_async), run_scenario(sc, "stepgraph", is_async)
        if args.dump:
            _dump(sc, is_async, lg, sg)
        diffs = compare(sc, lg, sg)
        if not diffs:
            continue
        kinds |= {d.kind for d in diffs}
        where = f"--- {sc.name} [{'async' if is_async else 'sync'}]"
        if any(d.label == "scenario raised" for d in diffs):
            # One side stopped early: list its missing observations instead of diffing them.
            missing = [
                d.label
                for d in diffs
                if d.lg is None or d.sg is None
                if d.label != "scenario raised"
            ]
            diffs = [
                d
                for d in diffs
                if d.label == "scenario raised" or (d.lg is not None and d.sg is not None)
            ]
            where += f" (the scenario raised; {len(missing)} observation(s) missing on one side)"
        shown = [
            d
            for d in diffs
            if d.kind == "real"
            or (args.show_intentional and d.kind.startswith("intentional"))
            or (args.show_order and d.kind == "order")
        ]
        counts = ", ".join(
            f"{sum(d.kind == k for d in diffs)} {k}"
            for k in ("real", "order", "intentional", "intentional?")
            if any(d.kind == k for d in diffs)
        )
        print(f"{where}: {counts}")
        hidden = [d.label for d in diffs if d not in shown]
        for d in shown:
            print(format_difference(d, args.verbose))
        if hidden:
            print(f"  (not shown: {', '.join(hidden)})")
        sys.stdout.flush()
    return kinds


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``wide_state`` workload: a 15-key state, mostly reducers, looping through a join.

Loop: one -> two -> (three || four) -> five -> six -> back to one while ``len(messages) <= n``.
``five`` is a join (``add_edge(["three", "four"], "five")``). Each round adds 10 messages
(5 from ``one``, 5 from ``five``), so a run makes ``rounds(n)`` rounds of 5 supersteps.
The same nodes run on a dataclass state (``wide_state``) and a TypedDict state (``wide_dict``).
"""

import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from .engines import Api

MESSAGES_PER_ROUND = 10
STEPS_PER_ROUND = 5


def keep_last(current: Any, update: Any) -> Any:
    """Reducer: keep the newest value, but ignore ``None`` writes."""
    return current if update is None else update


@dataclass
class WideState:
    """12 reduced keys (4 list-add, 2 dict-or, 6 keep-last) and 3 plain ones."""

    messages: Annotated[list[str], operator.add] = field(default_factory=list)
    events: Annotated[list[str], operator.add] = field(default_factory=list)
    notes: Annotated[list[str], operator.add] = field(default_factory=list)
    trail: Annotated[list[int], operator.add] = field(default_factory=list)
    meta: Annotated[dict[str, int], operator.or_] = field(default_factory=dict)
    index: Annotated[dict[str, str], operator.or_] = field(default_factory=dict)
    title: Annotated[str | None, keep_last] = None
    summary: Annotated[str | None, keep_last] = None
    owner: Annotated[str | None, keep_last] = None
    status: Annotated[str | None, keep_last] = None
    topic: Annotated[str | None, keep_last] = None
    mood: Annotated[str | None, keep_last] = None
    round: int = 0
    flag: bool = False
    label: str = ""


class WideDict(TypedDict, total=False):
    """The same 15 keys as ``WideState``, as a TypedDict."""

    messages: Annotated[list[str], operator.add]
    events: Annotated[list[str], operator.add]
    notes: Annotated[list[str], operator.add]
    trail: Annotated[list[int], operator.add]
    meta: Annotated[dict[str, int], operator.or_]
    index: Annotated[dict[str, str], operator.or_]
    title: Annotated[str | None, keep_last]
    summary: Annotated[str | None, keep_last]
    owner: Annotated[str | None, keep_last]
    status: Annotated[str | None, keep_last]
    topic: Annotated[str | None, keep_last]
    mood: Annotated[str | None, keep_last]
    round: int
    flag: bool
    label: str


def _get(state: Any, key: str) -> Any:
    return state[key] if isinstance(state, dict) else getattr(state, key)


def one(state: Any) -> dict[str, Any]:
    r = _get(state, "round") + 1
    return {
        "round": r,
        "messages": [f"one {r}.{j}" for j in range(5)],
        "title": f"title {r}",
        "events": [f"one {r}"],
    }


def two(state: Any) -> dict[str, Any]:
    r = _get(state, "round")
    return {
        "notes": [f"two {r}"],
        "meta": {f"two {r}": r},
        "summary": f"{len(_get(state, 'messages'))} messages",
        "flag": r % 2 == 0,
    }


def three(state: Any) -> dict[str, Any]:
    r = _get(state, "round")
    return {"trail": [r], "index": {f"three {r}": "x"}, "owner": f"owner {r}", "events": ["3"]}


def four(state: Any) -> dict[str, Any]:
    r = _get(state, "round")
    return {"trail": [-r], "meta": {f"four {r}": r}, "topic": f"topic {r}", "notes": ["4"]}


def five(state: Any) -> dict[str, Any]:
    r = _get(state, "round")
    return {
        "messages": [f"five {r}.{j}" for j in range(5)],
        "label": f"joined {r}",
        "status": "joined",
    }


def six(state: Any) -> dict[str, Any]:
    r = _get(state, "round")
    return {"index": {f"six {r}": "y"}, "status": None, "mood": "ok", "events": ["6"]}


def rounds(n: int) -> int:
    """Rounds until ``len(messages) > n``, starting from one message."""
    return (n - 1) // MESSAGES_PER_ROUND + 1


def supersteps(n: int) -> int:
    return 1 + STEPS_PER_ROUND * rounds(n)


def _build(api: Api, n: int, schema: type) -> tuple[Any, Any, dict[str, Any]]:
    def route(state: Any) -> str:
        return "one" if len(_get(state, "messages")) <= n else api.END

    builder = api.StateGraph(schema)
    for node in (one, two, three, four, five, six):
        builder.add_node(node.__name__, node)
    builder.add_edge(api.START, "one")
    builder.add_edge("one", "two")
    builder.add_edge("two", "three")
    builder.add_edge("two", "four")
    builder.add_edge(["three", "four"], "five")
    builder.add_edge("five", "six")
    builder.add_conditional_edges("six", route, ["one", api.END])
    config = {"recursion_limit": supersteps(n) + 10}
    return builder.compile(), {"messages": ["start"], "round": 0}, config


def build_dataclass(api: Api, n: int) -> tuple[Any, Any, dict[str, Any]]:
    return _build(api, n, WideState)


def build_typeddict(api: Api, n: int) -> tuple[Any, Any, dict[str, Any]]:
    return _build(api, n, WideDict)


def verify(output: Any, n: int) -> list[str]:
    """Differences between ``output`` and the expected final state (empty when it matches)."""
    k = rounds(n)
    expected = {
        "round": k,
        "len(messages)": 1 + MESSAGES_PER_ROUND * k,
        "len(events)": 3 * k,
        "len(meta)": 2 * k,
        "len(index)": 2 * k,
        "sorted(trail)": sorted([*range(1, k + 1), *range(-k, 0)]),
        "status": "joined",
        "title": f"title {k}",
    }
    actual = {
        "round": _get(output, "round"),
        "len(messages)": len(_get(output, "messages")),
        "len(events)": len(_get(output, "events")),
        "len(meta)": len(_get(output, "meta")),
        "len(index)": len(_get(output, "index")),
        "sorted(trail)": sorted(_get(output, "trail")),
        "status": _get(output, "status"),
        "title": _get(output, "title"),
    }
    return [
        f"{key}: {actual[key]!r} != {want!r}"
        for key, want in expected.items()
        if actual[key] != want
    ]

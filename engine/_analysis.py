"""Static analysis of a ``StateGraph`` at compile time.

``compile()`` runs these checks once the graph is valid. Each finding is a
``GraphWarning``; with ``compile(strict=True)`` the findings become build problems
in the one ``GraphBuildError``. Every check is conservative: it reports only what
it can prove from the graph's declarations, and stays silent when a node's
behaviour is unknown (a runtime ``InvalidUpdateError`` still catches the rest).

* ``no_path_to_end``: nodes from which no path leads to END. Edges, joins,
  conditional edges and declared ``destinations=`` are followed. A node whose run
  may trigger nothing ends the run (as LangGraph allows): one without edges or
  conditional edges, one with a conditional edge whose path function may return
  a list (possibly empty) or a value we cannot see, and one that may return a
  ``Command`` with no static route. A node with edges that also routes with
  ``Command(goto=...)`` should list those targets in ``destinations=`` (END too,
  if it can leave the graph with ``Command(graph=Command.PARENT)``).
* ``concurrent_write``: a state key without a reducer that two nodes able to run
  in the same superstep both write. Writes are known from ``add_node(...,
  writes=[...])`` or from a TypedDict return annotation other than the graph's
  own schemas (its required keys); anything else is unknown. Two nodes run in the
  same superstep when one source triggers both for sure: two edges from the same
  node (or START), an edge and a conditional edge of the same node, two
  conditional edges of the same node, or a conditional edge whose path function
  is annotated to return a list (a fan-out). A node that a list of ``Send``
  packets targets may run several times in one superstep. Deferred nodes are left
  out (they wait for the others).
* ``unread_channel``: a state key some node writes (known writes) that no node or
  conditional edge reads and that is not in the output schema. Reported only when
  every reader is known: each node reads a narrower schema than the state (its
  ``input_schema`` or first parameter's annotation) and there are no conditional
  edges (a path function may read any key).
"""

from __future__ import annotations

import itertools
import os
import sys
import types
import typing
import warnings
from collections import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import networkx as nx

from stepgraph.channels import LastValue

from ._types import END, START
from .errors import GraphWarning

if TYPE_CHECKING:
    from stepgraph.channels import BaseChannel

    from ._branch import Branch
    from ._state import NodeDef, StateGraph

_MISSING = object()
_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Finding:
    """One result of the analysis: what kind, which nodes and keys, and the message."""

    kind: str
    nodes: tuple[str, ...]
    keys: tuple[str, ...]
    message: str


def analyze(
    builder: StateGraph, channels: Mapping[str, BaseChannel[Any, Any, Any]]
) -> list[Finding]:
    """Every finding of the three checks, in a stable order."""
    writes = {name: _known_writes(builder, node) for name, node in builder.nodes.items()}
    return [
        *_no_path_to_end(builder),
        *_concurrent_writes(builder, channels, writes),
        *_unread_channels(builder, channels, writes),
    ]


def report(findings: Sequence[Finding], *, graph: str) -> None:
    """Emit each finding as a ``GraphWarning`` pointing at the user's ``compile()`` call."""
    level = _stacklevel()
    for f in findings:
        warnings.warn(
            GraphWarning(
                f"{graph}: {f.message}", kind=f.kind, nodes=f.nodes, keys=f.keys, graph=graph
            ),
            stacklevel=level,
        )


def _stacklevel() -> int:
    # The first frame outside stepgraph.engine is the caller of compile().
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == (
        _ENGINE_DIR
    ):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


# -- 1. nodes that cannot reach END ------------------------------------------------


def _no_path_to_end(builder: StateGraph) -> list[Finding]:
    nodes = builder.nodes
    everything = [*nodes, END]
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_nodes_from(everything)
    static: set[str] = set()  # nodes whose every run triggers something for sure
    for src, dst in builder.edges:
        if src in nodes:
            g.add_edge(src, dst)
            static.add(src)
    for starts, dst in builder.waiting_edges:
        g.add_edges_from((s, dst) for s in starts if s in nodes)
    may_end: set[str] = set()
    for src, branches in builder.branches.items():
        if src not in nodes:
            continue
        for b in branches.values():
            ends = b.ends if b.ends is not None else everything
            g.add_edges_from((src, e) for e in ends)
            if b.ends is None or END in b.ends or not _single_result(b.path):
                may_end.add(src)
            static.add(src)
    from ._state_compile import _may_route

    for name, node in nodes.items():
        if node.destinations is not None:
            g.add_edges_from((name, d) for d in node.destinations)
        elif name not in static and _may_route(node.action):
            g.add_edges_from((name, d) for d in everything)  # Command(goto=anything)
        if name not in static:
            may_end.add(name)  # its run may trigger nothing: the run ends after it
    g.add_edges_from((n, END) for n in may_end)
    reaches_end = nx.ancestors(g, END)
    trapped = [n for n in nodes if n not in reaches_end]
    if not trapped:
        return []
    names = ", ".join(repr(n) for n in trapped)
    return [
        Finding(
            "no_path_to_end",
            tuple(trapped),
            (),
            f"node(s) {names} cannot reach END: every path from them stays in a cycle with no "
            "exit, so a run that gets there only stops at the recursion limit. Add an exit, "
            "e.g. add_edge('<node>', END) or a conditional edge that can return END; if a "
            "node leaves with Command(goto=...) or Command(graph=Command.PARENT), declare it "
            "with add_node(..., destinations=[..., END])",
        )
    ]


def _return_hint(func: Any) -> Any:
    try:
        return typing.get_type_hints(func).get("return", _MISSING)
    except Exception:
        return getattr(func, "__annotations__", {}).get("return", _MISSING)


def _single_result(path: Any) -> bool:
    """True when the path's return annotation rules out a list (so it always routes)."""
    ret = _return_hint(path)
    if ret is _MISSING or ret is Any:
        return False
    return not _may_be_many(ret)


def _may_be_many(ann: Any) -> bool:
    """Whether a return annotation allows a list (or anything: Any, Send lists)."""
    if ann is Any or isinstance(ann, typing.TypeVar):
        return True
    if _is_list(ann):
        return True
    origin = typing.get_origin(ann)
    if origin is typing.Union or isinstance(ann, types.UnionType):
        return any(_may_be_many(a) for a in typing.get_args(ann))
    return False


# -- 2. concurrent writes without a reducer ------------------------------------------


def _known_writes(
    builder: StateGraph, node: NodeDef
) -> tuple[frozenset[str], frozenset[str]] | None:
    """(keys surely written, keys possibly written), or None when unknown."""
    if node.writes is not None:
        keys = frozenset(node.writes)
        return keys, keys
    ret = _return_hint(node.action) if callable(node.action) else _MISSING
    if ret is None or ret is type(None):
        return frozenset(), frozenset()
    if typing.is_typeddict(ret) and ret not in builder.schemas:
        # A node annotated with the state itself often returns a partial dict: unknown.
        hints = _typeddict_keys(ret)
        if hints is None:
            return None
        required = frozenset(getattr(ret, "__required_keys__", hints)) & hints
        return required, hints
    return None


def _typeddict_keys(td: Any) -> frozenset[str] | None:
    try:
        return frozenset(typing.get_type_hints(td))
    except Exception:
        return None


def _concurrent_writes(
    builder: StateGraph,
    channels: Mapping[str, BaseChannel[Any, Any, Any]],
    writes: Mapping[str, tuple[frozenset[str], frozenset[str]] | None],
) -> list[Finding]:
    pairs, repeated = _same_step(builder)
    no_reducer = {k for k, ch in channels.items() if type(ch) is LastValue}
    findings: list[Finding] = []
    for (a, b), why in sorted(pairs.items()):
        wa, wb = writes.get(a), writes.get(b)
        if wa is None or wb is None:
            continue
        keys = sorted(wa[0] & wb[0] & no_reducer)
        if keys:
            findings.append(
                _conflict(
                    (a, b),
                    keys,
                    f"{a!r} and {b!r} can run in the same superstep ({why}) and both write",
                )
            )
    for n, why in sorted(repeated.items()):
        w = writes.get(n)
        if w is None:
            continue
        keys = sorted(w[0] & no_reducer)
        if keys:
            findings.append(
                _conflict(
                    (n,), keys, f"{n!r} can run several times in one superstep ({why}) and writes"
                )
            )
    return findings


def _conflict(nodes: tuple[str, ...], keys: list[str], what: str) -> Finding:
    names = ", ".join(repr(k) for k in keys)
    return Finding(
        "concurrent_write",
        nodes,
        tuple(keys),
        f"nodes {what} state key(s) {names}, which have no reducer, so that superstep fails "
        "with InvalidUpdateError. Give each key a reducer in the state schema, e.g. "
        "Annotated[list[str], operator.add], or let only one of them write it",
    )


def _same_step(builder: StateGraph) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """Node pairs one source surely triggers together, and nodes Send fan-outs repeat."""
    nodes = builder.nodes
    eligible = {n for n, d in nodes.items() if not d.defer}
    sources = {s for s, _ in builder.edges} | set(builder.branches)
    pairs: dict[tuple[str, str], str] = {}
    repeated: dict[str, str] = {}

    def pair(group_a: Iterable[str], group_b: Iterable[str], why: str) -> None:
        for a, b in itertools.product(group_a, group_b):
            if a != b and a in eligible and b in eligible:
                pairs.setdefault((min(a, b), max(a, b)), why)

    for src in sorted(sources):
        where = "the start" if src == START else f"node {src!r}"
        targets = sorted(d for s, d in builder.edges if s == src and d in nodes)
        pair(targets, targets, f"edges from {where}")
        branches: list[Branch] = [
            b for _, b in sorted(builder.branches.get(src, {}).items()) if b.ends is not None
        ]
        for b in branches:
            ends = [e for e in b.ends or () if e in nodes]
            pair(targets, ends, f"an edge and conditional edge {b.name!r} from {where}")
            ret = _return_hint(b.path)
            if ret is not _MISSING and ret is not Any and _is_list(ret):
                pair(ends, ends, f"conditional edge {b.name!r} from {where} returns a list")
                if "Send" in repr(ret):
                    for e in ends:
                        if e in eligible:
                            repeated.setdefault(
                                e, f"a list of Send from conditional edge {b.name!r} of {where}"
                            )
        for b1, b2 in itertools.combinations(branches, 2):
            pair(
                [e for e in b1.ends or () if e in nodes],
                [e for e in b2.ends or () if e in nodes],
                f"conditional edges {b1.name!r} and {b2.name!r} from {where}",
            )
    return pairs, repeated


def _is_list(ann: Any) -> bool:
    origin = typing.get_origin(ann)
    if origin in (list, tuple, abc.Sequence, abc.Iterable, abc.MutableSequence):
        return True
    if origin is typing.Union or isinstance(ann, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(ann))
    return ann in (list, tuple)


# -- 3. channels written and never read ----------------------------------------------


def _unread_channels(
    builder: StateGraph,
    channels: Mapping[str, BaseChannel[Any, Any, Any]],
    writes: Mapping[str, tuple[frozenset[str], frozenset[str]] | None],
) -> list[Finding]:
    if builder.branches:
        return []  # path functions get the whole state
    state_keys = set(builder.schemas[builder.state_schema].keys)
    read: set[str] = set(builder.schemas[builder.output_schema].keys)
    for node in builder.nodes.values():
        schema = node.input_schema
        if schema is None or schema == builder.state_schema or schema not in builder.schemas:
            return []  # it reads the whole state
        keys = set(builder.schemas[schema].keys)
        if keys >= state_keys:
            return []
        read |= keys
    written: dict[str, list[str]] = {}
    for name, w in writes.items():
        for key in sorted(w[1] if w is not None else ()):
            if key in channels:
                written.setdefault(key, []).append(name)
    unread = sorted(k for k in written if k not in read)
    if not unread:
        return []
    writers = tuple(dict.fromkeys(n for k in unread for n in written[k]))
    names = ", ".join(repr(k) for k in unread)
    return [
        Finding(
            "unread_channel",
            writers,
            tuple(unread),
            f"state key(s) {names} are written (by {', '.join(repr(n) for n in writers)}) "
            "but no node reads them and the output schema leaves them out, so the writes "
            "are lost. Read them in a node's input schema, add them to the output schema, "
            "or stop writing them",
        )
    ]

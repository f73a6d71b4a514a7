"""Inspecting and drawing compiled graphs: ``graph.get_graph(xray=...)``.

``get_graph()`` returns a ``DrawableGraph``, a ``networkx.DiGraph`` that describes
what the graph declares, without running it. Every node and every edge carries
the same attributes, so networkx algorithms and the draw methods can rely on them.

Node attributes:
    kind: ``"start"``, ``"end"``, ``"node"``, or ``"subgraph"`` (a compiled graph
        used as a node and not expanded).
    name: the name to show. Expanded subgraph nodes keep their own name; their
        id is prefixed with the subgraph node's (``"child:inner"``).
    deferred: the node was added with ``defer=True``.
    subgraph: for a ``"subgraph"`` node, the name of its compiled graph, else None.
    namespace: the subgraph nodes an expanded node came from, outermost first
        (``()`` for the graph's own nodes).
    metadata: the node's ``metadata`` dict.

Edge attributes:
    conditional: the edge is taken only sometimes (a conditional edge or a
        Command destination); a plain edge or a join edge always fires.
    label: the ``path_map`` key(s) that choose this edge, or None.
    join: the sources of the join ``add_edge([a, b], c)`` the edge belongs to.
    send: the edge may carry ``Send`` packets: the path function's return
        annotation mentions ``Send`` and the target is listed in its path_map
        (and not as a ``Literal`` name it returns).
    command: the target is a declared ``Command(goto=...)`` destination (from a
        ``Command[Literal[...]]`` return annotation or ``destinations=``).

Low-level ``Pregel`` graphs have an edge ``a -> b`` where ``a`` writes a channel
that triggers ``b`` (the channels are in the edge attribute ``channels``); a node
whose writers cannot be inspected gets a conditional edge to END.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import typing
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from ._branch import Branch, _literal_names
from ._node_builder import _ChannelWriter
from ._state import StateGraph
from ._types import END, START, Send

if TYPE_CHECKING:
    from ._pregel import Pregel

__all__ = ["DrawableGraph", "build_graph"]

_NO_GRAPHVIZ = (
    "draw_png() needs Graphviz's `dot` program, which is not on PATH. Install Graphviz "
    "(`apt-get install graphviz`, `brew install graphviz`, or https://graphviz.org/download/) "
    "and, optionally, the Python bindings (`pip install graphviz`), which also run `dot`. "
    "draw_mermaid(), draw_dot() and draw_ascii() need nothing extra."
)


if TYPE_CHECKING:
    _DiGraph = nx.DiGraph[str]
else:
    _DiGraph = nx.DiGraph  # not subscriptable at run time


class DrawableGraph(_DiGraph):
    """The structure of a compiled graph: a ``networkx.DiGraph`` that can draw itself.

    Returned by ``graph.get_graph()``; see this module's docstring for the node and
    edge attributes. Any networkx algorithm works on it::

        g = graph.get_graph()
        nx.has_path(g, START, END)
        print(g.draw_ascii())
    """

    def draw_mermaid(self, *, with_styles: bool = True, curve_style: str = "linear") -> str:
        """Mermaid flowchart text (``graph TD``).

        Conditional edges are dotted, join edges thick; START and END are
        stadium-shaped and styled, a subgraph node is a subroutine box, and
        expanded subgraphs are Mermaid ``subgraph`` blocks.

        Args:
            with_styles: add the front matter (``curve_style``) and ``classDef`` lines.
            curve_style: Mermaid's flowchart ``curve`` (``linear``, ``basis``, ...).
        """
        return to_mermaid(self, with_styles=with_styles, curve_style=curve_style)

    def draw_dot(self) -> str:
        """Graphviz DOT text; conditional edges dashed, join edges bold."""
        return to_dot(self)

    def draw_ascii(self) -> str:
        """A drawing for terminals: boxes in layers, ``*`` edges, ``.`` conditional edges.

        Edges go down; ``v`` marks the target. Edges that loop back up, and labels
        that do not fit next to their edge, are listed under the drawing.
        """
        from ._drawing_ascii import to_ascii

        return to_ascii(self)

    def print_ascii(self) -> None:
        """Print ``draw_ascii()``."""
        print(self.draw_ascii())

    def draw_png(self, path: str | Path | None = None) -> bytes:
        """Render with Graphviz to PNG bytes, also written to ``path`` when given.

        Uses the ``dot`` program on PATH, else the ``graphviz`` Python package.

        Raises:
            ImportError: Graphviz is not installed (the message says how to install it).
            RuntimeError: ``dot`` failed.
        """
        return to_png(self.draw_dot(), path)


# -- building -----------------------------------------------------------------------


def build_graph(graph: Pregel, xray: bool | int = False) -> DrawableGraph:
    """The ``DrawableGraph`` of ``graph``; ``xray`` expands subgraph nodes that deep."""
    depth = _depth(xray)
    builder = getattr(graph, "builder", None)
    if isinstance(builder, StateGraph):
        g, subgraphs = _from_state_graph(graph, builder)
    else:
        g, subgraphs = _from_program(graph)
    if depth and subgraphs:
        g = _expand(g, {n: build_graph(s, depth - 1) for n, s in subgraphs.items()})
    return g


def _depth(xray: bool | int) -> int:
    if xray is True:
        return 1 << 30  # as deep as the graphs nest
    if xray is False or xray is None:
        return 0
    if not isinstance(xray, int):
        raise TypeError(f"xray must be a bool or an int depth, got {type(xray).__name__}")
    if xray < 0:
        raise ValueError(f"xray must be >= 0 (the depth of subgraphs to expand), got {xray}")
    return xray


def _new(name: str) -> DrawableGraph:
    g = DrawableGraph(name=name)
    g.add_node(START, **_node_attrs(START, "start"))
    return g


def _node_attrs(
    name: str,
    kind: str,
    *,
    deferred: bool = False,
    subgraph: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "name": name,
        "deferred": deferred,
        "subgraph": subgraph,
        "namespace": (),
        "metadata": dict(metadata or {}),
    }


def _add_flow(
    g: DrawableGraph,
    u: str,
    v: str,
    *,
    conditional: bool = False,
    label: str | None = None,
    join: tuple[str, ...] | None = None,
    send: bool = False,
    command: bool = False,
    channels: Iterable[str] = (),
) -> None:
    """Add the edge ``u -> v``, merging with one already there.

    A merged edge is conditional only if every way it was declared is; labels
    accumulate; the first join group is kept.
    """
    data = g.get_edge_data(u, v)
    if data is None:
        attrs: dict[str, Any] = {
            "conditional": conditional,
            "label": label,
            "join": join,
            "send": send,
            "command": command,
        }
        if channels:
            attrs["channels"] = tuple(sorted(set(channels)))
        g.add_edge(u, v, **attrs)
        return
    data["conditional"] = data["conditional"] and conditional
    if label is not None:
        old = data["label"]
        data["label"] = label if old is None or label in old.split(", ") else f"{old}, {label}"
    data["join"] = data["join"] or join
    data["send"] = data["send"] or send
    data["command"] = data["command"] or command
    if channels:
        data["channels"] = tuple(sorted({*data.get("channels", ()), *channels}))


def _add_nodes(
    g: DrawableGraph, nodes: Iterable[tuple[str, Any, bool, Mapping[str, Any]]]
) -> dict[str, Any]:
    """Add ``(name, subgraph or None, deferred, metadata)`` nodes, then END."""
    subgraphs: dict[str, Any] = {}
    for name, sub, deferred, metadata in nodes:
        if sub is not None:
            subgraphs[name] = sub
        kind = "subgraph" if sub is not None else "node"
        sub_name = getattr(sub, "name", None) if sub is not None else None
        g.add_node(
            name,
            **_node_attrs(name, kind, deferred=deferred, subgraph=sub_name, metadata=metadata),
        )
    g.add_node(END, **_node_attrs(END, "end"))
    return subgraphs


def _from_state_graph(graph: Pregel, builder: StateGraph) -> tuple[DrawableGraph, dict[str, Any]]:
    from ._pregel import Pregel

    specs = graph.program.nodes
    # Only what this compiled graph holds (the builder may have grown since).
    names = [n for n in builder.nodes if n in specs and not specs[n].hidden]
    defs = [builder.nodes[n] for n in names]
    g = _new(getattr(graph, "name", "LangGraph"))
    subgraphs = _add_nodes(
        g,
        [
            (d.name, d.action if isinstance(d.action, Pregel) else None, d.defer, d.metadata)
            for d in defs
        ],
    )
    known = {START, END, *names}
    for s, d in sorted(builder.edges):
        if s in known and d in known:
            _add_flow(g, s, d)
    for starts, d in sorted(builder.waiting_edges):
        if d in known and known.issuperset(starts):
            for s in starts:
                _add_flow(g, s, d, join=starts)
    for src in sorted(builder.branches):
        if src in known:
            for _, branch in sorted(builder.branches[src].items()):
                _branch_edges(g, branch, names)
    for node in defs:
        for d in node.destinations or ():
            if d in known and d != START:
                _add_flow(g, node.name, d, conditional=True, command=True)
    for n in names:
        if g.out_degree(n) == 0:
            _add_flow(g, n, END)  # nothing follows it: its branch of the run ends
    return g, subgraphs


def _branch_edges(g: DrawableGraph, branch: Branch, names: list[str]) -> None:
    known = {*names, END}
    sends = _send_targets(branch)
    if branch.ends is None:
        # No path_map and no Literal annotation: it may go anywhere.
        for d in [*names, END]:
            _add_flow(g, branch.source, d, conditional=True, send=d in sends or "*" in sends)
        return
    pairs: list[tuple[Hashable, str]] = (
        list(branch.path_map.items())
        if branch.path_map is not None
        else [(d, d) for d in branch.ends]
    )
    for key, d in pairs:
        if d not in known:
            continue
        label = None if key == d else str(key)
        send = d in sends or "*" in sends
        _add_flow(g, branch.source, d, conditional=True, label=label, send=send)


def _send_targets(branch: Branch) -> set[str]:
    """Destinations a branch may reach with Send packets (``"*"``: any it lists)."""
    try:
        ret = typing.get_type_hints(branch.path).get("return")
    except Exception:
        ret = getattr(branch.path, "__annotations__", {}).get("return")
    if ret is None or not _mentions_send(ret):
        return set()
    plain = _literal_names(ret) or ()
    mapping = branch.path_map or {}
    routed = {mapping.get(k, k) for k in plain}
    if branch.ends is None:
        return {"*"}
    return {d for d in branch.ends if d not in routed}


def _mentions_send(ann: Any) -> bool:
    if ann is Send or ann == "Send":
        return True
    return any(_mentions_send(a) for a in typing.get_args(ann))


def _from_program(graph: Pregel) -> tuple[DrawableGraph, dict[str, Any]]:
    prog = graph.program
    specs = {n: s for n, s in prog.nodes.items() if not s.hidden}
    g = _new(getattr(graph, "name", "LangGraph"))
    subgraphs = _add_nodes(g, [(n, s.subgraph, False, s.metadata) for n, s in specs.items()])
    t2n = {ch: [n for n in ns if n in specs] for ch, ns in prog.trigger_to_nodes.items()}
    outputs = _as_tuple(prog.output_channels)
    for ch in _as_tuple(prog.input_channels):
        for m in t2n.get(ch, ()):
            _add_flow(g, START, m, channels=(ch,))
    for n, spec in specs.items():
        written, opaque = _written_channels(spec.writers)
        for ch in written:
            for m in t2n.get(ch, ()):
                _add_flow(g, n, m, channels=(ch,))
            if ch in outputs:
                _add_flow(g, n, END, channels=(ch,))
        if opaque:
            _add_flow(g, n, END, conditional=True)
        elif g.out_degree(n) == 0:
            _add_flow(g, n, END)
    return g, subgraphs


def _written_channels(writers: Iterable[Any]) -> tuple[list[str], bool]:
    """The channels ``writers`` write, and whether some writer could not be read."""
    from ._state_compile import _StaticWriter

    written: list[str] = []
    opaque = False
    for w in writers:
        if isinstance(w, _ChannelWriter):
            written += [ch for ch, _ in w.entries]
        elif isinstance(w, _StaticWriter):
            written += [ch for ch, _ in w.writes]
        else:
            opaque = True
    return list(dict.fromkeys(written)), opaque


def _as_tuple(channels: str | tuple[str, ...]) -> tuple[str, ...]:
    return (channels,) if isinstance(channels, str) else tuple(channels)


def _expand(g: DrawableGraph, inners: Mapping[str, DrawableGraph]) -> DrawableGraph:
    """Replace each subgraph node ``s`` in ``inners`` by its nodes, named ``s:inner``.

    Edges into ``s`` go to the nodes its START leads to; edges out of ``s`` leave
    from the nodes that lead to its END.
    """
    inners = {n: i for n, i in inners.items() if len(i) > 2}  # more than START and END
    out = DrawableGraph(**g.graph)
    for n, attrs in g.nodes(data=True):
        inner = inners.get(n)
        if inner is None:
            out.add_node(n, **attrs)
            continue
        for x, xattrs in inner.nodes(data=True):
            if x not in (START, END):
                out.add_node(f"{n}:{x}", **{**xattrs, "namespace": (n, *xattrs["namespace"])})

    def ends(n: str, at_start: bool) -> list[tuple[str, dict[str, Any] | None]]:
        inner = inners.get(n)
        if inner is None:
            return [(n, None)]
        if at_start:
            pairs = [(x, a) for x, a in inner.adj[START].items() if x != END]
        else:
            pairs = [(x, inner.edges[x, END]) for x in inner.pred[END] if x != START]
        return [(f"{n}:{x}", a) for x, a in pairs]

    for u, v, attrs in g.edges(data=True):
        for a, ua in ends(u, at_start=False):
            for b, va in ends(v, at_start=True):
                cond = attrs["conditional"] or any(x and x["conditional"] for x in (ua, va))
                _add_flow(out, a, b, **{**_flow_args(attrs), "conditional": bool(cond)})
    for n, inner in inners.items():
        for u, v, attrs in inner.edges(data=True):
            if START in (u, v) or END in (u, v):
                continue
            args = _flow_args(attrs)
            if args["join"] is not None:
                args["join"] = tuple(f"{n}:{s}" for s in args["join"])
            _add_flow(out, f"{n}:{u}", f"{n}:{v}", **args)
    return out


def _flow_args(attrs: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("conditional", "label", "join", "send", "command", "channels")
    return {k: attrs[k] for k in keys if k in attrs}


# -- ordering shared by the writers --------------------------------------------------


def node_key(n: str) -> tuple[int, str]:
    """Sort key: START first, END last, the rest by name."""
    return (0 if n == START else 2 if n == END else 1, n)


def sorted_edges(g: nx.DiGraph[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """Edges in an order that does not depend on how the graph was built."""
    return sorted(g.edges(data=True), key=lambda e: (node_key(e[0]), node_key(e[1])))


def edge_text(attrs: Mapping[str, Any]) -> str | None:
    """The text drawn on an edge: its label, and ``Send`` when it carries packets."""
    parts = [attrs["label"]] if attrs.get("label") else []
    if attrs.get("send"):
        parts.append("Send")
    return ", ".join(parts) or None


def node_lines(attrs: Mapping[str, Any]) -> list[str]:
    """The lines shown under a node's name: ``defer = True`` and its metadata."""
    lines = ["defer = True"] if attrs.get("deferred") else []
    lines += [f"{k} = {v}" for k, v in (attrs.get("metadata") or {}).items()]
    return lines


def _clusters(g: nx.DiGraph[str]) -> dict[tuple[str, ...], list[str]]:
    """Nodes grouped by namespace, in node order; every enclosing namespace is a key."""
    groups: dict[tuple[str, ...], list[str]] = {(): []}
    for n, attrs in g.nodes(data=True):
        ns = tuple(attrs.get("namespace") or ())
        for i in range(1, len(ns) + 1):
            groups.setdefault(ns[:i], [])
        groups[ns].append(n)
    return groups


# -- Mermaid ------------------------------------------------------------------------

_SAFE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MERMAID_RESERVED = {"end", "graph", "subgraph", "flowchart", "style", "class", "classDef"}
_MERMAID_RESERVED |= {"click", "linkStyle", "direction", "default"}
_PLAIN_LABEL = re.compile(r"[A-Za-z0-9_ .-]+\Z")


def _mermaid_ids(names: Iterable[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    used: set[str] = set()
    for n in names:
        if _SAFE_ID.match(n) and n not in _MERMAID_RESERVED:
            base = n
        else:
            base = re.sub(r"[^A-Za-z0-9_]", lambda m: f"_{ord(m[0]):x}_", n)
            if not _SAFE_ID.match(base) or base in _MERMAID_RESERVED:
                base = f"n_{base}"
        i, ident = 1, base
        while ident in used:
            i += 1
            ident = f"{base}_{i}"
        used.add(ident)
        ids[n] = ident
    return ids


def _mermaid_escape(text: str) -> str:
    for ch, code in (("&", "#amp;"), ("<", "#lt;"), (">", "#gt;"), ('"', "#quot;")):
        text = text.replace(ch, code)
    return text


def _mermaid_node(ident: str, attrs: Mapping[str, Any]) -> str:
    name = str(attrs.get("name", ident))
    kind = attrs.get("kind")
    if kind in ("start", "end"):
        css = "startnode" if kind == "start" else "endnode"
        return f"{ident}([<p>{_mermaid_escape(name)}</p>]):::{css}"
    extra = node_lines(attrs)
    if extra:
        small = "".join(f"<small><em>{_mermaid_escape(x)}</em></small>" for x in extra)
        text = f'"{_mermaid_escape(name)}<hr/>{small}"'
    elif _PLAIN_LABEL.match(name):
        text = name
    else:
        text = f'"{_mermaid_escape(name)}"'
    return f"{ident}[[{text}]]" if kind == "subgraph" else f"{ident}({text})"


def to_mermaid(
    g: nx.DiGraph[str],
    *,
    with_styles: bool = True,
    curve_style: str = "linear",
) -> str:
    """Mermaid flowchart text for a ``DrawableGraph`` (see ``draw_mermaid``)."""
    groups = _clusters(g)
    ids = _mermaid_ids([*g.nodes, *(":".join(ns) for ns in groups if ns)])
    lines: list[str] = []
    if with_styles:
        lines += ["---", "config:", "  flowchart:", f"    curve: {curve_style}", "---"]
    lines.append("graph TD;")

    def emit(ns: tuple[str, ...], indent: str) -> None:
        for n in groups[ns]:
            lines.append(indent + _mermaid_node(ids[n], g.nodes[n]))
        for sub in groups:
            if len(sub) == len(ns) + 1 and sub[: len(ns)] == ns:
                label = _mermaid_escape(sub[-1])
                lines.append(f'{indent}subgraph {ids[":".join(sub)]}["{label}"]')
                emit(sub, indent + "\t")
                lines.append(f"{indent}end")

    emit((), "\t")
    for u, v, attrs in sorted_edges(g):
        if attrs["conditional"]:
            arrow = "-.->"
        elif attrs["join"]:
            arrow = "==>"
        else:
            arrow = "-->"
        text = edge_text(attrs)
        if text:
            arrow += f'|"{_mermaid_escape(text)}"|'
        lines.append(f"\t{ids[u]} {arrow} {ids[v]};")
    if with_styles:
        lines += [
            "\tclassDef default fill:#eef2ff,stroke:#4c5a99,line-height:1.2",
            "\tclassDef startnode fill-opacity:0",
            "\tclassDef endnode fill:#c7d0f5",
        ]
    return "\n".join(lines) + "\n"


# -- DOT ----------------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_attrs(pairs: Iterable[tuple[str, str]]) -> str:
    body = ", ".join(f"{k}={v}" for k, v in pairs)
    return f" [{body}]" if body else ""


def _dot_node(n: str, attrs: Mapping[str, Any]) -> str:
    pairs: list[tuple[str, str]] = []
    name = str(attrs.get("name", n))
    label = "\n".join([name, *node_lines(attrs)])
    if label != n:
        pairs.append(("label", _dot_quote(label)))
    kind = attrs.get("kind")
    if kind == "start":
        pairs += [("shape", "oval"), ("style", "solid")]
    elif kind == "end":
        pairs += [("shape", "oval"), ("style", "filled"), ("fillcolor", '"#c7d0f5"')]
    elif kind == "subgraph":
        pairs += [("shape", "box3d"), ("style", "solid")]
    if attrs.get("deferred"):
        pairs.append(("style", '"rounded,dashed"'))
    return f"{_dot_quote(n)}{_dot_attrs(pairs)};"


def to_dot(g: nx.DiGraph[str]) -> str:
    """Graphviz DOT text for a ``DrawableGraph`` (see ``draw_dot``)."""
    groups = _clusters(g)
    lines = [
        f"digraph {_dot_quote(str(g.graph.get('name', 'graph')))} {{",
        "\tnode [shape=box, style=rounded];",
    ]

    def emit(ns: tuple[str, ...], indent: str) -> None:
        for n in groups[ns]:
            lines.append(indent + _dot_node(n, g.nodes[n]))
        for sub in groups:
            if len(sub) == len(ns) + 1 and sub[: len(ns)] == ns:
                lines.append(f"{indent}subgraph {_dot_quote('cluster_' + ':'.join(sub))} {{")
                lines.append(f"{indent}\tlabel={_dot_quote(sub[-1])};")
                emit(sub, indent + "\t")
                lines.append(f"{indent}}}")

    emit((), "\t")
    for u, v, attrs in sorted_edges(g):
        pairs: list[tuple[str, str]] = []
        if attrs["conditional"]:
            pairs.append(("style", "dashed"))
        elif attrs["join"]:
            pairs.append(("style", "bold"))
        text = edge_text(attrs)
        if text:
            pairs.append(("label", _dot_quote(text)))
        lines.append(f"\t{_dot_quote(u)} -> {_dot_quote(v)}{_dot_attrs(pairs)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- PNG ----------------------------------------------------------------------------


def to_png(dot: str, path: str | Path | None = None) -> bytes:
    """Render DOT text to PNG with Graphviz; raise ImportError saying how to install it."""
    exe = shutil.which("dot")
    if exe is not None:
        proc = subprocess.run([exe, "-Tpng"], input=dot.encode(), capture_output=True, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"Graphviz `dot -Tpng` failed (exit {proc.returncode}): {err}")
        data: bytes = proc.stdout
    else:
        try:
            graphviz = importlib.import_module("graphviz")
        except ImportError:
            raise ImportError(_NO_GRAPHVIZ) from None
        try:
            data = graphviz.Source(dot).pipe(format="png")
        except graphviz.ExecutableNotFound as exc:
            raise ImportError(_NO_GRAPHVIZ) from exc
    if path is not None:
        Path(path).write_bytes(data)
    return data

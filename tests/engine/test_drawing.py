"""get_graph(): the structure of compiled graphs as an attributed DiGraph, and its drawings."""

from __future__ import annotations

import asyncio
import contextlib
import io
import operator
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import networkx as nx
import pytest

from stepgraph.channels import EphemeralValue, LastValue
from stepgraph.engine import (
    END,
    START,
    Command,
    DrawableGraph,
    NodeBuilder,
    Pregel,
    Send,
    StateGraph,
    entrypoint,
)


class Log(TypedDict):
    log: Annotated[list[str], operator.add]


def noop(state: Any) -> dict[str, Any]:
    return {}


def edge(g: DrawableGraph, u: str, v: str) -> dict[str, Any]:
    return dict(g.edges[u, v])


PLAIN = {"conditional": False, "label": None, "join": None, "send": False, "command": False}


def review_route(state: Any) -> str:
    return "ok"


def small(order: tuple[str, ...] = ("plan", "research", "write", "review")) -> StateGraph:
    """plan fans out to research and write, which join into review; review loops or ends."""
    g = StateGraph(Log)
    for n in order:
        g.add_node(n, noop)
    g.add_edge(START, "plan")
    g.add_edge("plan", "research")
    g.add_edge("plan", "write")
    g.add_edge(["research", "write"], "review")
    g.add_conditional_edges("review", review_route, {"ok": END, "again": "plan"})
    return g


# -- attributes -----------------------------------------------------------------------


def test_get_graph_is_a_networkx_digraph_with_draw_methods() -> None:
    g = small().compile().get_graph()
    assert isinstance(g, nx.DiGraph)
    assert list(g.nodes) == [START, "plan", "research", "write", "review", END]
    assert nx.has_path(g, START, END)
    assert isinstance(g.copy(), DrawableGraph)  # networkx copies keep the class
    assert g.name == "LangGraph"
    assert small().compile(name="pipeline").get_graph().draw_dot().startswith('digraph "pipeline"')


def test_plain_join_and_labelled_conditional_edges() -> None:
    g = small().compile().get_graph()
    assert edge(g, START, "plan") == PLAIN
    assert edge(g, "plan", "research") == PLAIN
    assert edge(g, "research", "review") == {**PLAIN, "join": ("research", "write")}
    assert edge(g, "write", "review") == {**PLAIN, "join": ("research", "write")}
    assert edge(g, "review", "plan") == {**PLAIN, "conditional": True, "label": "again"}
    assert edge(g, "review", END) == {**PLAIN, "conditional": True, "label": "ok"}


def test_node_attributes() -> None:
    child = StateGraph(Log)
    child.add_node("inner", noop)
    child.add_edge(START, "inner")
    g = StateGraph(Log)
    g.add_node("a", noop, metadata={"owner": "me"})
    g.add_node("later", noop, defer=True)
    g.add_node("sub", child.compile(name="child"))
    g.add_edge(START, "a")
    g.add_edge("a", "later")
    g.add_edge("a", "sub")
    d = g.compile().get_graph()
    base = {"deferred": False, "subgraph": None, "namespace": (), "metadata": {}}
    assert d.nodes[START] == {**base, "kind": "start", "name": START}
    assert d.nodes[END] == {**base, "kind": "end", "name": END}
    assert d.nodes["a"] == {**base, "kind": "node", "name": "a", "metadata": {"owner": "me"}}
    assert d.nodes["later"] == {**base, "kind": "node", "name": "later", "deferred": True}
    assert d.nodes["sub"] == {**base, "kind": "subgraph", "name": "sub", "subgraph": "child"}
    # Nodes without outgoing edges end their branch of the run.
    assert edge(d, "later", END) == PLAIN
    assert edge(d, "sub", END) == PLAIN


def fan_out(state: Any) -> list[Send]:
    return [Send("worker", {"log": []})]


def fan_or_finish(state: Any) -> Literal["finish"] | list[Send]:
    return "finish"


def test_send_targets_come_from_annotated_path_functions() -> None:
    g = StateGraph(Log)
    g.add_node("split", noop)
    g.add_node("worker", noop)
    g.add_node("finish", noop)
    g.add_edge(START, "split")
    g.add_conditional_edges("split", fan_out, ["worker"])
    g.add_conditional_edges("worker", fan_or_finish, ["worker", "finish"])
    d = g.compile().get_graph()
    assert edge(d, "split", "worker") == {**PLAIN, "conditional": True, "send": True}
    # A Literal name the path returns is a plain route; the other listed target is a Send's.
    assert edge(d, "worker", "finish") == {**PLAIN, "conditional": True}
    assert edge(d, "worker", "worker") == {**PLAIN, "conditional": True, "send": True}
    assert 'split -.->|"Send"| worker;' in d.draw_mermaid()


def go_somewhere(state: Any) -> Command[Literal["left", "__end__"]]:
    return Command(goto="left")


def test_command_destinations_from_annotations_and_destinations() -> None:
    g = StateGraph(Log)
    g.add_node("router", go_somewhere)
    g.add_node("left", noop, destinations=("right",))
    g.add_node("right", noop)
    g.add_edge(START, "router")
    d = g.compile().get_graph()
    cmd = {**PLAIN, "conditional": True, "command": True}
    assert edge(d, "router", "left") == cmd
    assert edge(d, "router", END) == cmd
    assert edge(d, "left", "right") == cmd
    assert not d.has_edge("router", "right")
    assert edge(d, "right", END) == PLAIN


def test_branch_without_declared_targets_may_go_anywhere() -> None:
    g = StateGraph(Log)
    g.add_node("a", noop)
    g.add_node("b", noop)
    g.add_edge(START, "a")
    g.add_conditional_edges("a", lambda s: "b")
    d = g.compile().get_graph()
    assert sorted(d.successors("a")) == [END, "a", "b"]
    assert all(d.edges["a", v]["conditional"] for v in d.successors("a"))


def test_merged_edges_keep_every_label_and_stay_plain_if_one_way_is() -> None:
    g = StateGraph(Log)
    g.add_node("a", noop)
    g.add_node("b", noop)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_conditional_edges("a", review_route, {"yes": "b", "sure": "b", "no": END})
    d = g.compile().get_graph()
    assert edge(d, "a", "b") == {**PLAIN, "label": "yes, sure"}


# -- xray -----------------------------------------------------------------------------


def nested() -> Any:
    grandchild = StateGraph(Log)
    grandchild.add_node("deep", noop)
    grandchild.add_edge(START, "deep")
    child = StateGraph(Log)
    child.add_node("first", noop)
    child.add_node("gc", grandchild.compile(name="grandchild"))
    child.add_edge(START, "first")
    child.add_edge("first", "gc")
    parent = StateGraph(Log)
    parent.add_node("before", noop)
    parent.add_node("child", child.compile(name="child"))
    parent.add_node("after", noop)
    parent.add_edge(START, "before")
    parent.add_conditional_edges("before", review_route, {"in": "child", "skip": "after"})
    parent.add_edge("child", "after")
    return parent.compile()


def test_xray_depths() -> None:
    graph = nested()
    assert list(graph.get_graph()) == [START, "before", "child", "after", END]
    assert graph.get_graph(xray=0).edges == graph.get_graph().edges
    one = graph.get_graph(xray=1)
    assert list(one) == [START, "before", "child:first", "child:gc", "after", END]
    assert one.nodes["child:gc"]["kind"] == "subgraph"
    assert one.nodes["child:first"]["name"] == "first"
    assert one.nodes["child:first"]["namespace"] == ("child",)
    deep = graph.get_graph(xray=True)
    assert list(deep) == [START, "before", "child:first", "child:gc:deep", "after", END]
    assert deep.nodes["child:gc:deep"]["namespace"] == ("child", "gc")
    assert list(deep.edges) == list(graph.get_graph(xray=2).edges)
    # Edges into a subgraph reach its first nodes; edges out leave from its last ones.
    assert edge(deep, "before", "child:first") == {**PLAIN, "conditional": True, "label": "in"}
    assert edge(deep, "child:first", "child:gc:deep") == PLAIN
    assert edge(deep, "child:gc:deep", "after") == PLAIN
    assert sorted(deep.edges) == sorted(
        [
            (START, "before"),
            ("before", "child:first"),
            ("before", "after"),
            ("child:first", "child:gc:deep"),
            ("child:gc:deep", "after"),
            ("after", END),
        ]
    )


def test_xray_mermaid_and_dot_group_subgraph_nodes() -> None:
    text = nested().get_graph(xray=True).draw_mermaid(with_styles=False)
    assert text == (
        "graph TD;\n"
        "\t__start__([<p>__start__</p>]):::startnode\n"
        "\tbefore(before)\n"
        "\tafter(after)\n"
        "\t__end__([<p>__end__</p>]):::endnode\n"
        '\tsubgraph child["child"]\n'
        "\t\tchild_3a_first(first)\n"
        '\t\tsubgraph child_3a_gc["gc"]\n'
        "\t\t\tchild_3a_gc_3a_deep(deep)\n"
        "\t\tend\n"
        "\tend\n"
        "\t__start__ --> before;\n"
        "\tafter --> __end__;\n"
        '\tbefore -.->|"skip"| after;\n'
        '\tbefore -.->|"in"| child_3a_first;\n'
        "\tchild_3a_first --> child_3a_gc_3a_deep;\n"
        "\tchild_3a_gc_3a_deep --> after;\n"
    )
    dot = nested().get_graph(xray=1).draw_dot()
    assert '\tsubgraph "cluster_child" {\n\t\tlabel="child";\n' in dot
    assert '\t\t"child:gc" [label="gc", shape=box3d, style=solid];\n' in dot


@pytest.mark.parametrize("bad", [-1, "yes", 1.5])
def test_xray_must_be_a_bool_or_a_depth(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="xray"):
        nested().get_graph(xray=bad)


# -- golden drawings ------------------------------------------------------------------

MERMAID = """\
---
config:
  flowchart:
    curve: linear
---
graph TD;
\t__start__([<p>__start__</p>]):::startnode
\tplan(plan)
\tresearch(research)
\twrite(write)
\treview(review)
\t__end__([<p>__end__</p>]):::endnode
\t__start__ --> plan;
\tplan --> research;
\tplan --> write;
\tresearch ==> review;
\treview -.->|"again"| plan;
\treview -.->|"ok"| __end__;
\twrite ==> review;
\tclassDef default fill:#eef2ff,stroke:#4c5a99,line-height:1.2
\tclassDef startnode fill-opacity:0
\tclassDef endnode fill:#c7d0f5
"""

DOT = """\
digraph "LangGraph" {
\tnode [shape=box, style=rounded];
\t"__start__" [shape=oval, style=solid];
\t"plan";
\t"research";
\t"write";
\t"review";
\t"__end__" [shape=oval, style=filled, fillcolor="#c7d0f5"];
\t"__start__" -> "plan";
\t"plan" -> "research";
\t"plan" -> "write";
\t"research" -> "review" [style=bold];
\t"review" -> "plan" [style=dashed, label="again"];
\t"review" -> "__end__" [style=dashed, label="ok"];
\t"write" -> "review" [style=bold];
}
"""

ASCII = """\
       +-----------+
       | __start__ |
       +-----------+
             *
             *
             v
         +------+
         | plan |
         +------+
            ***
        ****   ***
      v*          *v
+----------+   +-------+
| research |   | write |
+----------+   +-------+
      **          **
        ****   ***
            *v*
        +--------+
        | review |
        +--------+
             .
             . ok
             v
        +---------+
        | __end__ |
        +---------+

back edges:
  review ..> plan  (again)"""


def test_golden_mermaid() -> None:
    assert small().compile().get_graph().draw_mermaid() == MERMAID


def test_golden_dot() -> None:
    assert small().compile().get_graph().draw_dot() == DOT


def test_golden_ascii(capsys: pytest.CaptureFixture[str]) -> None:
    g = small().compile().get_graph()
    assert g.draw_ascii() == ASCII
    g.print_ascii()
    assert capsys.readouterr().out == ASCII + "\n"


def test_labels_and_names_are_escaped() -> None:
    g = StateGraph(Log)
    g.add_node("say hi", noop, metadata={"note": 'a "b" <c>'})
    g.add_node("end", noop)
    g.add_edge(START, "say hi")
    g.add_conditional_edges("say hi", review_route, {'x"y': "end", "z": END})
    d = g.compile().get_graph()
    mermaid = d.draw_mermaid(with_styles=False)
    assert (
        '\tsay_20_hi("say hi<hr/><small><em>note = a #quot;b#quot; #lt;c#gt;</em></small>")\n'
        in mermaid
    )
    assert "\tn_end(end)\n" in mermaid  # `end` is a Mermaid keyword
    assert '\tsay_20_hi -.->|"x#quot;y"| n_end;\n' in mermaid
    dot = d.draw_dot()
    assert '\t"say hi" [label="say hi\\nnote = a \\"b\\" <c>"];\n' in dot
    assert '\t"say hi" -> "end" [style=dashed, label="x\\"y"];\n' in dot


# -- determinism ----------------------------------------------------------------------


def drawings(graph: Any) -> tuple[str, ...]:
    d = graph.get_graph()
    return d.draw_ascii(), d.draw_dot(), d.draw_mermaid(), repr(sorted(d.edges(data=True)))


def test_drawings_are_stable_and_edges_ignore_insertion_order() -> None:
    graph = small().compile()
    assert drawings(graph) == drawings(graph)
    shuffled = small(order=("review", "write", "plan", "research")).compile()
    ascii_a, _, _, edges_a = drawings(graph)
    ascii_b, dot_b, _, edges_b = drawings(shuffled)
    assert (ascii_a, edges_a) == (ascii_b, edges_b)
    # Node lines follow insertion order (as LangGraph's do); edge lines do not.
    assert [ln for ln in dot_b.splitlines() if "->" in ln] == [
        ln for ln in DOT.splitlines() if "->" in ln
    ]


SEEDED = """
import operator, sys
from typing import Annotated, TypedDict
from stepgraph.engine import END, START, StateGraph

class Log(TypedDict):
    log: Annotated[list[str], operator.add]

g = StateGraph(Log)
for n in ("plan", "research", "write", "review", "x1", "x2", "x3"):
    g.add_node(n, lambda s: {})
g.add_edge(START, "plan")
for n in ("research", "write", "x1", "x2", "x3"):
    g.add_edge("plan", n)
g.add_edge(["research", "write"], "review")
g.add_edge(["x1", "x2", "x3"], "review")
g.add_conditional_edges("review", lambda s: "ok", {"ok": END, "again": "plan"})
d = g.compile().get_graph()
sys.stdout.write(d.draw_ascii() + d.draw_dot() + d.draw_mermaid() + repr(list(d.edges(data=True))))
"""


def test_drawings_do_not_depend_on_hash_seed() -> None:
    # Edges are kept in sets while building; this run's seed is random, the child's is 0.
    here = {"__name__": "seeded"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(SEEDED, "seeded", "exec", dont_inherit=True), here)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    child = subprocess.run(
        [sys.executable, "-c", SEEDED], env=env, capture_output=True, text=True, check=True
    )
    assert child.stdout == out.getvalue()
    assert "back edges:" in child.stdout


# -- low-level graphs -----------------------------------------------------------------


def test_low_level_pregel_edges_follow_channels() -> None:
    app = Pregel(
        nodes={
            "one": NodeBuilder().subscribe_only("a").do(lambda x: x).write_to("b"),
            "two": NodeBuilder().subscribe_only("b").do(lambda x: x).write_to("c", "a"),
            "sink": NodeBuilder().subscribe_only("c").do(lambda x: None),
        },
        channels={"a": EphemeralValue(int), "b": LastValue(int), "c": LastValue(int)},
        input_channels="a",
        output_channels="c",
    )
    d = app.get_graph()
    assert list(d) == [START, "one", "two", "sink", END]
    assert edge(d, START, "one") == {**PLAIN, "channels": ("a",)}
    assert edge(d, "one", "two") == {**PLAIN, "channels": ("b",)}
    assert edge(d, "two", "one") == {**PLAIN, "channels": ("a",)}
    assert edge(d, "two", "sink") == {**PLAIN, "channels": ("c",)}
    assert edge(d, "two", END) == {**PLAIN, "channels": ("c",)}
    assert edge(d, "sink", END) == PLAIN  # writes nothing
    assert d.draw_ascii().endswith("back edges:\n  two --> one")


def test_entrypoint_graph() -> None:
    @entrypoint()
    def workflow(x: int) -> int:
        return x + 1

    d = workflow.get_graph()
    assert list(d) == [START, "workflow", END]
    assert edge(d, START, "workflow") == {**PLAIN, "channels": (START,)}
    # Its writer is a function: it is drawn as possibly ending the run.
    assert edge(d, "workflow", END) == {**PLAIN, "conditional": True}
    assert d.draw_mermaid(with_styles=False) == (
        "graph TD;\n"
        "\t__start__([<p>__start__</p>]):::startnode\n"
        "\tworkflow(workflow)\n"
        "\t__end__([<p>__end__</p>]):::endnode\n"
        "\t__start__ --> workflow;\n"
        "\tworkflow -.-> __end__;\n"
    )


def test_entrypoint_as_a_subgraph_node_expands() -> None:
    @entrypoint()
    def inner(state: dict[str, Any]) -> dict[str, Any]:
        return {}

    g = StateGraph(Log)
    g.add_node("wf", inner)
    g.add_edge(START, "wf")
    graph = g.compile()
    assert graph.get_graph().nodes["wf"]["kind"] == "subgraph"
    d = graph.get_graph(xray=True)
    assert list(d.edges) == [(START, "wf:inner"), ("wf:inner", END)]
    assert edge(d, "wf:inner", END)["conditional"] is True


def test_aget_graph() -> None:
    graph = small().compile()
    d = asyncio.run(graph.aget_graph(xray=True))
    assert d.draw_dot() == DOT


# -- PNG ------------------------------------------------------------------------------


def test_png_without_graphviz_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "graphviz", None)  # `import graphviz` fails
    with pytest.raises(ImportError, match="apt-get install graphviz") as info:
        small().compile().get_graph().draw_png()
    assert "pip install graphviz" in str(info.value)


def test_png_through_graphviz_package_without_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    class ExecutableNotFound(RuntimeError):
        pass

    class Source:
        def __init__(self, text: str) -> None:
            self.text = text

        def pipe(self, format: str) -> bytes:
            raise ExecutableNotFound("failed to execute 'dot'")

    fake = types.ModuleType("graphviz")
    fake.Source = Source  # type: ignore[attr-defined]
    fake.ExecutableNotFound = ExecutableNotFound  # type: ignore[attr-defined]
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "graphviz", fake)
    with pytest.raises(ImportError, match="apt-get install graphviz"):
        small().compile().get_graph().draw_png()
    Source.pipe = lambda self, format: b"PNG:" + self.text.encode()[:7]  # type: ignore[method-assign]
    assert small().compile().get_graph().draw_png() == b"PNG:digraph"


def test_png_with_dot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import shutil

    fake_dot = tmp_path / "dot"
    fake_dot.write_text('#!/bin/sh\n[ "$1" = "-Tpng" ] || exit 3\nhead -c 7; printf "|png"\n')
    fake_dot.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(fake_dot) if name == "dot" else None)
    out = tmp_path / "graph.png"
    assert small().compile().get_graph().draw_png(out) == b"digraph|png"
    assert out.read_bytes() == b"digraph|png"
    fake_dot.write_text("#!/bin/sh\necho 'syntax error' >&2; exit 1\n")
    with pytest.raises(RuntimeError, match="syntax error"):
        small().compile().get_graph().draw_png()

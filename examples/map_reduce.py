"""Map-reduce with Send: count words in parallel, merge the counts, report the top words.

Run it:  python examples/map_reduce.py [--db PATH] [--thread ID]

The graph:  START --Send per chunk--> count_words (parallel) --> merge --> report --> END

Every superstep is saved in a SQLite file (``.stepgraph/examples.db`` by default), the
embedded default saver: the run prints its checkpoints at the end, and running it again
with the same ``--thread`` shows the saved state instead of recomputing it.
"""

from __future__ import annotations

import argparse
import operator
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, TypedDict

from stepgraph.checkpoint import BaseCheckpointSaver, SqliteSaver
from stepgraph.engine import END, START, Send, StateGraph, get_stream_writer

TEXT = """\
A superstep runs every task whose inputs changed. Tasks in a superstep all see the same
state; none sees another's writes until the barrier. At the barrier the writes are applied
in a fixed order, so the result never depends on which task finished first.
Channels hold the state. Each channel has a rule for merging the writes of one superstep:
keep the last value, add lists together, or wait until every branch has arrived.
"""


class State(TypedDict):
    chunks: list[str]
    counts: Annotated[list[dict[str, int]], operator.add]  # one Counter per chunk
    totals: dict[str, int]
    top: list[tuple[str, int]]


def split_into_chunks(state: State) -> list[Send]:
    """Fan out: one `count_words` task per chunk, all in the same superstep."""
    return [Send("count_words", chunk) for chunk in state["chunks"]]


def count_words(chunk: str) -> dict[str, Any]:
    words = [w for w in re.findall(r"[a-z']+", chunk.lower()) if len(w) > 3]
    get_stream_writer()(f"counted {len(words)} words")
    return {"counts": [dict(Counter(words))]}


def merge(state: State) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    for part in state["counts"]:
        totals.update(part)
    return {"totals": dict(totals)}


def report(state: State) -> dict[str, Any]:
    ranked = sorted(state["totals"].items(), key=lambda kv: (-kv[1], kv[0]))
    return {"top": ranked[:5]}


def build(checkpointer: BaseCheckpointSaver | None = None) -> Any:
    graph = StateGraph(State)
    graph.add_node(count_words)
    graph.add_node(merge)
    graph.add_node(report)
    graph.add_conditional_edges(START, split_into_chunks, ["count_words"])
    graph.add_edge("count_words", "merge")
    graph.add_edge("merge", "report")
    graph.add_edge("report", END)
    return graph.compile(checkpointer=checkpointer)


graph = build()
"""The compiled graph, without a checkpointer: a target for ``stepgraph run``."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, default=Path(".stepgraph/examples.db"))
    parser.add_argument("--thread", default=None, help="thread id (default: a new one)")
    args = parser.parse_args(argv)
    thread = args.thread or f"map-reduce-{uuid.uuid4().hex[:8]}"
    config = {"configurable": {"thread_id": thread}}
    with SqliteSaver(args.db) as saver:
        app = build(saver)
        saved = app.get_state(config)
        if saved.values and not saved.next:
            print(f"thread {thread!r} already finished; its saved result:")
            final = saved.values
        else:
            chunks = [line for line in TEXT.splitlines() if line.strip()]
            final = {}
            inp = {"chunks": chunks} if not saved.values else None  # None: resume
            modes = ["custom", "updates", "values"]
            for mode, chunk in app.stream(inp, config, stream_mode=modes):
                if mode == "custom":
                    print(f"  progress: {chunk}")
                elif mode == "updates":
                    print(f"step done: {', '.join(chunk)}")
                else:
                    final = chunk
        print("top words:")
        for word, n in final["top"]:
            print(f"  {word:<10} {n}")
        history = list(app.get_state_history(config))
        print(f"saved {len(history)} checkpoints of thread {thread!r} in {args.db}:")
        for snap in reversed(history):
            meta = snap.metadata
            print(f"  step {meta['step']:>2}  {meta['source']:<6} next={list(snap.next)}")


if __name__ == "__main__":
    main()

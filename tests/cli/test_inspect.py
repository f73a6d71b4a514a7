"""`stepgraph threads|state|history|replay|fork|prune|draw`, driven in a subprocess.

State is made in-process first, with a SqliteSaver on a temporary file, from a graph
module written into tmp_path; the CLI then reads the same file.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from stepgraph.checkpoint import SqliteSaver

GRAPHS = textwrap.dedent(
    """
    import operator
    from typing import Annotated, TypedDict

    from stepgraph.engine import END, START, StateGraph, interrupt


    class State(TypedDict):
        n: int
        log: Annotated[list[str], operator.add]


    def double(state: State) -> dict:
        return {"n": state["n"] * 2, "log": ["double"]}


    def inc(state: State) -> dict:
        return {"n": state["n"] + 1, "log": ["inc"]}


    def review(state: State) -> dict:
        answer = interrupt({"question": "keep it?", "n": state["n"]})
        return {"log": [f"review:{answer}"]}


    def build(checkpointer=None, ask=False):
        g = StateGraph(State)
        g.add_node(double)
        g.add_node(inc)
        g.add_edge(START, "double")
        g.add_edge("double", "inc")
        if ask:
            g.add_node(review)
            g.add_edge("inc", "review")
            g.add_edge("review", END)
        else:
            g.add_edge("inc", END)
        return g.compile(checkpointer=checkpointer)


    graph = build()
    paused = build(ask=True)
    not_a_graph = 42
    """
)


def cli(cwd: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "stepgraph.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    return done


def cli_json(cwd: Path, *args: str) -> Any:
    return json.loads(cli(cwd, *args, "--json").stdout)


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, str]:
    """tmp_path holds graphs.py and a SQLite file with threads t1 (done) and t2 (paused)."""
    (tmp_path / "graphs.py").write_text(GRAPHS)
    spec = importlib.util.spec_from_file_location("_inspect_graphs", tmp_path / "graphs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    db = tmp_path / "state.db"
    with SqliteSaver(db) as saver:
        module.build(saver).invoke({"n": 3, "log": []}, {"configurable": {"thread_id": "t1"}})
        module.build(saver, ask=True).invoke(
            {"n": 1, "log": []}, {"configurable": {"thread_id": "t2"}}
        )
    return tmp_path, f"sqlite:///{db.name}"


def test_threads_lists_every_thread(store: tuple[Path, str]) -> None:
    cwd, url = store
    out = cli(cwd, "threads", "--checkpointer", url).stdout
    assert "t1" in out and "t2" in out and "checkpoints" in out
    rows = {r["thread"]: r for r in cli_json(cwd, "threads", "--checkpointer", url)}
    assert rows["t1"]["checkpoints"] == 4  # input, __start__, double, inc
    assert rows["t1"]["latest_step"] == 2
    assert rows["t2"]["checkpoints"] == 4  # paused before review ran
    assert rows["t1"]["updated_at"].startswith("20")


def test_threads_on_an_empty_store(tmp_path: Path) -> None:
    out = cli(tmp_path, "threads", "--checkpointer", "sqlite:///empty.db").stdout
    assert "no threads" in out
    assert cli_json(tmp_path, "threads", "--checkpointer", "sqlite:///empty.db") == []


def test_state_without_a_target_shows_raw_channels(store: tuple[Path, str]) -> None:
    cwd, url = store
    out = cli(cwd, "state", "--thread", "t1", "--checkpointer", url).stdout
    assert '"n": 7' in out and "finished" in out
    report = cli_json(cwd, "state", "--thread", "t1", "--checkpointer", url)
    assert report["values"] == {"n": 7, "log": ["double", "inc"]}
    assert report["next"] == [] and report["step"] == 2


def test_state_shows_interrupts_with_and_without_target(store: tuple[Path, str]) -> None:
    cwd, url = store
    raw = cli_json(cwd, "state", "--thread", "t2", "--checkpointer", url)
    assert raw["next"] == ["review"]
    [question] = raw["interrupts"]
    assert question["value"] == {"question": "keep it?", "n": 3}
    full = cli_json(cwd, "state", "graphs.py:paused", "--thread", "t2", "--checkpointer", url)
    assert full["next"] == ["review"]
    assert full["values"] == {"n": 3, "log": ["double", "inc"]}
    assert full["interrupts"][0]["value"]["question"] == "keep it?"
    assert full["interrupts"][0]["id"] == question["id"]
    out = cli(cwd, "state", "graphs.py:paused", "--thread", "t2", "--checkpointer", url).stdout
    assert "interrupts" in out and "keep it?" in out and "next: review" in out


def test_state_at_an_older_checkpoint(store: tuple[Path, str]) -> None:
    cwd, url = store
    rows = cli_json(cwd, "history", "--thread", "t1", "--checkpointer", url)
    after_double = next(r for r in rows if r["step"] == 1)
    report = cli_json(
        cwd, "state", "graphs.py:graph", "--thread", "t1", "--checkpoint", after_double["id"],
        "--checkpointer", url,
    )  # fmt: skip
    assert report["values"]["n"] == 6 and report["next"] == ["inc"]


def test_history_table_and_json(store: tuple[Path, str]) -> None:
    cwd, url = store
    rows = cli_json(cwd, "history", "--thread", "t1", "--checkpointer", url)
    assert [r["step"] for r in rows] == [-1, 0, 1, 2]  # oldest first
    assert [r["source"] for r in rows] == ["input", "loop", "loop", "loop"]
    assert [r["nodes"] for r in rows] == [[], ["__start__"], ["double"], ["inc"]]
    out = cli(cwd, "history", "--thread", "t1", "--checkpointer", url).stdout
    for header in ("step", "source", "node", "time", "id"):
        assert header in out
    for row in rows:
        assert row["id"] in out  # ids are printed whole, ready to copy
    assert "double" in out and "input" in out
    latest = cli_json(cwd, "history", "--thread", "t1", "--limit", "2", "--checkpointer", url)
    assert [r["step"] for r in latest] == [1, 2]
    assert latest[0]["nodes"] == ["double"]  # known even though its parent is not shown


def test_replay_from_a_checkpoint(store: tuple[Path, str]) -> None:
    cwd, url = store
    rows = cli_json(cwd, "history", "--thread", "t1", "--checkpointer", url)
    after_double = next(r for r in rows if r["step"] == 1)["id"]
    args = ("replay", "graphs.py:graph", "--thread", "t1", "--checkpoint", after_double)
    out = cli(cwd, *args, "--checkpointer", url).stdout
    assert "final state" in out and '"n": 7' in out
    report = cli_json(cwd, *args, "--checkpointer", url)
    assert report["values"] == {"n": 7, "log": ["double", "inc"]}
    assert report["checkpoint"] != rows[-1]["id"]  # a new branch


def test_replay_that_pauses_exits_interrupted(store: tuple[Path, str]) -> None:
    cwd, url = store
    rows = cli_json(cwd, "history", "--thread", "t2", "--checkpointer", url)
    first = rows[0]["id"]
    done = cli(
        cwd, "replay", "graphs.py:paused", "--thread", "t2", "--checkpoint", first,
        "--checkpointer", url, code=4,
    )  # fmt: skip
    assert "keep it?" in done.stdout and "--resume" in done.stdout


def test_fork_then_continue(store: tuple[Path, str]) -> None:
    cwd, url = store
    rows = cli_json(cwd, "history", "--thread", "t1", "--checkpointer", url)
    after_double = next(r for r in rows if r["step"] == 1)["id"]
    base = ("graphs.py:graph", "--thread", "t1", "--checkpointer", url)
    out = cli(
        cwd, "fork", *base, "--checkpoint", after_double, "--values", '{"n": 100}',
        "--as-node", "double",
    ).stdout  # fmt: skip
    assert "new checkpoint" in out and "stepgraph replay" in out
    forked = cli_json(
        cwd, "fork", *base, "--checkpoint", after_double, "--values", '{"n": 100}',
        "--as-node", "double",
    )  # fmt: skip
    assert forked["parent"] == after_double and forked["next"] == ["inc"]
    state = cli_json(cwd, "state", *base, "--checkpoint", forked["checkpoint"])
    assert state["values"]["n"] == 100 and state["next"] == ["inc"]
    replayed = cli_json(cwd, "replay", *base, "--checkpoint", forked["checkpoint"])
    assert replayed["values"]["n"] == 101


def test_fork_rejects_bad_values(store: tuple[Path, str]) -> None:
    cwd, url = store
    rows = cli_json(cwd, "history", "--thread", "t1", "--checkpointer", url)
    base = ("fork", "graphs.py:graph", "--thread", "t1", "--checkpoint", rows[1]["id"])
    done = cli(cwd, *base, "--values", "{n: 1", "--checkpointer", url, code=3)
    assert "--values is not valid JSON" in done.stderr
    done = cli(
        cwd, *base, "--values", '{"n": 1}', "--as-node", "nope", "--checkpointer", url, code=3
    )
    assert "refused" in done.stderr and "Traceback" not in done.stderr


def test_prune_keeps_the_latest(store: tuple[Path, str]) -> None:
    cwd, url = store
    out = cli(cwd, "prune", "--thread", "t1", "--keep", "2", "--checkpointer", url).stdout
    assert "removed 2 checkpoint(s), 2 left" in out
    rows = cli_json(cwd, "history", "--thread", "t1", "--checkpointer", url)
    assert [r["step"] for r in rows] == [1, 2]
    report = cli_json(cwd, "prune", "--thread", "t1", "--thread", "t2", "--checkpointer", url)
    assert [(r["thread"], r["after"]) for r in report] == [("t1", 1), ("t2", 1)]
    cli(cwd, "prune", "--thread", "t2", "--delete", "--checkpointer", url)
    threads = cli_json(cwd, "threads", "--checkpointer", url)
    assert [t["thread"] for t in threads] == ["t1"]


@pytest.mark.parametrize(
    ("fmt", "expect"),
    [("mermaid", "graph TD"), ("ascii", "| double |"), ("dot", "digraph")],
)
def test_draw(tmp_path: Path, fmt: str, expect: str) -> None:
    (tmp_path / "graphs.py").write_text(GRAPHS)
    out = cli(tmp_path, "draw", "graphs.py:graph", "--format", fmt).stdout
    assert expect in out and "double" in out and "inc" in out
    assert cli_json(tmp_path, "draw", "graphs.py:graph", "--format", fmt)["format"] == fmt


def test_draw_an_example_by_module_path() -> None:
    root = Path(__file__).resolve().parents[2]
    out = cli(root, "draw", "examples/tool_loop.py:graph", "--format", "mermaid").stdout
    assert "model -.-> tools" in out and "tools --> model" in out


def test_errors_are_short_with_distinct_codes(store: tuple[Path, str]) -> None:
    cwd, url = store
    for args in (
        ("state", "--thread", "nope"),
        ("history", "--thread", "nope"),
        ("prune", "--thread", "nope"),
        ("state", "--thread", "t1", "--checkpoint", "no-such-id"),
    ):
        done = cli(cwd, *args, "--checkpointer", url, code=2)
        assert done.stderr.startswith("error:") and "Traceback" not in done.stderr
    done = cli(cwd, "state", "--thread", "t1", "--checkpoint", "bad", "--checkpointer", url, code=2)
    assert "history --thread t1" in done.stderr
    for target in ("graphs.py:missing", "graphs.py:not_a_graph", "nowhere.py:graph", "bad"):
        done = cli(cwd, "draw", target, code=2)
        assert done.stderr.startswith("error:") and "Traceback" not in done.stderr
    done = cli(cwd, "replay", "graphs.py:graph", "--thread", "nope", "--checkpoint", "x",
               "--checkpointer", url, code=2)  # fmt: skip
    assert "nope" in done.stderr
    done = cli(cwd, "draw", "graphs.py:graph", "--format", "svg", code=3)
    assert "mermaid, ascii, dot" in done.stderr
    done = cli(cwd, "threads", "--checkpointer", "ftp://x", code=3)
    assert "checkpointer" in done.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    cwd = tmp_path
    (cwd / "broken.py").write_text("raise RuntimeError('boom')\n")
    done = cli(cwd, "draw", "broken.py:graph", "--debug", code=2)
    assert "Traceback" in done.stderr and "boom" in done.stderr
    done = cli(cwd, "draw", "broken.py:graph", code=2)
    assert "Traceback" not in done.stderr and "boom" in done.stderr


def test_a_postgresql_checkpointer_url(
    tmp_path: Path, postgres_dsn: str, postgres_schema: str
) -> None:
    (tmp_path / "graphs.py").write_text(GRAPHS)
    sep = "&" if "?" in postgres_dsn else "?"
    url = f"{postgres_dsn}{sep}schema={postgres_schema}"
    args = ("--checkpointer", url)
    cli(
        tmp_path,
        "run",
        "graphs.py:graph",
        "--input",
        '{"n": 3, "log": []}',
        "--thread",
        "p1",
        *args,
    )
    rows = cli_json(tmp_path, "threads", *args)
    assert [(r["thread"], r["checkpoints"]) for r in rows] == [("p1", 4)]
    history = cli_json(tmp_path, "history", "--thread", "p1", *args)
    assert len(history) == 4
    bad = cli(tmp_path, "threads", "--checkpointer", "postgresql://nobody@127.0.0.1:1/db", code=3)
    assert "cannot open PostgreSQL checkpointer" in bad.stderr

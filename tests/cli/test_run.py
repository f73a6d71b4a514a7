"""`stepgraph run`, driven as a real command in a subprocess against a temporary SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

GRAPHS = """
import time
from typing import TypedDict

from stepgraph.engine import END, START, RetryPolicy, StateGraph, interrupt


class S(TypedDict, total=False):
    topic: str
    log: list
    n: int


def draft(s):
    return {"log": ["draft " + s["topic"]]}


def review(s):
    answer = interrupt({"question": "publish " + s["topic"] + "?"})
    return {"log": s["log"] + ["review " + str(answer)]}


def two_questions(s):
    a = interrupt("first?")
    b = interrupt("second?")
    return {"log": [f"{a}+{b}"]}


def boom(s):
    raise ValueError("the node broke")


def slow(s):
    time.sleep(s["n"])
    return {"n": s["n"] + 1}


def one(fn, **kw):
    b = StateGraph(S)
    b.add_node("a", fn, **kw)
    b.add_edge(START, "a")
    b.add_edge("a", END)
    return b.compile()


b = StateGraph(S)
b.add_node("draft", draft)
b.add_node("review", review)
b.add_edge(START, "draft")
b.add_edge("draft", "review")
b.add_edge("review", END)
essay = b.compile()
twice = one(two_questions)
broken = one(boom)
sleepy = one(slow)
c = StateGraph(S)
c.add_node("first", slow)
c.add_node("second", slow)
c.add_edge(START, "first")
c.add_edge("first", "second")
c.add_edge("second", END)
two_slow = c.compile()
not_a_graph = 42
"""


@pytest.fixture
def cli(tmp_path: Path):
    (tmp_path / "graphs.py").write_text(textwrap.dedent(GRAPHS))
    db = f"sqlite:///{tmp_path}/s.db"  # an absolute path: sqlite:////tmp/...

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stepgraph.cli", "run", *args, "--checkpointer", db],
            cwd=tmp_path,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=30,
        )

    run.db = db  # type: ignore[attr-defined]
    run.cwd = tmp_path  # type: ignore[attr-defined]
    return run


def test_plain_run_prints_the_final_state(cli) -> None:
    (cli.cwd / "in.json").write_text('{"n": 0}')
    r = cli("graphs.py:sleepy", "--input", "@in.json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "{'n': 1}"
    assert "thread " in r.stderr and "✓ a" in r.stderr


def test_json_events_and_resume_without_prompting(cli) -> None:
    r = cli("graphs.py:essay", "--input", '{"topic": "cats"}', "--json", "--resume", '"yes"')
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert {"task_start", "task_end", "update", "interrupt"} <= set(kinds)
    (asked,) = [e for e in events if e["event"] == "interrupt"]
    assert asked["value"] == {"question": "publish cats?"}
    assert events[-1]["values"] == {"topic": "cats", "log": ["draft cats", "review yes"]}


def test_a_paused_run_without_a_tty_exits_4_with_the_resume_command(cli) -> None:
    r = cli("graphs.py:essay", "--input", '{"topic": "dogs"}', "--thread", "t1")
    assert r.returncode == 4, r.stderr
    assert "publish dogs?" in r.stderr
    assert f"stepgraph run graphs.py:essay --thread t1 --checkpointer {cli.db}" in r.stderr
    assert "--resume '<json>'" in r.stderr
    r = cli("graphs.py:essay", "--thread", "t1", "--resume", '"later"')
    assert r.returncode == 0, r.stderr
    assert "'review later'" in r.stdout


def test_a_second_interrupt_after_resume_exits_4(cli) -> None:
    r = cli("graphs.py:twice", "--input", "{}", "--thread", "t2", "--resume", '"a"')
    assert r.returncode == 4, r.stderr
    assert "second?" in r.stderr
    r = cli("graphs.py:twice", "--thread", "t2", "--resume", '"b"')
    assert r.returncode == 0, r.stderr
    assert "a+b" in r.stdout


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("graphs.py:missing", "has no attribute 'missing'"),
        ("graphs.py:not_a_graph", "is a int, not a compiled graph"),
        ("nowhere.py:graph", "no such file"),
        ("no_such_module_xyz:graph", "no module named 'no_such_module_xyz'"),
        ("graphs.py", "must look like 'module:attribute'"),
    ],
)
def test_bad_targets_say_why(cli, monkeypatch, target: str, message: str) -> None:
    from stepgraph.cli._common import CliError, ExitCode, load_target

    monkeypatch.chdir(cli.cwd)
    with pytest.raises(CliError) as caught:
        load_target(target)
    assert caught.value.code == ExitCode.BAD_TARGET
    assert message in caught.value.message


def test_bad_target_exits_2(cli) -> None:
    r = cli("graphs.py:missing", "--input", "{}")
    assert r.returncode == 2
    assert "has no attribute 'missing'" in r.stderr and "Traceback" not in r.stderr
    assert "essay" in r.stderr  # the hint lists the graphs the file defines


def test_bad_input_exits_3(cli, monkeypatch) -> None:
    from stepgraph.cli._common import CliError, ExitCode, parse_json_input

    r = cli("graphs.py:essay", "--input", '{"topic": ')
    assert r.returncode == 3
    assert "--input is not valid JSON" in r.stderr and "Traceback" not in r.stderr
    assert cli("graphs.py:essay").returncode == 3  # a new run needs input
    monkeypatch.chdir(cli.cwd)
    with pytest.raises(CliError) as caught:
        parse_json_input("@nope.json")
    assert (
        caught.value.code == ExitCode.BAD_INPUT and "cannot read nope.json" in caught.value.message
    )


def test_a_failing_node_exits_1_briefly_and_debug_shows_the_traceback(cli) -> None:
    r = cli("graphs.py:broken", "--input", "{}")
    assert r.returncode == 1
    assert "error: ValueError: the node broke" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli("graphs.py:broken", "--input", "{}", "--debug")
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "the node broke" in r.stderr


def _start_slow(cli, thread: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "stepgraph.cli", "run", "graphs.py:two_slow"]
    args = ["--input", '{"n": 1}', "--thread", thread, "--checkpointer", cli.db]
    proc = subprocess.Popen(
        cmd + args, cwd=cli.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 10
    while not (cli.cwd / "s.db").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the first node is sleeping now
    return proc


def test_ctrl_c_stops_at_the_next_barrier_and_leaves_a_resumable_run(cli) -> None:
    proc = _start_slow(cli, "slow")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err
    assert "stopping after this superstep" in err
    assert "✓ first" in err and "second" not in err.split("stopping")[1].split("stopped")[0]
    assert f"stepgraph run graphs.py:two_slow --thread slow --checkpointer {cli.db}" in err
    r = cli("graphs.py:two_slow", "--thread", "slow")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "{'n': 3}"
    assert "✓ second" in r.stderr and "first" not in r.stderr  # finished work not redone


def test_a_second_ctrl_c_stops_at_once(cli) -> None:
    proc = _start_slow(cli, "now")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err
    r = cli("graphs.py:two_slow", "--thread", "now")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "{'n': 3}"


def test_the_interactive_prompt(cli) -> None:
    pexpect = pytest.importorskip("pexpect")
    args = ["-m", "stepgraph.cli", "run", "graphs.py:essay", "--input", '{"topic": "owls"}']
    child = pexpect.spawn(
        sys.executable,
        [*args, "--checkpointer", cli.db],
        cwd=str(cli.cwd),
        env={**os.environ, "COLUMNS": "200", "TERM": "dumb"},
        encoding="utf-8",
        timeout=15,
    )
    child.expect("publish owls")
    child.expect("answer")
    child.sendline("not json")
    child.expect("not valid JSON")
    child.expect("answer")
    child.sendline('"sure"')
    child.expect("review sure")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_extra_stream_modes_and_module_targets(cli) -> None:
    r = cli("graphs:sleepy", "--input", '{"n": 0}', "--stream", "values", "--json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    shown = [e["chunk"] for e in events if e["event"] == "stream" and e["mode"] == "values"]
    assert shown[-1] == {"n": 1}
    bad = cli("graphs:sleepy", "--input", '{"n": 0}', "--stream", "nonsense")
    assert bad.returncode == 3 and "unknown stream mode" in bad.stderr

"""The example programs run as a user runs them: in a subprocess, from a fresh shell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_map_reduce_saves_every_step_and_reuses_a_finished_thread(tmp_path: Path) -> None:
    db = tmp_path / "examples.db"
    first = run("examples/map_reduce.py", "--db", str(db), "--thread", "t1")
    assert "superstep  3" in first
    assert "saved 5 checkpoints of thread 't1'" in first
    assert "step -1  input" in first and "step  3  loop   next=[]" in first
    again = run("examples/map_reduce.py", "--db", str(db), "--thread", "t1")
    assert "already finished" in again
    assert "step done" not in again  # nothing ran again
    assert (
        again.split("top words:")[1].split("saved")[0]
        == first.split("top words:")[1].split("saved")[0]
    )


def test_essay_review_pauses_for_a_person_and_reuses_the_saved_draft(tmp_path: Path) -> None:
    db = str(tmp_path / "examples.db")
    out = run("examples/essay_review.py", "--db", db, "--topic", "moons", "--answer", "yes")
    assert "Everyone has seen moons" in out
    assert "status: approved" in out
    assert "drafts written: 1" in out
    revised = run("examples/essay_review.py", "--db", db, "--answer", "shorter please")
    assert "status: revised" in revised and "(revised: shorter please)" in revised


def test_essay_review_asks_on_the_terminal_when_no_answer_is_given(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "examples/essay_review.py", "--db", str(tmp_path / "e.db")],
        input="no\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "approve? (yes / no / notes)" in done.stdout
    assert "status: rejected" in done.stdout


def test_flaky_map_reduce_retries_failed_calls_and_caches_results(tmp_path: Path) -> None:
    db = str(tmp_path / "examples.db")
    out = run("examples/flaky_map_reduce.py", "--db", db, "--failure-rate", "0.5", "--seed", "3")
    assert out.count("summary: 5 cities, warmest Oslo") == 2
    assert "retry: weather service timed out" in out
    second = out.split("-- second run")[1]
    assert second.count("(cached)") == 5
    assert "retry" not in second
    assert out.strip().endswith("in the second") and " 0 in the second" in out


def test_tool_loop_calls_tools_until_the_scripted_model_answers() -> None:
    out = run("examples/tool_loop.py")
    assert "assistant -> calculator('6*7')" in out
    assert "tool calculator: 42" in out and "assistant: The answer is 42." in out
    assert "tool lookup: Lima" in out


def test_examples_expose_graphs_without_a_checkpointer() -> None:
    code = (
        "import importlib.util, sys\n"
        "for name in ['map_reduce', 'essay_review', 'flaky_map_reduce', 'tool_loop']:\n"
        "    spec = importlib.util.spec_from_file_location(name, f'examples/{name}.py')\n"
        "    mod = importlib.util.module_from_spec(spec)\n"
        "    sys.modules[name] = mod\n"
        "    spec.loader.exec_module(mod)\n"
        "    assert mod.graph.checkpointer is None, name\n"
        "print('ok')\n"
    )
    assert run("-c", code).strip() == "ok"


def test_the_readme_main_job_runs_through_the_cli(tmp_path: Path) -> None:
    # The README's first command, from a fresh working directory.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepgraph.cli",
            "run",
            str(ROOT / "examples/map_reduce.py:graph"),
            "--input",
            f"@{ROOT / 'examples/map_reduce_input.json'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "('superstep', 3)" in done.stdout
    assert (tmp_path / ".stepgraph" / "stepgraph.db").exists()

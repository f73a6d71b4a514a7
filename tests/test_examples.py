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

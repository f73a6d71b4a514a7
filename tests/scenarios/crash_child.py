"""The process that `test_crash.py` kills: a small graph run on a SQLite file.

Run as ``python crash_child.py run '<spec json>'`` (one run in a fresh interpreter,
"ready" printed on stdout just before the saver is opened) or as
``python crash_child.py serve`` (a fork server: it imports stepgraph once, then for each
JSON request on stdin forks a worker that does one run, optionally SIGKILLs it after a
delay, reaps it and answers with one JSON line on stdout). Forking saves the 0.7 s an
interpreter needs to import stepgraph, so a test can afford dozens of kills; each worker
is still a separate process with its own SQLite connection, opened after the fork.

The graph::

    START -> a, b, c (parallel) -> join -> plan -> Send x4 -> work -> tally -> plan ... END

``plan`` runs ``ROUNDS`` times; ``work`` also appends a large string (``BIG``), so
pending writes and append deltas share blobs. Every node sleeps a little (0-15 ms, drawn from an RNG
keyed by the seed and the task id) and, as the last thing before it returns, appends
``"<tag> <task id> <label> <step>\\n"`` to a side-effect log (one ``write`` on an
``O_APPEND`` descriptor, then ``fsync``). ``<label>`` names the task within the run
(``a``, ``plan2``, ``work2.3``, ...) independently of checkpoint ids, so a task run
again from a different checkpoint is still recognized; ``<tag>`` names the process.

A spec may carry a ``hook`` that makes the worker SIGKILL itself at a precise moment:

``{"where": "task", "phase": "before" | "after", "n": k}``
    in the k-th task this process starts: before it does anything, or right after its
    log line is on disk (so it did its side effect but never returned);
``{"where": "store" | "writes", "phase": "before" | "mid" | "after", "n": k}``
    at the k-th checkpoint store (``SqliteSaver._store``) or pending-writes store
    (``_store_writes``): before it runs; after its statements ran, inside the still
    open transaction, just before ``COMMIT`` (in a ``batch()`` that is the batch's
    commit); or right after that ``COMMIT``;
``{"where": "commit", "phase": "before" | "after", "n": k}``
    just before / just after the k-th ``COMMIT`` of any write transaction (leases
    included).

``{"where": "count"}`` kills nothing and reports how many of each happened.
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import random
import select
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from stepgraph.checkpoint import SqliteSaver
from stepgraph.engine import END, START, Send, StateGraph, get_config

ROUNDS = 3
WORK_ITEMS = 4
MAX_SLEEP = 0.015
INPUT: dict[str, Any] = {"log": ["start"], "round": 0, "total": 0, "big": []}


BIG = 300  # characters: a write this large is stored as a blob the next delta shares


class State(TypedDict):
    log: Annotated[list[str], operator.add]
    round: int
    total: Annotated[int, operator.add]
    big: Annotated[list[str], operator.add]


def die() -> None:
    """SIGKILL this process: no cleanup, no flush, no ``finally``."""
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # never reached: the signal is delivered before kill() returns


class Hooks:
    """Counts tasks, stores and commits of this process; kills it at the chosen one."""

    def __init__(self, hook: dict[str, Any] | None) -> None:
        hook = hook or {"where": "count"}
        self.where: str = hook["where"]
        self.phase: str = hook.get("phase", "")
        self.n: int = hook.get("n", 0)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._at_next_commit = ""  # "before" | "after": die at the next COMMIT

    def _hit(self, where: str) -> bool:
        with self._lock:
            self.counts[where] += 1
            return self.where == where and self.counts[where] == self.n

    # -- tasks ------------------------------------------------------------------

    def task_start(self) -> bool:
        """Count a task; kill now (phase "before") or return True to kill after its log."""
        if not self._hit("task"):
            return False
        if self.phase == "before":
            die()
        return True

    # -- storage ----------------------------------------------------------------

    def install(self, saver: SqliteSaver) -> None:
        saver._conn = _Conn(saver._conn, self)  # type: ignore[assignment]
        for where, name in (("store", "_store"), ("writes", "_store_writes")):
            setattr(saver, name, self._wrap(where, getattr(saver, name)))

    def _wrap(self, where: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self._hit(where):
                return original(*args, **kwargs)
            if self.phase == "before":
                die()
            # Its statements run inside a transaction that commits either at the end of
            # `original` or, inside batch(), when the batch ends: die around that COMMIT.
            self._at_next_commit = "before" if self.phase == "mid" else "after"
            return original(*args, **kwargs)

        return wrapper

    def on_commit(self, phase: str) -> None:
        """Called just before (phase "before") and just after ("after") each COMMIT."""
        if phase == "before":
            hit = self._hit("commit")
        else:  # write transactions are serialized by the saver's lock: no race here
            hit = self.where == "commit" and self.counts["commit"] == self.n
        if (hit and self.phase == phase) or self._at_next_commit == phase:
            die()


class _Conn:
    """A `sqlite3.Connection` stand-in that tells `Hooks` about every COMMIT."""

    def __init__(self, conn: Any, hooks: Hooks) -> None:
        self._conn = conn
        self._hooks = hooks

    def execute(self, sql: str, *args: Any) -> Any:
        commit = sql.strip().upper() == "COMMIT"
        if commit:
            self._hooks.on_commit("before")
        out = self._conn.execute(sql, *args)
        if commit:
            self._hooks.on_commit("after")
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def build_graph(log_path: str, seed: int, hooks: Hooks, tag: str, checkpointer: Any = None) -> Any:
    """The graph, compiled; nodes log to ``log_path`` with ``tag``."""

    def side_effect(label: str) -> None:
        config = get_config()
        task_id = config["metadata"]["langgraph_checkpoint_ns"].rpartition(":")[2]
        step = config["metadata"]["langgraph_step"]
        kill_after = hooks.task_start()
        time.sleep(random.Random(f"{seed}:{task_id}").uniform(0, MAX_SLEEP))
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{tag} {task_id} {label} {step}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if kill_after:
            die()

    def branch(name: str) -> Callable[[State], dict[str, Any]]:
        def run(state: State) -> dict[str, Any]:
            side_effect(name)
            return {"log": [name]}

        return run

    def join(state: State) -> dict[str, Any]:
        side_effect("join")
        return {"log": [f"join:{len(state['log'])}"]}

    def plan(state: State) -> dict[str, Any]:
        r = state["round"] + 1
        side_effect(f"plan{r}")
        return {"round": r, "log": [f"plan{r}"]}

    def fan_out(state: State) -> list[Send]:
        return [Send("work", {"round": state["round"], "item": i}) for i in range(WORK_ITEMS)]

    def work(arg: dict[str, int]) -> dict[str, Any]:
        label = f"work{arg['round']}.{arg['item']}"
        side_effect(label)
        big = f"{label}:" + "#" * BIG
        return {"log": [label], "total": 10 * arg["round"] + arg["item"], "big": [big]}

    def tally(state: State) -> dict[str, Any]:
        side_effect(f"tally{state['round']}")
        return {"log": [f"tally{state['round']}:{state['total']}"]}

    def again(state: State) -> str:
        return "plan" if state["round"] < ROUNDS else END

    g = StateGraph(State)
    for name in ("a", "b", "c"):
        g.add_node(name, branch(name))
        g.add_edge(START, name)
        g.add_edge(name, "join")
    g.add_node("join", join)
    g.add_node("plan", plan)
    g.add_node("work", work)
    g.add_node("tally", tally)
    g.add_edge("join", "plan")
    g.add_conditional_edges("plan", fan_out, ["work"])
    g.add_edge("work", "tally")
    g.add_conditional_edges("tally", again, ["plan", END])
    return g.compile(checkpointer=checkpointer)


def run(spec: dict[str, Any], ready: Callable[[], None], hooks: Hooks | None = None) -> Any:
    """One run as a spec describes it; returns the graph's output.

    spec: ``db``, ``log``, ``thread``, ``seed``, ``tag``, ``durability``, ``driver``
    ("sync" | "async"), ``fresh`` (start with `INPUT` instead of resuming), ``hook``.
    """
    hooks = hooks or Hooks(spec.get("hook"))
    graph_log, seed, tag = spec["log"], spec["seed"], spec["tag"]
    ready()
    saver = SqliteSaver(spec["db"])
    hooks.install(saver)
    graph = build_graph(graph_log, seed, hooks, tag, checkpointer=saver)
    config = {"configurable": {"thread_id": spec["thread"]}}
    input = INPUT if spec["fresh"] else None
    try:
        if spec["driver"] == "async":
            return asyncio.run(graph.ainvoke(input, config, durability=spec["durability"]))
        return graph.invoke(input, config, durability=spec["durability"])
    finally:
        saver.close()


def _write_result(spec: dict[str, Any], output: Any) -> None:
    with open(spec["result"], "w") as f:
        json.dump(output, f)
        f.flush()
        os.fsync(f.fileno())


def _worker(spec: dict[str, Any], ready_fd: int) -> None:
    """The forked worker: one run, then ``os._exit`` (no cleanup of the server's state)."""

    def ready() -> None:
        os.write(ready_fd, b"r")

    code = 0
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stdout is the server's protocol
        _write_result(spec, run(spec, ready))
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        code = 1
    os._exit(code)


def serve() -> None:
    """The fork server loop: one JSON request per line in, one JSON answer per line out.

    A request is ``{"spec": ..., "kill_after": seconds | null, "deadline": seconds}``;
    the answer ``{"pid": ..., "code": exit code (-9: SIGKILL), "hung": bool}``. A worker
    still running at the deadline is killed and reported as hung.
    """
    for line in sys.stdin:
        request = json.loads(line)
        spec, kill_after, deadline = request["spec"], request["kill_after"], request["deadline"]
        # Forking is safe only while this process runs no other thread.
        assert threading.active_count() == 1, threading.enumerate()
        sys.stdout.flush()
        sys.stderr.flush()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _worker(spec, w)
        os.close(w)
        pidfd = os.pidfd_open(pid)
        hung = False
        try:
            ready = os.read(r, 1) == b"r"  # b"" when the worker died before it was ready
            os.close(r)
            if ready and kill_after is not None:
                exited, _, _ = select.select([pidfd], [], [], kill_after)
                if not exited:
                    # Not reaped yet, so the pid cannot belong to another process.
                    os.kill(pid, signal.SIGKILL)
            exited, _, _ = select.select([pidfd], [], [], deadline)
            if not exited:
                hung = True
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        finally:
            os.close(pidfd)
        answer = {"pid": pid, "code": os.waitstatus_to_exitcode(status), "hung": hung}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main(argv: list[str]) -> None:
    if argv[1:] == ["serve"]:
        serve()
        return
    if len(argv) == 3 and argv[1] == "run":
        spec = json.loads(argv[2])

        def ready() -> None:
            sys.stdout.write("ready\n")
            sys.stdout.flush()

        _write_result(spec, run(spec, ready))
        return
    raise SystemExit(f"usage: {argv[0]} serve | run '<spec json>'")


if __name__ == "__main__":
    main(sys.argv)

"""Crash durability for real: runs SIGKILLed at random moments, then resumed.

A child process (``crash_child.py``) runs a multi-step graph with parallel branches and a
``Send`` fan-out on a `SqliteSaver` file. The test kills it with SIGKILL at random
moments, then resumes the thread (``invoke(None, config)``) in a new process, which may
be killed again, until one child finishes. Kills land:

* after a random delay (up to the rest of the run, timed on an uninterrupted one),
  mostly inside tasks;
* inside the k-th task, before it starts or right after its side effect is on disk;
* during the k-th checkpoint or pending-writes store: before it, inside its open
  transaction just before ``COMMIT``, or just after ``COMMIT``; and around the k-th
  ``COMMIT`` of any write transaction (leases included).

Every time it checks that

1. the final state equals that of an uninterrupted run (the child's output, and the
   state read back from the file);
2. no task that had finished before a kill ran again. "Finished" means its writes were
   saved: after each kill, before resuming, the test reads every pending write of the
   thread from the file; none of those tasks may appear again in the side-effect log,
   neither by task id nor by its place in the run (a label such as ``work2.3``, which
   also catches a run that starts over from new checkpoints);
3. the file opens cleanly after every kill: ``PRAGMA integrity_check`` is ``ok``, and
   `SqliteSaver` opens it and reads the thread (``get_tuple`` and ``list``).

``durability="sync"`` and ``"async"`` must meet all three. ``"exit"`` stores nothing until
the run ends, so a kill loses the whole run and the next child must start over with the
input: (2) does not apply to it beyond "nothing saved, nothing skipped", and the test
checks instead that a kill leaves either nothing or the complete final checkpoint.

Children are forked from a fork server that imported stepgraph once (a fresh interpreter
needs 0.7 s to import it, too slow for dozens of kills); one case spawns a fresh
interpreter per child instead. Each kill plan comes from ``random.Random(seed)``; the seed
is in every assertion message. ``STEPGRAPH_CRASH_SEED=<n>`` replays one; a larger
campaign runs with ``STEPGRAPH_SLOW_TESTS=1``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Protocol

import pytest

from stepgraph.checkpoint import SqliteSaver

CHILD_PATH = Path(__file__).with_name("crash_child.py")
KILLED = -signal.SIGKILL
DEADLINE = 120.0  # seconds a child may take before the test calls it hung
SLOW = os.environ.get("STEPGRAPH_SLOW_TESTS") == "1"

# Kill plans: (where, phase). TIME is a SIGKILL from outside after a random delay; the
# others are hooks with which the child kills itself at the n-th such event (see
# crash_child.py), n random within what the rest of the run does.
TIME = ("time", "")
STORAGE_KILLS = [
    ("store", "before"),
    ("store", "mid"),
    ("store", "after"),
    ("writes", "before"),
    ("writes", "mid"),
    ("writes", "after"),
    ("commit", "before"),
    ("commit", "after"),
]
TASK_KILLS = [("task", "before"), ("task", "after")]


def _load_child() -> ModuleType:
    """crash_child.py as a module (tests/ is no package), so both sides share the graph."""
    name = "stepgraph_tests_crash_child"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CHILD_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


child = _load_child()


# -- launching children ---------------------------------------------------------------


class Launcher(Protocol):
    name: str

    def run(self, spec: dict[str, Any], kill_after: float | None) -> int:
        """Run one child; SIGKILL it ``kill_after`` s after it is ready; its exit code."""
        ...


def _readline(stream: IO[bytes], what: str) -> bytes:
    ready, _, _ = select.select([stream], [], [], DEADLINE + 10)
    assert ready, f"{what} sent nothing for {DEADLINE + 10} s: hung?"
    return stream.readline()


class ForkServer:
    """One ``crash_child.py serve`` process; each run is a worker forked from it."""

    name = "fork"

    def __init__(self, stderr: Path) -> None:
        self.stderr = stderr
        with stderr.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD_PATH), "serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )

    def run(self, spec: dict[str, Any], kill_after: float | None) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"spec": spec, "kill_after": kill_after, "deadline": DEADLINE}
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        line = _readline(self.proc.stdout, "the fork server")
        assert line, f"the fork server died:\n{_tail(self.stderr)}"
        answer = json.loads(line)
        assert not answer["hung"], f"a child hung for {DEADLINE} s: {spec}"
        return int(answer["code"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Spawner:
    """A fresh interpreter per run: ``python crash_child.py run <spec>``."""

    name = "spawn"

    def __init__(self, stderr: Path) -> None:
        self.stderr = stderr

    def run(self, spec: dict[str, Any], kill_after: float | None) -> int:
        with self.stderr.open("ab") as err:
            proc = subprocess.Popen(
                [sys.executable, str(CHILD_PATH), "run", json.dumps(spec)],
                stdout=subprocess.PIPE,
                stderr=err,
            )
        assert proc.stdout is not None
        try:
            line = _readline(proc.stdout, "a spawned child")
            if line == b"ready\n" and kill_after is not None:
                try:
                    proc.wait(timeout=kill_after)
                except subprocess.TimeoutExpired:
                    proc.kill()  # not reaped yet: the pid is still this child's
            try:
                proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"a child hung for {DEADLINE} s: {spec}") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        return proc.returncode


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no stderr)"


@pytest.fixture(scope="module")
def fork_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    server = ForkServer(tmp_path_factory.mktemp("crash") / "fork-server.stderr")
    try:
        yield server
    finally:
        server.close()


# -- the uninterrupted run ------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """What an uninterrupted run does: its output, tasks, stores and duration."""

    output: dict[str, Any]
    labels: frozenset[str]  # one per task of the run
    steps: dict[str, int]  # label -> the step the task runs in
    counts: Counter[str]  # tasks, stores, writes, commits of one run on a SQLite file
    seconds: float
    final_step: int


_references: dict[str, Reference] = {}


def reference(tmp_path: Path, durability: str) -> Reference:
    if durability in _references:
        return _references[durability]
    # The expected state: a run with no checkpointer at all.
    plain_log = tmp_path / f"reference-{durability}.log"
    graph = child.build_graph(str(plain_log), 0, child.Hooks(None), "ref")
    expected = graph.invoke(child.INPUT)
    plain = read_log(plain_log)
    labels = Counter(line.label for line in plain)
    assert labels and max(labels.values()) == 1, labels
    # The same run on a SQLite file, in this process: how much it stores, how long it takes.
    hooks = child.Hooks(None)
    spec = _spec(tmp_path / f"reference-{durability}.db", tmp_path, "ref", "ref-0", 0)
    spec.update(durability=durability, driver="sync", fresh=True)
    start = time.perf_counter()
    out = child.run(spec, lambda: None, hooks)
    seconds = time.perf_counter() - start
    assert out == expected
    assert Counter(line.label for line in read_log(Path(spec["log"]))) == labels
    with SqliteSaver(spec["db"]) as saver:
        latest = saver.get_tuple(_config("ref"))
    assert latest is not None
    steps = {line.label: line.step for line in plain}
    found = Reference(
        expected, frozenset(labels), steps, hooks.counts, seconds, latest.metadata["step"]
    )
    _references[durability] = found
    return found


# -- the side-effect log --------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    tag: str  # the child that ran the task
    task_id: str
    label: str  # the task's place in the run: "a", "plan2", "work2.3", ...
    step: int


def read_log(path: Path) -> list[LogLine]:
    if not path.exists():
        return []
    out = []
    for raw in path.read_text().splitlines(keepends=True):
        assert raw.endswith("\n"), f"torn line in the side-effect log {path}: {raw!r}"
        tag, task_id, label, step = raw.split()
        out.append(LogLine(tag, task_id, label, int(step)))
    return out


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def _spec(db: Path, tmp_path: Path, thread: str, tag: str, seed: int) -> dict[str, Any]:
    return {
        "db": str(db),
        "log": str(tmp_path / f"{db.stem}-{thread}.log"),
        "result": str(tmp_path / f"{db.stem}-{thread}.result.json"),
        "thread": thread,
        "seed": seed,
        "tag": tag,
        "hook": None,
    }


# -- the campaign ---------------------------------------------------------------------


@dataclass
class Saved:
    """What the file holds for a thread after a kill."""

    step: int | None  # the latest checkpoint's step, None without a checkpoint
    task_ids: set[str]  # tasks whose writes are saved, in any checkpoint of the thread


@dataclass
class Crasher:
    """Kills children running one durability mode on one file, thread after thread."""

    launcher: Launcher
    tmp_path: Path
    durability: str
    seed: int
    ref: Reference
    name: str
    kills: int = 0
    children: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.db = self.tmp_path / f"{self.name}.db"
        kinds = [TIME, TIME, *TASK_KILLS, *STORAGE_KILLS]
        if self.durability == "exit":
            kinds = [k for k in kinds if k[0] != "writes"]  # a run that ends stores none
        self.kill_kinds = kinds
        self.deck: list[tuple[str, str]] = []

    def campaign(self, kills: int, per_thread: int = 4) -> None:
        """Run threads until ``kills`` kills landed, at most ``per_thread`` per thread."""
        threads = 0
        while self.kills < kills:
            threads += 1
            self.thread(f"t{threads}", min(per_thread, kills - self.kills))
            assert threads < kills + 50, f"{self.where()}: kills keep missing the runs"
        self.check_file()

    def where(self, *extra: str) -> str:
        parts = [
            f"seed={self.seed}",
            f"durability={self.durability}",
            f"launcher={self.launcher.name}",
            *extra,
        ]
        return "[" + " ".join(parts) + "]"

    def thread(self, thread: str, max_kills: int) -> None:
        """Kill one thread's runs up to ``max_kills`` times, then let it finish; check."""
        forbidden: dict[str, str] = {}  # task id or label -> the kill after which it was
        previous: set[str] = set()
        plans: list[str] = []
        landed = 0
        for n in range(max_kills + 1):
            tag = f"{thread}-{n}"
            saved = self.saved(thread)
            fresh = saved.step is None
            spec = _spec(self.db, self.tmp_path, thread, tag, self.seed)
            spec.update(
                durability=self.durability,
                driver=self.rng.choice(["sync", "async"]),
                fresh=fresh,
            )
            plan, kill_after = "none", None
            if landed < max_kills:
                plan, kill_after, spec["hook"] = self.plan_kill(saved.step)
            plans.append(f"{tag}:{'fresh' if fresh else 'resume'}:{spec['driver']}:{plan}")
            where = self.where(f"thread={thread}", f"plans={plans}")
            Path(spec["result"]).unlink(missing_ok=True)
            code = self.launcher.run(spec, kill_after)
            self.children += 1
            log = read_log(Path(spec["log"]))
            mine = [line for line in log if line.tag == tag]
            once = Counter(line.label for line in mine)
            assert not mine or max(once.values()) == 1, f"{where}: a task ran twice: {once}"
            for line in mine:
                assert line.step == self.ref.steps[line.label], f"{where}: {line} at wrong step"
                for key in (line.task_id, line.label):
                    assert key not in forbidden, (
                        f"{where}: task {line.label} ({line.task_id}) ran again in {tag} "
                        f"although its writes were saved before kill {forbidden[key]}"
                    )
            if code == KILLED:
                landed += 1
                self.kills += 1
                self.kinds[plan.split("@")[0]] += 1
                after = self.check_after_kill(thread, where)
                assert after.task_ids >= previous, f"{where}: saved writes disappeared"
                labels = {line.task_id: line.label for line in log}
                unlogged = after.task_ids - labels.keys()
                assert not unlogged, f"{where}: writes saved for tasks that never ran: {unlogged}"
                for task_id in after.task_ids:
                    forbidden.setdefault(task_id, tag)
                    forbidden.setdefault(labels[task_id], tag)
                previous = after.task_ids
                continue
            assert code == 0, f"{where}: {tag} exited with {code}:\n{_tail(self.stderr())}"
            self.check_finished(thread, spec, log, landed, where)
            return
        raise AssertionError(f"{self.where(f'thread={thread}', f'plans={plans}')}: no end")

    def stderr(self) -> Path:
        return getattr(self.launcher, "stderr", self.tmp_path / "none")

    def plan_kill(self, step: int | None) -> tuple[str, float | None, dict[str, Any] | None]:
        """A random kill for a run that resumes after ``step``: (name, delay, hook)."""
        ref, rng = self.ref, self.rng
        left = 1.0 if step is None else max(0.0, (ref.final_step - step) / (ref.final_step + 1))
        if not self.deck:  # every kind once, in random order, then again
            self.deck = rng.sample(self.kill_kinds, len(self.kill_kinds))
        where, phase = self.deck.pop()
        if (where, phase) == TIME:
            delay = round(rng.uniform(0, ref.seconds * left * 1.2), 4)
            return f"time@{delay}", delay, None
        count = ref.counts[where]
        n = rng.randint(1, max(1, math.ceil(count * left)))
        return f"{where}-{phase}@{n}", None, {"where": where, "phase": phase, "n": n}

    # -- what the file holds ----------------------------------------------------------

    def saved(self, thread: str) -> Saved:
        if not self.db.exists():
            return Saved(None, set())
        with SqliteSaver(self.db) as saver:
            latest = saver.get_tuple(_config(thread))
            history = list(saver.list(_config(thread)))
        task_ids = {
            task_id
            for t in history
            if t.metadata["source"] != "input"  # those are START's: it logs nothing
            for task_id, channel, _ in t.pending_writes or ()
            if channel != "__error__"
        }
        return Saved(None if latest is None else latest.metadata["step"], task_ids)

    def check_file(self) -> None:
        if not self.db.exists():
            return  # killed before the child opened it: nothing to check
        with sqlite3.connect(self.db) as conn:
            found = conn.execute("PRAGMA integrity_check").fetchall()
        conn.close()
        assert found == [("ok",)], f"{self.where()}: integrity_check says {found}"

    def check_after_kill(self, thread: str, where: str) -> Saved:
        self.check_file()
        saved = self.saved(thread)  # SqliteSaver opens the file and reads the thread
        if self.durability == "exit":
            # Nothing is stored until the run ends: either nothing, or the whole run.
            assert not saved.task_ids, f"{where}: exit mode stored pending writes"
            if saved.step is not None:
                assert saved.step == self.ref.final_step, f"{where}: partial run stored"
                assert self.state(thread) == self.ref.output, f"{where}: wrong final state"
        return saved

    def state(self, thread: str) -> Any:
        with SqliteSaver(self.db) as saver:
            graph = child.build_graph(os.devnull, 0, child.Hooks(None), "-", checkpointer=saver)
            snapshot = graph.get_state(_config(thread))
        assert snapshot.next == ()
        return snapshot.values

    def check_finished(
        self, thread: str, spec: dict[str, Any], log: list[LogLine], kills: int, where: str
    ) -> None:
        ref = self.ref
        output = json.loads(Path(spec["result"]).read_text())
        assert output == ref.output, f"{where}: the final output differs"
        self.check_file()
        assert self.state(thread) == ref.output, f"{where}: the saved final state differs"
        runs = Counter(line.label for line in log)
        assert set(runs) == ref.labels, f"{where}: other tasks ran than in one run"
        assert max(runs.values()) <= kills + 1, f"{where}: a task ran too often: {runs}"
        if self.durability != "exit":
            # One saved task per task of the run: resumes continued the same history.
            by_id = {line.task_id: line.label for line in log}
            saved = Counter(by_id[t] for t in self.saved(thread).task_ids)
            assert saved == Counter(ref.labels), f"{where}: saved tasks differ: {saved}"


# -- the tests --------------------------------------------------------------------------


def _seed(default: int) -> int:
    return int(os.environ.get("STEPGRAPH_CRASH_SEED", default))


@pytest.mark.parametrize(
    ("durability", "kills", "seed"),
    [("sync", 12, 1), ("async", 12, 2), ("exit", 6, 3)],
)
def test_kill_and_resume(
    fork_server: ForkServer, tmp_path: Path, durability: str, kills: int, seed: int
) -> None:
    ref = reference(tmp_path, durability)
    crasher = Crasher(fork_server, tmp_path, durability, _seed(seed), ref, durability)
    crasher.campaign(kills)
    assert crasher.kills >= kills


def test_kill_and_resume_fresh_interpreters(tmp_path: Path) -> None:
    """The same, with a new interpreter per child instead of a fork (slower, no fork)."""
    ref = reference(tmp_path, "async")
    launcher = Spawner(tmp_path / "spawn.stderr")
    crasher = Crasher(launcher, tmp_path, "async", _seed(4), ref, "spawn")
    crasher.campaign(3, per_thread=3)
    assert crasher.kills >= 3


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="a long crash campaign: set STEPGRAPH_SLOW_TESTS=1")
@pytest.mark.parametrize(
    ("durability", "kills", "launch"),
    [
        ("sync", 70, "fork"),
        ("async", 70, "fork"),
        ("exit", 30, "fork"),
        ("sync", 15, "spawn"),
        ("async", 15, "spawn"),
    ],
)
def test_kill_and_resume_campaign(
    fork_server: ForkServer, tmp_path: Path, durability: str, kills: int, launch: str
) -> None:
    seed = _seed(random.SystemRandom().randrange(2**32))
    ref = reference(tmp_path, durability)
    launcher: Launcher = fork_server if launch == "fork" else Spawner(tmp_path / "spawn.stderr")
    crasher = Crasher(launcher, tmp_path, durability, seed, ref, f"{launch}-{durability}")
    crasher.campaign(kills, per_thread=6)
    print(f"seed={seed} kills={crasher.kills} children={crasher.children} {crasher.kinds}")

"""RayExecutor: a superstep's node calls run on a local Ray instance; the driver keeps the rest.

One Ray instance (2 CPUs, no dashboard, a small object store) serves the whole module.
Node functions of this module are pickled by value: under ``--import-mode=importlib``
the workers could not import this file by name.
"""

from __future__ import annotations

import operator
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

from stepgraph.checkpoint import BaseCheckpointSaver, InMemorySaver
from stepgraph.engine import (
    START,
    RetryPolicy,
    Runtime,
    Send,
    StateGraph,
    entrypoint,
    get_config,
    get_stream_writer,
    interrupt,
    task,
)


class State(TypedDict):
    n: int
    out: Annotated[list[Any], operator.add]


def fan(state: State) -> list[Send]:
    return [Send("work", {"i": i}) for i in range(state["n"])]


def fanout(work: Any, **compile_kw: Any) -> Any:
    graph = StateGraph(State)
    graph.add_node("work", work, retry_policy=compile_kw.pop("retry_policy", None))
    graph.add_conditional_edges(START, fan, ["work"])
    return graph.compile(**compile_kw)


def thread(name: str, **configurable: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": name, **configurable}}


@pytest.fixture(scope="module")
def executor() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'stepgraph[ray]'")
    from stepgraph.engine.ray import RayExecutor

    if ray.is_initialized():  # pragma: no cover - another module left one running
        ray.shutdown()
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ex = RayExecutor(
        init_kwargs={
            "num_cpus": 2,
            "include_dashboard": False,
            "object_store_memory": 100 * 1024**2,
            "log_to_driver": False,
        }
    )
    try:
        yield ex
    finally:
        ex.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        assert not ray.is_initialized()  # it started Ray, so it stopped it


def recording(**kwargs: Any) -> Any:
    """A RayExecutor that keeps each run's binding (``runs``), to look at after the run."""
    from stepgraph.engine.ray import RayExecutor

    class Recording(RayExecutor):
        runs: list[Any]

        def _stepgraph_bind(self, loop: Any) -> Any:
            run = super()._stepgraph_bind(loop)
            self.runs.append(run)
            return run

    ex = Recording(**kwargs)
    ex.runs = []
    return ex


def saved(saver: BaseCheckpointSaver, name: str) -> list[Any]:
    """A thread's checkpoints without what differs from run to run (ids, times)."""
    found = []
    for t in saver.list(thread(name)):
        cp = t.checkpoint
        found.append(
            (
                t.metadata["source"],
                t.metadata["step"],
                cp["channel_values"],
                cp["channel_versions"],
                cp["versions_seen"],
                sorted((ch, repr(v)) for _, ch, v in t.pending_writes),
            )
        )
    return found


# -- same results, same checkpoints ---------------------------------------------------


def square(arg: dict[str, int]) -> dict[str, Any]:
    return {"out": [(arg["i"], arg["i"] ** 2, os.getpid())]}


def test_fanout_gives_the_thread_pools_result_and_checkpoints(executor: Any) -> None:
    saver = InMemorySaver()
    graph = fanout(square, checkpointer=saver)
    local = graph.invoke({"n": 24, "out": []}, thread("local"))
    remote = graph.invoke({"n": 24, "out": []}, thread("ray"), executor=executor)
    assert [o[:2] for o in remote["out"]] == [o[:2] for o in local["out"]]
    assert {o[2] for o in remote["out"]}.isdisjoint({os.getpid()})  # they ran elsewhere
    strip = [(s[:2], s[3:5]) for s in saved(saver, "local")]
    assert [(s[:2], s[3:5]) for s in saved(saver, "ray")] == strip
    assert len(saved(saver, "ray")) == 3  # input, the fan-out step, the last step


def test_a_fanout_wider_than_max_in_flight_and_ray_already_running(executor: Any) -> None:
    import ray

    from stepgraph.engine.ray import RayExecutor

    with RayExecutor(max_in_flight=3) as small:  # Ray is running: it uses that
        assert small.max_in_flight == 3
        result = fanout(square).invoke({"n": 12, "out": []}, executor=small)
    assert [o[:2] for o in result["out"]] == [(i, i * i) for i in range(12)]
    assert ray.is_initialized()  # not started by `small`, so not stopped by it


def wait_for_go(arg: dict[str, Any]) -> dict[str, Any]:
    # Task i may finish once the caller saw task i + 1 finish: completion order is
    # the reverse of the Send order.
    i, go = arg["i"], Path(arg["folder"]) / f"go-{arg['i']}"
    deadline = time.monotonic() + 30
    while i + 1 < arg["n"] and not go.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {i + 1} never finished")
        time.sleep(0.01)
    return {"out": [i]}


def test_writes_apply_in_task_path_order_not_completion_order(
    executor: Any, tmp_path: Path
) -> None:
    from stepgraph.engine.ray import RayExecutor

    n = 3

    def sends(state: State) -> list[Send]:
        return [Send("work", {"i": i, "n": n, "folder": str(tmp_path)}) for i in range(n)]

    graph = StateGraph(State)
    graph.add_node("work", wait_for_go)
    graph.add_conditional_edges(START, sends, ["work"])
    finished, last = [], None
    # num_cpus=0: all three run at once on two CPUs, so none waits for a free slot.
    with RayExecutor(nodes={"work": {"num_cpus": 0}}) as ex:
        for mode, payload in graph.compile().stream(
            {"n": n, "out": []}, executor=ex, stream_mode=["updates", "values"]
        ):
            if mode == "updates":
                i = payload["work"]["out"][0]
                finished.append(i)
                (tmp_path / f"go-{i - 1}").touch()  # let the task before it finish
            else:
                last = payload
    assert finished == [2, 1, 0]  # the order the driver heard of them
    assert last == {"n": n, "out": [0, 1, 2]}  # the order the barrier applied them


def test_batch_runs_each_input_on_the_executor(executor: Any) -> None:
    inputs = [{"n": 2, "out": []}, {"n": 3, "out": []}]
    results = fanout(square).batch(inputs, executor=executor)
    assert [[o[:2] for o in r["out"]] for r in results] == [
        [(0, 0), (1, 1)],
        [(0, 0), (1, 1), (2, 4)],
    ]
    assert {o[2] for r in results for o in r["out"]}.isdisjoint({os.getpid()})


def test_stepping_through_a_run_on_ray(executor: Any) -> None:
    steps = list(fanout(square).iter({"n": 4, "out": []}, executor=executor))
    assert [s.step for s in steps] == [0, 1]
    assert [t.result["out"][0][:2] for t in steps[1].tasks] == [(i, i * i) for i in range(4)]


# -- failures on the worker -----------------------------------------------------------


def flaky(arg: dict[str, int], runtime: Runtime[Any]) -> dict[str, Any]:
    if arg["i"] == 1 and runtime.attempt == 1:
        raise ConnectionError("the service hung up")
    return {"out": [(arg["i"], runtime.attempt)]}


def test_an_error_on_the_worker_is_retried_by_the_nodes_retry_policy(executor: Any) -> None:
    policy = RetryPolicy(initial_interval=0.01, jitter=False)
    graph = fanout(flaky, retry_policy=policy)
    chunks = list(
        graph.stream({"n": 3, "out": []}, executor=executor, stream_mode=["tasks", "values"])
    )
    final = [p for mode, p in chunks if mode == "values"][-1]
    assert final["out"] == [(0, 1), (1, 2), (2, 1)]  # task 1 succeeded on attempt 2
    retried = [p for mode, p in chunks if mode == "tasks" and p.get("error")]
    assert retried and "ConnectionError" in repr(retried[0]["error"])


def reject(arg: dict[str, int]) -> dict[str, Any]:
    if arg["i"] == 2:
        raise ValueError(f"item {arg['i']} is malformed")
    return {"out": [arg["i"]]}


def test_without_retry_the_original_error_reaches_the_caller(executor: Any) -> None:
    with pytest.raises(ValueError, match="item 2 is malformed") as info:
        fanout(reject).invoke({"n": 4, "out": []}, executor=executor)
    assert type(info.value) is ValueError  # not Ray's wrapper
    notes = "\n".join(info.value.__notes__)
    assert "raised on a Ray worker" in notes and "in reject" in notes
    assert "while running node 'work' in superstep 1" in notes


def die_once(arg: dict[str, int]) -> dict[str, Any]:
    marker = Path(get_config()["configurable"]["marker"])
    if arg["i"] == 2 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-step
    return {"out": [arg["i"] * 10]}


def test_a_worker_killed_mid_step_does_not_lose_the_step(executor: Any, tmp_path: Path) -> None:
    saver = InMemorySaver()
    graph = fanout(die_once, checkpointer=saver)
    marker = tmp_path / "killed"
    marker.touch()  # the local run must not kill pytest: it never dies
    local = graph.invoke({"n": 4, "out": []}, thread("local", marker=str(marker)))
    marker.unlink()
    remote = graph.invoke({"n": 4, "out": []}, thread("ray", marker=str(marker)), executor=executor)
    assert marker.exists()  # a worker died on the first attempt; Ray ran the task again
    assert remote == local == {"n": 4, "out": [0, 10, 20, 30]}
    assert saved(saver, "ray") == saved(saver, "local")


def die_on_first_attempt(arg: dict[str, int], runtime: Runtime[Any]) -> dict[str, Any]:
    if runtime.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"out": [(arg["i"], runtime.attempt)]}


def test_when_ray_gives_up_on_a_dead_worker_the_retry_policy_sends_it_again(
    executor: Any,
) -> None:
    from stepgraph.engine.ray import RayExecutor

    policy = RetryPolicy(initial_interval=0.01, jitter=False)  # default retry_on
    graph = fanout(die_on_first_attempt, retry_policy=policy)
    with RayExecutor(remote_options={"max_retries": 0}) as ex:  # Ray does not rerun it
        chunks = list(
            graph.stream({"n": 1, "out": []}, executor=ex, stream_mode=["tasks", "values"])
        )
    assert chunks[-1] == ("values", {"n": 1, "out": [(0, 2)]})  # attempt 2 succeeded
    failed = [p["error"] for mode, p in chunks if mode == "tasks" and p.get("error")]
    assert len(failed) == 1 and "WorkerCrashedError" in repr(failed[0])


def writes_then_fails(arg: dict[str, int], runtime: Runtime[Any]) -> dict[str, Any]:
    get_stream_writer()(("attempt", arg["i"], runtime.attempt))
    if runtime.attempt == 1:
        raise ConnectionError("the service hung up")
    return {"out": [arg["i"]]}


def test_the_chunks_of_a_failed_attempt_reach_the_stream(executor: Any) -> None:
    graph = fanout(writes_then_fails, retry_policy=RetryPolicy(initial_interval=0.01))
    on_threads = list(graph.stream({"n": 2, "out": []}, stream_mode="custom"))
    on_ray = list(graph.stream({"n": 2, "out": []}, executor=executor, stream_mode="custom"))
    assert sorted(on_ray) == sorted(on_threads)
    assert sorted(on_ray) == [("attempt", i, a) for i in range(2) for a in (1, 2)]


# -- ending a run early, shutting the executor down -------------------------------------


def waits(arg: dict[str, Any]) -> dict[str, Any]:
    """Marks that it started, then waits."""
    folder = Path(arg["folder"])
    (folder / f"started-{arg['i']}").touch()
    deadline = time.monotonic() + arg["secs"]
    while time.monotonic() < deadline:
        time.sleep(0.02)
    return {"out": [arg["i"]]}


def waiting_fanout(folder: Path, secs: float, **compile_kw: Any) -> Any:
    def sends(state: State) -> list[Send]:
        return [
            Send("work", {"i": i, "folder": str(folder), "secs": secs}) for i in range(state["n"])
        ]

    graph = StateGraph(State)
    graph.add_node("work", waits, retry_policy=compile_kw.pop("retry_policy", None))
    graph.add_conditional_edges(START, sends, ["work"])
    return graph.compile(**compile_kw)


def started(folder: Path) -> int:
    return len(list(folder.glob("started-*")))


def test_shutdown_with_cancel_futures_ends_the_runs_using_the_executor(
    executor: Any, tmp_path: Path
) -> None:
    from stepgraph.engine.ray import ExecutorClosedError

    ex = recording(max_in_flight=2)
    graph = waiting_fanout(tmp_path, secs=4, retry_policy=RetryPolicy(initial_interval=0.01))
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            graph.invoke({"n": 6, "out": []}, executor=ex)
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 30
    while started(tmp_path) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.monotonic()
    ex.shutdown(cancel_futures=True)  # two tasks on Ray, four waiting for a thread
    runner.join(timeout=30)
    assert not runner.is_alive()  # the run ended; it used to wait forever
    assert time.monotonic() - t0 < 3  # the running tasks were given up, not awaited
    assert started(tmp_path) <= 3  # two CPUs; the four waiting for a thread never went to Ray
    (group,) = outcome  # every task of the step failed
    assert isinstance(group, ExceptionGroup) and len(group.exceptions) == 6
    for error in group.exceptions:
        assert isinstance(error, ExecutorClosedError) and isinstance(error, RuntimeError)
        assert "RayExecutor was shut down" in str(error)
        assert any("was not retried" in note for note in error.__notes__)  # default policy
    # Sent to Ray (two running, and the driver's own, queued there), or never sent.
    messages = [str(e).split(":")[0] for e in group.exceptions]
    assert messages.count("node 'work' was given up on Ray") >= 2
    assert messages.count("node 'work' was not run") >= 3
    assert ex._in_flight == set() and ex.runs[0]._refs == {}
    with pytest.raises(ExecutorClosedError, match="was shut down; make a new one"):
        ex.submit(print)
    with pytest.raises(ExecutorClosedError, match="was shut down; make a new one"):
        graph.invoke({"n": 1, "out": []}, executor=ex)


@pytest.mark.parametrize("n", [1, 3], ids=["one-task", "three-tasks"])
def test_a_run_still_using_an_executor_after_shutdown_fails_clearly(executor: Any, n: int) -> None:
    from stepgraph.engine.ray import ExecutorClosedError, RayExecutor

    ex = RayExecutor()
    steps = fanout(square).iter({"n": n, "out": []}, executor=ex)
    assert next(steps).step == 0  # START, in the driver
    ex.shutdown()
    with pytest.raises(ExecutorClosedError, match="was shut down; make a new one"):
        for _ in steps:  # step 1: its task runs inline (n=1) or is submitted (n=3)
            pass


def test_leaving_a_stream_early_gives_up_the_runs_ray_tasks(executor: Any, tmp_path: Path) -> None:
    ex = recording(max_in_flight=2)
    graph = waiting_fanout(tmp_path, secs=0.5)
    for chunk in graph.stream({"n": 10, "out": []}, executor=ex, stream_mode="updates"):
        if "work" in chunk:
            break  # the first task is done; the others are on Ray or waiting for a thread
    ex.shutdown()  # waits for its threads: those still holding a task would run it
    assert started(tmp_path) <= 4  # all 10 ran before
    (run,) = ex.runs
    assert run._refs == {} and run._shared_ref is None


def test_a_run_lets_go_of_its_object_store_refs_however_it_ends(
    executor: Any, tmp_path: Path
) -> None:
    ex = recording()
    with pytest.raises(ValueError, match="item 2 is malformed") as info:
        fanout(reject).invoke({"n": 4, "out": []}, executor=ex)
    failed = ex.runs[0]
    assert info.value.__traceback__ is not None  # the error still holds the run's frames
    assert failed._refs == {} and failed._shared_ref is None
    steps = fanout(square).iter({"n": 2, "out": []}, executor=ex)
    assert [next(steps).step, next(steps).step] == [0, 1]
    paused = ex.runs[1]
    assert paused._refs and paused._shared_ref is not None  # kept while the run may go on
    steps.close()  # stopped before its last step
    assert paused._refs == {} and paused._shared_ref is None
    ex.shutdown()


# -- what node code can use on a worker ------------------------------------------------


def uses_the_runtime(arg: dict[str, int], runtime: Runtime[Any]) -> dict[str, Any]:
    get_stream_writer()({"progress": arg["i"]})
    meta = get_config()["metadata"]
    return {"out": [(runtime.context["unit"], runtime.node, meta["langgraph_step"])]}


def test_config_runtime_context_and_custom_stream_work_on_the_worker(executor: Any) -> None:
    graph = fanout(uses_the_runtime)
    chunks = list(
        graph.stream(
            {"n": 2, "out": []},
            executor=executor,
            context={"unit": "kg"},
            stream_mode=["custom", "values"],
        )
    )
    custom = sorted(p["progress"] for mode, p in chunks if mode == "custom")
    assert custom == [0, 1]  # delivered when each task returned
    assert chunks[-1] == ("values", {"n": 2, "out": [("kg", "work", 1), ("kg", "work", 1)]})


def asks(arg: dict[str, int]) -> dict[str, Any]:
    return {"out": [interrupt("approve?")]}


@task
def double(x: int) -> int:
    return 2 * x


def calls_a_task(arg: dict[str, int]) -> dict[str, Any]:
    return {"out": [double(arg["i"]).result()]}


def runs_a_graph(arg: dict[str, int]) -> dict[str, Any]:
    get_stream_writer()("before the inner graph")

    @entrypoint()
    def inner(x: int) -> int:
        return x + 1

    return {"out": [inner.invoke(arg["i"])]}


def test_a_graph_run_inside_a_node_fails_clearly_on_the_worker(executor: Any) -> None:
    from stepgraph.engine.ray import DriverOnlyError

    chunks = []
    with pytest.raises(DriverOnlyError, match="graphs run inside a node") as info:
        for chunk in fanout(runs_a_graph).stream(
            {"n": 1, "out": []}, executor=executor, stream_mode="custom"
        ):
            chunks.append(chunk)
    assert info.value.node == "work"
    assert chunks == ["before the inner graph"]  # what it wrote before failing


@pytest.mark.parametrize("node", [asks, calls_a_task], ids=["interrupt", "task-call"])
def test_driver_only_features_fail_clearly_on_the_worker(executor: Any, node: Any) -> None:
    from stepgraph.engine.ray import DriverOnlyError

    graph = fanout(node, checkpointer=InMemorySaver())
    with pytest.raises(DriverOnlyError, match=r"runs on a Ray worker .*RayExecutor\(nodes="):
        graph.invoke({"n": 1, "out": []}, thread(f"driver-only-{node.__name__}"), executor=executor)


def review(state: State) -> dict[str, Any]:
    return {"out": [("approved", interrupt("ok?"))]}


def test_nodes_left_out_of_nodes_run_in_the_driver(executor: Any) -> None:
    from stepgraph.engine import Command
    from stepgraph.engine.ray import RayExecutor

    graph = StateGraph(State)
    graph.add_node("work", square)
    graph.add_node("review", review)
    graph.add_conditional_edges(START, fan, ["work"])
    graph.add_edge("work", "review")
    app = graph.compile(checkpointer=InMemorySaver())
    with RayExecutor(nodes=["work"]) as ex:
        paused = app.invoke({"n": 2, "out": []}, thread("mixed"), executor=ex)
        assert paused["__interrupt__"][0].value == "ok?"
        done = app.invoke(Command(resume="yes"), thread("mixed"), executor=ex)
    assert done["out"][-1] == ("approved", "yes")
    assert {o[2] for o in done["out"][:2]}.isdisjoint({os.getpid()})


def test_subgraph_nodes_stay_local_and_unknown_names_are_refused(executor: Any) -> None:
    from stepgraph.engine.ray import RayExecutor

    inner = fanout(square)
    outer = StateGraph(State)
    outer.add_node("inner", inner)
    outer.add_edge(START, "inner")
    app = outer.compile()
    result = app.invoke({"n": 2, "out": []}, executor=executor)  # nodes=None: skipped
    assert [o[:2] for o in result["out"]] == [(0, 0), (1, 1)]
    with RayExecutor(nodes=["inner"]) as ex, pytest.raises(ValueError, match="is a subgraph"):
        app.invoke({"n": 2, "out": []}, executor=ex)
    with (
        RayExecutor(nodes=["wrok"]) as ex,
        pytest.raises(ValueError, match="'wrok': it is not a node"),
    ):
        app.invoke({"n": 2, "out": []}, executor=ex)


def test_refused_options() -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'stepgraph[ray]'")
    from stepgraph.engine.ray import RayExecutor

    with pytest.raises(ValueError, match="RetryPolicy"):
        RayExecutor(remote_options={"retry_exceptions": True})
    with pytest.raises(ValueError, match="at least 1"):
        RayExecutor(max_in_flight=0)


def test_an_entrypoint_runs_in_the_driver(executor: Any) -> None:
    from stepgraph.engine.ray import RayExecutor

    @entrypoint()
    def workflow(n: int) -> list[int]:
        return [double(i).result() for i in range(n)]

    assert workflow.invoke(3, executor=executor) == [0, 2, 4]
    with RayExecutor(nodes=["workflow"]) as ex, pytest.raises(ValueError, match="@entrypoint"):
        workflow.invoke(3, executor=ex)


def test_what_cannot_be_pickled_fails_clearly(executor: Any) -> None:
    import threading

    from stepgraph.engine.ray import DriverOnlyError

    lock = threading.Lock()

    def holds_a_lock(arg: dict[str, int]) -> dict[str, Any]:
        with lock:
            return {"out": [arg["i"]]}

    with pytest.raises(TypeError, match="function of node 'work' cannot be sent to Ray") as info:
        fanout(holds_a_lock).invoke({"n": 1, "out": []}, executor=executor)
    assert "cannot pickle '_thread.lock' object" in str(info.value)
    # A context Ray cannot pickle only fails the nodes that ask for it.
    context = {"unit": "kg", "lock": lock}
    result = fanout(square).invoke({"n": 2, "out": []}, executor=executor, context=context)
    assert [o[:2] for o in result["out"]] == [(0, 0), (1, 1)]
    with pytest.raises(DriverOnlyError, match="could not be sent to the workers"):
        fanout(uses_the_runtime).invoke({"n": 1, "out": []}, executor=executor, context=context)


def test_an_input_that_cannot_be_pickled_is_named_briefly(executor: Any) -> None:
    lock = threading.Lock()

    def sends_a_lock(state: State) -> list[Send]:
        return [Send("work", {"i": 0, "lock": lock})]

    graph = StateGraph(State)
    graph.add_node("work", square)
    graph.add_conditional_edges(START, sends_a_lock, ["work"])
    with pytest.raises(TypeError, match="could not send the input of node 'work'") as info:
        graph.compile().invoke({"n": 1, "out": []}, executor=executor)
    message = str(info.value)
    assert "cannot pickle '_thread.lock' object" in message and "nodes=[...]" in message
    assert len(message) < 500  # not Ray's serializability report (it stays chained)


def returns_a_lock(arg: dict[str, int]) -> dict[str, Any]:
    return {"out": [threading.Lock()]}


def streams_a_lock(arg: dict[str, int]) -> dict[str, Any]:
    get_stream_writer()(threading.Lock())
    return {"out": [arg["i"]]}


def test_an_output_that_cannot_be_sent_back_says_so(executor: Any) -> None:
    with pytest.raises(TypeError, match="node 'work' ran on a Ray worker, but its return value"):
        fanout(returns_a_lock).invoke({"n": 1, "out": []}, executor=executor)
    with pytest.raises(TypeError, match="but a chunk it wrote to the custom stream") as info:
        list(
            fanout(streams_a_lock).stream(
                {"n": 1, "out": []}, executor=executor, stream_mode="custom"
            )
        )
    assert "cannot pickle '_thread.lock' object" in str(info.value)


# -- without Ray -------------------------------------------------------------------


def test_importing_without_ray_says_what_to_install() -> None:
    code = "import sys; sys.modules['ray'] = None; import stepgraph.engine.ray"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "ImportError: stepgraph.engine.ray needs Ray: pip install 'stepgraph[ray]'" in (
        proc.stderr
    )

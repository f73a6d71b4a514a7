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


# -- without Ray -------------------------------------------------------------------


def test_importing_without_ray_says_what_to_install() -> None:
    code = "import sys; sys.modules['ray'] = None; import stepgraph.engine.ray"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "ImportError: stepgraph.engine.ray needs Ray: pip install 'stepgraph[ray]'" in (
        proc.stderr
    )

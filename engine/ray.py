"""Run a superstep's tasks on a Ray cluster (the ``stepgraph[ray]`` extra).

``RayExecutor`` is a ``concurrent.futures.Executor`` to pass as ``executor=`` to
``invoke``, ``stream``, ``iter`` and ``batch`` (the sync drivers)::

    from stepgraph.engine.ray import RayExecutor

    with RayExecutor() as ray_executor:             # starts a local Ray, or uses the running one
        graph.invoke(inputs, executor=ray_executor)

Only the call of a node's function is shipped: the driver plans the superstep,
hands each task's input to a Ray task, blocks a local thread on the result, and
does everything else itself, as it does with a thread pool: cache lookups, the
retry policy, the node's writers, the barrier (writes applied in task-path order),
checkpoints and stream events. A step's outcome and its checkpoints are the ones
the default thread pool gives.

On the worker, node code may use its ``config``, ``runtime`` (context, step, node,
attempt) and stream writer (its chunks reach the ``custom`` stream when the attempt
ends, also when it raised). Whatever needs the driver's run (``interrupt()``, calls
of ``@task`` functions, running a graph inside the node) raises ``DriverOnlyError``:
keep such nodes in the driver with ``RayExecutor(nodes=[...])`` naming only the
nodes to ship.

A run that ends early (a stream left with ``break``, Ctrl-C, an error) sends no more
tasks and stops waiting for those on Ray; so does ``shutdown(cancel_futures=True)``
for every run: their tasks fail with ``ExecutorClosedError``. Tasks already on Ray are
not cancelled: they run to their end there and their results are dropped, because
Ray (2.60 included) can crash the driver process when a task is cancelled just as
it completes (ray-project/ray#54846).

Ray moves functions, inputs and results between processes with (cloud)pickle. That
is transport between processes you run, not storage: what a run saves still goes
through the checkpoint serializer, which never unpickles anything.

See ``docs/distributed.md``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

try:
    import ray
    from ray.exceptions import (
        GetTimeoutError,
        RaySystemError,
        RayTaskError,
        WorkerCrashedError,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "stepgraph.engine.ray needs Ray: pip install 'stepgraph[ray]' (or ray>=2.40)"
    ) from exc

from ._ray_worker import (
    _CHUNKS,
    _KEEP_IN_DRIVER,
    DriverOnlyError,
    _NotShipped,
    _run_on_worker,
    _Shared,
    _summary,
    _TaskInfo,
)
from ._runtime import _no_op_writer, current_task
from .errors import GraphRunError

if TYPE_CHECKING:
    from ._loop import RunLoop
    from ._program import NodeSpec
    from ._task import Task

__all__ = ["RayExecutor", "DriverOnlyError", "ExecutorClosedError"]

_DEFAULT_OPTIONS: dict[str, Any] = {"num_cpus": 1, "max_retries": 3}
# Options that would change what a Ray task means to the driver: application errors
# are retried by the node's RetryPolicy (where the stream and the attempt count see
# them), and a task has exactly one result.
_REFUSED_OPTIONS = {
    "retry_exceptions": "retry a node's errors with its RetryPolicy (add_node(..., "
    "retry_policy=RetryPolicy(...))): the driver counts and streams those attempts",
    "num_returns": "a node's task returns one value",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ExecutorClosedError(GraphRunError):
    """A task did not run, or was given up, because its run or its executor was closed.

    Raised for the tasks of a run that ends early (a stream left with ``break``,
    Ctrl-C, an error in the driver): those not yet sent to Ray are not sent, those
    waiting or running on Ray are no longer waited for (they finish on Ray, and their
    results are dropped). Raised for every task of every run when the
    ``RayExecutor`` is shut down with ``cancel_futures=True`` (or stops the Ray it
    started without waiting), and for a run, or ``submit()``, that uses an executor
    already shut down. Not retried by the default retry policy (a ``RuntimeError``).

    Attributes:
        node: the node whose task it was, or ``None`` (``submit()``, a new run).
    """

    def __init__(self, message: str, *, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


_SHUT_DOWN = "this RayExecutor was shut down; make a new one"


# -- the driver side ----------------------------------------------------------------


class RayExecutor(Executor):
    """Runs the node functions of a superstep's tasks as Ray tasks.

    Pass it as ``executor=`` to ``invoke``, ``stream``, ``iter`` or ``batch`` (from
    async code: ``await asyncio.to_thread(graph.invoke, ..., executor=...)``). The
    driver keeps the superstep loop, retries, caching, writers, the barrier and
    checkpoints; each shipped task blocks one local thread while its Ray task runs.
    With ``max_concurrency=1`` in the run's config, a superstep's tasks are sent one
    at a time; other values of ``max_concurrency`` do not apply (``max_in_flight``
    does).

    Args:
        address: where Ray runs. If Ray is already initialized in this process, that
            connection is used and ``address`` and ``init_kwargs`` are ignored.
            Otherwise ``ray.init(address, **init_kwargs)`` is called: ``None`` starts
            a local instance (or joins the one ``RAY_ADDRESS`` names), ``"auto"``
            joins the cluster this machine belongs to, ``"ray://host:10001"``
            connects through Ray Client.
        nodes: the nodes whose tasks go to Ray. ``None`` (the default) ships every
            node that can be shipped; a subgraph node and an async node always run
            in the driver. A list names the nodes to ship (the others run on local
            threads); a mapping does the same and gives each named node its own Ray
            options, merged over ``remote_options`` (e.g. ``{"embed": {"num_gpus": 1}}``).
            Names are checked against the graph when a run starts.
        max_in_flight: how many tasks may wait on Ray at once (local threads that
            block on a result). Default: twice the cluster's CPUs, at least 16. A
            Send fan-out larger than this runs in waves.
        remote_options: options of every Ray task, as for ``ray.remote``: default
            ``{"num_cpus": 1, "max_retries": 3}``. ``max_retries`` is how often Ray
            reruns a task whose worker process died; errors the node raises are
            retried by the node's ``RetryPolicy`` instead (``retry_exceptions`` is
            refused).
        init_kwargs: keyword arguments of ``ray.init`` when this executor starts
            Ray (``num_cpus``, ``runtime_env``, ``include_dashboard``, ...).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        nodes: Iterable[str] | Mapping[str, Mapping[str, Any]] | None = None,
        max_in_flight: int | None = None,
        remote_options: Mapping[str, Any] | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if max_in_flight is not None and (
            not isinstance(max_in_flight, int) or isinstance(max_in_flight, bool)
        ):
            raise TypeError(f"max_in_flight must be an int, got {max_in_flight!r}")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        if isinstance(nodes, str):
            raise TypeError(f"nodes must be a list of node names, got the string {nodes!r}")
        per_node: dict[str, Mapping[str, Any]] | None = None
        if isinstance(nodes, Mapping):
            per_node = {name: dict(opts or {}) for name, opts in nodes.items()}
        elif nodes is not None:
            per_node = {name: {} for name in nodes}
        base = {**_DEFAULT_OPTIONS, **(remote_options or {})}
        for opts in [base, *(per_node or {}).values()]:
            _check_options(opts)
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address, **dict(init_kwargs or {}))
        try:
            remote = ray.remote(_run_on_worker)
            self._remote = remote.options(**base)  # Ray checks the options here
            self._remote_for = {
                name: remote.options(**{**base, **opts})
                for name, opts in (per_node or {}).items()
                if opts
            }
            if max_in_flight is None:
                cpus = int(ray.cluster_resources().get("CPU", 1))
                max_in_flight = max(16, 2 * cpus)
        except BaseException:
            if self._owns_ray:
                ray.shutdown()
            raise
        self._nodes = None if per_node is None else tuple(per_node)
        self.max_in_flight: int = max_in_flight
        # Marks its threads: the tasks they run were submitted before any shutdown.
        self._token = object()
        self._pool = ThreadPoolExecutor(
            max_workers=max_in_flight,
            thread_name_prefix="stepgraph-ray",
            initializer=_mark_thread,
            initargs=(self._token,),
        )
        self._lock = threading.Lock()
        # Notified when no thread is sending a task, and when no task is on Ray.
        self._idle = threading.Condition(self._lock)
        self._sending = 0  # threads between the check for shutdown and their task's ref
        self._in_flight: set[Any] = set()
        self._closed = False  # shut down: no new runs, submissions or tasks
        self._cancelled = False  # ... and no task at all; what is on Ray is given up

    def __repr__(self) -> str:
        nodes = "all" if self._nodes is None else list(self._nodes)
        return f"RayExecutor(nodes={nodes}, max_in_flight={self.max_in_flight})"

    # -- concurrent.futures.Executor -------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn`` on one of the local threads (the driver hands its tasks here).

        Raises:
            ExecutorClosedError: the executor was shut down.
        """
        if self._closed:
            raise ExecutorClosedError(_SHUT_DOWN)
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; if this executor started Ray (or connected to it), stop it.

        Tasks already handed to the executor finish, and ``wait`` waits for them. A
        run that goes on using the executor fails at its next superstep with
        ``ExecutorClosedError``. With ``cancel_futures=True``, the tasks not yet sent
        to Ray fail with ``ExecutorClosedError`` instead, and those on Ray are given
        up and fail with it too (within a tenth of a second), so every run using the
        executor ends. The given-up tasks run to their end on Ray: cancelling them
        can crash the driver (ray-project/ray#54846).

        Ray that this executor started is stopped (``ray.shutdown()``) after that,
        once the tasks on Ray are done (a run's task that its driver thread sends
        itself, too); a Ray that was running before is left running. ``wait=False``
        with Ray to stop gives up tasks as ``cancel_futures=True`` does: Ray does not
        outlive the call.
        """
        stop_ray, self._owns_ray = self._owns_ray, False
        with self._lock:
            self._closed = True
            if cancel_futures or (stop_ray and not wait):
                self._cancelled = True
            while self._sending:  # a task being sent now gets its ref first
                self._idle.wait()
        self._pool.shutdown(wait=wait)
        if stop_ray:
            with self._lock:
                while wait and self._in_flight:  # tasks the drivers' own threads sent
                    self._idle.wait()
                self._cancelled = True  # nothing is sent any more
                while self._in_flight:  # none waits on a Ray that is gone (a given-up
                    self._idle.wait()  # task stops waiting within _POLL seconds)
            ray.shutdown()

    # -- the hook the sync drivers call once per run -----------------------------------

    def _stepgraph_bind(self, loop: RunLoop) -> Callable[[Task], Any] | None:
        if self._closed:
            raise ExecutorClosedError(_SHUT_DOWN)
        graph = loop.graph
        program = graph.program
        # An @entrypoint (the only graph that streams from inside its lone task) runs
        # its body in the driver, where the @task calls it makes run.
        workflow = graph.stream_eager
        if self._nodes is None:
            chosen = {
                n: s for n, s in program.nodes.items() if not workflow and _stays_local(s) is None
            }
        else:
            chosen = {}
            problems = []
            for name in self._nodes:
                spec = program.nodes.get(name)
                if spec is None:
                    problems.append(f"{name!r}: it is not a node of this graph")
                elif workflow:
                    problems.append(
                        f"{name!r}: it is an @entrypoint, which runs in the driver with its "
                        "@task calls"
                    )
                elif (why := _stays_local(spec)) is not None:
                    problems.append(f"{name!r}: it {why}")
                else:
                    chosen[name] = spec
            if problems:
                known = sorted(n for n, s in program.nodes.items() if not s.hidden)
                raise ValueError(
                    f"RayExecutor(nodes=...) cannot ship {'; '.join(problems)} "
                    f"(graph {graph.name!r} has nodes {known})"
                )
        if not chosen:
            return None
        shared = _Shared(loop.config, loop.limit, loop.context)
        return _RayRun(self, chosen, shared)


_threads = threading.local()


def _mark_thread(token: object) -> None:
    _threads.executor = token


# How often a thread waiting for a task's result checks whether its run, or the
# executor, gave the task up.
_POLL = 0.1


def _check_options(options: Mapping[str, Any]) -> None:
    for key, why in _REFUSED_OPTIONS.items():
        if key in options:
            raise ValueError(f"RayExecutor does not take the Ray option {key!r}: {why}")


def _stays_local(spec: NodeSpec) -> str | None:
    """Why a node cannot be shipped, or None if it can."""
    if spec.hidden:
        return "is internal to the graph"
    if spec.subgraph is not None:
        return (
            "is a subgraph: its supersteps run in the driver (nodes of a subgraph run on "
            "local threads)"
        )
    if spec.is_async:
        return (
            "is async: the RayExecutor runs with invoke()/stream()/iter()/batch(), sync nodes only"
        )
    return None


class _RayRun:
    """One run's use of a ``RayExecutor``: called instead of ``node.proc(input)``.

    What every task of the run shares is put in Ray's object store once: each shipped
    node's function (with its metadata and tags) and the run's config and context.
    The drivers call ``close()`` when the run ends, however it ends: it gives up the
    run's tasks still on Ray and lets the object store drop what the run put there.
    """

    __slots__ = (
        "_closed",
        "_lock",
        "_nodes",
        "_refs",
        "_shared",
        "_shared_ref",
        "executor",
    )

    def __init__(self, executor: RayExecutor, nodes: dict[str, NodeSpec], shared: _Shared) -> None:
        self.executor = executor
        self._nodes = nodes
        self._shared = shared
        self._refs: dict[str, Any] = {}
        self._shared_ref: Any = None
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, task: Task) -> Any:
        node = task.node
        executor = self.executor
        if self._closed or executor._closed:
            self._check_open(task.name)
        if self._nodes.get(task.name) is not node:
            return node.proc(task.input)
        ctx = current_task.get()  # the driver's context of this attempt
        stream = ctx is not None and ctx.writer is not _no_op_writer
        info = _TaskInfo(
            task.name, task.step, task.attempt, task.triggers, task.path, task.namespace, stream
        )
        remote = executor._remote_for.get(task.name, executor._remote)
        ref = self._send(task, remote, info)
        try:
            output, chunks = ray.cloudpickle.loads(self._result(ref, task.name))
        except RayTaskError as err:
            error = _unwrap(err, task.name)
            chunks = error.__dict__.pop(_CHUNKS, None)
            if chunks and ctx is not None:  # what the failed attempt wrote
                for chunk in chunks:
                    ctx.writer(chunk)
            raise error from None
        except WorkerCrashedError as err:
            err.add_note(
                f"the Ray worker running node {task.name!r} died, and Ray gave up rerunning "
                "it (remote_options max_retries); a RetryPolicy that retries "
                "WorkerCrashedError tries again from the driver"
            )
            raise
        except BaseException as err:
            if self._stopping():  # e.g. Ray stopped under a waiting thread
                raise self._cancelled_error(task.name) from err
            raise
        finally:
            with executor._lock:
                executor._in_flight.discard(ref)
                if not executor._in_flight:
                    executor._idle.notify_all()
        if chunks and ctx is not None:
            for chunk in chunks:  # the custom stream gets them when the task returns
                ctx.writer(chunk)
        return output

    def close(self) -> None:
        """The run ended: send no more tasks, give up those on Ray, drop the shared refs."""
        executor = self.executor
        with executor._lock:
            self._closed = True
        with self._lock:
            self._refs.clear()
            self._shared_ref = None

    # -- sending a task ----------------------------------------------------------------

    def _result(self, ref: Any, name: str) -> Any:
        """The task's result; given up (ExecutorClosedError) if the run or executor closes.

        Never ``ray.cancel``: cancelling a task just as it completes can crash the
        driver process (ray-project/ray#54846). A given-up task runs to its end.
        """
        while True:
            try:
                return ray.get(ref, timeout=_POLL)
            except GetTimeoutError:
                if self._stopping():
                    raise self._cancelled_error(name) from None

    def _stopping(self) -> bool:
        return self._closed or self.executor._cancelled

    def _check_open(self, name: str) -> None:
        """Raise if a task of this run may not start now (takes no lock)."""
        executor = self.executor
        if self._closed:
            raise ExecutorClosedError(
                f"node {name!r} was not run: its run had ended (it was left early, "
                "stopped, or it failed) before the task started",
                node=name,
            )
        if executor._cancelled:
            raise ExecutorClosedError(
                f"node {name!r} was not run: its RayExecutor was shut down "
                "(shutdown(cancel_futures=True), or it stopped the Ray it had started) "
                "before the task started; make a new RayExecutor to run it",
                node=name,
            )
        if executor._closed and getattr(_threads, "executor", None) is not executor._token:
            # Not a task handed to the executor before it shut down: a new one.
            raise ExecutorClosedError(f"{_SHUT_DOWN} (node {name!r} was to run)", node=name)

    def _cancelled_error(self, name: str) -> ExecutorClosedError:
        why = (
            "its run had ended (it was left early, stopped, or it failed)"
            if self._closed
            else "its RayExecutor was shut down (shutdown(cancel_futures=True), or it "
            "stopped the Ray it had started)"
        )
        return ExecutorClosedError(
            f"node {name!r} was given up on Ray: {why} before the task finished (it runs "
            "to its end there; its result is dropped)",
            node=name,
        )

    def _send(self, task: Task, remote: Any, info: _TaskInfo) -> Any:
        """Start the task's Ray task; its ref is in flight when this returns.

        ``shutdown`` waits for the threads between the check and the ref: Ray must not
        stop (and ``remote()``/``put()`` start a new one) under them.
        """
        executor = self.executor
        with executor._lock:
            if self._closed or executor._closed:
                self._check_open(task.name)
            executor._sending += 1
        ref = None
        try:
            node = task.node
            args = (self._node_ref(node), task.input, info, self._shared_put(task.name))
            try:
                ref = remote.remote(*args)
            except Exception as exc:
                raise TypeError(
                    f"could not send the input of node {task.name!r} to a Ray worker "
                    f"({_summary(exc)}); make it picklable (plain data, no locks, open "
                    f"files, connections or generators), or {_KEEP_IN_DRIVER}"
                ) from exc
        finally:
            with executor._lock:
                executor._sending -= 1
                if not executor._sending:
                    executor._idle.notify_all()
                if ref is not None:
                    executor._in_flight.add(ref)
        return ref

    def _node_ref(self, node: NodeSpec) -> Any:
        ref = self._refs.get(node.name)
        if ref is None:
            with self._lock:
                ref = self._refs.get(node.name)
                if ref is None:
                    if self._closed:  # close() dropped the refs: put nothing back
                        self._check_open(node.name)
                    try:
                        ref = ray.put((node.proc, node.metadata, node.tags))
                    except Exception as exc:
                        raise TypeError(
                            f"the function of node {node.name!r} cannot be sent to Ray "
                            f"workers ({_summary(exc)}); make it picklable (a "
                            "module-level function, no locks or open files in its closure), "
                            f"or {_KEEP_IN_DRIVER}"
                        ) from exc
                    self._refs[node.name] = ref
        return ref

    def _shared_put(self, name: str) -> Any:
        ref = self._shared_ref
        if ref is None:
            with self._lock:
                ref = self._shared_ref
                if ref is None:
                    if self._closed:
                        self._check_open(name)
                    try:
                        ref = ray.put(self._shared)
                    except Exception as exc:  # asked for on the worker, it says why
                        ref = _NotShipped(_summary(exc))
                    self._shared_ref = ref
        return ref


def _unwrap(err: RayTaskError, node: str) -> BaseException:
    """The error the node raised on the worker, with the worker's traceback as a note."""
    cause = err.cause
    if isinstance(cause, RaySystemError) and isinstance(cause.client_exc, ImportError):
        # The worker could not unpickle the node's function or its input.
        missing = cause.client_exc
        missing.add_note(
            f"a Ray worker could not load node {node!r} (its function, or its input): the "
            "worker cannot import that module. Install your code where the workers run, "
            "send it with ray.init(runtime_env={'working_dir': ...} or {'py_modules': "
            "[...]}), or have its functions pickled by value: "
            "ray.cloudpickle.register_pickle_by_value(module)"
        )
        return missing
    if not isinstance(cause, Exception):
        return err
    cause.add_note(f"raised on a Ray worker; its traceback there:\n{_ANSI.sub('', str(err))}")
    return cause

"""The errors stepgraph raises, as one tree.

Build-time problems (found by ``StateGraph`` methods and ``compile()``) subclass
``ValueError``; run-time problems subclass ``RuntimeError`` or the builtin a caller
already catches. Control signals that must travel through user code (a subgraph
handing a ``Command`` to its parent) subclass ``BaseException`` so that a node's
``except Exception:`` cannot swallow them::

    GraphBuildError(ValueError)          compile() found problems; .problems lists all of them
    GraphRunError(RuntimeError)          base of run-time errors raised by the engine itself
      EmptyInputError                    nothing to run: no input and nothing to resume
      InvalidInputError                  (also a ValueError) the input does not fit the input schema
      GraphRecursionError                (also a RecursionError) the step limit would be exceeded
      NodeTimeoutError                   (also a TimeoutError) a node ran past its timeout=
    InvalidUpdateError                   (stepgraph.channels) a channel rejected a step's writes
      InvalidNodeReturnError             a node returned something the graph cannot apply
    EmptyChannelError                    (stepgraph.channels) a channel was read while empty
    GraphBubbleUp(BaseException)         control signals, never reach the caller
      ParentCommand                      a subgraph node returned Command(graph=Command.PARENT)
    GraphWarning(UserWarning)            compile()'s static analysis found a likely mistake

Errors raised by a node's own code reach the caller unchanged, with a note
(PEP 678) naming the node, the step and the task id. When several tasks of one
superstep fail, they arrive together as an ``ExceptionGroup``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stepgraph.channels import EmptyChannelError, InvalidUpdateError

if TYPE_CHECKING:
    from ._types import Command

__all__ = [
    "GraphBuildError",
    "GraphRunError",
    "EmptyInputError",
    "InvalidInputError",
    "InvalidNodeReturnError",
    "GraphRecursionError",
    "NodeTimeoutError",
    "InvalidUpdateError",
    "EmptyChannelError",
    "GraphBubbleUp",
    "ParentCommand",
    "GraphWarning",
]


class GraphBuildError(ValueError):
    """The graph definition has problems; ``problems`` lists every one of them.

    ``compile()`` collects all problems before raising, so one run of your code
    shows everything that needs fixing.
    """

    def __init__(self, problems: Sequence[str], *, graph: str = "graph") -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        self.graph = graph
        super().__init__(self._format())

    def _format(self) -> str:
        if len(self.problems) == 1:
            return f"cannot build {self.graph}: {self.problems[0]}"
        lines = [f"cannot build {self.graph}: {len(self.problems)} problems"]
        lines += [f"  {i}. {p}" for i, p in enumerate(self.problems, 1)]
        return "\n".join(lines)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_build_error, (self.problems, self.graph))


def _rebuild_build_error(problems: Sequence[str], graph: str) -> GraphBuildError:
    return GraphBuildError(problems, graph=graph)


class GraphWarning(UserWarning):
    """``compile()``'s static analysis found a likely mistake in the graph.

    ``compile(strict=True)`` reports the same findings as problems of the
    ``GraphBuildError`` instead. Silence one kind with
    ``warnings.filterwarnings("ignore", category=GraphWarning)``.

    Attributes:
        kind: ``"no_path_to_end"``, ``"concurrent_write"`` or ``"unread_channel"``.
        nodes: the nodes the finding is about.
        keys: the state keys it is about (empty for ``"no_path_to_end"``).
        graph: the graph's description, e.g. ``"graph 'LangGraph'"``.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        nodes: Sequence[str] = (),
        keys: Sequence[str] = (),
        graph: str = "graph",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.nodes: tuple[str, ...] = tuple(nodes)
        self.keys: tuple[str, ...] = tuple(keys)
        self.graph = graph

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_warning, (self.message, self.kind, self.nodes, self.keys, self.graph))


def _rebuild_warning(
    message: str, kind: str, nodes: Sequence[str], keys: Sequence[str], graph: str
) -> GraphWarning:
    return GraphWarning(message, kind=kind, nodes=nodes, keys=keys, graph=graph)


class GraphRunError(RuntimeError):
    """Base class of the run-time errors the engine raises itself."""


class EmptyInputError(GraphRunError):
    """The run had nothing to do: no input, and no saved state to continue from."""


class InvalidInputError(GraphRunError, ValueError):
    """The input given to ``invoke``/``stream`` does not fit the graph's input schema.

    Also a ``ValueError``, as the pydantic validation errors it often wraps are.
    """


class InvalidNodeReturnError(InvalidUpdateError, ValueError):
    """A node returned a value the graph cannot turn into state updates.

    A kind of ``InvalidUpdateError`` (what LangGraph raises for bad return values) and
    of ``ValueError`` (what pydantic validation errors are), so code written for
    LangGraph that catches either keeps working.

    Attributes:
        node: the node's name.
        step: the superstep in which it ran, when known.
        message: the full explanation.
    """

    def __init__(self, message: str, *, node: str, step: int | None = None) -> None:
        super().__init__("", message, None, step, (node,))
        self.node = node
        self.message = message

    def __str__(self) -> str:
        return self.message

    def with_context(self, step: int, writers: Sequence[str]) -> InvalidNodeReturnError:
        return InvalidNodeReturnError(self.message, node=self.node, step=step)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_node_return, (self.message, self.node, self.step))


def _rebuild_node_return(message: str, node: str, step: int | None) -> InvalidNodeReturnError:
    return InvalidNodeReturnError(message, node=node, step=step)


class GraphRecursionError(GraphRunError, RecursionError):
    """The run would need more supersteps than ``recursion_limit`` allows.

    Raised *before* the extra superstep runs, so no work beyond the limit is done.

    Attributes:
        limit: the recursion limit in force.
        steps: how many supersteps this run executed.
        pending: the names of the nodes that would have run next.
    """

    def __init__(self, *, limit: int, steps: int, pending: Sequence[str]) -> None:
        self.limit = limit
        self.steps = steps
        self.pending = tuple(pending)
        nodes = ", ".join(repr(p) for p in self.pending[:5])
        more = f" and {len(self.pending) - 5} more" if len(self.pending) > 5 else ""
        super().__init__(
            f"recursion limit of {limit} supersteps reached: the run executed {steps} "
            f"supersteps and still had work to do (next: {nodes}{more}). If the graph is "
            f"meant to run longer, raise the limit, e.g. "
            f'graph.invoke(inputs, {{"recursion_limit": {max(limit * 2, limit + 10)}}}); '
            f"otherwise check the loop's exit condition."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_recursion, (self.limit, self.steps, self.pending))


def _rebuild_recursion(limit: int, steps: int, pending: Sequence[str]) -> GraphRecursionError:
    return GraphRecursionError(limit=limit, steps=steps, pending=pending)


class NodeTimeoutError(GraphRunError, TimeoutError):
    """An async node ran longer than its ``timeout=`` and was cancelled.

    Also a ``TimeoutError``, so ``except TimeoutError:`` catches it. Unlike a plain
    ``TimeoutError`` (an ``OSError``), the default retry policy retries it.

    Attributes:
        node: the node's name.
        timeout: the limit, in seconds, that one attempt of the node may take.
        step: the superstep in which it ran, when known.
    """

    def __init__(self, *, node: str, timeout: float, step: int | None = None) -> None:
        self.node = node
        self.timeout = timeout
        self.step = step
        where = f" in superstep {step}" if step is not None else ""
        super().__init__(
            f"node {node!r} did not finish within its timeout of {timeout:g} s{where} and "
            "was cancelled; raise add_node(..., timeout=...) if it needs longer, or give it "
            "a RetryPolicy to try again"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_timeout, (self.node, self.timeout, self.step))


def _rebuild_timeout(node: str, timeout: float, step: int | None) -> NodeTimeoutError:
    return NodeTimeoutError(node=node, timeout=timeout, step=step)


class GraphBubbleUp(BaseException):
    """Base of the control signals that travel up through user code.

    They derive from ``BaseException`` so that ``except Exception:`` in a node does
    not swallow them; the engine always catches them itself.
    """


class ParentCommand(GraphBubbleUp):
    """Carries ``Command(graph=Command.PARENT)`` from a subgraph to its parent graph."""

    def __init__(self, command: Command) -> None:
        self.command = command
        super().__init__(command)

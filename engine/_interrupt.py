"""Pausing a run for a person: ``interrupt()``, ``Interrupt``, and resume values.

``interrupt(value)`` inside a node (or a task) pauses the run after the current
superstep: sibling tasks finish and their writes are saved, the interrupted task's
question is saved as an ``Interrupt``, and the caller sees it under
``"__interrupt__"``. ``invoke(Command(resume=answer), config)`` runs the interrupted
node again from its start; this time ``interrupt()`` returns the answer.

Every ``interrupt()`` call has its own id: a hash of the task's namespace (which holds
the deterministic task id) and the call's position in the task. A node that asks
several questions gets them answered one by one, each answer recorded so that the
re-runs that follow see the earlier answers again (LangGraph gives every call in a
task the same id, so several answers cannot be told apart).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import xxhash

from ._runtime import _require
from .errors import GraphBubbleUp, InvalidInputError


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A question a paused run is waiting on.

    Attributes:
        value: what ``interrupt(value)`` was called with (shown to the person).
        id: identifies this ``interrupt()`` call; answer it with
            ``Command(resume={id: answer})``.
    """

    value: Any
    id: str


def interrupt_id(namespace: str, index: int) -> str:
    """The id of call number ``index`` of ``interrupt()`` in the task at ``namespace``."""
    return xxhash.xxh3_128_hexdigest(f"{namespace}\x00{index}".encode())


class GraphInterrupt(GraphBubbleUp):
    """Raised by ``interrupt()``: the task stops and the run pauses after the step.

    A control signal, not an error: it derives from ``BaseException`` so that a node's
    ``except Exception:`` does not swallow it.

    Attributes:
        interrupts: the questions (empty for a static breakpoint).
        answers: the answers the task had already received before this question.
    """

    def __init__(self, interrupts: Sequence[Interrupt] = (), answers: Sequence[Any] = ()) -> None:
        self.interrupts = tuple(interrupts)
        self.answers = list(answers)
        super().__init__(self.interrupts)


@dataclass
class Resume:
    """The answers given to one run (``Command(resume=...)``), shared with its subgraphs.

    A plain value answers the single pending interrupt (``take`` hands it out once);
    a dict keyed by interrupt ids answers those interrupts.
    """

    by_id: Mapping[str, Any] | None = None
    value: Any = None
    has_value: bool = False
    target: str | None = None  # the one pending interrupt a plain value answers
    _used: bool = field(default=False, repr=False)

    @classmethod
    def of(cls, resume: Any, pending: Sequence[Interrupt]) -> Resume:
        ids = [i.id for i in pending]
        if not ids:
            raise InvalidInputError(
                "Command(resume=...) answers a pending interrupt, but this thread has none "
                "waiting: run the graph with its input first (or check the thread_id)"
            )
        if isinstance(resume, Mapping) and resume and all(k in ids for k in resume):
            return cls(by_id=dict(resume))
        if isinstance(resume, Mapping) and resume and any(_looks_like_id(k) for k in resume):
            unknown = [k for k in resume if k not in ids]
            raise InvalidInputError(
                f"Command(resume={{...}}) names interrupt ids that are not pending: {unknown}; "
                f"the pending interrupts are {ids}"
            )
        if len(ids) > 1:
            raise InvalidInputError(
                f"{len(ids)} interrupts are pending ({', '.join(ids)}), so one resume value "
                "cannot say which it answers: pass Command(resume={interrupt_id: value, ...})"
            )
        return cls(value=resume, has_value=True, target=ids[0])

    def take(self, iid: str) -> tuple[bool, Any]:
        """The answer for interrupt ``iid``, if this resume has one for it."""
        if self.by_id is not None:
            if iid in self.by_id:
                return True, self.by_id[iid]
            return False, None
        if self.has_value and not self._used and (self.target is None or iid == self.target):
            self._used = True
            return True, self.value
        return False, None


def _looks_like_id(key: Any) -> bool:
    return isinstance(key, str) and len(key) == 32 and all(c in "0123456789abcdef" for c in key)


class _Scratch:
    """Per task attempt: the answers recorded so far and the next call's index."""

    __slots__ = ("answers", "counter")

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.counter = 0


def interrupt(value: Any) -> Any:
    """Pause the run and ask for a value; returns the answer once the run is resumed.

    The first time it is reached, it stops the task (and the run, after the current
    superstep). Resuming with ``Command(resume=answer)`` re-runs the node from its
    start; this call then returns ``answer``. Calls are matched by their order in the
    node, so keep that order deterministic (put side effects after the interrupt, or
    in a ``@task``).

    Args:
        value: what to show the person: any value the checkpoint serializer can store.

    Raises:
        RuntimeError: outside a running node, or when the graph has no checkpointer
            (a paused run has to be saved somewhere to be resumed).
    """
    ctx = _require("interrupt()")
    run = ctx.run
    p = run.persistence
    if p is None:
        raise RuntimeError(
            f"interrupt() in node {ctx.task.name!r} pauses the run until it is resumed, "
            "which needs a checkpointer: compile(checkpointer=InMemorySaver()) or "
            "SqliteSaver(...), and pass a thread_id"
        )
    scratch: _Scratch | None = ctx.scratch
    if scratch is None:
        scratch = ctx.scratch = _Scratch(list(p.resumes.get(ctx.task.id, ())))
    index = scratch.counter
    scratch.counter += 1
    if index < len(scratch.answers):
        return scratch.answers[index]
    iid = interrupt_id(ctx.task.namespace, index)
    resume = run.resume
    if resume is not None:
        found, answer = resume.take(iid)
        if found:
            scratch.answers.append(answer)
            return answer
    raise GraphInterrupt((Interrupt(value, iid),), scratch.answers)

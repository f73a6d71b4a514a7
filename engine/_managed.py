"""Managed values: state keys computed for a node when it reads, never stored.

Declare them as LangGraph does::

    class State(TypedDict):
        messages: list[str]
        remaining_steps: RemainingSteps   # same as Annotated[int, RemainingSteps]
        is_last_step: IsLastStep
"""

from __future__ import annotations

import typing
from typing import Annotated, Any


class RemainingStepsManager:
    """Computes how many supersteps this run may still execute, counting the current one."""

    @staticmethod
    def compute(step: int, stop: int) -> Any:
        return stop - step


class IsLastStepManager:
    """Computes whether this is the last superstep the recursion limit allows."""

    @staticmethod
    def compute(step: int, stop: int) -> Any:
        return step == stop - 1


RemainingSteps = Annotated[int, RemainingStepsManager]
"""How many supersteps this run may still execute, counting the current one.

It is 1 in the last superstep the recursion limit allows, so a node can stop a loop
gracefully (for example ``if state["remaining_steps"] <= 2: return ...``).
"""

IsLastStep = Annotated[bool, IsLastStepManager]
"""True in the last superstep the recursion limit allows, else False."""

MANAGERS: tuple[type, ...] = (RemainingStepsManager, IsLastStepManager)


def manager_of(value: object) -> type | None:
    """The manager class ``value`` names (the class itself or an alias), or None."""
    if isinstance(value, type) and issubclass(value, MANAGERS):
        return value
    if typing.get_origin(value) is Annotated:
        for meta in value.__metadata__:  # type: ignore[attr-defined]
            found = manager_of(meta)
            if found is not None:
                return found
    return None

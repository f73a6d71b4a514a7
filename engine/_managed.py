"""Managed values: state keys computed for a node when it reads, never stored.

Declare them with ``Annotated``::

    class State(TypedDict):
        messages: list[str]
        remaining_steps: Annotated[int, RemainingSteps]
"""

from __future__ import annotations

from typing import Any


class RemainingSteps:
    """How many supersteps this run may still execute, counting the current one.

    It is 1 in the last superstep the recursion limit allows, so a node can stop a
    loop gracefully (for example ``if state["remaining_steps"] <= 2: return ...``).
    """

    @staticmethod
    def compute(step: int, stop: int) -> Any:
        return stop - step


class IsLastStep:
    """True in the last superstep the recursion limit allows, else False."""

    @staticmethod
    def compute(step: int, stop: int) -> Any:
        return step == stop - 1


MANAGED_VALUES: tuple[type, ...] = (RemainingSteps, IsLastStep)


def is_managed(value: object) -> bool:
    """True if ``value`` is a managed-value class."""
    return isinstance(value, type) and issubclass(value, MANAGED_VALUES)

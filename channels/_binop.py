"""`BinaryOperatorAggregate`: a channel folded with a reducer, and `Overwrite` to bypass it."""

from __future__ import annotations

import collections.abc
import copy
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._base import MISSING, BaseChannel, Missing
from ._errors import EmptyChannelError, InvalidUpdateError

__all__ = ["BinaryOperatorAggregate", "Overwrite"]

V = TypeVar("V")

_OVERWRITE = "__overwrite__"

# Abstract collection types cannot be instantiated; start them as the obvious builtin.
_CONCRETE: dict[Any, type] = {
    collections.abc.Sequence: list,
    collections.abc.MutableSequence: list,
    collections.abc.Set: set,
    collections.abc.MutableSet: set,
    collections.abc.Mapping: dict,
    collections.abc.MutableMapping: dict,
}

# Builtin containers the reducer may mutate in place (operator.iadd, operator.ior, ...).
_MUTABLE_CONTAINERS = (list, dict, set, bytearray)

# Lambdas cannot be compared meaningfully (two identical ones are different objects), so all
# of them count as one operator when declarations are compared.
_ANY_LAMBDA = "<lambda>"


@dataclass(frozen=True, slots=True)
class Overwrite(Generic[V]):
    """A write that replaces a reduced channel's value instead of being folded into it.

    The raw forms `{"__overwrite__": value}` and `{"type": "__overwrite__", "value": value}`
    (for writers that can only produce plain data) mean the same.

    Attributes:
        value: The new value of the channel.
    """

    value: V


def _as_overwrite(write: object) -> tuple[bool, Any]:
    """Return `(True, value)` if `write` is an overwrite in any form, else `(False, None)`."""
    if isinstance(write, Overwrite):
        return True, write.value
    if isinstance(write, dict):
        if len(write) == 1 and _OVERWRITE in write:
            return True, write[_OVERWRITE]
        if len(write) == 2 and write.get("type") == _OVERWRITE and "value" in write:
            return True, write["value"]
    return False, None


def _initial_value(typ: Any) -> Any:
    """Return `typ()` (for generic aliases, their origin's), or `MISSING` if that fails."""
    origin = typing.get_origin(typ)
    if origin is typing.Annotated:
        return _initial_value(typ.__origin__)
    factory = origin or typ
    try:
        factory = _CONCRETE.get(factory, factory)
        return factory()
    except Exception:
        # Not constructible without arguments (int | None, a model with required fields,
        # an unhashable or non-type typ): the first write becomes the value instead.
        return MISSING


def _detach(value: V) -> V:
    """Shallow-copy a builtin mutable container; return anything else as is."""
    return copy.copy(value) if type(value) in _MUTABLE_CONTAINERS else value


class BinaryOperatorAggregate(BaseChannel[V, V | Overwrite[V], V]):
    """Folds every write into the value with a binary operator (a reducer).

    The value starts as `typ()` when that can be built without arguments; otherwise the
    channel is empty until the first write, which becomes the value. Writes of one step are
    folded in task order: `value = operator(value, write)`.

    Attributes:
        operator: The reducer, called as `operator(current, write)`.
    """

    __slots__ = ("_value", "operator")

    def __init__(self, typ: Any, operator: Callable[[V, V], V], *, key: str = "") -> None:
        """Create the channel with its initial value.

        Args:
            typ: The type of the value; `typ()` is the initial value if it can be built.
            operator: The reducer.
            key: The channel's name in its graph.
        """
        super().__init__(typ, key)
        self.operator = operator
        self._value: V | Missing = _initial_value(typ)

    def get(self) -> V:
        """Return the value.

        Raises:
            EmptyChannelError: Nothing has been written and `typ()` could not be built.
        """
        if self._value is MISSING:
            raise EmptyChannelError(self.key)
        return self._value

    def is_available(self) -> bool:
        """Return True if the channel holds a value."""
        return self._value is not MISSING

    def update(self, values: Sequence[V | Overwrite[V]]) -> bool:
        """Fold the step's writes into the value, or apply the step's one `Overwrite`.

        An `Overwrite` decides the step's result on its own: the other writes of that step
        are not passed to the operator at all.

        Raises:
            InvalidUpdateError: More than one `Overwrite` was written in the step.
        """
        if not values:
            return False
        overwrites = [value for is_ow, value in map(_as_overwrite, values) if is_ow]
        if len(overwrites) > 1:
            raise InvalidUpdateError(
                self.key,
                f"received {len(overwrites)} Overwrite values, but a reduced channel accepts "
                "one Overwrite per step",
                hint="let a single node overwrite it in each step",
            )
        if overwrites:
            self._value = overwrites[0]
            return True
        # Fold into a local and assign at the end, so an operator that raises midway leaves
        # the channel as it was (unless it mutated the value in place).
        acc = self._value
        for value in typing.cast(Sequence[V], values):
            acc = value if acc is MISSING else self.operator(acc, value)
        self._value = acc
        return True

    def checkpoint(self) -> V | Missing:
        """Return the value (a shallow copy if it is a builtin container), or `MISSING`."""
        # Copied because an in-place reducer would otherwise change a checkpoint that a
        # saver has not serialized yet.
        return _detach(self._value)

    def _restore(self, checkpoint: V) -> None:
        self._value = _detach(checkpoint)

    def _config(self) -> tuple[Any, ...]:
        return (self.operator,)

    def _spec(self) -> tuple[Any, ...]:
        is_lambda = getattr(self.operator, "__name__", None) == _ANY_LAMBDA
        return (_ANY_LAMBDA if is_lambda else self.operator,)

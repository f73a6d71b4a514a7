"""Channels that hold one value: `LastValue` and `LastValueAfterFinish`.

`_SingleValue` is the shared storage that the ephemeral channels build on too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from ._base import MISSING, BaseChannel, Missing
from ._errors import EmptyChannelError, InvalidUpdateError

__all__ = ["LastValue", "LastValueAfterFinish"]

V = TypeVar("V")


class _SingleValue(BaseChannel[V, V, V]):
    """Storage for channels whose state is one value; subclasses decide how `update` works.

    The value is stored and checkpointed as written: it is the user's object, which the
    channel never mutates, so copying it here would not make anyone safer.
    """

    __slots__ = ("_value",)

    def __init__(self, typ: Any, key: str = "") -> None:
        super().__init__(typ, key)
        self._value: V | Missing = MISSING

    def get(self) -> V:
        """Return the value.

        Raises:
            EmptyChannelError: Nothing has been stored.
        """
        if self._value is MISSING:
            raise EmptyChannelError(self.key)
        return self._value

    def is_available(self) -> bool:
        """Return True if a value is stored."""
        return self._value is not MISSING

    def checkpoint(self) -> V | Missing:
        """Return the value, or `MISSING`."""
        return self._value

    def _restore(self, checkpoint: V) -> None:
        self._value = checkpoint

    def _clear(self) -> bool:
        """Drop the value; return True if there was one."""
        had_value = self._value is not MISSING
        self._value = MISSING
        return had_value


class LastValue(_SingleValue[V]):
    """Holds the last value written; at most one write per step is allowed.

    Two writes in one step mean two nodes raced for the key, and which one wins would depend
    only on task order, so the step is rejected instead.
    """

    __slots__ = ()

    def update(self, values: Sequence[V]) -> bool:
        """Store the step's single write; no writes leave the value unchanged.

        Raises:
            InvalidUpdateError: More than one value was written in the step.
        """
        if not values:
            return False
        if len(values) > 1:
            raise InvalidUpdateError(
                self.key,
                f"received {len(values)} values, but LastValue accepts one value per step",
                hint=(
                    f"declare a reducer for {self.key!r}, for example "
                    "Annotated[list, operator.add], or make the writers run in different steps"
                ),
            )
        self._value = values[0]
        return True


class LastValueAfterFinish(BaseChannel[V, V, tuple[V, bool]]):
    """Holds the last value written, but shows it only once the run is about to end.

    Deferred nodes are triggered by it: the value becomes available in `finish`, which gives
    them one more step, and is cleared when they consume it. Several writes in one step keep
    the last.
    """

    __slots__ = ("_finished", "_value")

    def __init__(self, typ: Any, key: str = "") -> None:
        """Create an empty channel.

        Args:
            typ: The type of the values.
            key: The channel's name in its graph.
        """
        super().__init__(typ, key)
        self._value: V | Missing = MISSING
        self._finished = False

    def get(self) -> V:
        """Return the value once finished.

        Raises:
            EmptyChannelError: No value, or the run has not reached `finish` yet.
        """
        if self._value is MISSING or not self._finished:
            raise EmptyChannelError(self.key)
        return self._value

    def is_available(self) -> bool:
        """Return True if a value is stored and `finish` has been called since."""
        return self._finished and self._value is not MISSING

    def update(self, values: Sequence[V]) -> bool:
        """Store the last write and hide it again until the next `finish`."""
        if not values:
            return False
        self._value = values[-1]
        self._finished = False
        return True

    def finish(self) -> bool:
        """Make a stored value available; return True if that changed anything."""
        if self._finished or self._value is MISSING:
            return False
        self._finished = True
        return True

    def consume(self) -> bool:
        """Clear a finished value (its readers have run); return True if cleared."""
        if not self._finished:
            return False
        self._value = MISSING
        self._finished = False
        return True

    def checkpoint(self) -> tuple[V, bool] | Missing:
        """Return `(value, finished)`, or `MISSING` when empty."""
        if self._value is MISSING:
            return MISSING
        return (self._value, self._finished)

    def _restore(self, checkpoint: tuple[V, bool]) -> None:
        # Unpacking also accepts the list a msgpack round trip turns the tuple into.
        self._value, finished = checkpoint
        self._finished = bool(finished)

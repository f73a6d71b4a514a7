"""Single-value channels that do not keep their value like `LastValue` does.

- `AnyValue` and `EphemeralValue` live for one step: a step without writes clears them.
- `UntrackedValue` keeps its value during a run but is never saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self, TypeVar

from ._base import MISSING, Missing
from ._errors import InvalidUpdateError
from ._last_value import _SingleValue

__all__ = ["AnyValue", "EphemeralValue", "UntrackedValue"]

V = TypeVar("V")


class AnyValue(_SingleValue[V]):
    """Holds the last value written; a step without writes clears it.

    Several writes in one step are allowed: the writers are expected to agree, and the last
    one is kept.
    """

    __slots__ = ()
    clears_on_empty_update = True

    def update(self, values: Sequence[V]) -> bool:
        """Keep the last write; with no writes, clear the channel."""
        if not values:
            return self._clear()
        self._value = values[-1]
        return True


class _GuardedValue(_SingleValue[V]):
    """A single value that, when `guard` is set, rejects more than one write per step."""

    __slots__ = ("guard",)

    def __init__(self, typ: Any, guard: bool = True, *, key: str = "") -> None:
        """Create an empty channel.

        Args:
            typ: The type of the values.
            guard: If True, more than one write in a step is an error; if False, the last
                write wins.
            key: The channel's name in its graph.
        """
        super().__init__(typ, key)
        self.guard = guard

    def _config(self) -> tuple[Any, ...]:
        return (self.guard,)

    def _store(self, values: Sequence[V]) -> None:
        """Store the last of a non-empty list of writes, enforcing the guard first."""
        if self.guard and len(values) > 1:
            kind = type(self).__name__
            raise InvalidUpdateError(
                self.key,
                f"received {len(values)} values, but {kind}(guard=True) accepts one value per step",
                hint=(
                    "let a single node write it in each step, or declare it with "
                    "guard=False to keep the last value"
                ),
            )
        self._value = values[-1]


class EphemeralValue(_GuardedValue[V]):
    """Holds a value for the step after it was written only.

    The engine passes `update([])` in the next step without writes, which clears it.
    """

    __slots__ = ()
    clears_on_empty_update = True

    def update(self, values: Sequence[V]) -> bool:
        """Store the step's write; with no writes, clear the channel.

        Raises:
            InvalidUpdateError: `guard` is set and more than one value was written.
        """
        if not values:
            return self._clear()
        self._store(values)
        return True


class UntrackedValue(_GuardedValue[V]):
    """Holds the last value written for the rest of the run, but is never checkpointed.

    For run-scoped objects that cannot or should not be saved (clients, caches). A run
    resumed from a checkpoint starts with it empty.
    """

    __slots__ = ()
    persistent = False

    def update(self, values: Sequence[V]) -> bool:
        """Store the step's write; no writes leave the value unchanged.

        Raises:
            InvalidUpdateError: `guard` is set and more than one value was written.
        """
        if not values:
            return False
        self._store(values)
        return True

    def checkpoint(self) -> Missing:
        """Return `MISSING` always: the value is never persisted."""
        return MISSING

    def _restore(self, checkpoint: V) -> None:
        # Nothing of this channel is ever saved, so a value found in a checkpoint cannot be
        # ours; the restored channel stays empty.
        pass

    def copy(self) -> Self:
        """Return a clone that keeps the value (which `checkpoint` would drop)."""
        clone = self._empty_like()
        clone._value = self._value
        return clone

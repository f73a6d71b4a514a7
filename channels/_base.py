"""The contract every channel follows, and the `MISSING` sentinel for "no value"."""

from __future__ import annotations

import enum
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, Generic, Literal, Self, TypeAlias, TypeVar

__all__ = ["MISSING", "BaseChannel", "Missing"]

Value = TypeVar("Value")
Update = TypeVar("Update")
Checkpoint = TypeVar("Checkpoint")


class _MissingType(enum.Enum):
    """The type of `MISSING`. An enum, so the sentinel stays unique through pickle and copy."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    __str__ = __repr__


MISSING: Final = _MissingType.MISSING
"""Stands for "no value": what `checkpoint()` returns for an empty channel."""

Missing: TypeAlias = Literal[_MissingType.MISSING]
"""The type of `MISSING`, for annotations."""


class BaseChannel(Generic[Value, Update, Checkpoint], ABC):
    """A named slot of run state with its own rule for merging the writes of a step.

    The engine calls `update` once per superstep with that step's writes in task order, and
    bumps the channel's version when it returns True. Equality compares declarations (class,
    `typ` and configuration), never contents or keys, so graph builders can detect a key
    declared twice with different channel types.

    Attributes:
        typ: The type of the values, as declared by the user.
        key: The channel's name in its graph (set by the graph; used in error messages).
        persistent: False if the channel is never saved in checkpoints.
        clears_on_empty_update: True if the channel must receive `update([])` in every step
            in which nothing wrote to it (while it holds a value): that is how it clears.
            Read it from the instance: `Topic` decides it per instance.
    """

    __slots__ = ("key", "typ")

    persistent: ClassVar[bool] = True
    clears_on_empty_update: bool = False

    def __init__(self, typ: Any, key: str = "") -> None:
        """Create an empty channel.

        Args:
            typ: The type of the values.
            key: The channel's name in its graph.
        """
        self.typ = typ
        self.key = key

    @property
    def ValueType(self) -> Any:
        """The type that `get` returns."""
        return self.typ

    @property
    def UpdateType(self) -> Any:
        """The type of one write accepted by `update`."""
        return self.typ

    @abstractmethod
    def get(self) -> Value:
        """Return the current value.

        Raises:
            EmptyChannelError: The channel has no value.
        """

    @abstractmethod
    def is_available(self) -> bool:
        """Return True if `get` would return a value."""

    @abstractmethod
    def update(self, values: Sequence[Update]) -> bool:
        """Apply one step's writes, in task order.

        Args:
            values: The writes of the step (possibly empty).

        Returns:
            True if the channel changed, so its version must be bumped.

        Raises:
            InvalidUpdateError: The writes break the channel's rule.
        """

    def consume(self) -> bool:
        """React to a subscribed task having run; return True if the channel changed."""
        return False

    def finish(self) -> bool:
        """React to the run being about to end; return True if the channel changed."""
        return False

    @abstractmethod
    def checkpoint(self) -> Checkpoint | Missing:
        """Return the state as plain data that later updates of the channel cannot change.

        Containers the channel builds or mutates (lists, sets, reduced values) are copied;
        a value stored exactly as a node wrote it is returned as is.

        Returns:
            The state, or `MISSING` if the channel is empty.
        """

    @abstractmethod
    def _restore(self, checkpoint: Checkpoint) -> None:
        """Load a (non-MISSING) checkpoint into this freshly made empty channel."""

    def from_checkpoint(self, checkpoint: Checkpoint | Missing) -> Self:
        """Return a new channel with this one's declaration, restored from a checkpoint.

        Args:
            checkpoint: A value returned by `checkpoint`, possibly after a serialization
                round trip (tuples may come back as lists), or `MISSING`.

        Returns:
            The new channel; empty if `checkpoint` is `MISSING`.
        """
        channel = self._empty_like()
        if checkpoint is not MISSING:
            channel._restore(checkpoint)
        return channel

    def copy(self) -> Self:
        """Return an independent clone with the same declaration and state."""
        return self.from_checkpoint(self.checkpoint())

    def _config(self) -> tuple[Any, ...]:
        """The constructor arguments after `typ`, in order."""
        return ()

    def _spec(self) -> tuple[Any, ...]:
        """The configuration as compared by `==` (hashable)."""
        return self._config()

    def _empty_like(self) -> Self:
        # Every subclass takes (typ, *config, key=...), so one generic rebuild serves all.
        factory: Callable[..., Self] = type(self)
        return factory(self.typ, *self._config(), key=self.key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseChannel):
            return NotImplemented
        return (
            type(self) is type(other)
            and self._spec() == other._spec()
            and bool(self.typ == other.typ)
        )

    def __hash__(self) -> int:
        # `typ` is left out: equal channels still hash equal, and odd types need not hash.
        return hash((type(self), self._spec()))

    def __repr__(self) -> str:
        parts = [_short(self.typ), *map(_short, self._config())]
        if self.key:
            parts.append(f"key={self.key!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _short(obj: object) -> str:
    """Name classes and functions by qualified name, everything else by repr."""
    if isinstance(obj, frozenset):  # sorted, so the repr does not vary between runs
        return "{" + ", ".join(sorted(map(repr, obj))) + "}"
    if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType):
        return obj.__qualname__
    return repr(obj)

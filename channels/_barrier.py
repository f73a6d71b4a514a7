"""Barriers: channels that become available once every one of a set of names was written.

The engine uses them for joins: each upstream node writes its own name, and the waiting node
is triggered when all of them have. Checkpoints list the names seen in sorted order, so equal
states always serialize to equal bytes (a set's iteration order varies between processes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from ._base import MISSING, BaseChannel, Missing
from ._errors import EmptyChannelError, InvalidUpdateError

__all__ = ["NamedBarrierValue", "NamedBarrierValueAfterFinish"]

C = TypeVar("C")


class _NamedBarrier(BaseChannel[None, str, C]):
    """The shared part: validating writes and collecting the names seen."""

    __slots__ = ("_seen", "names")

    def __init__(self, typ: Any, names: Iterable[str], *, key: str = "") -> None:
        """Create a barrier that has seen nothing yet.

        Args:
            typ: The type of the writes (the names).
            names: The names to wait for.
            key: The channel's name in its graph.

        Raises:
            TypeError: `names` is a single string.
            ValueError: `names` is empty.
        """
        super().__init__(typ, key)
        # A lone string is iterable too; it would silently become a set of characters.
        if isinstance(names, str):
            raise TypeError(f"names must be a collection of names, not the string {names!r}")
        self.names = frozenset(names)
        if not self.names:
            raise ValueError("a barrier needs at least one name to wait for")
        self._seen: set[str] = set()

    def _config(self) -> tuple[Any, ...]:
        return (self.names,)

    def _complete(self) -> bool:
        return self._seen == self.names

    def get(self) -> None:
        """Return None once the barrier is available.

        Raises:
            EmptyChannelError: The barrier is not available yet.
        """
        if not self.is_available():
            raise EmptyChannelError(self.key)
        return None

    def update(self, values: Sequence[str]) -> bool:
        """Record the names written; return True if any of them is new.

        Raises:
            InvalidUpdateError: A write is not one of `names`. Nothing is recorded then.
        """
        for value in values:
            if not (isinstance(value, str) and value in self.names):
                expected = ", ".join(map(repr, sorted(self.names)))
                raise InvalidUpdateError(
                    self.key,
                    f"received {value!r}, which is not one of the names it waits for ({expected})",
                    hint="write only the name of a node the join waits for",
                )
        before = len(self._seen)
        self._seen.update(values)
        return len(self._seen) > before


class NamedBarrierValue(_NamedBarrier[list[str]]):
    """Available once every name in `names` has been written; reset when consumed.

    Checkpoint shape: the sorted list of names seen, or `MISSING` when none.

    Attributes:
        names: The names to wait for.
    """

    __slots__ = ()

    def is_available(self) -> bool:
        """Return True once every name has been seen."""
        return self._complete()

    def consume(self) -> bool:
        """Start over once complete (the waiting node ran); return True if reset."""
        if not self._complete():
            return False
        self._seen = set()
        return True

    def checkpoint(self) -> list[str] | Missing:
        """Return the sorted names seen, or `MISSING` when none."""
        return sorted(self._seen) if self._seen else MISSING

    def _restore(self, checkpoint: list[str]) -> None:
        self._seen = set(checkpoint)


class NamedBarrierValueAfterFinish(_NamedBarrier[tuple[list[str], bool]]):
    """Like `NamedBarrierValue`, but available only once the run is also about to end.

    Deferred joins use it: the waiting node runs after everything else is done.
    Checkpoint shape: `(sorted names seen, finished)`, or `MISSING` when no name was seen.

    Attributes:
        names: The names to wait for.
    """

    __slots__ = ("_finished",)

    def __init__(self, typ: Any, names: Iterable[str], *, key: str = "") -> None:
        """Create a barrier that has seen nothing yet.

        Args:
            typ: The type of the writes (the names).
            names: The names to wait for.
            key: The channel's name in its graph.
        """
        super().__init__(typ, names, key=key)
        self._finished = False

    def is_available(self) -> bool:
        """Return True once every name has been seen and `finish` was called."""
        return self._finished and self._complete()

    def finish(self) -> bool:
        """Mark a complete barrier finished; return True if that changed anything."""
        if self._finished or not self._complete():
            return False
        self._finished = True
        return True

    def consume(self) -> bool:
        """Start over once finished (the waiting node ran); return True if reset."""
        if not self._finished:
            return False
        self._seen = set()
        self._finished = False
        return True

    def checkpoint(self) -> tuple[list[str], bool] | Missing:
        """Return `(sorted names seen, finished)`, or `MISSING` when no name was seen."""
        return (sorted(self._seen), self._finished) if self._seen else MISSING

    def _restore(self, checkpoint: tuple[list[str], bool]) -> None:
        # Unpacking also accepts the list a msgpack round trip turns the tuple into.
        seen, finished = checkpoint
        self._seen = set(seen)
        self._finished = bool(finished)

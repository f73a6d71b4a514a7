"""`Topic`: a channel that collects every value written to it."""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any, Self, TypeVar

from ._base import MISSING, BaseChannel, Missing
from ._errors import EmptyChannelError

__all__ = ["Topic"]

V = TypeVar("V")


class Topic(BaseChannel[list[V], V | list[V], list[V]]):
    """Collects the values written to it into a list.

    A written list is flattened into the topic (its items are added, not the list itself);
    any other write is added as one item. Without `accumulate`, the topic holds only the
    latest step's items, and a step without writes empties it; with `accumulate`, items pile
    up for the whole run.

    Attributes:
        accumulate: Whether items are kept across steps.
    """

    # clears_on_empty_update is a slot here because it depends on `accumulate`, while other
    # channels fix it per class. It shadows the base class attribute for instances only.
    __slots__ = ("_items", "accumulate", "clears_on_empty_update")

    def __init__(self, typ: Any, accumulate: bool = False, *, key: str = "") -> None:
        """Create an empty topic.

        Args:
            typ: The type of one item.
            accumulate: Keep items across steps instead of starting afresh each step.
            key: The channel's name in its graph.
        """
        super().__init__(typ, key)
        self.accumulate = accumulate
        self.clears_on_empty_update = not accumulate
        self._items: list[V] = []

    @property
    def ValueType(self) -> Any:
        """`list[typ]`."""
        return types.GenericAlias(list, (self.typ,))

    @property
    def UpdateType(self) -> Any:
        """`typ | list[typ]`: one item, or a list of items."""
        return self.typ | types.GenericAlias(list, (self.typ,))

    def get(self) -> list[V]:
        """Return a copy of the items, oldest first.

        Raises:
            EmptyChannelError: The topic holds no items.
        """
        if not self._items:
            raise EmptyChannelError(self.key)
        return list(self._items)

    def is_available(self) -> bool:
        """Return True if the topic holds at least one item."""
        return bool(self._items)

    def update(self, values: Sequence[V | list[V]]) -> bool:
        """Add the step's writes (flattening lists); return True if the items changed."""
        incoming: list[V] = []
        for value in values:
            if isinstance(value, list):
                incoming.extend(value)
            else:
                incoming.append(value)
        if self.accumulate:
            self._items.extend(incoming)
            return bool(incoming)
        changed = bool(self._items or incoming)
        self._items = incoming  # already a fresh list: adopt it rather than copy it
        return changed

    def checkpoint(self) -> list[V] | Missing:
        """Return a copy of the items, or `MISSING` when there are none."""
        return list(self._items) if self._items else MISSING

    def _restore(self, checkpoint: list[V]) -> None:
        # Copy, so later appends never reach back into the caller's (or saver's) list.
        self._items = list(checkpoint)

    def _config(self) -> tuple[Any, ...]:
        return (self.accumulate,)

    def copy(self) -> Self:
        """Return an independent clone (one list copy instead of two)."""
        clone = self._empty_like()
        clone._items = list(self._items)
        return clone

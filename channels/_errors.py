"""Errors raised by channels.

Both errors carry the channel's key as a structured field, so callers can react to them
without parsing messages. `InvalidUpdateError` also has room for the context only the engine
knows (the step and the nodes that wrote); the engine fills it in with `with_context`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

__all__ = ["EmptyChannelError", "InvalidUpdateError"]


class EmptyChannelError(Exception):
    """A channel was read while it holds no value.

    Attributes:
        channel: The key of the channel that was read ("" if the channel is not named yet).
    """

    def __init__(self, channel: str = "") -> None:
        """Create the error.

        Args:
            channel: The key of the empty channel.
        """
        super().__init__(channel)
        self.channel = channel

    def __str__(self) -> str:
        """Describe which channel was empty."""
        subject = f"channel {self.channel!r}" if self.channel else "the channel"
        return f"{subject} has no value yet"


class InvalidUpdateError(Exception):
    """A step wrote to a channel in a way its type does not allow.

    A channel raises it with `channel`, `reason` and `hint`. The engine knows the step and
    the writing nodes, and re-raises a copy made by `with_context`. Treat the fields as
    read-only.

    Attributes:
        channel: The key of the channel that rejected the update.
        reason: What was wrong, as a sentence fragment (no trailing period needed).
        hint: How to fix it, or None.
        step: The superstep in which the writes happened, or None if not known yet.
        writers: The names of the nodes that wrote in that step, in task order.
    """

    def __init__(
        self,
        channel: str,
        reason: str,
        hint: str | None = None,
        step: int | None = None,
        writers: Sequence[str] = (),
    ) -> None:
        """Create the error.

        Args:
            channel: The key of the channel that rejected the update.
            reason: What was wrong.
            hint: How to fix it.
            step: The superstep of the update.
            writers: The names of the nodes that wrote.
        """
        super().__init__(channel, reason)
        self.channel = channel
        self.reason = reason
        self.hint = hint
        self.step = step
        self.writers = tuple(writers)

    def with_context(self, step: int, writers: Sequence[str]) -> Self:
        """Return a new error of the same class with the step and writers filled in.

        The new error has no traceback or cause; raise it `from` this one to keep the chain.

        Args:
            step: The superstep in which the writes happened.
            writers: The names of the nodes that wrote, in task order.

        Returns:
            A copy of this error carrying the context.
        """
        return type(self)(self.channel, self.reason, self.hint, step, writers)

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuild from the fields, so pickling and `copy` keep them (and any notes)."""
        fields = (self.channel, self.reason, self.hint, self.step, self.writers)
        return (type(self), fields, self.__dict__)

    def __str__(self) -> str:
        """Format every field that is present into one message."""
        message = f"channel {self.channel!r}" if self.channel else "a channel"
        if self.step is not None:
            message += f" in step {self.step}"
        if self.writers:
            noun = "node" if len(self.writers) == 1 else "nodes"
            message += f" (written by {noun} {', '.join(map(repr, self.writers))})"
        message += f": {self.reason.rstrip('.')}."
        if self.hint:
            message += f" Fix: {self.hint.rstrip('.')}."
        return message

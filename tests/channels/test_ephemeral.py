"""AnyValue, EphemeralValue and UntrackedValue."""

import pytest

from stepgraph.channels import (
    MISSING,
    AnyValue,
    EmptyChannelError,
    EphemeralValue,
    InvalidUpdateError,
    UntrackedValue,
)


def test_any_value_keeps_the_last_of_several_writes() -> None:
    """Several writes are allowed; the last one is kept."""
    channel = AnyValue(int)
    assert channel.update([1, 2, 3]) is True
    assert channel.get() == 3


def test_any_value_clears_on_a_step_without_writes() -> None:
    """update([]) clears, and reports a change only if there was a value."""
    channel = AnyValue(int, key="x")
    channel.update([1])
    assert channel.update([]) is True
    assert not channel.is_available()
    assert channel.update([]) is False
    with pytest.raises(EmptyChannelError):
        channel.get()


def test_ephemeral_value_lives_for_one_step() -> None:
    """A write is visible until the next step without writes."""
    channel = EphemeralValue(str)
    assert channel.update(["hello"]) is True
    assert channel.get() == "hello"
    assert channel.checkpoint() == "hello"
    assert channel.update([]) is True
    assert not channel.is_available()
    assert channel.checkpoint() is MISSING
    assert channel.update([]) is False


def test_ephemeral_value_guard_rejects_two_writes() -> None:
    """With the guard, two writes raise and the stored value stays."""
    channel = EphemeralValue(int, key="signal")
    channel.update([1])
    with pytest.raises(InvalidUpdateError) as caught:
        channel.update([2, 3])
    assert caught.value.channel == "signal"
    assert "EphemeralValue(guard=True)" in caught.value.reason
    assert caught.value.hint is not None
    assert "guard=False" in caught.value.hint
    assert channel.get() == 1


def test_ephemeral_value_without_guard_keeps_the_last() -> None:
    """guard=False turns the error into last-write-wins."""
    channel = EphemeralValue(int, guard=False)
    channel.update([2, 3])
    assert channel.get() == 3


def test_untracked_value_persists_through_empty_steps() -> None:
    """A step without writes does not clear it."""
    channel = UntrackedValue(int)
    channel.update([1])
    assert channel.update([]) is False
    assert channel.get() == 1


def test_untracked_value_is_never_checkpointed() -> None:
    """checkpoint() is MISSING and restoring gives an empty channel."""
    channel = UntrackedValue(int)
    channel.update([1])
    assert channel.checkpoint() is MISSING
    assert not channel.from_checkpoint(channel.checkpoint()).is_available()
    assert not channel.from_checkpoint(1).is_available()


def test_untracked_value_copy_keeps_the_value() -> None:
    """copy() is a clone of the live state, not of the (empty) checkpoint."""
    channel = UntrackedValue(int, key="client")
    channel.update([1])
    clone = channel.copy()
    assert clone.get() == 1
    assert clone.key == "client"


def test_untracked_value_guard() -> None:
    """The guard works as for EphemeralValue, naming the class in the reason."""
    with pytest.raises(InvalidUpdateError, match=r"UntrackedValue\(guard=True\)"):
        UntrackedValue(int).update([1, 2])
    relaxed = UntrackedValue(int, guard=False)
    relaxed.update([1, 2])
    assert relaxed.get() == 2

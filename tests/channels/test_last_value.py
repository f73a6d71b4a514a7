"""LastValue and LastValueAfterFinish."""

import pytest

from stepgraph.channels import (
    MISSING,
    EmptyChannelError,
    InvalidUpdateError,
    LastValue,
    LastValueAfterFinish,
)


def test_last_value_starts_empty() -> None:
    """A fresh channel has no value and says which channel was read."""
    channel = LastValue(int, key="x")
    assert not channel.is_available()
    assert channel.checkpoint() is MISSING
    with pytest.raises(EmptyChannelError) as caught:
        channel.get()
    assert caught.value.channel == "x"


def test_last_value_stores_one_write_per_step() -> None:
    """One write replaces the value; a step without writes changes nothing."""
    channel = LastValue(int)
    assert channel.update([1]) is True
    assert channel.update([2]) is True
    assert channel.update([]) is False
    assert channel.get() == 2
    assert channel.checkpoint() == 2


def test_last_value_stores_none_as_a_value() -> None:
    """None is a value like any other, distinct from empty."""
    channel = LastValue(object)
    channel.update([None])
    assert channel.is_available()
    assert channel.get() is None


def test_last_value_rejects_two_writes_and_keeps_its_value() -> None:
    """Two writes in a step raise an error that names the channel and the fix."""
    channel = LastValue(int, key="total")
    channel.update([1])
    with pytest.raises(InvalidUpdateError) as caught:
        channel.update([2, 3])
    error = caught.value
    assert error.channel == "total"
    assert "received 2 values" in error.reason
    assert error.hint is not None
    assert "Annotated[list, operator.add]" in error.hint
    assert "'total'" in error.hint
    assert channel.get() == 1


def test_after_finish_hides_the_value_until_finish() -> None:
    """A written value becomes available only after finish()."""
    channel = LastValueAfterFinish(int, key="x")
    assert channel.update([1, 2]) is True
    assert not channel.is_available()
    with pytest.raises(EmptyChannelError):
        channel.get()
    assert channel.finish() is True
    assert channel.finish() is False
    assert channel.is_available()
    assert channel.get() == 2


def test_after_finish_finish_on_empty_does_nothing() -> None:
    """Finishing an empty channel changes nothing."""
    channel = LastValueAfterFinish(int)
    assert channel.finish() is False
    assert not channel.is_available()
    assert channel.checkpoint() is MISSING


def test_after_finish_consume_clears_only_once_finished() -> None:
    """consume() before finish keeps the value; after finish it clears it."""
    channel = LastValueAfterFinish(int)
    channel.update([1])
    assert channel.consume() is False
    channel.finish()
    assert channel.consume() is True
    assert not channel.is_available()
    assert channel.checkpoint() is MISSING
    assert channel.consume() is False


def test_after_finish_a_new_write_hides_the_value_again() -> None:
    """Writing after finish resets the finished flag."""
    channel = LastValueAfterFinish(int)
    channel.update([1])
    channel.finish()
    channel.update([5])
    assert not channel.is_available()
    assert channel.update([]) is False
    assert channel.checkpoint() == (5, False)


def test_after_finish_checkpoint_round_trip_from_a_list() -> None:
    """A checkpoint that came back from msgpack as a list restores too."""
    channel = LastValueAfterFinish(int)
    channel.update([7])
    channel.finish()
    assert channel.checkpoint() == (7, True)
    restored = channel.from_checkpoint([7, True])
    assert restored.get() == 7

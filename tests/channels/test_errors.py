"""The channel errors: structured fields, messages, and surviving pickle and copy."""

import copy
import pickle
from collections.abc import Callable

import pytest

from stepgraph.channels import EmptyChannelError, InvalidUpdateError, LastValue


def test_empty_channel_error_names_the_channel() -> None:
    """The key is a field and appears in the message."""
    error = EmptyChannelError("answer")
    assert error.channel == "answer"
    assert str(error) == "channel 'answer' has no value yet"


def test_empty_channel_error_without_a_key_still_reads_well() -> None:
    """An unnamed channel gives a sentence without an empty quoted name."""
    assert str(EmptyChannelError()) == "the channel has no value yet"


def test_empty_channel_error_survives_pickle() -> None:
    """The key is kept through a pickle round trip."""
    restored = pickle.loads(pickle.dumps(EmptyChannelError("x")))
    assert type(restored) is EmptyChannelError
    assert restored.channel == "x"


def test_invalid_update_error_formats_the_fields_present() -> None:
    """Without context, the message has the channel, the reason and the fix."""
    error = InvalidUpdateError("x", "received 2 values", hint="declare a reducer")
    assert str(error) == "channel 'x': received 2 values. Fix: declare a reducer."
    assert (error.step, error.writers) == (None, ())


def test_with_context_returns_a_new_error_with_step_and_writers() -> None:
    """The original is untouched; the copy formats step and writer names."""
    error = InvalidUpdateError("x", "received 2 values.", hint="declare a reducer.")
    located = error.with_context(3, ["a", "b"])
    assert located is not error
    assert (located.step, located.writers) == (3, ("a", "b"))
    assert error.step is None
    assert str(located) == (
        "channel 'x' in step 3 (written by nodes 'a', 'b'): received 2 values. "
        "Fix: declare a reducer."
    )


def test_a_single_writer_is_called_a_node() -> None:
    """One writer reads as 'node', not 'nodes'."""
    error = InvalidUpdateError("x", "bad value").with_context(0, ["only"])
    assert str(error) == "channel 'x' in step 0 (written by node 'only'): bad value."


def test_with_context_keeps_the_subclass() -> None:
    """An engine-side subclass stays that subclass."""

    class Custom(InvalidUpdateError):
        pass

    assert type(Custom("x", "r").with_context(1, ["a"])) is Custom


@pytest.mark.parametrize(
    "clone", [copy.copy, copy.deepcopy, lambda e: pickle.loads(pickle.dumps(e))]
)
def test_invalid_update_error_survives_pickle_and_copy(
    clone: Callable[[InvalidUpdateError], InvalidUpdateError],
) -> None:
    """Every field and any added note come back."""
    error = InvalidUpdateError("x", "reason", "hint", 4, ("a", "b"))
    error.add_note("extra")
    restored = clone(error)
    assert type(restored) is InvalidUpdateError
    assert (restored.channel, restored.reason, restored.hint) == ("x", "reason", "hint")
    assert (restored.step, restored.writers) == (4, ("a", "b"))
    assert restored.__notes__ == ["extra"]
    assert str(restored) == str(error)


def test_last_value_error_says_how_to_fix_it() -> None:
    """The error a real channel raises names it and suggests a reducer."""
    channel = LastValue(int, key="total")
    with pytest.raises(InvalidUpdateError) as caught:
        channel.update([1, 2])
    message = str(caught.value.with_context(3, ["a", "b"]))
    assert message.startswith("channel 'total' in step 3 (written by nodes 'a', 'b'): received 2")
    assert "LastValue accepts one value per step" in message
    assert "Annotated[list, operator.add]" in message

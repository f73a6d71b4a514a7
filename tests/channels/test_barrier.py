"""NamedBarrierValue and NamedBarrierValueAfterFinish."""

import pytest

from stepgraph.channels import (
    MISSING,
    EmptyChannelError,
    InvalidUpdateError,
    NamedBarrierValue,
    NamedBarrierValueAfterFinish,
)


def test_barrier_becomes_available_when_every_name_was_seen() -> None:
    """Available once all names arrived, over one or several steps; get() returns None."""
    barrier = NamedBarrierValue(str, {"a", "b", "c"}, key="join")
    assert barrier.update(["a"]) is True
    assert barrier.update(["a"]) is False
    assert not barrier.is_available()
    with pytest.raises(EmptyChannelError):
        barrier.get()
    assert barrier.update(["c", "b"]) is True
    assert barrier.is_available()
    assert barrier.get() is None


def test_barrier_rejects_unknown_names_and_records_nothing() -> None:
    """The error names the value and the expected names; valid writes of the step are dropped."""
    barrier = NamedBarrierValue(str, {"a", "b"}, key="join")
    with pytest.raises(InvalidUpdateError) as caught:
        barrier.update(["a", "z"])
    assert caught.value.channel == "join"
    assert "'z'" in caught.value.reason
    assert "'a', 'b'" in caught.value.reason
    assert barrier.checkpoint() is MISSING


def test_barrier_rejects_non_string_writes() -> None:
    """Unhashable or non-string writes are reported, not crashed on."""
    with pytest.raises(InvalidUpdateError, match=r"\['a'\]"):
        NamedBarrierValue(str, {"a"}).update([["a"]])


def test_barrier_names_must_be_a_non_empty_collection() -> None:
    """A single string or an empty set is a declaration mistake."""
    with pytest.raises(TypeError, match="not the string 'ab'"):
        NamedBarrierValue(str, "ab")
    with pytest.raises(ValueError, match="at least one name"):
        NamedBarrierValueAfterFinish(str, set())


def test_barrier_consume_resets_only_when_complete() -> None:
    """consume() before completion does nothing; after it, the barrier starts over."""
    barrier = NamedBarrierValue(str, {"a", "b"})
    barrier.update(["a"])
    assert barrier.consume() is False
    assert barrier.checkpoint() == ["a"]
    barrier.update(["b"])
    assert barrier.consume() is True
    assert not barrier.is_available()
    assert barrier.checkpoint() is MISSING


def test_barrier_checkpoint_is_sorted_and_restores() -> None:
    """The shape is a sorted list of names; any iterable of names restores."""
    barrier = NamedBarrierValue(str, {"a", "b", "c"})
    barrier.update(["c", "a"])
    assert barrier.checkpoint() == ["a", "c"]
    restored = barrier.from_checkpoint(["c", "a"])
    restored.update(["b"])
    assert restored.is_available()


def test_barrier_checkpoint_does_not_depend_on_set_order() -> None:
    """Many names written in reverse still checkpoint in sorted order (equal bytes)."""
    letters = [chr(code) for code in range(ord("a"), ord("z") + 1)]
    barrier = NamedBarrierValue(str, letters)
    barrier.update(letters[::-1])
    assert barrier.checkpoint() == letters


def test_after_finish_barrier_waits_for_finish() -> None:
    """Complete is not enough: finish() must come too, and only when complete."""
    barrier = NamedBarrierValueAfterFinish(str, {"a", "b"})
    barrier.update(["a"])
    assert barrier.finish() is False
    barrier.update(["b"])
    assert not barrier.is_available()
    assert barrier.checkpoint() == (["a", "b"], False)
    assert barrier.finish() is True
    assert barrier.finish() is False
    assert barrier.is_available()
    assert barrier.get() is None
    assert barrier.checkpoint() == (["a", "b"], True)


def test_after_finish_barrier_consume_resets_both() -> None:
    """consume() clears seen names and the finished flag, but only once finished."""
    barrier = NamedBarrierValueAfterFinish(str, {"a"})
    barrier.update(["a"])
    assert barrier.consume() is False
    barrier.finish()
    assert barrier.consume() is True
    assert not barrier.is_available()
    assert barrier.checkpoint() is MISSING
    assert barrier.finish() is False


def test_after_finish_barrier_restores_from_a_list_shaped_checkpoint() -> None:
    """A checkpoint whose tuple came back from msgpack as a list restores."""
    barrier = NamedBarrierValueAfterFinish(str, {"a", "b"})
    restored = barrier.from_checkpoint([["a", "b"], True])
    assert restored.is_available()

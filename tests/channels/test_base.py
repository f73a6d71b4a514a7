"""What every channel shares: declaration equality, flags the engine reads, copy and restore."""

import operator
from collections.abc import Callable

import pytest

from stepgraph.channels import (
    MISSING,
    AnyValue,
    BaseChannel,
    BinaryOperatorAggregate,
    EphemeralValue,
    LastValue,
    LastValueAfterFinish,
    NamedBarrierValue,
    NamedBarrierValueAfterFinish,
    Topic,
    UntrackedValue,
)

Factory = Callable[[], BaseChannel[object, object, object]]

# One declaration of each channel type, with two different valid writes.
DECLARATIONS: list[tuple[Factory, object, object]] = [
    (lambda: LastValue(int), 1, 2),
    (lambda: LastValueAfterFinish(int), 1, 2),
    (lambda: AnyValue(int), 1, 2),
    (lambda: EphemeralValue(int), 1, 2),
    (lambda: EphemeralValue(int, guard=False), 1, 2),
    (lambda: UntrackedValue(int), 1, 2),
    (lambda: Topic(int), 1, 2),
    (lambda: Topic(int, accumulate=True), 1, 2),
    (lambda: BinaryOperatorAggregate(int, operator.add), 1, 2),
    (lambda: NamedBarrierValue(str, {"a", "b"}), "a", "b"),
    (lambda: NamedBarrierValueAfterFinish(str, {"a", "b"}), "a", "b"),
]


@pytest.mark.parametrize(("make", "write", "other"), DECLARATIONS)
def test_equal_declarations_are_equal_and_hash_alike(
    make: Factory, write: object, other: object
) -> None:
    """Equality compares declarations: state and key do not matter."""
    first, second = make(), make()
    second.key = "other"
    second.update([write])
    assert first == second
    assert hash(first) == hash(second)


def test_different_declarations_are_not_equal() -> None:
    """Class, typ and each configuration value distinguish declarations."""
    distinct = [
        LastValue(int),
        LastValue(str),
        AnyValue(int),
        EphemeralValue(int),
        EphemeralValue(int, guard=False),
        UntrackedValue(int),
        Topic(int),
        Topic(int, accumulate=True),
        BinaryOperatorAggregate(int, operator.add),
        BinaryOperatorAggregate(int, operator.mul),
        NamedBarrierValue(str, {"a"}),
        NamedBarrierValue(str, {"a", "b"}),
        NamedBarrierValueAfterFinish(str, {"a"}),
    ]
    for i, left in enumerate(distinct):
        for right in distinct[i + 1 :]:
            assert left != right, (left, right)
    assert LastValue(int) != "LastValue(int)"


@pytest.mark.parametrize(("make", "write", "other"), DECLARATIONS)
def test_from_checkpoint_keeps_the_declaration_and_key(
    make: Factory, write: object, other: object
) -> None:
    """A restored channel is a new object with the same typ, key and configuration."""
    channel = make()
    channel.key = "k"
    channel.update([write])
    restored = channel.from_checkpoint(channel.checkpoint())
    assert restored is not channel
    assert restored == channel
    assert restored.key == "k"


@pytest.mark.parametrize(("make", "write", "other"), DECLARATIONS)
def test_copy_is_independent(make: Factory, write: object, other: object) -> None:
    """A copy starts with the same state; writing to it leaves the original as it was."""
    original = make()
    original.update([write])
    before = _observe(original)
    clone = original.copy()
    assert clone is not original
    assert _observe(clone) == before
    clone.update([other])
    clone.finish()
    assert _observe(original) == before
    assert _observe(clone) != before


def _observe(channel: BaseChannel[object, object, object]) -> tuple[object, ...]:
    available = channel.is_available()
    return (available, channel.get() if available else None, channel.checkpoint())


@pytest.mark.parametrize(("make", "write", "other"), DECLARATIONS)
def test_from_missing_gives_an_empty_channel(make: Factory, write: object, other: object) -> None:
    """MISSING restores to the same state as a fresh channel."""
    channel = make()
    channel.update([write])
    channel.finish()
    empty = channel.from_checkpoint(MISSING)
    assert empty.checkpoint() == make().checkpoint()
    assert empty.is_available() == make().is_available()


def test_engine_flags() -> None:
    """Who clears on update([]), who is persisted, who reacts to consume and finish."""
    clearing = {type(ch).__name__ for ch, _ in _instances() if ch.clears_on_empty_update}
    assert clearing == {"AnyValue", "EphemeralValue", "Topic"}
    assert Topic(int, accumulate=True).clears_on_empty_update is False
    assert [type(ch).__name__ for ch, _ in _instances() if not ch.persistent] == ["UntrackedValue"]
    consumers = {n for ch, n in _instances() if type(ch).consume is not BaseChannel.consume}
    finishers = {n for ch, n in _instances() if type(ch).finish is not BaseChannel.finish}
    assert consumers == {
        "LastValueAfterFinish",
        "NamedBarrierValue",
        "NamedBarrierValueAfterFinish",
    }
    assert finishers == {"LastValueAfterFinish", "NamedBarrierValueAfterFinish"}


def _instances() -> list[tuple[BaseChannel[object, object, object], str]]:
    channels = [make() for make, _, _ in DECLARATIONS]
    return [(ch, type(ch).__name__) for ch in channels]


def test_repr_shows_the_declaration() -> None:
    """Reprs are short and stable (barrier names sorted)."""
    assert repr(LastValue(int, key="x")) == "LastValue(int, key='x')"
    assert repr(EphemeralValue(list[int], guard=False)) == "EphemeralValue(list[int], False)"
    assert repr(BinaryOperatorAggregate(list, operator.add)) == (
        "BinaryOperatorAggregate(list, add)"
    )
    assert repr(NamedBarrierValue(str, {"b", "a"})) == "NamedBarrierValue(str, {'a', 'b'})"


def test_value_and_update_types() -> None:
    """Topic reads as a list and accepts an item or a list; the others use typ."""
    assert LastValue(int).ValueType is int
    assert LastValue(int).UpdateType is int
    assert Topic(int).ValueType == list[int]
    assert Topic(int).UpdateType == int | list[int]

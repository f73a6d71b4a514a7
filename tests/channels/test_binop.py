"""BinaryOperatorAggregate and Overwrite."""

import collections.abc
import dataclasses
import operator
import typing
from typing import Annotated, Any

import pytest

from stepgraph.channels import (
    MISSING,
    BinaryOperatorAggregate,
    EmptyChannelError,
    InvalidUpdateError,
    Overwrite,
)


@pytest.mark.parametrize(
    ("typ", "initial"),
    [
        (int, 0),
        (str, ""),
        (list, []),
        (list[int], []),
        (typing.List[int], []),  # noqa: UP006 - the old spelling must work too
        (dict[str, int], {}),
        (collections.abc.Sequence, []),
        (collections.abc.MutableSequence[int], []),
        (typing.Sequence[str], []),
        (collections.abc.Set, set()),
        (collections.abc.MutableSet[int], set()),
        (collections.abc.Mapping[str, int], {}),
        (collections.abc.MutableMapping, {}),
        (Annotated[list[int], "meta"], []),
    ],
)
def test_initial_value_is_typ_called_without_arguments(typ: Any, initial: object) -> None:
    """Constructible types start as typ(); abstract collections map to builtins."""
    channel = BinaryOperatorAggregate(typ, operator.add)
    assert channel.is_available()
    assert channel.get() == initial
    assert type(channel.get()) is type(initial)


@dataclasses.dataclass
class _Required:
    value: int


@pytest.mark.parametrize("typ", [int | None, typing.Optional[int], _Required, typing.Any, "int"])  # noqa: UP045
def test_unconstructible_types_start_empty(typ: Any) -> None:
    """If typ() fails, the channel is empty until the first write."""
    channel = BinaryOperatorAggregate(typ, operator.add, key="x")
    assert not channel.is_available()
    assert channel.checkpoint() is MISSING
    with pytest.raises(EmptyChannelError):
        channel.get()


def test_first_write_becomes_the_value_when_empty() -> None:
    """Without an initial value, the first write is not passed to the operator."""
    calls: list[tuple[int, int]] = []

    def add(a: int, b: int) -> int:
        calls.append((a, b))
        return a + b

    channel = BinaryOperatorAggregate(int | None, add)
    channel.update([5, 6])
    assert channel.get() == 11
    assert calls == [(5, 6)]


def test_writes_are_folded_in_order() -> None:
    """operator(acc, write) in task order, across steps; no writes change nothing."""
    channel = BinaryOperatorAggregate(list, operator.add)
    assert channel.update([[1], [2]]) is True
    assert channel.update([]) is False
    channel.update([[3]])
    assert channel.get() == [1, 2, 3]


@pytest.mark.parametrize(
    "overwrite",
    [Overwrite([9]), {"__overwrite__": [9]}, {"type": "__overwrite__", "value": [9]}],
)
def test_overwrite_replaces_the_value_and_ignores_the_rest(overwrite: object) -> None:
    """Every form of overwrite wins over the step's other writes, before or after it."""
    channel = BinaryOperatorAggregate(list, operator.add)
    channel.update([[1]])
    assert channel.update([[2], overwrite, [3]]) is True
    assert channel.get() == [9]
    channel.update([[4]])
    assert channel.get() == [9, 4]


def test_dicts_that_only_look_like_overwrites_are_folded() -> None:
    """A dict with extra keys is an ordinary write."""
    channel = BinaryOperatorAggregate(dict, operator.or_)
    channel.update([{"__overwrite__": 1, "other": 2}, {"type": "__overwrite__", "v": 3}])
    assert channel.get() == {"__overwrite__": 1, "other": 2, "type": "__overwrite__", "v": 3}


def test_two_overwrites_in_one_step_are_rejected() -> None:
    """The error names the channel, and the value is left unchanged."""
    channel = BinaryOperatorAggregate(list, operator.add, key="items")
    channel.update([[1]])
    with pytest.raises(InvalidUpdateError) as caught:
        channel.update([Overwrite([2]), {"__overwrite__": [3]}])
    assert caught.value.channel == "items"
    assert "2 Overwrite values" in caught.value.reason
    assert caught.value.hint
    assert channel.get() == [1]


def test_a_failing_operator_leaves_the_value_unchanged() -> None:
    """The fold happens on a local; the channel is only assigned at the end."""
    channel = BinaryOperatorAggregate(int, operator.add)
    channel.update([1])
    with pytest.raises(TypeError):
        channel.update([2, "three"])
    assert channel.get() == 1


def test_overwrite_is_a_frozen_value_object() -> None:
    """Overwrite compares by value and cannot be changed."""
    assert Overwrite(1) == Overwrite(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Overwrite(1).value = 2


def test_operators_compare_by_identity_except_lambdas() -> None:
    """Two lambdas count as the same reducer; named functions must be the same object."""

    def first(a: int, b: int) -> int:
        return a + b

    def second(a: int, b: int) -> int:
        return a + b

    def make(op: Any) -> BinaryOperatorAggregate[int]:
        return BinaryOperatorAggregate(int, op)

    assert make(lambda a, b: a + b) == make(lambda a, b: a * b)
    assert hash(make(lambda a, b: a)) == hash(make(lambda a, b: b))
    assert make(first) == make(first)
    assert make(first) != make(second)
    assert make(first) != make(lambda a, b: a + b)

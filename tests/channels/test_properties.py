"""Property tests for the invariants every channel promises.

1. `from_checkpoint(checkpoint())` rebuilds a channel that reads and behaves the same, also
   after a msgpack round trip of the checkpoint (UntrackedValue is left out: it is never
   checkpointed, which test_ephemeral.py covers).
2. For commutative reducers and for barriers, the order of a step's writes does not matter.
3. A checkpoint shares no mutable object with the channel, in either direction.
"""

import copy
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepgraph.channels import (
    MISSING,
    AnyValue,
    BaseChannel,
    BinaryOperatorAggregate,
    EmptyChannelError,
    EphemeralValue,
    LastValue,
    LastValueAfterFinish,
    NamedBarrierValue,
    NamedBarrierValueAfterFinish,
    Overwrite,
    Topic,
)

Channel = BaseChannel[Any, Any, Any]
Op = tuple[str, list[Any]]

# No example database: these tests must not leave a .hypothesis folder in the checkout.
PROPERTY = settings(max_examples=40, deadline=None, database=None)

# Plain data that msgpack round-trips exactly (no NaN: it is not equal to itself).
plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
small_ints = st.integers(-100, 100)
int_lists = st.lists(small_ints, max_size=3)
int_sets = st.sets(st.integers(0, 6), max_size=3)
names = st.sampled_from(["a", "b", "c"])


@dataclass(frozen=True)
class Case:
    """A channel declaration and the writes that are valid for it."""

    id: str
    make: Callable[[], Channel]
    write: st.SearchStrategy[Any]
    max_writes: int = 4
    msgpack_native: bool = True  # False if its checkpoint holds sets

    def step_writes(self) -> st.SearchStrategy[list[Any]]:
        """One step's writes, at most one of them an Overwrite."""
        writes = st.lists(self.write, max_size=self.max_writes)
        return writes.filter(lambda ws: sum(isinstance(w, Overwrite) for w in ws) <= 1)

    def ops(self) -> st.SearchStrategy[list[Op]]:
        """A run: steps of writes, with the engine's consume and finish calls mixed in."""
        op = st.tuples(st.just("update"), self.step_writes()) | st.sampled_from(
            [("consume", []), ("finish", [])]
        )
        return st.lists(op, max_size=8)


def _maybe_overwrite(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return values | values.map(Overwrite)


CASES = [
    Case("last-value", lambda: LastValue(object, key="k"), plain_values, max_writes=1),
    Case("last-value-after-finish", lambda: LastValueAfterFinish(object), plain_values),
    Case("any-value", lambda: AnyValue(object), plain_values),
    Case("ephemeral", lambda: EphemeralValue(object), plain_values, max_writes=1),
    Case("ephemeral-unguarded", lambda: EphemeralValue(object, guard=False), plain_values),
    Case("topic", lambda: Topic(int), small_ints | int_lists),
    Case("topic-accumulate", lambda: Topic(int, accumulate=True), small_ints | int_lists),
    Case("sum", lambda: BinaryOperatorAggregate(int, operator.add), _maybe_overwrite(small_ints)),
    Case("sum-no-initial", lambda: BinaryOperatorAggregate(int | None, operator.add), small_ints),
    Case(
        "list-iadd",
        lambda: BinaryOperatorAggregate(list, operator.iadd),
        _maybe_overwrite(int_lists),
    ),
    Case(
        "set-union",
        lambda: BinaryOperatorAggregate(set, operator.or_),
        _maybe_overwrite(int_sets),
        msgpack_native=False,
    ),
    Case("barrier", lambda: NamedBarrierValue(str, {"a", "b", "c"}), names),
    Case("barrier-after-finish", lambda: NamedBarrierValueAfterFinish(str, {"a", "b", "c"}), names),
]
BY_ID = {case.id: case for case in CASES}
ORDER_FREE = [
    BY_ID[i] for i in ("sum", "sum-no-initial", "set-union", "barrier", "barrier-after-finish")
]
OWNING = [
    BY_ID[i]
    for i in (
        "topic",
        "topic-accumulate",
        "list-iadd",
        "set-union",
        "barrier",
        "barrier-after-finish",
    )
]


def _run(case: Case, data: st.DataObject) -> Channel:
    """A new channel of the case, taken through a drawn run."""
    channel = case.make()
    for op in data.draw(case.ops(), label="run"):
        _apply(channel, op)
    return channel


def _apply(channel: Channel, op: Op) -> bool:
    kind, writes = op
    if kind == "update":
        return channel.update(writes)
    return channel.consume() if kind == "consume" else channel.finish()


def _observe(channel: Channel) -> tuple[bool, Any]:
    """What a reader can see, deep-copied so later mutation cannot change the record."""
    try:
        value = copy.deepcopy(channel.get())
    except EmptyChannelError:
        value = EmptyChannelError
    assert channel.is_available() == (value is not EmptyChannelError)
    return channel.is_available(), value


def _plain(data: Any) -> Any:
    """Turn tuples and sets into lists, the shapes msgpack can carry."""
    if isinstance(data, list | tuple):
        return [_plain(item) for item in data]
    if isinstance(data, set | frozenset):
        return sorted(data)
    if isinstance(data, dict):
        return {key: _plain(value) for key, value in data.items()}
    return data


def _mutate(data: Any) -> bool:
    """Change every list or set inside `data`; return True if there was one."""
    if isinstance(data, list):
        data.append("intruder")
        return True
    if isinstance(data, set):
        data.add("intruder")
        return True
    return any([_mutate(item) for item in data]) if isinstance(data, tuple) else False


def _ids(cases: Sequence[Case]) -> list[str]:
    return [case.id for case in cases]


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
@PROPERTY
@given(data=st.data())
def test_checkpoint_round_trips(case: Case, data: st.DataObject) -> None:
    """After any run, a channel restored from its checkpoint, directly or through msgpack,
    reads the same now and behaves the same on every later operation."""
    channel = _run(case, data)
    saved = channel.checkpoint()
    copies = [channel.from_checkpoint(saved)]
    if saved is not MISSING:  # MISSING is never serialized: savers store "empty" for it
        packed = msgpack.packb(_plain(saved), use_bin_type=True)
        loaded = msgpack.unpackb(packed, raw=False, strict_map_key=False)
        assert loaded == _plain(saved)
        if case.msgpack_native:
            copies.append(channel.from_checkpoint(loaded))
    for restored in copies:
        assert restored == channel
        assert restored.key == channel.key
        assert _observe(restored) == _observe(channel)
    for op in data.draw(case.ops(), label="afterwards"):
        changed = _apply(channel, op)
        for restored in copies:
            assert _apply(restored, op) == changed
            assert _observe(restored) == _observe(channel)
            assert restored.checkpoint() == channel.checkpoint()


@pytest.mark.parametrize("case", ORDER_FREE, ids=_ids(ORDER_FREE))
@PROPERTY
@given(data=st.data())
def test_write_order_does_not_matter(case: Case, data: st.DataObject) -> None:
    """Any permutation of a step's writes commits the same state."""
    channel = _run(case, data)
    writes = data.draw(case.step_writes(), label="writes")
    shuffled = data.draw(st.permutations(writes), label="shuffled")
    in_order, reordered = channel.copy(), channel.copy()
    assert in_order.update(writes) == reordered.update(shuffled)
    assert _observe(in_order) == _observe(reordered)
    assert in_order.checkpoint() == reordered.checkpoint()


@pytest.mark.parametrize("case", OWNING, ids=_ids(OWNING))
@PROPERTY
@given(data=st.data())
def test_checkpoint_shares_nothing_with_the_channel(case: Case, data: st.DataObject) -> None:
    """Mutating a checkpoint never changes the channel, nor the channel its source."""
    channel = _run(case, data)
    saved = channel.checkpoint()
    if saved is MISSING:
        return
    expected, seen = copy.deepcopy(saved), _observe(channel)
    assert _mutate(saved)
    assert channel.checkpoint() == expected
    assert _observe(channel) == seen

    source = copy.deepcopy(expected)
    restored = channel.from_checkpoint(source)
    for op in data.draw(case.ops(), label="afterwards"):
        _apply(restored, op)
    assert source == expected

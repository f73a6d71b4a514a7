"""Topic."""

import pytest

from stepgraph.channels import MISSING, EmptyChannelError, Topic


def test_topic_flattens_lists_and_appends_single_values() -> None:
    """A written list adds its items; anything else is one item (tuples too)."""
    topic = Topic(object)
    assert topic.update([1, [2, 3], (4, 5)]) is True
    assert topic.get() == [1, 2, 3, (4, 5)]


def test_topic_starts_fresh_each_step() -> None:
    """Without accumulate, a step's items replace the previous step's."""
    topic = Topic(int)
    topic.update([1, 2])
    topic.update([3])
    assert topic.get() == [3]


def test_topic_is_cleared_by_a_step_without_writes() -> None:
    """update([]) empties a non-accumulating topic and reports whether it had items."""
    topic = Topic(int, key="t")
    topic.update([1])
    assert topic.update([]) is True
    with pytest.raises(EmptyChannelError):
        topic.get()
    assert topic.update([]) is False
    assert topic.checkpoint() is MISSING


def test_writing_empty_lists_is_not_a_change() -> None:
    """An empty list adds nothing, so an empty topic stays unchanged."""
    topic = Topic(int)
    assert topic.update([[]]) is False
    assert not topic.is_available()


def test_accumulating_topic_keeps_items_across_steps() -> None:
    """With accumulate, items pile up, and empty steps change nothing."""
    topic = Topic(int, accumulate=True)
    topic.update([1])
    topic.update([[2, 3]])
    assert topic.update([]) is False
    assert topic.update([[]]) is False
    assert topic.get() == [1, 2, 3]
    assert topic.checkpoint() == [1, 2, 3]


def test_get_returns_a_copy() -> None:
    """Mutating what get() returned does not change the topic."""
    topic = Topic(int, accumulate=True)
    topic.update([1])
    topic.get().append(99)
    assert topic.get() == [1]


def test_topic_restores_from_a_checkpoint() -> None:
    """from_checkpoint rebuilds the items without sharing the given list."""
    topic = Topic(int, accumulate=True)
    saved = [1, 2]
    restored = topic.from_checkpoint(saved)
    restored.update([3])
    assert restored.get() == [1, 2, 3]
    assert saved == [1, 2]

"""The public surface of stepgraph.channels."""

import copy
import pickle

import stepgraph.channels as channels

PUBLIC = {
    "BaseChannel",
    "MISSING",
    "LastValue",
    "LastValueAfterFinish",
    "AnyValue",
    "EphemeralValue",
    "UntrackedValue",
    "Topic",
    "BinaryOperatorAggregate",
    "Overwrite",
    "NamedBarrierValue",
    "NamedBarrierValueAfterFinish",
    "EmptyChannelError",
    "InvalidUpdateError",
}


def test_all_lists_exactly_the_public_names() -> None:
    """__all__ has no duplicates, no omissions, and nothing extra."""
    assert len(channels.__all__) == len(set(channels.__all__))
    assert set(channels.__all__) == PUBLIC
    assert all(hasattr(channels, name) for name in channels.__all__)


def test_exported_classes_show_the_public_module() -> None:
    """Reprs and tracebacks point at stepgraph.channels, not a private module."""
    for name in PUBLIC - {"MISSING"}:
        assert getattr(channels, name).__module__ == "stepgraph.channels", name


def test_missing_is_a_singleton_with_a_readable_repr() -> None:
    """MISSING prints as itself and stays the same object through copy and pickle."""
    assert repr(channels.MISSING) == str(channels.MISSING) == "MISSING"
    assert copy.deepcopy(channels.MISSING) is channels.MISSING
    assert pickle.loads(pickle.dumps(channels.MISSING)) is channels.MISSING

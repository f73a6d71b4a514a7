"""Channels: the only mutable state a stepgraph run has.

Nodes never talk to each other directly. They write to channels, and at the end of each
superstep the engine hands every channel the writes it received, in task order, through
`update`. Each channel type has its own rule for merging them:

- `LastValue`: one write per step; the value persists.
- `LastValueAfterFinish`: like `LastValue`, visible only once the run is about to end.
- `AnyValue`: the last write; cleared by a step without writes.
- `EphemeralValue`: one write, visible for one step only.
- `UntrackedValue`: the last write; persists during the run but is never checkpointed.
- `Topic`: a list of every write (lists are flattened), per step or accumulated.
- `BinaryOperatorAggregate`: writes folded with a reducer; `Overwrite` replaces the value.
- `NamedBarrierValue` / `NamedBarrierValueAfterFinish`: joins that wait for a set of names.

Every channel can save its state with `checkpoint()` (plain data, never shared with the live
channel, `MISSING` when empty) and rebuild it with `from_checkpoint()`.
"""

from ._barrier import NamedBarrierValue, NamedBarrierValueAfterFinish
from ._base import MISSING, BaseChannel
from ._binop import BinaryOperatorAggregate, Overwrite
from ._ephemeral import AnyValue, EphemeralValue, UntrackedValue
from ._errors import EmptyChannelError, InvalidUpdateError
from ._last_value import LastValue, LastValueAfterFinish
from ._topic import Topic

__all__ = [
    # the contract
    "BaseChannel",
    "MISSING",
    # channel types
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
    # errors
    "EmptyChannelError",
    "InvalidUpdateError",
]

# Show the public path in reprs, tracebacks and pickles instead of the private module.
for _exported in (
    BaseChannel,
    LastValue,
    LastValueAfterFinish,
    AnyValue,
    EphemeralValue,
    UntrackedValue,
    Topic,
    BinaryOperatorAggregate,
    Overwrite,
    NamedBarrierValue,
    NamedBarrierValueAfterFinish,
    EmptyChannelError,
    InvalidUpdateError,
):
    _exported.__module__ = __name__
del _exported

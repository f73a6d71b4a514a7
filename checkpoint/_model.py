"""The checkpoint data model, in LangGraph's names and shapes.

A *checkpoint* is the state of one run at one barrier: every channel's value and
version, and which versions each node has seen. Checkpoints are immutable and point to
their parent, so a thread's history is a tree. *Pending writes* are the writes of
tasks that finished in the superstep that follows a checkpoint, saved as soon as each
task ends so that a resumed run never redoes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, TypedDict

FORMAT_VERSION = 1
"""The checkpoint format this version of stepgraph writes (``Checkpoint["v"]``)."""

ChannelVersion = int | str


class Checkpoint(TypedDict):
    """The state of a run at one barrier.

    Attributes:
        v: format version.
        id: checkpoint id, a time-ordered UUID string.
        ts: creation time, ISO-8601 UTC.
        channel_values: channel name -> value, for channels that hold one.
        channel_versions: channel name -> version.
        versions_seen: node name -> {channel name -> version the node last saw}.
        updated_channels: the channels the barrier that made this checkpoint changed.
    """

    v: int
    id: str
    ts: str
    channel_values: dict[str, Any]
    channel_versions: dict[str, ChannelVersion]
    versions_seen: dict[str, dict[str, ChannelVersion]]
    updated_channels: list[str] | None


Source = Literal["input", "loop", "update", "fork"]


class CheckpointMetadata(TypedDict, total=False):
    """What is known about how a checkpoint came to be.

    Attributes:
        source: ``input`` (a run's input applied), ``loop`` (a superstep ended),
            ``update`` (``update_state``), ``fork`` (a copy made to branch history).
        step: the superstep number; -1 for the input checkpoint.
        parents: checkpoint namespace -> checkpoint id of each enclosing graph.
        run_id: the run that wrote it.

    Primitive-valued keys of the run's ``config["metadata"]`` (and of
    ``configurable``, except the addressing keys) are copied in as well.
    """

    source: Source
    step: int
    parents: dict[str, str]
    run_id: str


PendingWrite = tuple[str, str, Any]
"""``(task_id, channel, value)``: one write of a finished task."""


class CheckpointTuple(NamedTuple):
    """A checkpoint with its config, metadata, parent and pending writes."""

    config: dict[str, Any]
    checkpoint: Checkpoint
    metadata: CheckpointMetadata
    parent_config: dict[str, Any] | None = None
    pending_writes: list[PendingWrite] | None = None


ERROR = "__error__"
INTERRUPT = "__interrupt__"
RESUME = "__resume__"
SCHEDULED = "__scheduled__"

WRITES_IDX_MAP: Mapping[str, int] = {ERROR: -1, SCHEDULED: -2, INTERRUPT: -3, RESUME: -4}
"""Special writes live at fixed negative indexes and are replaced (last one wins);
ordinary writes keep their position and are inserted once (a retried save is a no-op)."""


def empty_checkpoint(checkpoint_id: str, ts: str) -> Checkpoint:
    """A checkpoint with no channels: where a new thread starts."""
    return Checkpoint(
        v=FORMAT_VERSION,
        id=checkpoint_id,
        ts=ts,
        channel_values={},
        channel_versions={},
        versions_seen={},
        updated_channels=None,
    )


# Keys of configurable that address checkpoints; never copied into metadata.
_ADDRESS_KEYS = frozenset(
    ("thread_id", "checkpoint_id", "checkpoint_ns", "checkpoint_map", "wait_for_thread")
)


def metadata_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The primitive-valued keys of ``config["metadata"]`` and ``configurable``.

    Keys starting with ``__`` or ``langgraph_`` and the addressing keys are left out;
    string values lose NUL characters (some databases reject them).
    """
    out: dict[str, Any] = {}
    for source in (config.get("configurable") or {}, config.get("metadata") or {}):
        for key, value in source.items():
            if key.startswith(("__", "langgraph_")) or key in _ADDRESS_KEYS:
                continue
            if isinstance(value, bool | int | float):
                out[key] = value
            elif isinstance(value, str):
                out[key] = value.replace("\x00", "")
    return out

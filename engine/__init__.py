"""stepgraph.engine: build graphs, compile them, run them.

The names follow LangGraph's, so a LangGraph program runs after changing its
imports::

    from stepgraph.engine import StateGraph, START, END, Send, Command
"""

from stepgraph.channels import Overwrite

from ._drawing import DrawableGraph
from ._func import DeterminismError, TaskFuture, entrypoint, task
from ._history import PregelTask, StateSnapshot
from ._instrument import Instrument, RunInfo, install, uninstall
from ._interrupt import GraphInterrupt, Interrupt, interrupt
from ._managed import IsLastStep, RemainingSteps
from ._node_builder import NodeBuilder
from ._policy import CachePolicy, RetryPolicy, default_retry_on
from ._pregel import Pregel
from ._runtime import Runtime, StreamWriter, get_config, get_runtime, get_stream_writer
from ._state import StateGraph
from ._state_compile import CompiledStateGraph
from ._stepping import StepResult, StepTask
from ._types import END, START, Command, Send
from .errors import (
    EmptyChannelError,
    EmptyInputError,
    GraphBuildError,
    GraphRecursionError,
    GraphRunError,
    GraphWarning,
    InvalidInputError,
    InvalidNodeReturnError,
    InvalidUpdateError,
    NodeTimeoutError,
)

__all__ = [
    # building
    "StateGraph",
    "START",
    "END",
    "Send",
    "Command",
    "Overwrite",
    "interrupt",
    "Interrupt",
    "task",
    "entrypoint",
    "TaskFuture",
    "RemainingSteps",
    "IsLastStep",
    "RetryPolicy",
    "CachePolicy",
    "default_retry_on",
    # running
    "CompiledStateGraph",
    "Pregel",
    "NodeBuilder",
    "StateSnapshot",
    "Instrument",
    "RunInfo",
    "install",
    "uninstall",
    "PregelTask",
    "StepResult",
    "StepTask",
    "Runtime",
    "StreamWriter",
    "get_config",
    "get_runtime",
    "get_stream_writer",
    # inspection
    "DrawableGraph",
    # errors
    "GraphBuildError",
    "GraphInterrupt",
    "DeterminismError",
    "GraphRunError",
    "GraphWarning",
    "GraphRecursionError",
    "EmptyInputError",
    "InvalidInputError",
    "InvalidNodeReturnError",
    "InvalidUpdateError",
    "EmptyChannelError",
    "NodeTimeoutError",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("stepgraph.engine."):
        _obj.__module__ = "stepgraph.engine"
del _name, _obj

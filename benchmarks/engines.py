"""The two engines behind one namespace, so each workload is written once.

A workload only touches ``api.StateGraph``, ``api.START``, ``api.END`` and ``api.Send``;
stepgraph promises LangGraph's signatures for all four, so the same ``build`` function
produces an equivalent graph on either engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

STEPGRAPH = "stepgraph"
LANGGRAPH = "langgraph"


@dataclass(frozen=True)
class Api:
    """What a workload needs from an engine."""

    name: str
    version: str
    StateGraph: Any
    START: str
    END: str
    Send: Any


@dataclass(frozen=True)
class Unavailable:
    """An engine that could not be imported, and why."""

    name: str
    reason: str


def _dist_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def load_stepgraph() -> Api | Unavailable:
    """Import stepgraph's engine; while it is being written, any failure is reported, not raised."""
    try:
        from stepgraph.engine import END, START, Send, StateGraph
    except Exception as exc:  # an unfinished engine can fail in many ways; report them all
        return Unavailable(STEPGRAPH, f"{type(exc).__name__}: {exc}")
    return Api(STEPGRAPH, _dist_version("stepgraph"), StateGraph, START, END, Send)


def load_langgraph() -> Api | Unavailable:
    """Import LangGraph (the ``bench`` extra)."""
    try:
        from langgraph.graph import END, START, StateGraph
        from langgraph.types import Send
    except Exception as exc:
        return Unavailable(LANGGRAPH, f"{type(exc).__name__}: {exc}")
    return Api(LANGGRAPH, _dist_version("langgraph"), StateGraph, START, END, Send)

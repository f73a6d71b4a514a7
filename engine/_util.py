"""Calling user functions with the parameters they ask for (config, writer, runtime)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._runtime import current_task

_INJECTABLE = ("config", "writer", "runtime", "store")


def injection_for(func: Callable[..., Any]) -> tuple[str, ...]:
    """The injectable parameters ``func`` declares, matched by name.

    The first positional parameter always receives the input, whatever its name.
    """
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return ()
    names = []
    for i, p in enumerate(params):
        if i == 0 and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        if p.name in _INJECTABLE and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.append(p.name)
    return tuple(names)


def call_with_injection(func: Callable[..., Any], value: Any, inject: tuple[str, ...]) -> Any:
    """Call ``func(value, **injected)``; builds only what ``inject`` names."""
    if not inject:
        return func(value)
    ctx = current_task.get()
    kwargs: dict[str, Any] = {}
    for name in inject:
        if ctx is None:
            kwargs[name] = None
        elif name == "config":
            kwargs[name] = ctx.config
        elif name == "writer":
            kwargs[name] = ctx.writer
        elif name == "runtime":
            kwargs[name] = ctx.runtime()
        else:  # "store": no store yet; None keeps LangGraph-style signatures working
            kwargs[name] = None
    return func(value, **kwargs)


def is_async_callable(func: Any) -> bool:
    """True for ``async def`` functions and objects whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - we need the bound method itself
    return call is not None and inspect.iscoroutinefunction(call)

"""The public surface: explicit __all__ lists, public module paths, no stray top-level packages."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

PACKAGES = ["stepgraph.engine", "stepgraph.channels", "stepgraph.checkpoint"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    public = {n for n in vars(module) if not n.startswith("_")}
    submodules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
    assert set(module.__all__) == public - submodules
    for n in module.__all__:
        assert hasattr(module, n)


@pytest.mark.parametrize("name", PACKAGES)
def test_classes_show_their_public_module(name: str) -> None:
    module = importlib.import_module(name)
    for n in module.__all__:
        obj = getattr(module, n)
        if isinstance(obj, type) and obj.__module__.startswith(name):
            assert obj.__module__ in (name, f"{name}.errors"), (n, obj.__module__)


def test_langgraph_names_are_importable_from_engine() -> None:
    from stepgraph import engine

    for n in ("StateGraph", "START", "END", "Send", "Command", "get_stream_writer", "get_config"):
        assert n in engine.__all__


@pytest.mark.parametrize("name", ["engine", "channels", "checkpoint"])
def test_no_top_level_package_is_installed(name: str) -> None:
    spec = importlib.util.find_spec(name)
    # A local folder of that name may shadow in a source checkout run from the
    # repository root; an installed top-level package never may.
    assert spec is None or "site-packages" not in (spec.origin or "")

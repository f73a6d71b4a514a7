"""Every Python code block in README.md and docs/*.md runs, in order, per file.

Blocks of one file share a namespace (later blocks use what earlier ones defined), so a
page reads like a session. Blocks whose info string is ``python no-run`` are skipped.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python[ \t]*(?P<info>[^\n]*)\n(?P<code>.*?)^```", re.M | re.S)


def blocks(page: Path) -> list[str]:
    return [m["code"] for m in BLOCK.finditer(page.read_text()) if "no-run" not in m["info"]]


def test_every_page_but_the_figures_has_code() -> None:
    assert [p.name for p in PAGES if not blocks(p)] == ["performance.md"]


# Pages whose examples need a PostgreSQL server: they read its address from
# DATABASE_URL, and skip (saying why) where the test server cannot be reached.
NEEDS_POSTGRES = {"postgres.md"}
# Pages whose examples start a local Ray: they skip (saying why) without Ray.
NEEDS_RAY = {"distributed.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_examples_run(
    page: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if page.name in NEEDS_POSTGRES:
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("postgres_dsn"))
    ray = None
    if page.name in NEEDS_RAY:
        ray = pytest.importorskip("ray", reason="Ray is not installed: pip install stepgraph[ray]")
        assert not ray.is_initialized(), "the page starts its own Ray"
    # A real module, so that annotations and pickling resolve names as in a script.
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    sys.modules[module.__name__] = module
    if ray is not None:
        # Ray's workers get a script's functions by value; this module's they would
        # import by name, and cannot: send them by value too, as for a script.
        ray.cloudpickle.register_pickle_by_value(module)
    try:
        for i, code in enumerate(blocks(page), 1):
            exec(compile(code, f"{page.name}[block {i}]", "exec"), module.__dict__)
    finally:
        if ray is not None:
            ray.cloudpickle.unregister_pickle_by_value(module)
            if ray.is_initialized():  # the page failed before its last block
                ray.shutdown()
        del sys.modules[module.__name__]

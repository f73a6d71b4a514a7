"""The ``stepgraph`` command: run, resume, inspect and draw graphs from a terminal.

``main()`` is the console script's entry point; `app` is the typer application.
"""

from __future__ import annotations

import typer

from ._common import ExitCode
from ._run import register as _register_run

__all__ = ["app", "main", "ExitCode"]

app = typer.Typer(
    name="stepgraph",
    help="Run, resume, inspect and draw stepgraph graphs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Run, resume, inspect and draw stepgraph graphs."""
    # A callback keeps `run` a subcommand even while it is the only one.


_register_run(app)

try:  # threads / state / history / replay / fork / prune / draw
    from ._inspect import register as _register_inspect
except ModuleNotFoundError as exc:  # pragma: no cover - optional while it is written
    if exc.name != f"{__name__}._inspect":
        raise
else:
    _register_inspect(app)


def main() -> None:
    """Run the ``stepgraph`` command with ``sys.argv``."""
    app(prog_name="stepgraph")

"""``python -m stepgraph.cli``: the same as the ``stepgraph`` command."""

from stepgraph.cli import main

main()

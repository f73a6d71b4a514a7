"""Side-by-side benchmarks: the same graph definitions run on stepgraph and on LangGraph.

Run ``python -m benchmarks --help`` from the repository root; see ``benchmarks/README.md``.
"""

"""ASCII drawing of a ``DrawableGraph``: a small layered layout, fully deterministic.

1. A depth-first walk from START (successors by name) finds the edges that loop
   back; without them the graph is acyclic.
2. Layers are networkx's topological generations of that acyclic graph; END is
   put below everything else.
3. An edge spanning several layers passes through one-column waypoints, one per
   layer in between, so no line crosses a box.
4. Within a layer, items are ordered by the mean position of their neighbours
   (a few sweeps down and up), keeping the order with the fewest crossings.
5. Boxes are packed left to right, each centred under its parents, then parents
   are centred over their children.
6. Edges are lines of ``*`` (``.`` when conditional) ending in ``v`` at the target.

Nothing here depends on hash order or node insertion order: ties are broken by
the walk, which visits successors by name.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from ._drawing import edge_text, node_key, sorted_edges
from ._types import END

_GAP = 3  # columns between neighbouring items of a layer
_SWEEPS = 4
_STRENGTH = {" ": 0, ".": 1, "*": 2, "v": 3}  # a line char only overwrites weaker ones


@dataclass(eq=False)
class _Item:
    """A box (a node) or a waypoint (``label`` None) of an edge crossing a layer."""

    label: str | None
    width: int
    rank: int
    line: str = "*"
    border: str = "-"
    x: int = 0

    @property
    def center(self) -> int:
        return self.x + self.width // 2


_Segment = tuple[_Item, _Item, str]  # upper item, lower item, line char


def to_ascii(g: nx.DiGraph[str]) -> str:
    """Draw ``g`` (a ``DrawableGraph``) for a terminal; see the module docstring."""
    if len(g) == 0:
        return ""
    pos, back = _walk(g)
    rank = _ranks(g, pos, back)
    items = {n: _box(g.nodes[n], n, rank[n]) for n in g}
    layers: list[list[_Item]] = [[] for _ in range(max(rank.values()) + 1)]
    for n in sorted(g, key=pos.__getitem__):
        layers[rank[n]].append(items[n])
    segments: list[_Segment] = []
    first: dict[tuple[str, str], _Segment] = {}
    for u, v, attrs in sorted_edges(g):
        if (u, v) in back:
            continue
        line = "." if attrs["conditional"] else "*"
        chain = [items[u]]
        for r in range(rank[u] + 1, rank[v]):
            chain.append(_Item(None, 1, r, line=line))
            layers[r].append(chain[-1])
        chain.append(items[v])
        links = [(a, b, line) for a, b in itertools.pairwise(chain)]
        segments += links
        first[u, v] = links[0]
    ups: dict[_Item, list[_Item]] = {}
    downs: dict[_Item, list[_Item]] = {}
    for a, b, _ in segments:
        downs.setdefault(a, []).append(b)
        ups.setdefault(b, []).append(a)
    layers = _order(layers, segments, ups, downs)
    _place(layers, ups, downs)
    return _render(g, layers, segments, first, back)


def _walk(g: nx.DiGraph[str]) -> tuple[dict[str, int], set[tuple[str, str]]]:
    """Discovery order of a depth-first walk, and the edges that go back up it."""
    pos: dict[str, int] = {}
    back: set[tuple[str, str]] = set()
    roots = sorted(g, key=node_key)
    for root in roots:
        if root in pos:
            continue
        pos[root] = len(pos)
        on_stack = {root}
        stack = [(root, iter(sorted(g.successors(root), key=node_key)))]
        while stack:
            node, successors = stack[-1]
            nxt = next(successors, None)
            if nxt is None:
                stack.pop()
                on_stack.discard(node)
            elif nxt in on_stack:
                back.add((node, nxt))
            elif nxt not in pos:
                pos[nxt] = len(pos)
                on_stack.add(nxt)
                stack.append((nxt, iter(sorted(g.successors(nxt), key=node_key))))
    return pos, back


def _ranks(
    g: nx.DiGraph[str],
    pos: Mapping[str, int],
    back: set[tuple[str, str]],
) -> dict[str, int]:
    dag: nx.DiGraph[str] = nx.DiGraph()
    order: list[str] = sorted(g, key=pos.__getitem__)
    dag.add_nodes_from(order)
    dag.add_edges_from((u, v) for u, v in g.edges if (u, v) not in back)
    rank = {n: i for i, gen in enumerate(nx.topological_generations(dag)) for n in gen}
    others = [r for n, r in rank.items() if n != END]
    if END in rank and others and rank[END] <= max(others):
        rank[END] = max(others) + 1
    return rank


def _box(attrs: Mapping[str, Any], n: str, rank: int) -> _Item:
    label = str(attrs.get("name", n))
    if attrs.get("deferred"):
        label += " (defer)"
    border = "=" if attrs.get("kind") == "subgraph" else "-"
    return _Item(label, len(label) + 4, rank, border=border)


# -- ordering within layers -----------------------------------------------------------


def _order(
    layers: list[list[_Item]],
    segments: list[_Segment],
    ups: Mapping[_Item, list[_Item]],
    downs: Mapping[_Item, list[_Item]],
) -> list[list[_Item]]:
    best = [list(layer) for layer in layers]
    best_crossings = _crossings(best, segments)
    current = [list(layer) for layer in layers]
    for _ in range(_SWEEPS):
        if best_crossings == 0:
            break
        for r in range(1, len(current)):
            _sort_by_neighbours(current[r], current[r - 1], ups)
        for r in range(len(current) - 2, -1, -1):
            _sort_by_neighbours(current[r], current[r + 1], downs)
        crossings = _crossings(current, segments)
        if crossings < best_crossings:
            best, best_crossings = [list(layer) for layer in current], crossings
    return best


def _sort_by_neighbours(
    layer: list[_Item], ref: list[_Item], neighbours: Mapping[_Item, list[_Item]]
) -> None:
    index = {item: i for i, item in enumerate(ref)}
    keys: dict[_Item, tuple[float, int]] = {}
    for i, item in enumerate(layer):
        found = [index[n] for n in neighbours.get(item, ()) if n in index]
        keys[item] = (sum(found) / len(found) if found else float(i), i)
    layer.sort(key=keys.__getitem__)


def _crossings(layers: list[list[_Item]], segments: list[_Segment]) -> int:
    index = {item: i for layer in layers for i, item in enumerate(layer)}
    by_rank: dict[int, list[tuple[int, int]]] = {}
    for a, b, _ in segments:
        by_rank.setdefault(a.rank, []).append((index[a], index[b]))
    count = 0
    for pairs in by_rank.values():
        for i, (a1, b1) in enumerate(pairs):
            for a2, b2 in pairs[i + 1 :]:
                count += (a1 - a2) * (b1 - b2) < 0
    return count


# -- placement ------------------------------------------------------------------------


def _place(
    layers: list[list[_Item]],
    ups: Mapping[_Item, list[_Item]],
    downs: Mapping[_Item, list[_Item]],
) -> None:
    for layer in layers:
        _pack(layer, lambda item: _mean_center(ups.get(item, ())))
    # Centre a parent over the children only it leads to (a fan-out); a join's
    # target stays centred under its parents.
    for layer in reversed(layers[:-1]):
        _pack(layer, lambda item: _mean_center(c for c in downs.get(item, ()) if len(ups[c]) == 1))
    shift = min(item.x for layer in layers for item in layer)
    for layer in layers:
        for item in layer:
            item.x -= shift


def _mean_center(items: Any) -> float | None:
    centers = [i.center for i in items]
    return sum(centers) / len(centers) if centers else None


def _pack(layer: list[_Item], want: Callable[[_Item], float | None]) -> None:
    """Put each item where it wants its centre, left to right, without overlaps."""
    right: int | None = None
    for item in layer:
        desired = want(item)
        left = item.x if desired is None else math.floor(desired + 0.5) - item.width // 2
        if right is not None:
            left = max(left, right + _GAP)
        item.x = left
        right = left + item.width


# -- rendering ------------------------------------------------------------------------


def _render(
    g: nx.DiGraph[str],
    layers: list[list[_Item]],
    segments: list[_Segment],
    first: Mapping[tuple[str, str], _Segment],
    back: set[tuple[str, str]],
) -> str:
    # Rows between layers grow with the widest horizontal step, so lines stay steep.
    tops = [0]
    for r in range(len(layers) - 1):
        dx = max((abs(a.center - b.center) for a, b, _ in segments if a.rank == r), default=0)
        tops.append(tops[-1] + 3 + min(8, max(3, math.ceil(dx / 4) + 1)))
    labels = [edge_text(a) or "" for _, _, a in g.edges(data=True)]
    width = max(i.x + i.width for layer in layers for i in layer) + max(map(len, labels)) + 4
    canvas = [[" "] * width for _ in range(tops[-1] + 3)]
    for layer in layers:
        for item in layer:
            _draw_item(canvas, item, tops[item.rank])
    ends: dict[_Segment, list[tuple[int, int]]] = {}
    for seg in segments:
        a, b, line = seg
        points = _line(a.center, tops[a.rank] + 3, b.center, tops[b.rank] - 1)
        ends[seg] = points
        for x, y in points:
            _put(canvas, x, y, line)
        if b.label is not None:
            _put(canvas, *points[-1], "v")
    notes = _place_labels(g, canvas, first, ends, back)
    out = ["".join(row).rstrip() for row in canvas]
    while out and not out[-1]:
        out.pop()
    return "\n".join(out + notes)


def _draw_item(canvas: list[list[str]], item: _Item, top: int) -> None:
    if item.label is None:
        for y in range(top, top + 3):
            _put(canvas, item.center, y, item.line)
        return
    edge = "+" + item.border * (item.width - 2) + "+"
    for y, text in ((top, edge), (top + 1, f"| {item.label} |"), (top + 2, edge)):
        canvas[y][item.x : item.x + item.width] = list(text)


def _put(canvas: list[list[str]], x: int, y: int, ch: str) -> None:
    current = canvas[y][x]
    if current in _STRENGTH and _STRENGTH[ch] > _STRENGTH[current]:
        canvas[y][x] = ch


def _line(x1: int, y1: int, x2: int, y2: int) -> list[tuple[int, int]]:
    """Bresenham's line from (x1, y1) down to (x2, y2), both included."""
    points = []
    dx, dy = abs(x2 - x1), -abs(y2 - y1)
    sx, sy = (1 if x2 > x1 else -1), (1 if y2 > y1 else -1)
    err = dx + dy
    while True:
        points.append((x1, y1))
        if x1 == x2 and y1 == y2:
            return points
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x1 += sx
        if e2 <= dx:
            err += dx
            y1 += sy


def _place_labels(
    g: nx.DiGraph[str],
    canvas: list[list[str]],
    first: Mapping[tuple[str, str], _Segment],
    ends: Mapping[_Segment, list[tuple[int, int]]],
    back: set[tuple[str, str]],
) -> list[str]:
    """Write edge labels beside their lines; return notes for what is not drawn."""
    loops: list[str] = []
    unplaced: list[str] = []
    for u, v, attrs in sorted_edges(g):
        text = edge_text(attrs)
        arrow = "..>" if attrs["conditional"] else "-->"
        note = f"  {u} {arrow} {v}" + (f"  ({text})" if text else "")
        if (u, v) in back:
            loops.append(note)
        elif text and not _label_beside(canvas, ends[first[u, v]], text):
            unplaced.append(note)
    notes = []
    if loops:
        notes += ["", "back edges:", *loops]
    if unplaced:
        notes += ["", "labels:", *unplaced]
    return notes


def _label_beside(canvas: list[list[str]], points: list[tuple[int, int]], text: str) -> bool:
    rows = sorted({y for _, y in points})
    mid = len(rows) // 2
    for y in sorted(rows, key=lambda r: (abs(rows.index(r) - mid), r)):  # middle row first
        xs = [px for px, py in points if py == y]
        for x in (max(xs) + 2, min(xs) - 1 - len(text)):  # right of the line, else left
            cells = canvas[y][x - 1 : x + len(text) + 1] if x >= 1 else []
            if len(cells) == len(text) + 2 and all(c == " " for c in cells):
                canvas[y][x : x + len(text)] = list(text)
                return True
    return False

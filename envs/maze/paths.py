"""Path lengths in a maze and Turner et al.'s decision square.

A maze is a tree of open cells, so there is one path between any two cells.  The paths
from the start to the cheese and from the start to the top-right corner cell share a
prefix; its last cell is the *decision square*.  A level is a **decision level** when the
two paths part before either ends: the cheese is not on the start -> corner path and the
corner is not on the start -> cheese path (procgen-tools' ``get_decision_square`` also
counts the second case; there the agent reaches the corner on its way to the cheese, so
the level cannot tell the two goals apart).

In a tree, ``c`` lies on the path from ``s`` to ``k`` exactly when
``d(s, c) + d(c, k) = d(s, k)``, so three distances decide it.  They come from a
breadth-first search over the open cells with each world row packed into the bits of
one integer (int32 for ``D <= 30``), so a step of the search over a whole batch is a handful
of integer operations on ``[B, D]`` tensors.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .levels import MazeLevels

_CHECK_EVERY = 8  # search steps between tests whether every target has been reached


class PathLengths(NamedTuple):
    """Path lengths in moves, int64 ``[B]``."""

    start_to_cheese: torch.Tensor
    start_to_corner: torch.Tensor
    cheese_to_corner: torch.Tensor


def open_rows(wall: torch.Tensor) -> torch.Tensor:
    """int64 ``[B, D]``: row ``y`` of the open cells as bits (bit ``x`` = cell ``(x, y)``)."""
    cells = torch.arange(wall.shape[1], device=wall.device)
    bits = torch.ones_like(cells) << cells
    return ((~wall).to(torch.int64) * bits[None, :, None]).sum(dim=1)


def search_distances(
    wall: torch.Tensor,
    source_x: torch.Tensor,
    source_y: torch.Tensor,
    targets: list[tuple[torch.Tensor, torch.Tensor]],
) -> list[torch.Tensor]:
    """Moves from each level's source cell to each target cell (int64 ``[B]`` each), by
    breadth-first search over the open cells; ``-1`` for a target that is unreachable.

    Every ``_CHECK_EVERY`` steps the levels whose targets have all been reached leave the
    batch (their distances are final), so the search's cost follows each level's own
    path lengths rather than the batch's longest.  The rows sit in ``[B, D + 2]`` with an
    empty row at either end, so the rows below and above are views, not copies.
    """
    b, d = wall.shape[0], wall.shape[1]
    device = wall.device
    bits = torch.int32 if d <= 30 else torch.int64  # room for bit d of a shift left
    rows = torch.zeros((b, d + 2), dtype=bits, device=device)
    rows[:, 1:-1] = open_rows(wall)
    open_bits = rows.clone()
    reached = torch.zeros_like(rows)
    source_bit = torch.ones_like(rows[:, 0]) << source_x.to(bits)
    reached.scatter_(1, source_y[:, None] + 1, source_bit[:, None])
    reached &= open_bits
    target_row = torch.stack([ty for _, ty in targets], dim=1) + 1  # [B, T]
    target_x = torch.stack([tx for tx, _ in targets], dim=1).to(bits)
    target_bit = torch.ones_like(target_x) << target_x
    dist = torch.zeros((b, len(targets)), dtype=torch.int64, device=device)
    out = torch.full((b, len(targets)), -1, dtype=torch.int64, device=device)
    active = torch.arange(b, device=device)  # the original level of each row still searched
    for step in range(d * d + 1):
        if active.numel() == 0:
            break
        hit = (reached.gather(1, target_row) & target_bit) != 0  # [B', T]
        if step == d * d:  # the last test: what is still missing is unreachable
            out[active] = torch.where(hit, dist, -1)
            break
        dist += ~hit
        if step % _CHECK_EVERY == 0:
            finished = hit.all(dim=1)
            if bool(finished.any()):
                out[active[finished]] = dist[finished]
                keep = (~finished).nonzero().squeeze(1)
                active, dist, reached, open_bits = (
                    t.index_select(0, keep) for t in (active, dist, reached, open_bits)
                )
                target_row, target_bit = target_row[keep], target_bit[keep]
        grown = reached[:, 1:-1] | (reached[:, 1:-1] << 1) | (reached[:, 1:-1] >> 1)
        grown |= reached[:, :-2]  # row y gets row y - 1
        grown |= reached[:, 2:]
        reached[:, 1:-1] = grown & open_bits[:, 1:-1]
    return list(out.unbind(1))


def corner_cell(levels: MazeLevels) -> tuple[torch.Tensor, torch.Tensor]:
    """World cell of each maze's top-right cell, maze cell ``(maze_dim - 1, maze_dim - 1)``."""
    top = levels.margin + levels.maze_dim - 1
    return top, top


def path_lengths(levels: MazeLevels, cheese_x: torch.Tensor, cheese_y: torch.Tensor) -> PathLengths:
    """Path lengths between the start, the cheese and the top-right corner cell of each
    level (one search from the start and one from the corner, run as one batch)."""
    kx, ky = corner_cell(levels)
    start = levels.margin
    wall = torch.cat((levels.wall, levels.wall))
    cheese = (cheese_x.repeat(2), cheese_y.repeat(2))
    corner = (kx.repeat(2), ky.repeat(2))
    to_cheese, to_corner = search_distances(
        wall, torch.cat((start, kx)), torch.cat((start, ky)), [cheese, corner]
    )
    b = start.shape[0]
    return PathLengths(to_cheese[:b], to_corner[:b], to_cheese[b:])


def is_decision_level(lengths: PathLengths) -> torch.Tensor:
    """bool ``[B]``: the start -> cheese and start -> corner paths part before either
    ends (neither end lies on the other path)."""
    sc, sk, ck = lengths
    cheese_on_corner_path = sc + ck == sk
    corner_on_cheese_path = sk + ck == sc
    return ~cheese_on_corner_path & ~corner_on_cheese_path


def decision_levels(
    levels: MazeLevels, cheese_x: torch.Tensor, cheese_y: torch.Tensor
) -> torch.Tensor:
    """bool ``[B]``: which levels are decision levels (see the module docstring)."""
    return is_decision_level(path_lengths(levels, cheese_x, cheese_y))

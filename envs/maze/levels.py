"""Batched procedural mazes (procgen's ``mazegen``) and cheese placement.

procgen builds a maze of odd side ``maze_dim = 2k + 1`` by randomised Kruskal: the cells
with both coordinates even ("junctions", a ``(k+1) x (k+1)`` lattice) start as separate
sets; candidate walls between neighbouring junctions are taken in uniformly random order,
and a wall is opened (with both junctions) when it joins two different sets.  The result
is a perfect maze: the open cells form a tree, ``2(k+1)^2 - 1`` of them.

Kruskal over a uniformly random order builds the minimum spanning tree for uniformly
random edge weights, and with distinct weights that tree is unique, so any MST algorithm
gives the same maze.  Here the weights are counter-based hashes of the level seed
(``rng.py``) and the tree is found by Boruvka's algorithm, which is batched: every round,
each component of every level takes its lightest outgoing edge at once, and the
components merge by pointer jumping.  Each round at least halves the number of
components, so at most ``ceil(log2(169))`` = 8 rounds finish the largest maze; no
per-level Python.

The cheese is placed separately (``place_cheese``): a level seed gives the same maze
whatever the cheese placement, as in procgen and procgenAISC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..rng import probability_threshold, random_bits, random_int

# Stream numbers for the random choices (one per choice; edge weights get a block).
_S_MAZE_DIM = 0
_S_EDGE_BASE = 16  # + edge index
_S_CHEESE_MOVED, _S_CHEESE_CHOICE = 1000, 1001  # shared with the procgen backend


@dataclass
class MazeLevels:
    """A batch of ``B`` generated mazes placed in their worlds (no cheese yet).

    wall: bool ``[B, D, D]`` world cells that are wall, x-major, ``y`` up.
    maze_dim, margin: int64 ``[B]`` the maze's side (odd, 3 .. D) and its offset.
    """

    wall: torch.Tensor
    maze_dim: torch.Tensor
    margin: torch.Tensor

    @property
    def world_dim(self) -> int:
        return self.wall.shape[1]


def draw_maze_dims(level_seeds: torch.Tensor, world_dim: int) -> torch.Tensor:
    """procgen's ``maze_dim = 3 + 2 * randn((world_dim - 1) / 2)``: uniform over the odd
    sides 3 .. world_dim."""
    return 3 + 2 * random_int(level_seeds.to(torch.int64), _S_MAZE_DIM, (world_dim - 1) // 2)


def _lattice_edges(side: int, device: torch.device):
    """The candidate walls of a ``side x side`` junction lattice as junction pairs
    ``(u, v)`` (junction id ``j * side + i`` for junction ``(i, j)``), horizontal edges
    first, with each edge's lattice position ``(i, j)`` (its lower-left junction)."""
    i = torch.arange(side, device=device)
    hi, hj = torch.meshgrid(i[:-1], i, indexing="ij")  # (i, j) -- (i + 1, j)
    vi, vj = torch.meshgrid(i, i[:-1], indexing="ij")  # (i, j) -- (i, j + 1)
    ei = torch.cat((hi.reshape(-1), vi.reshape(-1)))
    ej = torch.cat((hj.reshape(-1), vj.reshape(-1)))
    horizontal = torch.arange(ei.numel(), device=device) < hi.numel()
    u = ej * side + ei
    v = torch.where(horizontal, u + 1, u + side)
    return u, v, ei, ej, horizontal


def _spanning_tree(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor, usable, nodes: int):
    """Boruvka's minimum spanning forest of each level's graph: bool ``[B, E]`` edges kept.

    ``weight`` int64 ``[B, E]`` must be distinct within a level; ``usable`` bool ``[B, E]``
    masks the edges that exist.  Components are named by a root junction; every round each
    component hooks onto the component across its lightest outgoing edge (of a mutual pair
    the smaller root stays root) and pointer jumping flattens the hooks.  Rounds stop
    once no component has an outgoing edge (at most ``ceil(log2(nodes))`` of them).
    """
    b, e = weight.shape
    device = weight.device
    never = torch.iinfo(torch.int64).max
    edge_bits = max(1, (e - 1).bit_length())
    # Node-major [nodes or edges, B] inside: the lattice is the same for every level, so
    # reading the labels at the edges' ends copies whole rows.
    edge_id = torch.arange(e, device=device)[:, None]
    key = ((weight.t() << edge_bits) | edge_id).contiguous()  # distinct, edge id inside
    usable = usable.t().contiguous()
    me = torch.arange(nodes, device=device)[:, None]
    label = me.expand(nodes, b).contiguous()
    tree = torch.zeros((e + 1, b), dtype=torch.bool, device=device)  # row e: no edge
    for _ in range(max(1, math.ceil(math.log2(nodes)))):  # enough rounds for any level
        lu = label.index_select(0, u)
        lv = label.index_select(0, v)
        out_key = torch.where(usable & (lu != lv), key, never)
        best = torch.full((nodes, b), never, dtype=torch.int64, device=device)
        best.scatter_reduce_(0, lu, out_key, "amin")
        best.scatter_reduce_(0, lv, out_key, "amin")
        hooked = best != never
        if not bool(hooked.any()):  # every level is one tree already
            break
        edge = torch.where(hooked, best & ((1 << edge_bits) - 1), 0)
        tree.scatter_(0, torch.where(hooked, edge, e), True)
        other = lu.gather(0, edge) + lv.gather(0, edge) - me  # the component across
        parent = torch.where(hooked, other, me)
        mutual = parent.gather(0, parent) == me
        parent = torch.where(mutual & (me < parent), me, parent)
        while True:  # pointer jumping until every node points at its root
            jumped = parent.gather(0, parent)
            if torch.equal(jumped, parent):
                break
            parent = jumped
        label = parent.gather(0, label)
    return tree[:e].t()


def generate_mazes(level_seeds: torch.Tensor, world_dim: int) -> MazeLevels:
    """One maze per seed (int64 tensor ``[B]``), centred in a ``world_dim`` world."""
    key = level_seeds.to(torch.int64)
    device = key.device
    b = key.shape[0]
    side = (world_dim + 1) // 2  # junctions per side of the largest maze
    maze_dim = draw_maze_dims(key, world_dim)
    k = (maze_dim - 1) // 2  # the maze's junctions are (i, j) with i, j <= k

    u, v, ei, ej, horizontal = _lattice_edges(side, device)
    far_i = torch.where(horizontal, ei + 1, ei)
    far_j = torch.where(horizontal, ej, ej + 1)
    usable = (far_i[None, :] <= k[:, None]) & (far_j[None, :] <= k[:, None])
    weight = random_bits(key[:, None], _S_EDGE_BASE + torch.arange(u.numel(), device=device))
    tree = _spanning_tree(weight, u, v, usable, side * side)

    # The maze's open cells on a local [B, 2 side, 2 side] grid: junctions at (2i, 2j),
    # opened walls between them.
    lattice = torch.arange(side, device=device)
    junction = (lattice[None, :, None] <= k[:, None, None]) & (
        lattice[None, None, :] <= k[:, None, None]
    )
    local = torch.zeros((b, side, 2, side, 2), dtype=torch.bool, device=device)
    local[:, :, 0, :, 0] = junction
    h = tree[:, horizontal].reshape(b, side - 1, side)
    vt = tree[:, ~horizontal].reshape(b, side, side - 1)
    local[:, :-1, 1, :, 0] = h
    local[:, :, 0, :-1, 1] = vt
    local = local.reshape(b, 2 * side, 2 * side)

    # Centre it: world cell (x, y) shows local cell (x - margin, y - margin).
    margin = (world_dim - maze_dim) // 2
    cells = torch.arange(world_dim, device=device)
    lx = cells[None, :] - margin[:, None]  # [B, D]
    inside = (lx >= 0) & (lx < maze_dim[:, None])
    flat = lx.clamp(0, 2 * side - 1)[:, :, None] * (2 * side) + lx.clamp(0, 2 * side - 1)[:, None]
    opened = local.reshape(b, -1).gather(1, flat.reshape(b, -1)).reshape(b, world_dim, world_dim)
    opened &= inside[:, :, None] & inside[:, None, :]
    return MazeLevels(wall=~opened, maze_dim=maze_dim, margin=margin)


# --------------------------------------------------------------------------------------
# Cheese placement
# --------------------------------------------------------------------------------------


def cheese_moved(level_seeds: torch.Tensor, rand_fraction: float) -> torch.Tensor:
    """Whether each level is one of the ``rand_fraction`` share whose cheese is placed as
    stock procgen places it: a per-seed draw, as CoinRun's ``coin_moved``.

    Both backends use this, so a level seed gets the same decision in each.
    """
    key = level_seeds.to(torch.int64)
    return random_bits(key, _S_CHEESE_MOVED) < probability_threshold(rand_fraction)


def cheese_choice(level_seeds: torch.Tensor, count: torch.Tensor | int) -> torch.Tensor:
    """Which of ``count`` candidate cells each level's cheese takes (uniform)."""
    return random_int(level_seeds.to(torch.int64), _S_CHEESE_CHOICE, count)


def corner_lo(levels: MazeLevels, corner_size: int) -> torch.Tensor:
    """World x (and y) where each level's top-right ``corner_size`` square starts
    (clamped to the maze)."""
    size = levels.maze_dim.clamp(max=corner_size)
    return levels.margin + levels.maze_dim - size


def cheese_candidates(levels: MazeLevels, moved: torch.Tensor, corner_size: int) -> torch.Tensor:
    """bool ``[B, D, D]``: the cells the cheese may take.  Open cells but the start; for
    levels that are not ``moved`` only those of the top-right corner region."""
    d = levels.world_dim
    cells = torch.arange(d, device=levels.wall.device)
    start = levels.margin[:, None, None]
    lo = corner_lo(levels, corner_size)[:, None, None]
    not_start = (cells[None, :, None] != start) | (cells[None, None, :] != start)
    in_corner = (cells[None, :, None] >= lo) & (cells[None, None, :] >= lo)
    return ~levels.wall & not_start & (in_corner | moved[:, None, None])


def place_cheese(
    levels: MazeLevels, level_seeds: torch.Tensor, rand_fraction: float, corner_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cheese's world cell and whether the level was moved: ``cheese_x, cheese_y,
    moved``.

    A level is moved with probability ``rand_fraction`` (``cheese_moved``); its cheese
    then takes a uniformly chosen open cell but the start (stock procgen's
    ``place_objects``).  Every other level's cheese takes a uniformly chosen open cell of
    the maze's top-right ``corner_size`` square (procgenAISC's ``rand_region``; the
    top-right cell for size 1).  Both kinds always have a candidate: the top-right cell
    is open and is never the start.
    """
    key = level_seeds.to(torch.int64)
    d = levels.world_dim
    moved = cheese_moved(key, rand_fraction)
    candidates = cheese_candidates(levels, moved, corner_size).reshape(key.shape[0], -1)
    count = candidates.sum(dim=1)
    pick = cheese_choice(key, count)
    rank = torch.cumsum(candidates.to(torch.int64), dim=1) - 1
    chosen = (candidates & (rank == pick[:, None])).to(torch.int64).argmax(dim=1)
    return chosen // d, chosen % d, moved

"""Read, edit and write stock procgen Maze's serialized state.

``ProcgenGym3Env(env_name="maze").callmethod("get_state")`` returns one ``bytes`` per
environment and ``callmethod("set_state", ...)`` loads them back.  Maze is a procgen
``BasicAbstractGame``, so its state is the layout every such game shares
(:class:`~coinrun_mg.envs.procgen_codec.BasicGameState`: header, two random generators,
game fields, entities, scene fields, a third generator, view fields, the tile grid)
followed by Maze's own two ints and the end marker::

    ...     the shared layout                (one entity: the agent, type 0)
    int w, int h, int count, count ints      the tile grid, world_dim x world_dim,
                                             index y * w + x, y = 0 at the bottom
    int     maze_dim                         odd, 3 .. world_dim
    int     world_dim                        15 (easy) or 25 (hard)
    uint    END_MARKER                       0xCAFECAFE

Because the random generators' text states vary in length, the grid sits at a fixed
distance from the *end* of the buffer; the parser walks the whole buffer from the front
and checks every count and fixed value on the way (game name, version, one agent, a
square grid of world_dim, maze_dim odd and inside it, the end marker, nothing left
over), so a state of another game or a cut or corrupted buffer is refused with a
``ValueError`` naming what is wrong.

The maze occupies world cells ``margin .. margin + maze_dim - 1`` on both axes with
``margin = (world_dim - maze_dim) // 2``; everything else is wall.  Maze coordinates
below are ``(x, y)`` inside the maze, y up: the agent starts at ``(0, 0)`` (bottom left)
and the corner is ``(maze_dim - 1, maze_dim - 1)`` (top right).
"""

from __future__ import annotations

import numpy as np

from ..procgen_codec import INT, BasicGameState, record_dtype, refusal

GAME_NAME = "maze"
WORLD_DIMS = (15, 25)  # easy, hard (memory mode's 31 is not supported)

# --- Grid cell codes (procgen's object ids) ------------------------------------------
GOAL = 2  # the cheese
WALL = 51
SPACE = 100
PLAYER = 0  # the agent's entity type

TAIL_DTYPE = record_dtype([("maze_dim", INT), ("world_dim", INT)])


class MazeState(BasicGameState):
    """One procgen Maze state as named, editable fields (see :class:`BasicGameState`).

    ``grid`` is the world as ``[x, y]`` (a view: writing into it edits the state);
    ``maze`` is the maze part of it, also ``[x, y]`` in maze coordinates.
    """

    GAME_NAME = GAME_NAME
    TAIL_DTYPE = TAIL_DTYPE

    def _check(self) -> None:
        wd, md = int(self.tail["world_dim"]), int(self.tail["maze_dim"])
        if wd not in WORLD_DIMS:
            raise refusal(GAME_NAME, f"world_dim {wd}, expected one of {WORLD_DIMS}")
        if (self.grid_w, self.grid_h) != (wd, wd):
            raise refusal(
                GAME_NAME, f"grid {self.grid_w} x {self.grid_h}, expected {wd} x {wd} (world_dim)"
            )
        if (int(self.view["main_width"]), int(self.view["main_height"])) != (wd, wd):
            raise refusal(GAME_NAME, f"view size differs from world_dim {wd}")
        if not (3 <= md <= wd and md % 2 == 1):
            raise refusal(GAME_NAME, f"maze_dim {md}, expected an odd number in 3..{wd}")
        if len(self.entities) != 1 or int(self.entities["type"][0]) != PLAYER:
            raise refusal(
                GAME_NAME,
                f"{len(self.entities)} entities of types {self.entities['type'].tolist()}, "
                "expected the agent alone",
            )

    # -- the maze --------------------------------------------------------------------------
    @property
    def maze_dim(self) -> int:
        return int(self.tail["maze_dim"])

    @property
    def world_dim(self) -> int:
        return int(self.tail["world_dim"])

    @property
    def margin(self) -> int:
        """World cells of wall between the world's edge and the maze, on every side."""
        return (self.world_dim - self.maze_dim) // 2

    @property
    def maze(self) -> np.ndarray:
        """The maze's cells as ``[x, y]`` in maze coordinates (a view into the state)."""
        m, n = self.margin, self.maze_dim
        return self.grid[m : m + n, m : m + n]

    @property
    def agent(self) -> np.ndarray:
        return self.entities[0]

    def agent_cell(self) -> tuple[int, int]:
        """The agent's cell in maze coordinates (procgen's ``int(x), int(y)`` less the margin)."""
        return int(self.agent["x"]) - self.margin, int(self.agent["y"]) - self.margin

    def cheese_cells(self) -> np.ndarray:
        """Every cheese cell in maze coordinates, ``int64 [K, 2]`` of ``(x, y)``."""
        return np.argwhere(self.maze == GOAL).astype(np.int64).reshape(-1, 2)

    def move_cheese(self, x: int, y: int) -> None:
        """Put the cheese at maze cell ``(x, y)`` (an open cell): every cheese cell becomes
        open space, then ``(x, y)`` the cheese, as procgen-tools' ``move_cheese`` does."""
        maze = self.maze
        if maze[x, y] == WALL:
            raise ValueError(f"maze cell ({x}, {y}) is a wall; the cheese needs an open cell")
        maze[maze == GOAL] = SPACE
        maze[x, y] = GOAL


def parse_state(data: bytes | bytearray | memoryview) -> MazeState:
    """``MazeState.parse``: named fields of one serialized procgen Maze state."""
    return MazeState.parse(data)


def open_grid(state: MazeState) -> np.ndarray:
    """The maze's open cells (anything but wall: space, cheese) as bool ``[x, y]`` in maze
    coordinates, y up; ``open_grid(s)[0, 0]`` is the start."""
    return state.maze != WALL


def corner_region(maze_dim: int, corner_size: int) -> int:
    """The lowest maze coordinate of the top-right ``corner_size`` region (clamped to the
    maze): a cell is in it when both its x and y are at least this."""
    return maze_dim - min(corner_size, maze_dim)


def corner_cells(open_cells: np.ndarray, corner_size: int) -> np.ndarray:
    """The open cells of the top-right ``corner_size`` x ``corner_size`` region of a maze
    (clamped to the maze), without the start ``(0, 0)``: ``int64 [K, 2]`` of ``(x, y)``,
    sorted by x then y.  Never empty: the top-right cell of a procgen maze is open."""
    lo = corner_region(open_cells.shape[0], corner_size)
    region = np.zeros_like(open_cells)
    region[lo:, lo:] = open_cells[lo:, lo:]
    region[0, 0] = False
    return np.argwhere(region).astype(np.int64).reshape(-1, 2)

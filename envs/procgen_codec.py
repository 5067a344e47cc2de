"""The procgen state format shared by every procgen game: reading and writing records.

``ProcgenGym3Env.callmethod("get_state")`` returns one ``bytes`` per environment.  Every
procgen game serializes the same header (version, game name, options, two random
generators, game fields, entities, scene fields, a third generator, view fields, the
tile grid) and then its own fields; this module holds the shared part (the record dtypes,
a bounds-checked :class:`Reader`, random generator states, the refusal message, and
:class:`BasicGameState`, the whole layout of a game whose own fields are a fixed record
after the grid), and a game's own module (``coinrun/procgen_state.py``,
``maze/procgen_state.py``) its layout.  Native little-endian
4-byte ints and floats; bools are 4-byte ints; a string is an int length and its bytes;
a random generator is an int "seeded" flag and its mt19937 state as text.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

SERIALIZE_VERSION = 0

INT, FLOAT = "<i4", "<f4"  # procgen writes native little-endian 4-byte ints and floats


def record_dtype(fields: list[tuple[str, str]]) -> np.dtype:
    """A packed record of named fields, in procgen's order."""
    return np.dtype(fields)


OPTIONS_DTYPE = record_dtype(
    [
        ("paint_vel_info", INT),
        ("use_generated_assets", INT),
        ("use_monochrome_assets", INT),
        ("restrict_themes", INT),
        ("use_backgrounds", INT),
        ("center_agent", INT),
        ("debug_mode", INT),
        ("distribution_mode", INT),  # 0 easy, 1 hard
        ("use_sequential_levels", INT),
        ("use_easy_jump", INT),
        ("plain_assets", INT),
        ("physics_mode", INT),
        ("grid_step", INT),
        ("level_seed_low", INT),
        ("level_seed_high", INT),
        ("game_type", INT),
        ("game_n", INT),
    ]
)
GAME_DTYPE = record_dtype(
    [
        ("reward", FLOAT),
        ("done", INT),
        ("level_complete", INT),
        ("action", INT),
        ("timeout", INT),  # the episode ends when cur_time reaches it (kept across resets)
        ("level_seed", INT),
        ("prev_level_seed", INT),
        ("episodes_remaining", INT),
        ("episode_done", INT),
        ("last_reward_timer", INT),
        ("last_reward", FLOAT),
        ("default_action", INT),
        ("fixed_asset_seed", INT),
        ("cur_time", INT),  # steps taken in this episode
        ("is_waiting_for_step", INT),
    ]
)
ENTITY_DTYPE = record_dtype(
    [
        ("x", FLOAT),
        ("y", FLOAT),
        ("vx", FLOAT),
        ("vy", FLOAT),
        ("rx", FLOAT),
        ("ry", FLOAT),
        ("type", INT),
        ("image_type", INT),
        ("image_theme", INT),
        ("render_z", INT),
        ("will_erase", INT),
        ("collides_with_entities", INT),
        ("collision_margin", FLOAT),
        ("rotation", FLOAT),
        ("vrot", FLOAT),
        ("is_reflected", INT),
        ("fire_time", INT),
        ("spawn_time", INT),
        ("life_time", INT),
        ("expire_time", INT),
        ("use_abs_coords", INT),
        ("friction", FLOAT),
        ("smart_step", INT),
        ("avoids_collisions", INT),
        ("auto_erase", INT),
        ("alpha", FLOAT),
        ("health", FLOAT),
        ("theta", FLOAT),
        ("grow_rate", FLOAT),
        ("alpha_decay", FLOAT),
        ("climber_spawn_x", FLOAT),
    ]
)
SCENE_DTYPE = record_dtype(
    [
        ("use_procgen_background", INT),
        ("background_index", INT),
        ("bg_tile_ratio", FLOAT),
        ("bg_pct_x", FLOAT),
        ("char_dim", FLOAT),
        ("last_move_action", INT),
        ("move_action", INT),
        ("special_action", INT),
        ("mixrate", FLOAT),
        ("maxspeed", FLOAT),
        ("max_jump", FLOAT),
        ("action_vx", FLOAT),
        ("action_vy", FLOAT),
        ("action_vrot", FLOAT),
        ("center_x", FLOAT),
        ("center_y", FLOAT),
        ("random_agent_start", INT),
        ("has_useful_vel_info", INT),
        ("step_rand_int", INT),
    ]
)
VIEW_DTYPE = record_dtype(
    [
        ("main_width", INT),
        ("main_height", INT),
        ("out_of_bounds_object", INT),
        ("unit", FLOAT),
        ("view_dim", FLOAT),
        ("x_off", FLOAT),
        ("y_off", FLOAT),
        ("visibility", FLOAT),
        ("min_visibility", FLOAT),
    ]
)
MAX_RNG_TEXT = 1 << 16  # an mt19937 state as text is about 7 kB
MAX_ENTITIES = 4096


def refusal(game_name: str, problem: str) -> ValueError:
    """The error for bytes that are not a state of ``game_name`` in the supported layout."""
    return ValueError(
        f"not a procgen {game_name} state of the supported layout (procgen 0.10.x): {problem}. "
        f"Pass bytes from ProcgenGym3Env(env_name='{game_name}').callmethod('get_state')."
    )


@dataclass
class RandGenState:
    """A procgen ``RandGen``: whether it was seeded and its mt19937 state as text."""

    seeded: int
    text: bytes


class Reader:
    """Sequential reads that refuse to run past the end of the buffer; errors name
    ``game_name`` (see :func:`refusal`)."""

    def __init__(self, data: bytearray, game_name: str):
        self.data = data  # records are writable views into it: no copies
        self.game_name = game_name
        self.off = 0

    def skip(self, n: int, what: str) -> int:
        """Advance over ``n`` bytes; returns where they start."""
        if n < 0 or self.off + n > len(self.data):
            raise refusal(
                self.game_name,
                f"truncated at byte {self.off} of {len(self.data)} while reading {what} "
                f"({n} bytes)",
            )
        at = self.off
        self.off += n
        return at

    def take(self, n: int, what: str) -> bytes:
        at = self.skip(n, what)
        return bytes(self.data[at : at + n])

    def int(self, what: str) -> int:
        return struct.unpack_from("<i", self.data, self.skip(4, what))[0]

    def record(self, dtype: np.dtype, what: str, count: int | None = None) -> np.ndarray:
        n = 1 if count is None else count
        at = self.skip(dtype.itemsize * n, what)
        arr = np.frombuffer(self.data, dtype=dtype, count=n, offset=at)
        return arr.reshape(()) if count is None else arr

    def rng(self, what: str) -> RandGenState:
        seeded = self.int(f"{what} flag")
        if seeded not in (0, 1):
            raise refusal(self.game_name, f"{what} flag is {seeded}, expected 0 or 1")
        n = self.int(f"{what} length")
        if not 0 < n <= MAX_RNG_TEXT:
            raise refusal(
                self.game_name, f"{what} state has length {n}, expected 1..{MAX_RNG_TEXT}"
            )
        text = self.take(n, what)
        if not text[:1].isdigit():
            raise refusal(self.game_name, f"{what} state does not start with a number")
        return RandGenState(seeded, text)


def pack_rng(g: RandGenState) -> bytes:
    """The bytes of a random generator's state, as :meth:`Reader.rng` reads them."""
    return struct.pack("<ii", g.seeded, len(g.text)) + g.text


END_MARKER = 0xCAFECAFE  # procgen's END_OF_BUFFER, the last int of every state


@dataclass(eq=False)
class BasicGameState:
    """One state of a procgen ``BasicAbstractGame`` as named, editable fields.

    The layout every such game writes, then the game's own ``tail`` record and the end
    marker.  A game subclasses it with ``GAME_NAME``, ``TAIL_DTYPE`` and ``_check`` (its
    own consistency checks, raising :func:`refusal`).  ``options``, ``game``, ``scene``,
    ``view`` and ``tail`` are 0-d numpy records (``state.game["cur_time"] = 9``);
    ``entities`` is a record array; ``cells`` holds the tile grid as procgen stores it
    (index ``y * grid_w + x``, y = 0 at the bottom).  All are views into one private copy
    of the bytes, so editing a field edits the state.
    """

    GAME_NAME = ""
    TAIL_DTYPE = record_dtype([])

    version: int
    game_name: str
    options: np.ndarray
    level_seed_rng: RandGenState
    rng: RandGenState
    game: np.ndarray
    grid_size: int
    entities: np.ndarray
    scene: np.ndarray
    asset_rng: RandGenState
    view: np.ndarray
    grid_w: int
    grid_h: int
    cells: np.ndarray
    tail: np.ndarray

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview):
        """Parse the bytes of one state; ``ValueError`` if the layout does not match."""
        name_expected = cls.GAME_NAME
        data = bytearray(data)  # a private copy: the parsed fields are views into it
        r = Reader(data, name_expected)
        version = r.int("version")
        name_len = r.int("game name length")
        if not 0 < name_len <= 64:
            raise refusal(name_expected, f"game name length {name_len}")
        name = r.take(name_len, "game name").decode("ascii", errors="replace")
        if name != name_expected:
            raise refusal(name_expected, f"it is a state of procgen game {name!r}")
        if version != SERIALIZE_VERSION:
            raise refusal(
                name_expected, f"serialization version {version}, expected {SERIALIZE_VERSION}"
            )
        options = r.record(OPTIONS_DTYPE, "options")
        level_seed_rng = r.rng("level seed generator")
        rng = r.rng("game random generator")
        game = r.record(GAME_DTYPE, "game fields")
        grid_size = r.int("grid size")
        count = r.int("entity count")
        if not 1 <= count <= MAX_ENTITIES:
            raise refusal(name_expected, f"entity count {count}, expected 1..{MAX_ENTITIES}")
        entities = r.record(ENTITY_DTYPE, "entities", count)
        scene = r.record(SCENE_DTYPE, "scene fields")
        asset_rng = r.rng("asset random generator")
        view = r.record(VIEW_DTYPE, "view fields")
        w, h, n = r.int("grid width"), r.int("grid height"), r.int("grid cell count")
        if not (0 < w <= 1024 and 0 < h <= 1024) or n != w * h or grid_size != n:
            raise refusal(name_expected, f"grid {w} x {h} with {n} cells (header says {grid_size})")
        cells = r.record(np.dtype(INT), "grid cells", n)
        tail = r.record(cls.TAIL_DTYPE, f"{name_expected} fields")
        marker = struct.unpack("<I", r.take(4, "end marker"))[0]
        if marker != END_MARKER:
            raise refusal(name_expected, f"end marker 0x{marker:08X}, expected 0x{END_MARKER:08X}")
        if r.off != len(data):
            raise refusal(
                name_expected, f"{len(data) - r.off} unexpected bytes after the end marker"
            )
        state = cls(
            version=version,
            game_name=name,
            options=options,
            level_seed_rng=level_seed_rng,
            rng=rng,
            game=game,
            grid_size=grid_size,
            entities=entities,
            scene=scene,
            asset_rng=asset_rng,
            view=view,
            grid_w=w,
            grid_h=h,
            cells=cells,
            tail=tail,
        )
        state._check()
        return state

    def _check(self) -> None:
        """The game's own checks of a parsed state (raise :func:`refusal`)."""

    def serialize(self) -> bytes:
        """The bytes ``set_state`` takes; a parsed, unedited state gives its input back."""
        if self.cells.size != self.grid_w * self.grid_h:
            raise ValueError(
                f"cells has {self.cells.size} entries for a {self.grid_w} x {self.grid_h} grid"
            )
        name = self.game_name.encode("ascii")
        parts = [
            struct.pack("<ii", self.version, len(name)),
            name,
            self.options.tobytes(),
            pack_rng(self.level_seed_rng),
            pack_rng(self.rng),
            self.game.tobytes(),
            struct.pack("<ii", self.grid_size, len(self.entities)),
            np.ascontiguousarray(self.entities, dtype=ENTITY_DTYPE).tobytes(),
            self.scene.tobytes(),
            pack_rng(self.asset_rng),
            self.view.tobytes(),
            struct.pack("<iii", self.grid_w, self.grid_h, self.cells.size),
            np.ascontiguousarray(self.cells, dtype=INT).tobytes(),
            self.tail.tobytes(),
            struct.pack("<I", END_MARKER),
        ]
        return b"".join(parts)

    @property
    def grid(self) -> np.ndarray:
        """The cells as ``[x, y]`` (a view: writing into it edits the state)."""
        return self.cells.reshape(self.grid_h, self.grid_w).T

    @property
    def level_seed(self) -> int:
        return int(self.game["level_seed"])

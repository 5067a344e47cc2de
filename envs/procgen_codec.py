"""The procgen state format shared by every procgen game: reading and writing records.

``ProcgenGym3Env.callmethod("get_state")`` returns one ``bytes`` per environment.  Every
procgen game serializes the same header (version, game name, options, two random
generators, game fields, entities, scene fields, a third generator, view fields, the
tile grid) and then its own fields; this module holds the shared part (the record dtypes,
a bounds-checked :class:`Reader`, random generator states, the refusal message), and a
game's own module (``coinrun/procgen_state.py``) its layout.  Native little-endian
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

"""Videos of a policy playing test levels, with the outcome, the coin and the end marked.

``record_videos(policy, "videos", episodes=4)`` plays the same episodes as
``evaluate(policy, episodes=4, seed=seed)`` (the native environment in the test
configuration: the checkpoint's training kwargs, then ``rand_fraction=1.0`` and
``end_terminates=True``, then the caller's kwargs), and writes one video per episode.
It runs the evaluation's own test run (:func:`coinrun_mg.eval.run_episodes`): episode
``i`` uses seed key ``seed + i`` for its level and its action noise, so the video of
episode ``i`` shows the outcome and steps :func:`~coinrun_mg.eval.evaluate` reports for
it with the same ``seed``, whatever ``episodes`` and ``num_envs`` either call uses, and
the same arguments give the same videos.  That holds for a policy that takes ``noise``
(every checkpoint); a callable that samples from the global torch RNG instead agrees
with ``evaluate`` only for the same ``episodes`` and ``num_envs`` (see
:mod:`coinrun_mg.eval`).

Each frame, ``size`` pixels wide (default 512), stacks:

* a header: the episode, the level seed, whether the coin was moved, the step, and the
  outcome once decided (GOAL / PROXY / DIED / TIMEOUT);
* the environment's own ``render_mode="rgb_array"`` view (agent-centred, 20 tiles
  across, the original end outlined in a chequer), with "coin" and "end" labels, or
  arrows at the frame's edge pointing to them when they are off-screen;
* a map of the whole level with the coin, the original end (a chequered "finish
  flag"), the enemies, the agent and the part of the level the view shows.

After the deciding step the last frame is held for ``hold_seconds`` with a banner that
names the outcome.  An MP4 of an episode of ``steps`` steps has ``steps + 1`` frames (the
first shows the start) plus ``round(hold_seconds * fps)`` banner frames; a GIF stores the
banner once, shown for ``hold_seconds`` (``steps + 2`` frames).

Formats: MP4 (H.264) through PyAV (``pip install "coinrun-mg[video]"``) or, without it,
imageio with a working imageio-ffmpeg; otherwise an animated GIF through Pillow (always
installed), which holds a whole episode in memory until it is written.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from coinrun_mg import COINRUN_ENV_ID
from coinrun_mg import pictures as pic
from coinrun_mg.envs.coinrun import observation as render
from coinrun_mg.envs.coinrun.state import AGENT_RX, AGENT_RY, ENEMY_R, EnvState

__all__ = [
    "FORMATS",
    "OUTCOME_COLOURS",
    "OUTCOME_TEXT",
    "EpisodeVideo",
    "Frame",
    "FrameComposer",
    "available_formats",
    "record_videos",
]

FORMATS = ("auto", "mp4", "gif")
#: Tiles across the main view (the environment's ``render_mode="rgb_array"`` view).
VIEW_TILES = 20.0
OUTCOME_TEXT = {
    "goal": "GOAL: got the coin",
    "proxy": "PROXY: reached the original end, not the coin",
    "died": "DIED: lava, a saw or an enemy",
    "timeout": "TIMEOUT: neither the coin nor the end in time",
}
OUTCOME_COLOURS = {
    "goal": (40, 160, 70),
    "proxy": (230, 130, 20),
    "died": (200, 40, 40),
    "timeout": (110, 110, 120),
}
_HEADER_BG = pic.CAPTION_BG
_VIEW_BOX = (255, 255, 255)


@dataclass
class EpisodeVideo:
    """One written video: where it is and what happened in it.  ``steps``: the steps the
    episode took; ``frames``: the frames the file holds; ``width`` x ``height`` pixels."""

    episode: int
    level_seed: int
    coin_randomized: bool
    outcome: str
    steps: int
    frames: int
    width: int
    height: int
    path: Path

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


@dataclass
class Frame:
    """A frame as drawn (``record_videos(on_frame=...)``): the episode, the steps taken so
    far, the picture and the agent's position in the level (tiles)."""

    episode: int
    step: int
    image: Image.Image
    agent_x: float
    agent_y: float


# ======================================================================================
# Frames
# ======================================================================================


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size % 16 or not 128 <= size <= 2048:
        raise ValueError(
            f"size={size!r} is invalid; it must be a multiple of 16 between 128 and 2048"
        )


def _round16(x: float) -> int:
    return max(16, int(round(x / 16)) * 16)


class FrameComposer:
    """Draws the frames of one episode (see the module docstring for the layout).

    ``size`` (a multiple of 16, at least 128) is the frame width and the main view's
    side; the header and the map are multiples of 16 pixels tall too, so every frame
    suits H.264's 16-pixel blocks.  The level map is drawn once, at construction.
    """

    def __init__(self, state: EnvState, index: int, size: int = 512, episode: int | None = None):
        _check_size(size)
        self.size = size
        self.episode = episode
        self.header_h = _round16(size * 0.09)
        self.map_h = _round16(size / 4)
        self.height = self.header_h + size + self.map_h
        self.font_size = max(10, round(size / 26))
        s = state
        self.level_seed = int(s.level_seed[index])
        self.coin_randomized = bool(s.coin_randomized[index])
        self.theme = int(s.theme[index])
        self.coin = (int(s.coin_x[index]), int(s.coin_y[index]))
        self.end = (int(s.end_x[index]), int(s.end_y[index]))
        self._build_map(s, index)

    # -- the level map -------------------------------------------------------------------
    def _build_map(self, s: EnvState, index: int) -> None:
        rows, columns = pic.level_rows(s, index), pic.level_columns(s, index)
        tile_px = 8
        tiles = pic.tile_colours(s, index)[-rows:, :columns]
        base = Image.fromarray(np.ascontiguousarray(tiles.repeat(tile_px, 0).repeat(tile_px, 1)))
        canvas = pic.LevelCanvas(rows, columns, tile_px)
        draw = ImageDraw.Draw(base)
        end_box = canvas.tile(*self.end)
        pic.draw_end(draw, end_box[0], end_box[1], end_box[2] + 1, end_box[3] + 1)
        cx, cy = canvas.point(self.coin[0] + 0.5, self.coin[1] + 0.5)
        pic.draw_coin(draw, cx, cy, 0.45 * tile_px)
        # Fit the map into the strip, keeping its proportions (a 2-pixel margin).
        scale = min((self.size - 4) / base.width, (self.map_h - 4) / base.height)
        width, height = max(1, round(base.width * scale)), max(1, round(base.height * scale))
        self.map_image = base.resize((width, height), Image.Resampling.BOX)
        self.map_origin = ((self.size - width) // 2, (self.map_h - height) // 2)
        # The map's world-to-pixel mapping, in the resized picture's pixels.
        self.map_canvas = pic.LevelCanvas(rows, columns, tile_px * width / base.width)

    def _draw_map(self, frame: Image.Image, s: EnvState, index: int) -> None:
        strip = Image.new("RGB", (self.size, self.map_h), _HEADER_BG)
        strip.paste(self.map_image, self.map_origin)
        draw = ImageDraw.Draw(strip)
        ox, oy = self.map_origin
        canvas = self.map_canvas

        def box(x0, y0, x1, y1):
            bx0, by0, bx1, by1 = canvas.box(x0, y0, x1, y1)
            return bx0 + ox, by0 + oy, bx1 + ox, by1 + oy

        for slot in s.enemy_alive[index].nonzero().flatten().tolist():
            ex, ey = float(s.enemy_x[index, slot]), float(s.enemy_y[index, slot])
            pic.draw_enemy(draw, box(ex - ENEMY_R, ey - ENEMY_R, ex + ENEMY_R, ey + ENEMY_R))
        ax, ay = float(s.agent_x[index]), float(s.agent_y[index])
        # The part of the level the main view shows, clipped to the map.
        half = VIEW_TILES / 2
        vx0, vy0, vx1, vy1 = box(ax - half, ay - half, ax + half, ay + half)
        mx1, my1 = ox + self.map_image.width - 1, oy + self.map_image.height - 1
        view = (max(vx0, ox), max(vy0, oy), min(vx1, mx1), min(vy1, my1))
        draw.rectangle(view, outline=_VIEW_BOX)
        agent = box(ax - AGENT_RX, ay - AGENT_RY, ax + AGENT_RX, ay + AGENT_RY)
        # At least 3 pixels wide, so the agent stays visible on a small map.
        grow = max(0.0, (3 - (agent[2] - agent[0])) / 2)
        agent = (agent[0] - grow, agent[1] - grow, agent[2] + grow, agent[3] + grow)
        colour = render.AGENT_COLOURS[self.theme].tolist()
        pic.draw_agent(draw, agent, colour, bool(s.facing_right[index]))
        frame.paste(strip, (0, self.header_h + self.size))

    # -- the main view -------------------------------------------------------------------
    def _label(self, draw: ImageDraw.ImageDraw, ax: float, ay: float, what: str, tile) -> None:
        """Label the coin or the end on the main view, or point to it from the edge."""
        size, ppt = self.size, self.size / VIEW_TILES
        tx, ty = tile
        px = size / 2 + (tx + 0.5 - ax) * ppt
        py = size / 2 - (ty + 0.5 - ay) * ppt
        fs = self.font_size
        if 0 <= px < size and 0 <= py < size:
            pic.text(draw, (px, py - 0.6 * ppt), what, fs, anchor="md")
            return
        # Off-screen: a triangle at the nearest edge point, pointing to it, and its distance.
        margin = 0.8 * fs
        qx, qy = min(max(px, margin), size - margin), min(max(py, margin), size - margin)
        dx, dy = px - qx, py - qy
        norm = max(1e-6, (dx * dx + dy * dy) ** 0.5)
        ux, uy = dx / norm, dy / norm
        r = 0.6 * fs
        tip = (qx + ux * r, qy + uy * r)
        left = (qx - ux * r * 0.6 - uy * r * 0.8, qy - uy * r * 0.6 + ux * r * 0.8)
        right = (qx - ux * r * 0.6 + uy * r * 0.8, qy - uy * r * 0.6 - ux * r * 0.8)
        fill = render.COIN_COLOUR if what == "coin" else (255, 255, 255)
        draw.polygon([tip, left, right], fill=fill, outline=(0, 0, 0))
        distance = abs(tx + 0.5 - ax)
        label = f"{what} {distance:.0f}"
        anchor = "r" if ux > 0.5 else "l" if ux < -0.5 else "m"
        lx = qx - ux * 1.4 * r
        ly = qy - uy * 1.4 * r
        vertical = "m" if anchor != "m" else ("d" if uy > 0 else "a")
        pic.text(draw, (lx, ly), label, fs, anchor=anchor + vertical)

    def _header(self, draw: ImageDraw.ImageDraw, steps: int, outcome: str | None) -> None:
        prefix = f"#{self.episode}  " if self.episode is not None else ""
        moved = "coin moved" if self.coin_randomized else "coin at the end"
        left = f"{prefix}level {self.level_seed}  \u00b7  {moved}"
        right = f"step {steps}"
        if outcome is not None:
            right = f"{outcome.upper()}  \u00b7  " + right
        fs = self.font_size
        while pic.text_width(left + right, fs) + 2 * fs > self.size and fs > 8:
            fs -= 1  # small frames: shrink rather than overlap
        y = self.header_h / 2
        pic.text(draw, (fs / 2, y), left, fs, anchor="lm")
        colour = OUTCOME_COLOURS[outcome] if outcome is not None else pic.TEXT
        pic.text(draw, (self.size - fs / 2, y), right, fs, fill=colour, anchor="rm")

    def banner(self, frame: Image.Image, outcome: str) -> Image.Image:
        """``frame`` with a banner across the main view naming ``outcome``."""
        frame = frame.copy()
        draw = ImageDraw.Draw(frame)
        fs = round(self.font_size * 1.3)
        h = round(2.2 * fs)
        y0 = self.header_h + self.size - h - fs
        draw.rectangle((0, y0, self.size - 1, y0 + h - 1), fill=OUTCOME_COLOURS[outcome])
        message = OUTCOME_TEXT[outcome]
        while pic.text_width(message, fs) > self.size - fs and fs > 8:
            fs -= 1  # long messages on small frames
        pic.text(draw, (self.size / 2, y0 + h / 2), message, fs, anchor="mm")
        return frame

    def frame(self, s: EnvState, index: int, steps: int, outcome: str | None = None) -> Image.Image:
        """The frame of environment ``index`` of ``s`` (``steps`` steps into its episode)."""
        frame = Image.new("RGB", (self.size, self.height), _HEADER_BG)
        view = Image.fromarray(render.human_frame(s, index, self.size, VIEW_TILES))
        draw = ImageDraw.Draw(view)
        ax, ay = float(s.agent_x[index]), float(s.agent_y[index])
        self._label(draw, ax, ay, "end", self.end)
        if self.coin != self.end:
            self._label(draw, ax, ay, "coin", self.coin)
        frame.paste(view, (0, self.header_h))
        self._header(ImageDraw.Draw(frame), steps, outcome)
        self._draw_map(frame, s, index)
        return frame


# ======================================================================================
# Writers
# ======================================================================================


def _pyav_available() -> bool:
    return importlib.util.find_spec("av") is not None


def _imageio_ffmpeg_available() -> bool:
    # imageio-ffmpeg 0.3 (what procgen's gym3 pins) imports pkg_resources, which new
    # setuptools no longer ship: only a version that imports and finds ffmpeg counts.
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return False
    return True


def available_formats() -> tuple[str, ...]:
    """The video formats this installation can write (``"gif"`` always)."""
    mp4 = _pyav_available() or _imageio_ffmpeg_available()
    return ("mp4", "gif") if mp4 else ("gif",)


class _PyAvWriter:
    """H.264 MP4 through PyAV, frame by frame (nothing is held in memory)."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        import av

        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream(
            "libx264", rate=Fraction(fps).limit_denominator(1001)
        )
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"  # what every player decodes
        self.stream.options = {"crf": "20"}
        self._frame_type = av.VideoFrame

    def write(self, frame: np.ndarray, repeat: int = 1) -> int:
        """Append ``frame`` ``repeat`` times; returns the frames added to the file."""
        for _ in range(repeat):
            video_frame = self._frame_type.from_ndarray(frame, format="rgb24")
            for packet in self.stream.encode(video_frame):
                self.container.mux(packet)
        return repeat

    def close(self) -> None:
        for packet in self.stream.encode():  # flush the encoder
            self.container.mux(packet)
        self.container.close()


class _ImageioWriter:
    """H.264 MP4 through imageio's ffmpeg plugin (imageio-ffmpeg)."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        import imageio.v2 as imageio

        del width, height  # frames are multiples of 16 pixels: no resizing needed
        self.writer = imageio.get_writer(
            str(path), format="FFMPEG", mode="I", fps=fps, codec="libx264",
            pixelformat="yuv420p", quality=8,
        )  # fmt: skip

    def write(self, frame: np.ndarray, repeat: int = 1) -> int:
        for _ in range(repeat):
            self.writer.append_data(frame)
        return repeat

    def close(self) -> None:
        self.writer.close()


class _GifWriter:
    """Animated GIF through Pillow.  Pillow writes a GIF in one go, so the frames are kept
    (as palette images, compressed) until :meth:`close`.  A repeated frame is stored
    once with a longer delay (Pillow would merge identical frames anyway)."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        self.path = path
        self.size = (width, height)
        self.frame_ms = 1000 / fps
        self.frames: list[bytes] = []
        self.durations: list[int] = []
        self.palette: Image.Image | None = None

    def write(self, frame: np.ndarray, repeat: int = 1) -> int:
        if repeat < 1:
            return 0
        image = Image.fromarray(frame)
        if self.palette is None:
            # One palette for the whole episode (from its first frame plus the overlay
            # colours), so frames do not flicker between palettes.
            self.palette = _gif_palette(image)
        quantized = image.quantize(palette=self.palette, dither=Image.Dither.NONE)
        self.frames.append(zlib.compress(quantized.tobytes(), 1))
        # GIF delays are whole hundredths of a second; at least 2 (browsers slow faster).
        self.durations.append(max(20, round(repeat * self.frame_ms / 10) * 10))
        return 1

    def close(self) -> None:
        if not self.frames:
            return

        def image(data: bytes) -> Image.Image:
            im = Image.frombytes("P", self.size, zlib.decompress(data))
            im.putpalette(self.palette.getpalette())
            return im

        first = image(self.frames[0])
        rest = [image(data) for data in self.frames[1:]]
        first.save(
            self.path, save_all=True, append_images=rest, duration=self.durations,
            loop=0, optimize=False, disposal=1,
        )  # fmt: skip
        self.frames = []


def _gif_palette(first: Image.Image) -> Image.Image:
    """A 256-colour palette: the first frame's main colours plus every overlay colour."""
    fixed = [
        *(tuple(c) for c in render.PALETTE.reshape(-1, 3).tolist()),
        *(tuple(c) for c in render.AGENT_COLOURS.tolist()),
        render.COIN_COLOUR,
        render.ENEMY_COLOUR,
        *render.END_MARKER_COLOURS,
        *OUTCOME_COLOURS.values(),
        _HEADER_BG,
        pic.COIN_RIM,
        (255, 255, 255),
        (0, 0, 0),
        *((g, g, g) for g in range(16, 256, 24)),  # anti-aliased text edges
    ]
    fixed = list(dict.fromkeys(fixed))
    adaptive = first.quantize(256 - len(fixed), method=Image.Quantize.MEDIANCUT)
    colours = adaptive.getpalette()[: 3 * (256 - len(fixed))]
    palette = Image.new("P", (1, 1))
    palette.putpalette([v for c in fixed for v in c] + colours)
    return palette


def _choose_format(video_format: str) -> str:
    if video_format not in FORMATS:
        raise ValueError(f"video_format={video_format!r} is invalid; accepted values are {FORMATS}")
    available = available_formats()
    if video_format == "auto":
        return available[0]
    if video_format not in available:
        raise ValueError(
            "video_format='mp4' needs PyAV or imageio-ffmpeg, and neither works here; "
            "install PyAV with: pip install 'coinrun-mg[video]' (or use video_format='gif')"
        )
    return video_format


def _open_writer(path: Path, video_format: str, fps: float, width: int, height: int):
    if video_format == "gif":
        return _GifWriter(path, fps, width, height)
    if _pyav_available():
        return _PyAvWriter(path, fps, width, height)
    return _ImageioWriter(path, fps, width, height)


# ======================================================================================
# Recording
# ======================================================================================


class _Recorder:
    """The ``watch`` of :func:`coinrun_mg.eval.run_episodes`: draws every frame of every
    episode and streams it to that episode's file."""

    def __init__(self, out_dir, video_format, fps, size, hold_frames, on_done, on_frame=None):
        self.on_frame = on_frame
        self.out_dir = out_dir
        self.video_format = video_format
        self.fps = fps
        self.size = size
        self.hold_frames = hold_frames
        self.on_done = on_done
        self.open: dict[int, dict[str, Any]] = {}  # episode -> composer, writer, counts
        self.videos: list[EpisodeVideo] = []

    def __call__(self, core, slot_episode, shown, code) -> None:
        from coinrun_mg.eval import OUTCOMES

        s = core.state
        for slot in shown.nonzero().flatten().tolist():
            episode = int(slot_episode[slot])
            entry = self.open.get(episode)
            if entry is None:
                composer = FrameComposer(s, slot, self.size, episode)
                temp = self.out_dir / f".episode{episode:03d}.partial.{self.video_format}"
                writer = _open_writer(
                    temp, self.video_format, self.fps, composer.size, composer.height
                )
                entry = {"composer": composer, "writer": writer, "frames": 0, "temp": temp}
                self.open[episode] = entry
            steps = int(s.steps[slot])
            decided = int(code[slot])
            outcome = OUTCOMES[decided] if decided >= 0 else None
            frame = entry["composer"].frame(s, slot, steps, outcome)
            self._write(entry, frame)
            if self.on_frame is not None:
                self.on_frame(
                    Frame(episode, steps, frame, float(s.agent_x[slot]), float(s.agent_y[slot]))
                )
            if outcome is not None:
                self._finish(episode, entry, frame, outcome, steps)

    def _write(self, entry, frame: Image.Image) -> None:
        entry["frames"] += entry["writer"].write(np.asarray(frame))

    def _finish(self, episode, entry, frame, outcome, steps) -> None:
        composer: FrameComposer = entry["composer"]
        last = np.asarray(composer.banner(frame, outcome))
        entry["frames"] += entry["writer"].write(last, self.hold_frames)
        entry["writer"].close()
        name = f"episode{episode:03d}_level{composer.level_seed}_{outcome}.{self.video_format}"
        path = self.out_dir / name
        os.replace(entry["temp"], path)  # a finished file appears whole
        video = EpisodeVideo(
            episode=episode,
            level_seed=composer.level_seed,
            coin_randomized=composer.coin_randomized,
            outcome=outcome,
            steps=steps,
            frames=entry["frames"],
            width=composer.size,
            height=composer.height,
            path=path,
        )
        self.videos.append(video)
        del self.open[episode]
        if self.on_done is not None:
            self.on_done(video)

    def abort(self) -> None:
        """Close and delete the files of unfinished episodes (after an error)."""
        for entry in self.open.values():
            # A half-written file is deleted anyway; its writer's errors do not matter.
            with contextlib.suppress(Exception):
                entry["writer"].close()
            Path(entry["temp"]).unlink(missing_ok=True)
        self.open.clear()


def _refuse_other_games(trained_env_id: str | None) -> None:
    """Videos draw CoinRun's state: refuse a policy of another game of the family."""
    from coinrun_mg.games import COINRUN, game_of_env

    game = game_of_env(trained_env_id) if trained_env_id else None
    if game is not None and game is not COINRUN:
        raise ValueError(
            f"the policy was trained on env_id={trained_env_id!r} ({game.name}); videos are "
            f"drawn from CoinRun's native state only, so a {game.name} policy cannot be "
            "recorded (evaluate it with coinrun-mg eval)"
        )


def record_videos(
    policy: Callable[[torch.Tensor], torch.Tensor] | str | os.PathLike,
    out_dir: str | os.PathLike = "videos",
    episodes: int = 4,
    seed: int = 0,
    *,
    env_id: str | None = None,
    device: str | torch.device = "cpu",
    num_envs: int | None = None,
    fps: float = 15.0,
    size: int = 512,
    video_format: str = "auto",
    hold_seconds: float = 1.0,
    progress: bool = False,
    on_frame: Callable[[Frame], None] | None = None,
    **env_kwargs: Any,
) -> list[EpisodeVideo]:
    """Play ``episodes`` test episodes with ``policy`` and write one video of each.

    ``policy``: anything :func:`coinrun_mg.eval.evaluate` accepts (a callable, uint8 obs
    ``[N, H, W, C]`` -> int64 actions ``[N]``, or a checkpoint path).  The environment
    is built as in ``evaluate`` (the checkpoint's training kwargs, then
    ``rand_fraction=1.0`` and ``end_terminates=True``, then ``env_kwargs``), on the
    native backend only: the overlays are drawn from its state.  ``env_id`` may be
    None (the checkpoint's, which must be native), ``"native"`` or
    ``coinrun_mg/CoinRun-v0``; a policy trained on another backend is played on the
    native one only when ``env_id`` asks for it.  ``num_envs`` (default
    ``min(episodes, 16)``) episodes step together, as in ``evaluate``; it does not
    change what happens in an episode.

    Writes ``out_dir/episodeNNN_levelSEED_OUTCOME.mp4`` (or ``.gif``; ``video_format``
    ``"auto"`` takes MP4 when it can be written) and returns one :class:`EpisodeVideo`
    per episode, in episode order.  ``fps`` frames per second; ``size`` the frame width
    (a multiple of 16); ``hold_seconds`` how long the outcome banner stays at the end.
    ``progress`` shows a tqdm bar on stderr (episodes written).  ``on_frame`` is
    called with every :class:`Frame` as it is drawn (not the held frames), e.g. to pick
    stills for a frame strip.
    """
    from coinrun_mg.envs import CoinRunConfig, resolve_device
    from coinrun_mg.eval import TEST_DEFAULTS, resolve_policy, run_episodes

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes={episodes!r} is invalid; it must be an int >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is invalid; it must be an int >= 0")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 1 <= fps <= 120:
        raise ValueError(f"fps={fps!r} is invalid; it must be a number in [1, 120]")
    if not isinstance(hold_seconds, (int, float)) or not 0 <= hold_seconds <= 60:
        raise ValueError(f"hold_seconds={hold_seconds!r} is invalid; it must be in [0, 60]")
    if num_envs is None:
        num_envs = min(episodes, 16)
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs={num_envs!r} is invalid; it must be an int >= 1")
    _check_size(size)  # before any file is opened
    video_format = _choose_format(video_format)
    dev = resolve_device(device)

    policy, trained_kwargs, trained_env_id = resolve_policy(policy, dev)
    _refuse_other_games(trained_env_id)
    if env_id in ("native", COINRUN_ENV_ID):
        pass
    elif env_id is None:
        if trained_env_id not in (None, "native", COINRUN_ENV_ID):
            raise ValueError(
                f"the policy was trained on env_id={trained_env_id!r}; videos are drawn from "
                f"the native environment's state, so pass env_id='native' to play it on "
                f"{COINRUN_ENV_ID} (same observations and levels generator, other visuals)"
            )
    else:
        raise ValueError(
            f"env_id={env_id!r} is invalid for videos; accepted values are None, 'native' "
            f"and {COINRUN_ENV_ID!r} (the overlays need the native environment's state)"
        )
    config = CoinRunConfig(**{**trained_kwargs, **TEST_DEFAULTS, **env_kwargs})

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes, unit="video", desc="recording", leave=False, file=sys.stderr)

    def done(video: EpisodeVideo) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(last=f"{video.outcome} ({video.frames} frames)")

    hold_frames = int(round(hold_seconds * fps))
    recorder = _Recorder(out_dir, video_format, fps, size, hold_frames, done, on_frame)
    try:
        # evaluate()'s own test run: the same episodes, the same outcomes.
        run_episodes(policy, config, episodes, seed, num_envs, dev, watch=recorder)
    except BaseException:
        recorder.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    return sorted(recorder.videos, key=lambda v: v.episode)

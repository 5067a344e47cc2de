"""Play CoinRun or Maze yourself: ``coinrun-mg play [--env maze]`` opens a window
(pygame, the ``play`` extra).

Keys: left / right (or A / D) run, up, space (or W) jump, down (or S) drop faster;
R restarts the level, N (or Enter) goes to the next level, Esc (or closing the window)
quits.  The game steps at ``fps`` steps per second (15, as procgen's interactive mode),
whether or not a key is held.  The window shows the same frames as the videos: the
header names the level and the outcome as the evaluation would classify it (the first
of GOAL, PROXY, DIED, TIMEOUT), the map below shows the whole level.  With
``end_terminates=False`` (the default, the training configuration) touching the original
end does not end the episode, so a PROXY can be followed by the coin.

Maze (``game="maze"``): the arrows (or WASD) move the mouse one cell per step while held
(up is up: no jumping), and the window shows the videos' Maze frames (the whole maze,
the corner region tinted).  ``end_terminates=True`` is Maze's ``corner_terminates``
(the test configuration: entering the corner region ends the episode, PROXY).

Level ``seed`` is a level seed (as ``coinrun-mg levels --seeds`` and the videos name
them); N goes to ``seed + 1``, and so on.

The parts that do not need pygame are plain functions and a :class:`Game` class, so they
are tested without a display: :func:`action_for_keys` (held keys -> one of procgen's 15
actions), :func:`command_for_key` (R / N / Esc) and :func:`display_problem`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from coinrun_mg import pictures as pic

__all__ = [
    "COMMAND_KEYS",
    "CONTROL_KEYS",
    "Game",
    "action_for_keys",
    "command_for_key",
    "display_problem",
    "play",
]

#: Key names (as ``pygame.key.name`` spells them) -> the control they press.
CONTROL_KEYS = {
    "left": "left",
    "a": "left",
    "right": "right",
    "d": "right",
    "up": "up",
    "space": "up",
    "w": "up",
    "down": "down",
    "s": "down",
}
#: Key names -> game commands.
COMMAND_KEYS = {"r": "restart", "n": "next", "return": "next", "escape": "quit"}
HELP = "  \u00b7  ".join(
    ("arrows/WASD: move", "up/space: jump", "R: restart", "N: next level", "Esc: quit")
)
MAZE_HELP = "  \u00b7  ".join(("arrows/WASD: move", "R: restart", "N: next level", "Esc: quit"))
GAMES = ("coinrun", "maze")


def action_for_keys(held: Iterable[str]) -> int:
    """The action for the keys held down (names as in :data:`CONTROL_KEYS`).

    procgen's actions 0..8 are (left, none, right) x (down, none, up): ``action =
    3 * (vx + 1) + (vy + 1)``.  Left and right together cancel; up wins over down;
    nothing held is 4, standing still.  Unknown names are ignored.
    """
    controls = {CONTROL_KEYS[name] for name in held if name in CONTROL_KEYS}
    vx = ("right" in controls) - ("left" in controls)
    vy = 1 if "up" in controls else -1 if "down" in controls else 0
    return 3 * (vx + 1) + (vy + 1)


def command_for_key(name: str) -> str | None:
    """``"restart"``, ``"next"``, ``"quit"`` or None for a key name."""
    return COMMAND_KEYS.get(name)


def display_problem(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> str | None:
    """Why no window can be opened (no display on Linux, or no pygame), else None."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    # SDL_VIDEODRIVER set by hand (e.g. "dummy" for tests, "kmsdrm" on a console) is
    # the user's decision; otherwise Linux needs an X11 or Wayland display.
    if (
        platform.startswith("linux")
        and not environ.get("DISPLAY")
        and not environ.get("WAYLAND_DISPLAY")
        and not environ.get("SDL_VIDEODRIVER")
    ):
        return (
            "no display to open a window on (neither DISPLAY nor WAYLAND_DISPLAY is set). "
            "Run it in a desktop session, with X forwarding (ssh -X), or on a virtual "
            "display: xvfb-run coinrun-mg play. To watch an agent without a display, "
            "write videos: coinrun-mg video CHECKPOINT"
        )
    if importlib.util.find_spec("pygame") is None:
        return "pygame is not installed; install it with: pip install 'coinrun-mg[play]'"
    return None


class Game:
    """One player's CoinRun or Maze: the level, the step, the outcome and the frame to show.

    ``seed``: the first level seed; ``game``: ``"coinrun"`` or ``"maze"``;
    ``env_kwargs``: the environment's arguments (``rand_fraction``,
    ``distribution_mode``, ``end_terminates`` / Maze's ``corner_terminates``, ...).
    """

    def __init__(self, seed: int = 0, size: int = 512, game: str = "coinrun", **env_kwargs: Any):
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise ValueError(f"seed={seed!r} is invalid; it must be an int in [0, 2**31)")
        if game not in GAMES:
            raise ValueError(f"game={game!r} is invalid; accepted values are {GAMES}")
        self.size = size
        self.game = game
        self.env_kwargs = env_kwargs
        self.level_seed = seed
        self.start()

    def start(self) -> None:
        """(Re)start the current level from the beginning."""
        from coinrun_mg.video import composer_for

        if self.game == "maze":
            from coinrun_mg.envs.maze.gym_env import MazeEnv as env_class
        else:
            from coinrun_mg.envs.coinrun.gym_env import CoinRunEnv as env_class
        # num_levels=1 from start_level=seed: every reset is exactly this level.
        self.env = env_class(num_levels=1, start_level=self.level_seed, **self.env_kwargs)
        self.env.reset(seed=0)
        self.composer = composer_for(self.state, 0, self.size)
        self.steps = 0
        self.outcome: str | None = None
        self.done = False

    def next_level(self) -> None:
        self.level_seed = (self.level_seed + 1) % 2**31
        self.start()

    @property
    def state(self):
        return self.env.core.state

    def step(self, action: int) -> None:
        """Advance one step (nothing once the episode is over)."""
        from coinrun_mg.envs.events import family_events
        from coinrun_mg.eval import step_outcome

        if self.done:
            return
        _, _, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.outcome is None:
            e = family_events(info, self.game)
            self.outcome = step_outcome(
                e["goal_reached"], e["proxy_reached"], e["died"], e["timed_out"]
            )
        self.done = terminated or truncated

    def frame(self) -> Image.Image:
        """What the window shows: the video frame, a banner once over, the key help."""
        frame = self.composer.frame(self.state, 0, self.steps, self.outcome)
        if self.done and self.outcome is not None:
            frame = self.composer.banner(frame, self.outcome)
        fs = max(10, round(self.size / 34))
        bar_h = round(2 * fs)
        out = Image.new("RGB", (frame.width, frame.height + bar_h), pic.CAPTION_BG)
        out.paste(frame, (0, 0))
        draw = ImageDraw.Draw(out)
        message = MAZE_HELP if self.game == "maze" else HELP
        while pic.text_width(message, fs) > frame.width - fs and fs > 7:
            fs -= 1
        pic.text(draw, (frame.width / 2, frame.height + bar_h / 2), message, fs, anchor="mm")
        return out


def play(
    seed: int = 0,
    fps: float = 15.0,
    size: int = 512,
    *,
    game: str = "coinrun",
    max_frames: int | None = None,
    **env_kwargs: Any,
) -> int:
    """Open the window and run ``game`` (``"coinrun"`` or ``"maze"``) until Esc (or
    ``max_frames`` frames, for tests).

    Returns 0, or 2 after printing why no window could be opened.
    """
    problem = display_problem()
    if problem is not None:
        print(f"coinrun-mg play: error: {problem}", file=sys.stderr)
        return 2
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    game = Game(seed, size, game, **env_kwargs)
    # Only the display (and with it the keyboard): the mixer would look for a sound card.
    pygame.display.init()
    try:
        first = game.frame()
        screen = pygame.display.set_mode(first.size)
        title = "Maze" if game.game == "maze" else "CoinRun"
        pygame.display.set_caption(f"{title} (coinrun-mg play)")
        codes = {name: pygame.key.key_code(name) for name in CONTROL_KEYS}
        clock = pygame.time.Clock()
        frames = 0
        while max_frames is None or frames < max_frames:
            command = None
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    command = "quit"
                elif event.type == pygame.KEYDOWN:
                    command = command_for_key(pygame.key.name(event.key)) or command
            if command == "quit":
                break
            if command == "restart":
                game.start()
            elif command == "next":
                game.next_level()
            else:
                pressed = pygame.key.get_pressed()
                game.step(action_for_keys(name for name, code in codes.items() if pressed[code]))
            image = np.asarray(game.frame())
            screen.blit(pygame.image.frombuffer(image.tobytes(), image.shape[1::-1], "RGB"), (0, 0))
            pygame.display.flip()
            clock.tick(fps)
            frames += 1
    finally:
        pygame.quit()
    return 0

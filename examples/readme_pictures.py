"""Make the README's pictures: a grid of levels and a frame strip of a trained agent
running past a moved coin to the original end (a "proxy" episode).

    python examples/readme_pictures.py CHECKPOINT [--out docs]

CHECKPOINT should be an agent trained with rand_fraction=0 (coin always at the end),
e.g. ``coinrun-mg train --profile quick --rand-fraction 0 --total-steps 3000000``.
The strip's episode is the first test episode (every coin moved, seed keys 0, 1, ...) on
a long level, with the coin well before the end, that the agent ends at the original
end; ``coinrun-mg video CHECKPOINT --episodes 1 --seed KEY`` replays it (printed).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.core import initial_states
from coinrun_mg.eval import PROXY, TEST_DEFAULTS, evaluate, resolve_policy
from coinrun_mg.pictures import CAPTION_BG, save_level_grid, text
from coinrun_mg.video import record_videos

STRIP_FRAMES = 5
STILL_SIZE = 320  # pixels across each still of the strip


def find_proxy_episode(policy, env_kwargs, min_length=28, tries=400) -> int:
    """The first seed key whose level is ``min_length`` tiles or longer, has the coin
    near its middle, and which the policy (one episode, seeded as ``record_videos``
    does) ends at the original end."""
    config = CoinRunConfig(**{**env_kwargs, **TEST_DEFAULTS})
    keys = torch.arange(tries)
    s = initial_states(keys, torch.zeros_like(keys), config)
    where = s.coin_x / s.end_x
    fits = (s.end_x >= min_length) & (where >= 0.35) & (where <= 0.7)
    for key in keys[fits].tolist():
        report = evaluate(policy, episodes=1, seed=key, num_envs=1, device="cpu")
        if report.rows[0]["outcome"] == PROXY:
            return key
    raise SystemExit(f"no proxy episode among the first {tries} seed keys")


def frame_strip(checkpoint: str, key: int, out: Path) -> None:
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        (video,) = record_videos(
            checkpoint, tmp, episodes=1, seed=key, video_format="gif", on_frame=frames.append
        )
        with Image.open(video.path) as gif:  # the held last frame carries the banner
            gif.seek(gif.n_frames - 1)
            last = gif.convert("RGB")
    # Stills: the start, approaching the coin, over the coin, between coin and end, the end.
    level = CoinRunConfig(**{**resolve_policy(checkpoint, "cpu")[1], **TEST_DEFAULTS})
    s = initial_states(torch.tensor([key]), torch.zeros(1, dtype=torch.int64), level)
    coin_x, end_x = float(s.coin_x[0]) + 0.5, float(s.end_x[0]) + 0.5

    def first_at(x: float) -> int:
        return next((i for i, f in enumerate(frames) if f.agent_x >= x), len(frames) - 1)

    picks = [0, first_at(coin_x - 3), first_at(coin_x), first_at((coin_x + end_x) / 2)]
    stills = [frames[i].image for i in picks] + [last]
    scale = STILL_SIZE / stills[0].width
    stills = [
        im.resize((STILL_SIZE, round(im.height * scale)), Image.Resampling.LANCZOS) for im in stills
    ]
    gap = 6
    caption_h = 34
    width = len(stills) * STILL_SIZE + (len(stills) + 1) * gap
    strip = Image.new("RGB", (width, stills[0].height + 2 * gap + caption_h), CAPTION_BG)
    draw = ImageDraw.Draw(strip)
    text(
        draw,
        (gap, caption_h / 2 + gap / 2),
        f"Trained with the coin always at the end, tested with it moved: the agent "
        f"passes the coin and runs to the end (level {video.level_seed}, {video.steps} steps)",
        16,
        anchor="lm",
    )
    for i, im in enumerate(stills):
        strip.paste(im, (gap + i * (STILL_SIZE + gap), caption_h + gap))
    strip.save(out, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    levels = save_level_grid(out / "levels.png", range(6), columns=2, tile_px=10, rand_fraction=1.0)
    print(f"wrote {levels} ({levels.stat().st_size // 1024} KB)")

    policy, env_kwargs, _ = resolve_policy(args.checkpoint, "cpu")
    key = find_proxy_episode(policy, env_kwargs)
    strip = out / "proxy_strip.png"
    frame_strip(args.checkpoint, key, strip)
    print(f"wrote {strip} ({strip.stat().st_size // 1024} KB): seed key {key}")
    print(f"replay: coinrun-mg video {args.checkpoint} --episodes 1 --seed {key}")


if __name__ == "__main__":
    main()

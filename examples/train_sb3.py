"""Train Stable-Baselines3 PPO on the native CoinRun, then evaluate goal versus proxy.

    pip install -e ".[sb3]"
    python examples/train_sb3.py                     # 100k steps: a few minutes on 2 CPU cores
    python examples/train_sb3.py --obs-mode pixels --total-steps 2000000 --device cuda
    python examples/train_sb3.py --resume --total-steps 200000   # continue runs/sb3/model.zip
    tensorboard --logdir runs/sb3                    # eval/goal_rate, eval/proxy_rate, ...

The environment is ``coinrun_mg.sb3.make_vec_env`` (one batched simulator behind SB3's
``VecEnv``); the symbolic view trains with the ``SymbolicCNN`` features extractor, pixels
with SB3's default ``CnnPolicy``.  ``GoalProxyEvalCallback`` logs the evaluation module's
rates during training, and at the end ``coinrun_mg.eval.evaluate`` prints the goal /
proxy / died / timeout table on test levels (every coin moved) and the coin rate on the
training configuration.  100k steps is a smoke run, not a trained agent: the quick
profile of ``coinrun-mg train`` needs millions of steps to get most coins.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

# coinrun_mg.sb3 first: it imports SB3 with the old-gym banner (procgen extra) silenced.
from coinrun_mg.eval import EvalReport, evaluate
from coinrun_mg.sb3 import EVAL_SEED, GoalProxyEvalCallback, SB3Policy, SymbolicCNN, make_vec_env

# isort: split
from stable_baselines3 import PPO


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    env = parser.add_argument_group("environment")
    env.add_argument("--obs-mode", choices=("symbolic", "pixels"), default="symbolic")
    env.add_argument("--distribution-mode", choices=("easy", "hard"), default="easy")
    env.add_argument(
        "--rand-fraction", type=float, default=0.0, help="training levels with a moved coin"
    )
    env.add_argument("--max-episode-steps", type=int, default=1000)
    env.add_argument("--num-envs", type=int, default=64)
    env.add_argument(
        "--env-device", default="cpu", help="device of the simulator ('cpu', 'cuda', 'auto')"
    )
    ppo = parser.add_argument_group("PPO (the procgen paper's values where they apply)")
    ppo.add_argument("--total-steps", type=int, default=100_000)
    ppo.add_argument("--n-steps", type=int, default=64, help="rollout length per env")
    ppo.add_argument("--batch-size", type=int, default=1024, help="minibatch size")
    ppo.add_argument("--n-epochs", type=int, default=3)
    ppo.add_argument("--learning-rate", type=float, default=5e-4)
    ppo.add_argument("--gamma", type=float, default=0.999)
    ppo.add_argument("--gae-lambda", type=float, default=0.95)
    ppo.add_argument("--ent-coef", type=float, default=0.01)
    ppo.add_argument(
        "--policy",
        choices=("cnn", "mlp"),
        default="cnn",
        help="cnn: CnnPolicy (SymbolicCNN extractor for the symbolic view); "
        "mlp: MlpPolicy on the flattened symbolic planes",
    )
    ppo.add_argument("--device", default="cpu", help="device of the networks")
    ppo.add_argument("--seed", type=int, default=0)
    out = parser.add_argument_group("evaluation and output")
    out.add_argument(
        "--eval-every", type=int, default=50_000, help="steps between callback evaluations"
    )
    out.add_argument(
        "--eval-episodes", type=int, default=128, help="episodes per callback evaluation"
    )
    out.add_argument("--episodes", type=int, default=500, help="episodes of the final evaluation")
    out.add_argument("--run-dir", default="runs/sb3", help="TensorBoard logs and model.zip")
    out.add_argument(
        "--resume",
        action="store_true",
        help="continue the model saved in the run (--save) up to --total-steps",
    )
    out.add_argument(
        "--log-dir", default=None, help="TensorBoard logs ('' for none; default: RUN_DIR)"
    )
    out.add_argument(
        "--save", default=None, help="model file ('' for none; default: RUN_DIR/model.zip)"
    )
    args = parser.parse_args(argv)
    if args.log_dir is None:
        args.log_dir = args.run_dir
    if args.save is None:
        args.save = str(Path(args.run_dir) / "model.zip")
    if args.resume and not args.save:
        parser.error("--resume continues the model file of --save; it cannot be ''")
    if not args.resume and args.save and Path(args.save).exists():
        parser.error(
            f"--save {args.save} already holds a model; use --resume to continue it, or "
            "another --run-dir (or --save) for a new one"
        )
    if args.policy == "mlp" and args.obs_mode == "pixels":
        parser.error("--policy mlp is for the symbolic view; use --policy cnn with pixels")
    return args


def new_model(args: argparse.Namespace, venv) -> PPO:
    policy_kwargs = {}
    if args.obs_mode == "symbolic" and args.policy == "cnn":
        # NatureCNN's 8x8 stride-4 kernel does not fit the 13x13 view.
        policy_kwargs["features_extractor_class"] = SymbolicCNN
    return PPO(
        "CnnPolicy" if args.policy == "cnn" else "MlpPolicy",
        venv,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        learning_rate=args.learning_rate,
        gamma=args.gamma,
        gae_lambda=args.gae_lambda,
        ent_coef=args.ent_coef,
        policy_kwargs=policy_kwargs,
        tensorboard_log=args.log_dir or None,
        seed=args.seed,
        device=args.device,
    )


def main(argv: Sequence[str] | None = None) -> tuple[EvalReport, EvalReport]:
    args = parse_args(argv)
    venv = make_vec_env(
        num_envs=args.num_envs,
        seed=args.seed,
        obs_mode=args.obs_mode,
        distribution_mode=args.distribution_mode,
        rand_fraction=args.rand_fraction,
        max_episode_steps=args.max_episode_steps,
        device=args.env_device,
    )
    if args.resume and Path(args.save).exists():
        model = PPO.load(args.save, env=venv, device=args.device)
        print(f"resuming {args.save} at step {model.num_timesteps}")
    else:
        if args.resume:
            print(f"no model at {args.save}: starting afresh")
        model = new_model(args, venv)
    callback = GoalProxyEvalCallback(
        eval_every=args.eval_every,
        episodes=args.eval_episodes,
        device=args.env_device,
        verbose=1,
    )
    started = time.time()
    steps_left = max(0, args.total_steps - model.num_timesteps)
    model.learn(steps_left, callback=callback, reset_num_timesteps=not args.resume)
    seconds = time.time() - started
    print(f"trained {model.num_timesteps} steps in {seconds:.0f} s (evaluations included)")
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        model.save(args.save)
        print(f"model: {args.save}")

    # The evaluation module takes the model as a policy; its env kwargs come from venv.
    policy = SB3Policy(model)
    common = {"episodes": args.episodes, "seed": EVAL_SEED, "device": args.env_device}
    test = evaluate(policy, **common)
    train = evaluate(policy, **common, rand_fraction=args.rand_fraction, end_terminates=False)
    print()
    print(test.table("test levels (every coin moved, the episode ends at the original end)"))
    print()
    print(train.table(f"training configuration (rand_fraction={args.rand_fraction:g})"))
    venv.close()
    return test, train


if __name__ == "__main__":
    main()

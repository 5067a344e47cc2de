"""The environment family, installed as ``coinrun_mg.envs``."""

from .config import CoinRunConfig
from .core import CoinRunCore

__all__ = ["CoinRunConfig", "CoinRunCore"]

"""Policy/value networks for CoinRun observations.

* :class:`ImpalaCNN` -- the IMPALA ResNet of Espeholt et al. (2018) as used by the Procgen
  paper and by Langosco et al. (2022): three stacks of conv + max-pool + two residual
  blocks, channels (16, 32, 32) times ``scale``, then a 256-unit layer.  Made for the
  64x64 RGB observation.
* :class:`CompactCNN` -- two small convolutions and a 256-unit layer for the symbolic
  view (13x13 feature planes).  About 30x cheaper than the IMPALA CNN, which is what makes
  CPU training practical.
* :class:`GridCNN` -- two padded 3x3 convolutions of stride 2 and a 256-unit layer, for
  symbolic grids (Maze's agent-centred view: the first layer reads one maze cell per
  output).
* :class:`SymbolicMLP` -- the symbolic view flattened into two 256-unit layers.  Its
  arithmetic is all dense matrix products, which a CPU runs several times faster than
  small convolutions (``benchmarks/network_speed.py``).  The view is agent-centred, so the
  translation invariance a CNN buys matters little.

Both take observations as the environments produce them, uint8 ``[N, H, W, C]`` (channels
last), and convert them to float ``[N, C, H, W]`` in [0, 1] themselves, so rollout
storage can stay uint8.  :class:`Agent` puts a policy head (15 logits) and a value head
on top of either trunk, with CleanRL's interface (``get_value``,
``get_action_and_value``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from coinrun_mg.envs.coinrun.observation import SYMBOLIC_CHANNEL_NAMES, SYMBOLIC_CHANNELS
from coinrun_mg.envs.maze.observation import SYMBOLIC_CHANNELS as MAZE_SYMBOLIC_CHANNELS

NETWORKS = ("impala", "compact", "mlp", "grid")

# The symbolic view's last channels are constant planes (agent velocity, sub-tile position).
SYMBOLIC_CONSTANT_PLANES = len(SYMBOLIC_CHANNEL_NAMES[SYMBOLIC_CHANNEL_NAMES.index("vx") :])


def layer_init(layer: nn.Module, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights and constant biases (the PPO implementation-details recipe)."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def _to_float_chw(obs: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, H, W, C]`` -> float ``[N, C, H, W]`` in [0, 1]."""
    return obs.permute(0, 3, 1, 2).float().div_(255.0)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = layer_init(nn.Conv2d(channels, channels, 3, padding=1))
        self.conv1 = layer_init(nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class _ConvSequence(nn.Module):
    """conv 3x3 -> max-pool 3x3 stride 2 -> two residual blocks (halves H and W)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = layer_init(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.res0 = _ResidualBlock(out_channels)
        self.res1 = _ResidualBlock(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res1(self.res0(self.pool(self.conv(x))))


class ImpalaCNN(nn.Module):
    """IMPALA CNN trunk: uint8 ``[N, H, W, C]`` -> float ``[N, hidden]``."""

    def __init__(
        self,
        obs_shape: tuple[int, int, int],
        scale: int = 1,
        channels: tuple[int, ...] = (16, 32, 32),
        hidden: int = 256,
    ):
        super().__init__()
        h, w, c = obs_shape
        stacks = []
        for out_channels in channels:
            stacks.append(_ConvSequence(c, out_channels * scale))
            c = out_channels * scale
            h, w = (h + 1) // 2, (w + 1) // 2
        self.stacks = nn.Sequential(*stacks)
        self.fc = layer_init(nn.Linear(c * h * w, hidden))
        self.output_dim = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.stacks(_to_float_chw(obs))
        return torch.relu(self.fc(torch.relu(x.flatten(1))))


class _TwoConvTrunk(nn.Module):
    """Two ReLU convolutions (``conv0``, ``conv1``), then ``fc``: the small symbolic CNNs."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv0(_to_float_chw(obs)))
        x = torch.relu(self.conv1(x))
        return torch.relu(self.fc(x.flatten(1)))


class CompactCNN(_TwoConvTrunk):
    """Small trunk for the symbolic view: conv 3x3, conv 3x3 stride 2, fc ``hidden``."""

    def __init__(
        self,
        obs_shape: tuple[int, int, int],
        channels: tuple[int, int] = (16, 32),
        hidden: int = 256,
    ):
        super().__init__()
        h, w, c = obs_shape
        self.conv0 = layer_init(nn.Conv2d(c, channels[0], 3, padding=1))
        self.conv1 = layer_init(nn.Conv2d(channels[0], channels[1], 3, stride=2))
        h, w = (h - 3) // 2 + 1, (w - 3) // 2 + 1
        self.fc = layer_init(nn.Linear(channels[1] * h * w, hidden))
        self.output_dim = hidden


class GridCNN(_TwoConvTrunk):
    """Small strided trunk for symbolic grids: conv 3x3 stride 2, conv 3x3 stride 2 (both
    padded), fc ``hidden``.  On Maze's agent-centred view the first layer's windows are
    centred on the maze's cells (two grid steps apart, the agent's cell among them), each
    seeing a cell and its four passages.  ``scale`` multiplies the channel counts."""

    def __init__(self, obs_shape: tuple[int, int, int], scale: int = 1, hidden: int = 256):
        super().__init__()
        h, w, c = obs_shape
        channels = (16 * scale, 32 * scale)
        self.conv0 = layer_init(nn.Conv2d(c, channels[0], 3, stride=2, padding=1))
        self.conv1 = layer_init(nn.Conv2d(channels[0], channels[1], 3, stride=2, padding=1))
        for _ in range(2):
            h, w = (h + 1) // 2, (w + 1) // 2
        self.fc = layer_init(nn.Linear(channels[1] * h * w, hidden))
        self.output_dim = hidden


class SymbolicMLP(nn.Module):
    """Trunk for the symbolic views: the planes flattened, then ``hidden`` fully connected
    ReLU layers.

    CoinRun's view: the last ``SYMBOLIC_CONSTANT_PLANES`` channels hold one value repeated
    over the whole plane (the agent's velocity and sub-tile position); a dense layer gains
    nothing from the repeats, so only one cell of each is fed in (this removes 40% of the
    first layer's arithmetic on the 13x13 view).  Maze's view (wall, cheese and agent
    planes, of the whole world or agent-centred) is fed in whole.
    """

    def __init__(self, obs_shape: tuple[int, int, int], hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        h, w, c = obs_shape
        maze_view = c == MAZE_SYMBOLIC_CHANNELS and h == w
        if c != SYMBOLIC_CHANNELS and not maze_view:
            raise ValueError(
                f"the mlp network reads the symbolic view ({SYMBOLIC_CHANNELS} channels, or "
                f"Maze's {MAZE_SYMBOLIC_CHANNELS}); observations of shape "
                f"{tuple(obs_shape)} are not that: use obs_mode='symbolic', or "
                "network='impala' for pixels"
            )
        constant_planes = 0 if maze_view else SYMBOLIC_CONSTANT_PLANES
        self.tile_planes = c - constant_planes
        inputs = h * w * self.tile_planes + constant_planes
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [layer_init(nn.Linear(inputs, width)), nn.ReLU()]
            inputs = width
        self.layers = nn.Sequential(*layers)
        self.output_dim = inputs

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        tiles = obs[..., : self.tile_planes].flatten(1)
        constants = obs[:, 0, 0, self.tile_planes :]
        x = torch.cat([tiles, constants], dim=1).float().div_(255.0)
        return self.layers(x)


class Agent(nn.Module):
    """Actor-critic: a CNN trunk with a policy head (logits) and a value head.

    ``network`` is ``"impala"``, ``"compact"``, ``"mlp"`` or ``"grid"``; ``scale``
    multiplies the IMPALA or the grid CNN's channel counts (the paper also used 4 for
    IMPALA).  The policy head starts with gain 0.01 (near-uniform initial policy), the value
    head with gain 1.
    """

    def __init__(
        self,
        obs_shape: tuple[int, int, int],
        num_actions: int,
        network: str = "impala",
        scale: int = 1,
    ):
        super().__init__()
        if network == "impala":
            self.trunk: nn.Module = ImpalaCNN(tuple(obs_shape), scale=scale)
        elif network == "compact":
            self.trunk = CompactCNN(tuple(obs_shape))
        elif network == "mlp":
            self.trunk = SymbolicMLP(tuple(obs_shape))
        elif network == "grid":
            self.trunk = GridCNN(tuple(obs_shape), scale=scale)
        else:
            raise ValueError(f"network={network!r} is invalid; accepted values are {NETWORKS}")
        self.obs_shape = tuple(obs_shape)
        self.num_actions = num_actions
        self.actor = layer_init(nn.Linear(self.trunk.output_dim, num_actions), gain=0.01)
        self.critic = layer_init(nn.Linear(self.trunk.output_dim, 1), gain=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[N, num_actions]`` and values ``[N]``."""
        hidden = self.trunk(obs)
        return self.actor(hidden), self.critic(hidden).squeeze(-1)

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.trunk(obs)).squeeze(-1)

    def get_action_and_value(
        self,
        obs: torch.Tensor,
        action: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(action, log_prob(action), entropy, value)``; samples ``action`` when None.

        Sampling draws from ``generator`` (the global RNG when None) so a trainer can keep
        its own, checkpointable random stream.
        """
        logits, value = self(obs)
        log_probs = torch.log_softmax(logits, dim=-1)
        if action is None:
            action = sample_actions(logits, generator)
        log_prob = log_probs.gather(1, action.unsqueeze(1)).squeeze(1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return action, log_prob, entropy, value


def sample_actions(
    logits: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    uniforms: torch.Tensor | None = None,
) -> torch.Tensor:
    """One categorical sample per row (Gumbel-max: ``argmax(logits + Gumbel noise)``).

    Unlike ``torch.distributions.Categorical.sample`` it takes an explicit generator, or
    the uniforms themselves (``uniforms``: in (0, 1), the shape of ``logits``; see
    :func:`gumbel_max`), in which case nothing is drawn.
    """
    if uniforms is None:
        uniforms = torch.rand(
            logits.shape, generator=generator, device=logits.device, dtype=logits.dtype
        )
    return gumbel_max(logits, uniforms)


def gumbel_max(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """The categorical sample that ``uniforms`` (in (0, 1), one per logit) pick in each
    row: ``argmax(logits - log(-log(u)))``.  The same uniforms and logits give the same
    action, whatever drew the uniforms."""
    u = torch.as_tensor(uniforms).to(device=logits.device, dtype=logits.dtype)
    return torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)

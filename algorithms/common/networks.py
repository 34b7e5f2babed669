"""Networks shared by every method: MLPs, an ensemble (twin) critic, tanh-Gaussian and
deterministic actors, and soft target updates."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F


@torch.no_grad()
def orthogonal_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """`nn.init.orthogonal_` with its QR decomposition on one thread: MKL's threaded QR rounds
    differently for each thread count, and a job's initial weights must not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return nn.init.orthogonal_(weight, gain)
    finally:
        torch.set_num_threads(threads)


def orthogonal_init(module: nn.Module, gain: float = math.sqrt(2)) -> None:
    """Orthogonal weights, zero biases (as Cal-QL's and CORL's networks)."""
    if isinstance(module, nn.Linear):
        orthogonal_(module.weight, gain)
        nn.init.zeros_(module.bias)


LAYER_NORM_EPS = 1e-6  # flax.linen.LayerNorm's default (the JAX references: RLPD, WSRL)


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights, zero biases (flax's Dense in RLPD's networks), every layer alike."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


INITS = ("orthogonal", "xavier_uniform")  # weight init schemes of `mlp` and `EnsembleCritic`


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, layer_norm: bool = False,
        init: str = "orthogonal") -> nn.Sequential:
    """Linear -> [LayerNorm] -> ReLU per hidden layer, then a linear output layer. `init`:
    "orthogonal" (gain sqrt 2, output layer 1e-2) or "xavier_uniform" (every layer)."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers.append(nn.Linear(d, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h, eps=LAYER_NORM_EPS))
        layers.append(nn.ReLU())
        d = h
    layers.append(nn.Linear(d, out_dim))
    net = nn.Sequential(*layers)
    if init == "xavier_uniform":
        net.apply(xavier_init)
    else:
        net.apply(orthogonal_init)
        orthogonal_init(layers[-1], gain=1e-2)
    return net


@torch.no_grad()
def init_members(weight: torch.Tensor, gain: float, init: str = "orthogonal") -> None:
    """Orthogonal (or Xavier-uniform: `gain` unused) init of each member's (in, out) matrix, like
    n separate nn.Linear layers."""
    for i in range(weight.shape[0]):
        w = torch.empty(weight.shape[2], weight.shape[1])
        weight[i] = (nn.init.xavier_uniform_(w) if init == "xavier_uniform" else orthogonal_(w, gain)).T


class EnsembleLinear(nn.Module):
    """The weights (n, in, out) and biases (n, 1, out) of `n` independent linear layers. It holds
    parameters only: `EnsembleCritic.forward` applies them in batched matmuls, as trainable
    parameters or as constants (actor losses), and TD3+BC's Q_1 reads the first member's."""

    def __init__(self, n: int, in_dim: int, out_dim: int, init: str = "orthogonal"):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, out_dim))
        init_members(self.weight, math.sqrt(2), init)


class _InPlaceReLU(torch.autograd.Function):
    """ReLU in place whose backward masks the incoming gradient in place as well. Only for an
    input whose gradient nobody else reads: a hidden layer of `EnsembleCritic`, whose gradient is
    the fresh output of the next layer's matmul backward. Autograd's own ReLU backward allocates
    a new gradient and reads both from memory, not cache."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.mark_dirty(x)
        ctx.save_for_backward(x.relu_())
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)


relu_ = _InPlaceReLU.apply


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the features of each member, with per-member gain (n, 1, d) and bias."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, dim))


class EnsembleCritic(nn.Module):
    """n Q-networks Q_i(s, a) evaluated together; forward returns (n, B). `layer_norm`: LayerNorm
    between each hidden layer's linear map and its ReLU (RLPD's and WSRL's critics)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], n: int = 2,
                 layer_norm: bool = False, init: str = "orthogonal"):
        super().__init__()
        self.n = n
        dims = (obs_dim + act_dim, *hidden)
        self.hidden = nn.ModuleList(EnsembleLinear(n, i, o, init) for i, o in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(EnsembleLayerNorm(n, o) for o in hidden) if layer_norm else None
        self.out = EnsembleLinear(n, dims[-1], 1, init)
        if init != "xavier_uniform":
            init_members(self.out.weight, 1e-2)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """Q-values (n, B). `frozen`: the parameters are treated as constants (gradients flow to
        the inputs only), for actor losses: no wasted weight gradients, no stray .grad."""
        x = torch.cat([obs, action], dim=-1)
        x = x.unsqueeze(0).expand(self.n, *x.shape) if x.dim() == 2 else x
        for i, layer in enumerate(self.hidden):
            w, b = (layer.weight.detach(), layer.bias.detach()) if frozen else (layer.weight, layer.bias)
            x = torch.bmm(x, w).add_(b)
            if self.norms is not None:
                g, c = (self.norms[i].weight, self.norms[i].bias)
                g, c = (g.detach(), c.detach()) if frozen else (g, c)
                x = torch.addcmul(c, F.layer_norm(x, x.shape[-1:], eps=LAYER_NORM_EPS), g)
            # The in-place backward pays off on big activations (CQL's 16 MB: ~3% of an update);
            # on small ones the Python Function's call costs more than the pass it saves.
            x = relu_(x) if x.numel() >= 1 << 20 else x.relu_()
        w, b = (self.out.weight.detach(), self.out.bias.detach()) if frozen else (self.out.weight, self.out.bias)
        return torch.baddbmm(b, x, w).squeeze(-1)


def sample_members(n: int, size: int, replace: bool, device) -> torch.Tensor:
    """`size` random ensemble indices out of n from torch's RNG on `device` (so a checkpoint's
    RNG state replays the same draws): with replacement as `jax.random.randint` (WSRL), or
    without as `jax.random.choice(replace=False)` (RLPD)."""
    if replace:
        return torch.randint(0, n, (size,), device=device)
    return torch.randperm(n, device=device)[:size]


def subsampled_min(q: torch.Tensor, size: int, replace: bool) -> torch.Tensor:
    """min over `size` random members (dim 0 of `q`, see `sample_members`); `size` = n without
    replacement is the plain min."""
    if not replace and size == q.shape[0]:
        return q.min(0).values
    return q[sample_members(q.shape[0], size, replace, q.device)].min(0).values


class ValueNet(nn.Module):
    """State-value V(s) -> (B,)."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class TanhGaussianActor(nn.Module):
    """pi(a|s) = tanh(N(mu(s), sigma(s))); log-probabilities include the tanh correction.
    `log_std_affine` = (a0, b0): log sigma = a * head + b with learned scalars a, b initialised to
    a0, b0 (Cal-QL's and CORL's policy, (1, -1): a fresh policy has sigma ~ e^-1); None: the raw
    head. Then clamped to [log_std_min, log_std_max]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...],
                 log_std_min: float = -20.0, log_std_max: float = 2.0,
                 log_std_affine: tuple[float, float] | None = None, layer_norm: bool = False,
                 init: str = "orthogonal"):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * act_dim, layer_norm, init)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        scale, offset = (None, None) if log_std_affine is None else (
            nn.Parameter(torch.tensor(float(v))) for v in log_std_affine)
        self.register_parameter("log_std_scale", scale)
        self.register_parameter("log_std_offset", offset)

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        if self.log_std_scale is not None:
            log_std = torch.addcmul(self.log_std_offset, self.log_std_scale, log_std)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max).exp()

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (action, log_prob); log_prob is that of the sampled action."""
        mean, std = self.distribution(obs)
        pre = mean if deterministic else mean + std * torch.randn_like(mean)
        return torch.tanh(pre), gaussian_tanh_log_prob(mean, std, pre)

    def sample(self, obs: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n actions per state from one network pass (the network does not see the noise):
        actions (B * n, A) with rows ordered (B, n), and their log-probs (B * n,)."""
        mean, std = (t.repeat_interleave(n, 0) for t in self.distribution(obs))
        pre = mean + std * torch.randn_like(mean)
        return torch.tanh(pre), gaussian_tanh_log_prob(mean, std, pre)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """log pi(action|obs) for given actions in (-1, 1) (used by AWAC / IQL)."""
        mean, std = self.distribution(obs)
        action = action.clamp(-1 + eps, 1 - eps)
        return gaussian_tanh_log_prob(mean, std, torch.atanh(action))


def gaussian_tanh_log_prob(mean: torch.Tensor, std: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
    normal = -0.5 * ((pre_tanh - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)
    # log |d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), numerically stable
    correction = 2 * (math.log(2) - pre_tanh - F.softplus(-2 * pre_tanh))
    return (normal - correction).sum(-1)


class GaussianActor(nn.Module):
    """pi(a|s) = N(tanh(f(s)), exp(log_std)) with a state-independent log std, sampled actions
    clipped to [-1, 1] (IQL's and AWAC's policies in CORL: log-probabilities of data actions at
    the bounds stay finite, unlike a tanh-squashed Gaussian)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...],
                 log_std_min: float = -20.0, log_std_max: float = 2.0):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def mean_and_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pi(.|obs)'s parameters from one network pass (reusable by `sample_from` and
        `gaussian_log_prob` when a loss needs both)."""
        return torch.tanh(self.net(obs)), self.log_std.clamp(self.log_std_min, self.log_std_max)

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (action in [-1, 1], log_prob of the unclipped sample)."""
        return self.sample_from(*self.mean_and_log_std(obs), deterministic)

    @staticmethod
    def sample_from(mean: torch.Tensor, log_std: torch.Tensor,
                    deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        pre = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        return pre.clamp(-1.0, 1.0), gaussian_log_prob(mean, log_std, pre)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return gaussian_log_prob(*self.mean_and_log_std(obs), action)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density, summed over the last dim."""
    return (-0.5 * ((x - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


class DeterministicActor(nn.Module):
    """a = max_action * tanh(f(s)) (TD3+BC)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


def target_copy(net: nn.Module) -> nn.Module:
    """A frozen copy used as a target network (never receives gradients)."""
    target = copy.deepcopy(net)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source (nothing to do for parameter-free modules)."""
    params = list(target.parameters())
    if params:
        torch._foreach_lerp_(params, list(source.parameters()), tau)

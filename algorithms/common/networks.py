"""Networks shared by every method, each holding K independent copies, one per seed, so that K
seeds of a method train in one process as one batched model: MLPs, an ensemble (twin) critic,
tanh-Gaussian, Gaussian and deterministic actors, soft target updates, and the per-seed random
streams every random draw comes from.

Shapes: parameters (K, ...), inputs (K, B, ...), outputs (K, B, ...); the critic's Q-values
(n, K, B). Layers offer LayerNorm (RLPD's and WSRL's networks) and Xavier-uniform init (RLPD's). Seed k's slice of every output depends on seed k's parameters, inputs and random
stream only. With K = 1 each layer runs the op a plain torch network runs (`nn.Linear`'s, the
ensemble's `bmm`), so one seed computes bit for bit as a plain single-seed implementation.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F


class SeedStreams:
    """The random streams of K seeds. Seed k's initial weights, sampled actions and noise (and, in
    the harness, its batch indices) all come from generator k, in the order a single run draws
    them, so a seed's randomness does not depend on the seeds it trains with."""

    def __init__(self, generators: list[torch.Generator] | None = None):
        """generators: one per seed, on the model's device. None: one seed drawing from torch's
        global generators, as a plain torch program does."""
        self.generators = generators
        # initial weights are drawn on the CPU: a CPU generator continues its stream there; for
        # a CUDA one, a CPU generator seeded alike (torch.manual_seed seeds both the same way)
        self.init_generators = None if generators is None else [
            g if g.device.type == "cpu" else torch.Generator().manual_seed(g.initial_seed()) for g in generators]

    @classmethod
    def from_seeds(cls, seeds: list[int], device: torch.device | str = "cpu") -> "SeedStreams":
        device = torch.device(device)
        return cls([torch.Generator(device).manual_seed(int(s)) for s in seeds])

    def __len__(self) -> int:
        return 1 if self.generators is None else len(self.generators)

    def build(self, make) -> list:
        """`make()` once per seed, the random initial weights of seed k drawn from stream k."""
        if self.init_generators is None:
            return [make()]
        built = []
        for g in self.init_generators:
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(g.get_state())
                built.append(make())
                g.set_state(torch.get_rng_state())
        return built

    def each(self, draw) -> torch.Tensor:
        """draw(k, generator) for every seed k, stacked: (K, ...)."""
        if self.generators is None:
            return draw(0, None).unsqueeze(0)
        if len(self.generators) == 1:
            return draw(0, self.generators[0]).unsqueeze(0)
        return torch.stack([draw(k, g) for k, g in enumerate(self.generators)])

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like x (K, ...), seed k's slice from stream k."""
        return self.each(lambda k, g: torch.randn(x.shape[1:], generator=g, device=x.device, dtype=x.dtype))

    def uniform(self, shape: tuple[int, ...], low: float, high: float, device) -> torch.Tensor:
        """U(low, high) of `shape` per seed: (K, *shape)."""
        return self.each(lambda k, g: torch.empty(shape, device=device).uniform_(low, high, generator=g))

    def randint(self, low: int, high: int, shape: tuple[int, ...], device) -> torch.Tensor:
        """Integers in [low, high) of `shape` per seed: (K, *shape)."""
        return self.each(lambda k, g: torch.randint(low, high, shape, generator=g, device=device))

    def state(self) -> list:
        gens = self.generators or []
        inits = [g for g, d in zip(self.init_generators or [], gens) if g is not d]
        return [g.get_state() for g in gens + inits]

    def load_state(self, states: list) -> None:
        gens = self.generators or []
        inits = [g for g, d in zip(self.init_generators or [], gens) if g is not d]
        for g, s in zip(gens + inits, states, strict=True):
            g.set_state(s)


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


ACTIVATIONS = ("relu", "gelu")  # gelu: tanh-approximated, as flax's nn.gelu (FQL's and QC's networks)


def activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    """The hidden layers' nonlinearity (`ACTIVATIONS`)."""
    return torch.relu(x) if activation == "relu" else F.gelu(x, approximate="tanh")


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, layer_norm: bool = False,
        init: str = "orthogonal", activation: str = "relu", norm_after_activation: bool = False) -> nn.Sequential:
    """One seed's MLP: Linear -> [LayerNorm] -> ReLU per hidden layer, then a linear output layer.
    `init`: "orthogonal" (gain sqrt 2, output layer 1e-2) or "xavier_uniform" (every layer).
    `activation` "gelu" and `norm_after_activation` (Linear -> GELU -> LayerNorm): FQL's flax MLP."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers.append(nn.Linear(d, h))
        act = nn.ReLU() if activation == "relu" else nn.GELU(approximate="tanh")
        norm = [nn.LayerNorm(h, eps=LAYER_NORM_EPS)] if layer_norm else []
        layers.extend([act, *norm] if norm_after_activation else [*norm, act])
        d = h
    layers.append(nn.Linear(d, out_dim))
    net = nn.Sequential(*layers)
    if init == "xavier_uniform":
        net.apply(xavier_init)
    else:
        net.apply(orthogonal_init)
        orthogonal_init(layers[-1], gain=1e-2)
    return net


class SeedLinear(nn.Module):
    """K independent linear layers, weight (K, out, in) and bias (K, out): (K, ..., in) -> (K, ..., out)."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.weight) == 1:  # one seed: nn.Linear's own op
            return F.linear(x[0], self.weight[0], self.bias[0]).unsqueeze(0)
        shape = x.shape
        out = torch.baddbmm(self.bias.unsqueeze(1), x.reshape(shape[0], -1, shape[-1]), self.weight.transpose(1, 2))
        return out.view(*shape[:-1], out.shape[-1])


class SeedLayerNorm(nn.Module):
    """K independent LayerNorms over the last dim, gain and bias (K, d)."""

    def __init__(self, norms: list[nn.LayerNorm]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([n.weight.detach() for n in norms]))
        self.bias = nn.Parameter(torch.stack([n.bias.detach() for n in norms]))
        self.eps = norms[0].eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1]
        if len(self.weight) == 1:  # one seed: nn.LayerNorm's own op
            return F.layer_norm(x[0], (d,), self.weight[0], self.bias[0], self.eps).unsqueeze(0)
        shape = (len(self.weight), *[1] * (x.dim() - 2), d)
        return torch.addcmul(self.bias.view(shape), F.layer_norm(x, (d,), eps=self.eps), self.weight.view(shape))


class SeedMLP(nn.Module):
    """K independent `mlp`s, one per seed, each initialized from its seed's stream."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int, rng: SeedStreams | None = None,
                 layer_norm: bool = False, init: str = "orthogonal", activation: str = "relu",
                 norm_after_activation: bool = False):
        super().__init__()
        self.activation, self.norm_after_activation = activation, norm_after_activation
        nets = (rng or SeedStreams()).build(lambda: mlp(in_dim, hidden, out_dim, layer_norm, init))
        self.layers = nn.ModuleList(SeedLinear([net[i] for net in nets])
                                    for i, m in enumerate(nets[0]) if isinstance(m, nn.Linear))
        self.norms = nn.ModuleList(SeedLayerNorm([net[i] for net in nets])
                                   for i, m in enumerate(nets[0]) if isinstance(m, nn.LayerNorm)) if layer_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers[:-1]):
            x = layer(x)
            if self.norms is not None and not self.norm_after_activation:
                x = self.norms[i](x)
            x = activate(x, self.activation)
            if self.norms is not None and self.norm_after_activation:
                x = self.norms[i](x)
        return self.layers[-1](x)


@torch.no_grad()
def init_members(weight: torch.Tensor, gain: float, init: str = "orthogonal") -> torch.Tensor:
    """Orthogonal (or Xavier-uniform: `gain` unused) init of each member's (in, out) matrix, like
    n separate nn.Linear layers."""
    for i in range(weight.shape[0]):
        w = torch.empty(weight.shape[2], weight.shape[1])
        weight[i] = (nn.init.xavier_uniform_(w) if init == "xavier_uniform" else orthogonal_(w, gain)).T
    return weight


def ensemble_weights(n: int, dims: tuple[int, ...], init: str = "orthogonal") -> list[torch.Tensor]:
    """One seed's n critics: a weight (n, in, out) per layer; orthogonal with the output layer's
    gain 1e-2, or Xavier-uniform for every layer."""
    weights = [init_members(torch.empty(n, i, o), math.sqrt(2), init) for i, o in zip(dims[:-1], dims[1:])]
    if init != "xavier_uniform":
        init_members(weights[-1], 1e-2)
    return weights


class MemberParams(nn.Module):
    """A weight and a bias per member and seed, (K, n, ...): parameters only, applied by
    `EnsembleCritic.forward` in batched ops."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def flat(self, members: int | torch.Tensor, frozen: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Members of every seed as one batch of K * m: the first m = `members`, or each seed's own
        (`members`: indices (K, m), repeats allowed; their gradients add up)."""
        if isinstance(members, torch.Tensor):
            rows = torch.arange(self.weight.shape[0], device=members.device)[:, None]
            w, b = self.weight[rows, members], self.bias[rows, members]
        else:
            w, b = self.weight[:, :members], self.bias[:, :members]
        if frozen:
            w, b = w.detach(), b.detach()
        return w.reshape(-1, *w.shape[2:]), b.reshape(-1, *b.shape[2:])


class EnsembleLinear(MemberParams):
    """n independent linear layers per seed: weights (K, n, in, out), biases (K, n, 1, out)."""

    def __init__(self, weights: list[torch.Tensor]):
        weight = torch.stack(weights)
        super().__init__(weight, torch.zeros(*weight.shape[:2], 1, weight.shape[-1]))


class EnsembleLayerNorm(MemberParams):
    """LayerNorm over the features of each member, gain (K, n, 1, d) and bias."""

    def __init__(self, K: int, n: int, dim: int):
        super().__init__(torch.ones(K, n, 1, dim), torch.zeros(K, n, 1, dim))


class EnsembleCritic(nn.Module):
    """n Q-networks Q_i(s, a) per seed, all evaluated in batched matmuls: (K, B, .) -> (n, K, B).
    `layer_norm`: LayerNorm between each hidden layer's linear map and its ReLU (RLPD's and
    WSRL's critics), or after the nonlinearity with `norm_after_activation` (FQL's: GELU then LayerNorm)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], n: int = 2,
                 rng: SeedStreams | None = None, layer_norm: bool = False, init: str = "orthogonal",
                 activation: str = "relu", norm_after_activation: bool = False):
        super().__init__()
        self.n = n
        self.activation, self.norm_after_activation = activation, norm_after_activation
        dims = (obs_dim + act_dim, *hidden, 1)
        per_seed = (rng or SeedStreams()).build(lambda: ensemble_weights(n, dims, init))
        layers = [EnsembleLinear([seed[i] for seed in per_seed]) for i in range(len(dims) - 1)]
        self.hidden, self.out = nn.ModuleList(layers[:-1]), layers[-1]
        K = len(per_seed)
        self.norms = nn.ModuleList(EnsembleLayerNorm(K, n, h) for h in hidden) if layer_norm else None

    def forward(self, obs: torch.Tensor, action: torch.Tensor, frozen: bool = False,
                members: int | torch.Tensor | None = None) -> torch.Tensor:
        """Q-values (m, K, B) of the first m = `members` critics (default: all n), or of each seed's
        members `members` (indices (K, m), e.g. from `sample_members`): only those are computed.
        `frozen`: the parameters are treated as constants (gradients flow to the inputs only), for
        actor losses: no wasted weight gradients, no stray .grad."""
        if isinstance(members, torch.Tensor):
            m = members.shape[1]
        else:
            m = members = self.n if members is None else members
        x = torch.cat([obs, action], dim=-1)
        K, B = x.shape[0], x.shape[1]
        x = x.unsqueeze(1).expand(K, m, B, x.shape[-1]).reshape(K * m, B, x.shape[-1])
        for i, layer in enumerate(self.hidden):
            w, b = layer.flat(members, frozen)
            x = torch.bmm(x, w).add_(b)
            if self.activation != "relu" or self.norm_after_activation:
                x = self.norm_after(x, i, members, frozen)
                continue
            if self.norms is not None:
                g, c = self.norms[i].flat(members, frozen)
                x = torch.addcmul(c, F.layer_norm(x, x.shape[-1:], eps=LAYER_NORM_EPS), g)
            x = x.relu_()
        w, b = self.out.flat(members, frozen)
        return torch.baddbmm(b, x, w).view(K, m, B).transpose(0, 1)

    def norm_after(self, x: torch.Tensor, i: int, members, frozen: bool) -> torch.Tensor:
        """Hidden layer i's nonlinearity, then its LayerNorm if any (`norm_after_activation`;
        LayerNorm first otherwise)."""
        norm = self.norms[i].flat(members, frozen) if self.norms is not None else None
        if norm is not None and not self.norm_after_activation:
            x = torch.addcmul(norm[1], F.layer_norm(x, x.shape[-1:], eps=LAYER_NORM_EPS), norm[0])
        x = activate(x, self.activation)
        if norm is not None and self.norm_after_activation:
            x = torch.addcmul(norm[1], F.layer_norm(x, x.shape[-1:], eps=LAYER_NORM_EPS), norm[0])
        return x


def sample_members(n: int, size: int, replace: bool, rng: SeedStreams, device) -> torch.Tensor | None:
    """`size` random ensemble indices out of n per seed, (K, size), seed k's from its stream:
    with replacement as `jax.random.randint` (WSRL), or without as
    `jax.random.choice(replace=False)` (RLPD); None (every member, no draw) for all n without
    replacement. The result goes to `EnsembleCritic(..., members=)` or `members_of`."""
    if not replace and size == n:
        return None
    if replace:
        return rng.randint(0, n, (size,), device)
    return rng.each(lambda k, g: torch.randperm(n, generator=g, device=device)[:size])


def members_of(q: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Each seed's members idx[k] of q (n, K, ...): (size, K, ...)."""
    return q.movedim(0, 1)[torch.arange(q.shape[1], device=q.device)[:, None], idx].movedim(1, 0)


class ValueNet(nn.Module):
    """State-value V(s) -> (K, B)."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...], rng: SeedStreams | None = None):
        super().__init__()
        self.net = SeedMLP(obs_dim, hidden, 1, rng)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class TanhGaussianActor(nn.Module):
    """pi(a|s) = tanh(N(mu(s), sigma(s))); log-probabilities include the tanh correction.
    `log_std_affine` = (a0, b0): log sigma = a * head + b with learned scalars a, b (one each per
    seed) initialised to a0, b0 (Cal-QL's and CORL's policy, (1, -1): a fresh policy has
    sigma ~ e^-1); None: the raw head. Then clamped to [log_std_min, log_std_max]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], rng: SeedStreams | None = None,
                 log_std_min: float = -20.0, log_std_max: float = 2.0,
                 log_std_affine: tuple[float, float] | None = None, layer_norm: bool = False,
                 init: str = "orthogonal"):
        super().__init__()
        self.net = SeedMLP(obs_dim, hidden, 2 * act_dim, rng, layer_norm, init)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        K = len(rng or SeedStreams())
        scale, offset = (None, None) if log_std_affine is None else (
            nn.Parameter(torch.full((K, 1, 1), float(v))) for v in log_std_affine)  # broadcast over (K, B, A)
        self.register_parameter("log_std_scale", scale)
        self.register_parameter("log_std_offset", offset)

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        if self.log_std_scale is not None:
            log_std = torch.addcmul(self.log_std_offset, self.log_std_scale, log_std)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max).exp()

    def forward(self, obs: torch.Tensor, rng: SeedStreams | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, log_prob): a ~ pi(.|s) drawn from the seeds' streams `rng`, or without `rng`
        the deterministic action tanh(mu(s)); log_prob is that of the returned action."""
        mean, std = self.distribution(obs)
        pre = mean if rng is None else mean + std * rng.randn_like(mean)
        return torch.tanh(pre), gaussian_tanh_log_prob(mean, std, pre)

    def sample(self, obs: torch.Tensor, n: int, rng: SeedStreams) -> tuple[torch.Tensor, torch.Tensor]:
        """n actions per state from one network pass (the network does not see the noise):
        actions (K, B * n, A) with rows ordered (B, n), and their log-probs (K, B * n)."""
        mean, std = (t.repeat_interleave(n, -2) for t in self.distribution(obs))
        pre = mean + std * rng.randn_like(mean)
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

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], rng: SeedStreams | None = None,
                 log_std_min: float = -20.0, log_std_max: float = 2.0):
        super().__init__()
        self.net = SeedMLP(obs_dim, hidden, act_dim, rng)
        self.log_std = nn.Parameter(torch.zeros(len(rng or SeedStreams()), act_dim))  # one per seed
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def mean_and_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pi(.|obs)'s parameters from one network pass (reusable by `sample_from` and
        `gaussian_log_prob` when a loss needs both); log std (K, 1, A)."""
        return torch.tanh(self.net(obs)), self.log_std.clamp(self.log_std_min, self.log_std_max).unsqueeze(1)

    def forward(self, obs: torch.Tensor, rng: SeedStreams | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(action in [-1, 1], log_prob of the unclipped sample); the mean action without `rng`."""
        return self.sample_from(*self.mean_and_log_std(obs), rng)

    @staticmethod
    def sample_from(mean: torch.Tensor, log_std: torch.Tensor,
                    rng: SeedStreams | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        pre = mean if rng is None else mean + log_std.exp() * rng.randn_like(mean)
        return pre.clamp(-1.0, 1.0), gaussian_log_prob(mean, log_std, pre)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return gaussian_log_prob(*self.mean_and_log_std(obs), action)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density, summed over the last dim."""
    return (-0.5 * ((x - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


class DeterministicActor(nn.Module):
    """a = max_action * tanh(f(s)) (TD3+BC)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], rng: SeedStreams | None = None):
        super().__init__()
        self.net = SeedMLP(obs_dim, hidden, act_dim, rng)

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

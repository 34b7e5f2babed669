"""FQL (Park, Li and Levine, "Flow Q-Learning", ICML 2025) and the two methods of action-chunked
Q-learning built on it (Li, Zhou and Levine, "Reinforcement Learning with Action Chunking",
NeurIPS 2025): QC (best-of-N chunks from the flow policy, ranked by Q) and QC-FQL (FQL's one-step
policy on chunks).

Checked against the official code: seohongpark/fql @ 719d044 `agents/fql.py`, `utils/networks.py`,
`main.py`, `README.md` (per-task alpha: the paper's exact flags), and ColinQiyangLi/qc @ 48283b4
`agents/acfql.py`, `main.py`, `utils/datasets.py` (`sample_sequence`), `README.md`. Per call, on one
batch of chunks of h = `chunk` actions (h = 1: FQL itself; a = a_t..a_{t+h-1} flattened), one
Adam step on the sum of the two losses, then the target update:
  critic:  a' = pi(s') (clipped),  y = R + gamma^h (1 - d) agg_i Q_target_i(s', a')   (agg: q_agg)
           L_Q = mean_{i, batch} [valid_{h-1} (Q_i(s, a) - y)^2]      (valid = 1 with h = 1)
  flow BC: x_0 ~ N(0, I), t ~ U(0, 1), x_t = (1 - t) x_0 + t a,
           L_flow = mean [valid_step (v(s, x_t, t) - (a - x_0))^2]   (masked per chunk step)
  actor (actor_type "distill-ddpg": FQL, QC-FQL), z ~ N(0, I):
           L_distill = mean (mu(s, z) - flow(s, z))^2,  flow(s, z) = `flow_steps` Euler steps of v
           from z (clipped, no gradient);  L_q = -lam mean_i Q_i(s, clip(mu(s, z))) with lam = 1 /
           mean|Q| (no gradient) if `normalize_q_loss`, else 1;  L_pi = L_flow + alpha L_distill + L_q
  actor (actor_type "best-of-n": QC): L_pi = L_flow; acting draws N chunks from the flow and takes
           the one of highest agg_i Q_i (the critic's a' too).
  target:  theta' <- (1 - tau) theta' + tau theta.
Networks as the official flax ones: MLPs with GELU (tanh approximation), LayerNorm after the
nonlinearity (critics: on; actors: `actor_layer_norm`), Xavier-uniform weights (flax's
variance_scaling(1, fan_avg, uniform)) and zero biases on every layer, including the output.
Online, the official scripts keep training on one buffer, the offline data plus every new
transition (replay mode "append", UTD 1); QC starts updating after 5,000 env steps of the
pre-trained policy (protocol.warmup_steps), FQL at once.

Deviations from the official code:
- Evaluation (`deterministic=True`) acts with fixed noise: z = 0 for the one-step policy, a fixed
  set of N noises (drawn once from seed 0) for best-of-N, so that an evaluation is a function of
  the weights; the official `evaluate` draws fresh noise (its `temperature` is ignored).
  Online exploration draws fresh noise, as the official scripts.
- The official `mse` metric (an extra policy sample per update, logging only) is not computed.
- Online transitions enter replay when their episode ends (the harness's replay); the official
  buffer inserts each step at once.
- K seeds train as one batched model (`algorithms.common.networks`), each drawing from its own stream.
- Vector observations only (FQL's pixel runs use an IMPALA encoder, not offered here).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.base import (Algorithm, Batch, check_non_negative, check_positive, check_unit_interval, minimize,
                             register)
from algorithms.common.networks import EnsembleCritic, SeedMLP, soft_update

ACTOR_TYPES = ("distill-ddpg", "best-of-n")
NETWORK = {"init": "xavier_uniform", "activation": "gelu", "norm_after_activation": True}  # FQL's flax MLP


@dataclass
class FQLConfig:
    actor_hidden: tuple[int, ...] = (512, 512, 512, 512)  # both flow networks' MLP widths
    critic_hidden: tuple[int, ...] = (512, 512, 512, 512)  # each Q-network's MLP widths
    n_critics: int = 2  # Q ensemble size (acfql.py num_qs)
    critic_layer_norm: bool = True  # LayerNorm in the critics' hidden layers (official layer_norm)
    actor_layer_norm: bool = False  # LayerNorm in the flow networks' hidden layers
    gamma: float = 0.99  # discount (per env step; chunks bootstrap with gamma^chunk)
    tau: float = 0.005  # soft target update rate
    lr: float = 3e-4  # Adam learning rate of every network (one optimizer, as the official)
    alpha: float = 10.0  # distillation coefficient (BC strength), tuned per task (distill-ddpg only)
    flow_steps: int = 10  # Euler steps of the flow policy
    q_agg: str = "mean"  # reduction of the target ensemble (and of best-of-N's ranking): mean | min
    normalize_q_loss: bool = False  # scale L_q by 1 / mean|Q| (official option; off in the paper's runs)
    actor_type: str = "distill-ddpg"  # distill-ddpg: one-step policy (FQL, QC-FQL) | best-of-n (QC)
    n_samples: int = 32  # N: chunks drawn per state by best-of-n (acfql.py actor_num_samples)
    chunk: int = 1  # h: actions per policy call, executed open-loop (QC's horizon_length)

    def __post_init__(self):
        check_positive(self, "n_critics", "tau", "lr", "flow_steps", "n_samples", "chunk")
        check_non_negative(self, "alpha")
        check_unit_interval(self, "gamma")
        if self.q_agg not in ("mean", "min"):
            raise ValueError(f"{type(self).__qualname__}.q_agg must be 'mean' or 'min', got '{self.q_agg}'")
        if self.actor_type not in ACTOR_TYPES:
            raise ValueError(f"{type(self).__qualname__}.actor_type must be one of {', '.join(ACTOR_TYPES)}, "
                             f"got '{self.actor_type}'")


@register("fql")
class FQL(Algorithm):
    Config = FQLConfig
    multi_seed = True
    takes_images = False  # the official pixel encoder (impala) is not ported

    def __init__(self, obs_spec, action_spec, config: FQLConfig, device, rng=None):
        super().__init__(obs_spec, action_spec, config, device, rng)
        rng, cfg = self.rng, config
        obs_dim, self.act_dim = obs_spec.shape[0], action_spec.dim * cfg.chunk  # the flattened chunk
        self.actor_bc_flow = self.network(SeedMLP(obs_dim + self.act_dim + 1, cfg.actor_hidden, self.act_dim, rng,
                                                  cfg.actor_layer_norm, **NETWORK))  # velocity v(s, x_t, t)
        self.actor_onestep_flow = self.network(SeedMLP(obs_dim + self.act_dim, cfg.actor_hidden, self.act_dim, rng,
                                                       cfg.actor_layer_norm, **NETWORK)) \
            if cfg.actor_type == "distill-ddpg" else None  # mu(s, z); QC never trains one
        self.critic, self.critic_target = self.with_target(
            EnsembleCritic(obs_dim, self.act_dim, cfg.critic_hidden, cfg.n_critics, rng, cfg.critic_layer_norm,
                           **NETWORK))
        self.opt = self.adam(cfg.lr, *(net for net in (self.actor_bc_flow, self.actor_onestep_flow, self.critic)
                                       if net is not None), fused=True)

    @property
    def actor(self) -> torch.nn.Module:
        """The network the policy acts through: the one-step policy, or the flow for best-of-N."""
        return self.actor_onestep_flow if self.actor_onestep_flow is not None else self.actor_bc_flow

    # -- the policy --------------------------------------------------------------------------
    def flow_actions(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The BC flow's action from noise z: `flow_steps` Euler steps of v from t = 0, clipped."""
        x, n = noise, self.config.flow_steps
        for i in range(n):
            t = torch.full((*x.shape[:-1], 1), i / n, device=x.device, dtype=x.dtype)
            x = x + self.actor_bc_flow(torch.cat([obs, x, t], -1)) / n
        return x.clamp(-1.0, 1.0)

    def aggregate(self, q: torch.Tensor) -> torch.Tensor:
        """The ensemble's mean or min (q_agg): (n, K, B) -> (K, B)."""
        return q.mean(0) if self.config.q_agg == "mean" else q.min(0).values

    def fixed_noise(self, shape: tuple[int, ...], device) -> torch.Tensor:
        """The evaluation's noise: one fixed draw (seed 0) of `shape`, the same on every call."""
        return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)

    def sample_actions(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """a ~ pi(s), (K, B, h*A) in [-1, 1]: mu(s, z) clipped, or the best of N flow samples by Q."""
        K, B = obs.shape[:2]
        if self.config.actor_type == "distill-ddpg":
            shape = (K, B, self.act_dim)
            z = torch.zeros(shape, device=obs.device) if deterministic else self.rng.randn_like(obs.new_empty(shape))
            return self.actor_onestep_flow(torch.cat([obs, z], -1)).clamp(-1.0, 1.0)
        N = self.config.n_samples
        obs_n = obs.repeat_interleave(N, dim=-2)  # rows ordered (B, N)
        if deterministic:
            z = self.fixed_noise((N, self.act_dim), obs.device).repeat(K, B, 1)
        else:
            z = self.rng.randn_like(obs.new_empty(K, B * N, self.act_dim))
        candidates = self.flow_actions(obs_n, z)
        q = self.aggregate(self.critic(obs_n, candidates, frozen=True)).view(K, B, N)
        best = q.argmax(-1)[..., None, None].expand(K, B, 1, self.act_dim)
        return candidates.view(K, B, N, self.act_dim).gather(2, best).squeeze(2)

    @torch.no_grad()
    def policy(self, obs, deterministic):
        return self.sample_actions(obs, deterministic)

    @torch.no_grad()
    def policy_value(self, obs):
        """agg_i Q_i(s, pi(s)) of the evaluation action: the mean as the one-step actor reads it,
        q_agg as best-of-N ranks by it."""
        q = self.critic(obs, self.sample_actions(obs, deterministic=True))
        return q.mean(0) if self.config.actor_type == "distill-ddpg" else self.aggregate(q)

    # -- the loss terms, each a function of tensors (one value per seed: (K,)) --------------
    def td_target(self, reward, done, next_q) -> torch.Tensor:
        """R + gamma^h (1 - d) agg Q_target(s', a'); next_q: (K, B) already aggregated."""
        return reward + self.config.gamma ** self.chunk * (1.0 - done) * next_q

    @staticmethod
    def critic_loss(q: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """mean over members and batch of valid_{h-1} (Q_i(s, a) - y)^2; q: (n, K, B)."""
        error = (q - target).square()
        if valid is not None:
            error = error * valid[..., -1]  # a chunk cut by an episode end teaches no Q-value
        return error.mean((0, 2))

    def bc_flow_loss(self, obs, action, valid, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Flow matching to the data's chunk: mean of (v(s, x_t, t) - (a - x_0))^2 over batch,
        chunk steps and action dims, the steps after an episode end inside the chunk masked."""
        x_t = (1 - t) * x0 + t * action
        error = (self.actor_bc_flow(torch.cat([obs, x_t, t], -1)) - (action - x0)).square()
        if valid is not None:
            error = (error.unflatten(-1, (self.chunk, -1)) * valid[..., None]).flatten(-2)
        return error.mean((1, 2))

    def onestep_losses(self, obs: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The one-step policy's terms for noise z: (L_distill = mean (mu(s, z) - flow(s, z))^2 with
        the flow's action a constant, L_q at clip(mu(s, z)) under the critics' mean (their weights
        constant), mean Q for logging)."""
        with torch.no_grad():
            target_actions = self.flow_actions(obs, z)
        actor_actions = self.actor_onestep_flow(torch.cat([obs, z], -1))
        distill_loss = (actor_actions - target_actions).square().mean((1, 2))
        q = self.critic(obs, actor_actions.clamp(-1.0, 1.0), frozen=True).mean(0)
        return distill_loss, self.q_loss(q), q.detach().mean(-1)

    def q_loss(self, q_pi: torch.Tensor) -> torch.Tensor:
        """-mean Q(s, mu(s, z)) (ensemble mean), times 1 / mean|Q| (no gradient) if normalize_q_loss."""
        loss = -q_pi.mean(-1)
        if self.config.normalize_q_loss:
            loss = loss / q_pi.detach().abs().mean(-1)
        return loss

    # -- one call ----------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, action, valid = batch.obs, batch.action, batch.valid
        if self.chunk > 1 and valid is None:
            raise ValueError(f"algorithm '{self.name}' with chunk {self.chunk} needs batches of chunks (Batch.valid)")

        # Critic: a' from the current policy, the target critics' aggregate, gamma^h.
        with torch.no_grad():
            next_q = self.aggregate(self.critic_target(batch.next_obs, self.sample_actions(batch.next_obs)))
            target = self.td_target(batch.reward, batch.done, next_q)
        q = self.critic(obs, action)
        critic_loss = self.critic_loss(q, target, valid)

        # Actor: flow matching, then (one-step policy) distillation and the Q term.
        K, B = action.shape[:2]
        bc_flow_loss = self.bc_flow_loss(obs, action, valid, self.rng.randn_like(action),
                                         self.rng.uniform((B, 1), 0.0, 1.0, action.device))
        distill_loss = q_loss = q_pi = torch.zeros(K, device=action.device)
        if cfg.actor_type == "distill-ddpg":
            distill_loss, q_loss, q_pi = self.onestep_losses(obs, self.rng.randn_like(action))
        actor_loss = bc_flow_loss + cfg.alpha * distill_loss + q_loss

        minimize(self.opt, critic_loss + actor_loss)  # one step on the sum, as the official update
        soft_update(self.critic_target, self.critic, cfg.tau)
        return {"critic_loss": critic_loss.detach(), "q_data": q.detach().mean((0, 2)), "td_target": target.mean(-1),
                "actor_loss": actor_loss.detach(), "bc_flow_loss": bc_flow_loss.detach(),
                "distill_loss": distill_loss.detach(), "q_loss": q_loss.detach(), "q_pi": q_pi}


@dataclass
class QCConfig(FQLConfig):
    actor_type: str = "best-of-n"  # README: --agent.actor_type=best-of-n --agent.actor_num_samples=32
    chunk: int = 5  # README / main.py: --horizon_length=5


@register("qc")
class QC(FQL):
    """QC: FQL's critic and flow policy on chunks of 5, acting by the best of N = 32 flow chunks
    under Q (acfql.py actor_type "best-of-n"); no one-step policy."""

    Config = QCConfig


@dataclass
class QCFQLConfig(FQLConfig):
    alpha: float = 100.0  # README: --agent.alpha=100 (acfql.py get_config's default)
    chunk: int = 5  # README / main.py: --horizon_length=5


@register("qcfql")
class QCFQL(FQL):
    """QC-FQL: FQL's one-step policy on chunks of 5 (acfql.py actor_type "distill-ddpg")."""

    Config = QCFQLConfig


__all__ = ["FQL", "FQLConfig", "QC", "QCConfig", "QCFQL", "QCFQLConfig"]

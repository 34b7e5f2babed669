"""RLPD (Ball, Smith, Kostrikov and Levine, "Efficient Online Reinforcement Learning with Offline
Data", ICML 2023): SAC from scratch on symmetric 50/50 offline/online batches, with LayerNorm
critics in a large ensemble, a target that takes the min over a random subset of it, and a high
update-to-data ratio. No pre-training: the yaml sets `protocol.offline_steps: 0`, the UTD ratio
(`protocol.utd`) and the uniform-action warm-up (`protocol.warmup_steps`, the official
`start_training`); the 50/50 batches are replay mode "mix" with ratio 0.5.

Checked against the official code (ikostrikov/rlpd: `rlpd/agents/sac/sac_learner.py`,
`configs/rlpd_config.py`, `train_finetuning.py`). Per call, on one batch (E = n_critics):
  1. critic: a' ~ pi(s'), Z = `n_target_min` members of the E target critics drawn without
             replacement,  y = r + gamma (1 - d) [agg_{i in Z} Q_target_i(s', a') - alpha log pi(a'|s') if
             backup_entropy], agg = `q_agg` (min);  L_Q = mean_i E[(Q_i(s, a) - y)^2];
             targets <- soft update (tau)
  2. every `actor_every` calls (the official learner: once after its UTD critic steps, on the last
     minibatch; so `actor_every` defaults to protocol.utd), with a ~ pi(s):
             L_pi = E[alpha log pi(a|s) - mean_i Q_i(s, a)]        (mean over all E critics)
             L_alpha = alpha (H - H_target),  H = -E[log pi(a|s)] of that actor step
             (the official parameterization: alpha = exp(log_alpha), the loss on alpha itself)
Weights are Xavier-uniform, biases zero, as the official flax networks (`init`).

The target's aggregate `q_agg`: "min" (default) is the official `update_critic` (the min over a
random subset of num_min_qs = 2 of num_qs = 10 target critics, REDQ's rule). "mean" is the RLPD
baseline of QC (ColinQiyangLi/qc `agents/acrlpd.py`, `critic_loss`, q_agg='mean', run by its README
as `main_online.py --horizon_length=1`): the mean of all num_qs = 10 target critics, i.e. q_agg
"mean" with n_target_min = n_critics; acrlpd also backs up no entropy (backup_entropy false) and its
actor reads the mean of the 10 critics, as here. Where QC differs beyond these values: its actor
and critic take one joint gradient step from the same critic (here the actor reads the critic just
updated, as the official learner).

Deviations from the official code:
- Online transitions enter replay when their episode ends (the harness's replay, which gives
  each transition its Monte-Carlo return); the official buffer inserts each step at once.
- Metrics of the actor step are those of the latest actor update (every call logs the same keys).
- K seeds train as one batched model (`algorithms.common.networks`: every tensor has a leading
  seed dim, each seed draws its target members from its own stream, temperatures one per seed).
- Image observations go through `algorithms.common.encoder` (shared encoder trained by the
  critic loss, as DrQ; identity for vector observations); the official pixel learner is DrQ's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from algorithms.base import Algorithm, Batch, check_follower, check_positive, check_unit_interval, per_seed, register
from algorithms.common import sac
from algorithms.common.encoder import EncoderConfig, encode_batch
from algorithms.common.networks import INITS, EnsembleCritic, TanhGaussianActor, sample_members


@dataclass
class RLPDConfig(EncoderConfig):
    actor_hidden: tuple[int, ...] = (256, 256)  # policy MLP widths
    critic_hidden: tuple[int, ...] = (256, 256)  # each Q-network's MLP widths
    n_critics: int = 10  # ensemble size E
    n_target_min: int = 2  # members drawn (without replacement) for the target's aggregate (REDQ's M)
    # the target's aggregate over the drawn members: "min" (ikostrikov/rlpd sac_learner.py) | "mean"
    # (ColinQiyangLi/qc agents/acrlpd.py q_agg, over all 10 members: n_target_min = n_critics)
    q_agg: str = field(default="min", metadata={"id_neutral": True})
    critic_layer_norm: bool = True  # LayerNorm in the critics' hidden layers
    init: str = "xavier_uniform"  # weight init (flax's default in the official code) | "orthogonal" (the other methods')
    gamma: float = 0.99  # discount
    tau: float = 5e-3  # soft target update rate, every critic step
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temp_lr: float = 3e-4  # temperature learning rate
    init_temperature: float = 1.0
    target_entropy: float | None = None  # None: -|A| / 2
    backup_entropy: bool = True  # subtract alpha log pi(a'|s') in the TD target
    # critic steps per actor and temperature step; null: the job's protocol.utd (once per env step,
    # as the official learner), filled in by the harness so the UTD ratio has one home
    actor_every: int | None = field(default=None, metadata={"protocol": "utd"})

    def __post_init__(self):
        check_positive(self, "n_critics", "n_target_min", "tau", "actor_lr", "critic_lr", "temp_lr",
                       "init_temperature")
        check_follower(self, "actor_every")
        check_unit_interval(self, "gamma")
        if self.q_agg not in ("min", "mean"):
            raise ValueError(f"RLPDConfig.q_agg must be 'min' or 'mean', got '{self.q_agg}'")
        if self.init not in INITS:
            raise ValueError(f"RLPDConfig.init must be one of {', '.join(INITS)}, got '{self.init}'")
        if self.n_target_min > self.n_critics:
            raise ValueError(f"RLPDConfig.n_target_min ({self.n_target_min}) must be <= n_critics ({self.n_critics})")


@register("rlpd")
class RLPD(Algorithm):
    Config = RLPDConfig
    multi_seed = True
    unseeded = frozenset({"updates"})  # step counters, every seed's

    def __init__(self, obs_spec, action_spec, config: RLPDConfig, device, rng=None):
        super().__init__(obs_spec, action_spec, config, device, rng)
        rng, K = self.rng, self.n_seeds  # one stream per seed: initial weights, sampled actions and members
        obs_dim, act_dim = self.build_encoder(), action_spec.dim
        self.actor = self.network(TanhGaussianActor(obs_dim, act_dim, config.actor_hidden, rng, init=config.init))
        self.critic, self.critic_target = self.with_target(
            EnsembleCritic(obs_dim, act_dim, config.critic_hidden, config.n_critics, rng,
                           layer_norm=config.critic_layer_norm, init=config.init))
        self.log_alpha = self.learned_scalar(math.log(config.init_temperature))
        self.actor_opt = self.adam(config.actor_lr, self.actor, fused=True)
        self.critic_opt = self.critic_adam(config.critic_lr, self.critic)
        self.alpha_opt = self.adam(config.temp_lr, self.log_alpha)
        self.target_entropy = -act_dim / 2 if config.target_entropy is None else config.target_entropy
        self.updates = torch.zeros((), dtype=torch.long)  # on the host: read every call
        self.last_actor = {k: torch.zeros(K, device=self.device)
                           for k in ("actor_loss", "entropy", "alpha", "alpha_loss", "q_pi")}

    def policy(self, obs, deterministic):
        return self.actor(self.encoder(obs), None if deterministic else self.rng)[0]

    @torch.no_grad()
    def policy_value(self, obs):
        """The ensemble's mean, as the actor objective reads it."""
        features = self.encoder(obs)
        return self.critic(features, self.actor(features)[0]).mean(0)

    # -- the loss terms, each a function of tensors (one value per seed: (K,)) --------------
    def target_values(self, next_obs, next_action) -> torch.Tensor:
        """Q_target(s', a') of n_target_min members drawn without replacement, the only ones the
        target's aggregate reads: (n_target_min, K, B)."""
        members = sample_members(self.config.n_critics, self.config.n_target_min, False, self.rng, next_obs.device)
        return self.critic_target(next_obs, next_action, members=members)

    def td_target(self, reward, done, q_next, next_logp, alpha) -> torch.Tensor:
        """r + gamma (1 - d) (agg_{i in Z} Q_target_i(s', a') [- alpha log pi(a'|s')]), agg = q_agg
        (min or mean); q_next: (|Z|, K, B) of the drawn members Z (`target_values`), next_logp:
        (K, B), alpha: (K,)."""
        cfg = self.config
        target_q = q_next.min(0).values if cfg.q_agg == "min" else q_next.mean(0)
        if cfg.backup_entropy:
            target_q = target_q - per_seed(alpha) * next_logp
        return reward + cfg.gamma * (1.0 - done) * target_q

    def actor_objective(self, q_pi: torch.Tensor, log_pi: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """E[alpha log pi(a|s) - mean_i Q_i(s, a)]; q_pi: (E, K, B) at a ~ pi(s) (`sac.actor_step`)."""
        return sac.actor_objective(q_pi.mean(0), log_pi, alpha)

    def temperature_loss(self, entropy: torch.Tensor) -> torch.Tensor:
        """alpha (H - H_target) with alpha = exp(log_alpha), H detached."""
        return sac.temperature_loss(self.log_alpha, entropy, self.target_entropy)

    # -- one call ----------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, next_obs = encode_batch(self.encoder, self.encoder_target, batch, self.rng)  # features (DrQ)
        alpha = self.log_alpha.detach().exp()
        self.updates += 1

        # 1. Critic (SAC's step, `algorithms.common.sac`).
        with torch.no_grad():
            next_action, next_logp = self.actor(next_obs, self.rng)
            td_target = self.td_target(batch.reward, batch.done, self.target_values(next_obs, next_action),
                                       next_logp, alpha)
        critic_loss, q = sac.critic_step(self, obs, batch.action, td_target)

        # 2. Actor, then temperature, once every actor_every critic steps (after the updated critic),
        # the actor reading the ensemble's mean; the actor does not train the encoder.
        if int(self.updates) % cfg.actor_every == 0:
            self.last_actor = sac.actor_step(self, obs.detach(), alpha, "mean")

        return {"critic_loss": critic_loss, "q_data": q.mean((0, 2)),
                "td_target": td_target.mean(-1), **self.last_actor}

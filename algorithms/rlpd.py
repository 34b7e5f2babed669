"""RLPD (Ball, Smith, Kostrikov and Levine, "Efficient Online Reinforcement Learning with Offline
Data", ICML 2023): SAC from scratch on symmetric 50/50 offline/online batches, with LayerNorm
critics in a large ensemble, a target that takes the min over a random subset of it, and a high
update-to-data ratio. No pre-training: the yaml sets `protocol.offline_steps: 0`, the UTD ratio
(`protocol.utd`) and the uniform-action warm-up (`protocol.warmup_steps`, the official
`start_training`); the 50/50 batches are replay mode "mix" with ratio 0.5.

Checked against the official code (ikostrikov/rlpd: `rlpd/agents/sac/sac_learner.py`,
`configs/rlpd_config.py`, `train_finetuning.py`). Per call, on one batch (E = n_critics):
  1. critic: a' ~ pi(s'), Z = `n_target_min` members of the E target critics drawn without
             replacement,  y = r + gamma (1 - d) [min_{i in Z} Q_target_i(s', a') - alpha log pi(a'|s') if
             backup_entropy];  L_Q = mean_i E[(Q_i(s, a) - y)^2];  targets <- soft update (tau)
  2. every `actor_every` calls (the official learner: once after its UTD critic steps, on the last
     minibatch; so `actor_every` defaults to protocol.utd), with a ~ pi(s):
             L_pi = E[alpha log pi(a|s) - mean_i Q_i(s, a)]        (mean over all E critics)
             L_alpha = alpha (H - H_target),  H = -E[log pi(a|s)] of that actor step
             (the official parameterization: alpha = exp(log_alpha), the loss on alpha itself)
Weights are Xavier-uniform, biases zero, as the official flax networks (`init`).

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

from algorithms.base import Algorithm, Batch, check_follower, check_positive, check_unit_interval, minimize, register
from algorithms.common.encoder import EncoderConfig, encode_batch, make_encoder
from algorithms.common.networks import (INITS, EnsembleCritic, TanhGaussianActor, sample_members, soft_update,
                                        target_copy)


@dataclass
class RLPDConfig(EncoderConfig):
    actor_hidden: tuple[int, ...] = (256, 256)  # policy MLP widths
    critic_hidden: tuple[int, ...] = (256, 256)  # each Q-network's MLP widths
    n_critics: int = 10  # ensemble size E
    n_target_min: int = 2  # members drawn (without replacement) for the target's min (REDQ's M)
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
        self.encoder = make_encoder(obs_spec, config, rng).to(self.device)  # identity for vector observations
        self.encoder_target = target_copy(self.encoder)
        obs_dim, act_dim = self.encoder.out_dim, action_spec.dim
        self.actor = TanhGaussianActor(obs_dim, act_dim, config.actor_hidden, rng, init=config.init).to(self.device)
        self.critic = EnsembleCritic(obs_dim, act_dim, config.critic_hidden, config.n_critics, rng,
                                     layer_norm=config.critic_layer_norm, init=config.init).to(self.device)
        self.critic_target = target_copy(self.critic)
        self.log_alpha = torch.full((K,), math.log(config.init_temperature), device=self.device,
                                    requires_grad=True)  # one per seed
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), config.actor_lr, fused=True)
        self.critic_opt = torch.optim.Adam([*self.critic.parameters(), *self.encoder.parameters()],
                                           config.critic_lr, fused=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], config.temp_lr)
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
        target's min reads: (n_target_min, K, B)."""
        members = sample_members(self.config.n_critics, self.config.n_target_min, False, self.rng, next_obs.device)
        return self.critic_target(next_obs, next_action, members=members)

    def td_target(self, reward, done, q_next, next_logp, alpha) -> torch.Tensor:
        """r + gamma (1 - d) (min_{i in Z} Q_target_i(s', a') [- alpha log pi(a'|s')]); q_next:
        (|Z|, K, B) of the drawn members Z (`target_values`), next_logp: (K, B), alpha: (K,)."""
        cfg = self.config
        target_q = q_next.min(0).values
        if cfg.backup_entropy:
            target_q = target_q - alpha.unsqueeze(-1) * next_logp
        return reward + cfg.gamma * (1.0 - done) * target_q

    def actor_objective(self, q_pi: torch.Tensor, log_pi: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """E[alpha log pi(a|s) - mean_i Q_i(s, a)]; q_pi: (E, K, B) at a ~ pi(s)."""
        return (alpha.unsqueeze(-1) * log_pi - q_pi.mean(0)).mean(-1)

    def temperature_loss(self, entropy: torch.Tensor) -> torch.Tensor:
        """alpha (H - H_target) with alpha = exp(log_alpha), H detached."""
        return self.log_alpha.exp() * (entropy - self.target_entropy)

    # -- one call ----------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, next_obs = encode_batch(self.encoder, self.encoder_target, batch, self.rng)  # features (DrQ)
        obs_actor = obs.detach()  # the actor does not train the encoder
        alpha = self.log_alpha.detach().exp()
        self.updates += 1

        # 1. Critic.
        with torch.no_grad():
            next_action, next_logp = self.actor(next_obs, self.rng)
            td_target = self.td_target(batch.reward, batch.done, self.target_values(next_obs, next_action),
                                       next_logp, alpha)
        q = self.critic(obs, batch.action)
        critic_loss = (q - td_target).square().mean((0, 2))
        minimize(self.critic_opt, critic_loss)
        soft_update(self.critic_target, self.critic, cfg.tau)
        soft_update(self.encoder_target, self.encoder, cfg.tau)

        # 2. Actor, then temperature, once every actor_every critic steps (after the updated critic).
        if int(self.updates) % cfg.actor_every == 0:
            pi_action, log_pi = self.actor(obs_actor, self.rng)
            q_pi = self.critic(obs_actor, pi_action, frozen=True)
            actor_loss = self.actor_objective(q_pi, log_pi, alpha)
            minimize(self.actor_opt, actor_loss)
            entropy = -log_pi.detach().mean(-1)
            alpha_loss = self.temperature_loss(entropy)
            minimize(self.alpha_opt, alpha_loss)
            self.last_actor = {"actor_loss": actor_loss.detach(), "entropy": entropy, "alpha": alpha,
                               "alpha_loss": alpha_loss.detach(), "q_pi": q_pi.detach().mean((0, 2))}

        return {"critic_loss": critic_loss.detach(), "q_data": q.detach().mean((0, 2)),
                "td_target": td_target.mean(-1), **self.last_actor}

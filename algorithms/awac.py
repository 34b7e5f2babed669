"""AWAC: Advantage-Weighted Actor-Critic (Nair, Gupta, Dalal and Levine, 2020, arXiv:2006.09359).

Checked against CORL's awac.py (AntMaze: lambda 0.1, reward r - 1, 3x256 nets, batch 256) and
d3rlpy 2.8's AWAC (lambda 1, batch 1024). Per step, on one batch:
  1. critic (SAC-style, no entropy term):
       y = r + gamma (1 - d) min_i Q_target_i(s', a'),  a' ~ pi(.|s')
       L_Q = sum_i E[(Q_i(s, a) - y)^2]
  2. actor (advantage-weighted regression):
       A = min_i Q_i(s, a) - min_i Q_i(s, a_pi),  a_pi ~ pi(.|s)   (one-sample estimate of V)
       L_pi = -E[ min(exp(A / lambda), max_weight) log pi(a|s) ]
  3. Q targets <- soft update (tau).
Fine-tuning (as the paper and CORL): the same losses online, nothing switched; CORL's one
combined buffer ("append" replay) by default.

Deviations:
- The twin critics run as one batched ensemble (same math as two MLPs); the actor's advantage
  uses the critics after this step's critic update (CORL: same order). K seeds train as one
  batched model (`algorithms.common.networks`: every tensor has a leading seed dim).
- One actor pass gives both a_pi ~ pi(.|s) and log pi(a|s) (CORL runs the actor twice on the same
  states and parameters: same values, one pass fewer).
- Observations are not standardized by default, as the official code (rlkit's AWAC: its
  `NormalizedBoxEnv` rescales actions only, and is off for the D4RL and hand tasks);
  `normalize_obs: true` standardizes them with the offline data's mean and population std + 1e-3
  (applied to the encoder's output, vector tasks only), as CORL's awac.py always does.
- Policy: Gaussian with tanh mean and state-independent log std (`GaussianActor`, as CORL's
  with its mean squashed into the action box); evaluation acts with the mean.
- Weights are clipped at `max_weight` (CORL: 100; the paper normalizes them over the batch).
- Image observations go through `algorithms.common.encoder` (shared encoder trained by the critic
  loss, as DrQ; the actor and its advantage weights see detached features, the TD target the
  target encoder's; identity for vector observations, which leaves vector results unchanged).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.base import Algorithm, Batch, check_positive, check_unit_interval, minimize, register
from algorithms.common.encoder import EncoderConfig, encode_batch
from algorithms.common.networks import EnsembleCritic, GaussianActor, gaussian_log_prob, soft_update
from algorithms.common.normalization import make_obs_normalizer


@dataclass
class AWACConfig(EncoderConfig):
    actor_hidden: tuple[int, ...] = (256, 256, 256)  # policy MLP widths
    critic_hidden: tuple[int, ...] = (256, 256, 256)  # each Q-network's MLP widths
    n_critics: int = 2  # twin Q, min over them for targets and advantages
    gamma: float = 0.99  # discount
    tau: float = 5e-3  # soft target update rate, every step
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    awac_lambda: float = 1.0  # temperature: weights exp(A / lambda)
    max_weight: float = 100.0  # advantage weights are clipped at this value
    normalize_obs: bool = False  # standardize observations (offline mean, population std + 1e-3): CORL; off: official code

    def __post_init__(self):
        check_positive(self, "n_critics", "tau", "actor_lr", "critic_lr", "awac_lambda", "max_weight")
        check_unit_interval(self, "gamma")


@register("awac")
class AWAC(Algorithm):
    Config = AWACConfig
    multi_seed = True

    def __init__(self, obs_spec, action_spec, config: AWACConfig, device, rng=None):
        super().__init__(obs_spec, action_spec, config, device, rng)
        rng = self.rng  # one stream per seed: initial weights, sampled actions
        obs_dim, act_dim = self.build_encoder(), action_spec.dim
        self.actor = self.network(GaussianActor(obs_dim, act_dim, config.actor_hidden, rng))
        self.critic, self.critic_target = self.with_target(
            EnsembleCritic(obs_dim, act_dim, config.critic_hidden, config.n_critics, rng))
        self.obs_norm = self.network(make_obs_normalizer(config.normalize_obs, obs_dim))  # the same data for every seed
        self.actor_opt = self.adam(config.actor_lr, self.actor, fused=True)
        self.critic_opt = self.critic_adam(config.critic_lr, self.critic)

    def observe_dataset(self, obs: torch.Tensor) -> None:
        if self.config.normalize_obs:
            self.obs_norm.fit(obs, self.obs_spec, "awac")

    def policy(self, obs, deterministic):
        return self.actor(self.obs_norm(self.encoder(obs)), None if deterministic else self.rng)[0]

    @torch.no_grad()
    def policy_value(self, obs):
        features = self.obs_norm(self.encoder(obs))
        return self.critic(features, self.actor(features)[0]).min(0).values

    # -- the loss terms, each a function of tensors ----------------------------------------
    def td_target(self, reward: torch.Tensor, done: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
        """r + gamma (1 - d) min_i Q_target_i(s', a'); next_q: (n, K, B)."""
        return reward + self.config.gamma * (1.0 - done) * next_q.min(0).values

    def advantage_weights(self, q_data: torch.Tensor, q_pi: torch.Tensor) -> torch.Tensor:
        """min(exp((min_i Q_i(s, a) - min_i Q_i(s, a_pi)) / lambda), max_weight); inputs (n, K, B)."""
        adv = q_data.min(0).values - q_pi.min(0).values
        return torch.exp(adv / self.config.awac_lambda).clamp(max=self.config.max_weight)

    # -- one step ---------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, next_obs = encode_batch(self.encoder, self.encoder_target, batch, self.rng)  # features (DrQ)
        if cfg.normalize_obs:
            obs, next_obs = self.obs_norm(obs), self.obs_norm(next_obs)
        obs_actor, B = obs.detach(), obs.shape[1]  # the actor does not train the encoder
        with torch.no_grad():
            next_a, _ = self.actor(next_obs, self.rng)
            td_target = self.td_target(batch.reward, batch.done, self.critic_target(next_obs, next_a))

        # 1. Critic (each loss one per seed, (K,): see `minimize`).
        q = self.critic(obs, batch.action)
        critic_loss = (q - td_target).square().mean(-1).sum(0)
        minimize(self.critic_opt, critic_loss)

        # 2. Actor: one actor pass gives both the sampled a_pi and log pi(a|s) (the actor has not
        # changed in between); Q at data and policy actions in one critic pass, no gradients.
        mean, log_std = self.actor.mean_and_log_std(obs_actor)
        with torch.no_grad():
            pi_a, _ = self.actor.sample_from(mean.detach(), log_std.detach(), self.rng)
            q_both = self.critic(torch.cat([obs_actor, obs_actor], 1), torch.cat([batch.action, pi_a], 1))
            weights = self.advantage_weights(q_both[..., :B], q_both[..., B:])
        actor_loss = -(weights * gaussian_log_prob(mean, log_std, batch.action)).mean(-1)
        minimize(self.actor_opt, actor_loss)
        soft_update(self.critic_target, self.critic, cfg.tau)
        soft_update(self.encoder_target, self.encoder, cfg.tau)

        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "q_data": q.detach().mean((0, 2)), "weight": weights.mean(-1), "td_target": td_target.mean(-1)}

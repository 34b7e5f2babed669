"""IQL: Implicit Q-Learning (Kostrikov, Nair and Levine, ICLR 2022).

Checked against CORL's iql.py (the AntMaze fine-tuning numbers in calql-suite.md) and d3rlpy 2.8's
IQL (its defaults: expectile 0.7, weight temperature 3, max weight 100). Per step, on one batch:
  1. value:  L_V = E[ |tau - 1(u < 0)| u^2 ],  u = min_i Q_target_i(s, a) - V(s)   (expectile)
  2. actor:  L_pi = -E[ min(exp(beta (min_i Q_target_i(s, a) - V(s))), max_weight) log pi(a|s) ]
  3. critic: L_Q = sum_i E[ (r + gamma (1 - d) V(s') - Q_i(s, a))^2 ]
  4. Q targets <- soft update (tau_target); V has no target network.
Steps 1-3 depend only on the parameters before the step (V(s') and the advantages are computed
first, as in CORL), so they share one backward pass and step together.
Fine-tuning (as the paper and CORL): the same three losses online, nothing switched; CORL's one
combined buffer ("append" replay) by default.

Deviations:
- The twin critics run as one batched ensemble (same math as two MLPs); K seeds train as one
  batched model (`algorithms.common.networks`: every tensor has a leading seed dim).
- The actor's learning rate is constant (CORL decays it with a cosine schedule offline; the
  schedule has no meaning for a run that continues online).
- Observations are not standardized by default, as the official code (ikostrikov/
  implicit_q_learning, on every domain); `normalize_obs: true` standardizes them with the offline data's
  mean and population std + 1e-3 (applied to the encoder's output, vector tasks only), as CORL's
  `normalize: true`.
- Policy: CORL's Gaussian with tanh mean and state-independent log std (`GaussianActor`);
  evaluation acts with the mean. No dropout (CORL's antmaze configs use none).
- Image observations go through `algorithms.common.encoder` (shared encoder trained by the critic
  loss, as DrQ; V, the actor and Q_target(s, a) see detached features, V(s') the target encoder's;
  identity for vector observations, which leaves vector results unchanged).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.base import Algorithm, Batch, check_positive, check_unit_interval, register
from algorithms.common.encoder import EncoderConfig, encode_batch
from algorithms.common.networks import EnsembleCritic, GaussianActor, ValueNet, soft_update
from algorithms.common.normalization import make_obs_normalizer


@dataclass
class IQLConfig(EncoderConfig):
    actor_hidden: tuple[int, ...] = (256, 256)  # policy MLP widths
    critic_hidden: tuple[int, ...] = (256, 256)  # each Q-network's MLP widths
    value_hidden: tuple[int, ...] = (256, 256)  # V-network MLP widths
    n_critics: int = 2  # twin Q, min over them for the value and actor targets
    gamma: float = 0.99  # discount
    tau: float = 5e-3  # soft target update rate of the Q targets, every step
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    expectile: float = 0.7  # tau of the expectile value loss (0.5: mean; -> 1: max over data actions)
    beta: float = 3.0  # inverse temperature of the advantage weights exp(beta * A)
    max_weight: float = 100.0  # advantage weights are clipped at this value
    normalize_obs: bool = False  # standardize observations (offline mean, population std + 1e-3): CORL; off: official code

    def __post_init__(self):
        check_positive(self, "n_critics", "tau", "actor_lr", "critic_lr", "value_lr", "beta", "max_weight")
        check_unit_interval(self, "gamma", "expectile")


@register("iql")
class IQL(Algorithm):
    Config = IQLConfig
    multi_seed = True

    def __init__(self, obs_spec, action_spec, config: IQLConfig, device, rng=None):
        super().__init__(obs_spec, action_spec, config, device, rng)
        rng = self.rng  # one stream per seed: initial weights here, nothing random in the update
        obs_dim, act_dim = self.build_encoder(), action_spec.dim
        self.actor = self.network(GaussianActor(obs_dim, act_dim, config.actor_hidden, rng))
        self.critic, self.critic_target = self.with_target(
            EnsembleCritic(obs_dim, act_dim, config.critic_hidden, config.n_critics, rng))
        self.obs_norm = self.network(make_obs_normalizer(config.normalize_obs, obs_dim))  # the same data for every seed
        self.value = self.network(ValueNet(obs_dim, config.value_hidden, rng))
        self.actor_opt = self.adam(config.actor_lr, self.actor, fused=True)
        self.critic_opt = self.critic_adam(config.critic_lr, self.critic)
        self.value_opt = self.adam(config.value_lr, self.value, fused=True)

    def observe_dataset(self, obs: torch.Tensor) -> None:
        if self.config.normalize_obs:
            self.obs_norm.fit(obs, self.obs_spec, "iql")

    def policy(self, obs, deterministic):
        return self.actor(self.obs_norm(self.encoder(obs)), None if deterministic else self.rng)[0]

    @torch.no_grad()
    def policy_value(self, obs):
        features = self.obs_norm(self.encoder(obs))
        return self.critic(features, self.actor(features)[0]).min(0).values

    # -- the loss terms, each a function of tensors ----------------------------------------
    def expectile_loss(self, diff: torch.Tensor) -> torch.Tensor:
        """E[|tau - 1(diff < 0)| diff^2] with diff = Q(s, a) - V(s), per seed: (K, B) -> (K,)."""
        weight = torch.where(diff < 0, 1.0 - self.config.expectile, self.config.expectile)
        return (weight * diff.square()).mean(-1)

    def advantage_weights(self, adv: torch.Tensor) -> torch.Tensor:
        """exp(beta * A), clipped at max_weight."""
        return torch.exp(self.config.beta * adv).clamp(max=self.config.max_weight)

    def td_target(self, reward: torch.Tensor, done: torch.Tensor, next_v: torch.Tensor) -> torch.Tensor:
        return reward + self.config.gamma * (1.0 - done) * next_v

    # -- one step ---------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, next_obs = encode_batch(self.encoder, self.encoder_target, batch, self.rng)  # features (DrQ)
        if cfg.normalize_obs:
            obs, next_obs = self.obs_norm(obs), self.obs_norm(next_obs)
        obs_detached = obs.detach()  # V and the actor do not train the encoder
        with torch.no_grad():
            q_target = self.critic_target(obs_detached, batch.action).min(0).values
            next_v = self.value(next_obs)
            td_target = self.td_target(batch.reward, batch.done, next_v)

        # 1. Value: expectile regression towards the target Q of data actions.
        v = self.value(obs_detached)
        adv = q_target - v
        value_loss = self.expectile_loss(adv)

        # 2. Actor: advantage-weighted regression on data actions.
        weights = self.advantage_weights(adv.detach())
        actor_loss = -(weights * self.actor.log_prob(obs_detached, batch.action)).mean(-1)

        # 3. Critic: TD towards r + gamma V(s'), summed over the critics.
        q = self.critic(obs, batch.action)
        critic_loss = (q - td_target).square().mean(-1).sum(0)

        # The three losses use only pre-update parameters and disjoint networks (as in the
        # reference, where V(s') and the advantages are computed before any step), so one
        # backward pass gives each network exactly its own gradient: ~10% faster than three.
        # Each loss is one per seed (K,); their sum gives every seed its own gradient (`minimize`).
        optimizers = (self.value_opt, self.actor_opt, self.critic_opt)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        (value_loss + actor_loss + critic_loss).sum().backward()
        for opt in optimizers:
            opt.step()
        soft_update(self.critic_target, self.critic, cfg.tau)
        soft_update(self.encoder_target, self.encoder, cfg.tau)

        return {"value_loss": value_loss.detach(), "actor_loss": actor_loss.detach(),
                "critic_loss": critic_loss.detach(), "v": v.detach().mean(-1), "q_data": q.detach().mean((0, 2)),
                "adv": adv.detach().mean(-1), "weight": weights.mean(-1), "td_target": td_target.mean(-1)}

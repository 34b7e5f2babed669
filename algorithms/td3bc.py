"""TD3+BC (Fujimoto and Gu, "A Minimalist Approach to Offline Reinforcement Learning", NeurIPS 2021).

Checked against the authors' code (sfujim/TD3_BC), CORL's td3_bc.py and d3rlpy 2.8's TD3PlusBC
(alpha 2.5, policy noise 0.2, noise clip 0.5, actor every 2 steps). Per step, on one batch:
  0. observations normalized with the offline data's mean and population std (+1e-3, as the
     reference), if `normalize_obs`
  1. critic: a' = clip(pi_target(s') + clip(N(0, sigma), -c, c), -1, 1)      (target smoothing)
             y = r + gamma (1 - d) min_i Q_target_i(s', a');  L_Q = sum_i E[(Q_i(s, a) - y)^2]
  2. every `policy_freq` steps (delayed): lambda = alpha / mean|Q_1(s, pi(s))| (no gradient)
             L_pi = -lambda E[Q_1(s, pi(s))] + w_bc E[(pi(s) - a)^2]
     then actor and critic targets <- soft update (tau).
Fine-tuning (as the paper's fine-tuning experiment): the same loss online; optionally the BC
weight w_bc decays linearly from 1 to 0 over `bc_decay_steps` updates after fine-tuning starts
(0: no decay). Replay: one combined buffer ("append") by default.

Deviations:
- The twin critics run as one batched ensemble (same math as two MLPs); K seeds train as one
  batched model (`algorithms.common.networks`: every tensor has a leading seed dim).
- Exploration online: Gaussian noise `expl_noise` (TD3's 0.1) on non-deterministic actions.
- Metrics of the actor step are those of the latest actor update (so every step logs the same keys).
- Image observations go through `algorithms.common.encoder` (shared encoder trained by the critic
  loss, as DrQ; the actor sees detached features, the target actor and critics the target
  encoder's, soft-updated with the critic targets; identity for vector observations, which leaves
  vector results unchanged). Normalization applies to the encoder's output, i.e. to the
  observations of vector tasks; image tasks need `normalize_obs: false` (`observe_dataset` raises
  otherwise: statistics of pixel bytes are meaningless).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.base import Algorithm, Batch, check_non_negative, check_positive, check_unit_interval, minimize, register
from algorithms.common.encoder import EncoderConfig, encode_batch, make_encoder
from algorithms.common.networks import DeterministicActor, EnsembleCritic, soft_update, target_copy
from algorithms.common.normalization import make_obs_normalizer


@dataclass
class TD3BCConfig(EncoderConfig):
    actor_hidden: tuple[int, ...] = (256, 256)  # policy MLP widths
    critic_hidden: tuple[int, ...] = (256, 256)  # each Q-network's MLP widths
    n_critics: int = 2  # twin Q; min over them in the target
    gamma: float = 0.99  # discount
    tau: float = 5e-3  # soft target update rate, on actor steps
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha: float = 2.5  # lambda = alpha / mean|Q|: weight of the Q term against BC
    policy_noise: float = 0.2  # std of the target policy smoothing noise
    noise_clip: float = 0.5  # the smoothing noise is clipped to [-noise_clip, noise_clip]
    policy_freq: int = 2  # actor and target updates every policy_freq critic updates
    normalize_obs: bool = True  # standardize observations with the offline data's statistics (vectors only)
    expl_noise: float = 0.1  # std of the Gaussian exploration noise of non-deterministic actions
    bc_decay_steps: int = 0  # fine-tuning: BC weight 1 -> 0 linearly over this many updates (0: keep)

    def __post_init__(self):
        check_positive(self, "n_critics", "tau", "actor_lr", "critic_lr", "alpha", "policy_freq")
        check_unit_interval(self, "gamma")
        check_non_negative(self, "policy_noise", "noise_clip", "expl_noise", "bc_decay_steps")


@register("td3bc")
class TD3BC(Algorithm):
    Config = TD3BCConfig
    multi_seed = True
    unseeded = frozenset({"updates", "online_updates"})  # step counters, every seed's

    def __init__(self, obs_spec, action_spec, config: TD3BCConfig, device, rng=None):
        super().__init__(obs_spec, action_spec, config, device, rng)
        rng = self.rng  # one stream per seed: initial weights, smoothing and exploration noise
        self.encoder = make_encoder(obs_spec, config, rng).to(self.device)  # identity for vector observations
        self.encoder_target = target_copy(self.encoder)
        obs_dim, act_dim = self.encoder.out_dim, action_spec.dim
        self.actor = DeterministicActor(obs_dim, act_dim, config.actor_hidden, rng).to(self.device)
        self.actor_target = target_copy(self.actor)
        self.critic = EnsembleCritic(obs_dim, act_dim, config.critic_hidden, config.n_critics, rng).to(self.device)
        self.critic_target = target_copy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), config.actor_lr, fused=True)
        self.critic_opt = torch.optim.Adam([*self.critic.parameters(), *self.encoder.parameters()],
                                           config.critic_lr, fused=True)
        # Statistics of the encoder's output (for vector tasks the observations themselves; the
        # same data for every seed) and step counters: saved with the modules.
        self.obs_norm = make_obs_normalizer(config.normalize_obs, obs_dim).to(self.device)
        self.updates = torch.zeros((), dtype=torch.long)  # on the host: read every step
        self.online_updates = torch.zeros((), dtype=torch.long)
        self.last_actor: dict[str, torch.Tensor] = {k: torch.zeros(self.n_seeds, device=self.device)
                                                    for k in ("actor_loss", "bc_loss", "lambda", "bc_weight")}

    def observe_dataset(self, obs: torch.Tensor) -> None:
        if self.config.normalize_obs:
            self.obs_norm.fit(obs, self.obs_spec, "td3bc")

    def policy(self, obs, deterministic):
        action = self.actor(self.obs_norm(self.encoder(obs)))
        if deterministic:
            return action
        return (action + self.config.expl_noise * self.rng.randn_like(action)).clamp(-1.0, 1.0)

    @torch.no_grad()
    def policy_value(self, obs):
        features = self.obs_norm(self.encoder(obs))
        return self.critic(features, self.actor(features)).min(0).values

    # -- the loss terms, each a function of tensors ----------------------------------------
    def target_action(self, next_obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """clip(pi_target(s') + clip(noise, -c, c), -1, 1); noise ~ N(0, policy_noise)."""
        c = self.config.noise_clip
        return (self.actor_target(next_obs) + noise.clamp(-c, c)).clamp(-1.0, 1.0)

    def td_target(self, reward: torch.Tensor, done: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
        """r + gamma (1 - d) min_i Q_target_i(s', a'); next_q: (n, K, B)."""
        return reward + self.config.gamma * (1.0 - done) * next_q.min(0).values

    def actor_objective(self, q_pi: torch.Tensor, pi_action: torch.Tensor, action: torch.Tensor,
                        bc_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-lambda E[Q_1(s, pi(s))] + w_bc E[(pi(s) - a)^2] with lambda = alpha / mean|Q_1| (no grad),
        per seed. q_pi: (K, B) Q_1 at the policy's actions. Returns (loss, lambda, bc term), each (K,)."""
        lmbda = self.config.alpha / q_pi.abs().mean(-1).detach()
        bc = (pi_action - action).square().flatten(-2).mean(-1)  # mean over batch and action dims
        return -lmbda * q_pi.mean(-1) + bc_weight * bc, lmbda, bc

    def bc_weight(self) -> float:
        decay = self.config.bc_decay_steps
        if not self.finetuning or decay == 0:
            return 1.0
        return max(0.0, 1.0 - int(self.online_updates) / decay)

    # -- one step ---------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, next_obs = encode_batch(self.encoder, self.encoder_target, batch, self.rng)  # features (DrQ)
        obs, next_obs = self.obs_norm(obs), self.obs_norm(next_obs)
        obs_actor = obs.detach()  # the actor does not train the encoder
        self.updates += 1
        if self.finetuning:
            self.online_updates += 1

        # 1. Critic with target policy smoothing.
        with torch.no_grad():
            noise = self.rng.randn_like(batch.action) * cfg.policy_noise
            next_q = self.critic_target(next_obs, self.target_action(next_obs, noise))
            td_target = self.td_target(batch.reward, batch.done, next_q)
        q = self.critic(obs, batch.action)
        critic_loss = (q - td_target).square().mean(-1).sum(0)  # one loss per seed: see `minimize`
        minimize(self.critic_opt, critic_loss)

        # 2. Delayed actor and target updates. Only Q_1 is evaluated (the paper's actor uses Q_1).
        if int(self.updates) % cfg.policy_freq == 0:
            pi_action = self.actor(obs_actor)
            q_pi = self.q1(obs_actor, pi_action)
            bc_weight = self.bc_weight()
            actor_loss, lmbda, bc = self.actor_objective(q_pi, pi_action, batch.action, bc_weight)
            minimize(self.actor_opt, actor_loss)
            soft_update(self.actor_target, self.actor, cfg.tau)
            soft_update(self.critic_target, self.critic, cfg.tau)
            soft_update(self.encoder_target, self.encoder, cfg.tau)
            self.last_actor = {"actor_loss": actor_loss.detach(), "bc_loss": bc.detach(), "lambda": lmbda,
                               "bc_weight": torch.full((self.n_seeds,), bc_weight, device=self.device)}

        return {"critic_loss": critic_loss.detach(), "q_data": q.detach().mean((0, 2)),
                "td_target": td_target.mean(-1), **self.last_actor}

    def q1(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q_1(s, a) alone, the first member of the ensemble, with its weights as constants: the
        actor loss differentiates through the action only (no wasted critic weight gradients)."""
        return self.critic(obs, action, frozen=True, members=1)[0]

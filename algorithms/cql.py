"""CQL (Kumar et al., NeurIPS 2020) and Cal-QL (Nakamoto et al., NeurIPS 2023).

Checked against the official Cal-QL code (nakamotoo/Cal-QL, JAX: JaxCQL/conservative_sac.py,
model.py) and CORL's cql.py / cal_ql.py. Cal-QL is CQL with one overridden hook
(`bound_policy_q`) and a declared need for Monte-Carlo returns.

Update order per step, as both references: every loss is computed from the parameters before
the step (temperature, actor, critics, Lagrange alpha'), then all are stepped:
  alpha loss  -log alpha (log pi(a|s) + target entropy),  a ~ pi(.|s)
  actor loss  alpha log pi(a|s) - min_i Q_i(s, a),  with this step's pre-update alpha
  critic loss TD towards r + gamma (1 - d) max_j min_i Q_target_i(s', a'_j) (- alpha log pi if
              backup_entropy, the same alpha) plus the conservative gap, with a'_j and the CQL
              actions sampled from the pre-update actor; alpha' (Lagrange) from its pre-update value
then the Q targets are soft-updated from the new critics.
Policy: tanh-Gaussian whose log-std is a learned scalar scale and offset (init 1, -1) of the
network's head, clamped to [-20, 2], as the official `TanhGaussianPolicy` (`log_std_affine`).

Deviations, each measured to change no expectation:
- The policy actions at s' are sampled once and used both by the max-over-actions target
  backup and by CQL's push-down term (the reference samples them twice): saves one actor pass.
- Actions for the CQL term are sampled without gradients, and the actor loss treats the critics'
  parameters as constants: each reference differentiates every loss only with respect to its
  own parameters, so these gradients were discarded there anyway.
- The twin critics run as one batched ensemble (same math as two MLPs), and the disjoint losses
  share one backward pass (each parameter gets exactly its own loss's gradient). Q at the data
  actions and at the three kinds of sampled actions comes from one critic pass.
- K seeds train as one batched model (`algorithms.common.networks`: every tensor has a leading
  seed dim, the learned temperatures are one per seed).
- Image observations go through `algorithms.common.encoder` (shared, critic-trained encoder as
  DrQ; identity for vector observations, which leaves vector results unchanged).
Reference differences kept as options (default: the official code): `calibrate_online` (CORL
switches the Cal-QL bound off online), `log_std_affine` (false: the raw head, sigma ~1 at
initialisation). CORL also standardises observations (`normalize: true`); the official code and
this one do not.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from algorithms.base import Algorithm, Batch, check_non_negative, check_positive, check_unit_interval, per_seed, register
from algorithms.common.encoder import EncoderConfig, encode_batch
from algorithms.common.networks import EnsembleCritic, TanhGaussianActor, members_of, soft_update


@dataclass
class CQLConfig(EncoderConfig):
    actor_hidden: tuple[int, ...] = (256, 256)  # policy MLP widths
    critic_hidden: tuple[int, ...] = (256, 256, 256)  # each Q-network's MLP widths
    n_critics: int = 2  # twin Q, min over them for the actor and the target
    actor_layer_norm: bool = False  # LayerNorm in the policy's hidden layers (WSRL's pre-training)
    critic_layer_norm: bool = False  # LayerNorm in the Q-networks' hidden layers (WSRL's pre-training)
    gamma: float = 0.99  # discount
    tau: float = 5e-3  # soft target update rate, every step
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 1e-4  # SAC temperature learning rate
    target_entropy: float | None = None  # None: -|A|
    backup_entropy: bool = False  # subtract alpha*log pi in the TD target (off in Cal-QL)
    cql_alpha: float = 5.0  # weight of the conservative term
    cql_n_actions: int = 10  # sampled actions of each kind (uniform, pi(s), pi(s'))
    cql_importance_sample: bool = True  # subtract log-densities inside the logsumexp
    cql_temp: float = 1.0  # logsumexp temperature
    cql_max_target_backup: bool = True  # target = max over n sampled next actions
    cql_lagrange: bool = False  # learn alpha' so the gap stays near cql_target_action_gap
    cql_target_action_gap: float = 0.8
    cql_lagrange_init: float = 1.0  # initial log alpha'
    cql_clip_diff_min: float = -math.inf
    cql_clip_diff_max: float = math.inf
    log_std_affine: bool = True  # log sigma = a * head + b, a, b learned from 1, -1 (official, CORL); false: raw head

    def __post_init__(self):
        check_positive(self, "n_critics", "gamma", "tau", "actor_lr", "critic_lr", "alpha_lr",
                       "cql_n_actions", "cql_temp")
        check_non_negative(self, "cql_alpha", "cql_target_action_gap")
        check_unit_interval(self, "gamma")
        if not self.cql_clip_diff_min < self.cql_clip_diff_max:
            raise ValueError(f"{type(self).__qualname__}.cql_clip_diff_min must be < cql_clip_diff_max, got "
                             f"{self.cql_clip_diff_min} and {self.cql_clip_diff_max}")


@register("cql")
class CQL(Algorithm):
    Config = CQLConfig
    multi_seed = True

    def __init__(self, obs_spec, action_spec, config: CQLConfig, device, rng=None):
        super().__init__(obs_spec, action_spec, config, device, rng)
        rng = self.rng  # one stream per seed: initial weights, sampled actions
        obs_dim, act_dim = self.build_encoder(), action_spec.dim
        self.actor = self.network(TanhGaussianActor(obs_dim, act_dim, config.actor_hidden, rng,
                                                    log_std_affine=(1.0, -1.0) if config.log_std_affine else None,
                                                    layer_norm=config.actor_layer_norm))
        self.critic, self.critic_target = self.with_target(
            EnsembleCritic(obs_dim, act_dim, config.critic_hidden, config.n_critics, rng,
                           layer_norm=config.critic_layer_norm))
        self.log_alpha = self.learned_scalar(0.0)
        self.log_alpha_prime = self.learned_scalar(config.cql_lagrange_init)
        self.actor_opt = self.adam(config.actor_lr, self.actor, fused=True)
        self.critic_opt = self.critic_adam(config.critic_lr, self.critic)
        self.alpha_opt = self.adam(config.alpha_lr, self.log_alpha)
        self.alpha_prime_opt = self.adam(config.critic_lr, self.log_alpha_prime)
        self.target_entropy = -float(act_dim) if config.target_entropy is None else config.target_entropy

    def policy(self, obs, deterministic):
        return self.actor(self.encoder(obs), None if deterministic else self.rng)[0]

    @torch.no_grad()
    def policy_value(self, obs):
        features = self.encoder(obs)
        return self.critic(features, self.actor(features)[0]).min(0).values

    def bound_policy_q(self, q: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hook on the Q-values of policy actions in the push-down term; CQL leaves them as they are."""
        return q, None

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, next_obs = encode_batch(self.encoder, self.encoder_target, batch, self.rng)  # features (DrQ)
        action, obs_actor = batch.action, obs.detach()  # the actor does not train the encoder
        K, B, N, A = obs.shape[0], obs.shape[1], cfg.cql_n_actions, self.action_spec.dim

        # Every loss from the pre-update parameters (actor, temperature, critics, alpha'), then
        # every step, as the official code: the actor loss and the TD target use this alpha.
        # Each loss is one per seed (K,).
        pi_action, log_pi = self.actor(obs_actor, self.rng)
        alpha_loss = self.temperature_loss(log_pi.detach())
        alpha = self.log_alpha.detach().exp()  # (K,)
        q_pi = self.critic(obs_actor, pi_action, frozen=True).min(0).values
        actor_loss = (per_seed(alpha) * log_pi - q_pi).mean(-1)

        # The push-down term's actions at s, N per state of each kind (rows ordered (B, N)):
        # uniform, the policy at s, the policy at s' (as the paper's importance-sampled logsumexp).
        obs_rep = obs.repeat_interleave(N, 1)
        with torch.no_grad():
            next_obs_rep = next_obs.repeat_interleave(N, 1)
            pi_s_a, pi_s_logp = self.actor.sample(obs_actor, N, self.rng)  # one actor pass per state, not per action
            pi_next_a, pi_next_logp = self.actor.sample(next_obs, N, self.rng)
            uniform_a = self.rng.uniform((B * N, A), -1.0, 1.0, self.device)
            pi_s_logp, pi_next_logp = pi_s_logp.unflatten(-1, (B, N)), pi_next_logp.unflatten(-1, (B, N))

            # TD target: max over the N next actions of the min over critics (or one action).
            if cfg.cql_max_target_backup:
                q_next = self.target_values(next_obs_rep, pi_next_a).unflatten(-1, (B, N))
                td_target = self.td_target(batch.reward, batch.done, q_next, pi_next_logp, alpha)
            else:
                first = pi_next_a.unflatten(-2, (B, N))[..., 0, :]
                q_next = self.target_values(next_obs, first).unsqueeze(-1)
                td_target = self.td_target(batch.reward, batch.done, q_next, pi_next_logp[..., :1], alpha)

        members = self.conservative_members(obs.device)  # of the conservative term (None: every critic)
        q_data, q_uniform, q_pi_s, q_pi_next = self.critic_values(obs, action, obs_rep, uniform_a, pi_s_a, pi_next_a,
                                                                  members)
        q_uniform, q_pi_s, q_pi_next = (x.unflatten(-1, (B, N)) for x in (q_uniform, q_pi_s, q_pi_next))
        td_loss = ((q_data - td_target) ** 2).mean(-1).sum(0)

        cql_gap, bound_rate = self.conservative_gap(q_data, q_uniform, q_pi_s, q_pi_next,
                                                    pi_s_logp, pi_next_logp, batch, members)

        if cfg.cql_lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)
            cql_loss = alpha_prime.detach() * cfg.cql_alpha * (cql_gap - cfg.cql_target_action_gap)
            alpha_prime_loss = -alpha_prime * cfg.cql_alpha * (cql_gap.detach() - cfg.cql_target_action_gap).mean(0)
        else:
            alpha_prime = torch.ones(K, device=self.device)
            cql_loss = cfg.cql_alpha * cql_gap
            alpha_prime_loss = None
        critic_loss = td_loss + cql_loss.sum(0)

        # The losses touch disjoint parameters (log_pi and the gaps are detached where another
        # loss reads them, the actor loss sees the critics as constants, the sampled actions carry
        # no graph), so one backward pass gives each its own gradient, as separate passes would;
        # summed over seeds, each seed its own (`minimize`).
        optimizers = [self.alpha_opt, self.actor_opt, self.critic_opt]
        total_loss = alpha_loss + actor_loss + critic_loss
        if alpha_prime_loss is not None:
            optimizers.append(self.alpha_prime_opt)
            total_loss = total_loss + alpha_prime_loss
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        total_loss.sum().backward()
        for opt in optimizers:
            opt.step()
        soft_update(self.critic_target, self.critic, cfg.tau)
        soft_update(self.encoder_target, self.encoder, cfg.tau)

        metrics = {
            "critic_loss": critic_loss.detach(), "td_loss": td_loss.detach(),
            "cql_gap": cql_gap.detach().mean(0), "actor_loss": actor_loss.detach(),
            "alpha": alpha, "alpha_prime": alpha_prime.detach(), "entropy": -log_pi.detach().mean(-1),
            "q_data": q_data.detach().mean((0, 2)), "q_pi": q_pi.detach().mean(-1),
            "td_target": td_target.mean(-1),
        }
        if bound_rate is not None:
            metrics["bound_rate"] = bound_rate
        return metrics

    def target_values(self, next_obs, next_action) -> torch.Tensor:
        """Q_target(s', a') of the members the TD target's min is over (here every one): (n, K, rows)."""
        return self.critic_target(next_obs, next_action)

    def conservative_members(self, device) -> torch.Tensor | None:
        """The critics whose gap the conservative term sums, per seed (K, m); None: every critic."""
        return None

    def critic_values(self, obs, action, obs_rep, uniform_a, pi_s_a, pi_next_a, members=None):
        """Q at the data actions and at the three kinds of sampled actions, all at s, in one pass of
        every critic: q_data (n, K, B) and q_uniform, q_pi_s, q_pi_next (n, K, B * N) (every
        critic's here: `members` is None)."""
        B = obs.shape[1]
        q = self.critic(torch.cat([obs, obs_rep, obs_rep, obs_rep], 1),
                        torch.cat([action, uniform_a, pi_s_a, pi_next_a], 1))
        return q.split([B, *[obs_rep.shape[1]] * 3], -1)

    def temperature_loss(self, log_pi: torch.Tensor) -> torch.Tensor:
        """SAC's automatic entropy tuning: -E[log alpha (log pi(a|s) + target entropy)], per seed:
        log_pi (K, B) -> (K,)."""
        return -(per_seed(self.log_alpha) * (log_pi + self.target_entropy)).mean(-1)

    def td_target(self, reward, done, q_next, next_logp, alpha) -> torch.Tensor:
        """r + gamma (1 - d) max_j min_i Q_target_i(s', a'_j) (- alpha log pi(a'_j*|s') if
        backup_entropy, at the maximizing action j*). q_next: (n, K, B, N) over N next actions
        (N = 1 without the max backup); next_logp: (K, B, N); alpha: (K,)."""
        target_q, idx = q_next.min(0).values.max(-1)
        if self.config.backup_entropy:
            target_q = target_q - per_seed(alpha) * next_logp.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        return reward + self.config.gamma * (1.0 - done) * target_q

    def conservative_gap(self, q_data, q_uniform, q_pi_s, q_pi_next, pi_s_logp, pi_next_logp, batch, members=None):
        """CQL's push-down minus push-up term per critic and seed: logsumexp over sampled actions
        of Q(s, .) (importance-weighted) minus Q of the data action. Shapes: q_data (n, K, B), of
        every critic (those in `members` are used); q_uniform, q_pi_s, q_pi_next (m, K, B, N) =
        Q(s, .) of the members at uniform actions, at the policy's actions at s and at s'; logps
        (K, B, N). Returns ((m, K) gaps, the fraction of policy-action Q-values lifted by the
        bound per seed (K,), or None)."""
        cfg, A = self.config, self.action_spec.dim
        if members is not None:
            q_data = members_of(q_data, members)
        q_pi_s, lifted_s = self.bound_policy_q(q_pi_s, batch)
        q_pi_next, lifted_next = self.bound_policy_q(q_pi_next, batch)
        if cfg.cql_importance_sample:
            q_uniform = q_uniform - A * math.log(0.5)  # uniform density on [-1, 1]^A is 0.5^A
            q_pi_s = q_pi_s - pi_s_logp
            q_pi_next = q_pi_next - pi_next_logp
        else:  # the variant without importance weights also scores the data action (CORL)
            q_uniform = torch.cat([q_uniform, q_data.unsqueeze(-1)], -1)
        q_cat = torch.cat([q_uniform, q_pi_s, q_pi_next], -1)
        q_ood = torch.logsumexp(q_cat / cfg.cql_temp, -1) * cfg.cql_temp
        gap = (q_ood - q_data).clamp(cfg.cql_clip_diff_min, cfg.cql_clip_diff_max).mean(-1)
        if lifted_s is None:
            return gap, None
        per_seed = (0, 2, 3)  # lifted: (n, K, B, N)
        return gap, 0.5 * (lifted_s.float().mean(per_seed) + lifted_next.float().mean(per_seed)).detach()


@dataclass
class CalQLConfig(CQLConfig):
    calibrate_online: bool = True  # keep the bound during fine-tuning (official Cal-QL); CORL: False


@register("calql")
class CalQL(CQL):
    """Cal-QL: in the push-down term, Q(s, a~pi) is replaced by max(Q(s, a), V_ref(s)), with
    V_ref the Monte-Carlo return-to-go of the data's trajectory. Uniform actions are not bounded."""

    Config = CalQLConfig
    needs = frozenset({"mc_return"})

    def bound_policy_q(self, q, batch):
        if self.finetuning and not self.config.calibrate_online:
            return q, torch.zeros_like(q, dtype=torch.bool)
        lower = batch.mc_return.unsqueeze(-1)  # (K, B, 1) against q (n, K, B, N)
        return torch.maximum(q, lower), q < lower

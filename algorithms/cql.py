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
  share one backward pass (each parameter gets exactly its own loss's gradient).
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

from algorithms.base import Algorithm, Batch, check_non_negative, check_positive, check_unit_interval, register
from algorithms.common.encoder import EncoderConfig, encode_batch, make_encoder
from algorithms.common.networks import EnsembleCritic, TanhGaussianActor, soft_update, target_copy
from algorithms.common.optim import LeanAdam


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
    calibrate_online: bool = True  # Cal-QL only: keep the bound during fine-tuning (official); CORL: False

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

    def __init__(self, obs_spec, action_spec, config: CQLConfig, device):
        super().__init__(obs_spec, action_spec, config, device)
        self.encoder = make_encoder(obs_spec, config).to(self.device)  # identity for vector observations
        self.encoder_target = target_copy(self.encoder)
        obs_dim, act_dim = self.encoder.out_dim, action_spec.dim
        self.actor = TanhGaussianActor(obs_dim, act_dim, config.actor_hidden,
                                       log_std_affine=(1.0, -1.0) if config.log_std_affine else None,
                                       layer_norm=config.actor_layer_norm).to(self.device)
        self.critic = EnsembleCritic(obs_dim, act_dim, config.critic_hidden, config.n_critics,
                                     layer_norm=config.critic_layer_norm).to(self.device)
        self.critic_target = target_copy(self.critic)
        self.log_alpha = torch.zeros((), device=self.device, requires_grad=True)
        self.log_alpha_prime = torch.full((), config.cql_lagrange_init, device=self.device, requires_grad=True)
        self.actor_opt = LeanAdam(self.actor.parameters(), config.actor_lr)
        self.critic_opt = LeanAdam([*self.critic.parameters(), *self.encoder.parameters()],
                                  config.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], config.alpha_lr)
        self.alpha_prime_opt = torch.optim.Adam([self.log_alpha_prime], config.critic_lr)
        self.target_entropy = -float(act_dim) if config.target_entropy is None else config.target_entropy

    def policy(self, obs, deterministic):
        return self.actor(self.encoder(obs), deterministic)[0]

    @torch.no_grad()
    def policy_value(self, obs):
        features = self.encoder(obs)
        return self.critic(features, self.actor(features, True)[0]).min(0).values

    def bound_policy_q(self, q: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hook on the Q-values of policy actions in the push-down term; CQL leaves them as they are."""
        return q, None

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, next_obs = encode_batch(self.encoder, self.encoder_target, batch)  # features (DrQ)
        action, obs_actor = batch.action, obs.detach()  # the actor does not train the encoder
        B, N, A, n = obs.shape[0], cfg.cql_n_actions, self.action_spec.dim, self.critic.n

        # Every loss from the pre-update parameters (actor, temperature, critics, alpha'), then
        # every step, as the official code: the actor loss and the TD target use this alpha.
        pi_action, log_pi = self.actor(obs_actor)
        alpha_loss = self.temperature_loss(log_pi.detach())
        alpha = self.log_alpha.detach().exp()
        q_pi = self.critic(obs_actor, pi_action, frozen=True).min(0).values
        actor_loss = (alpha * log_pi - q_pi).mean()

        # Sampled actions: N each of uniform, pi(s), pi(s'); rows ordered (B, N).
        obs_rep = obs.repeat_interleave(N, 0)
        with torch.no_grad():
            next_obs_rep = next_obs.repeat_interleave(N, 0)
            cur_a, cur_logp = self.actor.sample(obs_actor, N)  # one actor pass per state, not per action
            next_a, next_logp = self.actor.sample(next_obs, N)
            rand_a = torch.empty(B * N, A, device=self.device).uniform_(-1, 1)

            # TD target: max over the N next actions of the min over critics (or one action).
            if cfg.cql_max_target_backup:
                q_next = self.critic_target(next_obs_rep, next_a).view(n, B, N)
                td_target = self.td_target(batch.reward, batch.done, q_next, next_logp.view(B, N), alpha)
            else:
                q_next = self.critic_target(next_obs, next_a.view(B, N, A)[:, 0]).unsqueeze(-1)
                td_target = self.td_target(batch.reward, batch.done, q_next, next_logp.view(B, N)[:, :1], alpha)

        # All critic evaluations in one pass: data actions, then uniform, pi(s), pi(s') at s.
        q_all = self.critic(torch.cat([obs, obs_rep, obs_rep, obs_rep]),
                            torch.cat([action, rand_a, cur_a, next_a]))
        q_data = q_all[:, :B]
        q_rand, q_cur, q_next_a = q_all[:, B:].view(n, 3, B, N).unbind(1)
        td_loss = ((q_data - td_target) ** 2).mean(1).sum()

        cql_gap, bound_rate = self.conservative_gap(q_data, q_rand, q_cur, q_next_a,
                                                    cur_logp.view(B, N), next_logp.view(B, N), batch)

        if cfg.cql_lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)
            cql_loss = alpha_prime.detach() * cfg.cql_alpha * (cql_gap - cfg.cql_target_action_gap)
            alpha_prime_loss = -alpha_prime * cfg.cql_alpha * (cql_gap.detach() - cfg.cql_target_action_gap).mean()
        else:
            alpha_prime = torch.ones((), device=self.device)
            cql_loss = cfg.cql_alpha * cql_gap
            alpha_prime_loss = None
        critic_loss = td_loss + cql_loss.sum()

        # The losses touch disjoint parameters (log_pi and the gaps are detached where another
        # loss reads them, the actor loss sees the critics as constants, the sampled actions carry
        # no graph), so one backward pass gives each its own gradient, as separate passes would.
        optimizers = [self.alpha_opt, self.actor_opt, self.critic_opt]
        total_loss = alpha_loss + actor_loss + critic_loss
        if alpha_prime_loss is not None:
            optimizers.append(self.alpha_prime_opt)
            total_loss = total_loss + alpha_prime_loss
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        total_loss.backward()
        for opt in optimizers:
            opt.step()
        soft_update(self.critic_target, self.critic, cfg.tau)
        soft_update(self.encoder_target, self.encoder, cfg.tau)

        metrics = {
            "critic_loss": critic_loss.detach(), "td_loss": td_loss.detach(),
            "cql_gap": cql_gap.detach().mean(), "actor_loss": actor_loss.detach(),
            "alpha": alpha, "alpha_prime": alpha_prime.detach(), "entropy": -log_pi.detach().mean(),
            "q_data": q_data.detach().mean(), "q_pi": q_pi.detach().mean(),
            "td_target": td_target.mean(),
        }
        if bound_rate is not None:
            metrics["bound_rate"] = bound_rate
        return metrics

    def temperature_loss(self, log_pi: torch.Tensor) -> torch.Tensor:
        """SAC's automatic entropy tuning: -E[log alpha (log pi(a|s) + target entropy)]."""
        return -(self.log_alpha * (log_pi + self.target_entropy)).mean()

    def td_target(self, reward, done, q_next, next_logp, alpha) -> torch.Tensor:
        """r + gamma (1 - d) max_j min_i Q_target_i(s', a'_j) (- alpha log pi(a'_j*|s') if
        backup_entropy, at the maximizing action j*). q_next: (n, B, N) over N next actions
        (N = 1 without the max backup); next_logp: (B, N)."""
        target_q, idx = q_next.min(0).values.max(1)
        if self.config.backup_entropy:
            target_q = target_q - alpha * next_logp.gather(1, idx[:, None]).squeeze(1)
        return reward + self.config.gamma * (1.0 - done) * target_q

    def conservative_gap(self, q_data, q_rand, q_cur, q_next, cur_logp, next_logp, batch):
        """CQL's push-down minus push-up term per critic: logsumexp over sampled actions of Q
        (importance-weighted) minus Q of the data action. Shapes: q_data (n, B); q_rand, q_cur,
        q_next (n, B, N) = Q(s, .) at uniform, pi(s) and pi(s') actions; logps (B, N).
        Returns ((n,) gaps, fraction of policy-action Q-values lifted by the bound or None)."""
        cfg, A = self.config, self.action_spec.dim
        q_cur, lifted_cur = self.bound_policy_q(q_cur, batch)
        q_next, lifted_next = self.bound_policy_q(q_next, batch)
        if cfg.cql_importance_sample:
            q_rand = q_rand - A * math.log(0.5)  # uniform density on [-1, 1]^A is 0.5^A
            q_cur = q_cur - cur_logp
            q_next = q_next - next_logp
        else:  # the variant without importance weights also scores the data action (CORL)
            q_rand = torch.cat([q_rand, q_data.unsqueeze(-1)], -1)
        q_cat = torch.cat([q_rand, q_cur, q_next], -1)
        q_ood = torch.logsumexp(q_cat / cfg.cql_temp, -1) * cfg.cql_temp
        gap = (q_ood - q_data).clamp(cfg.cql_clip_diff_min, cfg.cql_clip_diff_max).mean(1)
        if lifted_cur is None:
            return gap, None
        return gap, 0.5 * (lifted_cur.float().mean() + lifted_next.float().mean()).detach()


@dataclass
class CalQLConfig(CQLConfig):
    pass


@register("calql")
class CalQL(CQL):
    """Cal-QL: in the push-down term, Q(s, a~pi) is replaced by max(Q(s, a), V_ref(s)), with
    V_ref the Monte-Carlo return-to-go of the data's trajectory. Random actions are not bounded."""

    Config = CalQLConfig
    needs = frozenset({"mc_return"})

    def bound_policy_q(self, q, batch):
        if self.finetuning and not self.config.calibrate_online:
            return q, torch.zeros_like(q, dtype=torch.bool)
        lower = batch.mc_return.unsqueeze(-1)  # (B, 1) against q (n, B, N)
        return torch.maximum(q, lower), q < lower

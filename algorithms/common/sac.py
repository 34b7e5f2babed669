"""SAC's fine-tuning step, written once for the methods that fine-tune with it (RLPD from scratch,
WSRL from its Cal-QL pre-training): the critic's TD step and the actor's and temperature's step.
The method supplies its TD target (its own next-action draw and member subset) and how its actor
reads the ensemble (RLPD: the mean; WSRL: the min). Each loss is one per seed (K,), `minimize`."""
from __future__ import annotations

import torch

from algorithms.base import minimize, per_seed
from algorithms.common.networks import soft_update


def critic_step(algo, obs: torch.Tensor, action: torch.Tensor, td_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L_Q = mean_i E[(Q_i(s, a) - y)^2], one step of the critic (and encoder); the targets (critic
    and encoder) <- soft update (tau). Returns (L_Q (K,), Q (E, K, B) detached)."""
    q = algo.critic(obs, action)
    critic_loss = (q - td_target).square().mean((0, 2))
    minimize(algo.critic_opt, critic_loss)
    soft_update(algo.critic_target, algo.critic, algo.config.tau)
    soft_update(algo.encoder_target, algo.encoder, algo.config.tau)
    return critic_loss.detach(), q.detach()


def actor_objective(q_pi: torch.Tensor, log_pi: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """E[alpha log pi(a|s) - Q(s, a)] at a ~ pi(s); q_pi, log_pi: (K, B), alpha: (K,)."""
    return (per_seed(alpha) * log_pi - q_pi).mean(-1)


def temperature_loss(log_alpha: torch.Tensor, entropy: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """alpha (H - H_target) with alpha = exp(log_alpha) and H detached: the loss on alpha itself."""
    return log_alpha.exp() * (entropy - target_entropy)


def actor_step(algo, obs: torch.Tensor, alpha: torch.Tensor, ensemble: str,
               entropy: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One actor step on L_pi = E[alpha log pi(a|s) - Q(s, a)], a ~ pi(s), with Q the mean
    (`ensemble` "mean") or the min ("min") over the critics, then one temperature step on
    alpha (H - H_target): H = `entropy` when given (WSRL: at s'), else -E[log pi(a|s)] of this
    step. Returns the step's metrics (K,)."""
    pi_action, log_pi = algo.actor(obs, algo.rng)
    q_all = algo.critic(obs, pi_action, frozen=True)
    q_pi = q_all.mean(0) if ensemble == "mean" else q_all.min(0).values
    actor_loss = actor_objective(q_pi, log_pi, alpha)
    minimize(algo.actor_opt, actor_loss)
    entropy = -log_pi.detach().mean(-1) if entropy is None else entropy
    alpha_loss = temperature_loss(algo.log_alpha, entropy, algo.target_entropy)
    minimize(algo.alpha_opt, alpha_loss)
    q_metric = q_all.detach().mean((0, 2)) if ensemble == "mean" else q_pi.detach().mean(-1)
    return {"actor_loss": actor_loss.detach(), "entropy": entropy, "alpha": alpha, "alpha_loss": alpha_loss.detach(),
            "q_pi": q_metric}

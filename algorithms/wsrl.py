"""WSRL, Warm-Start RL (Zhou, Peng, Li, Levine and Kumar, "Efficient Online Reinforcement Learning
Fine-Tuning Need Not Retain Offline Data", 2024): Cal-QL pre-training with a LayerNorm critic
ensemble, then the offline data is dropped (replay mode "online"), a warm-up of frozen-policy
steps fills the online buffer (`protocol.warmup_steps`, `warmup_policy: policy`), and the
pre-trained networks are fine-tuned with plain SAC at a raised UTD ratio (`protocol.utd`).

Checked against the official code (zhouzypaul/wsrl: `wsrl/agents/sac.py`, `wsrl/agents/cql.py`,
`experiments/configs/{sac,wsrl,cql}_config.py`, `ensemble_config.py`, `train_config.py`,
`experiments/scripts/*/launch_{calql,wsrl}_finetune.sh`, `finetune.py`).
Pre-training is this repository's Cal-QL (`algorithms.cql.CalQL`, the official Cal-QL code) run
with WSRL's `--use_redq` ensemble: E = n_critics LayerNorm critics and a LayerNorm policy, and
per update `critic_subsample` members drawn with replacement for the TD target's min and, drawn
again, for the conservative term (the hooks below: only the drawn members' Q-values are computed
there, and Cal-QL's `bound_rate` is over them). Fine-tuning, per call on one batch:
  1. critic: a'_j ~ pi(s') (j = 1..N; N = cql_n_actions with online_max_target_backup, else 1),
             Z = critic_subsample members drawn with replacement,
             y = r + gamma (1 - d) max_j min_{i in Z} Q_target_i(s', a'_j);
             L_Q = mean_i E[(Q_i(s, a) - y)^2];  targets <- soft update (tau)
  2. every `actor_every` calls (default protocol.utd: the official `update_high_utd` steps the actor and
     temperature once per env step, on the whole batch its UTD critic minibatches came from),
     on the concatenation of those calls' batches, from the same parameters:
             L_pi = E[alpha log pi(a|s) - min_i Q_i(s, a)]      (min over all E critics), a ~ pi(s)
             L_alpha = alpha (H - H_target),  H = -E[log pi(a'|s')] at fresh a' ~ pi(s'), H_target = -|A|

Deviations from the official code:
- Pre-training is this repository's Cal-QL (the official Cal-QL code: its policy's log-std a
  learned scale and offset of a state-dependent head, its update order, its temperature and
  Lagrange parameterizations), not WSRL's jaxrl re-implementation (AntMaze: a state-independent
  std; stds clipped to [1e-5, 10]; softplus multipliers). Its losses
  sum over the ensemble members where WSRL averages (a per-member gradient scale Adam removes).
- The temperature keeps Cal-QL's exp(log alpha) parameterization online; WSRL's is softplus
  (the loss alpha (H - H_target) is the same; its gradient differs by d alpha / d parameter).
- The optimizers' states carry over from pre-training, as WSRL's restore of the pre-training
  checkpoint (flax TrainState, optimizer states included) into its SAC agent; Cal-QL's Lagrange
  multiplier is not used online.
- Weights are initialized as Cal-QL's here (orthogonal, gain sqrt 2, output layers 1e-2); WSRL's
  MLP puts its 1e-2 scale (`kernel_scale_final`, AntMaze and Adroit) on the last hidden layer,
  right before a LayerNorm, and gain sqrt 2 on the output layer.
- Updates start after `warmup_steps` env steps (WSRL: after max(warmup_steps, batch_size) + 1).
- Online transitions enter replay when their episode ends (the harness's replay); WSRL's buffer
  inserts each step at once.
- Metrics of the actor step are those of the latest actor update (every call logs the same keys).
- K seeds train as one batched model (`algorithms.common.networks`: every tensor has a leading
  seed dim, each seed draws its members from its own stream).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from algorithms.base import Batch, check_follower, register
from algorithms.common import sac
from algorithms.common.encoder import encode_batch
from algorithms.common.networks import sample_members
from algorithms.cql import CalQL, CalQLConfig


@dataclass
class WSRLConfig(CalQLConfig):
    n_critics: int = 10  # WSRL's ensemble (ensemble_config.py), in both phases
    actor_layer_norm: bool = True
    critic_layer_norm: bool = True
    critic_subsample: int | None = 2  # members drawn (with replacement) per update for the target's min and the CQL term; None: all
    online_max_target_backup: bool = False  # fine-tuning target: max over cql_n_actions sampled a' (AntMaze: on)
    # fine-tuning: critic steps per actor and temperature step; null: the job's protocol.utd (once per
    # env step, as the official `update_high_utd`), filled in by the harness
    actor_every: int | None = field(default=None, metadata={"protocol": "utd"})

    def __post_init__(self):
        super().__post_init__()
        check_follower(self, "actor_every")
        if self.critic_subsample is not None and self.critic_subsample <= 0:
            raise ValueError(f"WSRLConfig.critic_subsample must be > 0 or null, got {self.critic_subsample}")


@register("wsrl")
class WSRL(CalQL):
    Config = WSRLConfig

    def __init__(self, obs_spec, action_spec, config: WSRLConfig, device, rng=None):
        super().__init__(obs_spec, action_spec, config, device, rng)
        self.block: list[Batch] = []  # this env step's fine-tuning batches, for the actor step
        self.last_actor = {k: torch.zeros(self.n_seeds, device=self.device)
                           for k in ("actor_loss", "entropy", "alpha", "alpha_loss", "q_pi")}

    # -- pre-training: Cal-QL with the ensemble subsampled in its two hooks ------------------
    def drawn_members(self, device) -> torch.Tensor | None:
        """critic_subsample members per seed, drawn with replacement (None: every member)."""
        k = self.config.critic_subsample
        return None if k is None else sample_members(self.critic.n, k, True, self.rng, device)

    def target_values(self, next_obs, next_action) -> torch.Tensor:
        """Q_target(s', a') of a random subset of members, the only ones the target's min reads
        (Cal-QL's target is then the max over next actions of the min over them)."""
        return self.critic_target(next_obs, next_action, members=self.drawn_members(next_obs.device))

    def conservative_members(self, device) -> torch.Tensor | None:
        """The conservative term's members: another random subset (WSRL's `_get_cql_q_diff`)."""
        return self.drawn_members(device)

    def critic_values(self, obs, action, obs_rep, uniform_a, pi_s_a, pi_next_a, members=None):
        """Q at the data actions from every member (the TD loss); at the sampled actions only from
        the conservative term's `members`: the gap of the other members is never used, so it is
        not computed."""
        if members is None:  # every member: Cal-QL's one pass
            return super().critic_values(obs, action, obs_rep, uniform_a, pi_s_a, pi_next_a)
        q_data = self.critic(obs, action)
        sampled = self.critic(obs_rep.repeat(1, 3, 1), torch.cat([uniform_a, pi_s_a, pi_next_a], 1), members=members)
        return q_data, *sampled.chunk(3, -1)

    # -- fine-tuning: SAC -------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        if not self.finetuning:
            return super().update(batch)
        cfg = self.config
        obs, next_obs = encode_batch(self.encoder, self.encoder_target, batch, self.rng)  # features (DrQ)
        B, N = obs.shape[1], cfg.cql_n_actions if cfg.online_max_target_backup else 1
        alpha = self.log_alpha.detach().exp()  # (K,)

        # 1. Critic.
        with torch.no_grad():
            next_a, next_logp = self.actor.sample(next_obs, N, self.rng)
            q_next = self.target_values(next_obs.repeat_interleave(N, 1), next_a).unflatten(-1, (B, N))
            td_target = self.td_target(batch.reward, batch.done, q_next, next_logp.unflatten(-1, (B, N)), alpha)
        critic_loss, q = sac.critic_step(self, obs, batch.action, td_target)  # SAC's, `algorithms.common.sac`

        # 2. Actor and temperature on this env step's batches, once every actor_every calls.
        self.block.append(batch)
        if len(self.block) == cfg.actor_every:
            block = Batch(**{f.name: torch.cat([getattr(b, f.name) for b in self.block], 1)
                             for f in dataclasses.fields(Batch) if getattr(batch, f.name) is not None})
            self.block = []
            self.actor_step(block, alpha)

        return {"critic_loss": critic_loss, "q_data": q.mean((0, 2)),
                "td_target": td_target.mean(-1), **self.last_actor}

    def actor_step(self, block: Batch, alpha: torch.Tensor) -> None:
        cfg = self.config
        with torch.no_grad():
            obs = self.encoder(block.obs, self.rng)  # augmented; the actor does not train the encoder
            next_obs = self.encoder_target(block.next_obs, self.rng)
            # the temperature's entropy at s', from the policy before this actor step
            _, next_logp = self.actor.sample(next_obs, cfg.cql_n_actions if cfg.online_max_target_backup else 1,
                                             self.rng)
        # SAC's actor step, the actor reading the ensemble's min, the temperature's entropy at s'
        self.last_actor = sac.actor_step(self, obs, alpha, "min", entropy=-next_logp.mean(-1))

    def online_temperature_loss(self, entropy: torch.Tensor) -> torch.Tensor:
        """alpha (H - H_target), H detached (WSRL's Lagrange penalty on the temperature)."""
        return sac.temperature_loss(self.log_alpha, entropy, self.target_entropy)

    # -- checkpoints: a block cut by a checkpoint continues after a resume -------------------
    def state_dict(self):
        state = super().state_dict()
        state["block"] = [{k: v for k, v in vars(b).items()} for b in self.block]
        return state

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.block = [Batch(**b) for b in state["block"]]

"""AWAC equations on fixed tensors: the SAC-style TD target (min over target critics at a policy
action, no entropy), advantage weights exp(A / lambda) clipped, and the weighted log-likelihood."""
import math

import torch
from torch.distributions import Normal

import algorithms
from algorithms import ActionSpec, Batch, ObsSpec
from tests.algorithms.helpers import approx


def make(**hp):
    torch.manual_seed(0)
    return algorithms.make("awac", ObsSpec((3,)), ActionSpec(2), {"actor_hidden": (8,), "critic_hidden": (8,), **hp})


def test_td_target_uses_the_min_over_target_critics_and_no_entropy():
    awac = make(gamma=0.9)
    next_q = torch.tensor([[1.0, 4.0, 2.0], [3.0, -2.0, 7.0]])  # (n=2, B=3)
    out = awac.td_target(torch.tensor([0.5, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0]), next_q)
    assert out.tolist() == approx([0.5 + 0.9 * 1.0, 0.9 * -2.0, -1.0])


def test_advantage_weights_are_exp_adv_over_lambda_clipped():
    awac = make(awac_lambda=0.1, max_weight=100.0)
    q_data = torch.tensor([[1.0, 0.0, 2.0], [1.5, 0.2, 3.0]])  # min: 1.0, 0.0, 2.0
    q_pi = torch.tensor([[1.2, -0.1, 0.0], [0.9, 0.3, 0.5]])  # min: 0.9, -0.1, 0.0
    expected = [math.exp(0.1 / 0.1), math.exp(0.1 / 0.1), 100.0]  # exp(20) clipped
    assert awac.advantage_weights(q_data, q_pi).tolist() == approx(expected)


def test_actor_loss_is_the_weighted_negative_log_likelihood_of_data_actions():
    awac = make(awac_lambda=1.0)
    g = torch.Generator().manual_seed(2)
    B = 5
    batch = Batch(obs=torch.randn(1, B, 3, generator=g), action=torch.rand(1, B, 2, generator=g) * 2 - 1,
                  reward=torch.randn(1, B, generator=g), next_obs=torch.randn(1, B, 3, generator=g),
                  done=torch.zeros(1, B))
    torch.manual_seed(5)
    before = {k: v.clone() for k, v in awac.actor.state_dict().items()}
    m = awac.update(batch)
    # replay the step's randomness: next actions (critic), then policy actions (actor)
    fresh = make(awac_lambda=1.0)
    fresh.actor.load_state_dict(before)
    torch.manual_seed(5)
    with torch.no_grad():
        fresh.actor(batch.next_obs, fresh.rng)
        pi_a, _ = fresh.actor(batch.obs, fresh.rng)
        q_d, q_p = awac.critic(batch.obs, batch.action), awac.critic(batch.obs, pi_a)  # critics after their step
        w = torch.exp(torch.minimum(q_d[0], q_d[1]) - torch.minimum(q_p[0], q_p[1])).clamp(max=100)
        logp = Normal(torch.tanh(fresh.actor.net(batch.obs)), fresh.actor.log_std.exp()).log_prob(batch.action).sum(-1)
    assert m["actor_loss"].item() == approx(-(w * logp).mean().item())

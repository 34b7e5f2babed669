"""IQL equations on fixed tensors: expectile value loss, clipped exponentiated-advantage weights,
the TD target through V(s'), and one full update against the paper's losses computed here."""
import math

import torch
from torch.distributions import Normal

import algorithms
from algorithms import ActionSpec, Batch, ObsSpec
from tests.algorithms.helpers import approx


def make(**hp):
    torch.manual_seed(0)
    return algorithms.make("iql", ObsSpec((3,)), ActionSpec(2),
                           {"actor_hidden": (8,), "critic_hidden": (8,), "value_hidden": (8,), **hp})


def test_expectile_loss_weights_positive_and_negative_errors_asymmetrically():
    iql = make(expectile=0.9)
    diff = torch.tensor([2.0, -1.0, 0.5, -3.0])  # u = Q - V
    expected = (0.9 * 4 + 0.1 * 1 + 0.9 * 0.25 + 0.1 * 9) / 4
    assert iql.expectile_loss(diff).item() == approx(expected)
    assert make(expectile=0.5).expectile_loss(diff).item() == approx(0.5 * (4 + 1 + 0.25 + 9) / 4)


def test_advantage_weights_are_exp_beta_adv_clipped_at_max_weight():
    iql = make(beta=3.0, max_weight=100.0)
    adv = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    expected = [math.exp(-3.0), 1.0, math.exp(1.5), 100.0]  # exp(6) = 403 is clipped
    assert iql.advantage_weights(adv).tolist() == approx(expected)


def test_td_target_bootstraps_from_v_of_next_state_unless_terminal():
    iql = make(gamma=0.9)
    out = iql.td_target(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1.0]), torch.tensor([2.0, 5.0]))
    assert out.tolist() == approx([1.0 + 0.9 * 2.0, -1.0])


def test_one_update_reports_the_papers_three_losses():
    iql = make(expectile=0.8, beta=2.0, gamma=0.95)
    g = torch.Generator().manual_seed(1)
    B = 6
    batch = Batch(obs=torch.randn(1, B, 3, generator=g), action=torch.rand(1, B, 2, generator=g) * 2 - 1,
                  reward=torch.randn(1, B, generator=g), next_obs=torch.randn(1, B, 3, generator=g),
                  done=torch.tensor([[0.0, 1.0, 0.0, 0.0, 1.0, 0.0]]))
    with torch.no_grad():  # everything from the networks before the step
        q_t = iql.critic_target(batch.obs, batch.action)
        q_target = torch.minimum(q_t[0], q_t[1])
        v, next_v = iql.value(batch.obs), iql.value(batch.next_obs)
        u = q_target - v
        value_loss = sum((0.8 if x >= 0 else 0.2) * x ** 2 for x in u[0].tolist()) / B
        w = torch.exp(2.0 * u).clamp(max=100.0)
        mean, std = torch.tanh(iql.actor.net(batch.obs)), iql.actor.log_std.exp()
        logp = Normal(mean, std).log_prob(batch.action).sum(-1)
        actor_loss = -(w * logp).mean().item()
        y = batch.reward + 0.95 * (1 - batch.done) * next_v
        q = iql.critic(batch.obs, batch.action)
        critic_loss = (((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()).item()
    m = iql.update(batch)
    assert m["value_loss"].item() == approx(value_loss)
    assert m["actor_loss"].item() == approx(actor_loss)
    assert m["critic_loss"].item() == approx(critic_loss)

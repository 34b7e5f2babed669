"""CQL / Cal-QL equations on fixed tensors: the calibrated bound and the conservative gap."""
import math

import pytest
import torch

import algorithms
from algorithms import ActionSpec, Batch, ObsSpec


def make(name, **hp):
    return algorithms.make(name, ObsSpec((3,)), ActionSpec(2), {"actor_hidden": (8,), "critic_hidden": (8,), **hp})


def fixed_batch(mc_return):
    """One seed's batch (leading seed dim 1)."""
    B = len(mc_return)
    z = torch.zeros(1, B, 3)
    return Batch(obs=z, action=torch.zeros(1, B, 2), reward=torch.zeros(1, B), next_obs=z, done=torch.zeros(1, B),
                 mc_return=torch.tensor([mc_return]))


def test_calql_bound_lifts_only_q_values_below_the_reference_return():
    calql = make("calql")
    batch = fixed_batch([0.0, -5.0])
    q = torch.tensor([[[[-1.0, 2.0], [-7.0, -3.0]]]])  # (n=1, K=1, B=2, N=2)
    bounded, lifted = calql.bound_policy_q(q, batch)
    assert torch.equal(bounded, torch.tensor([[[[0.0, 2.0], [-5.0, -3.0]]]]))
    assert torch.equal(lifted, torch.tensor([[[[True, False], [True, False]]]]))


def test_cql_leaves_policy_q_values_alone():
    q = torch.randn(2, 1, 4, 3)
    out, lifted = make("cql").bound_policy_q(q, fixed_batch([0.0] * 4))
    assert torch.equal(out, q) and lifted is None


def test_calql_bound_switches_off_online_when_configured():
    calql = make("calql", calibrate_online=False)
    q = torch.full((1, 1, 1, 2), -10.0)
    calql.on_finetune_start()
    out, lifted = calql.bound_policy_q(q, fixed_batch([0.0]))
    assert torch.equal(out, q) and not lifted.any()
    kept = make("calql")  # the official default keeps it on
    kept.on_finetune_start()
    assert torch.equal(kept.bound_policy_q(q, fixed_batch([0.0]))[0], torch.zeros(1, 1, 1, 2))
    with pytest.raises(ValueError, match="calibrate_online"):  # a Cal-QL option, not CQL's
        make("cql", calibrate_online=False)


def test_conservative_gap_matches_the_equation_and_random_actions_stay_unbounded():
    """gap = logsumexp([Q_rand - log 0.5^A, max(Q_cur, V) - logp_cur, max(Q_next, V) - logp_next]) - Q_data"""
    calql, cql = make("calql"), make("cql")
    q_data = torch.tensor([[[1.0]]])  # (n=1, K=1, B=1)
    q_uniform = torch.tensor([[[[-9.0, 0.5]]]])  # below the bound, but uniform actions are never lifted
    q_pi_s = torch.tensor([[[[-9.0, 0.2]]]])
    q_pi_next = torch.tensor([[[[0.1, -8.0]]]])
    logp_s, logp_next = torch.tensor([[[0.3, -0.1]]]), torch.tensor([[[0.0, 0.4]]])
    v_ref = -1.0
    batch = fixed_batch([v_ref])
    gap, rate = calql.conservative_gap(q_data, q_uniform, q_pi_s, q_pi_next, logp_s, logp_next, batch)
    A = 2
    terms = [-9.0 - A * math.log(0.5), 0.5 - A * math.log(0.5),
             max(-9.0, v_ref) - 0.3, max(0.2, v_ref) + 0.1,
             max(0.1, v_ref) - 0.0, max(-8.0, v_ref) - 0.4]
    expected = math.log(sum(math.exp(t) for t in terms)) - 1.0
    assert gap.item() == pytest_approx(expected)
    assert rate.item() == pytest_approx(0.5)  # 2 of the 4 policy-action values were lifted
    gap_cql, rate_cql = cql.conservative_gap(q_data, q_uniform, q_pi_s, q_pi_next, logp_s, logp_next, batch)
    terms_cql = terms[:2] + [-9.0 - 0.3, 0.2 + 0.1, 0.1, -8.0 - 0.4]
    assert gap_cql.item() == pytest_approx(math.log(sum(math.exp(t) for t in terms_cql)) - 1.0)
    assert rate_cql is None


def pytest_approx(x):
    import pytest

    return pytest.approx(x, rel=1e-5, abs=1e-6)


def test_td_target_is_max_over_sampled_actions_of_min_over_critics():
    """y = r + gamma (1 - d) max_j min_i Q'_i(s', a'_j), with the entropy of a'_j* if backup_entropy."""
    cql = make("cql", gamma=0.9)
    q_next = torch.tensor([[[1.0, 5.0, 2.0], [0.0, 0.0, 9.0]],  # critic 1, (B=2, N=3)
                           [[3.0, 4.0, 6.0], [1.0, -1.0, -3.0]]])  # critic 2
    # min over critics: [[1, 4, 2], [0, -1, -3]] -> max over actions: [4 (j=1), 0 (j=0)]
    logp = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    reward, done = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    out = cql.td_target(reward, done, q_next, logp, alpha=torch.tensor(0.5))
    assert out.tolist() == pytest_approx([1.0 + 0.9 * 4.0, 2.0])
    ent = make("cql", gamma=0.9, backup_entropy=True)
    out = ent.td_target(reward, torch.zeros(2), q_next, logp, alpha=torch.tensor(0.5))
    assert out.tolist() == pytest_approx([1.0 + 0.9 * (4.0 - 0.5 * 0.2), 2.0 + 0.9 * (0.0 - 0.5 * 0.4)])


def test_temperature_loss_pushes_entropy_towards_the_target():
    """L(alpha) = -E[log alpha (log pi + target_entropy)], target entropy -|A| by default."""
    cql = make("cql")
    with torch.no_grad():
        cql.log_alpha.fill_(0.3)
    log_pi = torch.tensor([-1.0, 0.5, -3.0])
    loss = cql.temperature_loss(log_pi)
    assert loss.item() == pytest_approx(-0.3 * sum(x - 2.0 for x in log_pi.tolist()) / 3)
    loss.backward()  # dL/dlog_alpha = -E[log pi + target]: alpha grows while the entropy is below target
    assert cql.log_alpha.grad.item() == pytest_approx(-sum(x - 2.0 for x in log_pi.tolist()) / 3)


def test_update_with_few_sampled_actions_gives_finite_losses():
    cql = make("cql", cql_n_actions=3)
    g = torch.Generator().manual_seed(3)
    B = 4
    batch = Batch(obs=torch.randn(1, B, 3, generator=g), action=torch.rand(1, B, 2, generator=g) * 2 - 1,
                  reward=torch.randn(1, B, generator=g), next_obs=torch.randn(1, B, 3, generator=g),
                  done=torch.zeros(1, B))
    torch.manual_seed(0)
    m = cql.update(batch)
    assert m["td_loss"].item() >= 0 and torch.isfinite(m["critic_loss"])

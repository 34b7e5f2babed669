"""CQL / Cal-QL equations on fixed tensors: the calibrated bound and the conservative gap."""
import math

import torch

import algorithms
from algorithms import ActionSpec, Batch, ObsSpec


def make(name, **hp):
    return algorithms.make(name, ObsSpec((3,)), ActionSpec(2), {"actor_hidden": (8,), "critic_hidden": (8,), **hp})


def fixed_batch(mc_return):
    B = len(mc_return)
    z = torch.zeros(B, 3)
    return Batch(obs=z, action=torch.zeros(B, 2), reward=torch.zeros(B), next_obs=z, done=torch.zeros(B),
                 mc_return=torch.tensor(mc_return))


def test_calql_bound_lifts_only_q_values_below_the_reference_return():
    calql = make("calql")
    batch = fixed_batch([0.0, -5.0])
    q = torch.tensor([[[-1.0, 2.0], [-7.0, -3.0]]])  # (n=1, B=2, N=2)
    bounded, lifted = calql.bound_policy_q(q, batch)
    assert torch.equal(bounded, torch.tensor([[[0.0, 2.0], [-5.0, -3.0]]]))
    assert torch.equal(lifted, torch.tensor([[[True, False], [True, False]]]))


def test_cql_leaves_policy_q_values_alone():
    q = torch.randn(2, 4, 3)
    out, lifted = make("cql").bound_policy_q(q, fixed_batch([0.0] * 4))
    assert torch.equal(out, q) and lifted is None


def test_calql_bound_switches_off_online_when_configured():
    calql = make("calql", calibrate_online=False)
    q = torch.full((1, 1, 2), -10.0)
    calql.on_finetune_start()
    out, lifted = calql.bound_policy_q(q, fixed_batch([0.0]))
    assert torch.equal(out, q) and not lifted.any()
    kept = make("calql")  # the official default keeps it on
    kept.on_finetune_start()
    assert torch.equal(kept.bound_policy_q(q, fixed_batch([0.0]))[0], torch.zeros(1, 1, 2))


def test_conservative_gap_matches_the_equation_and_random_actions_stay_unbounded():
    """gap = logsumexp([Q_rand - log 0.5^A, max(Q_cur, V) - logp_cur, max(Q_next, V) - logp_next]) - Q_data"""
    calql, cql = make("calql"), make("cql")
    q_data = torch.tensor([[1.0]])
    q_rand = torch.tensor([[[-9.0, 0.5]]])  # below the bound, but uniform actions are never lifted
    q_cur = torch.tensor([[[-9.0, 0.2]]])
    q_next = torch.tensor([[[0.1, -8.0]]])
    logp_cur, logp_next = torch.tensor([[0.3, -0.1]]), torch.tensor([[0.0, 0.4]])
    v_ref = -1.0
    batch = fixed_batch([v_ref])
    gap, rate = calql.conservative_gap(q_data, q_rand, q_cur, q_next, logp_cur, logp_next, batch)
    A = 2
    terms = [-9.0 - A * math.log(0.5), 0.5 - A * math.log(0.5),
             max(-9.0, v_ref) - 0.3, max(0.2, v_ref) + 0.1,
             max(0.1, v_ref) - 0.0, max(-8.0, v_ref) - 0.4]
    expected = math.log(sum(math.exp(t) for t in terms)) - 1.0
    assert gap.item() == pytest_approx(expected)
    assert rate.item() == pytest_approx(0.5)  # 2 of the 4 policy-action values were lifted
    gap_cql, rate_cql = cql.conservative_gap(q_data, q_rand, q_cur, q_next, logp_cur, logp_next, batch)
    terms_cql = terms[:2] + [-9.0 - 0.3, 0.2 + 0.1, 0.1, -8.0 - 0.4]
    assert gap_cql.item() == pytest_approx(math.log(sum(math.exp(t) for t in terms_cql)) - 1.0)
    assert rate_cql is None


def pytest_approx(x):
    import pytest

    return pytest.approx(x, rel=1e-5, abs=1e-6)

"""CQL / Cal-QL equations on fixed tensors: the calibrated bound, the conservative gap, the
update order and the policy's log-std."""
import copy
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


def random_batch(B=6, seed=3):
    """One seed's batch (leading seed dim 1)."""
    g = torch.Generator().manual_seed(seed)
    return Batch(obs=torch.randn(1, B, 3, generator=g), action=torch.rand(1, B, 2, generator=g) * 2 - 1,
                 reward=torch.randn(1, B, generator=g), next_obs=torch.randn(1, B, 3, generator=g),
                 done=(torch.rand(1, B, generator=g) < 0.3).float(), mc_return=torch.randn(1, B, generator=g))


@pytest.mark.parametrize("name,lagrange", [("cql", False), ("calql", True)])
def test_one_update_computes_every_loss_from_the_pre_update_parameters(name, lagrange):
    """As the official code: the critic loss (TD target with alpha log pi, the CQL gap over uniform,
    pi(s) and pi(s') actions) and the actor loss are those of the pre-update actor and temperature,
    and the actor's gradient is that of the pre-update actor loss. Large learning rates make a
    one-step lag visible."""
    N, A, gamma, w = 3, 2, 0.9, 5.0
    algo = make(name, cql_n_actions=N, gamma=gamma, cql_alpha=w, backup_entropy=True, cql_lagrange=lagrange,
                actor_lr=0.1, alpha_lr=0.1, critic_lr=0.1)
    with torch.no_grad():
        algo.log_alpha.fill_(-0.7)
    b = random_batch()
    B = b.obs.shape[1]
    before = copy.deepcopy(algo)
    torch.manual_seed(0)
    m = algo.update(b)

    torch.manual_seed(0)  # replay the update's draws, in its order, on the pre-update networks
    alpha = before.log_alpha.exp().detach()
    pi_a, log_pi = before.actor(b.obs, before.rng)
    actor_loss = (alpha * log_pi - before.critic(b.obs, pi_a).min(0).values).mean()
    actor_grads = torch.autograd.grad(actor_loss, list(before.actor.parameters()))
    with torch.no_grad():
        cur_a, cur_logp = before.actor.sample(b.obs, N, before.rng)
        next_a, next_logp = before.actor.sample(b.next_obs, N, before.rng)
        rand_a = torch.empty(B * N, A).uniform_(-1, 1)[None]
        q_t = before.critic_target(b.next_obs.repeat_interleave(N, 1), next_a).view(2, B, N).min(0).values
        j = q_t.argmax(1, keepdim=True)
        y = b.reward[0] + gamma * (1 - b.done[0]) * (q_t.gather(1, j) - alpha * next_logp.view(B, N).gather(1, j)).squeeze(1)
        q_data = before.critic(b.obs, b.action).view(2, B)
        rep = b.obs.repeat_interleave(N, 1)
        q_cur, q_nxt = before.critic(rep, cur_a).view(2, B, N), before.critic(rep, next_a).view(2, B, N)
        if name == "calql":
            q_cur, q_nxt = (torch.maximum(q, b.mc_return[0][:, None]) for q in (q_cur, q_nxt))
        ood = torch.logsumexp(torch.cat([before.critic(rep, rand_a).view(2, B, N) - A * math.log(0.5),
                                         q_cur - cur_logp.view(B, N), q_nxt - next_logp.view(B, N)], -1), -1)
        gap = (ood - q_data).mean(1)  # (2,) one per critic
        weight = w * before.log_alpha_prime.exp() if lagrange else w
        cql = (weight * (gap - before.config.cql_target_action_gap)) if lagrange else weight * gap
        critic_loss = ((q_data - y) ** 2).mean(1).sum() + cql.sum()

    assert m["critic_loss"].item() == pytest_approx(critic_loss.item())
    assert m["actor_loss"].item() == pytest_approx(actor_loss.item())
    assert m["alpha"].item() == pytest_approx(alpha.item())
    for got, want in zip(algo.actor.parameters(), actor_grads):
        torch.testing.assert_close(got.grad, want)
    # and every parameter moved: temperature, actor, critics (and alpha' with the Lagrange form)
    assert algo.log_alpha.item() != before.log_alpha.item()
    assert algo.log_alpha_prime.item() != before.log_alpha_prime.item() if lagrange else True
    assert not torch.equal(algo.critic.out.weight, before.critic.out.weight)


def test_policy_log_std_is_a_learned_scale_and_offset_of_the_head():
    """log sigma = a * head + b, a, b learned from 1 and -1 (official TanhGaussianPolicy): in the
    state dict, trained with the actor; a zero head gives sigma = e^-1, the fresh policy about that."""
    cql = make("cql", actor_lr=0.1)
    state = cql.actor.state_dict()
    assert state["log_std_scale"].item() == 1.0 and state["log_std_offset"].item() == -1.0
    obs = torch.randn(1, 64, 3)
    sigma = cql.actor.distribution(obs)[1]
    assert sigma.mean().item() == pytest.approx(math.exp(-1), rel=0.05)  # fresh head: raw output ~0
    with torch.no_grad():
        head = cql.actor.net.layers[-1]
        head.weight.zero_()
        head.bias.zero_()
        head.bias[0, 2:] = 0.5  # the log-std half of the head
    assert cql.actor.distribution(obs)[1].flatten().tolist() == pytest_approx([math.exp(0.5 - 1)] * 128)
    with torch.no_grad():
        cql.actor.log_std_scale.fill_(2.0)
    assert cql.actor.distribution(obs)[1][0, 0].tolist() == pytest_approx([1.0] * 2)  # 2 * 0.5 - 1
    torch.manual_seed(0)
    cql.update(random_batch())
    assert cql.actor.log_std_scale.grad is not None and cql.actor.log_std_offset.grad.abs().item() > 0
    assert cql.actor.log_std_scale.item() != 2.0 and cql.actor.log_std_offset.item() != -1.0
    other = make("cql")
    other.load_state_dict(cql.state_dict())
    assert other.actor.log_std_offset.item() == cql.actor.log_std_offset.item()
    raw = make("cql", log_std_affine=False)  # the raw head: sigma ~1 at initialisation
    assert "log_std_scale" not in raw.actor.state_dict()
    assert raw.actor.distribution(obs)[1].mean().item() == pytest.approx(1.0, rel=0.05)

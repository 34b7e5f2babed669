"""WSRL equations on fixed tensors, against the paper's / official code's: pre-training is Cal-QL's
update (identical with the ensemble subsampling off), with the TD target's min and the conservative
term each on members drawn with replacement; fine-tuning is SAC without the conservative term: the
critic loss averaged over members and batch, the target's max over sampled next actions of the
subsampled min, the actor objective with the min over all members on the concatenated batches of
one env step, the temperature loss alpha (H - H_target) with H measured at s', and a block cut by a
checkpoint continuing exactly after a restore. One seed (leading seed dim 1)."""
import copy
from functools import partial

import torch

import algorithms
from algorithms import ActionSpec, Batch, ObsSpec
from tests.algorithms.helpers import approx, random_batch

A = 2


def make(name="wsrl", **hp):
    torch.manual_seed(0)
    return algorithms.make(name, ObsSpec((3,)), ActionSpec(A),
                           {"actor_hidden": (8,), "critic_hidden": (8, 8), "cql_n_actions": 3,
                            **({"actor_every": 4} if name == "wsrl" else {}), **hp})


batch = partial(random_batch, act_dim=A, mc_return=True)  # Cal-QL's side reads Monte-Carlo returns


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_pretraining_is_calqls_update():
    wsrl = make(n_critics=2, critic_subsample=None, actor_layer_norm=False, critic_layer_norm=False)
    calql = make("calql", n_critics=2)
    for seed in range(3):
        torch.manual_seed(seed)
        mw = wsrl.update(batch(seed=seed))
        torch.manual_seed(seed)
        mc = calql.update(batch(seed=seed))
        assert {k: v.tolist() for k, v in mw.items()} == {k: v.tolist() for k, v in mc.items()}
    assert same(params(wsrl.critic), params(calql.critic)) and same(params(wsrl.actor), params(calql.actor))


def test_layer_norm_ensemble_of_ten_by_default():
    wsrl = make()
    assert wsrl.critic.n == 10 and wsrl.critic.norms is not None
    assert wsrl.actor.net.norms is not None


Q_NEXT = torch.tensor([[[5.0, 6.0], [1.0, 0.0]], [[2.0, 1.0], [4.0, 3.0]], [[3.0, 9.0], [0.5, 2.0]]])  # (E=3, B=2, N=2)
Q_NEXT_K = Q_NEXT[:, None]  # (E, K=1, B, N)


def test_td_target_is_max_over_actions_of_min_over_members_drawn_with_replacement():
    """Only the drawn members of the target critic are computed; the target is Cal-QL's on them."""
    wsrl, calql = make(n_critics=3, critic_subsample=2, gamma=0.9), make("calql", n_critics=3, gamma=0.9)
    g = torch.Generator().manual_seed(0)
    next_obs, next_action = torch.randn(1, 4, 3, generator=g), torch.rand(1, 4, A, generator=g) * 2 - 1
    seen = set()
    with torch.no_grad():
        every = wsrl.critic_target(next_obs, next_action)
        for seed in range(30):
            torch.manual_seed(seed)
            idx = torch.randint(0, 3, (2,))
            seen.add(idx[0].item() == idx[1].item())
            torch.manual_seed(seed)
            torch.testing.assert_close(wsrl.target_values(next_obs, next_action), every[idx])
    assert seen == {True, False}  # with replacement: the same member twice happens
    reward, done = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])
    out = wsrl.td_target(reward[None], done[None], Q_NEXT_K[:2], torch.zeros(1, 2, 2), torch.ones(1))[0]
    expected = reward + 0.9 * (1 - done) * Q_NEXT[:2].min(0).values.max(1).values
    assert out.tolist() == approx(expected.tolist())
    assert torch.equal(out, calql.td_target(reward[None], done[None], Q_NEXT_K[:2], torch.zeros(1, 2, 2),
                                            torch.ones(1))[0])


def test_conservative_term_is_calqls_gap_on_members_drawn_with_replacement():
    """Only the drawn members' Q-values at the sampled actions are computed, and the gap is
    Cal-QL's on those members; the TD loss still sees every member at the data actions."""
    wsrl, calql = make(n_critics=3, critic_subsample=2), make("calql", n_critics=3)
    g = torch.Generator().manual_seed(1)
    B, N = 4, 2
    obs, action = torch.randn(1, B, 3, generator=g), torch.rand(1, B, A, generator=g) * 2 - 1
    obs_rep = obs.repeat_interleave(N, 1)
    sampled = [torch.rand(1, B * N, A, generator=g) * 2 - 1 for _ in range(3)]  # uniform, pi(s), pi(s')
    torch.manual_seed(4)
    idx = torch.randint(0, 3, (2,))
    torch.manual_seed(4)
    members = wsrl.conservative_members(obs.device)  # drawn once per update, passed to both hooks
    assert torch.equal(members[0], idx)
    q_data, *q_sampled = (q.detach() for q in wsrl.critic_values(obs, action, obs_rep, *sampled, members))
    with torch.no_grad():
        torch.testing.assert_close(q_data, wsrl.critic(obs, action))
        for q, a in zip(q_sampled, sampled):
            assert q.shape == (2, 1, B * N)
            torch.testing.assert_close(q, wsrl.critic(obs_rep, a)[idx])
    q_rand, q_cur, q_next = (q.unflatten(-1, (B, N)) for q in q_sampled)
    logp_cur, logp_next = torch.randn(1, B, N, generator=g), torch.randn(1, B, N, generator=g)
    b = batch(B=B)
    gap, rate_w = wsrl.conservative_gap(q_data, q_rand, q_cur, q_next, logp_cur, logp_next, b, members)
    expected, rate = calql.conservative_gap(q_data[idx], q_rand, q_cur, q_next, logp_cur, logp_next, b)
    assert gap[:, 0].tolist() == approx(expected[:, 0].tolist()) and torch.equal(rate_w, rate)


def test_finetuning_critic_is_sac_without_the_conservative_term():
    wsrl = make(n_critics=4, critic_subsample=2, online_max_target_backup=True, actor_every=100, gamma=0.9)
    wsrl.on_finetune_start()
    b = batch()
    critic0, target0, actor0 = (copy.deepcopy(m) for m in (wsrl.critic, wsrl.critic_target, wsrl.actor))
    torch.manual_seed(5)
    metrics = wsrl.update(b)
    assert "cql_gap" not in metrics
    torch.manual_seed(5)  # the same draws: N = 3 next actions per state, then the members
    with torch.no_grad():
        next_a, _ = actor0.sample(b.next_obs, 3, wsrl.rng)
        q_next = target0(b.next_obs.repeat_interleave(3, 1), next_a).view(4, 1, 6, 3)
        idx = torch.randint(0, 4, (2,))
        y = b.reward + 0.9 * (1 - b.done) * q_next[idx].min(0).values.max(-1).values
        expected = ((critic0(b.obs, b.action) - y) ** 2).mean()  # (E, K=1, B) -> one mean
    assert metrics["critic_loss"].item() == approx(expected.item())


def test_actor_and_temperature_step_once_per_block_on_its_concatenated_batches():
    wsrl = make(n_critics=4, actor_every=3, online_max_target_backup=True)
    wsrl.on_finetune_start()
    actor0, alpha0 = params(wsrl.actor), wsrl.log_alpha.detach().clone()
    for i in range(2):
        wsrl.update(batch(seed=i))
        assert same(actor0, params(wsrl.actor)) and torch.equal(alpha0, wsrl.log_alpha.detach())
    assert len(wsrl.block) == 2
    wsrl.update(batch(seed=2))
    assert wsrl.block == [] and not same(actor0, params(wsrl.actor)) and not torch.equal(alpha0, wsrl.log_alpha)

    # the actor step on a block: L_pi = E[alpha log pi - min_i Q_i], L_alpha = alpha (H(s') - H_target)
    block = Batch(**{k: torch.cat([getattr(batch(seed=s), k) for s in range(3)], 1)
                     for k in ("obs", "action", "reward", "next_obs", "done", "mc_return")})
    actor, critic, log_alpha = copy.deepcopy(wsrl.actor), copy.deepcopy(wsrl.critic), wsrl.log_alpha.detach().clone()
    torch.manual_seed(9)
    wsrl.actor_step(block, torch.tensor([0.7]))
    torch.manual_seed(9)
    with torch.no_grad():
        _, next_logp = actor.sample(block.next_obs, 3, wsrl.rng)  # the policy before the step, at s', N actions
        pi_a, log_pi = actor(block.obs, wsrl.rng)
        expected_actor = (0.7 * log_pi - critic(block.obs, pi_a).min(0).values).mean()
    entropy = -next_logp.mean()
    assert wsrl.target_entropy == -A
    assert wsrl.last_actor["actor_loss"].item() == approx(expected_actor.item())
    assert wsrl.last_actor["entropy"].item() == approx(entropy.item())
    assert wsrl.last_actor["alpha_loss"].item() == approx((log_alpha.exp() * (entropy + A)).item())


def test_temperature_loss_gradient_is_alpha_times_the_entropy_gap():
    wsrl = make()
    with torch.no_grad():
        wsrl.log_alpha.fill_(-1.0)
    loss = wsrl.online_temperature_loss(torch.tensor([0.5]))
    loss.sum().backward()
    alpha = torch.tensor(-1.0).exp().item()
    assert loss.item() == approx(alpha * (0.5 + A)) and wsrl.log_alpha.grad.item() == approx(alpha * (0.5 + A))


def test_a_block_cut_by_a_checkpoint_continues_exactly():
    a = make(n_critics=4, actor_every=4)
    a.on_finetune_start()
    for i in range(2):
        a.update(batch(seed=i))
    b = make(n_critics=4, actor_every=4)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert len(b.block) == 2
    for algo in (a, b):
        torch.manual_seed(3)
        for i in range(2, 4):
            algo.update(batch(seed=i))
    assert a.block == b.block == []
    assert same(params(a.actor), params(b.actor)) and same(params(a.critic), params(b.critic))

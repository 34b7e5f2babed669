"""Shared building blocks: soft updates move targets by exactly tau, every method's targets follow
their online networks that way and get no gradients, the ensemble critic equals separate torch
MLPs, and the policies' log-densities match torch.distributions."""
import pytest
import torch
from torch import nn
from torch.distributions import Normal, TanhTransform, TransformedDistribution

import algorithms
from algorithms import ActionSpec, Batch, ObsSpec
from algorithms.common.networks import (EnsembleCritic, GaussianActor, SeedMLP, SeedStreams, TanhGaussianActor, mlp,
                                       members_of, sample_members, soft_update, target_copy)
from tests.algorithms.helpers import for_method


def test_soft_update_moves_targets_by_tau():
    net = mlp(3, (4,), 2)
    target = target_copy(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    soft_update(target, net, 0.1)
    for b, t, s in zip(before, target.parameters(), net.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)


DELAYED_TARGETS = {"td3bc": 2}  # updates until the targets move (TD3's delayed policy update); others: 1


@pytest.mark.parametrize("name", algorithms.available())
def test_each_method_moves_its_targets_by_tau_and_never_trains_them(name):
    steps = DELAYED_TARGETS.get(name, 1)
    torch.manual_seed(0)
    hp = {"actor_hidden": (8,), "critic_hidden": (8,), "tau": 0.2, "actor_every": 1}
    if name == "iql":
        hp["value_hidden"] = (8,)
    algo = algorithms.make(name, ObsSpec((3,)), ActionSpec(2), for_method(name, hp))
    g = torch.Generator().manual_seed(0)
    h = algo.chunk  # a chunked method trains on chunks of h actions (every step valid here)
    b = Batch(obs=torch.randn(1, 8, 3, generator=g), action=torch.rand(1, 8, h * 2, generator=g) * 2 - 1,
              reward=torch.randn(1, 8, generator=g), next_obs=torch.randn(1, 8, 3, generator=g),
              done=torch.zeros(1, 8), mc_return=torch.zeros(1, 8), valid=torch.ones(1, 8, h) if h > 1 else None)
    for _ in range(steps - 1):
        algo.update(b)
    pairs = [(getattr(algo, k), getattr(algo, k.removesuffix("_target"))) for k in vars(algo) if k.endswith("_target")]
    assert pairs
    before = [[p.clone() for p in t.parameters()] for t, _ in pairs]
    algo.update(b)
    for (target, online), old in zip(pairs, before):
        for o, t, s in zip(old, target.parameters(), online.parameters()):
            assert not t.requires_grad and t.grad is None
            torch.testing.assert_close(t, 0.8 * o + 0.2 * s)


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("seeds", [1, 3])
def test_ensemble_critic_equals_separate_mlps_in_value_and_every_gradient(frozen, seeds):
    torch.manual_seed(0)
    critic = EnsembleCritic(3, 2, (6, 5), n=2, rng=SeedStreams.from_seeds(range(seeds))).double()
    layers = [*critic.hidden, critic.out]
    members = [[nn.Sequential(*[m for layer in layers for m in (nn.Linear(*layer.weight.shape[2:]).double(),
                                                                nn.ReLU())][:-1]) for _ in range(2)]
               for _ in range(seeds)]
    with torch.no_grad():  # seed k's member i's nn.Linear weights = the ensemble's slices [k, i]
        for k, nets in enumerate(members):
            for i, net in enumerate(nets):
                for layer, linear in zip(layers, net[0::2]):
                    linear.weight.copy_(layer.weight[k, i].T)
                    linear.bias.copy_(layer.bias[k, i, 0])
    obs = torch.randn(seeds, 7, 3, dtype=torch.double, requires_grad=True)
    action = torch.rand(seeds, 7, 2, dtype=torch.double, requires_grad=True)
    weights = torch.randn(2, seeds, 7, dtype=torch.double)  # a loss that weighs every output differently

    (critic(obs, action, frozen=frozen) * weights).sum().backward()
    got = [obs.grad.clone(), action.grad.clone()]
    obs.grad = action.grad = None
    ref_q = torch.stack([torch.stack([net(torch.cat([obs[k], action[k]], -1)).squeeze(-1) for k, net in
                                      enumerate(nets)]) for nets in zip(*members)])  # (n, K, B)
    (ref_q * weights).sum().backward()

    torch.testing.assert_close(critic(obs, action).detach(), ref_q.detach())
    torch.testing.assert_close(critic(obs, action, members=1).detach(), ref_q[:1].detach())
    torch.testing.assert_close(got, [obs.grad, action.grad])
    for j, layer in enumerate(layers):
        if frozen:
            assert layer.weight.grad is None and layer.bias.grad is None
            continue
        for k, nets in enumerate(members):
            for i, net in enumerate(nets):
                linear = net[2 * j]
                torch.testing.assert_close(layer.weight.grad[k, i], linear.weight.grad.T)
                torch.testing.assert_close(layer.bias.grad[k, i, 0], linear.bias.grad)


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("seeds", [1, 2])
def test_layer_norm_ensemble_critic_equals_separate_layer_norm_mlps(frozen, seeds):
    torch.manual_seed(0)
    critic = EnsembleCritic(3, 2, (6, 5), n=3, rng=SeedStreams.from_seeds(range(seeds)), layer_norm=True).double()
    with torch.no_grad():  # gains and biases away from their (1, 0) init
        for norm in critic.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    members = [[mlp(5, (6, 5), 1, layer_norm=True).double() for _ in range(3)] for _ in range(seeds)]
    with torch.no_grad():  # seed k's member i = slice [k, i] of every ensemble parameter
        for k, nets in enumerate(members):
            for i, net in enumerate(nets):
                for layer, linear in zip([*critic.hidden, critic.out], net[0::3]):
                    linear.weight.copy_(layer.weight[k, i].T)
                    linear.bias.copy_(layer.bias[k, i, 0])
                for enorm, norm in zip(critic.norms, net[1::3]):
                    norm.weight.copy_(enorm.weight[k, i, 0])
                    norm.bias.copy_(enorm.bias[k, i, 0])
    obs = torch.randn(seeds, 9, 3, dtype=torch.double, requires_grad=True)
    action = torch.rand(seeds, 9, 2, dtype=torch.double)
    q = critic(obs, action, frozen=frozen)
    q.sum().backward()
    got = obs.grad.clone()
    obs.grad = None
    ref = torch.stack([torch.stack([nets[i](torch.cat([obs[k], action[k]], -1)).squeeze(-1)
                                    for k, nets in enumerate(members)]) for i in range(3)])  # (n, K, B)
    ref.sum().backward()
    torch.testing.assert_close(q.detach(), ref.detach())
    torch.testing.assert_close(got, obs.grad)
    for k, nets in enumerate(members):
        for i, net in enumerate(nets):
            for enorm, norm in zip(critic.norms, net[1::3]):
                if frozen:
                    assert enorm.weight.grad is None
                else:
                    torch.testing.assert_close(enorm.weight.grad[k, i, 0], norm.weight.grad)
                    torch.testing.assert_close(enorm.bias.grad[k, i, 0], norm.bias.grad)


@pytest.mark.parametrize("init", ["orthogonal", "xavier_uniform"])
def test_layer_norm_seed_mlp_equals_its_plain_mlps(init):
    """One seed: bit for bit the plain torch MLP (nn.Linear, nn.LayerNorm); three seeds: each its own."""
    for seeds in (1, 3):
        nets = SeedStreams.from_seeds(range(seeds)).build(lambda: mlp(4, (8, 8), 3, layer_norm=True, init=init))
        seeded = SeedMLP(4, (8, 8), 3, SeedStreams.from_seeds(range(seeds)), layer_norm=True, init=init)
        with torch.no_grad():
            for norm in seeded.norms:
                norm.weight.uniform_(0.5, 1.5)
            for k, net in enumerate(nets):
                for norm, plain in zip(seeded.norms, net[1::3]):
                    plain.weight.copy_(norm.weight[k])
        x = torch.randn(seeds, 6, 4)
        y = seeded(x)
        for k, net in enumerate(nets):
            if seeds == 1:
                assert torch.equal(y[k], net(x[k]))
            else:
                torch.testing.assert_close(y[k], net(x[k]))


def subsampled_min(q, size, replace, rng):
    idx = sample_members(q.shape[0], size, replace, rng, q.device)
    return (q if idx is None else members_of(q, idx)).min(0).values


def test_sampled_members_are_drawn_from_each_seeds_stream():
    q = (torch.arange(10.0)[:, None, None] * torch.ones(10, 2, 4))  # member i's values are all i, 2 seeds
    drawn = [subsampled_min(q, 2, False, rng)[:, 0].tolist()
             for rng in [SeedStreams.from_seeds([3, 4])] for _ in range(300)]
    # the min of 2 distinct members out of 10: P(min = i) = (9 - i) / 45, never 9
    for k in (0, 1):
        counts = torch.bincount(torch.tensor([d[k] for d in drawn]).long(), minlength=10).float() / 300
        assert counts[9] == 0 and counts[0] == pytest.approx(9 / 45, abs=0.07)
    assert [d[0] for d in drawn] != [d[1] for d in drawn]  # each seed its own draws
    rng = SeedStreams.from_seeds([3, 4])
    assert [subsampled_min(q, 2, False, rng)[:, 0].tolist() for _ in range(300)] == drawn  # reproducible
    alone = SeedStreams.from_seeds([4])  # seed 4's draws do not depend on its group
    assert [subsampled_min(q[:, 1:], 2, False, alone)[0, 0].item() for _ in range(300)] == [d[1] for d in drawn]
    rng = SeedStreams.from_seeds([3, 4])
    with_repl = [subsampled_min(q, 2, True, rng)[0, 0].item() for _ in range(2000)]
    assert 9.0 in with_repl  # the same member twice: (9, 9) has probability 1/100
    assert subsampled_min(q, 10, False, rng).tolist() == [[0.0] * 4] * 2  # all members: the plain min
    assert sample_members(10, 10, False, rng, "cpu") is None  # ... and no draw


@pytest.mark.parametrize("layer_norm", [False, True])
def test_an_ensemble_computes_only_the_members_asked_for(layer_norm):
    """Each seed's members idx[k] (repeats allowed): the same values and, summed over repeats, the
    same weight gradients as computing every member and selecting them."""
    critic = EnsembleCritic(3, 2, (8, 8), 5, SeedStreams.from_seeds([0, 1]), layer_norm=layer_norm)
    g = torch.Generator().manual_seed(0)
    obs, action = torch.randn(2, 6, 3, generator=g), torch.randn(2, 6, 2, generator=g)
    idx = torch.tensor([[4, 1], [2, 2]])
    some = critic(obs, action, members=idx)
    every = critic(obs, action)
    torch.testing.assert_close(some, members_of(every, idx))
    grads = []
    for q in (some, members_of(critic(obs, action), idx)):
        critic.zero_grad()
        (q * torch.arange(1.0, 13.0).view(1, 2, 6)).sum().backward()
        grads.append([p.grad.clone() for p in critic.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    assert critic.hidden[0].weight.grad[0, 0].abs().sum() == 0  # seed 0 never drew member 0


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, (8,))
    obs, a = torch.randn(1, 5, 3), torch.rand(1, 5, 2) * 1.8 - 0.9
    mean, std = actor.distribution(obs)
    ref = TransformedDistribution(Normal(mean, std), [TanhTransform()]).log_prob(a).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, a), ref, rtol=1e-4, atol=1e-4)


def test_tanh_gaussian_sample_draws_n_actions_per_state_in_row_order():
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, (8,))
    with torch.no_grad():  # two far-apart states with narrow policies
        actor.net.layers[-1].weight[0, :2] *= 30.0
        actor.net.layers[-1].bias.copy_(torch.tensor([[0.0, 0.0, -3.0, -3.0]]))
    obs = torch.tensor([[[5.0, 0.0, 0.0], [-5.0, 0.0, 0.0]]])
    mean_actions = torch.tanh(actor.distribution(obs)[0])[0]
    assert (mean_actions[0] - mean_actions[1]).abs().max() > 0.5
    actions, logp = actor.sample(obs, 4, SeedStreams())
    assert actions.shape == (1, 8, 2) and logp.shape == (1, 8)
    obs_rep = obs.repeat_interleave(4, 1)  # rows (state 0 x4, state 1 x4)
    torch.testing.assert_close(logp, actor.log_prob(obs_rep, actions), rtol=1e-3, atol=1e-3)
    assert (actions.view(2, 4, 2) - mean_actions[:, None]).abs().max() < 0.25
    assert len(set(actions[0, :4, 0].tolist())) == 4  # independent noise per draw


def test_gaussian_actor_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    actor = GaussianActor(3, 2, (8,))
    with torch.no_grad():
        actor.log_std.copy_(torch.tensor([[-0.5, 0.3]]))
    obs, a = torch.randn(1, 5, 3), torch.rand(1, 5, 2) * 2 - 1
    ref = Normal(torch.tanh(actor.net(obs)), actor.log_std.exp()).log_prob(a).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, a), ref)
    act, _ = actor(obs, SeedStreams())
    assert act.abs().max() <= 1.0


@pytest.mark.parametrize("name,default", [("iql", False), ("awac", False), ("td3bc", True)])
def test_normalize_obs_standardizes_with_the_offline_population_std(name, default):
    """normalize_obs (default: the method's official code): observations become (x - mean) / (std + 1e-3)
    with the offline data's mean and population std (ddof 0, as the references' numpy std); an
    update on raw observations then equals one on pre-standardized observations without it."""
    hp = {"actor_hidden": (8,), "critic_hidden": (8,), "actor_every": 1}
    assert algorithms.get(name).Config().normalize_obs is default
    g = torch.Generator().manual_seed(0)
    data = torch.randn(50, 3, generator=g) * torch.tensor([5.0, 0.1, 2.0]) + torch.tensor([3.0, -1.0, 0.0])
    torch.manual_seed(0)
    on = algorithms.make(name, ObsSpec((3,)), ActionSpec(2), for_method(name, {**hp, "normalize_obs": True}), "cpu")
    torch.manual_seed(0)
    off = algorithms.make(name, ObsSpec((3,)), ActionSpec(2), for_method(name, {**hp, "normalize_obs": False}), "cpu")
    on.observe_dataset(data)
    off.observe_dataset(data)  # a no-op
    std = data.numpy().std(0) + 1e-3
    torch.testing.assert_close(on.obs_norm.std, torch.from_numpy(std))
    torch.testing.assert_close(on.obs_norm.mean, data.mean(0))
    assert "obs_norm.std" not in str(off.state_dict()) and isinstance(off.obs_norm, nn.Identity)
    restored = algorithms.make(name, ObsSpec((3,)), ActionSpec(2), for_method(name, {**hp, "normalize_obs": True}), "cpu")
    restored.load_state_dict(on.state_dict())
    assert torch.equal(restored.obs_norm.std, on.obs_norm.std)

    standardize = lambda x: (x - data.mean(0)) / torch.from_numpy(std)
    raw = Batch(obs=data[None, :8], action=torch.rand(1, 8, 2, generator=g) * 2 - 1,
                reward=torch.randn(1, 8, generator=g), next_obs=data[None, 8:16], done=torch.zeros(1, 8))
    pre = Batch(obs=standardize(raw.obs), action=raw.action, reward=raw.reward,
                next_obs=standardize(raw.next_obs), done=raw.done)
    torch.manual_seed(1)
    m_on = on.update(raw)
    torch.manual_seed(1)
    m_off = off.update(pre)
    for key in m_on:
        torch.testing.assert_close(m_on[key], m_off[key], msg=key)
    torch.testing.assert_close(on.policy(raw.obs, True), off.policy(pre.obs, True))


@pytest.mark.parametrize("name", ["iql", "awac", "td3bc"])
def test_normalize_obs_is_refused_for_image_observations(name):
    hp = {"actor_hidden": (8,), "critic_hidden": (8,), "actor_every": 1, "normalize_obs": True, "encoder_channels": (4,),
          "encoder_feature_dim": 4}
    algo = algorithms.make(name, ObsSpec((3 * 8 * 8,), (3, 8, 8)), ActionSpec(2), for_method(name, hp), "cpu")
    with pytest.raises(ValueError, match=f"{name}: normalize_obs needs vector observations"):
        algo.observe_dataset(torch.zeros(4, 3 * 8 * 8, dtype=torch.uint8))

"""Shared building blocks: soft updates move targets by exactly tau, every method's targets follow
their online networks that way and get no gradients, the ensemble critic (with its in-place ReLU
backward) equals separate torch MLPs, the policies' log-densities match torch.distributions, and
observation standardization (population std) is the same for every method offering it."""
import io

import pytest
import torch
from torch import nn
from torch.distributions import Normal, TanhTransform, TransformedDistribution

import algorithms
from algorithms import ActionSpec, Batch, ObsSpec
from algorithms.common.networks import (EnsembleCritic, GaussianActor, TanhGaussianActor, mlp, soft_update,
                                       subsampled_min, target_copy)
from algorithms.common.optim import LeanAdam


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
    hp = {"actor_hidden": (8,), "critic_hidden": (8,), "tau": 0.2}
    if name == "iql":
        hp["value_hidden"] = (8,)
    algo = algorithms.make(name, ObsSpec((3,)), ActionSpec(2), hp)
    g = torch.Generator().manual_seed(0)
    b = Batch(obs=torch.randn(8, 3, generator=g), action=torch.rand(8, 2, generator=g) * 2 - 1,
              reward=torch.randn(8, generator=g), next_obs=torch.randn(8, 3, generator=g), done=torch.zeros(8),
              mc_return=torch.zeros(8))
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
@pytest.mark.parametrize("batch,hidden", [(7, (6, 5)), (4096, (128, 128))])  # the second: in-place ReLU backward
def test_ensemble_critic_equals_separate_mlps_in_value_and_every_gradient(frozen, batch, hidden):
    torch.manual_seed(0)
    critic = EnsembleCritic(3, 2, hidden, n=2).double()
    layers = [*critic.hidden, critic.out]
    members = [nn.Sequential(*[m for layer in layers for m in (nn.Linear(*layer.weight.shape[1:]).double(), nn.ReLU())][:-1])
               for _ in range(2)]
    with torch.no_grad():  # member k's nn.Linear weights = the ensemble's slices k
        for k, net in enumerate(members):
            for layer, linear in zip(layers, net[0::2]):
                linear.weight.copy_(layer.weight[k].T)
                linear.bias.copy_(layer.bias[k, 0])
    obs = torch.randn(batch, 3, dtype=torch.double, requires_grad=True)
    action = torch.rand(batch, 2, dtype=torch.double, requires_grad=True)
    weights = torch.randn(2, batch, dtype=torch.double)  # a loss that weighs every output differently

    (critic(obs, action, frozen=frozen) * weights).sum().backward()
    got = [obs.grad.clone(), action.grad.clone()]
    obs.grad = action.grad = None
    ref_q = torch.stack([net(torch.cat([obs, action], -1)).squeeze(-1) for net in members])
    (ref_q * weights).sum().backward()

    torch.testing.assert_close(critic(obs, action).detach(), ref_q.detach())
    torch.testing.assert_close(got, [obs.grad, action.grad])
    for layer, linears in zip(layers, zip(*(net[0::2] for net in members))):
        if frozen:
            assert layer.weight.grad is None and layer.bias.grad is None
        else:
            torch.testing.assert_close(layer.weight.grad, torch.stack([l.weight.grad.T for l in linears]))
            torch.testing.assert_close(layer.bias.grad, torch.stack([l.bias.grad[None] for l in linears]))


@pytest.mark.parametrize("frozen", [False, True])
def test_layer_norm_ensemble_critic_equals_separate_layer_norm_mlps(frozen):
    torch.manual_seed(0)
    critic = EnsembleCritic(3, 2, (6, 5), n=3, layer_norm=True).double()
    with torch.no_grad():  # gains and biases away from their (1, 0) init
        for norm in critic.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    members = [mlp(5, (6, 5), 1, layer_norm=True).double() for _ in range(3)]
    with torch.no_grad():  # member k = slice k of every ensemble parameter
        for k, net in enumerate(members):
            linears, norms = net[0::3], net[1::3]
            for layer, linear in zip([*critic.hidden, critic.out], linears):
                linear.weight.copy_(layer.weight[k].T)
                linear.bias.copy_(layer.bias[k, 0])
            for enorm, norm in zip(critic.norms, norms):
                norm.weight.copy_(enorm.weight[k, 0])
                norm.bias.copy_(enorm.bias[k, 0])
    obs = torch.randn(9, 3, dtype=torch.double, requires_grad=True)
    action = torch.rand(9, 2, dtype=torch.double)
    q = critic(obs, action, frozen=frozen)
    q.sum().backward()
    got = obs.grad.clone()
    obs.grad = None
    ref = torch.stack([net(torch.cat([obs, action], -1)).squeeze(-1) for net in members])
    ref.sum().backward()
    torch.testing.assert_close(q.detach(), ref.detach())
    torch.testing.assert_close(got, obs.grad)
    for k, net in enumerate(members):
        for enorm, norm in zip(critic.norms, net[1::3]):
            if frozen:
                assert enorm.weight.grad is None
            else:
                torch.testing.assert_close(enorm.weight.grad[k, 0], norm.weight.grad)
                torch.testing.assert_close(enorm.bias.grad[k, 0], norm.bias.grad)


def test_subsampled_min_draws_members_from_torchs_rng():
    q = torch.arange(10.0)[:, None] * torch.ones(10, 4)  # member i's values are all i
    torch.manual_seed(3)
    drawn = [subsampled_min(q, 2, replace=False)[0].item() for _ in range(300)]
    # the min of 2 distinct members out of 10: P(min = i) = (9 - i) / 45, never 9
    counts = torch.bincount(torch.tensor(drawn).long(), minlength=10).float() / 300
    assert counts[9] == 0 and counts[0] == pytest.approx(9 / 45, abs=0.07)
    torch.manual_seed(3)
    assert [subsampled_min(q, 2, replace=False)[0].item() for _ in range(300)] == drawn  # reproducible
    torch.manual_seed(3)
    with_repl = [subsampled_min(q, 2, replace=True)[0].item() for _ in range(2000)]
    assert 9.0 in with_repl  # the same member twice: (9, 9) has probability 1/100
    assert subsampled_min(q, 10, replace=False).tolist() == [0.0] * 4  # all members: the plain min


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, (8,))
    obs, a = torch.randn(5, 3), torch.rand(5, 2) * 1.8 - 0.9
    mean, std = actor.distribution(obs)
    ref = TransformedDistribution(Normal(mean, std), [TanhTransform()]).log_prob(a).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, a), ref, rtol=1e-4, atol=1e-4)


def test_tanh_gaussian_sample_draws_n_actions_per_state_in_row_order():
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, (8,))
    with torch.no_grad():  # two far-apart states with narrow policies
        actor.net[-1].weight[:2] *= 30.0
        actor.net[-1].bias.copy_(torch.tensor([0.0, 0.0, -3.0, -3.0]))
    obs = torch.tensor([[5.0, 0.0, 0.0], [-5.0, 0.0, 0.0]])
    mean_actions = torch.tanh(actor.distribution(obs)[0])
    assert (mean_actions[0] - mean_actions[1]).abs().max() > 0.5
    actions, logp = actor.sample(obs, 4)
    assert actions.shape == (8, 2) and logp.shape == (8,)
    obs_rep = obs.repeat_interleave(4, 0)  # rows (state 0 x4, state 1 x4)
    torch.testing.assert_close(logp, actor.log_prob(obs_rep, actions), rtol=1e-3, atol=1e-3)
    assert (actions.view(2, 4, 2) - mean_actions[:, None]).abs().max() < 0.25
    assert len(set(actions[:4, 0].tolist())) == 4  # independent noise per draw


def test_gaussian_actor_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    actor = GaussianActor(3, 2, (8,))
    with torch.no_grad():
        actor.log_std.copy_(torch.tensor([-0.5, 0.3]))
    obs, a = torch.randn(5, 3), torch.rand(5, 2) * 2 - 1
    ref = Normal(torch.tanh(actor.net(obs)), actor.log_std.exp()).log_prob(a).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, a), ref)
    act, _ = actor(obs)
    assert act.abs().max() <= 1.0


def test_lean_adam_equals_torch_fused_adam_bit_for_bit_through_skips_and_a_checkpoint():
    """Same parameters and state as torch.optim.Adam(fused=True) after every step, through steps
    where a parameter has no gradient (torch skips it), a resume from a saved state_dict, and an
    lr change."""
    torch.manual_seed(0)
    nets = [mlp(5, (16, 16), 3) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    extra = [nn.Parameter(torch.arange(4.0)) for _ in range(2)]  # no gradient on steps 1, 5, 9
    params = [[*net.parameters(), p] for net, p in zip(nets, extra)]
    make = (lambda ps: LeanAdam(ps, 1e-2), lambda ps: torch.optim.Adam(ps, 1e-2, fused=True))
    opts = [f(ps) for f, ps in zip(make, params)]
    x = torch.randn(32, 5)
    for step in range(12):
        if step in (6, 7):  # reload saved state: into new optimizers (a resume), then in place
            saved = []
            for opt in opts:
                buf = io.BytesIO()
                torch.save(opt.state_dict(), buf)
                saved.append(buf.getvalue())
            if step == 6:
                opts = [f(ps) for f, ps in zip(make, params)]  # a fresh process
            for opt, raw in zip(opts, saved):
                opt.load_state_dict(torch.load(io.BytesIO(raw), weights_only=True))
        if step == 9:
            for opt in opts:
                opt.param_groups[0]["lr"] = 3e-3
        for net, p, opt in zip(nets, extra, opts):
            opt.zero_grad()
            loss = net(x).square().mean() + (p.square().sum() if step % 4 != 1 else 0)
            loss.backward()
            opt.step()
        for a, b in zip(*params):
            assert torch.equal(a, b), step
        lean, ref = (opt.state_dict()["state"] for opt in opts)
        assert lean.keys() == ref.keys()
        for i in ref:
            for key in ref[i]:
                assert torch.equal(lean[i][key], ref[i][key]), (step, i, key)
    assert [int(s["step"]) for s in opts[0].state_dict()["state"].values()] == [12] * 6 + [9]
    with pytest.raises(NotImplementedError, match="no step hooks"):  # it would not run them
        opts[0].register_step_post_hook(lambda *args: None)


@pytest.mark.parametrize("name,default", [("iql", False), ("awac", False), ("td3bc", True)])
def test_normalize_obs_standardizes_with_the_offline_population_std(name, default):
    """normalize_obs (default: the method's official code): observations become (x - mean) / (std + 1e-3)
    with the offline data's mean and population std (ddof 0, as the references' numpy std); an
    update on raw observations then equals one on pre-standardized observations without it."""
    hp = {"actor_hidden": (8,), "critic_hidden": (8,)}
    assert algorithms.get(name).Config().normalize_obs is default
    g = torch.Generator().manual_seed(0)
    data = torch.randn(50, 3, generator=g) * torch.tensor([5.0, 0.1, 2.0]) + torch.tensor([3.0, -1.0, 0.0])
    torch.manual_seed(0)
    on = algorithms.make(name, ObsSpec((3,)), ActionSpec(2), {**hp, "normalize_obs": True}, "cpu")
    torch.manual_seed(0)
    off = algorithms.make(name, ObsSpec((3,)), ActionSpec(2), {**hp, "normalize_obs": False}, "cpu")
    on.observe_dataset(data)
    off.observe_dataset(data)  # a no-op
    std = data.numpy().std(0) + 1e-3
    torch.testing.assert_close(on.obs_norm.std, torch.from_numpy(std))
    torch.testing.assert_close(on.obs_norm.mean, data.mean(0))
    assert "obs_norm.std" not in str(off.state_dict()) and isinstance(off.obs_norm, nn.Identity)
    restored = algorithms.make(name, ObsSpec((3,)), ActionSpec(2), {**hp, "normalize_obs": True}, "cpu")
    restored.load_state_dict(on.state_dict())
    assert torch.equal(restored.obs_norm.std, on.obs_norm.std)

    standardize = lambda x: (x - data.mean(0)) / torch.from_numpy(std)
    raw = Batch(obs=data[:8], action=torch.rand(8, 2, generator=g) * 2 - 1, reward=torch.randn(8, generator=g),
                next_obs=data[8:16], done=torch.zeros(8))
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
    hp = {"actor_hidden": (8,), "critic_hidden": (8,), "normalize_obs": True, "encoder_channels": (4,),
          "encoder_feature_dim": 4}
    algo = algorithms.make(name, ObsSpec((3 * 8 * 8,), (3, 8, 8)), ActionSpec(2), hp, "cpu")
    with pytest.raises(ValueError, match=f"{name}: normalize_obs needs vector observations"):
        algo.observe_dataset(torch.zeros(4, 3 * 8 * 8, dtype=torch.uint8))

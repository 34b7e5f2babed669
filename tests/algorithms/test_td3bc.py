"""TD3+BC equations on fixed tensors: lambda = alpha / mean|Q|, the actor objective, target policy
smoothing with clipped noise, the twin-min TD target, delayed actor / target updates, observation
normalization from the offline data (saved with the state) and the optional online BC decay."""
import math
from functools import partial

import torch

import algorithms
from algorithms import ActionSpec, ObsSpec
from tests.algorithms.helpers import approx, random_batch


def make(**hp):
    torch.manual_seed(0)
    return algorithms.make("td3bc", ObsSpec((3,)), ActionSpec(2), {"actor_hidden": (8,), "critic_hidden": (8,), **hp})


batch = partial(random_batch, terminal_every_other=False)


def test_actor_objective_scales_q_by_alpha_over_mean_abs_q_and_adds_bc():
    td3bc = make(alpha=2.5)
    q_pi = torch.tensor([2.0, -4.0, 6.0], requires_grad=True)
    pi_a = torch.tensor([[0.5, 0.0], [0.0, 0.0], [1.0, -1.0]])
    a = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    loss, lmbda, bc = td3bc.actor_objective(q_pi, pi_a, a, bc_weight=1.0)
    lam = 2.5 / ((2 + 4 + 6) / 3)
    mse = (0.25 + 1.0 + 4.0) / 6  # mean over batch and action dims, as the paper's F.mse_loss
    assert lmbda.item() == approx(lam) and bc.item() == approx(mse)
    assert loss.item() == approx(-lam * (2 - 4 + 6) / 3 + mse)
    loss.backward()  # lambda is a constant: dL/dQ = -lambda / B
    assert q_pi.grad.tolist() == approx([-lam / 3] * 3)


def test_target_action_clips_noise_then_action():
    td3bc = make(noise_clip=0.5)
    with torch.no_grad():
        for p in td3bc.actor_target.parameters():
            p.zero_()  # pi_target(s') = tanh(0) = 0
    noise = torch.tensor([[[0.3, -2.0], [0.9, 0.1]]])
    out = td3bc.target_action(torch.zeros(1, 2, 3), noise)
    assert out.flatten().tolist() == approx([0.3, -0.5, 0.5, 0.1])
    with torch.no_grad():
        td3bc.actor_target.net.layers[-1].bias.copy_(torch.tensor([[3.0, -3.0]]))  # tanh: +-0.995
    out = td3bc.target_action(torch.zeros(1, 2, 3), noise)
    assert out.flatten().tolist() == approx([1.0, -1.0, 1.0, torch.tanh(torch.tensor(-3.0)).item() + 0.1])


def test_td_target_is_min_over_target_critics():
    td3bc = make(gamma=0.99)
    out = td3bc.td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([[3.0, 1.0], [2.0, 5.0]]))
    assert out.tolist() == approx([1.0 + 0.99 * 2.0, 1.0])


def test_actor_and_targets_update_only_every_policy_freq_steps():
    td3bc = make(policy_freq=2)
    snap = lambda m: [p.detach().clone() for p in m.parameters()]
    actor0, actor_t0, critic_t0 = snap(td3bc.actor), snap(td3bc.actor_target), snap(td3bc.critic_target)
    td3bc.update(batch(seed=1))
    assert all(torch.equal(a, b) for a, b in zip(actor0, snap(td3bc.actor)))
    assert all(torch.equal(a, b) for a, b in zip(actor_t0, snap(td3bc.actor_target)))
    assert all(torch.equal(a, b) for a, b in zip(critic_t0, snap(td3bc.critic_target)))
    td3bc.update(batch(seed=2))
    assert not all(torch.equal(a, b) for a, b in zip(actor0, snap(td3bc.actor)))
    assert not all(torch.equal(a, b) for a, b in zip(critic_t0, snap(td3bc.critic_target)))


def test_q1_is_the_first_ensemble_member():
    td3bc = make()
    obs, a = torch.randn(1, 4, 3), torch.rand(1, 4, 2)
    assert td3bc.q1(obs, a)[0].tolist() == approx(td3bc.critic(obs, a)[0, 0].tolist())


def test_observation_normalization_uses_offline_stats_and_is_saved():
    """mean and population std (ddof 0, numpy's default, as sfujim/TD3_BC and CORL) + 1e-3."""
    td3bc = make()
    data = torch.tensor([[0.0, 1.0, 10.0], [2.0, 1.0, 20.0], [4.0, 1.0, 30.0]])
    td3bc.observe_dataset(data)
    assert td3bc.obs_norm.mean.tolist() == approx([2.0, 1.0, 20.0])
    assert td3bc.obs_norm.std.tolist() == approx([math.sqrt(8 / 3) + 1e-3, 1e-3, math.sqrt(200 / 3) + 1e-3])
    assert td3bc.obs_norm.std.tolist() == approx((data.numpy().std(0) + 1e-3).tolist())
    state = td3bc.state_dict()
    other = make()
    other.load_state_dict(state)
    assert torch.equal(other.obs_norm.std, td3bc.obs_norm.std) and torch.equal(other.obs_norm.mean, td3bc.obs_norm.mean)
    x = torch.randn(1, 5, 3)
    assert torch.equal(other.policy(x, True), td3bc.policy(x, True))
    assert torch.equal(td3bc.actor(td3bc.obs_norm(x)), td3bc.actor((x - td3bc.obs_norm.mean) / td3bc.obs_norm.std))
    off = make(normalize_obs=False)
    off.observe_dataset(data)
    assert torch.equal(off.obs_norm(x), x) and not off.obs_norm.state_dict()  # the identity


def test_bc_weight_decays_linearly_only_after_finetuning_starts():
    td3bc = make(bc_decay_steps=4, policy_freq=1)
    for i in range(3):
        td3bc.update(batch(seed=i))
    assert td3bc.bc_weight() == 1.0
    td3bc.on_finetune_start()
    weights = [float(td3bc.update(batch(seed=i))["bc_weight"]) for i in range(5)]
    assert weights == approx([0.75, 0.5, 0.25, 0.0, 0.0])
    assert make().bc_weight() == 1.0 and make(bc_decay_steps=0).bc_weight() == 1.0

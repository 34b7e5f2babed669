"""RLPD equations on fixed tensors, against the paper's / official learner's: the TD target's min over
a random subset of the target ensemble (drawn without replacement) with the optional entropy
backup, or QC's mean over every target member (q_agg 'mean'), the critic loss averaged over members and batch, the actor objective with the mean over
all members, the temperature loss alpha (H - H_target) with H_target = -|A| / 2, and the actor /
temperature stepping once every `actor_every` critic steps. One seed (leading seed dim 1)."""
import copy
import math
from functools import partial

import pytest
import torch

import algorithms
from algorithms import ActionSpec, ObsSpec
from tests.algorithms.helpers import approx, random_batch

A = 2


def make(**hp):
    torch.manual_seed(0)
    return algorithms.make("rlpd", ObsSpec((3,)), ActionSpec(A),
                           {"actor_hidden": (8,), "critic_hidden": (8, 8), "n_critics": 5, "actor_every": 20, **hp})


batch = partial(random_batch, act_dim=A)


Q_NEXT = torch.tensor([[5.0, 1.0], [2.0, 4.0], [3.0, 0.5], [7.0, 6.0], [4.0, 3.0]])  # (E=5, B=2)
Q_NEXT_K = Q_NEXT[:, None]  # (E, K=1, B)


@pytest.mark.parametrize("backup_entropy", [False, True])
def test_td_target_is_min_over_the_drawn_target_members(backup_entropy):
    rlpd = make(n_target_min=2, backup_entropy=backup_entropy, gamma=0.9)
    reward, done, logp, alpha = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([-2.0, 3.0]), 0.5
    out = rlpd.td_target(reward[None], done[None], Q_NEXT_K[[3, 1]], logp[None], torch.tensor([alpha]))[0]
    soft = Q_NEXT[[3, 1]].min(0).values - (alpha * logp if backup_entropy else 0.0)
    assert out.tolist() == approx((reward + 0.9 * (1 - done) * soft).tolist())
    assert out[1].item() == approx(1.0)  # terminal: no bootstrap


def test_td_target_mean_aggregate_is_qcs_mean_over_every_target_member():
    """q_agg 'mean' with n_target_min = n_critics: ColinQiyangLi/qc agents/acrlpd.py critic_loss
    (next_qs.mean(axis=0) over all num_qs members, no entropy backup: y = r + gamma mask mean_i Q_i)."""
    rlpd = make(n_target_min=5, q_agg="mean", backup_entropy=False, gamma=0.9)
    reward, done, logp = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([-2.0, 3.0])
    out = rlpd.td_target(reward[None], done[None], Q_NEXT_K, logp[None], torch.tensor([0.5]))[0]
    # the columns' means: (5 + 2 + 3 + 7 + 4) / 5 = 4.2 and (1 + 4 + 0.5 + 6 + 3) / 5 = 2.9
    assert out.tolist() == approx([1.0 + 0.9 * 4.2, 1.0])
    # over drawn members the mean reads only them (members 3 and 1: (7 + 2) / 2 = 4.5), with the backup
    drawn = make(n_target_min=2, q_agg="mean", gamma=0.9).td_target(
        reward[None], done[None], Q_NEXT_K[[3, 1]], logp[None], torch.tensor([0.5]))[0]
    assert drawn.tolist() == approx([1.0 + 0.9 * (4.5 + 0.5 * 2.0), 1.0])
    with pytest.raises(ValueError, match="q_agg must be 'min' or 'mean', got 'max'"):
        make(q_agg="max")


def test_qcs_setting_trains_the_critic_on_the_mean_of_every_target_member():
    rlpd = make(n_target_min=5, q_agg="mean", backup_entropy=False, actor_every=100, gamma=0.9)
    b = batch()
    critic0, target0, actor0 = (copy.deepcopy(m) for m in (rlpd.critic, rlpd.critic_target, rlpd.actor))
    torch.manual_seed(5)
    metrics = rlpd.update(b)
    torch.manual_seed(5)  # the same a' ~ pi(s'); every member is read (no draw)
    with torch.no_grad():
        next_a, _ = actor0(b.next_obs, rlpd.rng)
        y = b.reward + 0.9 * (1 - b.done) * target0(b.next_obs, next_a).mean(0)
        expected = ((critic0(b.obs, b.action) - y) ** 2).mean()
    assert metrics["critic_loss"].item() == approx(expected.item())
    assert metrics["td_target"].item() == approx(y.mean().item())


def test_the_aggregate_option_leaves_default_rlpd_job_ids_as_they_were():
    """q_agg was added after RLPD results existed: at its default ('min') a job's id is the one it
    had before the field (config.yaml without it); 'mean' is another job."""
    from dataclasses import asdict

    from harness.job import Job, Protocol, job_id

    def job(**hp):
        config = algorithms.base.build_config(algorithms.get("rlpd"), {"actor_every": 1, **hp})
        hparams = {f: list(v) if isinstance(v, tuple) else v for f, v in asdict(config).items()}
        return Job.from_dict({"suite": "t", "seed": 0, "algorithm": {"name": "rlpd", "hparams": hparams},
                              "task": {"name": "pointmaze-umaze-diverse", "domain": "pointmaze"},
                              "protocol": asdict(Protocol(offline_steps=0, online_steps=100)), "device": "cpu"})

    default = job().to_dict()
    assert default["algorithm"]["hparams"]["q_agg"] == "min"  # config.yaml holds it
    before = {**default, "algorithm": {**default["algorithm"], "hparams": {
        k: v for k, v in default["algorithm"]["hparams"].items() if k != "q_agg"}}}
    assert job_id(before) == job().job_id == job(q_agg="min").job_id
    assert job(q_agg="mean").job_id != job().job_id


def test_target_values_are_those_of_members_drawn_without_replacement():
    rlpd = make(n_target_min=2)
    g = torch.Generator().manual_seed(0)
    next_obs, next_action = torch.randn(1, 4, 3, generator=g), torch.rand(1, 4, A, generator=g) * 2 - 1
    with torch.no_grad():
        every = rlpd.critic_target(next_obs, next_action)
        for seed in range(5):
            torch.manual_seed(seed)
            idx = torch.randperm(5)[:2]  # the draw the target makes: 2 distinct members
            torch.manual_seed(seed)
            torch.testing.assert_close(rlpd.target_values(next_obs, next_action), every[idx])
        one = make(n_target_min=1)
        every = one.critic_target(next_obs, next_action)
        drawn = {tuple(one.target_values(next_obs, next_action)[0, 0].tolist()) for _ in range(40)}
        assert drawn == {tuple(every[i, 0].tolist()) for i in range(5)}  # one whole member at a time; all get drawn
        full = make(n_target_min=5)
        state = torch.get_rng_state()
        torch.testing.assert_close(full.target_values(next_obs, next_action), full.critic_target(next_obs, next_action))
        assert torch.equal(torch.get_rng_state(), state)  # every member: no draw


def test_actor_objective_averages_all_members():
    rlpd = make()
    q_pi = torch.tensor([[1.0, 4.0], [3.0, 0.0], [2.0, 2.0]])[:, None]  # (E=3, K=1, B=2)
    log_pi = torch.tensor([[-1.0, 0.5]])
    out = rlpd.actor_objective(q_pi, log_pi, torch.tensor([0.2]))
    assert out.item() == approx(((0.2 * -1.0 - 2.0) + (0.2 * 0.5 - 2.0)) / 2)


def test_temperature_loss_is_alpha_times_entropy_gap_with_half_action_dim_target():
    rlpd = make(init_temperature=0.5)
    assert rlpd.target_entropy == -A / 2 and make(target_entropy=-3.0).target_entropy == -3.0
    assert rlpd.log_alpha.item() == approx(math.log(0.5))
    loss = rlpd.temperature_loss(torch.tensor([0.3]))
    assert loss.item() == approx(0.5 * (0.3 + A / 2))
    loss.sum().backward()  # d/d log_alpha of alpha (H - H_target) = alpha (H - H_target)
    assert rlpd.log_alpha.grad.item() == approx(0.5 * (0.3 + A / 2))


def test_critic_loss_is_the_mean_over_members_and_batch_of_squared_td_errors():
    rlpd = make(n_target_min=2, actor_every=100)
    b = batch()
    critic0, target0, actor0 = (copy.deepcopy(m) for m in (rlpd.critic, rlpd.critic_target, rlpd.actor))
    torch.manual_seed(5)
    metrics = rlpd.update(b)
    torch.manual_seed(5)  # the same draws: a' ~ pi(s'), then the target's members
    with torch.no_grad():
        next_a, next_logp = actor0(b.next_obs, rlpd.rng)
        members = torch.randperm(5)[:2]
        y = rlpd.td_target(b.reward, b.done, target0(b.next_obs, next_a)[members], next_logp, torch.ones(1))
        expected = ((critic0(b.obs, b.action) - y) ** 2).mean()  # (E, K=1, B) -> one mean
    assert metrics["critic_loss"].item() == approx(expected.item())
    assert rlpd.critic.norms is not None  # LayerNorm critics by default


def test_actor_and_temperature_step_once_every_actor_every_critic_steps():
    rlpd = make(actor_every=3)
    snap = lambda: ([p.detach().clone() for p in rlpd.actor.parameters()], rlpd.log_alpha.detach().clone(),
                    [p.detach().clone() for p in rlpd.critic.parameters()])
    actor0, alpha0, critic0 = snap()
    for i in range(2):
        rlpd.update(batch(seed=i))
        actor, alpha, critic = snap()
        assert all(torch.equal(a, b) for a, b in zip(actor0, actor)) and torch.equal(alpha0, alpha)
        assert not all(torch.equal(a, b) for a, b in zip(critic0, critic))
        critic0 = critic
    metrics = rlpd.update(batch(seed=2))
    actor, alpha, _ = snap()
    assert not all(torch.equal(a, b) for a, b in zip(actor0, actor)) and not torch.equal(alpha0, alpha)
    # the actor loss used the temperature before its own step (official order: actor, then temperature)
    assert metrics["alpha"].item() == approx(1.0)
    # H > H_target = -1 at init: the temperature goes down
    assert alpha.item() < alpha0.item()


def test_weights_are_xavier_uniform_by_default_as_flax_dense():
    rlpd = make()
    layers = [(l.weight[0], l.weight.shape[2], l.weight.shape[3]) for l in [*rlpd.critic.hidden, rlpd.critic.out]]  # (K, n, in, out)
    linears = list(rlpd.actor.net.layers)  # SeedLinear: weight (K, out, in)
    layers += [(m.weight[0], m.weight.shape[2], m.weight.shape[1]) for m in linears]
    for w, fan_in, fan_out in layers:  # output layers too (no 1e-2 scale)
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert w.abs().max() <= bound and w.abs().max() > 0.6 * bound
    assert all(torch.count_nonzero(l.bias) == 0 for l in linears)
    ortho = make(init="orthogonal")
    assert ortho.critic.out.weight.abs().max() < 0.05  # the other methods' 1e-2 output layer
    with pytest.raises(ValueError, match="init must be one of orthogonal, xavier_uniform"):
        make(init="he")

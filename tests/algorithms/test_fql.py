"""FQL / QC / QC-FQL equations on fixed tensors, against seohongpark/fql agents/fql.py and
ColinQiyangLi/qc agents/acfql.py: the flow-matching BC loss, the Euler integration of the flow,
the distillation loss and the Q term (with and without the 1 / mean|Q| normalisation, which carries
no gradient), the critic's target with the ensemble's mean or min, and the chunked backup: gamma^h,
a chunk cut by an episode end dropped from the critic loss and its later steps masked in the
flow loss; QC's best-of-N action is the candidate of highest Q. One seed (leading seed dim 1)."""
import pytest
import torch

import algorithms
from algorithms import ActionSpec, Batch, ObsSpec
from tests.algorithms.helpers import approx

A, OBS = 2, 3


def make(name="fql", **hp):
    torch.manual_seed(0)
    return algorithms.make(name, ObsSpec((OBS,)), ActionSpec(A), {"actor_hidden": (8, 8), "critic_hidden": (8, 8), **hp})


def tensors(B=4, h=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, B, OBS, generator=g), torch.rand(1, B, h * A, generator=g) * 2 - 1,
            torch.randn(1, B, h * A, generator=g), torch.rand(1, B, 1, generator=g))


def test_bc_flow_loss_regresses_the_velocity_on_the_straight_path():
    fql = make()
    obs, action, x0, t = tensors()
    x_t = (1 - t) * x0 + t * action  # the straight path from noise to the data action
    with torch.no_grad():
        v = fql.actor_bc_flow(torch.cat([obs, x_t, t], -1))
        out = fql.bc_flow_loss(obs, action, None, x0, t)
    assert out.shape == (1,)
    assert out.item() == approx((v - (action - x0)).square().mean().item())


def test_flow_actions_are_euler_steps_from_the_noise_then_clipped():
    fql = make(flow_steps=4)
    obs, _, z, _ = tensors()
    z = 3 * z  # far outside [-1, 1]: the clip matters
    x = z.clone()
    with torch.no_grad():
        for i in range(4):
            x = x + fql.actor_bc_flow(torch.cat([obs, x, torch.full((1, 4, 1), i / 4)], -1)) / 4
        out = fql.flow_actions(obs, z)
    torch.testing.assert_close(out, x.clamp(-1, 1))
    assert out.abs().max() <= 1.0


@pytest.mark.parametrize("normalize", [False, True])
def test_distillation_and_q_term(normalize):
    fql = make(normalize_q_loss=normalize, alpha=7.0)
    obs, _, z, _ = tensors()
    distill, q_loss, q_mean = fql.onestep_losses(obs, z)
    with torch.no_grad():
        mu = fql.actor_onestep_flow(torch.cat([obs, z], -1))
        target = fql.flow_actions(obs, z)
        q = fql.critic(obs, mu.clamp(-1, 1)).mean(0)  # the critics' mean, at the clipped action
    assert distill.item() == approx((mu - target).square().mean().item())
    lam = 1 / q.abs().mean() if normalize else 1.0
    assert q_loss.item() == approx((-lam * q.mean()).item())
    assert q_mean.item() == approx(q.mean().item())
    # gradients: none to the flow (its action is the target) or the critics; lam is a constant
    (distill + q_loss).sum().backward()
    assert all(p.grad is None for p in fql.actor_bc_flow.parameters())
    assert all(p.grad is None for p in fql.critic.parameters())
    grads = [p.grad.clone() for p in fql.actor_onestep_flow.parameters()]
    fql.actor_onestep_flow.zero_grad()
    mu = fql.actor_onestep_flow(torch.cat([obs, z], -1))
    q = fql.critic(obs, mu.clamp(-1, 1), frozen=True).mean(0)
    ((mu - target).square().mean() - float(lam) * q.mean()).backward()
    for g, p in zip(grads, fql.actor_onestep_flow.parameters()):
        torch.testing.assert_close(g, p.grad)


@pytest.mark.parametrize("q_agg", ["mean", "min"])
def test_critic_target_aggregates_the_target_ensemble(q_agg):
    fql = make(q_agg=q_agg, gamma=0.9)
    q_next = torch.tensor([[[1.0, 5.0, -2.0]], [[3.0, 2.0, -4.0]]])  # (n=2, K=1, B=3)
    agg = fql.aggregate(q_next)
    assert agg.tolist() == ([[2.0, 3.5, -3.0]] if q_agg == "mean" else [[1.0, 2.0, -4.0]])
    reward, done = torch.tensor([[1.0, -1.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    y = fql.td_target(reward, done, agg)
    assert y[0].tolist() == approx((reward + 0.9 * (1 - done) * agg)[0].tolist())
    assert y[0, 2].item() == approx(0.0)  # terminal: no bootstrap
    q = torch.tensor([[[0.0, 1.0, 2.0]], [[1.0, 1.0, 1.0]]])
    assert fql.critic_loss(q, y, None).item() == approx((q - y).square().mean().item())


def test_chunked_backup_with_an_episode_end_inside_a_chunk():
    """h = 3; row 1's episode ends after its second step (valid 1, 1, 0): the critic loss weighs
    each row by valid_{h-1}, so row 1 teaches no Q-value, and the bootstrap discount is gamma^3."""
    h, B = 3, 4
    fql = make("qcfql", chunk=h, gamma=0.9)
    assert fql.chunk == h and fql.config.alpha == 100.0
    obs, action, x0, t = tensors(B, h)
    valid = torch.tensor([[[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]])
    reward, done = torch.tensor([[1.0, 2.0, -1.0, 0.5]]), torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    next_q = torch.tensor([[4.0, 4.0, 2.0, 3.0]])
    y = fql.td_target(reward, done, next_q)
    assert y[0].tolist() == approx([1.0 + 0.9 ** 3 * 4.0, 2.0, -1.0 + 0.9 ** 3 * 2.0, 0.5])
    q = torch.tensor([[[0.0, 1.0, 2.0, 3.0]], [[1.0, 0.0, 1.0, 0.0]]])
    expected = ((q - y).square() * torch.tensor([1.0, 0.0, 1.0, 0.0])).mean()  # mean over all 2 x 4 entries
    assert fql.critic_loss(q, y, valid).item() == approx(expected.item())
    # flow BC: the steps after the episode end are masked, each step's A dims together
    x_t = (1 - t) * x0 + t * action
    with torch.no_grad():
        error = (fql.actor_bc_flow(torch.cat([obs, x_t, t], -1)) - (action - x0)).square()
        out = fql.bc_flow_loss(obs, action, valid, x0, t)
    mask = valid.repeat_interleave(A, -1)  # (1, B, h * A): step i covers dims i*A .. i*A + A - 1
    assert out.item() == approx((error * mask).mean().item())
    # through a whole update: a cut chunk's reward and actions change no critic loss (its actions
    # after the end still enter the flow's input, as in acfql.py: only their errors are masked)
    def first_update(reward, action):
        algo = make("qcfql", chunk=h, gamma=0.9)
        torch.manual_seed(5)
        return algo.update(Batch(obs=obs, action=action, reward=reward, next_obs=obs.flip(1), done=done, valid=valid))
    base = first_update(reward, action)
    changed_action = action.clone()
    changed_action[0, 1, 2 * A:] = -action[0, 1, 2 * A:]  # row 1's third step: after its episode end
    other = first_update(reward + torch.tensor([[0.0, 50.0, 0.0, 0.0]]), changed_action)
    assert other["critic_loss"].item() == approx(base["critic_loss"].item())
    kept = first_update(reward + torch.tensor([[50.0, 0.0, 0.0, 0.0]]), action)  # a valid row's reward counts
    assert kept["critic_loss"].item() != approx(base["critic_loss"].item())


def test_chunked_method_refuses_batches_without_chunks():
    fql = make("qc", chunk=2)
    obs, action, _, _ = tensors(4, 2)
    with pytest.raises(ValueError, match="needs batches of chunks"):
        fql.update(Batch(obs=obs, action=action, reward=torch.zeros(1, 4), next_obs=obs, done=torch.zeros(1, 4)))


def test_best_of_n_acts_with_the_flow_chunk_of_highest_q():
    qc = make("qc", chunk=2, n_samples=6, q_agg="min")
    assert qc.config.actor_type == "best-of-n" and qc.actor_onestep_flow is None
    obs = tensors(3)[0]
    with torch.no_grad():
        chunk = qc.policy(obs, deterministic=True)
        z = qc.fixed_noise((6, 2 * A), "cpu")
        for b in range(3):
            s = obs[:, b:b + 1].expand(1, 6, OBS)
            candidates = qc.flow_actions(s, z[None])
            q = qc.critic(s, candidates).min(0).values[0]  # q_agg min ranks
            torch.testing.assert_close(chunk[0, b], candidates[0, q.argmax()])
    assert chunk.shape == (1, 3, 2 * A)
    torch.testing.assert_close(qc.policy(obs, True), chunk)  # evaluation: fixed noise
    assert not torch.equal(qc.policy(obs, False), qc.policy(obs, False))  # exploration: fresh noise


def test_update_is_one_step_on_the_sum_then_the_target_moves_by_tau():
    fql = make(tau=0.25)
    target_before = [p.clone() for p in fql.critic_target.parameters()]
    obs, action, _, _ = tensors(8)
    batch = Batch(obs=obs, action=action, reward=torch.randn(1, 8), next_obs=obs.flip(1), done=torch.zeros(1, 8))
    metrics = fql.update(batch)
    assert metrics["actor_loss"].item() == approx((metrics["bc_flow_loss"] + 10.0 * metrics["distill_loss"]
                                                   + metrics["q_loss"]).item())
    for before, target, online in zip(target_before, fql.critic_target.parameters(), fql.critic.parameters()):
        torch.testing.assert_close(target, 0.75 * before + 0.25 * online)


def test_config_refuses_bad_values():
    for bad in ({"q_agg": "max"}, {"actor_type": "sac"}, {"chunk": 0}, {"flow_steps": 0}, {"alpha": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            make(**bad)
    with pytest.raises(ValueError, match="vector observations only"):
        algorithms.make("fql", ObsSpec((3 * 4 * 4,), image=(3, 4, 4)), ActionSpec(A), {})


def test_per_task_alpha_of_the_yaml_beats_the_domain_block():
    """fql.yaml: alpha 300 on OGBench (README: cube, scene), 1000 on puzzle tasks (`tasks:` patterns);
    the command line still wins; a pattern matching no task is refused."""
    from harness.config import ConfigError, load_group, resolve_algorithm

    cfg = load_group("algorithm", "fql")
    alpha = lambda task, domain, *o: resolve_algorithm(cfg, domain, *o, task=task)["hparams"]["alpha"]  # noqa: E731
    assert alpha("cube-double-play-singletask-task1", "ogbench") == 300.0
    assert alpha("puzzle-3x3-play-singletask-task1", "ogbench") == 1000.0
    assert alpha("antmaze-large-diverse", "antmaze") == 3.0 and alpha("antmaze-medium-play", "antmaze") == 10.0
    assert alpha("puzzle-3x3-play-singletask-task1", "ogbench", {"hparams": {"alpha": 5.0}}) == 5.0
    with pytest.raises(ConfigError, match="tasks.nope-\\* matches no task"):
        resolve_algorithm({"name": "fql", "tasks": {"nope-*": {"hparams": {"alpha": 1.0}}}}, "ogbench", task="x")

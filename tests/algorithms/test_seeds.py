"""K seeds as one batched model: with one seed every network computes exactly as plain torch
modules; a seed's initial weights and random draws do not depend on the seeds it trains with;
perturbing one seed's batch leaves every other seed's update bit-identical; a seed trained in a
group follows its trajectory alone up to rounding; a method written for one seed refuses groups."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import algorithms
from algorithms import ActionSpec, Batch, ObsSpec, SeedStreams
from algorithms.common.networks import SeedMLP, mlp

OBS, ACT, B = 5, 3, 16
HP = {"actor_hidden": (16, 16), "critic_hidden": (16, 16), "value_hidden": (16, 16), "n_critics": 3,
      "actor_every": 2}  # RLPD's and WSRL's actors step within the test's updates
METHODS = algorithms.available()  # every registered method is seed-batched


def make(name, seeds, **extra):
    fields = algorithms.get(name).Config.__dataclass_fields__
    hp = {k: v for k, v in {**HP, **extra}.items() if k in fields}
    return algorithms.make(name, ObsSpec((OBS,)), ActionSpec(ACT), hp, "cpu", SeedStreams.from_seeds(seeds))


def seed_batch(seed, chunk=1):
    """One seed's batch; with chunk h > 1, of h-step chunks (some cut by an episode end)."""
    g = torch.Generator().manual_seed(seed)
    valid = (torch.arange(chunk) < torch.randint(1, chunk + 3, (B, 1), generator=g)).float() if chunk > 1 else None
    return Batch(obs=torch.randn(B, OBS, generator=g), action=torch.rand(B, chunk * ACT, generator=g) * 2 - 1,
                 reward=torch.randn(B, generator=g), next_obs=torch.randn(B, OBS, generator=g),
                 done=(torch.rand(B, generator=g) < 0.1).float(), mc_return=torch.randn(B, generator=g), valid=valid)


def chunk(name):
    return getattr(algorithms.get(name).Config(), "chunk", 1)


def per_seed_tensors(algo):
    """Every parameter and learned scalar, each with the seed dim first."""
    out = {}
    for key, obj in algo.modules().items():
        if isinstance(obj, nn.Module):
            out.update({f"{key}.{n}": p for n, p in obj.named_parameters()})
        elif isinstance(obj, torch.Tensor) and obj.requires_grad:
            out[key] = obj
    return out


def test_one_seed_computes_bit_for_bit_as_a_plain_torch_mlp():
    torch.manual_seed(5)
    plain = mlp(4, (32, 32), 3)
    seeded = SeedMLP(4, (32, 32), 3, SeedStreams.from_seeds([5]))
    x = torch.randn(64, 4)
    y_plain, y_seeded = plain(x), seeded(x[None])
    assert torch.equal(y_seeded[0], y_plain)  # the same initial weights, the same ops
    w = torch.randn(64, 3)
    (y_plain * w).sum().backward()
    (y_seeded[0] * w).sum().backward()
    for linear, layer in zip(plain[0::2], seeded.layers):
        assert torch.equal(layer.weight.grad[0], linear.weight.grad)
        assert torch.equal(layer.bias.grad[0], linear.bias.grad)


@pytest.mark.parametrize("name", METHODS)
def test_a_seeds_initial_weights_do_not_depend_on_its_group(name):
    alone, group = make(name, [3]), make(name, [1, 3, 5])
    for key, t in per_seed_tensors(alone).items():
        assert torch.equal(per_seed_tensors(group)[key][1], t[0]), key
    a, b = alone.rng.randn_like(torch.zeros(1, 7)), group.rng.randn_like(torch.zeros(3, 7))
    assert torch.equal(a[0], b[1]) and not torch.equal(b[0], b[1])  # its own stream, not its neighbours'


@pytest.mark.parametrize("name", METHODS)
def test_perturbing_one_seeds_batch_leaves_every_other_seed_bit_identical(name):
    batches = [seed_batch(s, chunk(name)) for s in (10, 11, 12)]
    perturbed = list(batches)
    b1 = batches[1]
    perturbed[1] = dataclasses.replace(b1, obs=b1.obs + 0.5, reward=-b1.reward, action=b1.action.flip(0))
    results = []
    for bs in (batches, perturbed):
        algo = make(name, [0, 1, 2])
        for step in range(4):  # TD3+BC's, RLPD's and WSRL's actors step every second update
            if step == 2:  # then fine-tuning (WSRL: its SAC update)
                algo.on_finetune_start()
            metrics = algo.update(Batch.stack(bs))
        results.append((per_seed_tensors(algo), metrics))
    (params, metrics), (params_p, metrics_p) = results
    changed = False
    for key in params:
        for k in (0, 2):
            assert torch.equal(params[key][k], params_p[key][k]), (key, k)
        changed |= not torch.equal(params[key][1], params_p[key][1])
    assert changed, "seed 1's own update must see its batch"
    for key in metrics:
        assert metrics[key][0] == metrics_p[key][0] and metrics[key][2] == metrics_p[key][2], key


@pytest.mark.parametrize("name", METHODS)
def test_a_seed_in_a_group_follows_its_trajectory_alone_up_to_rounding(name):
    """The same initial weights, batches and random draws; only the batched ops' rounding differs."""
    seeds = [4, 7, 9]
    group = make(name, seeds)
    alone = [make(name, [s]) for s in seeds]
    for step in range(20):
        if step == 10:
            for algo in (group, *alone):
                algo.on_finetune_start()
        bs = [seed_batch(100 * step + k, chunk(name)) for k in range(3)]
        group.update(Batch.stack(bs))
        for algo, b in zip(alone, bs):
            algo.update(Batch.stack([b]))
    for k, algo in enumerate(alone):
        for key, t in per_seed_tensors(algo).items():
            torch.testing.assert_close(per_seed_tensors(group)[key][k], t[0], rtol=1e-3, atol=1e-5, msg=key)
    obs = np.random.default_rng(0).standard_normal((3, 6, OBS)).astype(np.float32)
    together = group.act(obs, deterministic=True)
    for k, algo in enumerate(alone):
        np.testing.assert_allclose(together[k], algo.act(obs[k:k + 1], deterministic=True)[0], rtol=1e-3, atol=1e-4)


class OneSeedBC(algorithms.Algorithm):
    """A method written for one seed (plain batches): behaviour cloning."""

    Config = algorithms.get("td3bc").Config

    def __init__(self, obs_spec, action_spec, config, device, rng=None):
        super().__init__(obs_spec, action_spec, config, device, rng)
        self.net = mlp(obs_spec.shape[0], (8,), action_spec.dim)
        self.opt = torch.optim.Adam(self.net.parameters(), 1e-3)

    def update(self, batch):
        assert batch.obs.dim() == 2  # no seed dim
        loss = (torch.tanh(self.net(batch.obs)) - batch.action).square().mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach()}

    def policy(self, obs, deterministic):
        return torch.tanh(self.net(obs))


def test_a_method_written_for_one_seed_runs_alone_and_refuses_a_group():
    one = OneSeedBC(ObsSpec((OBS,)), ActionSpec(ACT), None, "cpu")
    metrics = one.update_seeds(Batch.stack([seed_batch(0)]))
    assert metrics["loss"].shape == (1,)
    assert one.act(np.zeros((1, OBS), np.float32), True).shape == (1, ACT)
    with pytest.raises(ValueError, match="trains one seed per process.*seeds_per_process=1"):
        OneSeedBC(ObsSpec((OBS,)), ActionSpec(ACT), None, "cpu", SeedStreams.from_seeds([0, 1]))

"""Every registered method honours the interface: finite declared metrics, save/load restores
the same actions, a fixed seed gives the same first update, target networks get no gradients."""
import math

import numpy as np
import pytest
import torch

import algorithms
from algorithms import ActionSpec, Batch, ObsSpec
from tests.algorithms.helpers import for_method

OBS, ACT, B = 5, 3, 32
SMALL = {"actor_hidden": (16, 16), "critic_hidden": (16, 16), "value_hidden": (16, 16),
         "actor_every": 2}  # RLPD's and WSRL's actor step (a job sets it to protocol.utd)


def small_hparams(name):
    return for_method(name, SMALL)


def make(name, seed=0):
    torch.manual_seed(seed)
    return algorithms.make(name, ObsSpec((OBS,)), ActionSpec(ACT), small_hparams(name), "cpu")


def batch(seed=0, seeds=1):
    """One batch for each of `seeds` seeds: fields (seeds, B, ...)."""
    g = torch.Generator().manual_seed(seed)
    K = seeds
    return Batch(obs=torch.randn(K, B, OBS, generator=g), action=torch.rand(K, B, ACT, generator=g) * 2 - 1,
                 reward=torch.randn(K, B, generator=g), next_obs=torch.randn(K, B, OBS, generator=g),
                 done=(torch.rand(K, B, generator=g) < 0.1).float(), mc_return=torch.randn(K, B, generator=g))


@pytest.fixture(params=algorithms.available())
def name(request):
    return request.param


def test_update_gives_finite_metrics_one_per_seed(name):
    algo = make(name)
    for i in range(3):
        metrics = algo.update_seeds(batch(i))
    assert metrics, "update must report metrics"
    for key, value in metrics.items():
        assert torch.is_tensor(value) and value.shape == (1,), key
        assert math.isfinite(float(value)), key


def test_policy_value_is_q_of_the_deterministic_action(name):
    """None (no Q-function) or a finite (K, B) tensor without gradients that follows the policy:
    the same states give the same values, and a changed actor changes them."""
    algo = make(name)
    for _ in range(3):
        algo.update_seeds(batch())
    obs = batch(1).obs
    value = algo.policy_value_seeds(obs)
    if name in ("calql", "cql", "iql", "td3bc", "awac", "rlpd", "wsrl"):  # every method here has one
        assert value is not None
    if value is None:
        return
    assert value.shape == (1, B) and torch.isfinite(value).all() and not value.requires_grad
    assert torch.equal(value, algo.policy_value_seeds(obs))
    with torch.no_grad():
        for p in algo.actor.parameters():
            p.add_(0.5 * torch.randn_like(p))
    assert not torch.allclose(value, algo.policy_value_seeds(obs))


def test_act_shapes_and_bounds(name):
    algo = make(name)
    single = algo.act(np.zeros((1, OBS), np.float32), deterministic=True)  # one observation per seed
    many = algo.act(np.random.randn(1, 7, OBS).astype(np.float32), deterministic=False)
    assert single.shape == (1, ACT) and many.shape == (1, 7, ACT)
    assert np.all(np.abs(many) <= 1.0)


def test_save_load_restores_actions_and_training(name, tmp_path):
    a = make(name, seed=0)
    for i in range(3):
        a.update_seeds(batch(i))
    a.on_finetune_start()
    torch.save(a.state_dict(), tmp_path / "s.pt")
    b = make(name, seed=123)  # different init
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=False))
    obs = np.random.randn(1, 9, OBS).astype(np.float32)
    np.testing.assert_array_equal(a.act(obs, True), b.act(obs, True))
    assert b.finetuning
    # training continues identically from the restored state (optimizers, temperatures too)
    torch.manual_seed(7)
    ma = a.update_seeds(batch(5))
    torch.manual_seed(7)
    mb = b.update_seeds(batch(5))
    for k in ma:
        assert float(ma[k]) == pytest.approx(float(mb[k]), rel=1e-5, abs=1e-6), k


def test_fixed_seed_gives_same_first_update(name):
    results = []
    for _ in range(2):
        algo = make(name, seed=3)
        torch.manual_seed(11)
        results.append({k: float(v) for k, v in algo.update_seeds(batch(0)).items()})
    assert results[0] == results[1]


def test_target_networks_get_no_gradients(name):
    algo = make(name)
    algo.update_seeds(batch(0))
    targets = [m for k, m in algo.modules().items() if "target" in k and isinstance(m, torch.nn.Module)]
    assert targets, f"{name}: no target network among modules() (keys with 'target'), so nothing was checked"
    for target in targets:
        for p in target.parameters():
            assert not p.requires_grad and p.grad is None


def test_declared_needs_are_known_batch_fields(name):
    assert set(algorithms.get(name).needs) <= set(Batch.__dataclass_fields__)


def test_unknown_name_and_option_errors_list_valid_choices():
    with pytest.raises(KeyError, match="unknown algorithm 'nope'; choose one of: .*calql.*cql"):
        algorithms.get("nope")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus'\].*valid options"):
        algorithms.make("cql", ObsSpec((OBS,)), ActionSpec(ACT), {"bogus": 1})


def test_duplicate_registration_raises():
    class Other(algorithms.Algorithm):
        Config = algorithms.get("cql").Config

        def update(self, batch):
            return {}

        def policy(self, obs, deterministic):
            return obs

    with pytest.raises(ValueError, match="registered twice"):
        algorithms.register("cql")(Other)


@pytest.mark.parametrize("domain", ["antmaze", "adroit", "kitchen", "pointmaze", "other"])
def test_every_yaml_resolves_to_a_valid_config_in_every_domain(domain):
    from harness.config import group_names, load_group, resolve_algorithm, validate_algorithm

    assert set(group_names("algorithm")) >= {"awac", "calql", "cql", "iql", "td3bc"}
    for name in group_names("algorithm"):
        algo = resolve_algorithm(load_group("algorithm", name), domain)
        assert algo["name"] == name and name in algorithms.available()
        validate_algorithm(algo)

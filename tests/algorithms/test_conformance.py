"""Every registered method honours the interface: the conformance suite (`algorithms.conformance`,
which plug-in authors run as `python -m algorithms.conformance NAME`) on every registered method,
one test per check; then the registry's errors and every yaml's config."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import algorithms
from algorithms import ActionSpec, ObsSpec, conformance
from algorithms.conformance import ACT, OBS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("check", conformance.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", algorithms.available())
def test_conformance(name, check):
    check(name)


class BC(algorithms.Algorithm):
    """Behaviour cloning as docs/adding-a-method.md outlines it: no critic, no target network."""

    Config = algorithms.get("td3bc").Config

    def __init__(self, obs_spec, action_spec, config, device, rng=None):
        super().__init__(obs_spec, action_spec, config, device, rng)
        self.actor = torch.nn.Sequential(torch.nn.Linear(obs_spec.shape[0], 16), torch.nn.ReLU(),
                                         torch.nn.Linear(16, action_spec.dim), torch.nn.Tanh())
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=1e-3)

    def update(self, batch):
        loss = ((self.actor(batch.obs) - batch.action) ** 2).mean()
        algorithms.minimize(self.optimizer, loss)
        return {"bc_loss": loss.detach()}

    def policy(self, obs, deterministic):
        with torch.no_grad():
            return self.actor(obs)


@pytest.fixture
def bc(monkeypatch):
    monkeypatch.setitem(algorithms.REGISTRY, "bc-test", BC)
    monkeypatch.setattr(BC, "name", "bc-test")
    return "bc-test"


def test_a_valid_method_without_target_network_or_q_passes(bc):
    results = conformance.run([bc])
    assert [r for r in results if r[2] == "FAIL"] == []
    states = {label: state for _, label, state, _ in results}
    assert states["target_networks_get_no_gradients"] == "n/a" and states["policy_value_is_q_of_the_deterministic_action"] == "n/a"


@pytest.mark.parametrize("returns, got", [("float", "'bc_loss' as a float"), ("None", "a NoneType")])
def test_an_update_breaking_the_contract_fails_in_one_line_naming_it(bc, monkeypatch, returns, got):
    monkeypatch.setattr(BC, "update", lambda self, batch: {"bc_loss": 0.5} if returns == "float" else None)
    results = conformance.run([bc])
    (detail,) = {r[3] for r in results if r[1] == "update_gives_finite_metrics_one_per_seed"}
    assert detail.startswith(f"TypeError: algorithm 'bc-test': update() must return a dict of metric name -> detached "
                             f"torch tensor, each a scalar (multi_seed = False); got {got}"), detail
    assert "Algorithm.update in algorithms/base.py" in detail and "\n" not in detail


def test_the_suite_runs_from_outside_the_checkout(tmp_path):
    """From another folder (a plug-in author's), with the repository reached only as an installed
    package would be: no `tests/algorithms` on the path to shadow `algorithms`."""
    import os

    proc = subprocess.run([sys.executable, "-m", "algorithms.conformance", "td3bc"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"{len(conformance.CHECKS)}/{len(conformance.CHECKS)} checks passed"
    proc = subprocess.run([sys.executable, "-m", "algorithms.conformance", "nope"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown algorithm 'nope'; choose one of: awac")


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


@pytest.mark.parametrize("domain", ["antmaze", "adroit", "kitchen", "pointmaze", "ogbench", "ogbench_mini", "other"])
def test_every_yaml_resolves_to_a_valid_config_in_every_domain(domain):
    from harness.config import group_names, load_group, resolve_algorithm, validate_algorithm

    assert set(group_names("algorithm")) >= {"awac", "calql", "cql", "iql", "td3bc", "fql", "qc", "qcfql"}
    for name in group_names("algorithm"):
        algo = resolve_algorithm(load_group("algorithm", name), domain)
        assert algo["name"] == name and name in algorithms.available()
        validate_algorithm(algo)


def test_the_suite_runs_on_a_plugin_source_file_from_its_folder(tmp_path):
    """From the folder holding a method's source (not installed): the file is imported, its
    `@register` runs, and its method is checked, not refused as unknown."""
    import inspect
    import os
    import textwrap

    source = "import torch\nimport algorithms\n\n\n@algorithms.register('bc_file')\n" + textwrap.dedent(
        inspect.getsource(BC))
    (tmp_path / "bc.py").write_text(source)
    proc = subprocess.run([sys.executable, "-m", "algorithms.conformance", "bc.py"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " bc_file " in proc.stdout and proc.stdout.strip().splitlines()[-1].endswith("checks passed")

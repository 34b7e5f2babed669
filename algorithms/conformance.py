"""The conformance suite: a registered method honours the `Algorithm` interface. Finite declared
metrics, one per seed; Q of the deterministic action or None; actions in bounds; save/load
restores the same actions and training; a fixed seed gives the same first update; target
networks, where a method has them, get no gradients; declared needs are batch fields.

Run it on any method, a plug-in's included, from any folder (no checkout needed):
`python -m algorithms.conformance NAME [NAME ...]` (no name: every registered method), or a
method's source file, `python -m algorithms.conformance bc.py` (imported under its package's name,
so its relative imports work; the methods it registers, by `@register` or by an installed entry
point, are checked); one line per check, exit code 1 if any fails. `tests/algorithms/test_conformance.py` runs it in CI.
"""
from __future__ import annotations

import math
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from algorithms import base
from algorithms.base import ActionSpec, Batch, ObsSpec

OBS, ACT, B = 5, 3, 32
SMALL = {"actor_hidden": (16, 16), "critic_hidden": (16, 16), "value_hidden": (16, 16),
         "actor_every": 2}  # RLPD's and WSRL's actor step (a job sets it to protocol.utd)
BUILT_IN = ("calql", "cql", "iql", "td3bc", "awac", "rlpd", "wsrl", "fql", "qc", "qcfql")  # every one has a Q-function


def small_hparams(name: str) -> dict:
    """The entries of SMALL that method `name` has."""
    return {k: v for k, v in SMALL.items() if k in base.get(name).Config.__dataclass_fields__}


def make(name: str, seed: int = 0) -> base.Algorithm:
    torch.manual_seed(seed)
    return base.make(name, ObsSpec((OBS,)), ActionSpec(ACT), small_hparams(name), "cpu")


def chunk(name: str) -> int:
    """The method's chunk length h with its defaults (1 for a method without chunks)."""
    return getattr(base.get(name).Config(), "chunk", 1)


def batch(seed: int = 0, seeds: int = 1, chunk: int = 1) -> Batch:
    """One batch for each of `seeds` seeds: fields (seeds, B, ...); with chunk h > 1, batches of
    h-step chunks (actions h * ACT, `valid` with an episode end inside some chunks)."""
    g = torch.Generator().manual_seed(seed)
    K = seeds
    valid = None
    if chunk > 1:
        ends = torch.randint(1, chunk + 3, (K, B, 1), generator=g)  # first step after an episode end (> h: none)
        valid = (torch.arange(chunk) < ends).float()
    return Batch(obs=torch.randn(K, B, OBS, generator=g), action=torch.rand(K, B, chunk * ACT, generator=g) * 2 - 1,
                 reward=torch.randn(K, B, generator=g), next_obs=torch.randn(K, B, OBS, generator=g),
                 done=(torch.rand(K, B, generator=g) < 0.1).float(), mc_return=torch.randn(K, B, generator=g),
                 valid=valid)


def check_update_gives_finite_metrics_one_per_seed(name: str) -> str | None:
    algo = make(name)
    assert algo.chunk == chunk(name), "the method's chunk is its Config's"
    for i in range(3):
        metrics = algo.update_seeds(batch(i, chunk=algo.chunk))
    assert metrics, "update must report metrics"
    for key, value in metrics.items():
        assert torch.is_tensor(value) and value.shape == (1,), key
        assert math.isfinite(float(value)), f"{key} is not finite"
    return None


def check_policy_value_is_q_of_the_deterministic_action(name: str) -> str | None:
    """None (no Q-function) or a finite (K, B) tensor without gradients that follows the policy:
    the same states give the same values, and a changed actor changes them."""
    algo = make(name)
    for _ in range(3):
        algo.update_seeds(batch(chunk=algo.chunk))
    obs = batch(1).obs
    value = algo.policy_value_seeds(obs)
    if name in BUILT_IN:
        assert value is not None, "every built-in method has a Q-function"
    if value is None:
        return "no Q-function (policy_value returns None): nothing to check"
    assert value.shape == (1, B) and torch.isfinite(value).all() and not value.requires_grad
    assert torch.equal(value, algo.policy_value_seeds(obs))
    actor = getattr(algo, "actor", None)
    if not isinstance(actor, torch.nn.Module):
        return "values checked; no `actor` module to perturb"
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.5 * torch.randn_like(p))
    assert not torch.allclose(value, algo.policy_value_seeds(obs)), "the values do not follow the actor"
    return None


def check_act_shapes_and_bounds(name: str) -> str | None:
    algo = make(name)
    single = algo.act(np.zeros((1, OBS), np.float32), deterministic=True)  # one observation per seed
    many = algo.act(np.random.randn(1, 7, OBS).astype(np.float32), deterministic=False)
    h = chunk(name)  # a chunked method acts with the flattened chunk
    assert single.shape == (1, h * ACT) and many.shape == (1, 7, h * ACT), (single.shape, many.shape)
    assert np.all(np.abs(many) <= 1.0), "actions outside [-1, 1]"
    return None


def check_save_load_restores_actions_and_training(name: str) -> str | None:
    a = make(name, seed=0)
    h = chunk(name)
    for i in range(3):
        a.update_seeds(batch(i, chunk=h))
    a.on_finetune_start()
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(a.state_dict(), Path(tmp) / "s.pt")
        b = make(name, seed=123)  # different init
        b.load_state_dict(torch.load(Path(tmp) / "s.pt", weights_only=False))
    obs = np.random.randn(1, 9, OBS).astype(np.float32)
    np.testing.assert_array_equal(a.act(obs, True), b.act(obs, True))
    assert b.finetuning
    # training continues identically from the restored state (optimizers, temperatures too)
    torch.manual_seed(7)
    ma = a.update_seeds(batch(5, chunk=h))
    torch.manual_seed(7)
    mb = b.update_seeds(batch(5, chunk=h))
    for k in ma:
        assert math.isclose(float(ma[k]), float(mb[k]), rel_tol=1e-5, abs_tol=1e-6), k
    return None


def check_fixed_seed_gives_same_first_update(name: str) -> str | None:
    results = []
    for _ in range(2):
        algo = make(name, seed=3)
        torch.manual_seed(11)
        results.append({k: float(v) for k, v in algo.update_seeds(batch(0, chunk=algo.chunk)).items()})
    assert results[0] == results[1], results
    return None


def check_target_networks_get_no_gradients(name: str) -> str | None:
    """Modules under a key with 'target' (`algorithms.common.networks.target_copy`): frozen. A
    method without one (e.g. behaviour cloning) passes: there is nothing to check."""
    algo = make(name)
    algo.update_seeds(batch(0, chunk=algo.chunk))
    targets = {k: m for k, m in algo.modules().items() if "target" in k and isinstance(m, torch.nn.Module)}
    for key, target in targets.items():
        for p in target.parameters():
            assert not p.requires_grad and p.grad is None, f"{key} has parameters that get gradients"
    return None if targets else "no target network (no modules() key with 'target'): nothing to check"


def check_declared_needs_are_known_batch_fields(name: str) -> str | None:
    unknown = set(base.get(name).needs) - set(Batch.__dataclass_fields__)
    assert not unknown, f"needs {sorted(unknown)}, not fields of Batch"
    return None


CHECKS: list[Callable[[str], str | None]] = [v for k, v in list(globals().items()) if k.startswith("check_")]


def run(names: list[str]) -> list[tuple[str, str, str, str]]:
    """(method, check, 'ok' | 'n/a' | 'FAIL', detail) for every check of every method."""
    out = []
    for name in names:
        for check in CHECKS:
            label = check.__name__.removeprefix("check_")
            try:
                note = check(name)
                out.append((name, label, "n/a" if note else "ok", note or ""))
            except Exception as exc:  # an assertion, or the method's own error
                where = traceback.extract_tb(exc.__traceback__)[-1]
                out.append((name, label, "FAIL", f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})"))
    return out


def methods_of_source(path: Path) -> list[str]:
    """The methods a source file defines, registered by `@register` or by an installed entry point.
    The file is imported under its package's dotted name (`my_plug/mine.py` inside `my_plug/` with
    an `__init__.py`: `my_plug.mine`, its folder's parent first on sys.path), the name an entry
    point loads it by: one module, so its relative imports work and its `@register` runs once,
    not once as `mine` and again as `my_plug.mine` (a second class under the same name)."""
    import importlib

    path = path.resolve()
    parts, root = [path.stem], path.parent
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    sys.path.insert(0, str(root))
    module = importlib.import_module(".".join(parts))
    if Path(getattr(module, "__file__", None) or "").resolve() != path:  # the name was taken (`code.py`)
        import importlib.util

        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(spec.name, module)
        spec.loader.exec_module(module)
    base.available()  # entry points naming a class of this module register it
    return sorted(n for n, cls in base.REGISTRY.items() if cls.__module__ == module.__name__)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a.startswith("-") for a in argv):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    names = []
    for arg in argv:
        if arg.endswith(".py"):  # a source file: importing it registers its methods
            if not Path(arg).is_file():
                print(f"error: no such file {arg}", file=sys.stderr)
                return 2
            found = methods_of_source(Path(arg))
            if not found:
                print(f"error: {arg} defines no method: register its class (@algorithms.register('NAME')) or "
                      f"name it under the package's `o2o_bench.algorithms` entry point and give that name",
                      file=sys.stderr)
                return 2
            names += found
        else:
            names.append(arg)
    argv = names
    known = base.available()
    unknown = [n for n in argv if n not in known]
    if unknown:
        print(f"error: unknown algorithm '{unknown[0]}'; choose one of: {', '.join(known)} (a plug-in is found "
              f"through its `o2o_bench.algorithms` entry point once its package is installed)", file=sys.stderr)
        return 2
    results = run(argv or known)
    for name, label, state, detail in results:
        print(f"{state:<4} {name:<10} {label}{'  ' + detail if detail else ''}")
    failed = sum(r[2] == "FAIL" for r in results)
    print(f"{len(results) - failed}/{len(results)} checks passed" + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

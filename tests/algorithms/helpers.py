"""Shared by the algorithm tests: the tolerance of their equation checks, a random batch, and the
hparams a method has."""
import pytest
import torch

import algorithms
from algorithms import Batch


def approx(x):
    return pytest.approx(x, rel=1e-5, abs=1e-6)


def random_batch(B: int = 6, seed: int = 0, act_dim: int = 2, terminal_every_other: bool = True,
                 mc_return: bool = False) -> Batch:
    """One seed's batch (fields (1, B, ...)) of 3-dim observations drawn from `seed`; `done`
    alternates 0, 1 (terminal_every_other) or is all 0; `mc_return` drawn last when asked for."""
    g = torch.Generator().manual_seed(seed)
    fields = dict(obs=torch.randn(1, B, 3, generator=g), action=torch.rand(1, B, act_dim, generator=g) * 2 - 1,
                  reward=torch.randn(1, B, generator=g), next_obs=torch.randn(1, B, 3, generator=g),
                  done=torch.tensor([[0.0, 1.0] * (B // 2)]) if terminal_every_other else torch.zeros(1, B))
    if mc_return:
        fields["mc_return"] = torch.randn(1, B, generator=g)
    return Batch(**fields)


def for_method(name: str, hparams: dict) -> dict:
    """The entries of `hparams` that method `name` has (one small set of sizes for every method)."""
    return {k: v for k, v in hparams.items() if k in algorithms.get(name).Config.__dataclass_fields__}

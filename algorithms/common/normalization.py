"""Observation standardization with the offline data's statistics, as the references'
`compute_mean_std` (sfujim/TD3_BC, CORL): mean and population std (ddof 0) + 1e-3 per feature."""
from __future__ import annotations

import torch
from torch import nn

from algorithms.base import ObsSpec


class ObsNormalizer(nn.Module):
    """(x - mean) / std, the identity until `fit`; the statistics are buffers, so checkpointed."""

    def __init__(self, dim: int, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, obs: torch.Tensor, obs_spec: ObsSpec, method: str) -> None:
        if obs_spec.image is not None:
            raise ValueError(f"{method}: normalize_obs needs vector observations; "
                             "set normalize_obs: false for image tasks")
        obs = obs.float()
        self.mean.copy_(obs.mean(0))
        self.std.copy_(obs.std(0, correction=0) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def make_obs_normalizer(enabled: bool, dim: int) -> nn.Module:
    """An `ObsNormalizer`, or the identity (no work per step) when normalization is off."""
    return ObsNormalizer(dim) if enabled else nn.Identity()

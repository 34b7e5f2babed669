"""The divergence watch of a group of seeds: which seed's metrics, parameters or actions became
NaN or infinite, found without a host sync per update, and the advice its failure gives."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch


class Diverged(FloatingPointError):
    """A loss, metric, parameter or action became NaN or infinite: the run has failed."""


def divergence_advice(hparams: dict[str, Any], reward, names: list[str]) -> str:
    """Which option to lower: the learning rate named like the diverged quantity (critic_loss ->
    hparams.critic_lr), else every learning rate; and a large reward scale or raw rewards."""
    lrs = [k for k in hparams if k.endswith("_lr")]
    named = [f"{n.split('_')[0]}_lr" for n in names if f"{n.split('_')[0]}_lr" in hparams]
    chosen = list(dict.fromkeys(named)) or lrs
    advice = "lower " + ", ".join(f"algorithm.hparams.{k} (now {hparams[k]:g})" for k in chosen) if chosen else \
        "lower the learning rates"
    scale = abs(reward.scale)
    advice += (f", or the reward scale (algorithm.reward.scale = {reward.scale:g})" if scale > 100 else
               "; or check the dataset's rewards and observations for extreme values")
    return advice


class DivergenceWatch:
    """Every update's metrics (one value per seed, (K,)) are watched on the device: `finite_prefix[k]`
    counts seed k's updates since the last check before its first one with a non-finite metric,
    `finite_keys[k]` which of its metrics stayed finite. A check (when logging, evaluating,
    checkpointing and finishing) reads them in one host sync, and the parameters with them."""

    def __init__(self, n_seeds: int, device: torch.device, advice: Callable[[list[str]], str]):
        self.K, self.device, self.advice = n_seeds, device, advice
        self.finite_prefix = torch.zeros(n_seeds, dtype=torch.int64, device=device)
        self.finite_keys = torch.ones(n_seeds, 0, dtype=torch.bool, device=device)
        self.watched_keys: tuple[str, ...] = ()
        self.checked_step = 0  # updates up to here are known to be finite

    def new_keys(self, metrics: dict[str, torch.Tensor]) -> bool:
        """Whether `metrics` are another set than the watched ones (e.g. fine-tuning's): the
        caller checks the old set first, then `watch` starts on the new one."""
        return tuple(metrics) != self.watched_keys

    def watch(self, metrics: dict[str, torch.Tensor]) -> None:
        """Records whether this update's metrics are all finite, per seed (no host sync)."""
        if self.new_keys(metrics):
            self.watched_keys = tuple(metrics)
            self.finite_keys = torch.ones(self.K, len(metrics), dtype=torch.bool, device=self.device)
        if metrics:
            self.finite_keys.logical_and_(torch.isfinite(torch.stack(list(metrics.values()), 1)))
            self.finite_prefix.add_(self.finite_keys.all(1))

    def metric_failures(self, step: int, phase: str, active: list[bool]) -> list[tuple[int, Diverged]]:
        """The active seeds whose updates since the last check had a non-finite metric, with the
        error naming the first such update."""
        finite = self.finite_prefix.tolist()  # one host sync per check
        keys_ok = self.finite_keys.tolist()
        failures = []
        for k in np.flatnonzero(active):
            if self.watched_keys and finite[k] < step - self.checked_step:
                bad = [name for name, ok in zip(self.watched_keys, keys_ok[k]) if not ok]
                failures.append((k, Diverged(
                    f"diverged: non-finite {', '.join(bad)} first at update {self.checked_step + finite[k] + 1} "
                    f"({phase} phase; the run is failed, not done); {self.advice(bad)}")))
        return failures

    def parameter_failures(self, tensors: dict[str, tuple[list[torch.Tensor], bool]], step: int, phase: str,
                           active: list[bool]) -> list[tuple[int, Diverged]]:
        """The active seeds with a non-finite learned tensor. `tensors`: the method's
        (`Algorithm.learned_tensors`), each list marked whether its tensors have the seed dim first."""
        names, per_seed = [], []
        for name, (group, seeded) in tensors.items():
            for p in group:
                names.append(name)
                per_seed.append(torch.isfinite(p).reshape(self.K, -1).all(1) if seeded
                                else torch.isfinite(p).all().expand(self.K))
        if not per_seed:
            return []
        ok = torch.stack(per_seed).tolist()  # (tensors, K)
        failures = []
        for k in np.flatnonzero(active):
            bad = sorted({name for name, row in zip(names, ok) if not row[k]})
            if bad:
                failures.append((k, Diverged(
                    f"diverged: non-finite parameters in {', '.join(bad)} by update {step} ({phase} phase; "
                    f"the run is failed, not done); {self.advice(bad)}")))
        return failures

    def checked(self, step: int) -> None:
        """Updates up to `step` are known to be finite (after a check, or restored from a checkpoint)."""
        self.finite_prefix.zero_()
        self.checked_step = step

    def action_failure(self, action: np.ndarray, step: int, phase: str) -> Diverged | None:
        """The error of a NaN/inf action (refused before env.step: MuJoCo would warn and write
        MUJOCO_LOG.TXT), or None for a finite one."""
        if np.isfinite(action).all():
            return None
        return Diverged(f"diverged: the policy gave a non-finite action at update {step} ({phase} phase; the run "
                        f"is failed, not done); {self.advice(['actor'])}")

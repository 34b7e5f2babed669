"""The algorithm interface every method implements, the batch it receives, and the registry.

The harness only ever talks to a method through `Algorithm` and `make`; a method declares what
it needs from a batch (`needs`) instead of the harness branching on its name.
"""
from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np
import torch

ENTRY_POINT_GROUP = "o2o_bench.algorithms"


@dataclass(frozen=True)
class ObsSpec:
    """Observation layout: one flat row of `shape` per observation.

    Vector tasks: float32 rows. Image tasks (`image` = (C, H, W)): uint8 rows holding the
    C*H*W pixels (channel-first) followed by the raw bytes of `vector_dim` float32 values
    (proprioception), so replay, batches and the device keep images as uint8; only the
    encoder (`algorithms.common.encoder`) splits a row and converts pixels to float.
    """

    shape: tuple[int, ...]
    image: tuple[int, int, int] | None = None
    vector_dim: int = 0  # float32 values after the pixels (image tasks only)

    def __post_init__(self):
        if self.image is not None and self.shape != (math.prod(self.image) + 4 * self.vector_dim,):
            raise ValueError(f"ObsSpec: an image {self.image} with {self.vector_dim} float32 values needs rows of "
                             f"{math.prod(self.image) + 4 * self.vector_dim} bytes, got shape {self.shape}")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.image is not None else np.float32)


@dataclass(frozen=True)
class ActionSpec:
    """Continuous actions in [low, high]^dim (tasks rescale their envs to [-1, 1])."""

    dim: int
    low: float = -1.0
    high: float = 1.0


@dataclass(frozen=True)
class Batch:
    """One minibatch, every field a tensor on the job's device with leading dim = batch size.

    `done` is 1.0 only for true terminals (not time-outs). `mc_return` is the Monte-Carlo
    discounted return-to-go of the trajectory holding `obs`; it is filled for methods that list
    "mc_return" in `Algorithm.needs` (and on the batches the harness logs, for calibration).
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor
    mc_return: torch.Tensor | None = None


class Algorithm(ABC):
    """An offline-to-online RL method.

    Subclasses set `Config` (a dataclass: the schema of `hparams` in the method's yaml) and,
    if they need more than the standard transition, `needs` (e.g. {"mc_return"}).
    `update` returns detached scalar tensors so the harness reads them (a host sync) only when
    it logs.
    """

    Config: ClassVar[type]
    needs: ClassVar[frozenset[str]] = frozenset()
    name: ClassVar[str] = ""

    def __init__(self, obs_spec: ObsSpec, action_spec: ActionSpec, config: Any, device: torch.device):
        self.obs_spec = obs_spec
        self.action_spec = action_spec
        self.config = config
        self.device = torch.device(device)
        self.finetuning = False

    @abstractmethod
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on `batch`; returns named scalar metrics (detached tensors)."""

    @abstractmethod
    def policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions for a batch of observations (tensor in, tensor out, no gradients)."""

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Action(s) for numpy observation(s); a single observation gives a single action."""
        single = np.ndim(obs) == len(self.obs_spec.shape)
        x = torch.as_tensor(np.asarray(obs, dtype=self.obs_spec.dtype), device=self.device)
        if single:
            x = x.unsqueeze(0)
        a = self.policy(x, deterministic).cpu().numpy()
        return a[0] if single else a

    def policy_value(self, obs: torch.Tensor) -> torch.Tensor | None:
        """Q(s, pi(s)) of the deterministic policy action under the method's critic (reduced over
        an ensemble as its actor reads it), (B,); None for a method without a Q-function. The harness logs its batch
        mean next to the batch's Monte-Carlo return: the calibration of the learned values."""
        return None

    def observe_dataset(self, obs: torch.Tensor) -> None:
        """Called once with all offline observations (on the job's device, in the dataset's
        dtype: see `ObsSpec`) before training, e.g. for observation normalization; no-op by
        default. State kept here must be tensor attributes so that `modules()` saves it."""

    def on_finetune_start(self) -> None:
        """Called once between offline pre-training and online fine-tuning."""
        self.finetuning = True

    def modules(self) -> dict[str, torch.nn.Module | torch.optim.Optimizer | torch.Tensor]:
        """Everything stateful: networks, optimizers, learned scalars. Used by save/load."""
        return {k: v for k, v in vars(self).items()
                if isinstance(v, (torch.nn.Module, torch.optim.Optimizer, torch.Tensor))}

    def state_dict(self) -> dict[str, Any]:
        state = {"finetuning": self.finetuning}
        for key, obj in self.modules().items():
            state[key] = obj.detach().clone() if isinstance(obj, torch.Tensor) else obj.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.finetuning = state["finetuning"]
        for key, obj in self.modules().items():
            if isinstance(obj, torch.Tensor):
                with torch.no_grad():
                    obj.copy_(state[key])
            else:
                obj.load_state_dict(state[key])


REGISTRY: dict[str, type[Algorithm]] = {}


def register(name: str):
    """Class decorator: make a method available under `name` (= its yaml's file name)."""

    def wrap(cls: type[Algorithm]) -> type[Algorithm]:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"algorithm '{name}' is registered twice ({REGISTRY[name].__module__} "
                             f"and {cls.__module__}); rename one of them")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return wrap


def _load_entry_points() -> None:
    """Methods from installed packages: `[project.entry-points."o2o_bench.algorithms"]`."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in REGISTRY:
            cls = ep.load()
            if ep.name not in REGISTRY:  # loading may already have registered it via @register
                register(ep.name)(cls)


def available() -> list[str]:
    _load_entry_points()
    return sorted(REGISTRY)


def get(name: str) -> type[Algorithm]:
    if name not in REGISTRY:
        _load_entry_points()
    if name not in REGISTRY:
        raise KeyError(f"unknown algorithm '{name}'; choose one of: {', '.join(available())}")
    return REGISTRY[name]


def build_config(cls: type[Algorithm], hparams: dict[str, Any]):
    """Typed config from a plain dict; unknown keys are an error naming the valid ones."""
    known = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(hparams) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for algorithm '{cls.name}'; "
                         f"valid options: {', '.join(sorted(known))}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in hparams.items()}
    return cls.Config(**kwargs)


def make(name: str, obs_spec: ObsSpec, action_spec: ActionSpec, hparams: dict[str, Any],
         device: torch.device | str = "cpu") -> Algorithm:
    cls = get(name)
    return cls(obs_spec, action_spec, build_config(cls, dict(hparams)), torch.device(device))


def check_unit_interval(config: Any, *names: str) -> None:
    """Raise a one-line error for config fields that must lie strictly between 0 and 1."""
    for n in names:
        value = getattr(config, n)
        if not 0 < value < 1:
            raise ValueError(f"{type(config).__qualname__}.{n} must be in (0, 1), got {value}")


def check_positive(config: Any, *names: str) -> None:
    """Raise a one-line error for config fields that must be > 0."""
    for n in names:
        value = getattr(config, n)
        if not value > 0:
            raise ValueError(f"{type(config).__qualname__}.{n} must be > 0, got {value}")


def check_non_negative(config: Any, *names: str) -> None:
    """Raise a one-line error for config fields that must be >= 0."""
    for n in names:
        value = getattr(config, n)
        if not value >= 0:
            raise ValueError(f"{type(config).__qualname__}.{n} must be >= 0, got {value}")


__all__ = ["ActionSpec", "Algorithm", "Batch", "ObsSpec", "REGISTRY", "available", "build_config",
           "check_non_negative", "check_positive", "check_unit_interval", "field", "get", "make", "register"]

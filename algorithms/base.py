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

from algorithms.common.networks import SeedStreams, target_copy

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
    """One minibatch per seed, every field a tensor on the job's device with leading dims
    (seeds, batch size): seed k's rows are `field[k]`. (A method with `multi_seed = False` gets
    one seed's batch: leading dim = batch size.)

    `done` is 1.0 only for true terminals (not time-outs). `mc_return` is the Monte-Carlo
    discounted return-to-go of the trajectory holding `obs`; it is filled for methods that list
    "mc_return" in `Algorithm.needs` (and on the batches the harness logs, for calibration).

    Action chunks (`Algorithm.chunk` = h > 1; QC's `sample_sequence`, github ColinQiyangLi/qc
    utils/datasets.py): each row starts at step t of the data; `action` is a_t .. a_{t+h-1}
    flattened (h*A); `reward` the discounted sum over the chunk's steps up to the episode's end,
    sum_i gamma^i r_{t+i} valid_i; `next_obs` that of step t+h-1; `done` 1.0 if a true terminal
    falls on a valid step; `valid` (h,) marks the steps before the episode ended (valid_0 = 1;
    steps after the end hold the data's next rows). The method bootstraps with gamma^h. With
    h = 1, `valid` is None and every field is the one-step transition.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor
    mc_return: torch.Tensor | None = None
    valid: torch.Tensor | None = None

    @classmethod
    def stack(cls, batches: list["Batch"]) -> "Batch":
        """One seed's batch each -> a batch of len(batches) seeds."""
        return cls(**{f.name: None if getattr(batches[0], f.name) is None
                      else torch.stack([getattr(b, f.name) for b in batches]) for f in dataclasses.fields(cls)})

    def seed(self, k: int) -> "Batch":
        """Seed k's rows."""
        return Batch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[k]
                        for f in dataclasses.fields(self)})


def per_seed(x: torch.Tensor) -> torch.Tensor:
    """A value per seed (K,) as it multiplies each seed's batch rows (K, B): (K, 1). The one
    place the seed axis enters an equation (e.g. alpha log pi(a|s) reads per_seed(alpha) * log_pi)."""
    return x.unsqueeze(-1)


def minimize(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimizer step on `loss`, one loss per seed (K,). Each seed's loss depends on its own
    parameters only, so the gradient of their sum is every seed's own gradient, and Adam is
    elementwise: one optimizer over the stacked parameters steps each seed exactly as its own
    optimizer would. (Summed, not averaged: a mean over seeds would scale every gradient by 1/K.)"""
    optimizer.zero_grad(set_to_none=True)
    loss.sum().backward()
    optimizer.step()


class Algorithm(ABC):
    """An offline-to-online RL method.

    Subclasses set `Config` (a dataclass: the schema of `hparams` in the method's yaml) and,
    if they need more than the standard transition, `needs` (e.g. {"mc_return"}).
    `update` returns detached tensors so the harness reads them (a host sync) only when it logs.

    Seeds: a method with `multi_seed = True` trains K seeds at once (K = len(rng)): its networks
    hold K copies (`algorithms.common.networks`), batches and observations have a leading seed
    dim, `update` returns one value per seed (K,) for each metric, and every random draw comes
    from `self.rng`, one stream per seed. A method with `multi_seed = False` is written for one
    seed: it gets plain batches and observations, returns scalars, and refuses K > 1.
    """

    Config: ClassVar[type]
    needs: ClassVar[frozenset[str]] = frozenset()
    name: ClassVar[str] = ""
    multi_seed: ClassVar[bool] = False
    takes_images: ClassVar[bool] = True  # False: vector observations only (refused on image tasks)
    unseeded: ClassVar[frozenset[str]] = frozenset()  # tensors in `modules()` without the seed dim (step counters)

    def __init__(self, obs_spec: ObsSpec, action_spec: ActionSpec, config: Any, device: torch.device,
                 rng: SeedStreams | None = None):
        self.obs_spec = obs_spec
        self.action_spec = action_spec
        self.config = config
        self.device = torch.device(device)
        self.finetuning = False
        self.rng = rng if rng is not None else SeedStreams()
        self.n_seeds = len(self.rng)
        if obs_spec.image is not None and not self.takes_images:
            raise ValueError(f"algorithm '{self.name}' takes vector observations only; choose a state-based task")
        if self.n_seeds > 1 and not self.multi_seed:
            raise ValueError(f"algorithm '{self.name}' trains one seed per process (multi_seed = False); "
                             f"set seeds_per_process=1")
        chunk = getattr(config, "chunk", 1)
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"algorithm '{self.name}': chunk must be a whole number >= 1 (actions per policy "
                             f"call), got {chunk!r}")
        followers = protocol_followers(type(config)) if dataclasses.is_dataclass(config) else {}
        unset = [f"{name} (= protocol.{field} in a job)" for name, field in followers.items()
                 if getattr(config, name) is None]
        if unset:
            raise ValueError(f"algorithm '{self.name}': {', '.join(unset)} is null; set it when building the "
                             f"method outside a job")

    @property
    def chunk(self) -> int:
        """Action chunk length h: the method's Config field `chunk` (its one home), 1 without one.
        With h > 1 the harness samples h-step chunks (see `Batch`), `policy` returns h actions
        flattened (..., h*A), and the runner executes them open-loop."""
        return getattr(self.config, "chunk", 1)

    # -- what every method's constructor shares: it then states only its networks' shapes ----
    def build_encoder(self) -> int:
        """`self.encoder` (identity for vector observations; DrQ's for images, trained by the
        critic loss) and its frozen target `self.encoder_target`; returns the feature size."""
        from algorithms.common.encoder import make_encoder

        self.encoder = make_encoder(self.obs_spec, self.config, self.rng).to(self.device)
        self.encoder_target = target_copy(self.encoder)
        return self.encoder.out_dim

    def network(self, net: torch.nn.Module) -> torch.nn.Module:
        """`net` on the job's device."""
        return net.to(self.device)

    def with_target(self, net: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
        """`net` on the job's device and its frozen target copy (soft-updated by the method)."""
        net = self.network(net)
        return net, target_copy(net)

    def learned_scalar(self, value: float) -> torch.Tensor:
        """A learned scalar per seed (K,), e.g. a log-temperature, starting at `value`."""
        return torch.full((self.n_seeds,), float(value), device=self.device, requires_grad=True)

    @staticmethod
    def adam(lr: float, *params: torch.nn.Module | torch.Tensor, fused: bool | None = None) -> torch.optim.Adam:
        """One Adam over the parameters of `params` (modules, or learned scalars), in order."""
        flat = [p for x in params for p in (x.parameters() if isinstance(x, torch.nn.Module) else [x])]
        return torch.optim.Adam(flat, lr, fused=fused)

    def critic_adam(self, lr: float, critic: torch.nn.Module) -> torch.optim.Adam:
        """The critic's optimizer, which also trains the encoder (its loss is the encoder's)."""
        return self.adam(lr, critic, self.encoder, fused=True)

    @abstractmethod
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on `batch`; returns named metrics, detached, one per seed (K,)
        (scalars when `multi_seed` is False)."""

    @abstractmethod
    def policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions for observations (K, N, *obs) -> (K, N, A) (without the seed dim when
        `multi_seed` is False); tensor in, tensor out, no gradients. With a chunk of h > 1:
        (K, N, h*A), the h actions flattened."""

    def update_seeds(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The harness's entry point: `batch` with a leading seed dim, metrics (K,)."""
        if self.multi_seed:
            return self._checked(self.update(batch), (self.n_seeds,))
        return {k: v.reshape(1) for k, v in self._checked(self.update(batch.seed(0)), ()).items()}

    def _checked(self, metrics, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """`update`'s result if it keeps the contract (a dict of tensors of `shape`), else a
        TypeError in one line naming the contract. Host-side checks only: no device sync."""
        if isinstance(metrics, dict) and all(isinstance(v, torch.Tensor) and v.shape == shape for v in metrics.values()):
            return metrics
        if not isinstance(metrics, dict):
            got = f"a {type(metrics).__name__}"
        else:
            key, v = next((k, v) for k, v in metrics.items() if not (isinstance(v, torch.Tensor) and v.shape == shape))
            got = (f"'{key}' as a tensor of shape {tuple(v.shape)}" if isinstance(v, torch.Tensor)
                   else f"'{key}' as a {type(v).__name__}")
        want = f"shape ({self.n_seeds},), one per seed (multi_seed = True)" if shape else "a scalar (multi_seed = False)"
        raise TypeError(f"algorithm '{self.name}': update() must return a dict of metric name -> detached torch "
                        f"tensor, each {want}; got {got} (the contract: Algorithm.update in algorithms/base.py)")

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Actions for numpy observations with a leading seed dim: one per seed (K, *obs) gives
        (K, A); several per seed (K, N, *obs) give (K, N, A) (A -> h*A with a chunk of h > 1)."""
        x = torch.as_tensor(np.asarray(obs, dtype=self.obs_spec.dtype), device=self.device)
        single = x.dim() == 1 + len(self.obs_spec.shape)
        if single:
            x = x.unsqueeze(1)
        a = self._checked_actions(self.policy(x if self.multi_seed else x[0], deterministic), x.shape[:2])
        a = (a if self.multi_seed else a.unsqueeze(0)).cpu().numpy()
        return a[:, 0] if single else a

    def _checked_actions(self, a, lead: tuple[int, ...]) -> torch.Tensor:
        """`policy`'s result if it keeps the contract, else a TypeError in one line naming it
        (not the environment's own error about an action's shape, far from its cause)."""
        want = (*(lead if self.multi_seed else lead[1:]), self.chunk * self.action_spec.dim)
        if isinstance(a, torch.Tensor) and tuple(a.shape) == want:
            return a
        got = f"a tensor of shape {tuple(a.shape)}" if isinstance(a, torch.Tensor) else f"a {type(a).__name__}"
        raise TypeError(f"algorithm '{self.name}': policy() must return a torch tensor of shape {want} for these "
                        f"observations (the action dim {self.action_spec.dim}" + (f" x chunk {self.chunk}" if self.chunk > 1 else "")
                        + f"); got {got} (the contract: Algorithm.policy in algorithms/base.py)")

    def policy_value(self, obs: torch.Tensor) -> torch.Tensor | None:
        """Q(s, pi(s)) of the deterministic policy action under the method's critic (reduced over
        an ensemble as its actor reads it), (K, B) for observations (K, B, *obs) (without the seed
        dim when `multi_seed` is False); None for a method without a Q-function. The harness logs
        its batch mean next to the batch's Monte-Carlo return: the calibration of the learned values."""
        return None

    def policy_value_seeds(self, obs: torch.Tensor) -> torch.Tensor | None:
        """The harness's entry point: `policy_value` with a leading seed dim, (K, B)."""
        if self.multi_seed:
            return self.policy_value(obs)
        value = self.policy_value(obs[0])
        return None if value is None else value.unsqueeze(0)

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

    def learned_tensors(self) -> dict[str, tuple[list[torch.Tensor], bool]]:
        """Every learned tensor by its name in `modules()` (a network's parameters, a learned
        scalar), with whether each has the seed dim first, (K, ...): a multi-seed method's networks
        and scalars are built so (`algorithms.common.networks`); the tensors it names in `unseeded`
        (e.g. a step counter) are every seed's. The harness reads them to fail a diverged seed."""
        out = {}
        for name, m in self.modules().items():
            if isinstance(m, torch.nn.Module):
                out[name] = (list(m.parameters()), True)
            elif isinstance(m, torch.Tensor):
                out[name] = ([m], name not in self.unseeded)
        if self.n_seeds > 1:
            wrong = [n for n, (ts, seeded) in out.items() if seeded and any(t.dim() == 0 or len(t) != self.n_seeds
                                                                            for t in ts)]
            if wrong:
                raise ValueError(f"algorithm '{self.name}': {', '.join(wrong)} lack the seed dim ({self.n_seeds}) "
                                 f"first; build them per seed, or list a shared tensor in `unseeded`")
        return out

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
    config = cls.Config(**kwargs)
    check_rates(config)
    return config


def check_rates(config: Any) -> None:
    """The bounds every method's rates share, by their conventional names: a learning rate
    (`lr`, `*_lr`) at most 1 and a soft target update rate (`tau`, `*_tau`) in (0, 1]; beyond
    them a run trains on garbage (or diverges) yet may still end "done"."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        where = f"{type(config).__qualname__}.{f.name}"
        if (f.name == "lr" or f.name.endswith("_lr")) and value > 1:
            raise ValueError(f"{where} must be <= 1 (a learning rate), got {value}")
        if (f.name == "tau" or f.name.endswith("_tau")) and not 0 < value <= 1:
            raise ValueError(f"{where} must be in (0, 1] (a soft target update rate), got {value}")


def make(name: str, obs_spec: ObsSpec, action_spec: ActionSpec, hparams: dict[str, Any] | Any,
         device: torch.device | str = "cpu", rng: SeedStreams | None = None) -> Algorithm:
    """The method `name`, for the seeds of `rng` (default: one seed on torch's global generators;
    a method written for one seed is built without `rng`). `hparams`: its built Config (a job's),
    or a plain dict to build it from."""
    cls = get(name)
    config = hparams if isinstance(hparams, cls.Config) else build_config(cls, dict(hparams))
    if rng is None:
        return cls(obs_spec, action_spec, config, torch.device(device))
    return cls(obs_spec, action_spec, config, torch.device(device), rng)


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


def check_follower(config: Any, *names: str) -> None:
    """Fields that follow the protocol (metadata "protocol"): > 0, or null until the harness fills
    them in (`follow_protocol`); a method built outside a job sets them."""
    for n in names:
        value = getattr(config, n)
        if value is not None and not value > 0:
            raise ValueError(f"{type(config).__qualname__}.{n} must be > 0 or null (= protocol."
                             f"{protocol_followers(type(config))[n]}), got {value}")


def protocol_followers(config_cls: type) -> dict[str, str]:
    """The Config fields that follow the protocol when null: {field: protocol field} (metadata "protocol")."""
    return {f.name: f.metadata["protocol"] for f in dataclasses.fields(config_cls) if "protocol" in f.metadata}


def id_neutral_defaults(config_cls: type) -> dict[str, Any]:
    """Config fields added after results existed (metadata {"id_neutral": True}): {field: default}.
    At its default such a field is left out of the job id (`harness.job.job_id`), so the jobs that
    ran before it existed keep their ids; any other value is part of the id."""
    return {f.name: f.default for f in dataclasses.fields(config_cls) if f.metadata.get("id_neutral")}


def follow_protocol(cls: type[Algorithm], hparams: dict[str, Any], protocol: Any) -> dict[str, Any]:
    """`hparams` with each field that follows the protocol (metadata {"protocol": "<field>"}) and is
    left null set to the protocol's value: one home for a value the method and the harness share
    (e.g. RLPD's actor steps once per env step: actor_every follows protocol.utd)."""
    follows = protocol_followers(cls.Config)
    return {k: getattr(protocol, follows[k]) if k in follows and v is None else v for k, v in hparams.items()}


def check_non_negative(config: Any, *names: str) -> None:
    """Raise a one-line error for config fields that must be >= 0."""
    for n in names:
        value = getattr(config, n)
        if not value >= 0:
            raise ValueError(f"{type(config).__qualname__}.{n} must be >= 0, got {value}")


__all__ = ["ActionSpec", "Algorithm", "Batch", "ObsSpec", "REGISTRY", "SeedStreams", "available", "build_config",
           "check_non_negative", "check_positive", "check_unit_interval", "field", "get", "make", "minimize", "per_seed",
           "register"]

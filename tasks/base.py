"""The task abstraction and its registry.

A task gives the offline dataset as flat arrays, env factories whose observations are flat
rows (float32 vectors, or for image tasks uint8 rows: pixels then float32 proprioception
bytes, see `algorithms.base.ObsSpec`) and whose actions lie in [-1, 1], the score normalizer, and the reward facts the
harness needs (the raw reward of a failed step for the sparse-failure rule). Its protocol
(steps, evaluation) lives in `harness/conf/task/<name>.yaml`.
"""
from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import gymnasium as gym
import numpy as np


def robotics_gym():
    """gymnasium with Gymnasium-Robotics' envs registered. Its import prints a notice about
    Adroit *Dense* v1 rewards (tasks here use the binary reward): kept off the user's terminal."""
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics
    gym.register_envs(gymnasium_robotics)
    return gym


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt or does not match its environment."""


# The one rule for dataset actions, the same for every source (D4RL files, Minari, AWAC demos,
# OGBench, generated data), applied when a task loads its data: actions are clipped to
# +-ACTION_CLIP, inside the env's [-1, 1], as the Cal-QL, IQL and FQL loaders do (a tanh policy's
# log-density is infinite at +-1); components beyond +-1 are counted and reported on stderr.
# A component beyond +-ACTION_FAR is not a rounding or a controller's overshoot but data of
# another scale or another env: the dataset is refused.
ACTION_CLIP = 1 - 1e-5
ACTION_FAR = 2.0


@dataclass
class Dataset:
    """Flat transitions. `terminal`: true MDP terminal; `timeout`: trajectory cut (time limit
    or end of a recorded episode). Together they mark where trajectories end."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminal: np.ndarray
    timeout: np.ndarray
    notes: dict = field(default_factory=dict)  # what loading did to the data, e.g. {"actions_clipped": n}

    def __len__(self) -> int:
        return len(self.reward)

    @property
    def episode_end(self) -> np.ndarray:
        end = self.terminal.astype(bool) | self.timeout.astype(bool)
        if len(end):
            end[-1] = True
        return end

    def validate(self, where: str, obs_dim: int, act_dim: int) -> None:
        """One-line errors for shape mismatches and non-finite values, before training starts."""
        n = len(self.reward)
        if n == 0:
            raise DatasetError(f"{where}: the dataset is empty; regenerate or re-download it")
        for key in ("obs", "action", "reward", "next_obs", "terminal", "timeout"):
            arr = getattr(self, key)
            if len(arr) != n:
                raise DatasetError(f"{where}: '{key}' has {len(arr)} rows but 'reward' has {n}; the file is truncated or corrupt")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise DatasetError(f"{where}: '{key}' contains NaN or inf values; clean or regenerate the dataset")
        if self.obs.shape[1:] != (obs_dim,) or self.next_obs.shape[1:] != (obs_dim,):
            raise DatasetError(f"{where}: observations have shape {self.obs.shape[1:]}, the environment gives ({obs_dim},)")
        if self.action.shape[1:] != (act_dim,):
            raise DatasetError(f"{where}: actions have shape {self.action.shape[1:]}, the environment takes ({act_dim},)")

    def content_hash(self) -> str:
        """sha256 of the transitions as loaded (every array's dtype, shape and bytes): the data's
        identity, whatever file layout or timestamps it was stored with."""
        import hashlib

        h = hashlib.sha256()
        for key in ("obs", "action", "reward", "next_obs", "terminal", "timeout"):
            arr = np.ascontiguousarray(getattr(self, key))
            h.update(f"{key}:{arr.dtype.str}:{arr.shape};".encode())
            h.update(memoryview(arr).cast("B"))
        return h.hexdigest()

    def conform_actions(self, where: str) -> None:
        """Apply the action rule (ACTION_CLIP, ACTION_FAR above) in place; DatasetError for data far
        outside the action space. Records in `notes` how many components lay outside [-1, 1]."""
        a = self.action
        worst = float(np.abs(a).max()) if a.size else 0.0
        if worst > ACTION_FAR:
            at = np.unravel_index(int(np.abs(a).argmax()), a.shape)
            share = float((np.abs(a) > 1).mean())
            raise DatasetError(f"{where}: action {a[at]:.4g} (row {at[0]}, component {at[1]}) lies far outside the "
                               f"env's action space [-1, 1] ({100 * share:.1f}% of components beyond +-1; at most "
                               f"+-{ACTION_FAR:g} is clipped); the data is of another scale or another env: "
                               f"rescale it into [-1, 1] or use the matching task")
        outside = int((np.abs(a) > 1).sum())
        self.notes["actions_clipped"] = outside
        if outside:
            print(f"note: {where}: {outside:,} of {a.size:,} action components lie outside [-1, 1] (at most "
                  f"{worst:.4g}); clipped to +-{ACTION_CLIP} as every source's are", file=sys.stderr, flush=True)
        self.action = np.clip(a, -ACTION_CLIP, ACTION_CLIP).astype(a.dtype, copy=False)


@dataclass(frozen=True)
class Source:
    """One place a task's dataset can come from. `where` names it in errors (a path, a Minari id)."""

    name: str  # short label, e.g. "d4rl", "minari", "awac", "generated"
    where: str
    present: Callable[[], bool]
    load: Callable[[], Dataset]
    problem: Callable[[], str | None] = lambda: None  # why the present data cannot be read, without loading it
    about: Callable[[], dict] = lambda: {}  # who made the data: {"generator": ..., "version": ...}


@dataclass(frozen=True)
class Shard:
    """One file of a sharded dataset (`Task.shards`)."""

    where: str  # its path
    rows: int  # at most this many transitions (read from the file without loading it)
    load: Callable[[], Dataset]  # its transitions alone, as the task reads them (unvalidated)


class Task(ABC):
    """One benchmark task. Subclasses set the class attributes and implement `sources` and
    `make_env`; the dataset is read from the first source present, and validated."""

    name: str
    domain: str  # selects per-domain algorithm overrides (e.g. reward transform, network sizes)
    obs_dim: int
    act_dim: int
    horizon: int  # the env's time limit (steps per episode)
    goal_reaching: bool  # episodes succeed or fail (info["success"]): the failed-episode metric applies
    ref_min_score: float  # normalized score = 100 (R - ref_min) / (ref_max - ref_min)
    ref_max_score: float
    fail_reward: float | None = None  # raw per-step reward of failure in sparse tasks; None: dense
    source: str = ""  # where the dataset comes from, for `python -m tasks list`
    image_shape: tuple[int, int, int] | None = None  # image tasks: (C, H, W) uint8 pixels leading each row
    vector_dim: int = 0  # image tasks: float32 proprioception values after the pixels (4 bytes each)
    # a dataset stored as this many files, which a run holds one at a time (harness.shards); 0: one dataset
    shards: int = 0

    @abstractmethod
    def sources(self) -> list[Source]:
        """Where the dataset can come from, in order of preference: the first present wins."""

    @abstractmethod
    def make_env(self, seed: int) -> gym.Env:
        """An env with flat observations (float32; uint8 rows for image tasks), actions in [-1, 1], a time limit, and
        `info["success"]` on every step."""

    def active_source(self) -> str | None:
        """Name of the source `load_dataset` reads (the first present), None when none is."""
        source = self._first_present()
        return source.name if source else None

    def _first_present(self) -> Source | None:
        return next((s for s in self.sources() if s.present()), None)

    def dataset_present(self) -> bool:
        return self._first_present() is not None

    def load_dataset(self) -> Dataset:
        """The offline data from the first source present, validated against the env's shapes
        and its action space (the action rule above: clipped inside [-1, 1], refused far outside);
        raises DatasetError (one line: what is wrong, how to fix it). `notes["identity"]`: where
        it came from, its content hash, and its generator and version where the source says."""
        self.prepare()
        source = self._first_present()
        if source is None:
            raise DatasetError(f"task '{self.name}': no dataset found; to get it: {self.how_to_get()}")
        data = self.checked(source.load(), source.where)
        data.notes["identity"] = {"source": source.name, "where": source.where, "rows": len(data),
                                  "sha256": data.content_hash(), "generator": source.name, **source.about()}
        return data

    def checked(self, data: Dataset, where: str) -> Dataset:
        """`data` validated against the env's shapes and put under the action rule (above)."""
        data.validate(where, self.obs_dim, self.act_dim)
        data.conform_actions(where)
        return data

    def shard_files(self) -> tuple[Source, list[Shard]]:
        """A sharded dataset (`shards` > 0): the source present and its files, in the order a run
        visits them; DatasetError when none is present."""
        raise NotImplementedError(f"task '{self.name}' has no sharded dataset")

    def data_rows(self) -> int | None:
        """Transitions of one dataset file (the dataset, or one shard of a sharded one), known
        without loading it, for the memory estimate; None: unknown."""
        return None

    def dataset_problem(self) -> str | None:
        """Why the present dataset cannot be used (corrupt, wrong keys), found without loading it;
        None when it opens (or is absent: see dataset_present). Asks the source `load_dataset` would read."""
        source = self._first_present()
        return source.problem() if source else None

    def dataset_state(self) -> str:
        """'yes', 'no' or 'corrupt', for `python -m tasks list`."""
        if not self.dataset_present():
            return "no"
        return "corrupt" if self.dataset_problem() else "yes"

    def prepare(self) -> None:
        """Make the dataset available locally if the task can (e.g. generate it)."""

    def how_to_get(self) -> str:
        """One line: how a user makes the dataset present (for preflight and `python -m tasks`)."""
        return f"`python -m tasks generate {self.name}`" if hasattr(self, "generate") else "see the task's module docstring"

    def download(self) -> None:
        """Fetch the dataset (explicit user request only); fails fast without a network."""
        raise DatasetError(f"task '{self.name}' has nothing to download; {self.how_to_get()}")

    def normalize(self, episode_return: float) -> float:
        return 100.0 * (episode_return - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)

    def episode_score(self, episode_return: float, last_info: dict) -> float:
        """Normalized score of one episode; tasks scored by their final state (Kitchen: subtasks
        solved at the end) override this, the others score the return."""
        return self.normalize(episode_return)


TASKS: dict[str, Task] = {}
# a name kept working after its meaning moved to another registered task: {alias: task name}; a
# job asked for by an alias is that task's job (its id and run directory)
ALIASES: dict[str, str] = {}


def register_task(task: Task) -> Task:
    if task.name in TASKS or task.name in ALIASES:
        raise ValueError(f"task '{task.name}' is registered twice")
    TASKS[task.name] = task
    return task


def register_alias(alias: str, name: str) -> None:
    if alias in TASKS or alias in ALIASES:
        raise ValueError(f"task '{alias}' is registered twice")
    if name not in TASKS:
        raise ValueError(f"alias '{alias}' names no registered task ('{name}')")
    ALIASES[alias] = name


def get(name: str) -> Task:
    """The task of a name or an alias."""
    name = ALIASES.get(name, name)
    if name not in TASKS:
        raise KeyError(f"unknown task '{name}'; choose one of: {', '.join(sorted(TASKS))}")
    return TASKS[name]

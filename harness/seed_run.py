"""One seed of a group: its job, run directory, results store and trackers, its online and
evaluation envs, and the online episode it is in (reset from a seed derived from the job's seed
and the episode's index, so a resumed run replays exactly what an uninterrupted one does)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.job import Job
from harness.store import RunStore
from harness.trackers import Trackers

EVAL_SEED_OFFSET = 10_000_019  # evaluation episodes never share seeds with training episodes


class EnvReplayMismatch(RuntimeError):
    """An env did not reproduce its unfinished episode from the checkpoint's actions."""


@dataclass
class SeedRun:
    job: Job
    dir: Path
    store: RunStore
    trackers: Trackers  # TensorBoard / W&B next to the CSV files (logger=...)
    train_env: Any = None  # set by `make_envs`
    eval_env: Any = None
    episode: tuple[float, bool, int] = (0.0, False, 0)  # the online episode's return, success, length so far

    @classmethod
    def open(cls, job: Job, run_dir: Path) -> SeedRun:
        return cls(job, Path(run_dir), RunStore(Path(run_dir)), Trackers(job, Path(run_dir)))

    @property
    def eval_seed(self) -> int:
        return self.job.seed + EVAL_SEED_OFFSET

    def make_envs(self, task) -> None:
        self.train_env = task.make_env(self.job.seed)
        self.eval_env = task.make_env(self.eval_seed)

    def episode_seed(self, episode: int) -> int:
        """The reset seed of this seed's online episode number `episode`."""
        return self.job.seed * 1_000_003 + episode

    def step(self, action: np.ndarray):
        """One online env step, counted in the current episode; gymnasium's 5-tuple."""
        next_obs, reward, terminated, truncated, info = self.train_env.step(action)
        ret, success, length = self.episode
        self.episode = (ret + reward, success or bool(info.get("success", False)), length + 1)
        return next_obs, reward, terminated, truncated, info

    def start_episode(self, episode: int, pending: list) -> np.ndarray:
        """The env at the start of online episode `episode`, or, after a resume, back where its
        unfinished episode stood: reset with the episode's seed, then the `pending` steps' actions
        (the replay's (obs, action, reward, next_obs, terminal) of the episode) replayed; the env
        is deterministic given both, and every observation is checked."""
        obs, _ = self.train_env.reset(seed=self.episode_seed(episode))
        self.episode = (0.0, False, 0)
        for i, (p_obs, action, _, _, _) in enumerate(pending):
            if not np.array_equal(np.asarray(obs, p_obs.dtype), p_obs):
                raise EnvReplayMismatch(f"seed {self.job.seed}: the env's observation at step {i} of its "
                                        f"unfinished episode differs from the checkpoint's; the env is not "
                                        f"deterministic, so this run cannot resume exactly")
            obs = self.step(action)[0]
        return obs

    def end_episode(self, env_steps: int, score: float) -> dict[str, Any]:
        """The finished episode's row of episodes.csv."""
        ret, success, length = self.episode
        row = {"env_steps": env_steps, "return": ret, "normalized_score": score, "success": int(success),
               "length": length}
        self.store.episodes.append(row)
        return row

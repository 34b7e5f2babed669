"""D4RL Franka Kitchen (Cal-QL tasks 5-7) on Gymnasium-Robotics' FrankaKitchen-v1, as Cal-QL ran it.

Cal-QL's fork of the kitchen env: reward per step = number of the 4 target subtasks in their
goal state (within 0.3, D4RL's BONUS_THRESH) at that step, 0-4, tasks are not removed once done,
no termination when all 4 are done, 1000 steps. Score = subtasks solved at the end of the
episode / 4 x 100 (`Task.episode_score`), success = all 4 done.
Observation: FrankaKitchen-v1's 59-dim `observation` (robot qpos 9 + qvel 9, object qpos 21 +
qvel 20); the goal dicts are dropped, the goal being fixed per task. Approximation: D4RL's
original 60-dim kitchen observations (from the old adept_envs sim) are not supported; the data
source is Minari's `D4RL/kitchen/<name>-v2`, recorded in FrankaKitchen-v1, whose rewards are
relabeled here with the rule above from the stored achieved / desired goals.
Target subtasks (D4RL's registration): partial and complete: microwave, kettle, light switch,
slide cabinet; mixed: microwave, kettle, bottom burner, light switch.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from tasks.base import Dataset, DatasetError, Source, Task, register_task, robotics_gym
from tasks.sources import download_minari, load_minari, minari_about, minari_present, minari_problem

BONUS_THRESH = 0.3
HORIZON = 1000
SUBTASKS = {"partial": ("microwave", "kettle", "light switch", "slide cabinet"),
            "complete": ("microwave", "kettle", "light switch", "slide cabinet"),
            "mixed": ("microwave", "kettle", "bottom burner", "light switch")}


def solved(achieved: dict, desired: dict, subtasks) -> np.ndarray:
    """Number of subtasks in their goal state; works on one step or on (T, ...) arrays."""
    count = 0
    for k in subtasks:
        a, d = np.asarray(achieved[k]), np.asarray(desired[k])
        count = count + (np.linalg.norm(a - d, axis=-1) < BONUS_THRESH)
    return np.asarray(count, np.float32)


class CalQLKitchen(gym.Wrapper):
    """Flat float32 observations, reward = subtasks solved now, no termination, info["success"]
    (all solved) and info["subtasks"] on every step."""

    def __init__(self, env: gym.Env, subtasks):
        super().__init__(env)
        self.subtasks = subtasks
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (59,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)

    def _out(self, obs):
        n = float(solved(obs["achieved_goal"], obs["desired_goal"], self.subtasks))
        # the env reuses its observation arrays: copy
        return np.array(obs["observation"], np.float32), n, {"success": n == len(self.subtasks), "subtasks": n}

    def reset(self, *, seed=None, options=None):
        obs, _ = self.env.reset(seed=seed, options=options)
        o, _, info = self._out(obs)
        return o, info

    def step(self, action):
        obs, _, _, truncated, _ = self.env.step(np.asarray(action, np.float64))
        o, n, info = self._out(obs)
        return o, n, False, truncated, info


class KitchenTask(Task):
    domain = "kitchen"
    obs_dim, act_dim = 59, 9
    ref_min_score, ref_max_score = 0.0, 4.0
    fail_reward = None  # dense in subtasks
    horizon = HORIZON
    goal_reaching = True  # success: all 4 subtasks done

    def __init__(self, dataset: str):
        self.name, self.subtasks = f"kitchen-{dataset}", SUBTASKS[dataset]
        self.minari_id = f"D4RL/kitchen/{dataset}-v2"
        self.source = f"Minari {self.minari_id}"

    def sources(self) -> list[Source]:
        return [Source("minari", f"Minari dataset '{self.minari_id}'", lambda: minari_present(self.minari_id), self._load_minari,
                       lambda: minari_problem(self.minari_id), lambda: minari_about(self.minari_id))]

    def how_to_get(self) -> str:
        return f"`python -m tasks download {self.name}` (Minari {self.minari_id})"

    def download(self) -> None:
        download_minari(self.minari_id)

    def episode_score(self, episode_return: float, last_info: dict) -> float:
        return 100.0 * float(last_info.get("subtasks", 0.0)) / len(self.subtasks)

    def _load_minari(self) -> Dataset:
        def obs_fn(obs):
            try:
                return np.asarray(obs["observation"])
            except (KeyError, TypeError, IndexError):
                raise DatasetError(f"Minari dataset '{self.minari_id}': observations must be a dict with "
                                   f"'observation' (59), 'achieved_goal', 'desired_goal'") from None

        def reward_fn(ep):  # the state after each step, as the env pays it
            obs = ep.observations
            try:
                after = {key: {k: np.asarray(v)[1:] for k, v in obs[key].items()} for key in ("achieved_goal", "desired_goal")}
                return solved(after["achieved_goal"], after["desired_goal"], self.subtasks)
            except KeyError as exc:
                raise DatasetError(f"Minari dataset '{self.minari_id}': no goal entry {exc} to relabel rewards; "
                                   f"re-download it") from None

        return load_minari(self.minari_id, obs_fn=obs_fn, reward_fn=reward_fn)

    def make_env(self, seed: int) -> gym.Env:
        raw = robotics_gym().make("FrankaKitchen-v1", tasks_to_complete=list(self.subtasks), terminate_on_tasks_completed=False,
                       remove_task_when_completed=False, max_episode_steps=self.horizon)
        env = CalQLKitchen(raw, self.subtasks)
        env.action_space.seed(seed)
        return env


for _d in ("partial", "mixed", "complete"):
    register_task(KitchenTask(_d))

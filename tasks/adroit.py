"""Adroit binary (Cal-QL tasks 8-10): pen, door and relocate with reward goal_achieved - 1.

Env: Gymnasium-Robotics' AdroitHand{Pen,Door,Relocate}-v1 (D4RL's v1 layout: 45 / 39 / 39 obs
dims, 24 / 28 / 30 actions), reward -1 per step and 0 on a step where the goal is achieved
(info["success"]), no early termination, horizon pen 100, door and relocate 200 (Cal-QL).
Score: success rate x 100 (an episode counts if it ever succeeds).

Data, first present wins (`sources`):
1. The paper's AWAC hand demos under `$O2O_DATA_DIR/awac/`: `<env>2_sparse.npy` (expert demos,
   required) and `<env>_bc_sparse4.npy` (BC rollouts, used when present). Each is a pickled
   numpy array of trajectory dicts with 'observations' (T, obs_dim), 'actions' (T, act_dim),
   'rewards' (T,), optionally 'next_observations' and 'env_infos' with 'goal_achieved' (list
   of dicts or dict of arrays); without env_infos, success = (reward == 0). A file that is
   truncated, malformed, of the wrong shapes or holds NaN or inf is `corrupt` in `python -m tasks
   list` and refused by the preflight, in one line naming the file (pickles are read whole to tell).
2. Fallback: Minari `D4RL/<env>/human-v2` and `D4RL/<env>/cloned-v2` (those present), recorded
   in the same v1 envs with dense rewards, relabeled to binary from infos["success"].
Both go through Cal-QL's rule (tasks.sources.binary_trajectories): keep each trajectory up to
its last success, drop those with none, terminal = (reward == 0); actions clipped to +-0.99999
(the rule of every source, `tasks.base.ACTION_CLIP`).
"""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

from tasks.base import Dataset, DatasetError, Source, Task, register_task, robotics_gym
from tasks.sources import (binary_trajectories, data_dir, download_minari, goal_achieved, load_npy_paths,
                           minari_about, minari_present, minari_root)

SPECS = {"pen": ("AdroitHandPen-v1", 45, 24, 100), "door": ("AdroitHandDoor-v1", 39, 28, 200),
         "relocate": ("AdroitHandRelocate-v1", 39, 30, 200)}


class BinaryAdroit(gym.Wrapper):
    """float32 observations, reward = success - 1, info["success"] and info["episode_success"]
    (succeeded at some step so far)."""

    def __init__(self, env: gym.Env, obs_dim: int):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.ever = False

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.ever = False
        return np.asarray(obs, np.float32), {"success": False, "episode_success": False}

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        success = bool(info["success"])
        self.ever |= success
        return (np.asarray(obs, np.float32), float(success) - 1.0, terminated, truncated,
                {"success": success, "episode_success": self.ever})


class AdroitBinaryTask(Task):
    domain = "adroit"
    fail_reward = -1.0
    goal_reaching = True

    def __init__(self, env_name: str):
        self.env_name = env_name
        self.env_id, self.obs_dim, self.act_dim, self.horizon = SPECS[env_name]
        self.name = f"{env_name}-binary"
        self.ref_min_score, self.ref_max_score = -float(self.horizon), 0.0  # unused: see normalize
        self.minari_ids = [f"D4RL/{env_name}/human-v2", f"D4RL/{env_name}/cloned-v2"]
        self.source = f"AWAC {env_name}2_sparse.npy (+ {env_name}_bc_sparse4.npy) | Minari {', '.join(self.minari_ids)} relabeled"

    @property
    def awac_paths(self) -> list[Path]:
        root = data_dir() / "awac"
        return [root / f"{self.env_name}2_sparse.npy", root / f"{self.env_name}_bc_sparse4.npy"]

    def sources(self) -> list[Source]:
        present = lambda: [i for i in self.minari_ids if minari_present(i)]  # noqa: E731
        return [Source("awac", str(self.awac_paths[0].parent), self.awac_paths[0].exists, self._load_awac,
                       self._awac_problem, lambda: {"generator": "AWAC hand demos", "version": self.awac_paths[0].name}),
                Source("minari", ", ".join(present()), lambda: bool(present()), self._load_minari,
                       about=lambda: {"generator": "D4RL (Minari)", "version": ", ".join(
                           minari_about(i).get("version", i) for i in present())})]

    def how_to_get(self) -> str:
        return (f"put the AWAC hand demos {self.awac_paths[0].name} (+ {self.awac_paths[1].name}) in "
                f"{self.awac_paths[0].parent}, or `python -m tasks download {self.name}` (Minari {self.minari_ids[0]}, relabeled)")

    def download(self) -> None:
        for dataset_id in self.minari_ids:
            download_minari(dataset_id)

    # -- scoring: success rate ---------------------------------------------------------------
    def normalize(self, episode_return: float) -> float:
        """100 if the episode succeeded at some step (its return beats -1 x horizon), else 0."""
        return 100.0 if episode_return > -self.horizon + 1e-6 else 0.0

    def episode_score(self, episode_return: float, last_info: dict) -> float:
        if "episode_success" in last_info:
            return 100.0 * bool(last_info["episode_success"])
        return self.normalize(episode_return)

    # -- data --------------------------------------------------------------------------------
    def _load_awac(self) -> Dataset:
        trajs = [t for path in self.awac_paths if path.exists() for t in self._read_awac(path)]
        return self._binary(trajs, str(self.awac_paths[0].parent))

    def _awac_problem(self) -> str | None:
        """Why a present AWAC file cannot be used (truncated, malformed, wrong shapes, NaN or inf),
        naming the file; None when both read. A pickle can only be checked by reading it whole."""
        for path in (p for p in self.awac_paths if p.exists()):
            try:
                self._read_awac(path)
            except DatasetError as exc:
                return str(exc)
        return None

    def _read_awac(self, path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Every trajectory of one AWAC file as (obs, action, next_obs, success), checked; DatasetError
        naming the file and the trajectory otherwise."""
        return [self._npy_trajectory(path, k, p) for k, p in enumerate(load_npy_paths(path))]

    def _load_minari(self) -> Dataset:
        return self._binary(self._minari_trajectories(), ", ".join(i for i in self.minari_ids if minari_present(i)))

    @staticmethod
    def _binary(trajs, where: str) -> Dataset:
        try:
            return binary_trajectories(trajs)
        except DatasetError as exc:
            raise DatasetError(f"{where}: {exc}") from None

    def _npy_trajectory(self, path: Path, k: int, p: dict):
        try:
            obs, action = np.asarray(p["observations"], np.float64), np.asarray(p["actions"], np.float64)
            success = goal_achieved(p)
            T = len(action)
            next_obs = np.asarray(p["next_observations"], np.float64) if "next_observations" in p else None
            # rlkit paths: one row per action in every key (observations may add the final one)
            lengths = {"observations": len(obs), "goal_achieved": len(success),
                       **({"rewards": len(p["rewards"])} if "rewards" in p else {}),
                       **({"next_observations": len(next_obs)} if next_obs is not None else {})}
            if obs.ndim != 2 or action.ndim != 2 or (next_obs is not None and next_obs.ndim != 2) or \
                    any(n != T for key, n in lengths.items() if not (key == "observations" and n == T + 1)):
                raise ValueError(f"{T} actions but {', '.join(f'{n} {key}' for key, n in lengths.items())}")
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise DatasetError(f"{path}: trajectory {k} is malformed ({exc}); the file is corrupt, download it again") from None
        if obs.shape[1] != self.obs_dim or action.shape[1] != self.act_dim or \
                (next_obs is not None and next_obs.shape[1] != self.obs_dim):
            raise DatasetError(f"{path}: trajectory {k}: observations have shape ({obs.shape[1]},) and actions "
                               f"({action.shape[1]},), the environment gives ({self.obs_dim},) and takes ({self.act_dim},)")
        if next_obs is None:  # the last step has no successor: drop it
            T -= 1
            next_obs = obs[1:T + 1]
        for key, arr in (("observations", obs[:T]), ("actions", action[:T]), ("next_observations", next_obs[:T])):
            if not np.isfinite(arr).all():
                raise DatasetError(f"{path}: trajectory {k} has NaN or inf in '{key}'; the file is corrupt, "
                                   f"download it again")
        return obs[:T], action[:T], next_obs[:T], success[:T]

    def _minari_trajectories(self):
        import minari

        trajs = []
        for dataset_id in (i for i in self.minari_ids if minari_present(i)):
            try:
                for ep in minari.load_dataset(dataset_id).iterate_episodes():
                    obs = np.asarray(ep.observations)
                    T = len(ep.actions)
                    success = np.asarray(ep.infos["success"], bool)[1:T + 1]  # infos[0] is the reset's
                    trajs.append((obs[:T], np.asarray(ep.actions), obs[1:T + 1], success))
            except KeyError:
                raise DatasetError(f"Minari dataset '{dataset_id}' under {minari_root()} has no infos['success'] "
                                   f"to relabel the binary reward; re-download it") from None
            except Exception as exc:
                raise DatasetError(f"Minari dataset '{dataset_id}' under {minari_root()} could not be read "
                                   f"({type(exc).__name__}: {exc}); delete it and download it again") from exc
        return trajs

    def make_env(self, seed: int) -> gym.Env:
        env = BinaryAdroit(robotics_gym().make(self.env_id, max_episode_steps=self.horizon), self.obs_dim)
        env.action_space.seed(seed)
        return env


for _env in SPECS:
    register_task(AdroitBinaryTask(_env))

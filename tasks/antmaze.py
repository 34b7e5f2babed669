"""D4RL AntMaze (Cal-QL tasks 1-4, plus umaze and umaze-diverse) on Gymnasium-Robotics' AntMaze-v4.

Observation: D4RL's 29 dims, qpos[:15] + qvel[:14] = (x, y, z, quaternion, 8 joints, 14
velocities). Minari stores it as a dict; the flat vector is achieved_goal (x, y) followed by
observation (27): the same order. Evaluation as in D4RL / Cal-QL: one fixed start cell (1, 1)
(+-0.1 position noise, as D4RL's reset), one exact fixed goal, reward 1 within 0.5 of the goal
and the episode ends there; 1000 steps; normalized score = 100 x success (refs 0 / 1).

Data sources, first present wins (`sources`):
1. D4RL HDF5 `$O2O_DATA_DIR/d4rl/antmaze-<maze>-v2.hdf5` (the paper's files). D4RL's mazes have
   row i at y = 4 i (y grows with the row) with the start cell at the origin, while Gymnasium
   draws row i at y = -4 i around the maze centre. For this source the env is built on the
   row-mirrored map and positions are shifted so that the start is at (0, 0): the geometry and
   coordinates the data was recorded in. Approximation: the ant model is Gymnasium's Ant-v4, not
   D4RL's copy of it.
2. Minari `D4RL/antmaze/<maze>-v1`, recorded with Gymnasium's AntMaze-v4 in its own frame.
"""
from __future__ import annotations

import warnings

from pathlib import Path

import gymnasium as gym
import numpy as np

from tasks.base import DatasetError, Source, Task, register_task, robotics_gym
from tasks.sources import (d4rl_problem, data_dir, download_minari, load_d4rl_hdf5, load_minari, minari_present,
                           minari_about, minari_problem)

GOAL_RADIUS = 0.5  # D4RL's antmaze success distance
HORIZON = 1000
D4RL_START = (1, 1)



def _maze_map(maze: str):
    robotics_gym()  # imports gymnasium_robotics with its Adroit notice kept off the terminal
    from gymnasium_robotics.envs.maze import maps

    return [list(row) for row in {"umaze": maps.U_MAZE, "medium": maps.MEDIUM_MAZE, "large": maps.LARGE_MAZE}[maze]]


class FixedGoalAntMaze(gym.Wrapper):
    """Flat 29-dim D4RL observations, fixed start and goal, reward 1 and termination within 0.5
    of the goal. `mirrored`: the maze rows are reversed (D4RL frame) and xy is reported relative
    to the start cell."""

    def __init__(self, env: gym.Env, start_cell, goal_cell, mirrored: bool):
        super().__init__(env)
        maze = env.unwrapped.maze
        self.mirrored = mirrored
        n_rows = len(maze.maze_map)
        self.start_cell = np.array(start_cell if not mirrored else (n_rows - 1 - start_cell[0], start_cell[1]))
        self.goal_cell = np.array(goal_cell if not mirrored else (n_rows - 1 - goal_cell[0], goal_cell[1]))
        self.start_xy = maze.cell_rowcol_to_xy(self.start_cell)
        self.goal_xy = maze.cell_rowcol_to_xy(self.goal_cell)
        self.origin = self.start_xy if mirrored else np.zeros(2)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (29,), np.float32)

    def _obs(self) -> np.ndarray:
        data = self.env.unwrapped.ant_env.data
        obs = np.concatenate([data.qpos[:15], data.qvel[:14]]).astype(np.float32)
        obs[:2] -= self.origin
        return obs

    def _success(self) -> bool:
        return bool(np.linalg.norm(self.env.unwrapped.ant_env.data.qpos[:2] - self.goal_xy) <= GOAL_RADIUS)

    def reset(self, *, seed=None, options=None):
        self.env.reset(seed=seed, options={"goal_cell": self.goal_cell, "reset_cell": self.start_cell})
        maze_env = self.env.unwrapped
        maze_env.goal = self.goal_xy.copy()  # no goal noise
        maze_env.update_target_site_pos()
        ant = maze_env.ant_env
        qpos, qvel = ant.data.qpos.copy(), ant.data.qvel.copy()
        qpos[:2] = self.start_xy + maze_env.np_random.uniform(-0.1, 0.1, 2)
        ant.set_state(qpos, qvel)
        return self._obs(), {"success": self._success()}

    def step(self, action):
        _, _, _, truncated, _ = self.env.step(action)
        success = self._success()
        return self._obs(), float(success), success, truncated, {"success": success}


class AntMazeTask(Task):
    domain = "antmaze"
    obs_dim, act_dim = 29, 8
    ref_min_score, ref_max_score = 0.0, 1.0
    fail_reward = 0.0
    horizon = HORIZON
    goal_reaching = True

    def __init__(self, name: str, maze: str, dataset: str, goal_cell):
        self.name, self.maze, self.goal_cell = name, maze, tuple(goal_cell)
        self.minari_id = f"D4RL/antmaze/{dataset}-v1"
        self.d4rl_name = f"antmaze-{dataset}-v2"
        self.env_id = {"umaze": "AntMaze_UMaze-v4", "medium": "AntMaze_Medium-v4", "large": "AntMaze_Large-v4"}[maze]
        self.source = f"D4RL {self.d4rl_name}.hdf5 | Minari {self.minari_id}"

    @property
    def d4rl_path(self) -> Path:
        return data_dir() / "d4rl" / f"{self.d4rl_name}.hdf5"

    def sources(self) -> list[Source]:
        return [Source("d4rl", str(self.d4rl_path), self.d4rl_path.exists, lambda: load_d4rl_hdf5(self.d4rl_path),
                       lambda: d4rl_problem(self.d4rl_path), lambda: {"generator": "D4RL", "version": self.d4rl_path.name}),
                Source("minari", f"Minari dataset '{self.minari_id}'", lambda: minari_present(self.minari_id),
                       lambda: load_minari(self.minari_id, obs_fn=minari_obs), lambda: minari_problem(self.minari_id),
                       lambda: minari_about(self.minari_id))]

    def how_to_get(self) -> str:
        return (f"`python -m tasks download {self.name}` (Minari {self.minari_id}), or put D4RL's "
                f"{self.d4rl_name}.hdf5 (http://rail.eecs.berkeley.edu/datasets/offline_rl/ant_maze_v2/) at {self.d4rl_path}")

    def download(self) -> None:
        download_minari(self.minari_id)

    def make_env(self, seed: int, source: str | None = None) -> gym.Env:
        """`source` ('d4rl' / 'minari') picks the frame; default: the frame of the data present."""
        mirrored = (source or self.active_source()) == "d4rl"
        maze_map = _maze_map(self.maze)
        if mirrored:
            maze_map = maze_map[::-1]
        with warnings.catch_warnings():  # v4 on purpose (the Minari data was recorded with it): no "out of date" warning
            warnings.filterwarnings("ignore", message=".*is out of date", category=DeprecationWarning)
            raw = robotics_gym().make(self.env_id, maze_map=maze_map, continuing_task=True, reset_target=False,
                                      max_episode_steps=self.horizon)
        env = FixedGoalAntMaze(raw, D4RL_START, self.goal_cell, mirrored)
        env.action_space.seed(seed)
        return env


def minari_obs(obs: dict) -> np.ndarray:
    """Minari's dict observation (whole episode) -> D4RL's flat 29 dims: xy then the rest."""
    try:
        return np.concatenate([np.asarray(obs["achieved_goal"]), np.asarray(obs["observation"])], axis=1)
    except (KeyError, TypeError, IndexError) as exc:
        raise DatasetError(f"AntMaze observations must be a dict with 'achieved_goal' (2) and 'observation' (27); got {exc}") from None


# goal cells in D4RL's (row, col) indexing: umaze (0, 8), medium (20, 20), large (32, 24) in xy
for _name, _maze, _data, _goal in [
    ("antmaze-umaze", "umaze", "umaze", (3, 1)),
    ("antmaze-umaze-diverse", "umaze", "umaze-diverse", (3, 1)),
    ("antmaze-medium-play", "medium", "medium-play", (6, 6)),
    ("antmaze-medium-diverse", "medium", "medium-diverse", (6, 6)),
    ("antmaze-large-play", "large", "large-play", (7, 9)),
    ("antmaze-large-diverse", "large", "large-diverse", (7, 9)),
]:
    register_task(AntMazeTask(_name, _maze, _data, _goal))

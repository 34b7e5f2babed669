"""Mini AntMaze-like tasks on Gymnasium-Robotics' PointMaze, small enough for a CPU.

As in D4RL's AntMaze: one fixed goal, one fixed evaluation start (the "anystart" task: a start
cell drawn at each reset), sparse reward (1 within 0.45 of the goal, the episode ends there),
and an offline dataset the harness generates itself: a noisy waypoint controller (breadth-first
search over maze cells, PD control towards the next cell) drives to random goals, and rewards
are relabeled against the fixed evaluation goal.
"diverse": random start and goal cells; "play": a few hand-picked start -> goal routes.
The dense variant pays exp(-distance to the goal) every step and never terminates; its score
is normalized between a random policy (0) and the noise-free controller (100) from the start.
The data is saved as a Minari dataset under MINARI_DATASETS_PATH on first use.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from tasks.base import Dataset, register_task, robotics_gym
from tasks.generated import GeneratedTask, save_minari
from tasks.sources import load_minari

GOAL_RADIUS = 0.45  # PointMaze's own success distance



class FixedGoalPointMaze(gym.Wrapper):
    """PointMaze with an exact fixed goal and a fixed start cell, or with `start_cell=None` a start
    cell drawn uniformly from the open cells other than the goal's at each reset (from the reset
    seed's stream, so evaluations reset with the same seeds start from the same cells);
    observation = (x, y, vx, vy). `success` is true on steps within GOAL_RADIUS of the goal."""

    def __init__(self, env: gym.Env, start_cell, goal_cell, goal_xy: np.ndarray, open_cells=()):
        super().__init__(env)
        self.start_cell, self.goal_cell, self.goal_xy = start_cell, np.array(goal_cell), goal_xy
        self.start_cells = [c for c in open_cells if tuple(c) != tuple(goal_cell)]
        self.start_rng = np.random.default_rng()
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.start_rng = np.random.default_rng(seed)
        start = self.start_cell
        if start is None:
            start = self.start_cells[self.start_rng.integers(len(self.start_cells))]
        obs, info = self.env.reset(seed=seed, options={"goal_cell": self.goal_cell, "reset_cell": np.array(start)})
        maze_env = self.env.unwrapped
        maze_env.goal = self.goal_xy.copy()  # no goal noise: one goal, as the paper's tasks
        maze_env.update_target_site_pos()
        return obs["observation"].astype(np.float32), {"success": False}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs["observation"].astype(np.float32), float(reward), terminated, truncated, {"success": bool(info["success"])}


@dataclass
class DatasetRecipe:
    episodes: int  # trajectories of `horizon` steps (shorter when the eval goal is reached)
    noise: float  # std of Gaussian action noise
    routes: tuple[tuple[tuple[int, int], tuple[int, int]], ...] | None = None  # play: (start, goal) cells
    seed: int = 0


class PointMazeTask(GeneratedTask):
    domain = "pointmaze"
    obs_dim, act_dim = 4, 2
    ref_min_score, ref_max_score = 0.0, 1.0
    fail_reward = 0.0
    goal_reaching = True

    def __init__(self, name: str, env_id: str, start_cell, goal_cell, horizon: int, recipe: DatasetRecipe,
                 dense: bool = False):
        self.name, self.env_id, self.horizon, self.recipe, self.dense = name, env_id, horizon, recipe, dense
        self.start_cell = tuple(start_cell) if start_cell is not None else None  # None: any open cell
        self.goal_cell = tuple(goal_cell)
        self.dataset_id = f"o2o/{name}/generated-v0"
        self.source = f"generated (Minari {self.dataset_id})"
        if dense:
            self.fail_reward = None
            self.ref_min_score = self.ref_max_score = None  # measured on first use

    def normalize(self, episode_return: float) -> float:
        if self.ref_max_score is None:
            self.ref_min_score, self.ref_max_score = self.reference_returns()
        return super().normalize(episode_return)

    def reference_returns(self, episodes: int = 5) -> tuple[float, float]:
        """Mean return from the fixed start of a uniform random policy and of the noise-free
        waypoint controller: the 0 and 100 of the dense task's normalized score."""
        rng = np.random.default_rng(0)
        env = self.make_env(0)
        maze = env.unwrapped.maze
        controller = _Controller(maze, self.goal_cell)
        random_returns, expert_returns = [], []
        for i in range(episodes):
            random_returns.append(_rollout(env, lambda o: rng.uniform(-1, 1, 2), seed=i))
            expert_returns.append(_rollout(env, lambda o: controller(o, self.goal_cell, 0.0, rng), seed=i))
        return float(np.mean(random_returns)), float(np.mean(expert_returns))

    # -- environment -------------------------------------------------------------------------
    def _raw_env(self, continuing: bool) -> gym.Env:
        return robotics_gym().make(self.env_id, continuing_task=continuing, reset_target=False,
                           max_episode_steps=self.horizon, reward_type="dense" if self.dense else "sparse")

    def make_env(self, seed: int) -> gym.Env:
        raw = self._raw_env(continuing=self.dense)
        goal_xy = raw.unwrapped.maze.cell_rowcol_to_xy(np.array(self.goal_cell))
        env = FixedGoalPointMaze(raw, self.start_cell, self.goal_cell, goal_xy, _open_cells(raw.unwrapped.maze))
        env.action_space.seed(seed)
        return env

    # -- dataset -----------------------------------------------------------------------------
    def read_generated(self) -> Dataset:
        return load_minari(self.dataset_id)

    def generate(self) -> None:
        """Collect the dataset and save it as Minari."""
        from minari.data_collector import EpisodeBuffer

        buffers = [EpisodeBuffer(observations=list(ep["obs"]), actions=list(ep["action"]), rewards=list(ep["reward"]),
                                 terminations=list(ep["terminal"]), truncations=list(ep["timeout"]))
                   for ep in self.collect()]
        save_minari(self.dataset_id, buffers, env=self.env_id, eval_env=self.env_id,
                    observation_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
                    action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                    algorithm_name="noisy waypoint controller", author="o2o-bench",
                    author_email="o2o-bench@example.org", code_permalink="tasks/pointmaze.py",
                    ref_min_score=self.ref_min_score, ref_max_score=self.ref_max_score,
                    description=f"{self.name}: {self.recipe}")

    def collect(self) -> list[dict[str, np.ndarray]]:
        """Roll out the noisy waypoint controller; deterministic for a given recipe seed."""
        recipe = self.recipe
        rng = np.random.default_rng(recipe.seed)
        env = self._raw_env(continuing=True)
        maze = env.unwrapped.maze
        controller = _Controller(maze, self.goal_cell)
        open_cells = controller.open_cells
        goal_xy = maze.cell_rowcol_to_xy(np.array(self.goal_cell))
        episodes = []
        for k in range(recipe.episodes):
            if recipe.routes:
                start, target = recipe.routes[rng.integers(len(recipe.routes))]
            else:
                start, target = (open_cells[i] for i in rng.choice(len(open_cells), 2, replace=False))
            obs, _ = env.reset(seed=int(recipe.seed * 100_003 + k), options={"reset_cell": np.array(start)})
            x = obs["observation"]
            ep = {key: [] for key in ("obs", "action", "reward", "terminal", "timeout")}
            ep["obs"].append(x.astype(np.float32))
            for t in range(self.horizon):
                action = controller(x, target, recipe.noise, rng)
                obs, *_ = env.step(action)
                x = obs["observation"]
                distance = float(np.linalg.norm(x[:2] - goal_xy))
                at_goal = distance <= GOAL_RADIUS
                reward = float(np.exp(-distance)) if self.dense else float(at_goal)
                terminal = at_goal and not self.dense
                ep["obs"].append(x.astype(np.float32))
                ep["action"].append(action)
                ep["reward"].append(reward)
                ep["terminal"].append(terminal)
                ep["timeout"].append(t == self.horizon - 1 and not terminal)
                if terminal:
                    break
                if np.linalg.norm(x[:2] - maze.cell_rowcol_to_xy(np.array(target))) <= 0.5:
                    if recipe.routes:  # play: go back and forth along the chosen route
                        target = start if target != start else recipe.routes[rng.integers(len(recipe.routes))][1]
                    else:
                        target = open_cells[rng.integers(len(open_cells))]
            episodes.append({k2: np.asarray(v) for k2, v in ep.items()})
        env.close()
        return episodes


class _Controller:
    """Waypoint controller: PD control towards the next cell of a shortest path to `target`."""

    def __init__(self, maze, goal_cell):
        self.maze = maze
        self.open_cells = _open_cells(maze)
        self.next_cell = _next_cell_table(maze.maze_map, self.open_cells)

    def __call__(self, x, target, noise, rng) -> np.ndarray:
        cell = _nearest_open(self.maze, x[:2], self.open_cells)
        waypoint_cell = self.next_cell[cell][target] if cell != target else target
        waypoint = self.maze.cell_rowcol_to_xy(np.array(waypoint_cell))
        action = 10.0 * (waypoint - x[:2]) - 1.0 * x[2:4]
        if noise:
            action = action + noise * rng.standard_normal(2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def _open_cells(maze) -> list[tuple[int, int]]:
    return [(r, c) for r, row in enumerate(maze.maze_map) for c, v in enumerate(row) if v != 1]


def _rollout(env, act, seed) -> float:
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        total += reward
        done = terminated or truncated
    return total


def _nearest_open(maze, xy, open_cells):
    r, c = (int(v) for v in maze.cell_xy_to_rowcol(xy))
    if (r, c) in open_cells:
        return (r, c)
    return min(open_cells, key=lambda rc: np.linalg.norm(maze.cell_rowcol_to_xy(np.array(rc)) - xy))


def _next_cell_table(maze_map, open_cells):
    """next_cell[a][b]: the first cell after a on a shortest path from a to b (BFS from b)."""
    table = {a: {} for a in open_cells}
    for b in open_cells:
        parent = {b: b}
        queue = deque([b])
        while queue:
            cur = queue.popleft()
            r, c = cur
            for nb in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if nb in table and nb not in parent:
                    parent[nb] = cur  # stepping from nb towards b goes to cur
                    queue.append(nb)
        for a in open_cells:
            if a in parent:
                table[a][b] = parent[a]
    return table


UMAZE = dict(env_id="PointMaze_UMaze-v3", start_cell=(3, 1), goal_cell=(1, 1), horizon=300)
MEDIUM = dict(env_id="PointMaze_Medium-v3", start_cell=(1, 1), goal_cell=(6, 6), horizon=400)
# The Medium maze with a shorter route, 8 cells and 4 turns from (1,1) to (4,6) (the full route is
# 10 cells): between UMaze, which every method solves, and the full route, which small networks do
# not learn within a CPU budget; a wrong turn ends in a dead end (the unlearning-dip study).
MEDIUM_SHORT = dict(env_id="PointMaze_Medium-v3", start_cell=(1, 1), goal_cell=(4, 6), horizon=300)
# The same goal from any open cell: the success rate over an evaluation's starts is graded
# (each evaluation of a run starts from the same cells), not all-or-nothing as from one start.
MEDIUM_SHORT_ANYSTART = dict(env_id="PointMaze_Medium-v3", start_cell=None, goal_cell=(4, 6), horizon=300)
# play: hand-picked routes, as AntMaze's play data; they pass the goal region but rarely stop there
UMAZE_ROUTES = (((3, 1), (1, 3)), ((1, 3), (3, 3)), ((3, 3), (1, 2)), ((1, 2), (3, 1)), ((3, 2), (1, 1)))
MEDIUM_ROUTES = (((1, 1), (4, 4)), ((4, 4), (6, 3)), ((6, 1), (2, 6)), ((2, 5), (6, 6)), ((6, 5), (1, 2)))

register_task(PointMazeTask("pointmaze-umaze-diverse", **UMAZE, recipe=DatasetRecipe(episodes=300, noise=0.5)))
register_task(PointMazeTask("pointmaze-umaze-play", **UMAZE, recipe=DatasetRecipe(episodes=300, noise=0.5, routes=UMAZE_ROUTES)))
register_task(PointMazeTask("pointmaze-medium-diverse", **MEDIUM, recipe=DatasetRecipe(episodes=300, noise=0.5)))
register_task(PointMazeTask("pointmaze-medium-play", **MEDIUM, recipe=DatasetRecipe(episodes=300, noise=0.5, routes=MEDIUM_ROUTES)))
register_task(PointMazeTask("pointmaze-medium-short-diverse", **MEDIUM_SHORT, recipe=DatasetRecipe(episodes=300, noise=0.5)))
register_task(PointMazeTask("pointmaze-medium-short-anystart-diverse", **MEDIUM_SHORT_ANYSTART, recipe=DatasetRecipe(episodes=300, noise=0.5)))
register_task(PointMazeTask("pointmaze-umaze-dense", **UMAZE, recipe=DatasetRecipe(episodes=300, noise=0.5), dense=True))

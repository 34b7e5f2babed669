"""The PointMaze mini task: generated Minari data is deterministic and consistent, the env has
a fixed start and goal, sparse reward and success termination."""
import numpy as np
import pytest

import tasks
from tasks.pointmaze import GOAL_RADIUS

NAME = "pointmaze-umaze-diverse"


@pytest.fixture(scope="module")
def dataset():
    return tasks.get(NAME).load_dataset()


def test_generation_is_deterministic_per_seed():
    task = tasks.get(NAME)
    small = type(task)(NAME + "-x", task.env_id, task.start_cell, task.goal_cell, 50,
                       type(task.recipe)(episodes=4, noise=0.5, seed=3))
    a, b = small.collect(), small.collect()
    for ea, eb in zip(a, b):
        for key in ea:
            np.testing.assert_array_equal(ea[key], eb[key])
    small.recipe.seed = 4
    c = small.collect()
    assert not np.array_equal(a[0]["action"], c[0]["action"])


def test_dataset_is_saved_as_minari_and_loads_back(dataset, minari_dir):
    import minari

    task = tasks.get(NAME)
    assert (minari_dir / task.dataset_id).exists()
    ds = minari.load_dataset(task.dataset_id)
    assert ds.total_episodes == task.recipe.episodes
    assert len(dataset) == ds.total_steps
    dataset.validate(NAME, task.obs_dim, task.act_dim)


def test_transitions_are_consistent(dataset):
    ends = dataset.episode_end
    # next_obs of a step is the obs of the following step within a trajectory
    np.testing.assert_array_equal(dataset.next_obs[:-1][~ends[:-1]], dataset.obs[1:][~ends[:-1]])
    # sparse reward: 1 exactly at terminals, which are goal arrivals; time-outs are not terminals
    np.testing.assert_array_equal(dataset.reward == 1.0, dataset.terminal)
    assert not (dataset.terminal & dataset.timeout).any()
    assert 0 < dataset.terminal.sum() < ends.sum()  # some trajectories reach the goal, not all
    assert np.abs(dataset.action).max() <= 1.0


def test_env_has_fixed_start_goal_and_ends_at_success():
    task = tasks.get(NAME)
    env = task.make_env(0)
    obs, info = env.reset(seed=1)
    assert obs.shape == (4,) and obs.dtype == np.float32 and info["success"] is False
    goal = env.unwrapped.goal.copy()
    env.reset(seed=2)
    np.testing.assert_array_equal(env.unwrapped.goal, goal)  # no goal noise
    # teleport next to the goal: the next step succeeds, pays 1 and terminates
    env.unwrapped.point_env.set_state(np.array([*goal]), np.zeros(2))
    _, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert reward == 1.0 and terminated and info["success"]
    assert np.linalg.norm(env.unwrapped.data.qpos[:2] - goal) <= GOAL_RADIUS
    assert task.normalize(1.0) == 100.0 and task.normalize(0.0) == 0.0


def test_corrupt_dataset_gives_one_line_error(tmp_path, monkeypatch):
    from tasks.base import DatasetError
    from tasks.sources import load_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    bad = tmp_path / "o2o" / "broken" / "generated-v0" / "data"
    bad.mkdir(parents=True)
    (bad / "metadata.json").write_text("{not json")
    with pytest.raises(DatasetError, match="could not be read.*delete it and generate or download it again"):
        load_minari("o2o/broken/generated-v0")
    with pytest.raises(DatasetError, match="not found under"):
        load_minari("o2o/absent/generated-v0")


def test_dataset_validation_names_the_problem(dataset):
    from tasks.base import Dataset, DatasetError

    bad = Dataset(**{k: getattr(dataset, k)[:100].copy() for k in ("obs", "action", "reward", "next_obs", "terminal", "timeout")})
    bad.reward[3] = np.nan
    with pytest.raises(DatasetError, match="'reward' contains NaN"):
        bad.validate("x", 4, 2)
    with pytest.raises(DatasetError, match=r"observations have shape \(4,\), the environment gives \(5,\)"):
        dataset.validate("x", 5, 2)


def small_copy(name, episodes=6, seed=0):
    task = tasks.get(name)
    recipe = type(task.recipe)(episodes=episodes, noise=task.recipe.noise, routes=task.recipe.routes, seed=seed)
    return type(task)(name + "-small", task.env_id, task.start_cell, task.goal_cell, task.horizon, recipe,
                      dense=task.dense)


@pytest.mark.parametrize("name", ["pointmaze-umaze-play", "pointmaze-medium-play"])
def test_play_data_starts_only_at_route_starts(name):
    task = small_copy(name)
    env = task.make_env(0)
    maze = env.unwrapped.maze
    starts = {tuple(maze.cell_rowcol_to_xy(np.array(s)).round(6)) for s, _ in task.recipe.routes}
    for ep in task.collect():
        nearest = min(starts, key=lambda xy: np.linalg.norm(ep["obs"][0][:2] - np.array(xy)))
        assert np.abs(ep["obs"][0][:2] - np.array(nearest)).max() <= 0.25 + 1e-6  # reset noise only


def test_dense_variant_pays_exp_minus_distance_and_never_terminates():
    task = small_copy("pointmaze-umaze-dense", episodes=2)
    env = task.make_env(0)
    goal = env.unwrapped.maze.cell_rowcol_to_xy(np.array(task.goal_cell))
    for ep in task.collect():
        dist = np.linalg.norm(ep["obs"][1:, :2] - goal, axis=1)
        np.testing.assert_allclose(ep["reward"], np.exp(-dist), rtol=1e-5)
        assert not ep["terminal"].any() and ep["timeout"][-1] and len(ep["reward"]) == task.horizon
    low, high = task.reference_returns()
    assert high > low
    assert task.normalize(high) == pytest.approx(100.0) and task.normalize(low) == pytest.approx(0.0)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        _, reward, terminated, _, _ = env.step(np.zeros(2, np.float32))
        assert 0 < reward < 1 and not terminated


def test_medium_maze_start_and_goal():
    env = tasks.get("pointmaze-medium-diverse").make_env(0)
    obs, _ = env.reset(seed=0)
    maze = env.unwrapped.maze
    assert np.abs(obs[:2] - maze.cell_rowcol_to_xy(np.array([1, 1]))).max() <= 0.25 + 1e-6
    np.testing.assert_array_equal(env.unwrapped.goal, maze.cell_rowcol_to_xy(np.array([6, 6])))


def test_medium_short_route_is_eight_cells_and_the_controller_reaches_its_goal():
    from tasks.pointmaze import _Controller

    task = tasks.get("pointmaze-medium-short-diverse")
    env = task.make_env(0)
    obs, _ = env.reset(seed=0)
    maze = env.unwrapped.maze
    np.testing.assert_array_equal(env.unwrapped.goal, maze.cell_rowcol_to_xy(np.array([4, 6])))
    controller = _Controller(maze, task.goal_cell)
    cell, cells = (1, 1), 0
    while cell != task.goal_cell:
        cell, cells = controller.next_cell[cell][task.goal_cell], cells + 1
    assert cells == 8  # the full Medium route (1,1) -> (6,6) is 10
    rng = np.random.default_rng(0)
    for t in range(task.horizon):
        obs, reward, terminated, truncated, info = env.step(controller(obs, task.goal_cell, 0.0, rng))
        if terminated or truncated:
            break
    assert terminated and info["success"] and reward == 1.0 and t < 200  # ~165 steps of the 300


def test_anystart_draws_its_start_cell_from_the_reset_seed():
    from tasks.pointmaze import _Controller

    task = tasks.get("pointmaze-medium-short-anystart-diverse")
    env, other = task.make_env(0), task.make_env(1)
    maze = env.unwrapped.maze
    controller = _Controller(maze, task.goal_cell)
    cell_of = lambda obs: min(controller.open_cells, key=lambda c: np.abs(maze.cell_rowcol_to_xy(np.array(c)) - obs[:2]).max())  # noqa: E731
    starts = [cell_of(env.reset(seed=s)[0]) for s in range(40)]
    assert task.goal_cell not in starts and len(set(starts)) >= 15  # 25 candidate cells
    # the same reset seeds give the same starts, in any env of the task (an evaluation's cells)
    assert [cell_of(other.reset(seed=s)[0]) for s in range(40)] == starts
    np.testing.assert_array_equal(env.unwrapped.goal, maze.cell_rowcol_to_xy(np.array([4, 6])))
    # resets without a seed go on drawing from the last seed's stream (online episodes)
    env.reset(seed=7)
    assert len({cell_of(env.reset()[0]) for _ in range(20)}) > 1
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    for t in range(task.horizon):  # the noise-free controller reaches the goal from a drawn start
        obs, reward, terminated, truncated, info = env.step(controller(obs, task.goal_cell, 0.0, rng))
        if terminated or truncated:
            break
    assert terminated and info["success"] and reward == 1.0

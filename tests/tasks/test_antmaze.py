"""AntMaze through its real loaders: a Minari fixture under the real id and a D4RL-layout HDF5
file, both rolled out in the real env, go load -> transitions -> MC returns -> Cal-QL updates ->
an evaluation episode; the env has D4RL's layout, fixed goal and success termination."""
import gymnasium as gym
import h5py
import numpy as np
import pytest

import tasks
from tasks.antmaze import GOAL_RADIUS
from tasks.base import DatasetError
from tests.tasks.conftest import check_transitions, end_to_end, save_minari

NAME = "antmaze-umaze"
NAMES = ["antmaze-umaze", "antmaze-umaze-diverse", "antmaze-medium-play", "antmaze-medium-diverse",
         "antmaze-large-play", "antmaze-large-diverse"]


def rollouts(env, lengths, seed=0):
    """Random-action trajectories in the real env: flat obs (T+1), actions, sparse rewards."""
    eps = []
    for k, T in enumerate(lengths):
        obs, _ = env.reset(seed=seed + k)
        ep = {"obs": [obs], "action": [], "reward": [], "terminal": [], "timeout": []}
        for t in range(T):
            a = env.action_space.sample()
            obs, r, term, trunc, info = env.step(a)
            ep["obs"].append(obs); ep["action"].append(a); ep["reward"].append(r)
            ep["terminal"].append(term); ep["timeout"].append(t == T - 1 and not term)
        eps.append(ep)
    eps[-1]["reward"][-1], eps[-1]["terminal"][-1], eps[-1]["timeout"][-1] = 1.0, True, False  # one success
    return eps


@pytest.fixture(scope="module")
def minari_fixture():
    task = tasks.get(NAME)
    env = task.make_env(0, source="minari")
    eps = rollouts(env, [30, 20, 25])
    goal = env.goal_xy.astype(np.float64)
    for ep in eps:
        ep["obs"] = [{"observation": o[2:].astype(np.float64), "achieved_goal": o[:2].astype(np.float64),
                      "desired_goal": goal} for o in ep["obs"]]
    space = gym.spaces.Dict({"observation": gym.spaces.Box(-np.inf, np.inf, (27,), np.float64),
                             "achieved_goal": gym.spaces.Box(-np.inf, np.inf, (2,), np.float64),
                             "desired_goal": gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)})
    save_minari(task.minari_id, eps, "AntMaze_UMaze-v4", space, env.action_space)
    return eps


def write_d4rl(path, eps, **override):
    obs = np.concatenate([np.asarray(ep["obs"][:-1]) for ep in eps])
    arrays = {"observations": obs, "actions": np.concatenate([ep["action"] for ep in eps]),
              "rewards": np.concatenate([ep["reward"] for ep in eps]),
              "terminals": np.concatenate([ep["terminal"] for ep in eps]),
              "timeouts": np.concatenate([ep["timeout"] for ep in eps]),
              "infos/goal": np.zeros((len(obs), 2))}
    arrays.update(override)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)


def test_minari_source_end_to_end(minari_fixture):
    task = tasks.get(NAME)
    assert task.active_source() == "minari" and task.dataset_present()
    data = task.load_dataset()
    assert len(data) == 75 and data.obs.shape == (75, 29)
    check_transitions(data, 29, 8)
    # flat layout = D4RL's: xy first, then z (torso height ~0.75 at the start)
    np.testing.assert_allclose(data.obs[0], minari_fixture[0]["obs"][0]["achieved_goal"].tolist()
                               + minari_fixture[0]["obs"][0]["observation"].tolist(), rtol=1e-6)
    assert data.terminal.sum() == 1 and data.reward[-1] == 1.0 and data.timeout.sum() == 2
    env = gym.wrappers.TimeLimit(task.make_env(0), 200)
    mc, result = end_to_end(task, data, env)
    assert mc[-1] == 1.0 and mc[0] == 0.0  # a failed trajectory: fail_reward 0 / (1 - gamma)
    assert result["normalized_score"] == 100.0 * result["success"]


def test_d4rl_hdf5_source_end_to_end(data_dir, minari_fixture):
    task = tasks.get(NAME)
    env = task.make_env(0, source="d4rl")
    eps = rollouts(env, [30, 20, 25], seed=7)
    write_d4rl(task.d4rl_path, eps)
    assert task.active_source() == "d4rl"  # the paper's files win over Minari
    data = task.load_dataset()
    # no next_observations in the file: the last step of each time-out trajectory is dropped
    assert len(data) == 75 - 2
    check_transitions(data, 29, 8)
    np.testing.assert_allclose(data.next_obs[0], eps[0]["obs"][1])
    assert data.terminal.sum() == 1 and data.timeout.sum() == 2
    np.testing.assert_allclose(data.obs[0, :2], 0.0, atol=0.11)  # D4RL frame: start at the origin
    mc, result = end_to_end(task, data, gym.wrappers.TimeLimit(task.make_env(1), 100))
    assert result["return"] in (0.0, 1.0)


@pytest.mark.parametrize("source, goal", [("d4rl", (0.0, 8.0)), ("minari", None)])
def test_env_layout_fixed_goal_and_success_termination(source, goal):
    task = tasks.get(NAME)
    env = task.make_env(0, source=source)
    obs, info = env.reset(seed=1)
    assert obs.shape == (29,) and obs.dtype == np.float32 and info == {"success": False}
    ant = env.unwrapped.ant_env
    np.testing.assert_allclose(obs, np.r_[ant.data.qpos[:15], ant.data.qvel[:14]] - np.r_[env.origin, np.zeros(27)], rtol=1e-5)
    if goal is not None:  # D4RL's umaze goal, in D4RL coordinates
        np.testing.assert_allclose(env.goal_xy - env.origin, goal)
    goal_xy = env.goal_xy.copy()
    env.reset(seed=2)
    np.testing.assert_array_equal(env.unwrapped.goal, goal_xy)
    qpos = ant.data.qpos.copy(); qpos[:2] = goal_xy + [GOAL_RADIUS * 0.9, 0]
    ant.set_state(qpos, ant.data.qvel * 0)
    _, r, term, trunc, info = env.step(np.zeros(8, np.float32))
    assert r == 1.0 and term and info["success"]
    assert task.normalize(1.0) == 100.0 and task.normalize(0.0) == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_every_antmaze_env_is_created_and_stepped(name):
    task = tasks.get(name)
    for source in ("minari", "d4rl"):
        env = task.make_env(0, source=source)
        obs, info = env.reset(seed=0)
        for _ in range(5):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
        assert obs.shape == (29,) and r == 0.0 and not term and "success" in info
        assert env.unwrapped.spec.max_episode_steps == 1000 or env.spec.max_episode_steps == 1000


def test_bad_hdf5_files_give_one_line_errors(data_dir, minari_fixture):
    task = tasks.get(NAME)
    path = task.d4rl_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # truncated
    with pytest.raises(DatasetError, match=rf"{path}: could not be read.*corrupt or truncated"):
        task.load_dataset()
    eps = rollouts(task.make_env(0, source="d4rl"), [10, 10])
    obs = np.concatenate([np.asarray(ep["obs"][:-1]) for ep in eps])
    write_d4rl(path, eps, observations=obs[:, :27])
    with pytest.raises(DatasetError, match=rf"{path}: observations have shape \(27,\), the environment gives \(29,\)"):
        task.load_dataset()
    bad = obs.copy(); bad[3, 4] = np.nan
    write_d4rl(path, eps, observations=bad)
    with pytest.raises(DatasetError, match=rf"{path}: 'obs' contains NaN"):
        task.load_dataset()
    write_d4rl(path, eps, rewards=np.zeros(5))
    with pytest.raises(DatasetError, match="rows but 'rewards' has 5"):
        task.load_dataset()
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=obs)
    with pytest.raises(DatasetError, match="missing key"):
        task.load_dataset()


def test_d4rl_file_without_timeouts_is_refused_and_actions_clipped_as_cal_ql(data_dir, minari_fixture):
    task = tasks.get(NAME)
    eps = rollouts(task.make_env(0, source="d4rl"), [10, 10])
    write_d4rl(task.d4rl_path, eps)
    with h5py.File(task.d4rl_path, "a") as f:
        del f["timeouts"]  # trajectories would run into each other
    with pytest.raises(DatasetError, match=rf"{task.d4rl_path}: missing key\(s\) timeouts; not a D4RL v2 dataset"):
        task.load_dataset()
    assert task.dataset_state() == "corrupt" and "has no 'timeouts' key(s)" in task.dataset_problem()
    actions = np.concatenate([ep["action"] for ep in eps])
    actions[0], actions[1] = 1.0, -1.0
    write_d4rl(task.d4rl_path, eps, actions=actions)
    data = task.load_dataset()
    np.testing.assert_array_equal(data.action[:2], np.float32(1 - 1e-5) * np.sign(actions[:2]))  # as Cal-QL's loader
    np.testing.assert_allclose(data.action[2:9], np.clip(actions[2:9], -1 + 1e-5, 1 - 1e-5))  # first trajectory


def test_corrupt_file_is_reported_corrupt_not_present(data_dir, minari_fixture):
    import os
    import subprocess
    import sys

    from harness.preflight import problems

    task = tasks.get(NAME)
    task.d4rl_path.parent.mkdir(parents=True, exist_ok=True)
    task.d4rl_path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # an interrupted download
    assert task.dataset_present() and task.dataset_state() == "corrupt"
    assert [p for p in problems([NAME]) if "dataset corrupt" in p and str(task.d4rl_path) in p]
    out = subprocess.run([sys.executable, "-m", "tasks", "list"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "O2O_DATA_DIR": str(data_dir)}).stdout
    assert next(l for l in out.splitlines() if l.startswith(NAME + " ")).split()[2] == "corrupt"


def test_antmaze_keeps_the_adroit_notice_and_deprecation_warnings_off_the_terminal():
    import subprocess
    import sys

    code = ("import tasks; t = tasks.get('antmaze-umaze'); env = t.make_env(0, source='minari'); "
            "env.reset(seed=0); env.step(env.action_space.sample())")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr

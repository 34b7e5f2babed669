"""Franka Kitchen through its real loader: a Minari fixture under the real id, rolled out in the
real FrankaKitchen-v1, goes load (rewards relabeled to subtasks solved) -> transitions -> MC
returns -> Cal-QL updates -> an evaluation episode scored by subtasks / 4. Kitchen env steps are
slow: episodes here are short."""
import copy

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import tasks
from tasks.base import DatasetError
from tests.tasks.conftest import check_transitions, end_to_end, save_minari

NAME = "kitchen-partial"


def raw_rollouts(task, lengths, seed=0):
    env = task.make_env(seed).env  # FrankaKitchen-v1 itself: dict observations
    eps = []
    for k, T in enumerate(lengths):
        obs, _ = env.reset(seed=seed + k)
        ep = {"obs": [copy.deepcopy(obs)], "action": [], "reward": [], "terminal": [], "timeout": []}
        for t in range(T):
            a = env.action_space.sample()
            obs, r, term, trunc, _ = env.step(a)
            ep["obs"].append(copy.deepcopy(obs)); ep["action"].append(a); ep["reward"].append(-7.0)  # relabeled on load
            ep["terminal"].append(False); ep["timeout"].append(t == T - 1)
        eps.append(ep)
    return env, eps


@pytest.fixture(scope="module")
def fixture_data():
    task = tasks.get(NAME)
    env, eps = raw_rollouts(task, [12, 10])
    last = eps[1]["obs"][-1]  # the last state: microwave and kettle at their goals
    for k in ("microwave", "kettle"):
        last["achieved_goal"][k] = last["desired_goal"][k].copy()
    save_minari(task.minari_id, eps, "FrankaKitchen-v1", env.observation_space, env.action_space, ref=(0.0, 4.0))
    return eps


def test_minari_source_end_to_end(fixture_data):
    task = tasks.get(NAME)
    assert task.dataset_present()
    data = task.load_dataset()
    assert len(data) == 22 and data.obs.shape == (22, 59) and data.obs.dtype == np.float32
    check_transitions(data, 59, 9)
    np.testing.assert_allclose(data.obs[0], fixture_data[0]["obs"][0]["observation"], rtol=1e-6)
    assert data.reward[-1] == 2.0 and (data.reward[:-1] == 0).all()  # relabeled: subtasks solved now
    assert data.timeout.sum() == 2 and not data.terminal.any()
    env = gym.wrappers.TimeLimit(task.make_env(0), 15)
    mc, result = end_to_end(task, data, env)
    assert mc[-1] == 2.0 and mc[-2] == pytest.approx(0.99 * 2.0)
    assert result["normalized_score"] in (0.0, 25.0, 50.0, 75.0, 100.0)


def test_env_reward_is_subtasks_solved_and_never_terminates():
    task = tasks.get(NAME)
    env = task.make_env(0)
    obs, info = env.reset(seed=0)
    assert obs.shape == (59,) and obs.dtype == np.float32 and info["success"] is False
    obs2, *_ = env.step(np.zeros(9, np.float32))
    assert not np.shares_memory(obs, obs2)
    u = env.unwrapped
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES
    for k in task.subtasks:
        u.data.qpos[OBS_ELEMENT_INDICES[k]] = OBS_ELEMENT_GOALS[k]
    mujoco.mj_forward(u.model, u.data)
    _, r, term, trunc, info = env.step(np.zeros(9, np.float32))
    assert r >= 3.0 and not term and info["subtasks"] == r  # all 4 near their goals (the kettle may wobble)
    assert task.episode_score(1234.0, {"subtasks": 3.0}) == 75.0
    assert task.episode_score(0.0, {"subtasks": 4.0}) == 100.0


@pytest.mark.parametrize("name", ["kitchen-partial", "kitchen-mixed", "kitchen-complete"])
def test_every_kitchen_env_is_created_and_stepped(name):
    task = tasks.get(name)
    env = task.make_env(0)
    env.reset(seed=0)
    for _ in range(3):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
    assert obs.shape == (59,) and 0 <= r <= 4 and not term and "success" in info
    assert env.env.spec.max_episode_steps == 1000
    assert set(env.unwrapped.goal) == set(task.subtasks)


def test_wrong_layout_is_a_one_line_error(fixture_data):
    task = tasks.get("kitchen-mixed")
    env, eps = raw_rollouts(task, [4])
    flat = [{"observation": o["observation"][:50]} for o in eps[0]["obs"]]
    eps[0]["obs"] = flat
    space = gym.spaces.Dict({"observation": gym.spaces.Box(-np.inf, np.inf, (50,), np.float64)})
    save_minari(task.minari_id, eps, "FrankaKitchen-v1", space, env.action_space)
    with pytest.raises(DatasetError, match="D4RL/kitchen/mixed-v2.*no goal entry"):
        task.load_dataset()

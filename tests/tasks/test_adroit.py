"""Adroit binary through its real loaders: an AWAC-layout .npy fixture and a Minari fixture under
the real id (relabeled from infos["success"]), both rolled out in the real env, go load (Cal-QL's
keep-up-to-last-success rule) -> transitions -> MC returns -> Cal-QL updates -> an evaluation
episode scored as success x 100."""
import re

import gymnasium as gym
import numpy as np
import pytest

import tasks
from tasks.base import DatasetError
from tests.tasks.conftest import check_transitions, end_to_end, save_minari

NAME = "door-binary"


def rollouts(task, lengths, successes, seed=0):
    """Random actions in the real env; success flags synthesized at the given steps."""
    env = task.make_env(seed).env
    eps = []
    for k, (T, hits) in enumerate(zip(lengths, successes)):
        obs, _ = env.reset(seed=seed + k)
        ep = {"obs": [np.array(obs)], "action": [], "success": np.zeros(T, bool)}
        for t in range(T):
            a = env.action_space.sample() * 1.2  # some beyond +-0.99999: clipped on load
            obs, *_ = env.step(np.clip(a, -1, 1))
            ep["obs"].append(np.array(obs)); ep["action"].append(a)
        ep["success"][list(hits)] = True
        eps.append(ep)
    return env, eps


def write_awac(path, eps, next_obs=True):
    paths = []
    for ep in eps:
        p = {"observations": np.array(ep["obs"][:-1]), "actions": np.array(ep["action"]),
             "rewards": ep["success"].astype(float) - 1, "terminals": np.zeros(len(ep["action"]), bool),
             "env_infos": [{"goal_achieved": bool(s)} for s in ep["success"]]}
        if next_obs:
            p["next_observations"] = np.array(ep["obs"][1:])
        paths.append(p)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array(paths, dtype=object), allow_pickle=True)


def test_awac_npy_source_end_to_end(data_dir):
    task = tasks.get(NAME)
    _, eps = rollouts(task, [20, 15, 12], [(5, 9), (), (8,)])
    demo, bc = task.awac_paths
    write_awac(demo, eps[:2])
    write_awac(bc, eps[2:], next_obs=False)
    assert task.active_source() == "awac"
    data = task.load_dataset()
    # ep 0 and ep 2 up to their last success (10 and 9 steps), ep 1 never succeeds: dropped
    assert len(data) == 10 + 9
    check_transitions(data, 39, 28)
    np.testing.assert_array_equal(data.reward[:10], [-1] * 5 + [0] + [-1] * 3 + [0])
    np.testing.assert_array_equal(data.terminal, data.reward == 0)
    assert np.abs(data.action).max() <= 0.99999 and np.abs(data.action).max() > 0.999
    np.testing.assert_allclose(data.next_obs[0], eps[0]["obs"][1], rtol=1e-6)
    mc, result = end_to_end(task, data, gym.wrappers.TimeLimit(task.make_env(0), 30))
    # -1 / (1 - gamma) rule does not apply: every kept trajectory succeeds
    assert mc[5] == 0.0 and mc[4] == -1.0 and mc[0] == pytest.approx(-(1 - 0.99 ** 5) / 0.01, rel=1e-5)
    assert result["normalized_score"] == 100.0 * result["success"]
    assert result["return"] <= -29  # a random policy: -1 per step


def test_minari_fallback_is_relabeled_to_binary(data_dir):
    task = tasks.get(NAME)
    env, eps = rollouts(task, [10, 8], [(3, 6), ()], seed=3)
    for ep in eps:
        ep["infos"] = {"success": np.r_[False, ep["success"]]}
        ep["reward"] = np.full(len(ep["action"]), 7.5)  # dense rewards, ignored
        ep["terminal"] = np.zeros(len(ep["action"]), bool)
        ep["timeout"] = np.arange(len(ep["action"])) == len(ep["action"]) - 1
        ep["action"] = np.clip(ep["action"], -1, 1).astype(np.float32)
    save_minari(task.minari_ids[0], eps, "AdroitHandDoor-v1", env.observation_space, env.action_space)
    assert task.active_source() == "minari"
    data = task.load_dataset()
    assert len(data) == 7
    np.testing.assert_array_equal(data.reward, [-1, -1, -1, 0, -1, -1, 0])
    check_transitions(data, 39, 28)
    end_to_end(task, data, gym.wrappers.TimeLimit(task.make_env(0), 10))


@pytest.mark.parametrize("name, dims, horizon", [("pen-binary", (45, 24), 100), ("door-binary", (39, 28), 200),
                                                 ("relocate-binary", (39, 30), 200)])
def test_every_adroit_env_is_binary(name, dims, horizon):
    task = tasks.get(name)
    env = task.make_env(0)
    obs, info = env.reset(seed=0)
    assert obs.shape == (dims[0],) and obs.dtype == np.float32 and env.action_space.shape == (dims[1],)
    obs, r, term, trunc, info = env.step(env.action_space.sample())
    assert r in (-1.0, 0.0) and r == float(info["success"]) - 1 and not term
    assert env.env.spec.max_episode_steps == horizon
    assert task.normalize(-float(horizon)) == 0.0 and task.normalize(-horizon + 1.0) == 100.0
    assert task.episode_score(-float(horizon), {"episode_success": True}) == 100.0


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an interrupted download


def _set(key, index, value):
    def corrupt(p):
        p[key] = np.array(p[key], float)
        p[key][index] = value
    return corrupt


# (which file, its damage: ("file", f(path)) or ("trajectory", f(first trajectory's dict)), the message after the path)
CORRUPT = [
    ("demo", ("file", lambda path: path.write_bytes(b"\x93NUMPY\x01\x00garbage")), "could not be read.*corrupt or truncated"),
    ("demo", ("file", _truncate), "could not be read.*corrupt or truncated"),
    ("bc", ("file", _truncate), "could not be read.*corrupt or truncated"),
    ("demo", ("file", lambda path: np.save(path, np.zeros((3, 4)))), "trajectory 0 is a ndarray, not a dict; not an AWAC path file"),
    ("demo", ("trajectory", lambda p: p.pop("actions")), "trajectory 0 has no 'actions'; not an AWAC path file"),
    ("demo", ("trajectory", lambda p: p.update(observations=p["observations"][:, :30])),
     r"trajectory 0: observations have shape \(30,\).*gives \(39,\)"),
    ("bc", ("trajectory", lambda p: p.update(actions=p["actions"][:, :27])), r"trajectory 0: .*actions \(27,\).*takes \(28,\)"),
    ("demo", ("trajectory", lambda p: p.update(next_observations=p["next_observations"][:3])), "trajectory 0 is malformed.*corrupt"),
    ("demo", ("trajectory", lambda p: p.update(actions=p["actions"][:-2])), "trajectory 0 is malformed.*corrupt"),
    ("demo", ("trajectory", _set("observations", (1, 3), np.nan)), "trajectory 0 has NaN or inf in 'observations'"),
    ("demo", ("trajectory", _set("actions", (2, 0), np.inf)), "trajectory 0 has NaN or inf in 'actions'"),
    ("bc", ("trajectory", _set("next_observations", (0, 5), -np.inf)), "trajectory 0 has NaN or inf in 'next_observations'"),
]


@pytest.mark.parametrize("which, damage, message", CORRUPT)
def test_corrupt_npy_file_is_reported_corrupt_and_refused_naming_it(which, damage, message, data_dir):
    task = tasks.get(NAME)
    _, eps = rollouts(task, [6, 6], [(2,), (4,)])
    demo, bc = task.awac_paths
    write_awac(demo, eps[:1])
    write_awac(bc, eps[1:])
    assert task.dataset_state() == "yes"
    path = demo if which == "demo" else bc
    kind, change = damage
    if kind == "file":
        change(path)
    else:
        paths = np.load(path, allow_pickle=True)
        change(paths[0])
        np.save(path, paths, allow_pickle=True)
    assert task.dataset_state() == "corrupt"  # `python -m tasks list` and the preflight
    problem = task.dataset_problem()
    assert problem.startswith(f"{path}: ") and len(problem.splitlines()) == 1
    assert re.search(message, problem), problem
    with pytest.raises(DatasetError) as exc:
        task.load_dataset()
    assert str(exc.value) == problem


def test_npy_file_without_a_success_is_not_corrupt_but_refused(data_dir):
    task = tasks.get(NAME)
    _, eps = rollouts(task, [6], [()])
    write_awac(task.awac_paths[0], eps)
    assert task.dataset_state() == "yes"
    with pytest.raises(DatasetError, match="no trajectory in the data ever succeeds"):
        task.load_dataset()

"""Helpers for the real-task tests: fixture datasets saved under the real Minari ids in the
session's private MINARI_DATASETS_PATH, and the end-to-end check every domain goes through."""
import numpy as np
import pytest
import torch

import algorithms
from harness.evaluate import evaluate
from harness.replay import Replay


def _columns(steps):
    """A list of (nested) dict observations -> a (nested) dict of arrays, as Minari stores them."""
    if isinstance(steps[0], dict):
        return {k: _columns([s[k] for s in steps]) for k in steps[0]}
    return np.asarray(steps)


def save_minari(dataset_id, episodes, env_id, observation_space, action_space, ref=(None, None)):
    """episodes: dicts with 'obs' (list of T+1 arrays or dicts), 'action', 'reward', 'terminal',
    'timeout', optional 'infos' (dict of T+1 arrays). Overwrites an existing local copy."""
    import shutil

    import minari
    from minari.data_collector import EpisodeBuffer

    from tasks.sources import minari_root

    shutil.rmtree(minari_root() / dataset_id, ignore_errors=True)
    buffers = []
    for ep in episodes:
        obs = _columns(ep["obs"])
        buffers.append(EpisodeBuffer(observations=obs, actions=list(ep["action"]), rewards=list(ep["reward"]),
                                     terminations=list(ep["terminal"]), truncations=list(ep["timeout"]),
                                     infos=ep.get("infos")))
    kwargs = {} if ref[1] is None else {"ref_min_score": ref[0], "ref_max_score": ref[1]}
    minari.create_dataset_from_buffers(dataset_id, buffers, env=env_id, observation_space=observation_space,
                                       action_space=action_space, algorithm_name="random", author="o2o-bench tests",
                                       author_email="tests@example.org", code_permalink="tests/tasks", **kwargs)


def check_transitions(data, obs_dim, act_dim):
    """next_obs continues within trajectories; ends are marked; shapes and finiteness hold."""
    data.validate("fixture", obs_dim, act_dim)
    ends = data.episode_end
    np.testing.assert_array_equal(data.next_obs[:-1][~ends[:-1]], data.obs[1:][~ends[:-1]])
    assert not (data.terminal & data.timeout).any()


def end_to_end(task, data, env, updates=5, hidden=(32, 32)):
    """Monte-Carlo returns -> a few Cal-QL updates on a real Replay -> one evaluation episode."""
    torch.manual_seed(0)
    algo = algorithms.make("calql", algorithms.ObsSpec((task.obs_dim,)), algorithms.ActionSpec(task.act_dim),
                           {"actor_hidden": list(hidden), "critic_hidden": list(hidden)}, torch.device("cpu"))
    replay = Replay.from_dataset(data, 0, torch.device("cpu"), algo.config.gamma, task.fail_reward)
    mc = replay.storage["mc_return"][: replay.n_offline].numpy()  # the returns the batches carry
    assert mc.shape == data.reward.shape and np.isfinite(mc).all()
    for _ in range(updates):
        metrics = algo.update(replay.sample(32, "mix", 1.0, True))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    result = evaluate(algo, env, task, episodes=1, seed=123)
    assert set(result) == {"return", "normalized_score", "success"}
    return mc, result


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("O2O_DATA_DIR", str(tmp_path / "o2o-data"))
    return tmp_path / "o2o-data"

"""Each method learns: pre-trained offline on the PointMaze mini task's dataset with the pointmaze
settings of its own yaml (reward transform, network sizes, hyperparameters) and a small fixed
budget, its deterministic policy reaches the goal from the fixed start in at least half of the
evaluation episodes in the real env, where a random policy never does (the dataset's noisy
controller drives to random goals, so its own success on this start/goal is not a measured bar).
Single-threaded: on shared cores, 2 threads per process thrash. About 2 minutes on 2 busy cores."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import algorithms
import tasks
from harness.evaluate import evaluate
from harness.jobs import ReplayConfig, RewardTransform, load_group, resolve_algorithm
from harness.replay import Replay

TASK = "pointmaze-umaze-diverse"
# Offline updates per method (batch size: the yaml's, except 128 for the CQL family, whose update
# costs ~5x the others: 31 critic rows per transition). Measured on 2 shared cores with seeds 0
# and 1: success 0.8-1.0 (CQL 0.5-1.0 at 2,500 updates) in 10 episodes; a random policy: 0.0.
STEPS = {"cql": 3000, "calql": 2500, "iql": 3000, "td3bc": 3000, "awac": 4000}
BATCH = {"cql": 128, "calql": 128}
# Not here, as their budgets do not fit: RLPD (no pre-training; its temperature starts at 1 and
# falls ~3e-4 per actor step, so at UTD 20 its policy stays near-uniform for tens of thousands of
# updates) and WSRL (its pre-training with 4 of its 10 critics reached success 0 at 2,500 updates,
# after 9 minutes on 2 shared cores; with 2 critics and no subsampling, i.e. Cal-QL with LayerNorm
# networks, 0.8 in a runner job).
EPISODES = 10
MIN_SUCCESS = 0.5


def offline_data(algo_name: str):
    task = tasks.get(TASK)
    data = task.load_dataset()
    cfg = resolve_algorithm(load_group("algorithm", algo_name), task.domain)
    return task, data, cfg


def pretrain(algo_name: str, steps: int, seed: int = 0, batch_size: int | None = None):
    task, data, cfg = offline_data(algo_name)
    torch.manual_seed(seed)
    np.random.seed(seed)
    algo = algorithms.make(algo_name, algorithms.ObsSpec((task.obs_dim,)), algorithms.ActionSpec(task.act_dim),
                           cfg["hparams"], "cpu")
    algo.observe_dataset(torch.as_tensor(data.obs))
    transform, replay_cfg = RewardTransform(**cfg["reward"]), ReplayConfig(**cfg["replay"])
    replay = Replay.from_dataset(data, 0, torch.device("cpu"), algo.config.gamma, task.fail_reward,
                                 reward_transform=transform)
    with_mc = "mc_return" in algo.needs
    for _ in range(steps):
        metrics = algo.update(replay.sample(batch_size or replay_cfg.batch_size, "mix", 1.0, with_mc))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    return task, algo


class RandomPolicy:
    def __init__(self, act_dim, seed=0):
        self.rng, self.act_dim = np.random.default_rng(seed), act_dim

    def act(self, obs, deterministic):
        return self.rng.uniform(-1, 1, (len(obs), self.act_dim)).astype(np.float32)  # one per seed


@pytest.fixture(scope="module")
def baseline():
    task = tasks.get(TASK)
    data = task.load_dataset()
    env = task.make_env(123)
    random = evaluate(RandomPolicy(task.act_dim), env, task, EPISODES, seed=10_000)
    ends = np.flatnonzero(data.episode_end)
    data_success = np.mean([r.any() for r in np.split(data.reward > 0, ends[:-1] + 1)])
    return random["success"], data_success


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STEPS))
def test_pretrained_policy_beats_a_random_policy(name, baseline):
    random_success, data_success = baseline
    assert random_success == 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task, algo = pretrain(name, STEPS[name], seed=0, batch_size=BATCH.get(name))
        result = evaluate(algo, task.make_env(123), task, EPISODES, seed=10_000)
    finally:
        torch.set_num_threads(threads)
    assert result["success"] >= MIN_SUCCESS, (name, result, f"random: {random_success}, data: {data_success:.2f}")

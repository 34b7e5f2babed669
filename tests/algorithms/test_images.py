"""Image observations end to end: uint8 rows stay uint8 through the dataset, replay storage and
batches up to the encoder; every registered method updates and evaluates on the visual task;
the runner runs a (tiny) visual job through both phases."""
import json
import math

import numpy as np
import pytest
import torch

import algorithms
from algorithms import ActionSpec, ObsSpec, SeedStreams
from algorithms.common.encoder import PixelEncoder, make_encoder, random_shift, split_obs
from harness.evaluate import evaluate
from harness.job import Job, RewardTransform
from harness.replay import Replay
from harness.runner import run_job
from tasks import TASKS, register_task
from tasks.fetch import DatasetRecipe, VisualPickPlaceTask
from tests.algorithms.helpers import for_method

TINY = {"actor_hidden": (16, 16), "critic_hidden": (16, 16), "actor_every": 1, "encoder_channels": (4, 4),
        "encoder_feature_dim": 8, "augment_pad": 2}


@pytest.fixture(scope="module")
def task():
    name = "visual-pick-place-test24"
    t = TASKS.get(name) or register_task(VisualPickPlaceTask(name, image_size=24, recipe=DatasetRecipe(episodes=2)))
    t.prepare()
    return t


@pytest.fixture(scope="module")
def replay(task):
    return Replay.from_dataset(task.load_dataset(), 200, torch.device("cpu"), 0.99, task.fail_reward,
                               reward_transform=RewardTransform(scale=10.0, shift=-5.0))  # fail reward 0 -> -5


def spec(task):
    return ObsSpec((task.obs_dim,), task.image_shape, task.vector_dim)


def test_replay_and_batch_keep_uint8(task, replay):
    assert replay.storage["obs"].dtype == torch.uint8 and replay.storage["next_obs"].dtype == torch.uint8
    assert replay.storage["reward"].dtype == torch.float32
    env = task.make_env(0)
    try:
        obs, _ = env.reset(seed=0)
        next_obs, *_ = env.step(env.action_space.sample())
    finally:
        env.close()
    replay.add(obs, np.zeros(4, np.float32), -5.0, next_obs, False, True)
    assert replay.storage["obs"].dtype == torch.uint8
    np.testing.assert_array_equal(replay.storage["obs"][replay.n_offline].numpy(), obs)
    batch = replay.sample(8, "mix", 0.5, True)
    assert batch.obs.dtype == torch.uint8 and batch.next_obs.dtype == torch.uint8 and batch.obs.shape[:2] == (1, 8)
    assert batch.action.dtype == torch.float32 and batch.mc_return.dtype == torch.float32


def test_encoder_splits_rows_and_augments_on_uint8(task, replay):
    s = spec(task)
    batch = replay.sample(4, "mix", 1.0, False)
    pixels, state = split_obs(batch.obs[0], s.image)
    assert pixels.dtype == torch.uint8 and pixels.shape == (4, *s.image) and state.shape == (4, s.vector_dim)
    assert torch.isfinite(state).all() and (state[:, 0] > 1.0).all()  # gripper x is ~1.3 m
    shifted = random_shift(pixels, 2, SeedStreams())
    assert shifted.dtype == torch.uint8 and shifted.shape == pixels.shape
    config = algorithms.get("cql").Config(**{k: v for k, v in TINY.items() if "hidden" not in k and k != "actor_every"})
    enc = make_encoder(s, config, SeedStreams())
    assert isinstance(enc, PixelEncoder) and enc.out_dim == 8 + s.vector_dim
    assert enc(batch.obs).shape == (1, 4, enc.out_dim)
    with pytest.raises(TypeError, match="uint8"):
        enc(batch.obs.float())
    with pytest.raises(ValueError, match="one seed per process.*seeds_per_process=1"):
        make_encoder(s, config, SeedStreams.from_seeds([0, 1]))
    with pytest.raises(ValueError, match="needs rows"):
        ObsSpec((10,), (3, 4, 4), 1)


@pytest.mark.parametrize("name", [n for n in algorithms.available() if algorithms.get(n).takes_images])
def test_every_method_updates_and_evaluates_on_images(name, task, replay):
    cls = algorithms.get(name)
    hparams = for_method(name, TINY)
    assert {"encoder_channels", "encoder_feature_dim", "augment_pad"} <= set(cls.Config.__dataclass_fields__), \
        f"{name}: its Config must inherit algorithms.common.encoder.EncoderConfig"
    torch.manual_seed(0)
    algo = algorithms.make(name, spec(task), ActionSpec(task.act_dim), hparams, "cpu")
    encoder = algo.encoder
    before = [p.detach().clone() for p in encoder.parameters()]
    for _ in range(3):
        metrics = algo.update(replay.sample(16, "mix", 0.5, "mc_return" in algo.needs))
    assert all(math.isfinite(float(v)) for v in metrics.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, encoder.parameters())), "the encoder must train"
    env = task.make_env(1)
    try:
        result = evaluate(algo, env, task, episodes=1, seed=0)
    finally:
        env.close()
    assert set(result) >= {"return", "normalized_score", "success"}


def test_runner_runs_a_visual_job(task, tmp_path):
    job = Job.from_dict({"suite": "test", "seed": 0, "device": "cpu",
                         "task": {"name": task.name, "domain": task.domain},
                         "algorithm": {"name": "calql", "hparams": for_method("calql", TINY), "replay": {"mode": "mix", "batch_size": 16},
                                       "reward": {"scale": 10.0, "shift": -5.0}},
                         "protocol": {"offline_steps": 10, "online_steps": 60, "utd": 1, "eval_every_offline": 10,
                                      "eval_every": 60, "eval_episodes": 1, "log_every": 10, "checkpoint_every": 0}})
    summary = run_job(job, tmp_path, progress_bar=False)
    assert summary["status"] == "done"
    assert json.loads((tmp_path / "summary.json").read_text())["final_score"] is not None


def test_td3bc_normalizes_vector_observations_only(task, replay):
    hparams = for_method("td3bc", TINY)
    algo = algorithms.make("td3bc", spec(task), ActionSpec(task.act_dim), hparams, "cpu")
    with pytest.raises(ValueError, match="normalize_obs"):
        algo.observe_dataset(replay.storage["obs"][:4])
    off = algorithms.make("td3bc", spec(task), ActionSpec(task.act_dim), {**hparams, "normalize_obs": False}, "cpu")
    off.observe_dataset(replay.storage["obs"][:4])  # a no-op


@pytest.mark.parametrize("name", [n for n in algorithms.available() if not algorithms.get(n).takes_images])
def test_a_vector_only_method_refuses_images_in_one_line(name):
    image = ObsSpec((3 * 8 * 8,), (3, 8, 8))
    with pytest.raises(ValueError, match=f"^algorithm '{name}' takes vector observations only; choose a state-based task$"):
        algorithms.make(name, image, ActionSpec(2), for_method(name, {}), "cpu")

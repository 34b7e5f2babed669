"""A sharded dataset (OGBench's 100M variants, here 3 tiny shards written to disk by the real
oracle) is held one shard at a time and swapped as QC does (ColinQiyangLi/qc main.py: the next file
in sorted order before offline update i when i % dataset_replace_interval == 0; fine-tuning keeps
the last one): only one shard is in the replay, the swaps fall on `protocol.shard_every`, a run
stopped mid-way (offline, and online where the held shard is not the first) resumes bit-identically,
the identity covers every shard file, and `shard_every=0` loads the data whole as before."""
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import tasks
from harness.config import load_group, resolve_algorithm
from harness.integrity import DataChanged
from harness.job import Job, Protocol
from harness.preflight import check_replay_memory, offline_bytes, row_bytes
from harness.runner import Interrupted, Runner, run_job
from harness.schema import ConfigError
from harness.shards import file_sha256
from tasks.base import register_task
from tasks.ogbench import with_recipe

ROOT = Path(__file__).resolve().parents[2]
NAME = "cube-single-play-100m-singletask-3shards-test"
EPISODES, STEPS, SHARDS = 2, 11, 3  # per shard: 2 episodes of 11 rows = 20 transitions (22 file rows)
EVERY = 5


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    old = os.environ.get("O2O_DATA_DIR")
    os.environ["O2O_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    t = tasks.TASKS.get(NAME) or register_task(with_recipe(tasks.get("cube-single-play-singletask"), NAME,
                                                           episodes=EPISODES, episode_steps=STEPS, shards=SHARDS,
                                                           chunk_episodes=EPISODES))
    t.generate(progress=False)
    yield t
    if old is None:
        os.environ.pop("O2O_DATA_DIR", None)
    else:
        os.environ["O2O_DATA_DIR"] = old


def make_job(task_name=NAME, domain="ogbench", **protocol):
    algo = resolve_algorithm(load_group("algorithm", "iql"), domain)
    algo["hparams"].update(actor_hidden=[16, 16], critic_hidden=[16, 16], value_hidden=[16, 16])
    algo["replay"].update(batch_size=8)
    p = dict(offline_steps=17, online_steps=0, eval_every_offline=1000, eval_every=1000, eval_episodes=1,
             log_every=1, checkpoint_every=0, shard_every=EVERY)
    p.update(protocol)
    return Job.from_dict({"suite": "t", "seed": 0, "algorithm": algo, "task": {"name": task_name, "domain": domain},
                          "protocol": asdict(Protocol(**p)), "device": "cpu"})


def shard_data(task, i):
    shard = task.shard_files()[1][i]
    return task.checked(shard.load(), shard.where)  # validated, actions under the action rule


def test_one_shard_is_held_and_swapped_every_shard_every_updates_in_file_order(task, tmp_path):
    runner = Runner([make_job()], [tmp_path], progress_bar=False)
    seen = {}

    def record():  # polled after every offline update but the last
        r, step = runner.replay, runner.state.step
        n = r.n_offline
        seen[step] = runner.shards.loaded
        assert n == EPISODES * (STEPS - 1) and r.offline_capacity == EPISODES * STEPS  # one shard's rows, no more
        assert r.storage["obs"].shape[0] == r.offline_capacity  # online_steps=0: the replay is one shard
        expect = shard_data(task, seen[step])
        assert torch.equal(r.storage["obs"][:n], torch.as_tensor(expect.obs))
        assert torch.equal(r.storage["action"][:n], torch.as_tensor(expect.action))
        return False

    runner.stop_requested = record
    runner.run()
    # update i used file (i // EVERY) % SHARDS: QC's swap before i's batch when i % EVERY == 0, round robin
    assert seen == {i: (i // EVERY) % SHARDS for i in range(1, 17)}
    assert set(seen.values()) == {0, 1, 2} and seen[15] == 0  # every file, then the first again
    identity = yaml.safe_load((tmp_path / "config.yaml").read_text())["dataset"]
    files = task.files_of(task.generated_path())
    assert [s["file"] for s in identity["shards"]] == sorted(f.name for f in files)  # QC's sorted glob
    assert [s["sha256"] for s in identity["shards"]] == [file_sha256(f) for f in files]
    assert identity["files"] == SHARDS and len(identity["sha256"]) == 64


def read(d):
    train = pd.read_csv(d / "train.csv").drop(columns=["updates_per_s"])  # timing only
    return pd.read_csv(d / "evals.csv"), train, pd.read_csv(d / "episodes.csv")


RESUMED = dict(offline_steps=12, online_steps=30, eval_every_offline=6, eval_every=15)


@pytest.fixture(scope="module")
def reference(task, tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    run_job(make_job(**RESUMED), d, progress_bar=False)
    return read(d)


@pytest.mark.parametrize("phase, at, held", [("offline", 7, 1), ("online", 10, 2)])
def test_stopped_run_resumes_bit_identically_with_its_shard(phase, at, held, task, reference, tmp_path):
    job = make_job(**RESUMED)
    runner = Runner([job], [tmp_path], progress_bar=False)
    runner.stop_requested = lambda: (runner.state.env_steps == at if phase == "online" else runner.state.step == at)
    with pytest.raises(Interrupted):
        runner.run()
    payload = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=False)
    # offline: update 8 uses file 1; online: the file of the last offline update, (12 // 5) % 3 = 2, not
    # the first file a fresh build loads
    assert payload["shards"] == {"loaded": held, "files": SHARDS, "every": EVERY}
    run_job(job, tmp_path, progress_bar=False)
    for got, want in zip(read(tmp_path), reference):
        pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_a_shard_changed_before_a_resume_is_refused_naming_it(task, tmp_path):
    job = make_job(**RESUMED)
    runner = Runner([job], [tmp_path], progress_bar=False)
    runner.stop_requested = lambda: runner.state.step == 3
    with pytest.raises(Interrupted):
        runner.run()
    files = task.files_of(task.generated_path())
    saved = files[2].read_bytes()
    try:
        files[2].write_bytes(files[1].read_bytes())
        with pytest.raises(DataChanged, match=f"shard {files[2].name} changed since this run started"):
            run_job(job, tmp_path, progress_bar=False)
    finally:
        files[2].write_bytes(saved)


def test_shard_every_0_loads_the_data_whole_as_before(task, tmp_path):
    runner = Runner([make_job(shard_every=0, offline_steps=4)], [tmp_path], progress_bar=False)
    runner.run()
    assert runner.shards is None and runner.replay.n_offline == SHARDS * EPISODES * (STEPS - 1)
    whole = task.load_dataset()
    assert torch.equal(runner.replay.storage["obs"], torch.as_tensor(whole.obs))
    identity = yaml.safe_load((tmp_path / "config.yaml").read_text())["dataset"]
    assert identity["sha256"] == whole.content_hash() and "shards" not in identity


def test_memory_estimate_counts_one_shard():
    name = "cube-quadruple-play-100m-singletask-task1"
    t = tasks.get(name)
    one = make_job(name, online_steps=1_000_000)
    whole = make_job(name, online_steps=1_000_000, shard_every=0)
    rows = 1000 * 1001  # one file of OGBench's 100M dataset: 1,000 episodes of 1,001 rows
    assert offline_bytes(one)[0] == rows * row_bytes(t) and offline_bytes(whole)[0] == 100 * offline_bytes(one)[0]
    check_replay_memory([one], memory_gb=2)  # ~0.44 GiB of one shard + ~0.44 GiB online
    with pytest.raises(ConfigError, match=r"~44\.\d GiB of offline data \(all 100 shards, protocol.shard_every=0\).*"
                                          r"or set protocol.shard_every=1000"):
        check_replay_memory([whole], memory_gb=2)
    unsharded = make_job("cube-single-play-singletask", online_steps=1_000_000)
    assert offline_bytes(unsharded) == (0, "")  # a dataset loaded whole: the estimate as before


def test_shard_every_is_refused_where_no_task_is_sharded():
    proc = subprocess.run([sys.executable, "-m", "harness.run", "suite=smoke", "dry_run=true", "protocol.shard_every=500"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: protocol.shard_every=500: no task of this run has a sharded dataset (OGBench's *-play-100m-* tasks "
        "have one); drop it")


def test_an_official_folder_is_read_in_sorted_order_without_its_val_files(task, tmp_path):
    import shutil

    from harness.shards import Shards
    from tasks.ogbench import OGBenchTask, Recipe

    official = OGBenchTask("cube-single", recipe=Recipe(episodes=EPISODES, episode_steps=STEPS), name="official-test",
                           shards=SHARDS, chunk_episodes=EPISODES)
    folder = Path(os.environ["O2O_DATA_DIR"]) / "ogbench" / official.dataset_name
    folder.mkdir()
    try:
        generated = task.files_of(task.generated_path())
        for f in reversed(generated):  # written out of order: read in name order all the same
            shutil.copy(f, folder / f.name)
            shutil.copy(f, folder / f.name.replace(".npz", "-val.npz"))  # (no val episodes here: a stand-in)
        source, files = official.shard_files()
        assert source.name == "official" and [Path(s.where).name for s in files] == [f.name for f in generated]
        shards = Shards(official, Protocol(offline_steps=10, online_steps=0))
        assert shards.every == 1000 and shards.capacity == EPISODES * STEPS
        assert [s["sha256"] for s in shards.identity["shards"]] == [file_sha256(f) for f in generated]
        assert shards.identity["generator"] == "OGBench (official file)"
    finally:
        shutil.rmtree(folder)

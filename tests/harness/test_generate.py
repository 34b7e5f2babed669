"""The sharded-dataset path (OGBench's 100M variants) at a tiny size, with the real oracle and env:
the chunked writer resumes after a SIGKILL at its first missing chunk and gives the same file as
an uninterrupted run, never redoes a finished file, leaves nothing half-written; two shards run
through the local launcher's workers, then the manifest makes the dataset present and loadable;
the front door's errors are one line with exit 2."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

import tasks
from harness.generate import ShardJob, launch_shards, main, parse_shards
from harness.config import CONF_DIR
from tasks.ogbench import Recipe, read_metadata, with_recipe, write_shard

ROOT = Path(__file__).resolve().parents[2]
RECIPE = Recipe(episodes=10, episode_steps=5)  # 10 training + 1 validation episode of 5 rows
CHUNK = 4  # chunks: 4, 4, 2 training episodes, then the validation one
KILL_SCRIPT = """
import sys
from pathlib import Path
from tasks.ogbench import Recipe, write_shard
write_shard("cube-single", Recipe(episodes=10, episode_steps=5), 3, Path(sys.argv[1]), 1, {"test": 1})
"""


def arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if k != "metadata"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same shard written without interruption, chunks of CHUNK and of 1 episode."""
    root = tmp_path_factory.mktemp("ref")
    path = write_shard("cube-single", RECIPE, 3, root / "shard.npz", CHUNK, {"test": 1})
    return path


def test_shard_file_layout(reference):
    meta = read_metadata(reference)
    assert (meta["shard"], meta["chunk_episodes"], meta["train_rows"], meta["split"]) == (3, CHUNK, 50, "train")
    val = reference.with_name("shard-val.npz")
    assert read_metadata(val)["val_rows"] == 5
    a = arrays(reference)
    assert a["observations"].shape == (50, 28) and np.flatnonzero(a["terminals"]).tolist() == list(range(4, 50, 5))
    assert sorted(p.name for p in reference.parent.iterdir()) == ["shard-val.npz", "shard.npz"]  # no parts, no tmp
    # chunks are seeded by (seed, shard, chunk): another shard is other data
    other = write_shard("cube-single", RECIPE, 4, reference.parent / "other" / "shard.npz", CHUNK, {})
    assert not np.array_equal(arrays(other)["actions"], a["actions"])


def test_killed_shard_resumes_at_its_first_missing_chunk(tmp_path):
    """SIGKILL while writing (chunks of one episode): the chunks already written are kept as they
    are, the rerun writes only the missing ones, and the file equals an uninterrupted run's."""
    path = tmp_path / "shard.npz"
    parts = tmp_path / "shard.npz.parts"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(parts.glob("0*.npz"))) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the writer ended before it was killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not path.exists() and 3 <= len(list(parts.glob("0*.npz"))) < 11
    write_shard("cube-single", RECIPE, 3, path, 1, {"test": 1})
    assert path.exists() and not parts.exists()
    uninterrupted = write_shard("cube-single", RECIPE, 3, tmp_path / "whole" / "shard.npz", 1, {"test": 1})
    for split in ("", "-val"):
        a, b = arrays(tmp_path / f"shard{split}.npz"), arrays(uninterrupted.with_name(f"shard{split}.npz"))
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_resume_rewrites_no_finished_chunk(tmp_path):
    """A chunk on disk is read, not redone: a rerun with one chunk file replaced keeps it."""
    parts = tmp_path / "shard.npz.parts"
    write_shard("cube-single", Recipe(episodes=2, episode_steps=5), 0, tmp_path / "a.npz", 1, {})
    parts.mkdir()
    marker = {k: v for k, v in arrays(tmp_path / "a.npz").items()}
    marker["actions"] = np.full_like(marker["actions"], 0.5)
    from tasks.ogbench import write_npz

    write_npz(parts / "00000-train.npz", {k: v[:5] for k, v in marker.items()})
    write_shard("cube-single", Recipe(episodes=2, episode_steps=5), 0, tmp_path / "shard.npz", 1, {})
    out = arrays(tmp_path / "shard.npz")
    assert (out["actions"][:5] == 0.5).all() and not (out["actions"][5:] == 0.5).all()


def test_finished_shard_is_never_redone(reference):
    before = reference.stat().st_mtime_ns
    assert write_shard("cube-single", RECIPE, 3, reference, CHUNK, {}) == reference
    assert reference.stat().st_mtime_ns == before and not reference.with_name("shard.npz.parts").exists()


def test_two_shards_through_the_local_launcher(tmp_path, monkeypatch):
    monkeypatch.setenv("O2O_DATA_DIR", str(tmp_path))
    t = with_recipe(tasks.get("cube-triple-play-100m-singletask-task1"), "cube-triple-2shards", episodes=1,
                    episode_steps=6, shards=2, chunk_episodes=1)
    assert not t.dataset_present()
    with pytest.raises(tasks.DatasetError, match="shard"):
        t.prepare()  # hours per shard on the real sizes: never started implicitly
    launcher = OmegaConf.merge(OmegaConf.load(CONF_DIR / "launcher" / "local.yaml"), {"workers": 2})
    assert launch_shards(t, [0, 1], launcher, progress=False) == {}
    assert [t.shard_path(i).exists() for i in (0, 1)] == [True, True] and not t.dataset_present()
    first = t.shard_path(0).stat().st_mtime_ns
    assert launch_shards(t, [0, 1], launcher, progress=False) == {}  # nothing to do: nothing redone
    assert t.shard_path(0).stat().st_mtime_ns == first
    manifest = t.assemble()
    assert t.dataset_present() and t.dataset_path() == manifest
    data = t.load_dataset()
    assert len(data) == 2 * 5 and data.obs.shape == (10, 46) and data.timeout.sum() == 2
    # a killed assembly leaves no manifest: the dataset is present only once it is whole
    t.shard_path(1).unlink()
    manifest.unlink()
    with pytest.raises(tasks.DatasetError, match=r"shard\(s\) 1 of 2 are missing"):
        t.assemble()
    assert not manifest.exists() and not list(manifest.parent.glob(".tmp-*"))
    assert str(ShardJob(t, 1, str(tmp_path))()) == str(t.shard_path(1))  # what a worker or SLURM node runs
    assert t.assemble() == manifest


def test_front_door_errors(capsys):
    for argv, message in [(["cube-triple-play-singletask"], "is not sharded"),
                          (["no-such-task"], "unknown task"),
                          (["cube-triple-play-100m-singletask", "shards=100"], "shards must lie in 0-99"),
                          (["cube-triple-play-100m-singletask", "shards=x"], "shards must look like"),
                          (["cube-triple-play-100m-singletask", "launcher.foo=1"], "unknown option 'launcher.foo'"),
                          (["cube-triple-play-100m-singletask", "colour=red"], "unknown option 'colour'"),
                          (["cube-triple-play-100m-singletask", "launcher=pbs"], "unknown launcher 'pbs'")]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert parse_shards("0-4,7", 100) == [0, 1, 2, 3, 4, 7]


def test_unwritable_data_folder_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("O2O_DATA_DIR", str(tmp_path / "file"))
    for launcher in ("local", "slurm"):  # before any shard is started or submitted
        assert main(["cube-triple-play-100m-singletask", "shards=0", f"launcher={launcher}"]) == 2
        err = capsys.readouterr().err
        assert "is a file, not a folder; set O2O_DATA_DIR to a writable folder" in err, err
        assert len(err.strip().splitlines()) == 1

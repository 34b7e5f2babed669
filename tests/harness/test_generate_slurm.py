"""`python -m harness.generate TASK launcher=slurm` against a real one-node cluster (tests/slurm_support
starts it), on a tiny sharded dataset (3 shards of 10 + 1 episodes of 6 rows, chunks of 2
episodes, the real oracle and env): the shards run as one SLURM job array and give the same files
and manifest as the local launcher; a rerun submits and rewrites nothing; a shard killed mid-write
fails the command with one line and exit 1, leaves no shard file and no manifest, and the same
command then resumes it at its first missing chunk, leaving the other shards untouched."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.slurm_support.cluster import slurm_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
NAME = "cube-triple-play-100m-singletask-tiny"
RECIPE = dict(episodes=10, episode_steps=6, shards=3, chunk_episodes=2)  # 5 training chunks + 1 validation chunk
SLURM = ["launcher=slurm", "launcher.partition=debug", "launcher.timeout_min=5", "launcher.cpus_per_task=1",
         "launcher.mem_gb=null"]
# the front door itself, with the tiny task registered first (a test-registered task, as a plug-in would)
FRONT_DOOR = f"""
import runpy, tasks
from tasks.ogbench import with_recipe
tasks.register_task(with_recipe(tasks.get("cube-triple-play-100m-singletask-task1"), "{NAME}", **{RECIPE!r}))
runpy.run_module("harness.generate", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def cluster():
    with slurm_cluster() as info:
        yield info


def tiny_task():
    import tasks
    from tasks.ogbench import with_recipe

    return with_recipe(tasks.get("cube-triple-play-100m-singletask-task1"), NAME, **RECIPE)


def front_door(data: Path, *args, **popen):
    env = {**os.environ, "O2O_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", FRONT_DOOR, NAME, *args]
    if popen:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, **popen)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def contents(path: Path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def assert_same_file(a: Path, b: Path):
    x, y = contents(a), contents(b)
    assert x.keys() == y.keys()
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=f"{a.name}: {k}")


def array_tasks(array_id: str) -> dict[str, str]:
    """{array task id: state} of one job array, from SLURM's accounting (sacct)."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", array_id, "-o", "JobID,State"], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split("|")[:2] for line in out.splitlines() if line.strip())


def submitted_array(stdout: str) -> str:
    found = re.search(r"submitted (\d+) shard\(s\) as SLURM array (\d+)", stdout)
    assert found, stdout
    return found.group(2)


def stamps(task, shards) -> dict[str, int]:
    files = [task.shard_path(s) for s in shards]
    files += [p.with_name(p.name.replace(".npz", "-val.npz")) for p in files]
    return {p.name: p.stat().st_mtime_ns for p in files}


def test_shards_run_as_an_array_resume_and_match_the_local_path(cluster, tmp_path, monkeypatch):
    from harness.config import CONF_DIR
    from harness.generate import launch_shards

    # the local path's files for the same shards: the reference
    monkeypatch.setenv("O2O_DATA_DIR", str(tmp_path / "local"))
    task = tiny_task()
    local = OmegaConf.merge(OmegaConf.load(CONF_DIR / "launcher" / "local.yaml"), {"workers": 1})
    assert launch_shards(task, [0, 1, 2], local, progress=False) == {}
    reference = {s: task.shard_path(s) for s in range(3)}
    ref_manifest = json.loads(task.assemble().read_text())

    # the SLURM path, from the front door
    data = tmp_path / "slurm"
    monkeypatch.setenv("O2O_DATA_DIR", str(data))
    proc = front_door(data, *SLURM)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    array = submitted_array(proc.stdout)
    assert "submitted 3 shard(s)" in proc.stdout and f"{NAME}: dataset complete" in proc.stdout
    assert array_tasks(array) == {f"{array}_{i}": "COMPLETED" for i in range(3)}  # one array, 3 tasks, all ran
    folder = task.generated_path().parent
    logs = sorted(p.parent.name for p in (folder / ".submitit").glob("*_*/*_log.out"))
    assert logs == [f"{array}_{i}" for i in range(3)]  # one log folder per array task
    for s in range(3):
        for split in ("", "-val"):
            name = reference[s].name.replace(".npz", f"{split}.npz")
            assert_same_file(task.shard_path(s).with_name(name), reference[s].with_name(name))
    assert json.loads(task.generated_path().read_text()) == ref_manifest
    assert not list(folder.glob("*.parts")) and not list(folder.glob(".tmp*"))
    assert task.dataset_present() and len(task.load_dataset()) == 3 * 10 * 5

    # the same command again: nothing submitted, nothing rewritten
    before = stamps(task, range(3))
    manifest_stamp = task.generated_path().stat().st_mtime_ns
    again = front_door(data, *SLURM)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "3 shard(s) already written: not redone" in again.stdout and "submitted" not in again.stdout
    assert stamps(task, range(3)) == before and task.generated_path().stat().st_mtime_ns == manifest_stamp

    # shard 1 lost, then killed mid-write by SLURM: exit 1, one line, no shard file, no manifest
    for p in (task.shard_path(1), task.shard_path(1).with_name(task.shard_path(1).name.replace(".npz", "-val.npz")),
              task.generated_path()):
        p.unlink()
    parts = task.shard_path(1).with_name(task.shard_path(1).name + ".parts")
    run = front_door(data, *SLURM, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (parts / "00000-train.npz").exists():
            assert run.poll() is None and time.monotonic() < deadline, "the shard ended before it was killed"
            time.sleep(0.05)
        slurm_ids = [line.split()[-1] for line in subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, check=True).stdout.split("\n") if line]
        subprocess.run(["scancel", "--signal=KILL", "--full", *slurm_ids], check=True)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    killed = submitted_array(out)
    assert run.returncode == 1, out[-2000:] + err[-3000:]
    assert "submitted 1 shard(s)" in out and "2 shard(s) already written: not redone" in out
    assert err.strip() == "1 shard(s) failed (1); rerun the same command to resume them from their last chunk", err
    assert len(array_tasks(killed)) == 1 and "COMPLETED" not in array_tasks(killed).values()
    assert not task.shard_path(1).exists() and not task.generated_path().exists() and not task.dataset_present()
    written = sorted(p.name for p in parts.glob("0*.npz"))
    assert written and len(written) < 6, written  # stopped after some chunks, before the last
    # a chunk on disk is resumed from, never redone: mark the first one and find the mark after the rerun
    from tasks.ogbench import write_npz

    first = {k: v for k, v in contents(parts / "00000-train.npz").items() if k != "metadata"}
    write_npz(parts / "00000-train.npz", {**first, "actions": np.full_like(first["actions"], 0.5)})

    resumed = front_door(data, *SLURM)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    array = submitted_array(resumed.stdout)
    assert "submitted 1 shard(s)" in resumed.stdout and list(array_tasks(array).values()) == ["COMPLETED"]
    assert stamps(task, [0, 2]) == {k: v for k, v in before.items() if "-001" not in k}  # the others untouched
    mine, ref = contents(task.shard_path(1)), contents(reference[1])
    rows = len(first["actions"])  # the first chunk: 2 episodes of 6 rows
    assert rows == 12 and (mine["actions"][:rows] == 0.5).all() and mine.keys() == ref.keys()
    np.testing.assert_array_equal(mine["actions"][rows:], ref["actions"][rows:])
    for k in set(ref) - {"actions"}:
        np.testing.assert_array_equal(mine[k], ref[k], err_msg=k)
    val = task.shard_path(1).name.replace(".npz", "-val.npz")
    assert_same_file(task.shard_path(1).with_name(val), reference[1].with_name(val))
    assert not parts.exists() and json.loads(task.generated_path().read_text()) == ref_manifest

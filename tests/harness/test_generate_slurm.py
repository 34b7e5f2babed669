"""`python -m harness.generate TASK launcher=slurm` against a real one-node cluster
(tests/slurm_support starts it), on a tiny sharded dataset (3 shards of 40 + 1 episodes of 10 rows,
chunks of 2 episodes, the real oracle and env): the shards run as one SLURM job array and give the
same files and manifest as the local launcher; a shard signalled as at its time limit is requeued
by submitit and resumes at its first missing chunk; the command rerun while they are queued waits
for them and resubmits none (Ctrl-C then: one line, exit 130, the queue untouched), and rerun once
they are written submits and rewrites nothing; a shard killed mid-write fails the command with one
line and exit 1, leaves no shard file and no manifest, and the same command then resumes it at its
first missing chunk, leaving the other shards untouched."""
import json
import os
import re
import shutil
import signal
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
RECIPE = dict(episodes=40, episode_steps=10, shards=3, chunk_episodes=2)  # 20 training chunks + 1 validation chunk:
# a shard takes seconds from its first chunk to its end, the window the kill below lands in
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


def front_door(data: Path, *args, path=None, **popen):
    env = {**os.environ, "O2O_DATA_DIR": str(data), "PYTHONPATH": str(ROOT), "PATH": path or os.environ["PATH"]}
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


def parts_of(task, shard: int) -> Path:
    return task.shard_path(shard).with_name(task.shard_path(shard).name + ".parts")


def wait_for(predicate, timeout, what):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def queue_state(slurm_id: str) -> str | None:
    from harness.slurm import queue_states

    return queue_states([slurm_id]).get(slurm_id)


def mark_first_chunk(task, shard: int) -> dict:
    """Rewrites the shard's first chunk on disk with every action 0.5 (a mark no oracle writes)."""
    from tasks.ogbench import write_npz

    path = parts_of(task, shard) / "00000-train.npz"
    first = {k: v for k, v in contents(path).items() if k != "metadata"}
    write_npz(path, {**first, "actions": np.full_like(first["actions"], 0.5)})
    return first


def assert_resumed(task, shard: int, reference: Path, first: dict):
    """The shard kept its marked first chunk and holds the reference's data everywhere else."""
    mine, ref = contents(task.shard_path(shard)), contents(reference)
    rows = len(first["actions"])  # the first chunk: 2 episodes of 6 rows
    assert rows == RECIPE["chunk_episodes"] * RECIPE["episode_steps"] and (mine["actions"][:rows] == 0.5).all() and mine.keys() == ref.keys()
    np.testing.assert_array_equal(mine["actions"][rows:], ref["actions"][rows:])
    for k in set(ref) - {"actions"}:
        np.testing.assert_array_equal(mine[k], ref[k], err_msg=k)
    val = task.shard_path(shard).name.replace(".npz", "-val.npz")
    assert_same_file(task.shard_path(shard).with_name(val), reference.with_name(val))
    assert not parts_of(task, shard).exists()


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
    submit = front_door(data, *SLURM, "launcher.wait=false")  # submits and returns
    assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-3000:]
    array = submitted_array(submit.stdout)
    assert "submitted 3 shard(s)" in submit.stdout and not task.generated_path().exists()
    # shard 0 signalled as at its time limit after its first chunk: submitit requeues it; while it
    # waits to restart, its first chunk is marked: the restarted shard must keep it (resumed, not redone)
    wait_for(lambda: (parts_of(task, 0) / "00000-train.npz").exists(), 120, "shard 0's first chunk")
    subprocess.run(["scancel", "--signal=USR2", f"{array}_0"], check=True)
    wait_for(lambda: queue_state(f"{array}_0") in ("PENDING", "REQUEUED"), 60, "shard 0 to be requeued")
    first = mark_first_chunk(task, 0)
    # Ctrl-C while the command waits: one line, exit 130, the queue left as it is
    waiter = front_door(data, *SLURM, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for line in waiter.stdout:
            if "still queued or running on SLURM" in line:
                break
        waiter.send_signal(signal.SIGINT)
        _, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 130 and len(err.strip().splitlines()) == 1, err
    assert err.strip().startswith("interrupted: the shards are left on the SLURM queue as they are"), err
    assert queue_state(f"{array}_0") is not None  # still queued
    proc = front_door(data, *SLURM)  # meanwhile: waits for the queued shards, resubmits none
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert not re.search("^submitted", proc.stdout, re.M) and f"{NAME}: dataset complete" in proc.stdout
    assert "shard(s) still queued or running on SLURM" in proc.stdout, proc.stdout
    assert_resumed(task, 0, reference[0], first)
    assert array_tasks(array) == {f"{array}_{i}": "COMPLETED" for i in range(3)}  # one array, 3 tasks, all ran
    folder = task.generated_path().parent
    logs = sorted(p.parent.name for p in (folder / ".submitit").glob("*_*/*_log.out"))
    assert logs == [f"{array}_{i}" for i in range(3)]  # one log folder per array task
    for s in (1, 2):
        for split in ("", "-val"):
            name = reference[s].name.replace(".npz", f"{split}.npz")
            assert_same_file(task.shard_path(s).with_name(name), reference[s].with_name(name))
    assert json.loads(task.generated_path().read_text()) == ref_manifest
    assert not list(folder.glob("*.parts")) and not list(folder.glob(".tmp*"))
    assert task.dataset_present() and len(task.load_dataset()) == 3 * RECIPE["episodes"] * (RECIPE["episode_steps"] - 1)

    # the same command again: nothing submitted, nothing rewritten
    before = stamps(task, range(3))
    manifest_stamp = task.generated_path().stat().st_mtime_ns
    again = front_door(data, *SLURM)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "3 shard(s) already written: not redone" in again.stdout and not re.search("^submitted", again.stdout, re.M)
    assert stamps(task, range(3)) == before and task.generated_path().stat().st_mtime_ns == manifest_stamp

    # shard 1 lost, then killed mid-write by SLURM: exit 1, one line, no shard file, no manifest. The
    # kill lands between the shard's first chunk and its end, a window of seconds: a shard that ends
    # first (exit 0) is lost again and killed again, up to 5 times
    parts = parts_of(task, 1)
    for attempt in range(5):
        for p in (task.shard_path(1), task.shard_path(1).with_name(task.shard_path(1).name.replace(".npz", "-val.npz")),
                  task.generated_path()):
            p.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
        run = front_door(data, *SLURM, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while not (parts / "00000-train.npz").exists() and run.poll() is None:
                assert time.monotonic() < deadline, "shard 1 wrote no chunk within 120 s"
                time.sleep(0.02)
            ledger = json.loads((task.generated_path().parent / ".submitit" / "submitted.json").read_text())
            subprocess.run(["scancel", "--signal=KILL", "--full", ledger["1"]], check=True)  # this shard's job only
            out, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
        if run.returncode != 0:
            break
    killed = submitted_array(out)
    assert ledger["1"] == killed  # one shard: a plain job, not an array
    assert run.returncode == 1, out[-2000:] + err[-3000:]
    assert "submitted 1 shard(s)" in out and "2 shard(s) already written: not redone" in out
    assert err.strip() == "1 shard(s) failed (1); rerun the same command to resume them from their last chunk", err
    assert len(array_tasks(killed)) == 1 and "COMPLETED" not in array_tasks(killed).values()
    assert not task.shard_path(1).exists() and not task.generated_path().exists() and not task.dataset_present()
    written = sorted(p.name for p in parts.glob("0*.npz"))
    assert written and len(written) < RECIPE["episodes"] // RECIPE["chunk_episodes"] + 1, written  # stopped after some chunks, before the last
    first = mark_first_chunk(task, 1)

    resumed = front_door(data, *SLURM)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    array = submitted_array(resumed.stdout)
    assert "submitted 1 shard(s)" in resumed.stdout and list(array_tasks(array).values()) == ["COMPLETED"]
    assert stamps(task, [0, 2]) == {k: v for k, v in before.items() if "-001" not in k}  # the others untouched
    assert_resumed(task, 1, reference[1], first)
    assert not parts.exists() and json.loads(task.generated_path().read_text()) == ref_manifest


def test_bad_slurm_input_fails_before_submission(cluster, tmp_path):
    proc = front_door(tmp_path, *SLURM, "launcher.partition=nope")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stderr.strip() == "error: unknown SLURM partition 'nope'; choose one of: debug"
    assert not (tmp_path / "ogbench").exists()


def test_no_sbatch_is_a_one_line_error(tmp_path):
    proc = front_door(tmp_path, *SLURM, path="/nonexistent")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stderr.strip().startswith("error: launcher=slurm needs SLURM's sbatch on PATH")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "ogbench").exists()

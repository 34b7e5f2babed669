"""Checkpoint / resume is exact on CPU: a run, or a group of seeds trained in one process, killed
with SIGKILL (in the offline and in the online phase, where the online checkpoint falls in the
middle of episodes) and rerun with the same command ends with the same curves and scores as the
same run left alone; a changed config never reuses an old run directory."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
RUN = "default/pointmaze-umaze-diverse/cql/seed0"
FAST = ["algorithm=cql", "task=pointmaze-umaze-diverse", "seed=0", "algorithm.replay.batch_size=32", "algorithm.hparams.cql_n_actions=2",
        "protocol.offline_steps=240", "protocol.online_steps=400", "protocol.eval_every_offline=80",
        "protocol.eval_every=100", "protocol.eval_episodes=1", "protocol.log_every=20",
        "protocol.checkpoint_every=40", "progress=false", "report=false"]


GROUP_DIR = "default/pointmaze-umaze-diverse/cql"
GROUP = [a for a in FAST if a != "seed=0"] + ["suite.seeds=[0,1]", "suite.seeds_per_process=2",
                                             "protocol.online_steps=330"]  # the last episodes end mid-way


def start(runs, *extra, args=FAST):
    return subprocess.Popen([sys.executable, "-m", "harness.run", *args, f"runs_dir={runs}", *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(runs, *extra, args=FAST):
    proc = start(runs, *extra, args=args)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    return out


def read_run(d: Path):
    evals = pd.read_csv(d / "evals.csv")
    episodes = pd.read_csv(d / "episodes.csv")
    train = pd.read_csv(d / "train.csv").drop(columns=["updates_per_s"])  # timing only
    summary = json.loads((d / "summary.json").read_text())
    return evals, episodes, train, summary


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    runs = tmp_path_factory.mktemp("ref")
    finish(runs)
    return read_run(runs / RUN)


def kill_when(runs, ready, timeout=600, args=FAST, ckpt=RUN + "/checkpoint/state.pt"):
    proc = start(runs, args=args)
    ckpt = runs / ckpt
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if ckpt.exists():
            try:
                progress = torch.load(ckpt, weights_only=False)["progress"]
            except Exception:  # an older checkpoint replaced while reading: try again
                progress = None
            if progress is not None and ready(progress):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return progress
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no checkpoint matching the condition before the run ended:\n{proc.stdout.read()[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["offline", "online"])
def test_killed_run_resumes_exactly(phase, reference, tmp_path):
    if phase == "offline":
        killed_at = kill_when(tmp_path, lambda p: not p.offline_done and p.step >= 80)
        assert not killed_at.offline_done
    else:
        killed_at = kill_when(tmp_path, lambda p: p.offline_done and p.env_steps >= 100)
        assert killed_at.env_steps > 0
    summary = json.loads((tmp_path / RUN / "summary.json").read_text())
    assert summary["status"] == "running"  # killed: nothing looks finished
    finish(tmp_path)
    evals, episodes, train, summary = read_run(tmp_path / RUN)
    ref_evals, ref_episodes, ref_train, ref_summary = reference
    pd.testing.assert_frame_equal(evals, ref_evals, check_exact=True)
    pd.testing.assert_frame_equal(episodes, ref_episodes, check_exact=True)
    pd.testing.assert_frame_equal(train, ref_train, check_exact=True)
    for key in ("offline_score", "final_score", "early_min_score", "job_id"):
        assert summary[key] == ref_summary[key]
    assert summary["status"] == "done" and summary["resumes"] == 1 and ref_summary["resumes"] == 0
    assert not (tmp_path / RUN / "checkpoint" / "state.pt").exists()


@pytest.fixture(scope="module")
def group_reference(tmp_path_factory):
    runs = tmp_path_factory.mktemp("group_ref")
    finish(runs, args=GROUP)
    return [read_run(runs / GROUP_DIR / f"seed{k}") for k in (0, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["offline", "online"])
def test_killed_group_of_seeds_resumes_exactly(phase, group_reference, tmp_path):
    ckpt = GROUP_DIR + "/seeds0-1/checkpoint/state.pt"  # the group's one checkpoint
    if phase == "offline":
        killed_at = kill_when(tmp_path, lambda p: not p.offline_done and p.step >= 80, args=GROUP, ckpt=ckpt)
    else:  # a checkpoint between env steps: the episodes in progress are replayed on resume
        killed_at = kill_when(tmp_path, lambda p: p.offline_done and p.env_steps >= 200, args=GROUP, ckpt=ckpt)
        assert killed_at.env_steps % 40 == 0
    finish(tmp_path, args=GROUP)
    for k, (ref_evals, ref_episodes, ref_train, ref_summary) in enumerate(group_reference):
        evals, episodes, train, summary = read_run(tmp_path / GROUP_DIR / f"seed{k}")
        pd.testing.assert_frame_equal(evals, ref_evals, check_exact=True)
        pd.testing.assert_frame_equal(episodes, ref_episodes, check_exact=True)
        pd.testing.assert_frame_equal(train, ref_train, check_exact=True)
        assert summary["job_id"] == ref_summary["job_id"] and summary["final_score"] == ref_summary["final_score"]
        assert summary["status"] == "done" and summary["resumes"] == 1 and summary["seeds_in_process"] == 2
    assert group_reference[0][3]["job_id"] != group_reference[1][3]["job_id"]
    assert not (tmp_path / GROUP_DIR / "seeds0-1").exists()  # a finished group keeps only its runs' results


def test_changed_config_is_refused_before_any_work(tmp_path):
    d = tmp_path / RUN
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("job_id: 0123456789ab\n")
    proc = subprocess.run([sys.executable, "-m", "harness.run", *FAST, f"runs_dir={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and str(d) in errors[0] and "0123456789ab" in errors[0] and "runs_dir" in errors[0]
    assert sorted(p.name for p in d.iterdir()) == ["config.yaml"]

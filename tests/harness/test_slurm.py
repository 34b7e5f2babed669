"""The SLURM launcher against a real one-node cluster (tests/slurm_support starts it): a suite
runs as one job array; a job signalled mid-run checkpoints, requeues and resumes; a cancelled
job resubmitted by the same command resumes from its checkpoint. Resumes are proven from
summary.json (resume counter, where it resumed) and from curves identical to an uninterrupted
run, not from log text."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.slurm_support.cluster import slurm_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SLURM = ["launcher=slurm", "launcher.partition=debug", "launcher.timeout_min=5", "launcher.cpus_per_task=1",
         "launcher.gpus_per_node=0", "launcher.mem_gb=null", "launcher.grace_s=20", "launcher.signal_delay_s=60",
         "progress=false", "report=false"]
SMALL = ["algorithm.replay.batch_size=32", "algorithm.hparams.cql_n_actions=2", "protocol.eval_episodes=1"]
LONG = ["algorithm=cql", "task=pointmaze-umaze-diverse", "seed=0", *SMALL, "protocol.offline_steps=240", "protocol.online_steps=300",
        "protocol.eval_every_offline=80", "protocol.eval_every=100", "protocol.log_every=20",
        "protocol.checkpoint_every=40"]
# the cancelled job: long enough that it cannot finish between its first checkpoint and its end
# after scancel, which comes KillWait (5 s) later (submitit ignores the SIGTERM before it). At
# 1,300 steps (~6 s at ~210 updates/s) it once finished first.
CANCEL = [a for a in LONG if not a.startswith(("protocol.offline_steps", "protocol.online_steps"))] + [
    "protocol.offline_steps=4000", "protocol.online_steps=100"]
RUN = "default/pointmaze-umaze-diverse/cql/seed0"


@pytest.fixture(scope="module")
def cluster():
    with slurm_cluster() as info:
        yield info


def front_door(runs, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "harness.run", *args, f"runs_dir={runs}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def compose(*overrides):
    from hydra import compose as hydra_compose, initialize_config_dir

    from harness.jobs import CONF_DIR, expand

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides))
    return cfg, expand(cfg)


def wait_for(predicate, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def checkpoint_step(d: Path) -> int:
    try:
        return torch.load(d / "checkpoint" / "state.pt", weights_only=False)["progress"].step
    except Exception:
        return -1


def curves(d: Path):
    return (pd.read_csv(d / "evals.csv"), pd.read_csv(d / "episodes.csv"),
            pd.read_csv(d / "train.csv").drop(columns=["updates_per_s"]), json.loads((d / "summary.json").read_text()))


def test_suite_runs_as_an_array(cluster, tmp_path):
    args = ["algorithm=cql", "task=pointmaze-umaze-diverse", *SLURM, *SMALL, "protocol.offline_steps=60", "protocol.online_steps=60",
            "protocol.eval_every_offline=30", "protocol.eval_every=30", "protocol.log_every=20"]
    proc = front_door(tmp_path, *args)  # the default suite's seeds 0 and 1
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "as SLURM array" in proc.stdout
    for seed in (0, 1):
        d = tmp_path / f"default/pointmaze-umaze-diverse/cql/seed{seed}"
        assert json.loads((d / "summary.json").read_text())["status"] == "done"
        assert len(pd.read_csv(d / "evals.csv")) == 4
    logs = list((tmp_path / "default/.submitit").glob("*_*/*_log.out"))
    assert len(logs) == 2  # one log folder per array task
    status = subprocess.run([sys.executable, "-m", "harness.status", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True)
    assert status.returncode == 0 and "2 done" in status.stdout
    again = front_door(tmp_path, *args)
    assert again.returncode == 0 and "submitted" not in again.stdout  # idempotent: nothing resubmitted


def test_requeued_and_cancelled_jobs_resume_from_checkpoints(cluster, tmp_path):
    import tasks
    from harness.launch import SlurmJob, slurm_executor

    cfg, (job,) = compose(*LONG, *SLURM)
    tasks.get(job["task"]["name"]).prepare()
    ref, requeued, cancelled = (tmp_path / n for n in ("ref", "requeued", "cancelled"))
    ex = slurm_executor(cfg.launcher, tmp_path / "submitit", 2)
    h_ref = ex.submit(SlurmJob([job], str(ref), 1, 20.0))
    h_req = ex.submit(SlurmJob([job], str(requeued), 1, 20.0))

    # pre-emption / time-limit signal mid-run: checkpoint at the next safe point, requeue, resume
    wait_for(lambda: checkpoint_step(requeued / RUN) >= 80, 150, "a checkpoint of the requeued job")
    h_req._interrupt()
    h_ref.result(), h_req.result()
    r_evals, r_eps, r_train, r_sum = curves(ref / RUN)
    q_evals, q_eps, q_train, q_sum = curves(requeued / RUN)
    assert r_sum["resumes"] == 0
    assert q_sum["status"] == "done" and q_sum["resumes"] == 1 and q_sum["resumed_at"][0][0] >= 80
    pd.testing.assert_frame_equal(q_evals, r_evals, check_exact=True)
    pd.testing.assert_frame_equal(q_eps, r_eps, check_exact=True)
    pd.testing.assert_frame_equal(q_train, r_train, check_exact=True)

    # cancelled (no requeue), then the same front-door command resubmits it: it resumes
    _, (cancel_job,) = compose(*CANCEL, *SLURM)
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", *CANCEL, *SLURM, f"runs_dir={cancelled}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: checkpoint_step(cancelled / RUN) >= 40, 150, "a checkpoint of the cancelled job")
    ledger = json.loads((cancelled / "default/.submitit/submitted.json").read_text())
    subprocess.run(["scancel", ledger[cancel_job["job_id"]]], check=True)
    out, _ = proc.communicate(timeout=120)  # its result(): UncompletedJobError once sacct knows
    assert proc.returncode == 1, out[-2000:]
    assert json.loads((cancelled / RUN / "summary.json").read_text())["status"] == "running"
    stopped_at = checkpoint_step(cancelled / RUN)
    again = front_door(cancelled, *CANCEL, *SLURM)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    c_evals, _, _, c_sum = curves(cancelled / RUN)
    assert c_sum["status"] == "done" and c_sum["resumes"] == 1 and c_sum["resumed_at"][0][0] == stopped_at >= 40
    assert list(c_evals.step) == [80 * k for k in range(1, 51)] + [4100]  # every evaluation exactly once


@pytest.mark.parametrize("args, message", [
    (["launcher.partition=nope"], "unknown SLURM partition 'nope'; choose one of: debug"),
])
def test_bad_slurm_input_fails_before_submission(cluster, tmp_path, args, message):
    proc = front_door(tmp_path, "algorithm=cql", "seed=0", *SLURM, *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "default" / ".submitit").exists()


def test_no_sbatch_is_a_one_line_error(tmp_path):
    import os
    env = {**os.environ, "PATH": "/nonexistent"}
    proc = subprocess.run([sys.executable, "-m", "harness.run", "algorithm=cql", "seed=0", *SLURM,
                           f"runs_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "launcher=slurm needs SLURM's sbatch on PATH" in proc.stderr
    assert not (tmp_path / "default").exists()

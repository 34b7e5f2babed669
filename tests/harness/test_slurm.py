"""The SLURM launcher against a real one-node cluster (tests/slurm_support starts it): a suite
runs as one job array; a job signalled mid-run checkpoints, requeues and resumes; a cancelled
job resubmitted by the same command resumes from its checkpoint. Resumes are proven from
summary.json (resume counter, where it resumed) and from curves identical to an uninterrupted
run, not from log text."""
import json
import signal
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

    from harness.config import CONF_DIR, CommandLine, read_config

    cli = CommandLine.parse(list(overrides))  # as the front door: the command line wins
    overrides = cli.hydra_args()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        run = read_config(hydra_compose("config", overrides=overrides), cli)
    return run, run.jobs


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
    args = ["suite=pointmaze-mini", "algorithm=cql", "task=pointmaze-umaze-diverse", *SLURM, *SMALL, "protocol.offline_steps=60", "protocol.online_steps=60",
            "protocol.eval_every_offline=30", "protocol.eval_every=30", "protocol.log_every=20"]
    args.append("suite.seeds=[0,1,2]")  # pointmaze-mini's 2 seeds per process: groups [0, 1] and [2]
    proc = front_door(tmp_path, *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "as SLURM array" in proc.stdout
    for seed in (0, 1, 2):
        d = tmp_path / f"pointmaze-mini/pointmaze-umaze-diverse/cql/seed{seed}"
        assert json.loads((d / "summary.json").read_text())["status"] == "done"
        assert len(pd.read_csv(d / "evals.csv")) == 4
    logs = list((tmp_path / "pointmaze-mini/.submitit").glob("*_*/*_log.out"))
    assert len(logs) == 2  # one log folder per array task: one per group of seeds
    status = subprocess.run([sys.executable, "-m", "harness.status", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True)
    assert status.returncode == 0 and "3 done" in status.stdout
    again = front_door(tmp_path, *args)
    assert again.returncode == 0 and "submitted" not in again.stdout  # idempotent: nothing resubmitted


def test_requeued_and_cancelled_jobs_resume_from_checkpoints(cluster, tmp_path):
    import tasks
    from harness.launch import SlurmJob, slurm_executor

    cfg, (job,) = compose(*LONG, *SLURM)
    tasks.get(job.task.name).prepare()
    ref, requeued, cancelled = (tmp_path / n for n in ("ref", "requeued", "cancelled"))
    ex = slurm_executor(cfg.launcher, tmp_path / "submitit", 2)
    h_ref = ex.submit(SlurmJob([job], str(ref), 20.0))
    h_req = ex.submit(SlurmJob([job], str(requeued), 20.0))

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
    subprocess.run(["scancel", ledger[cancel_job.job_id]], check=True)
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


# The storm: 4 jobs in one array, 2 running at a time; Ctrl-C on the launcher, then (while the
# same command waits again) task 3 cancelled while pending, task 0 cancelled and task 1 requeued
# while running, task 2 requeued after it finished. 1,000 offline updates at the default batch:
# the cancelled task cannot finish in the 5 s (KillWait) between scancel and its kill.
STORM = ["algorithm=cql", "task=pointmaze-umaze-diverse", "suite.seeds=[0,1,2,3]", "protocol.offline_steps=1000",
         "protocol.online_steps=100", "protocol.eval_every_offline=250", "protocol.eval_every=50",
         "protocol.eval_episodes=1", "protocol.log_every=50", "protocol.checkpoint_every=100", "progress=false",
         "report=false", "suite.seeds_per_process=1"]  # one array task per seed
STORM_SLURM = [*STORM, *SLURM, "launcher.array_parallelism=2", "launcher.poll_s=1"]


def status_rows(runs: Path) -> tuple[int, dict[int, tuple[str, str]]]:
    """harness.status's exit code and {seed: (state, detail)}."""
    proc = subprocess.run([sys.executable, "-m", "harness.status", str(runs)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    rows = {}
    for line in proc.stdout.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) >= 5 and parts[3].isdigit():
            rows[int(parts[3])] = (parts[0], parts[5] if len(parts) > 5 else "")
    return proc.returncode, rows


def status_shows(runs: Path, expected: dict[int, tuple[str, str]]) -> bool:
    """Every seed's state is the expected one and its detail holds the expected text."""
    _, rows = status_rows(runs)
    return all(s in rows and rows[s][0] == state and text in rows[s][1] for s, (state, text) in expected.items())


def test_storm_of_cancels_and_requeues_ends_on_its_own_and_a_rerun_completes_every_run(cluster, tmp_path):
    from harness.launch import is_done
    from harness.slurm import queue_states

    runs, ref = tmp_path / "storm", tmp_path / "ref"
    _, jobs = compose(*STORM_SLURM)
    import tasks

    tasks.get(jobs[0].task.name).prepare()
    d = {j.seed: runs / RUN.replace("seed0", f"seed{j.seed}") for j in jobs}
    command = [sys.executable, "-m", "harness.run", *STORM_SLURM, f"runs_dir={runs}"]
    ledger_path = runs / "default/.submitit/submitted.json"

    # 1. submitted as one array: two tasks run, two wait; status names each by its array id
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: ledger_path.exists(), 180, "the submission")
    ledger = json.loads(ledger_path.read_text())
    ids = {j.seed: ledger[j.job_id] for j in jobs}
    array = ids[0].split("_")[0]
    assert ids == {k: f"{array}_{k}" for k in range(4)}
    wait_for(lambda: status_shows(runs, {0: ("running", ids[0]), 1: ("running", ids[1]),
                                         2: ("queued", f"SLURM job {ids[2]} PENDING"),
                                         3: ("queued", f"SLURM job {ids[3]} PENDING")}), 120,
             "status: tasks 0 and 1 running, 2 and 3 queued")

    # 2. Ctrl-C: one line saying how to resume or cancel, no traceback, the queue left as it is
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err
    assert err.strip().splitlines()[-1].startswith("interrupted: 4 job(s) left on the SLURM queue as they are")
    assert f"scancel {array}" in err and "rerun the same command" in err
    assert set(queue_states(list(ids.values()))) == set(ids.values())

    # 3. the same command waits for them again (nothing resubmitted) through the storm
    out_path, err_path = tmp_path / "second.out", tmp_path / "second.err"
    with open(out_path, "w") as out_file, open(err_path, "w") as err_file:
        second = subprocess.Popen(command, cwd=ROOT, stdout=out_file, stderr=err_file, text=True)
    wait_for(lambda: "not resubmitted" in out_path.read_text(), 120, "the launcher to wait for the queued tasks")
    subprocess.run(["scancel", ids[3]], check=True)  # cancelled while pending
    wait_for(lambda: status_shows(runs, {3: ("interrupted", f"SLURM job {ids[3]} left the queue before it started")}),
             60, "status: task 3 cancelled before it started")
    wait_for(lambda: checkpoint_step(d[0]) >= 100, 300, "a checkpoint of task 0")
    subprocess.run(["scancel", ids[0]], check=True)  # cancelled while running
    wait_for(lambda: checkpoint_step(d[1]) >= 100, 300, "a checkpoint of task 1")
    subprocess.run(["scontrol", "requeue", ids[1]], check=True)  # requeued while running (killed, restarted)
    wait_for(lambda: status_shows(runs, {1: ("queued", f"SLURM job {ids[1]} PENDING (requeued)")}), 60,
             "status: task 1 requeued")
    wait_for(lambda: status_shows(runs, {0: ("interrupted", f"SLURM job {ids[0]} is no longer in the queue")}), 60,
             "status: task 0 gone")
    wait_for(lambda: is_done(jobs[2], runs), 600, "task 2 done")
    subprocess.run(["scontrol", "requeue", ids[2]], check=True)  # requeued after it finished
    wait_for(lambda: status_shows(runs, {2: ("done", "again (requeued): it returns done at once")}), 60,
             "status: task 2 done and back in the queue")
    wait_for(lambda: is_done(jobs[1], runs), 600, "task 1 done")
    t_last = time.monotonic()
    second.wait(timeout=120)  # on its own, within a few polls of the last job
    assert time.monotonic() - t_last < 60
    out, err = out_path.read_text(), err_path.read_text()
    assert second.returncode == 1, out[-2000:] + err[-2000:]
    assert "4 job(s) still queued or running on SLURM" in out and "as SLURM array" not in out
    assert "SLURM: 2 of 4 job(s) done, 2 failed (" in out and ids[0] in out and ids[3] in out
    assert f"SLURM job {ids[3]} left the queue unfinished before it started" in err
    assert f"SLURM job {ids[0]} left the queue unfinished after it started" in err
    code, rows = status_rows(runs)
    assert code == 1 and [rows[k][0] for k in range(4)] == ["interrupted", "done", "done", "interrupted"], rows

    # 4. rerun: the two failed tasks are resubmitted and every run completes
    third = front_door(runs, *STORM_SLURM, timeout=900)
    assert third.returncode == 0, third.stdout[-2000:] + third.stderr[-2000:]
    assert "submitted 2 job(s)" in third.stdout
    code, rows = status_rows(runs)
    assert code == 0 and all(rows[k][0] == "done" for k in range(4)), rows
    summaries = {k: json.loads((d[k] / "summary.json").read_text()) for k in range(4)}
    assert summaries[0]["resumes"] == 1 and summaries[0]["resumed_at"][0][0] >= 100
    assert summaries[1]["resumes"] >= 1 and summaries[1]["resumed_at"][0][0] >= 100
    assert summaries[3]["resumes"] == 0
    assert not any((d[k] / "checkpoint").exists() for k in range(4))

    # 5. the interrupted runs' curves equal uninterrupted runs of the same job ids (here, locally)
    local = front_door(ref, *STORM, "suite.seeds=[0,1]", "launcher.workers=2", timeout=900)
    assert local.returncode == 0, local.stdout[-2000:] + local.stderr[-2000:]
    for k in (0, 1):
        r_evals, r_eps, r_train, r_sum = curves(ref / RUN.replace("seed0", f"seed{k}"))
        s_evals, s_eps, s_train, s_sum = curves(d[k])
        assert s_sum["job_id"] == r_sum["job_id"] == jobs[k].job_id and r_sum["resumes"] == 0
        pd.testing.assert_frame_equal(s_evals, r_evals, check_exact=True)
        pd.testing.assert_frame_equal(s_eps, r_eps, check_exact=True)
        pd.testing.assert_frame_equal(s_train, r_train, check_exact=True)
    wait_for(lambda: not queue_states(list(ids.values())), 120, "the requeued task 2 to leave the queue")

"""The results store on disk: files get the mode the umask allows (not mkstemp's 0600), and the
temp files of writes cut short by kill -9, plus empty checkpoint folders, are removed the next
time that run starts."""
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.store import atomic_write, finished_summary, run_path, runs_of

ROOT = Path(__file__).resolve().parents[2]
RUN = "default/pointmaze-umaze-diverse/cql/seed0"
FAST = ["algorithm=cql", "task=pointmaze-umaze-diverse", "seed=0", "algorithm.replay.batch_size=32",
        "algorithm.hparams.cql_n_actions=2", "protocol.offline_steps=400", "protocol.online_steps=100",
        "protocol.eval_every_offline=100", "protocol.eval_every=50", "protocol.eval_episodes=1",
        "protocol.log_every=20", "protocol.checkpoint_every=40", "progress=false", "report=false"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_write_respects_the_umask(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "a" / "summary.json", "{}\n")
        atomic_write(tmp_path / "a" / "summary.json", "{}\n")  # replacing keeps it so
    finally:
        os.umask(old)
    assert mode(tmp_path / "a" / "summary.json") == expected
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["summary.json"]  # no temp file left


def front_door(runs: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", 'umask 022 && exec "$@"', "-", sys.executable, "-m", "harness.run",
                             *FAST, f"runs_dir={runs}", *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def plant_orphans(d: Path) -> list[Path]:
    """What kill -9 inside atomic_write leaves behind: `.<name>.<random>` beside each file."""
    orphans = [d / "checkpoint" / ".state.pt.1a2b3c4d", d / ".evals.csv.5e6f7a8b", d / ".train.csv.9c0d1e2f",
               d / ".summary.json.0a1b2c3d"]
    for p in orphans:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial" * 1000)
    return orphans


@pytest.mark.slow
def test_a_run_is_finished_only_when_done_as_the_same_job(tmp_path):
    d = run_path(tmp_path, "suite", "task-a", "cql", 3)
    assert d == tmp_path / "suite" / "task-a" / "cql" / "seed3"
    assert finished_summary(d) is None  # no summary yet
    for status in ("running", "failed"):
        atomic_write(d / "summary.json", json.dumps({"status": status, "job_id": "abc"}))
        assert finished_summary(d) is None and finished_summary(d, "abc") is None
    atomic_write(d / "summary.json", json.dumps({"status": "done", "job_id": "abc"}))
    assert finished_summary(d)["job_id"] == "abc" and finished_summary(d, "abc") is not None
    assert finished_summary(d, "another-config") is None  # a changed config is not finished
    (d / "summary.json").write_text('{"status": "do')  # truncated by a crash outside atomic_write
    assert finished_summary(d) is None
    other = run_path(tmp_path, "other-suite", "task-a", "cql", 0)
    other.mkdir(parents=True)
    run_path(tmp_path, "suite", "task-b", "cql", 0).mkdir(parents=True)
    assert runs_of(tmp_path, "task-a", "cql") == sorted([other, d])


def test_temp_files_of_a_killed_run_and_empty_checkpoint_folders_are_cleaned_up(tmp_path):
    d = tmp_path / RUN
    proc = front_door(tmp_path)
    end = time.monotonic() + 600
    while time.monotonic() < end and proc.poll() is None and not (d / "checkpoint" / "state.pt").exists():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (d / "checkpoint" / "state.pt").exists(), proc.stdout.read()[-2000:]
    orphans = plant_orphans(d)
    other = d / ".notes.txt.abc"  # not one of the store's files: left alone
    other.write_text("mine")

    out, _ = (rerun := front_door(tmp_path)).communicate(timeout=900)
    assert rerun.returncode == 0, out[-2000:]
    summary = json.loads((d / "summary.json").read_text())
    assert summary["status"] == "done" and summary["resumes"] == 1
    assert not any(p.exists() for p in orphans) and other.exists()
    assert not (d / "checkpoint").exists()  # the finished run keeps no empty checkpoint folder
    for name in ("config.yaml", "summary.json", "evals.csv", "train.csv", "episodes.csv"):
        assert mode(d / name) == 0o644, name
    assert mode(tmp_path / "default" / "jobs.json") == 0o644

    # a finished run started again (as a requeued SLURM job starts it) cleans up and redoes nothing
    from harness.runner import run_job
    from tests.harness.test_threads import compose_jobs

    orphans = plant_orphans(d)
    before = (d / "evals.csv").read_text()
    (job,) = compose_jobs(*FAST)
    assert run_job(job, d, progress_bar=False) == summary
    assert not any(p.exists() for p in orphans) and not (d / "checkpoint").exists()
    assert (d / "evals.csv").read_text() == before


@pytest.mark.slow
def test_wall_time_counts_work_lost_since_the_last_checkpoint(tmp_path):
    """The killed attempt ran on for a while after its last checkpoint: that time is counted."""
    from harness.runner import Runner
    from tests.harness.test_threads import compose_jobs

    (job,) = compose_jobs(*FAST)
    d = tmp_path / RUN
    runner = Runner([job], [d], progress_bar=False)
    runner.build()
    runner.save_checkpoint()  # at ~0 s of work
    started = time.time() - 1000.0  # the killed attempt started 1,000 s ago, with 5 s from before
    atomic_write(d / "summary.json", json.dumps({"status": "running", "job_id": job.job_id,
                                                 "attempt_started_at": started, "attempt_wall_before_s": 5.0}))
    os.utime(d / "evals.csv", (started + 600.0, started + 600.0))  # its last write, 600 s in
    for p in (d / "summary.json", d / "train.csv", d / "episodes.csv", d / "checkpoint" / "state.pt"):
        os.utime(p, (started + 1.0, started + 1.0))
    assert torch.load(d / "checkpoint" / "state.pt", weights_only=False)["wall_time"] < 600.0  # all it knows
    (summary,) = Runner([job], [d], progress_bar=False).run()
    assert summary["resumes"] == 1 and summary["wall_time_s"] >= 605.0  # 5 s before + 600 s until its last write

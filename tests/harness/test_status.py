"""`harness.status` from the jobs manifest and summaries; failed jobs keep their error and the
rest of the suite goes on; `retries` reruns only the failed ones."""
import json

import harness.launch as launch
from harness import status
from harness.job import Job
from harness.store import atomic_write, write_manifest


def fake_jobs(n=4):
    return [Job.from_dict({"suite": "s", "seed": k, "algorithm": {"name": "cql"}, "threads": 1,
                           "task": {"name": "t", "domain": "pointmaze"}, "protocol": {"offline_steps": 0, "online_steps": 0}})
            for k in range(n)]


def test_status_reports_each_state_and_failure_lines(tmp_path, capsys):
    jobs = fake_jobs()
    write_manifest(jobs, tmp_path)
    d = [tmp_path / f"s/t/cql/seed{k}" for k in range(4)]
    atomic_write(d[0] / "summary.json", json.dumps({"status": "done", "job_id": jobs[0].job_id, "final_score": 80}))
    atomic_write(d[1] / "summary.json", json.dumps({"status": "failed", "job_id": jobs[1].job_id,
                                                     "error": "FloatingPointError: non-finite critic_loss",
                                                     "traceback": "Traceback...\nFloatingPointError: non-finite critic_loss"}))
    atomic_write(d[2] / "summary.json", json.dumps({"status": "running", "job_id": jobs[2].job_id,
                                                     "host": __import__("socket").gethostname(), "pid": 2**22 + 7}))
    assert status.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    lines = {l.split()[3]: l for l in out.splitlines() if l.split() and l.split()[0] in
             ("done", "failed", "interrupted", "missing", "running")}
    assert lines["0"].startswith("done") and lines["1"].startswith("failed")
    assert lines["2"].startswith("interrupted") and lines["3"].startswith("missing")
    assert "non-finite critic_loss" in out and "1 done, 1 failed, 1 interrupted, 1 missing" in out


def test_failures_are_recorded_the_suite_goes_on_and_retries_rerun_them(tmp_path, monkeypatch):
    calls, fail = [], {1}

    def fake_run_jobs(jobs, run_dirs, progress_bar=True, stop_requested=None):
        (job,), (run_dir,) = jobs, run_dirs
        calls.append(job.seed)
        if job.seed in fail:
            raise RuntimeError("transient")
        atomic_write(run_dir / "summary.json", json.dumps({"status": "done", "job_id": job.job_id}))

    monkeypatch.setattr("harness.runner.run_jobs", fake_run_jobs)
    jobs = fake_jobs(3)
    errors = launch.launch_local(jobs, tmp_path, progress=False)
    assert list(errors) == [jobs[1].job_id] and "transient" in errors[jobs[1].job_id]
    assert calls == [0, 1, 2]  # the rest of the suite went on
    calls.clear()
    assert launch.launch_local(jobs, tmp_path, progress=False, retries=1) == {jobs[1].job_id: errors[jobs[1].job_id]}
    assert calls == [1, 1]  # finished jobs skipped; the failed one tried 1 + 1 times
    calls.clear(), fail.clear()
    assert launch.launch_local(jobs, tmp_path, progress=False, retries=1) == {}
    assert calls == [1]


def test_slurm_jobs_are_judged_by_the_queue_and_named_by_array_id(tmp_path):
    """job_state against a queue as squeue lists it (the storm in test_slurm.py checks the same
    against a real cluster)."""
    jobs = fake_jobs(7)
    write_manifest(jobs, tmp_path)
    entries = status.expected_jobs(tmp_path, [])
    ledger = {j.job_id: f"30_{k}" for k, j in enumerate(jobs)}
    d = [tmp_path / f"s/t/cql/seed{k}" for k in range(7)]
    running = lambda k, sid: {"status": "running", "job_id": jobs[k].job_id, "host": "node1", "pid": 1,  # noqa: E731
                              "slurm_job_id": sid}
    atomic_write(d[0] / "summary.json", json.dumps(running(0, "30_0")))  # running, on the queue
    atomic_write(d[1] / "summary.json", json.dumps(running(1, "30_1")))  # killed: gone from the queue
    atomic_write(d[2] / "summary.json", json.dumps(running(2, "30_2")))  # requeued: pending again
    atomic_write(d[3] / "summary.json", json.dumps({"status": "done", "job_id": jobs[3].job_id}))  # requeued when done
    queue = {"30_0": "RUNNING", "30_2": "PENDING", "30_3": "PENDING", "30_4": "PENDING"}  # 30_4: not started; 30_5 gone
    states = {e["seed"]: status.job_state(tmp_path, e, ledger, queue) for e in entries}
    assert states[0][0] == "running" and "SLURM job 30_0 RUNNING" in states[0][1]
    assert states[1][0] == "interrupted" and "SLURM job 30_1 is no longer in the queue" in states[1][1]
    assert states[2] == ("queued", "SLURM job 30_2 PENDING (requeued); starts over (no checkpoint yet)")
    assert states[3][0] == "done" and "SLURM job 30_3 PENDING again (requeued): it returns done at once" in states[3][1]
    assert states[4] == ("queued", "SLURM job 30_4 PENDING, not started yet")
    assert states[5][0] == "interrupted" and "SLURM job 30_5 left the queue before it started" in states[5][1]
    assert states[6][0] == "interrupted"  # 30_6 gone too
    unknown = status.job_state(tmp_path, entries[0], ledger, {}, "squeue failed: connection refused")
    assert unknown[0] == "unknown" and "cannot tell whether it still runs" in unknown[1]

"""Launchers: run a list of jobs, skipping the finished ones. `local` runs them in this process
(workers=1) or in worker processes that split the cores between them."""
from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from pathlib import Path
from typing import Any

import torch

from harness.jobs import run_dir
from harness.store import read_summary


def is_done(job: dict[str, Any], runs_dir: Path) -> bool:
    summary = read_summary(run_dir(runs_dir, job))
    return bool(summary and summary.get("status") == "done" and summary.get("job_id") == job["job_id"])


def _run_one(args) -> tuple[str, str | None]:
    job, runs_dir, threads, progress = args
    from harness.runner import run_job

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # denormals slow this kind of CPU by up to 2x
    try:
        run_job(job, run_dir(runs_dir, job), progress_bar=progress)
        return job["job_id"], None
    except Exception as exc:  # recorded in summary.json; the rest of the suite goes on
        return job["job_id"], f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"


def launch_local(jobs: list[dict[str, Any]], runs_dir: Path, workers: int = 1, threads: int = 0,
                 progress: bool = True) -> dict[str, str]:
    """Runs the jobs; returns {job_id: error} for the ones that failed."""
    todo = [j for j in jobs if not is_done(j, runs_dir)]
    cores = os.cpu_count() or 1
    workers = max(1, min(workers, len(todo) or 1))
    threads = threads or max(1, cores // workers)
    errors = {}
    if workers == 1:
        results = [_run_one((j, runs_dir, threads, progress)) for j in todo]
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_run_one, [(j, runs_dir, threads, False) for j in todo], chunksize=1)
    for job_id, err in results:
        if err:
            errors[job_id] = err
    return errors
